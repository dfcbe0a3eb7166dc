#!/usr/bin/env bash
# GET /api over 1 h of a tag holding 360k records (100/s), 1000 samples, 200 queries after 5 warm-up:
# tickcore (pinned to CPU 1; from the tag file also with each agg= and five aggregations at once)
# and, in the same run with the same kind of client, VictoriaMetrics from
# ../shared/peers (skip it with PEER=none). Client pinned to CPU 0. READS=dma (and READ_CACHE_MIB) choose
# the engine's read path. Usage: benches/query_bench.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(dirname "$here")
cargo build --release --manifest-path "$root/Cargo.toml" --bin tickcore >/dev/null 2>&1
ulimit -l 65536 2>/dev/null || true
# shellcheck source=benches/trash.sh
source "$here/trash.sh"
trap empty_trash EXIT
settle
d=$(mktemp -d /tmp/tickcore-qbench.XXXXXX)
taskset -c 1 "$root/target/release/tickcore" --cpus 1 --listen 127.0.0.1:18093 --data-dir "$d" --report-interval 0 --reads "${READS:-mmap}" --read-cache-mib "${READ_CACHE_MIB:-64}" >/dev/null & tp=$!
sleep 1
taskset -c 0 python3 "$here/query_bench.py" --port 18093 --queries "${QUERIES:-200}" --out "$d/tickcore.json"
echo "  (again after a checkpoint moved the hour from memory into the tag file)"
sleep 12
taskset -c 0 python3 - "$d" <<'PY'
import http.client, time, sys
S = (int(time.time()) // 3600) * 3600 - 3 * 3600
c = http.client.HTTPConnection("127.0.0.1", 18093)
base = "/api?tag=t0&start=%d&end=%d" % (S * 10**9, (S + 3600) * 10**9)
for agg in [""] + ["&agg=" + a for a in ("last", "first", "min", "max", "mean", "sum", "count", "twa")] + ["&agg=min,max,mean,count,twa"]:
    lat = []
    for i in range(205):
        t = time.perf_counter(); c.request("GET", base + agg); r = c.getresponse(); r.read()
        assert r.status == 200, r.status
        if i >= 5: lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    name = agg.replace("&agg=", "agg=") or "as-of (last)"
    print("tickcore /api from tag file, %-28s p50 %.3f ms  p99 %.3f ms  max %.3f ms" % (name, lat[len(lat)//2], lat[int(len(lat)*0.99)], lat[-1]))
PY
kill -TERM "$tp"; wait "$tp" 2>/dev/null || true; discard "$d"
if [ "${PEER:-vm}" = vm ]; then
  peers=$root/../shared/peers
  PEERS=vm QUERIES="${QUERIES:-200}" bash "$peers/bench_query.sh" >/dev/null 2>&1 || true
  python3 -c "import json;d=json.load(open('$peers/results/query_vm.json'));print('VictoriaMetrics query_range: p50 %.3f ms  p99 %.3f ms  max %.3f ms' % (d.get('p50_ms',0), d.get('p99_ms',0), d.get('max_ms',0)))" 2>/dev/null || echo "VictoriaMetrics: not measured (run ../shared/peers/install.sh)"
fi
