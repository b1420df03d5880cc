#!/usr/bin/env bash
# Type-checks kustos (library, binary, tests, examples) for targets this
# machine cannot link for, with clippy's lints as errors:
#   scripts/check-platforms.sh [TRIPLE…]   (default: both macOS targets)
# The targets' standard libraries come from `rustup target add`
# (scripts/install-peers.sh).
#
# AWS-LC is C: its build script compiles it with the target's C compiler,
# which for macOS is Apple's clang and SDK, not available on Linux. Type-
# checking links nothing, so scripts/stand-in/{cc,ar} stand in for them
# here and make empty objects: the Rust code, the bindings aws-lc-sys ships
# for these targets and every cfg are checked as on a Mac; the C code is
# not compiled (the release workflow builds it on macOS runners). On a Mac,
# the real compiler is used.
set -euo pipefail
cd "$(dirname "$0")/.."
(($#)) || set -- aarch64-apple-darwin x86_64-apple-darwin
lint=(clippy) deny=(-- -D warnings)
cargo clippy --version >/dev/null 2>&1 || lint=(check) deny=()
stand_in="$PWD/scripts/stand-in"
host_os="$(uname -s)"

for target in "$@"; do
  under="${target//-/_}"
  env=()
  if [ "$host_os" != Darwin ] && [[ "$target" == *-apple-* ]]; then
    # The deployment targets rustc itself defaults to; set here so cc-rs
    # does not ask xcrun for the SDK's.
    case "$target" in
      aarch64-*) min=11.0 ;;
      *) min=10.12 ;;
    esac
    env=("CC_$under=$stand_in/cc" "AR_$under=$stand_in/ar" "MACOSX_DEPLOYMENT_TARGET=$min")
  fi
  start=$SECONDS
  env ${env[@]+"${env[@]}"} cargo "${lint[@]}" --all-targets --quiet --locked --target "$target" \
    ${deny[@]+"${deny[@]}"}
  echo "check-platforms: $target type-checks ($((SECONDS - start)) s)" >&2
done
