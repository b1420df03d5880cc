#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the real peers, then checks
# formatting and lints, runs every test (unit, integration, interop against
# sops/age/gpg/sshd/kubectl/kpt), a short fuzz smoke run, and the OpenPGP
# tests again with the crypto-nettle backend.
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
cargo test --all-targets --quiet
# The constant-time OpenPGP backend (crypto-nettle, for the sidecar image)
# against the real sops and gpg too. Its own target folder, so switching
# backends never rebuilds the default one.
cargo test --quiet --no-default-features --features crypto-nettle \
  --target-dir target/nettle --test pgp_interop --test pgp_cli
