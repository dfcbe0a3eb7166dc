#!/usr/bin/env bash
# What a cold query does to the writes on the same core: loadgen writes 10k msg/s (single messages, 64
# connections) for SECONDS while a second client drops the page cache (needs root) and queries 1 h of t0
# (360k records, 1000 samples) every 200 ms. A page fault on an mmapped tag file stalls the whole core; a DMA
# read stalls only its query. Run it with READS=mmap and READS=dma (READ_CACHE_MIB=1: every query reads the
# disk) and compare the write percentiles. Usage: sudo READS=dma benches/cold_queries_under_ingest.sh [SECONDS]
set -euo pipefail
secs=${1:-20}
here=$(cd "$(dirname "$0")" && pwd); root=$(dirname "$here")
cargo build --release --manifest-path "$root/Cargo.toml" -p tickcore -p loadgen --bin tickcore --bin loadgen >/dev/null 2>&1
# shellcheck source=benches/trash.sh
source "$root/benches/trash.sh"
settle
d=$(mktemp -d /tmp/tickcore-coldload.XXXXXX)
taskset -c 1 "$root/target/release/tickcore" --cpus 1 --listen 127.0.0.1:18095 --data-dir "$d" --report-interval 0 \
  --reads "${READS:-mmap}" --read-cache-mib "${READ_CACHE_MIB:-1}" --checkpoint-interval 1s >/dev/null & tp=$!
trap 'kill -TERM $tp 2>/dev/null; wait $tp 2>/dev/null; discard "$d"; empty_trash' EXIT
sleep 1
taskset -c 0 python3 "$here/query_bench.py" --port 18095 --queries 5 >/dev/null
sleep 3
taskset -c 0 python3 - "$secs" <<'PY' &
import http.client, time, sys, subprocess
secs = float(sys.argv[1])
S = (int(time.time()) // 3600) * 3600 - 3 * 3600
path = "/api?tag=t0&start=%d&end=%d" % (S * 10**9, (S + 3600) * 10**9)
c = http.client.HTTPConnection("127.0.0.1", 18095)
lat = []
end = time.time() + secs
while time.time() < end:
    subprocess.run(["sh", "-c", "echo 1 > /proc/sys/vm/drop_caches"], check=True)
    t = time.perf_counter(); c.request("GET", path); r = c.getresponse(); r.read()
    lat.append((time.perf_counter() - t) * 1000)
    time.sleep(0.2)
lat.sort()
print("cold queries: p50 %.2f ms  p99 %.2f ms  max %.2f ms  (%d)" % (lat[len(lat)//2], lat[int(len(lat)*0.99)], lat[-1], len(lat)))
PY
qp=$!
taskset -c 0 "$root/target/release/loadgen" --url http://127.0.0.1:18095 --rate 10000 --duration "${secs}s" \
  --query-clients 0 --probe-interval 0s --report-interval 1000s --json "$d/load.json" >/dev/null 2>&1
wait "$qp"
python3 -c "import json,sys; w=json.load(open(sys.argv[1]))['write']; print('writes (reads=%s): p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms  (%d requests)' % (sys.argv[2], w['p50_ms'], w['p99_ms'], w['p999_ms'], w['max_ms'], w['count']))" "$d/load.json" "${READS:-mmap}"
