#!/usr/bin/env bash
# Cold start against the number of tag files: for each N, a data directory holding N tags written once each in
# one segment (N tag files and N sidecars, checkpointed by a clean stop) is started with the page cache dropped
# (needs root), engine --cpus 1 on CPU 1, and timed until /health answers 200.
#   benches/start_curve.sh [N...]          default: 10000 30000 100000 300000
# The directories are fixtures, made once and kept in FIXTURES (default /var/tmp/tickcore-fixtures), under a key
# of docs/format.md's contents (a format change makes new ones). Prints `start_s N SECONDS` per N.
set -euo pipefail
sizes=${*:-10000 30000 100000 300000}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --manifest-path "$root/Cargo.toml" --bin tickcore >/dev/null 2>&1
ulimit -l 65536 2>/dev/null || true
key=$(sha256sum "$root/docs/format.md" | cut -c1-12)
fixtures=${FIXTURES:-/var/tmp/tickcore-fixtures}/$key
mkdir -p "$fixtures"
port=18098
trap 'kill -9 ${tp:-} 2>/dev/null || true; empty_trash' EXIT
# shellcheck source=benches/trash.sh
source "$root/benches/trash.sh"
settle

start_engine() { # start_engine DIR
  taskset -c 1 "$root/target/release/tickcore" --cpus 1 --listen 127.0.0.1:$port --data-dir "$1" \
    --report-interval 0 --retention 36500d >/dev/null 2>&1 & tp=$!
}
health() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" 2>/dev/null || true; }

make_fixture() { # make_fixture N DIR: N tags, one record each, one segment; a clean stop checkpoints them
  local n=$1 dir=$2
  rm -rf "$dir.tmp"
  start_engine "$dir.tmp"
  until [ "$(health)" = 200 ]; do sleep 0.1; done
  taskset -c 0 python3 - "$n" "$port" <<'PY'
import http.client, sys, time
n, port = int(sys.argv[1]), int(sys.argv[2])
t = (int(time.time()) // 86400) * 86400 * 10**9 - 86400 * 10**9 // 2   # noon yesterday: one segment
c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
vals = ",".join("%d.5" % i for i in range(10))
for b in range(0, n, 1000):
    body = "\n".join('{"time":%d,"tag":"t%d","values":[%s]}' % (t + k, k, vals) for k in range(b, min(n, b + 1000)))
    c.request("POST", "/save", body)
    r = c.getresponse(); r.read()
    assert r.status == 204, r.status
PY
  kill -TERM "$tp"; wait "$tp" 2>/dev/null || true
  mv "$dir.tmp" "$dir"
}

for n in $sizes; do
  dir=$fixtures/$n
  [ -d "$dir" ] || make_fixture "$n" "$dir"
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || echo "note: page cache not dropped (not root)" >&2
  t0=$(date +%s.%N)
  start_engine "$dir"
  until [ "$(health)" = 200 ]; do
    kill -0 "$tp" 2>/dev/null || { echo "engine exited while starting on $dir" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(date +%s.%N)
  kill -TERM "$tp"; wait "$tp" 2>/dev/null || true
  files=$(find "$dir/seg" -name '*.rec' | wc -l)
  echo "start_s $files $(python3 -c "print(round($t1 - $t0, 2))")"
done
