#!/usr/bin/env bash
# Long fuzz run of every target (cargo-fuzz, libFuzzer + ASan).
#   fuzz/run-all.sh [SECONDS_PER_TARGET]   (default 600)
# Works on the stable toolchain through RUSTC_BOOTSTRAP (cargo-fuzz passes
# -Z flags). Corpora grow in fuzz/corpus/<target>/ (not committed); crashes
# land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-600}"
export RUSTC_BOOTSTRAP=1
for t in $(cargo fuzz list); do
  mkdir -p "corpus/$t"
  cp -n ../testdata/corpus/* seeds/* "corpus/$t/" 2>/dev/null || true
  echo "== $t ($secs s)"
  cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 2>&1 \
    | grep -E "^Done|panicked|ERROR|SUMMARY" || true
done
