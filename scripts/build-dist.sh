#!/usr/bin/env bash
# Builds kustos for one target and prints the binary's path: by default the
# fastest binary for this machine (the `dist` profile, fat LTO).
#   scripts/build-dist.sh [--target TRIPLE] [--profile NAME] [cargo build flags…]
# The release workflow calls it for each published binary;
# scripts/test-arm64.sh calls it with `--target
# aarch64-unknown-linux-gnu --profile dev` for the arm64 binary it runs
# under qemu.
#
# Linux binaries are linked statically against glibc, so one file runs on
# any distribution. x86_64 gets a static position-independent executable
# (full ASLR, as the container image's musl build); rustc links static
# aarch64 executables without PIE (that target has no static-pie support),
# as Go links sops and flux. Static linking also skips the dynamic loader's
# work at every start. Host names (the known_hosts scan) resolve through
# glibc's built-in files and dns lookups as usual; other NSS modules would
# have to match the glibc version the binary was built with.
# macOS binaries link the system's libraries dynamically, as Apple requires.
#
# A target other than the host is cross-compiled: aarch64 Linux from x86_64
# with Debian's gcc-aarch64-linux-gnu (scripts/install-peers.sh installs
# it), unless CC_<target>/AR_<target> and the linker are already set.
# An explicit --target keeps RUSTFLAGS off build scripts and proc-macros.
set -euo pipefail
cd "$(dirname "$0")/.."
host="$(rustc -vV | sed -n 's/^host: //p')"
target="$host"
profile="dist"
args=()
while (($#)); do
  case "$1" in
    --target) target="$2"; shift 2 ;;
    --target=*) target="${1#--target=}"; shift ;;
    --profile) profile="$2"; shift 2 ;;
    --profile=*) profile="${1#--profile=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

case "$target" in
  # crt-static with the default (PIC) relocation model links a static PIE
  # where the target supports one.
  *-linux-gnu) flags="-C target-feature=+crt-static" ;;
  *) flags="" ;; # musl is static by default; elsewhere the platform's usual linking
esac

if [ "$target" != "$host" ]; then
  # cc-rs and cargo read these per target: CC_aarch64_unknown_linux_gnu, …
  under="${target//-/_}"
  upper="$(echo "$under" | tr '[:lower:]' '[:upper:]')"
  case "$target" in
    aarch64-unknown-linux-gnu) prefix="aarch64-linux-gnu-" ;;
    x86_64-unknown-linux-gnu) prefix="x86_64-linux-gnu-" ;;
    *) prefix="" ;;
  esac
  if [ -n "$prefix" ]; then
    cc_var="CC_$under" ar_var="AR_$under" ld_var="CARGO_TARGET_${upper}_LINKER"
    export "$cc_var=${!cc_var:-${prefix}gcc}"
    export "$ar_var=${!ar_var:-${prefix}ar}"
    export "$ld_var=${!ld_var:-${prefix}gcc}"
    if ! command -v "${!cc_var}" >/dev/null 2>&1; then
      echo "build-dist: no C compiler ${!cc_var} for $target (run scripts/install-peers.sh)" >&2
      exit 1
    fi
  fi
fi

RUSTFLAGS="${RUSTFLAGS:-} $flags" cargo build --locked --profile "$profile" --target "$target" \
  --bin kustos --quiet ${args[@]+"${args[@]}"}
case "$profile" in
  dev | test) dir=debug ;;
  release | bench) dir=release ;;
  *) dir="$profile" ;;
esac
echo "${CARGO_TARGET_DIR:-$PWD/target}/$target/$dir/kustos"
