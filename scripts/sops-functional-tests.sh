#!/usr/bin/env bash
# Runs sops' own black-box functional test suite (getsops/sops,
# functional-tests/, a Rust crate that drives whatever binary sits at
# functional-tests/sops) against a binary: kustos by default, or the real
# sops for comparison. The suite is not part of this repository; pass a
# checkout of getsops/sops (any release from v3.11.0 to the newest commit):
#   scripts/sops-functional-tests.sh /path/to/sops-checkout [BINARY]
# The suite's crates come from crates.io; its build is kept in
# target/sops-functional-tests so a second run (the other binary) is quick.
set -euo pipefail
src="${1:?usage: $0 SOPS_CHECKOUT [BINARY]}"
src="$(cd "$src" && pwd)"
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${2:-$here/target/release/kustos}"
[ -x "$bin" ] || (cd "$here" && cargo build --release --quiet)
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
work="$(mktemp -d)"; trap 'gpgconf --kill gpg-agent >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
cp -r "$src/functional-tests" "$work/ft"
export GNUPGHOME="$work/gnupg"; mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --import "$src/pgp/sops_functional_tests_key.asc" 2>/dev/null
cp "$bin" "$work/ft/sops"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target/sops-functional-tests}"
cd "$work/ft"
# The suite pins its toolchain in the checkout's root, which is not copied:
# the local stable toolchain builds it.
# KMS, S3 and Vault tests need those services (the Vault ones are not
# #[ignore]d upstream and fail without a server, for sops too).
cargo test --quiet -- --test-threads=1 2>&1 | tail -40
