#!/usr/bin/env bash
# Builds the static arm64 Linux binary (scripts/build-dist.sh: cross-compiled
# on x86_64, native on arm64) and runs tests/it/platforms.rs against it,
# under qemu-aarch64 (Debian qemu-user) when this machine is not arm64: it
# decrypts what sops 3.11 encrypted and onboards a tenant like the host
# build. scripts/test.sh runs it; the peers come from scripts/install-peers.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
start=$SECONDS
# Without debug information: the binary is only run, and debug information
# would be most of the build's disk space and link time.
bin="$(CARGO_PROFILE_DEV_DEBUG=0 scripts/build-dist.sh --target "$target" --profile dev)"
echo "test-arm64: $target built ($((SECONDS - start)) s)" >&2
KUSTOS_PLATFORM_BIN="$bin" KUSTOS_PLATFORM_TARGET="$target" \
  cargo test --locked --quiet --test it platforms::
