#!/usr/bin/env bash
# GET over a window of one tag: tickcore's /api against VictoriaMetrics' query_range (last_over_time, nocache)
# with the same client (benches/query_window.py), each server pinned to CPU 1 on a fresh data directory,
# client on CPU 0. tickcore is queried from its tag files (--checkpoint-interval 1s, 3 s after the preload).
#   benches/query_window.sh [WINDOW] [RECORDS] [QUERIES]   e.g. benches/query_window.sh 30d 43200
# The 1 h case of the peers' figures is `benches/query_window.sh 1h 360000`. Prints one JSON line per server;
# PEER=none skips VictoriaMetrics.
set -euo pipefail
window=${1:-1h}
records=${2:-360000}
queries=${3:-200}
here=$(cd "$(dirname "$0")" && pwd); root=$(dirname "$here")
peers=$root/../shared/peers
cargo build --release --manifest-path "$root/Cargo.toml" --bin tickcore >/dev/null 2>&1
ulimit -l 65536 2>/dev/null || true
# shellcheck source=benches/trash.sh
source "$here/trash.sh"
settle
d=$(mktemp -d /tmp/tickcore-qwin.XXXXXX)
taskset -c 1 "$root/target/release/tickcore" --cpus 1 --listen 127.0.0.1:18095 --data-dir "$d" --report-interval 0 \
  --retention 36500d --checkpoint-interval 1s >/dev/null & tp=$!
trap 'kill -9 $tp 2>/dev/null || true; discard "$d"; empty_trash' EXIT
until curl -s -o /dev/null "http://127.0.0.1:18095/health"; do sleep 0.1; done
taskset -c 0 python3 "$here/query_window.py" --target tickcore --port 18095 --window "$window" --records "$records" \
  --queries "$queries" --settle 3
kill -TERM "$tp"; wait "$tp" 2>/dev/null || true
if [ "${PEER:-vm}" = vm ]; then
  if ! command -v victoria-metrics >/dev/null; then bash "$peers/install.sh" >/dev/null; fi
  # shellcheck disable=SC1091
  source "$peers/peers.sh"
  start_vm >/dev/null 2>&1
  taskset -c 0 python3 "$here/query_window.py" --target vm --port "$VM_PORT" --window "$window" --records "$records" \
    --queries "$queries" || echo '{"target": "vm", "error": "failed"}'
  stop_peer vm >/dev/null 2>&1
fi
