#!/usr/bin/env bash
# Cold-cache GET /api: the cost of serving from memory-mapped tag files whose pages are not in the page cache
# (each fault stalls the whole core). Loads 1 h of t0 (360k records) plus 24 h of a second tag, checkpoints,
# then alternates: drop the page cache (needs root), one query; and reports the distribution beside warm
# queries in the same run. READS=dma reads with O_DIRECT instead (READ_CACHE_MIB=1 keeps its own block cache
# from holding the hour, so every query reads the disk). Usage: sudo benches/query_cold.sh [ROUNDS]
set -euo pipefail
rounds=${1:-30}
here=$(cd "$(dirname "$0")" && pwd); root=$(dirname "$here")
cargo build --release --manifest-path "$root/Cargo.toml" --bin tickcore >/dev/null 2>&1
# shellcheck source=benches/trash.sh
source "$root/benches/trash.sh"
settle
d=$(mktemp -d /tmp/tickcore-cold.XXXXXX)
taskset -c 1 "$root/target/release/tickcore" --cpus 1 --listen 127.0.0.1:18094 --data-dir "$d" --report-interval 0 --reads "${READS:-mmap}" --read-cache-mib "${READ_CACHE_MIB:-64}" \
  --checkpoint-interval 1s >/dev/null & tp=$!
trap 'kill -TERM $tp 2>/dev/null; wait $tp 2>/dev/null; discard "$d"; empty_trash' EXIT
sleep 1
taskset -c 0 python3 "$here/query_bench.py" --port 18094 --queries 20 >/dev/null
sleep 3
taskset -c 0 python3 - "$rounds" <<'PY'
import http.client, time, sys, subprocess
rounds = int(sys.argv[1])
S = (int(time.time()) // 3600) * 3600 - 3 * 3600
path = "/api?tag=t0&start=%d&end=%d" % (S * 10**9, (S + 3600) * 10**9)
def q(c):
    t = time.perf_counter(); c.request("GET", path); r = c.getresponse(); r.read(); return (time.perf_counter() - t) * 1000
c = http.client.HTTPConnection("127.0.0.1", 18094)
cold, warm = [], []
for i in range(rounds):
    subprocess.run(["sh", "-c", "sync; echo 1 > /proc/sys/vm/drop_caches"], check=True)
    cold.append(q(c))
    warm.append(q(c))
for name, l in (("cold (page cache dropped)", cold), ("warm (same run)", warm)):
    l.sort()
    print("%-26s p50 %.3f ms  p99 %.3f ms  max %.3f ms  (%d queries)" % (name, l[len(l)//2], l[int(len(l)*0.99)], l[-1], len(l)))
PY
