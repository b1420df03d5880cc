#!/usr/bin/env bash
# Builds the fastest kustos binary for this machine and prints its path:
# the `dist` profile (fat LTO) linked statically against glibc, as a static
# position-independent executable, so the kernel loads it at a random
# address (full ASLR, as for the container image's musl build).
#   scripts/build-dist.sh [cargo build flags…]
# Static linking skips the dynamic loader's work at every start.
# An explicit --target keeps the flags off build scripts and proc-macros.
# Host names (the known_hosts scan) resolve through glibc's built-in files
# and dns lookups as usual; other NSS modules would have to match the glibc
# version the binary was built with.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(rustc -vV | sed -n 's/^host: //p')"
case "$target" in
  # crt-static with the default (PIC) relocation model links a static PIE.
  *-linux-gnu) flags="-C target-feature=+crt-static" ;;
  *) flags="" ;; # elsewhere: the platform's usual linking
esac
RUSTFLAGS="${RUSTFLAGS:-} $flags" cargo build --profile dist --target "$target" --quiet "$@"
echo "${CARGO_TARGET_DIR:-$PWD/target}/$target/dist/kustos"
