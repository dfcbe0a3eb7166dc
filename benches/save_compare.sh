#!/usr/bin/env bash
# Single-message POST /save throughput, three columns in one run, same wrk client pinned to CPU 0, each server
# pinned to CPU 1: the nginx no-op (`return 204`), the glommio no-op (benches/noop) and tickcore
# --durability sync. Usage: benches/save_compare.sh [SECONDS] [ROUNDS] [CONNECTIONS]
# (40 connections by default, as the issue's wrk -c40; a closed-loop client with few connections measures
# the commit latency of a durable store as much as its throughput, so try 200 too). ASYNC=1 adds a fourth
# column, tickcore --durability async: the same request path without waiting for the disk. VM=1 adds
# VictoriaMetrics from ../shared/peers, single-row line protocol (its post_lp.lua: the same messages as LP).
set -euo pipefail
secs=${1:-20}; rounds=${2:-1}; conns=${3:-40}
here=$(cd "$(dirname "$0")" && pwd); root=$(dirname "$here")
peers=$root/../shared/peers
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then bash "$peers/install.sh" >/dev/null; fi
cargo build --release --manifest-path "$root/Cargo.toml" --bin tickcore --bin noop-glommio >/dev/null 2>&1
ulimit -l 65536 2>/dev/null || true
# shellcheck source=benches/trash.sh
source "$here/trash.sh"
trap empty_trash EXIT
settle
run_tickcore() { # DURABILITY -> wrk RESULT line
  local d tp r
  d=$(mktemp -d /tmp/tickcore-bench.XXXXXX)
  taskset -c 1 "$root/target/release/tickcore" --cpus 1 --listen 127.0.0.1:18092 --data-dir "$d" --report-interval 0 --durability "$1" >/dev/null & tp=$!; sleep 1
  r=$(run_wrk "http://127.0.0.1:18092/save"); kill -TERM "$tp"; wait "$tp" 2>/dev/null || true; discard "$d"
  echo "$r"
}
run_wrk() { # URL [LUA] -> RESULT line
  taskset -c 0 wrk -t1 -c"$conns" -d"${secs}s" --timeout 10s -s "${2:-$root/loadgen/wrk/save.lua}" "$1" | sed -n 's/^RESULT //p'
}
# shellcheck disable=SC1091
source "$peers/peers.sh"
for r in $(seq "$rounds"); do
  start_nginx >/dev/null 2>&1
  ng=$(run_wrk "http://127.0.0.1:$NGINX_PORT/save"); stop_peer nginx >/dev/null 2>&1
  taskset -c 1 "$root/target/release/noop-glommio" 127.0.0.1:18091 1 >/dev/null & np=$!; sleep 0.5
  no=$(run_wrk "http://127.0.0.1:18091/save"); kill "$np"; wait "$np" 2>/dev/null || true
  tc=$(run_tickcore sync)
  [ "${ASYNC:-0}" = 1 ] && ta=$(run_tickcore async)
  if [ "${VM:-0}" = 1 ]; then
    start_vm >/dev/null 2>&1
    vm=$(run_wrk "$(peer_url vm)" "$peers/lua/post_lp.lua"); stop_peer vm >/dev/null 2>&1
  fi
  echo "round $r ($conns connections, ${secs}s each)"
  echo "  nginx no-op      $ng"
  echo "  glommio no-op    $no"
  echo "  tickcore (sync)  $tc"
  [ "${ASYNC:-0}" = 1 ] && echo "  tickcore (async) $ta"
  [ "${VM:-0}" = 1 ] && echo "  VictoriaMetrics  $vm"
  python3 - "$ng" "$no" "$tc" "${ta:-}" "${vm:-}" <<'PY'
import sys, json
def rate(a):
    if not a: return None
    if a.startswith("{"): return float(json.loads(a)["rps"])  # the peers' Lua scripts print JSON
    return float(a.split()[0].split('=')[1])
rps = [rate(a) for a in sys.argv[1:]]
print("  ratios: glommio-noop/nginx %.2f  tickcore/nginx %.2f  tickcore/glommio-noop %.2f" % (rps[1]/rps[0], rps[2]/rps[0], rps[2]/rps[1]))
if rps[4]:
    print("  VictoriaMetrics: tickcore-sync/VictoriaMetrics %.2f" % (rps[2]/rps[4]))
if rps[3]:
    print("  async: tickcore-async/nginx %.2f  tickcore-async/glommio-noop %.2f" % (rps[3]/rps[0], rps[3]/rps[1]))
PY
done
