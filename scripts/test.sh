#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the real peers, then checks
# formatting and lints (here and for Apple Silicon macOS), runs every test
# (unit, integration, interop against sops/age/gpg/sshd/kubectl/kpt, a
# short fuzz smoke run) and the arm64 Linux binary under qemu.
# scripts/test-platforms.sh adds Intel macOS.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-peers.sh

# The platform checks need the Rust standard library of their target,
# which only rustup's own server has (scripts/install-peers.sh tries);
# without it they are skipped with a note, not failed.
has_target() {
  if rustup target list --installed 2>/dev/null | grep -qx "$1"; then
    return 0
  fi
  echo "SKIP: no Rust standard library for $1 (rustup target add $1): its platform check does not run" >&2
  return 1
}

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --all-targets --quiet -- -D warnings
fi
python3 scripts/check-deps.py
# macOS: the crate, its tests and examples type-check and pass the lints
# for Apple Silicon, so code that only builds on Linux fails here.
if has_target aarch64-apple-darwin; then
  scripts/check-platforms.sh aarch64-apple-darwin
fi
# `cargo test --all-targets` builds examples only as test harnesses; the
# serve tests run the load generator as a program, so build it as one too.
cargo build --examples --quiet
cargo test --all-targets --quiet
# Linux arm64: the cross-built binary, run under qemu (tests/it/platforms.rs).
if has_target aarch64-unknown-linux-gnu; then
  scripts/test-arm64.sh
fi
