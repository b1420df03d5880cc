#!/usr/bin/env bash
# Builds the fastest kustos binary for this machine and prints its path:
# the `dist` profile (fat LTO) linked statically against glibc, as a
# position-dependent executable.
#   scripts/build-dist.sh [cargo build flags…]
#   KUSTOS_DIST_PIE=1 scripts/build-dist.sh   (static PIE instead)
# Static linking skips the dynamic loader's work at every start (about
# 0.3 ms of a ~2 ms small-file decrypt). Position-dependent code skips the
# self-relocation a static PIE does at start (15,800 relocations, which
# also copy ~120 written pages): another ~0.15 ms, a tenth of a small
# decrypt. The cost: the binary's own code and data sit at fixed addresses
# (heap, stack and mappings stay randomized), as with the Go sops binary.
# For a CLI run on files you chose this is the default here; the
# long-running sidecar's container image (deploy/Dockerfile, musl) stays a
# static PIE, and KUSTOS_DIST_PIE=1 keeps full ASLR for this build too.
# An explicit --target keeps the flags off build scripts and proc-macros.
# Host names (the known_hosts scan) resolve through glibc's built-in files
# and dns lookups as usual; other NSS modules would have to match the glibc
# version the binary was built with.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(rustc -vV | sed -n 's/^host: //p')"
case "$target" in
  *-linux-gnu)
    flags="-C target-feature=+crt-static"
    [ "${KUSTOS_DIST_PIE:-}" = 1 ] || flags="$flags -C relocation-model=static"
    ;;
  *) flags="" ;; # elsewhere: the platform's usual linking
esac
RUSTFLAGS="${RUSTFLAGS:-} $flags" cargo build --profile dist --target "$target" --quiet "$@"
echo "${CARGO_TARGET_DIR:-$PWD/target}/$target/dist/kustos"
