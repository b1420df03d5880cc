#!/usr/bin/env bash
# Long fuzz run of every target (cargo-fuzz, libFuzzer).
#   fuzz/run-all.sh [SECONDS_PER_TARGET] [TARGET...]   (default 600 s, all targets)
# Environment:
#   FUZZ_RUNS=N        stop a target after N executions (default: time only)
#   FUZZ_SANITIZER=S   address (default) or none (2-3x faster; kustos and its
#                      parsers are safe Rust, ASan mostly guards dependencies)
# Works on the stable toolchain through RUSTC_BOOTSTRAP (cargo-fuzz passes
# -Z flags). Corpora grow in fuzz/corpus/<target>/ (not committed); crashes
# land in fuzz/artifacts/<target>/. Prints libFuzzer's final line per target
# ("Done N runs in S second(s)").
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-600}"
shift || true
export RUSTC_BOOTSTRAP=1
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
runs=()
[ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")
san="${FUZZ_SANITIZER:-address}"
# Build once, then run the binaries directly: a later edit to the crate
# does not trigger a rebuild in the middle of a long campaign.
cargo fuzz build -O -s "$san"
bin="target/x86_64-unknown-linux-gnu/release"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  cp -n ../testdata/corpus/* seeds/* "corpus/$t/" 2>/dev/null || true
  echo "== $t (up to $secs s${FUZZ_RUNS:+, $FUZZ_RUNS runs}, sanitizer $san)"
  "$bin/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$secs" "${runs[@]}" \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "corpus/$t" 2>&1 \
    | grep -E "^Done|panicked|ERROR|SUMMARY|stat::number_of_executed_units|stat::peak_rss_mb" || true
done
