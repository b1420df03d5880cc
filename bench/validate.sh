#!/usr/bin/env bash
# Times `kustos validate` on a fleet of N tenants (made with `kustos init`
# and `kustos tenant add`) next to the reference repository's approach:
# one `kubectl kustomize` per folder holding a kustomization, as
# fluxcd/flux2-multi-tenancy's scripts/validate.sh does (its kubeconform
# pass over each build's output comes on top of that and is not timed).
#   bench/validate.sh [TENANTS]
# KUSTOS_BENCH_BIN=PATH times that binary (default: target/release/kustos).
# Needs: hyperfine, age-keygen, kubectl.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-200}"
K="$(realpath "${KUSTOS_BENCH_BIN:-target/release/kustos}")"
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
age-keygen -o "$W/key.txt" 2>/dev/null
R="$(grep -o 'age1[0-9a-z]*' "$W/key.txt")"
"$K" init --age "$R" "$W/fleet" >/dev/null 2>&1
for i in $(seq 1 "$n"); do
  "$K" tenant add "team$i" -n "team$i" --git-url "https://github.com/org/team$i" \
    --auth none --repo "$W/fleet" -y >/dev/null 2>&1
done
cat > "$W/reference.sh" <<'SH'
#!/usr/bin/env bash
set -euo pipefail
find "$1" -name kustomization.yaml -print0 | while IFS= read -r -d '' f; do
  kubectl kustomize "$(dirname "$f")" >/dev/null
done
SH
chmod +x "$W/reference.sh"
folders="$(find "$W/fleet" -name kustomization.yaml | wc -l)"
hyperfine -N --warmup 1 --runs 5 --export-json "$W/v.json" \
  --command-name kustos "$K validate $W/fleet" \
  --command-name reference "$W/reference.sh $W/fleet" >/dev/null 2>&1
python3 - "$W/v.json" "$n" "$folders" <<'PY'
import json, os, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
k, ref = r["kustos"]["median"], r["reference"]["median"]
print(f"{sys.argv[2]} tenants, {sys.argv[3]} kustomization folders, {os.cpu_count()} cores")
print(f"kustos validate (builds + schemas + tenancy rules): {k:.2f} s")
print(f"kubectl kustomize per folder (reference, builds only): {ref:.2f} s   ratio {ref/k:.1f}x")
PY
