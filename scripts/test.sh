#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the real peers, then checks
# formatting and lints, runs every test (unit, integration, interop against
# sops/age/gpg/sshd/kubectl/kpt) and a short fuzz smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-peers.sh

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --all-targets --quiet -- -D warnings
fi
python3 scripts/check-deps.py
# `cargo test --all-targets` builds examples only as test harnesses; the
# serve tests run the load generator as a program, so build it as one too.
cargo build --examples --quiet
cargo test --all-targets --quiet
