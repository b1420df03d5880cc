#!/usr/bin/env bash
# Load test of the decryption sidecar on loopback: starts `kustos serve`
# (release build) on generated keys, drives it with the load generator
# (`cargo run --example loadtest`, bench/loadtest/main.rs) and
# prints throughput, p50/p99 latency and errors.
#   bench/loadtest.sh [CONCURRENCY] [DURATION]      (default 16 10s)
# Env: SERVER_CPUS / CLIENT_CPUS (taskset lists, e.g. 0 and 1) pin the two
# processes; WORKERS sets the server's runtime threads; NO_BUILD=1 skips
# the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
conc="${1:-16}"
dur="${2:-10s}"

[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet --bin kustos --example loadtest
K="$PWD/target/release/kustos"
L="$PWD/target/release/examples/loadtest"
W="$(mktemp -d)"; pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W/keys"

# A small Secret, encrypted to a fresh age key (kustos writes sops' format).
python3 - "$W" <<'PY'
import sys
from pathlib import Path
Path(sys.argv[1], "small.yaml").write_text(
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: tenant-a\n"
    "type: Opaque\nstringData:\n  username: app\n  password: s3cr3t-value\n"
    "  url: postgres://app@db:5432/app\n")
PY
command -v age-keygen >/dev/null || { echo "age-keygen is required (apt-get install age)" >&2; exit 1; }
age-keygen -o "$W/keys/age.agekey" 2>/dev/null
R="$(grep -o 'age1[0-9a-z]*' "$W/keys/age.agekey")"
"$K" encrypt --age "$R" --encrypted-regex '^(data|stringData)$' "$W/small.yaml" > "$W/small.enc.yaml"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
srv=("$K" serve --keys-dir "$W/keys" --listen "127.0.0.1:$port" --no-access-log)
[ -n "${WORKERS:-}" ] && srv+=(--worker-threads "$WORKERS")
[ -n "${SERVER_CPUS:-}" ] && command -v taskset >/dev/null && srv=(taskset -c "$SERVER_CPUS" "${srv[@]}")
"${srv[@]}" >/dev/null 2>"$W/serve.log" &
pid=$!
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "loadtest --url http://127.0.0.1:$port --file small.enc.yaml --concurrency $conc --duration $dur ($(nproc) cores)"
cli=("$L")
[ -n "${CLIENT_CPUS:-}" ] && command -v taskset >/dev/null && cli=(taskset -c "$CLIENT_CPUS" "${cli[@]}")
"${cli[@]}" --url "http://127.0.0.1:$port" --file "$W/small.enc.yaml" \
  --concurrency "$conc" --duration "$dur"
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^kustos_(requests_total|datakey_cache_(hits|misses)_total|mac_failures_total)' || true
