#!/bin/bash
# Do admitted writes keep their latency under overload? A low-rate probe client (single-message POSTs on a
# few connections, run at real-time priority so the busy client core never delays it) measures write latency
# from each request's send, first against the engine alone, then while a second client offers far more
# than one core sustains (single messages on many connections, honoring Retry-After, with 10 query
# clients). Same engine, same run, back to back; the probe's refused requests (503) are counted apart.
#   [ENGINE_FLAGS=...] benches/overload_probe.sh [SECS] [RATE] [CONNS] [PROBE_RATE]
#   e.g. benches/overload_probe.sh 15 250000 2000 200
# Engine on CPU 1 (--cpus 1, default flags), both clients on CPU 0. Needs chrt (util-linux) and root or
# CAP_SYS_NICE for the probe's SCHED_FIFO priority (without it the probe runs at normal priority, and
# says so).
set -euo pipefail
secs=${1:-15}
rate=${2:-400000}
conns=${3:-2000}
probe_rate=${4:-200}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --workspace --manifest-path "$root/Cargo.toml" >/dev/null
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
loadgen="$root/target/release/loadgen"
url=http://127.0.0.1:18098
prio=(chrt -f 50)
if ! chrt -f 50 true 2>/dev/null; then
  echo "note: no SCHED_FIFO here; the probe runs at normal priority and shares CPU 0 with the load"
  prio=()
fi
d=$(mktemp -d /tmp/tickcore-probe.XXXXXX)
# shellcheck source=benches/trash.sh
source "$root/benches/trash.sh"
trap 'kill -TERM "$tp" 2>/dev/null || true; if [ -z "${KEEP:-}" ]; then discard "$d"; rm -rf "$d".*; fi; empty_trash' EXIT
settle
# shellcheck disable=SC2086 # ENGINE_FLAGS: extra engine flags, split on spaces
taskset -c 1 "$root/target/release/tickcore" --cpus 1 --listen 127.0.0.1:18098 --data-dir "$d" \
  --report-interval 5s --max-connections 10000 ${ENGINE_FLAGS:-} > "$d.engine.log" 2>&1 &
tp=$!
sleep 1.5

probe() { # $1: label, $2: json file
  "${prio[@]}" taskset -c 0 "$loadgen" --url "$url" --rate "$probe_rate" --connections 4 --duration "${secs}s" \
    --query-clients 0 --probe-interval 0s --report-interval 600s --seed 99 --json "$2" > "$2.log" 2>&1 || true
}
show() { # $1: label, $2: json file
  python3 - "$1" "$2" <<'EOF'
import json, sys
label, path = sys.argv[1], sys.argv[2]
j = json.load(open(path))
w = j["write_from_send"]
shed = j["errors"].get("write_http_503", 0)
other = sum(v for k, v in j["errors"].items() if k != "write_http_503")
print(f"{label:<34} acked {j['acked_msgs']:>7}  503 {shed:>5}  other errors {other}  "
      f"from send p50 {w['p50_ms']:.2f}  p90 {w['p90_ms']:.2f}  p99 {w['p99_ms']:.2f}  p99.9 {w['p999_ms']:.2f}  max {w['max_ms']:.2f} ms")
EOF
}

echo "=== probe: $probe_rate msg/s on 4 connections, ${secs}s; load: $rate msg/s on $conns connections + 10 query clients"
probe alone "$d.alone.json"
taskset -c 0 "$loadgen" --url "$url" --rate "$rate" --connections "$conns" --duration "$((secs + 4))s" \
  --query-clients 10 --probe-interval 0s --retry-after honor --report-interval 600s --json "$d.load.json" \
  > "$d.load.log" 2>&1 &
lp=$!
sleep 2
probe loaded "$d.loaded.json"
# The load is open-loop: messages its connections could not send in time (paused by Retry-After) wait in
# its queue, so it would go on long after its duration; it is stopped once the probe is done, and its
# figures are the engine's console lines over the same seconds.
kill "$lp" 2>/dev/null || true
wait "$lp" 2>/dev/null || true
show "probe, engine otherwise idle" "$d.alone.json"
show "probe, engine under the load" "$d.loaded.json"
echo "engine console (5 s intervals) while loaded:"
awk '$1 == "core" && $3 + 0 > 5 * '"$probe_rate"'' "$d.engine.log" || true
