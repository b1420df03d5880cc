#!/usr/bin/env bash
# The platform checks that take too long for every run of scripts/test.sh
# (each target compiles every dependency once more):
#   scripts/test-platforms.sh
# type-checks both macOS targets (scripts/check-platforms.sh), builds the
# static arm64 Linux binary (scripts/build-dist.sh: cross-compiled on
# x86_64, native on arm64) and runs tests/it/platforms.rs against it:
# under qemu-aarch64 (Debian qemu-user) when this machine is not arm64.
# With `CI` set, as in scripts/test.sh, a missing peer fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-peers.sh
scripts/check-platforms.sh aarch64-apple-darwin x86_64-apple-darwin

target=aarch64-unknown-linux-gnu
start=$SECONDS
# Without debug information: the binary is only run, and debug information
# would be most of the build's disk space and link time.
bin="$(CARGO_PROFILE_DEV_DEBUG=0 scripts/build-dist.sh --target "$target" --profile dev)"
echo "test-platforms: $target built ($((SECONDS - start)) s)" >&2
KUSTOS_PLATFORM_BIN="$bin" KUSTOS_PLATFORM_TARGET="$target" \
  cargo test --locked --quiet --test it platforms::
