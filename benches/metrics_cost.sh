#!/usr/bin/env bash
# What a Prometheus scraper costs the ingest path: single-message POST /save with wrk (CPU 0) against tickcore
# --cpus 1 (CPU 1), alternately without and with a client fetching GET /metrics every second (as a scraper
# does), ROUNDS times each, one engine per run. Usage: benches/metrics_cost.sh [SECONDS] [ROUNDS] [CONNECTIONS]
set -euo pipefail
secs=${1:-20}; rounds=${2:-2}; conns=${3:-40}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v wrk >/dev/null || bash "$root/../shared/peers/install.sh" >/dev/null
cargo build --release --manifest-path "$root/Cargo.toml" --bin tickcore >/dev/null 2>&1
# shellcheck source=benches/trash.sh
source "$root/benches/trash.sh"
trap empty_trash EXIT
settle
one() { # SCRAPE(0|1) -> wrk RESULT line, and the scrapes made
  local d tp sp="" r n=0
  d=$(mktemp -d /tmp/tickcore-bench.XXXXXX)
  taskset -c 1 "$root/target/release/tickcore" --cpus 1 --listen 127.0.0.1:18093 --data-dir "$d" --report-interval 0 >/dev/null & tp=$!
  sleep 1
  if [ "$1" = 1 ]; then
    ( while :; do curl -s -o /dev/null http://127.0.0.1:18093/metrics && echo x; sleep 1; done ) > "$d.scrapes" & sp=$!
  fi
  r=$(taskset -c 0 wrk -t1 -c"$conns" -d"${secs}s" --timeout 10s -s "$root/loadgen/wrk/save.lua" http://127.0.0.1:18093/save | sed -n 's/^RESULT //p')
  if [ -n "$sp" ]; then kill "$sp"; wait "$sp" 2>/dev/null || true; n=$(wc -l < "$d.scrapes"); fi
  kill -TERM "$tp"; wait "$tp" 2>/dev/null || true
  discard "$d"; rm -f "$d.scrapes"
  echo "$r | scrapes $n"
}
for r in $(seq "$rounds"); do
  echo "round $r ($conns connections, ${secs}s each)"
  echo "  no scraper       $(one 0)"
  echo "  /metrics every 1s $(one 1)"
done
