#!/bin/bash
# Overload: single-message POSTs offered open-loop far above what one engine core sustains, on many
# connections, with 10 query clients beside them, side by side in three configurations: load shedding on
# (--shed-lag 20ms, the default) with clients that honor Retry-After (pause that connection 1 s after a 503),
# shedding on with clients that ignore it (send again at once), and shedding off (--shed-lag 0). Prints
# loadgen's summary (offered, acknowledged, 503s shed, write latency from the plan and from the send of the
# acknowledged, query p99, --check) and the engine's peak RssAnon/RssFile.
#   benches/overload.sh [SECS] [RATE] [CONNS]       e.g. benches/overload.sh 20 400000 2000
# Engine on CPU 1 (--cpus 1), loadgen on CPU 0.
set -euo pipefail
secs=${1:-20}
rate=${2:-400000}
conns=${3:-2000}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --workspace --manifest-path "$root/Cargo.toml" >/dev/null
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# shellcheck source=benches/trash.sh
source "$root/benches/trash.sh"
trap empty_trash EXIT
settle
for cfg in "20ms honor" "20ms ignore" "0 honor"; do
  read -r lag retry <<< "$cfg"
  d=$(mktemp -d /tmp/tickcore-overload.XXXXXX)
  taskset -c 1 "$root/target/release/tickcore" --cpus 1 --listen 127.0.0.1:18097 --data-dir "$d" \
    --report-interval 5s --shed-lag "$lag" --max-connections 10000 > "$d.engine.log" 2>&1 &
  tp=$!
  sleep 1.5
  peak="$d.peak"
  echo "0 0" > "$peak"
  (
    pa=0; pf=0
    while kill -0 "$tp" 2>/dev/null; do
      a=$(awk '/RssAnon/{print $2}' "/proc/$tp/status" 2>/dev/null || echo 0)
      f=$(awk '/RssFile/{print $2}' "/proc/$tp/status" 2>/dev/null || echo 0)
      [ "${a:-0}" -gt "$pa" ] && pa=$a
      [ "${f:-0}" -gt "$pf" ] && pf=$f
      echo "$pa $pf" > "$peak"
      sleep 0.2
    done
  ) &
  echo "=== --shed-lag $lag, clients --retry-after $retry: offered $rate msg/s single messages on $conns connections for ${secs}s"
  taskset -c 0 "$root/target/release/loadgen" --url http://127.0.0.1:18097 --rate "$rate" \
    --connections "$conns" --duration "${secs}s" --query-clients 10 --probe-interval 0s --retry-after "$retry" \
    --report-interval 600s --check 2>&1 | grep -E '^(rate|check|errors|  write|  query|SLO|write|query)' || true
  grep -E 'shed' "$d.engine.log" | tail -3 || true
  kill -TERM "$tp"; wait "$tp" || true
  read -r pa pf < "$peak"
  echo "engine peak RssAnon $((pa / 1024)) MiB, RssFile $((pf / 1024)) MiB"
  discard "$d"; rm -f "$d.engine.log" "$peak"
done
