#!/usr/bin/env bash
# The 10x scale run: TAGS tags (default 100,000) written uniformly at RATE msg/s (default 100,000, NDJSON bodies
# of BATCH=1000) for SECS seconds (default 120; the goal's run is 600) by loadgen on CPU 0, with 10 query clients
# at 1 q/s on random tags (1 h window), against one engine core (`--cpus 1` on CPU 1, --durability sync,
# --checkpoint-interval 10s). Reports:
#   - acknowledged rate, write and query p99, errors, `--check` (every acknowledged record of the followed tags);
#   - every checkpoint's duration and files (from the console), the longest against its interval;
#   - RssAnon / RssFile peak during the run, and once idle after the last checkpoint (log backlog 0); the log's
#     largest size;
#   - cold start: clean shutdown, page cache dropped (needs root), time until /health answers 200.
#   benches/scale.sh [SECS] [RATE] [TAGS]        e.g. benches/scale.sh 600 100000 100000
# ENGINE_FLAGS adds engine flags (e.g. ENGINE_FLAGS="--checkpoint-budget 5s"); KEEP=DIR copies the engine's
# console and loadgen's output there (per-checkpoint lines, loadgen's 30 s reports).
# Prints one line per figure, `key value`, for benches/all.sh; exits 1 when loadgen reports a failed verdict.
set -euo pipefail
secs=${1:-120}
rate=${2:-100000}
tags=${3:-100000}
batch=${BATCH:-1000}
interval=10
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --manifest-path "$root/Cargo.toml" --workspace >/dev/null 2>&1
bin=$root/target/release
port=18097
d=$(mktemp -d /tmp/tickcore-scale.XXXXXX)
# shellcheck source=benches/trash.sh
source "$root/benches/trash.sh"
trap 'kill -9 $tp 2>/dev/null || true; discard "$d"; empty_trash' EXIT
settle

read -r -a engine_flags <<< "${ENGINE_FLAGS:-}"
start_engine() { # start_engine LOG
  taskset -c 1 "$bin/tickcore" --cpus 1 --listen 127.0.0.1:$port --data-dir "$d/data" --report-interval 5s \
    --retention 36500d --checkpoint-interval ${interval}s "${engine_flags[@]}" > "$1" 2>&1 & tp=$!
}
health() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" 2>/dev/null || true; }
rss() { # rss KEY -> kB
  awk -v k="$1:" '$1 == k { print $2 }' "/proc/$tp/status" 2>/dev/null || echo 0
}

start_engine "$d/engine.log"
until [ "$(health)" = 200 ]; do sleep 0.1; done
: > "$d/samples"
( while kill -0 $tp 2>/dev/null; do
    wal=$(du -sk "$d/data/wal" 2>/dev/null | cut -f1)
    echo "$(rss RssAnon) $(rss RssFile) ${wal:-0}" >> "$d/samples"
    sleep 1
  done ) & sampler=$!

set +e
taskset -c 0 "$bin/loadgen" --url http://127.0.0.1:$port --tags "$tags" --tag-distribution uniform \
  --rate "$rate" --batch "$batch" --connections 4 --duration "${secs}s" --query-clients 10 --query-rate 1 \
  --window 1h --slo-query-p99-ms 5 --report-interval 30s --check --json "$d/loadgen.json" > "$d/loadgen.out" 2>&1
lg=$?
set -e
peak_anon=$(awk 'm < $1 { m = $1 } END { print m }' "$d/samples")
peak_file=$(awk 'm < $2 { m = $2 } END { print m }' "$d/samples")
peak_wal=$(awk 'm < $3 { m = $3 } END { print m }' "$d/samples")
# Idle: once the last records are in their files (the log backlog is empty: the checkpoints running when the
# load stopped, which can take several intervals, have finished), up to 300 s.
log_bytes() {
  curl -s "http://127.0.0.1:$port/metrics" | awk '/^tickcore_log_bytes/ { s += $2 } END { print s + 0 }'
}
for _ in $(seq 300); do
  [ "$(log_bytes)" = 0 ] && break
  sleep 1
done
sleep 2
idle_anon=$(rss RssAnon)
idle_file=$(rss RssFile)
kill $sampler 2>/dev/null || true

kill -TERM $tp; wait $tp 2>/dev/null || true
files=$(find "$d/data" -name '*.rec' | wc -l)
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || echo "note: page cache not dropped (not root)"
t0=$(date +%s.%N)
start_engine "$d/engine2.log"
until [ "$(health)" = 200 ]; do sleep 0.01; done
t1=$(date +%s.%N)
kill -TERM $tp; wait $tp 2>/dev/null || true

python3 - "$d" "$lg" "$interval" "$peak_anon" "$peak_file" "$peak_wal" "$idle_anon" "$idle_file" "$files" "$t0" "$t1" <<'PY'
import json, re, sys
d, lg, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
peak_anon, peak_file, peak_wal, idle_anon, idle_file, files = map(int, sys.argv[4:10])
t0, t1 = float(sys.argv[10]), float(sys.argv[11])
log = open(d + "/engine.log").read()
cps = [(int(n), int(f), float(s)) for n, f, s in re.findall(r'checkpoint (\d+) \((\d+) files, max ([0-9.]+)s\)', log)]
s = json.load(open(d + "/loadgen.json"))
out = open(d + "/loadgen.out").read()
def find(pat, default="?"):
    m = re.search(pat, out, re.M)
    return m.group(1) if m else default
print("acked_msg_per_s", find(r'acknowledged (\d+) msg/s'))
print("write_p99_ms", find(r'^\s*write\s+p50 [0-9.]+ p90 [0-9.]+ p99 ([0-9.]+)'))
print("query_p99_ms", find(r'^\s*query\s+p50 [0-9.]+ p90 [0-9.]+ p99 ([0-9.]+)'))
print("errors", find(r'^SLO errors\s+(\d+)'))
print("check", "exact" if "reads back exactly" in out else "FAILED")
print("checkpoints", sum(n for n, _, _ in cps))
print("checkpoint_max_s", max((x for _, _, x in cps), default=0.0), "interval_s", interval)
print("checkpoint_max_files", max((f for _, f, _ in cps), default=0))
print("rss_anon_peak_mib", round(peak_anon / 1024), "rss_file_peak_mib", round(peak_file / 1024))
print("rss_anon_idle_mib", round(idle_anon / 1024), "rss_file_idle_mib", round(idle_file / 1024))
print("log_peak_mib", round(peak_wal / 1024))
print("tag_files", files)
print("cold_start_s", round(t1 - t0, 2))
print("loadgen_exit", lg)
PY
if [ -n "${KEEP:-}" ]; then
  mkdir -p "$KEEP" && cp "$d/engine.log" "$d/engine2.log" "$d/loadgen.out" "$d/loadgen.json" "$d/samples" "$KEEP/"
fi
[ "$lg" = 0 ]
