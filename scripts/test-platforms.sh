#!/usr/bin/env bash
# Every platform check: both macOS targets type-checked with the lints
# (scripts/check-platforms.sh) and the arm64 Linux binary built and run
# (scripts/test-arm64.sh). scripts/test.sh runs the Apple Silicon check and
# the arm64 one; this adds Intel macOS.
#   scripts/test-platforms.sh
# With `CI` set, as in scripts/test.sh, a missing peer fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-peers.sh
scripts/check-platforms.sh aarch64-apple-darwin x86_64-apple-darwin
scripts/test-arm64.sh
