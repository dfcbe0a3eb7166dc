#!/usr/bin/env bash
# Bulk InfluxDB line protocol ingest, side by side in one run: tickcore's POST /write (--durability sync,
# fresh data directory) and VictoriaMetrics' /write from ../shared/peers, each pinned to CPU 1, driven by the
# peers' own wrk script (1000 points per POST: `m,tag=tN v0=..,..,v9=.. <ns>`, geometric tag popularity) on
# CPU 0: wrk -t1 -c${CONNS} -d${SECS}s. Prints rows/s, request p50/p99 and errors per server, and the same client
# against the nginx no-op (what wrk's Lua client can send: the client's ceiling).
# SHED_LAG (default 20ms, the engine's default) is passed as --shed-lag: 40 connections of 1000-point bodies
# saturate the core, and the engine then sheds a few requests with 503 (counted as errors by wrk, which
# does not honor Retry-After); SHED_LAG=0 measures without shedding.
#   benches/lp_compare.sh [SECS] [CONNS]        e.g. benches/lp_compare.sh 20 40
set -euo pipefail
secs=${1:-20}
conns=${2:-40}
root=$(cd "$(dirname "$0")/.." && pwd)
peers=$root/../shared/peers
lua=$peers/lua/post_lp_bulk.lua
[ -f "$lua" ] || { echo "needs ../shared/peers (the peers' wrk scripts)"; exit 1; }
cargo build --release --manifest-path "$root/Cargo.toml" --bin tickcore >/dev/null 2>&1
ulimit -l 65536 2>/dev/null || true

row() { # row NAME WRK_OUTPUT
  python3 - "$1" "$2" <<'PY'
import json, re, sys
name, txt = sys.argv[1], open(sys.argv[2]).read()
r = json.loads(re.search(r'^RESULT (\{.*\})$', txt, re.M).group(1))
non2xx = re.search(r'Non-2xx or 3xx responses: (\d+)', txt)
errs = r['err_connect'] + r['err_read'] + r['err_write'] + r['err_timeout'] + (int(non2xx[1]) if non2xx else 0)
print("%-34s %12.0f rows/s  p50 %7.2f ms  p99 %7.2f ms  errors %d" % (name, r['rows_per_s'], r['lat_p50_ms'], r['lat_p99_ms'], errs))
PY
}

# shellcheck source=benches/trash.sh
source "$root/benches/trash.sh"
trap empty_trash EXIT
settle
d=$(mktemp -d /tmp/tickcore-lp.XXXXXX)
taskset -c 1 "$root/target/release/tickcore" --cpus 1 --listen 127.0.0.1:18095 --data-dir "$d" \
  --report-interval 0 --retention 36500d --shed-lag "${SHED_LAG:-20ms}" > "$d.log" 2>&1 & tp=$!
sleep 1
taskset -c 0 wrk -t1 -c"$conns" -d5s --timeout 10s -s "$lua" "http://127.0.0.1:18095/write?db=bench" > /dev/null
taskset -c 0 wrk -t1 -c"$conns" -d"${secs}s" --timeout 10s --latency -s "$lua" \
  "http://127.0.0.1:18095/write?db=bench" > "$d.wrk"
kill -TERM "$tp"; wait "$tp" 2>/dev/null || true
row "tickcore /write (sync, shed-lag ${SHED_LAG:-20ms})" "$d.wrk"

# shellcheck source=/dev/null
source "$peers/peers.sh"
start_peer vm
trap 'stop_peer vm; empty_trash' EXIT
url=$(peer_url vm)
taskset -c 0 wrk -t1 -c"$conns" -d5s --timeout 10s -s "$lua" "$url" > /dev/null
taskset -c 0 wrk -t1 -c"$conns" -d"${secs}s" --timeout 10s --latency -s "$lua" "$url" > "$d.vm.wrk"
row "VictoriaMetrics /write" "$d.vm.wrk"
stop_peer vm >/dev/null 2>&1
trap empty_trash EXIT
start_nginx >/dev/null 2>&1
taskset -c 0 wrk -t1 -c"$conns" -d"${secs}s" --timeout 10s --latency -s "$lua" "http://127.0.0.1:$NGINX_PORT/write" > "$d.ng.wrk"
stop_peer nginx >/dev/null 2>&1
row "nginx no-op (client ceiling)" "$d.ng.wrk"
discard "$d"
rm -f "$d.log" "$d.wrk" "$d.vm.wrk" "$d.ng.wrk"
