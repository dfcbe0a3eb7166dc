#!/usr/bin/env bash
# Bulk NDJSON ingest (1000 messages per POST, 8 connections) against loadgen's own ceiling, in one run:
#   1. loadgen (CPU 0) against the nginx no-op (CPU 1), offered CEILING_RATE msg/s open loop: what one client
#      core sends and gets answered (the ceiling);
#   2. tickcore --cpus 1 --durability sync (CPU 1, fresh data directory each time), offered a rising ladder of
#      fractions of that ceiling (FRACTIONS, default 0.02 0.04 0.06 ... 0.5 0.7) until one fails to
#      hold: every message acknowledged (all but the last partial batch), 0 errors, write p99 <= 50 ms from the planned send. (Rising, because
#      loadgen is open loop: a rung past the engine's rate lasts until its backlog is sent.)
#   benches/bulk_ndjson.sh [SECS]        e.g. benches/bulk_ndjson.sh 10
# Prints `key value` lines: ceiling_msg_per_s, then per rung `rung FRACTION RATE acked_per_s p99_ms errors held`,
# then held_rate and held_fraction: the highest rung that held (0 when none did).
set -euo pipefail
secs=${1:-10}
ceiling_rate=${CEILING_RATE:-2500000}
fractions=${FRACTIONS:-0.02 0.04 0.06 0.09 0.12 0.18 0.25 0.35 0.5 0.7}
here=$(cd "$(dirname "$0")" && pwd); root=$(dirname "$here")
peers=$root/../shared/peers
if ! command -v nginx >/dev/null; then bash "$peers/install.sh" >/dev/null; fi
cargo build --release --workspace --manifest-path "$root/Cargo.toml" >/dev/null 2>&1
ulimit -l 65536 2>/dev/null || true
out=$(mktemp -d /tmp/tickcore-bulk.XXXXXX)
# shellcheck source=benches/trash.sh
source "$here/trash.sh"
trap 'kill -9 ${tp:-} 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$out"; empty_trash' EXIT

load() { # load URL RATE JSON
  taskset -c 0 "$root/target/release/loadgen" --url "$1" --rate "$2" --batch 1000 --connections 8 \
    --duration "${secs}s" --query-clients 0 --probe-interval 0s --report-interval 60s --slo-errors 1000000000 \
    --json "$3" >/dev/null 2>&1 || true
}
field() { # field JSON EXPR
  python3 -c "import json,sys
E = lambda s: sum(s['errors'].values()) if isinstance(s['errors'], dict) else s['errors']
s = json.load(open(sys.argv[1])); print($2)" "$1"
}

# shellcheck disable=SC1091
source "$peers/peers.sh"
start_nginx >/dev/null 2>&1
load "http://127.0.0.1:$NGINX_PORT" "$ceiling_rate" "$out/ceiling.json"
stop_peer nginx >/dev/null 2>&1
ceiling=$(field "$out/ceiling.json" 'round(s["achieved_msg_per_s"])')
echo "ceiling_msg_per_s $ceiling"

settle
held_rate=0; held_fraction=0
for f in $fractions; do
  rate=$(python3 -c "print(int($ceiling * $f) // 1000 * 1000)")
  d=$out/data-$f
  taskset -c 1 "$root/target/release/tickcore" --cpus 1 --listen 127.0.0.1:18096 --data-dir "$d" \
    --report-interval 0 --durability sync >/dev/null 2>&1 & tp=$!
  until curl -s -o /dev/null "http://127.0.0.1:18096/health"; do sleep 0.1; done
  load "http://127.0.0.1:18096" "$rate" "$out/rung-$f.json"
  kill -TERM "$tp"; wait "$tp" 2>/dev/null || true; discard "$d"
  read -r acked p99 errors ok < <(field "$out/rung-$f.json" \
    '"%d %.1f %d %s" % (s["achieved_msg_per_s"], s["write"]["p99_ms"], E(s), "yes" if s["acked_msgs"] >= s["scheduled_msgs"] - 1000 and E(s) == 0 and s["write"]["p99_ms"] <= 50 else "no")')
  echo "rung $f $rate $acked $p99 $errors $ok"
  if [ "$ok" != yes ]; then break; fi
  held_rate=$rate; held_fraction=$f
done
echo "held_rate $held_rate"
echo "held_fraction $held_fraction"
