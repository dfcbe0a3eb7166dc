#!/usr/bin/env bash
# Every headline figure in one sitting, then one dated table with the commit inserted at the top of
# benches/RESULTS.md. Engine --cpus 1 on CPU 1, clients on CPU 0, references run by the same scripts:
#   1. single-message POST /save, wrk -c40 and -c200: nginx no-op, glommio no-op, tickcore sync and async
#      (benches/save_compare.sh);
#   2. bulk NDJSON, 1000 per POST: loadgen's ceiling against the nginx no-op and the highest open-loop rate
#      tickcore holds with write p99 <= 50 ms (benches/bulk_ndjson.sh);
#   3. bulk line protocol, 1000 per POST: tickcore, VictoriaMetrics and wrk's own ceiling (benches/lp_compare.sh);
#   4. 1 h (360k records) and 30-day (43,200 records) /api against VictoriaMetrics (benches/query_window.sh);
#   5. 100k tags written uniformly at 100k msg/s (benches/scale.sh; 600 s);
#   6. cold start with 10k to 300k tag files (benches/start_curve.sh; fixtures made once, kept outside the repo);
#   7. the specification's schedule (batch 10) and the 10x schedule (100k tags, 100 query clients, BATCH10X
#      messages per POST, default 1000) for 200 s each.
# About 35 minutes (the first run longer, while it makes the start-up fixtures). Needs root (page-cache drops)
# and ../shared/peers. QUICK=1: short durations and small fixtures (a check of the script, ~8 minutes; its
# table is marked quick). Raw outputs stay in OUT (default /var/tmp/tickcore-all/<time>).
#   benches/all.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(dirname "$here")
stamp=$(date -u +%Y%m%d-%H%M%S)
out=${OUT:-/var/tmp/tickcore-all/$stamp}
mkdir -p "$out"
quick=${QUICK:-0}
q() { if [ "$quick" = 1 ]; then echo "$1"; else echo "$2"; fi; }
cargo build --release --workspace --manifest-path "$root/Cargo.toml" >/dev/null 2>&1 || { echo "build failed"; exit 1; }
ulimit -l 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# shellcheck source=benches/trash.sh
source "$here/trash.sh"
trap empty_trash EXIT
settle
began=$(date +%s)
step() { # step NAME COMMAND...: runs it, output to OUT/NAME.txt, says how long it took
  local t0; t0=$(date +%s)
  echo "[$(date +%H:%M:%S)] $1: ${*:2}"
  "${@:2}" > "$out/$1.txt" 2>&1 || echo "  ($1 exited $?)" | tee -a "$out/$1.txt"
  echo "  $(($(date +%s) - t0)) s"
}
lg=$root/target/release/loadgen
spec() { # spec NAME EXTRA...: the schedule against a fresh engine, loadgen's JSON summary to OUT/NAME.json
  local name=$1 d tp; shift
  d=$(mktemp -d /tmp/tickcore-all-spec.XXXXXX)
  taskset -c 1 "$root/target/release/tickcore" --cpus 1 --listen 127.0.0.1:18099 --data-dir "$d" \
    --report-interval 5s --retention 36500d > "$out/$name.engine.log" 2>&1 & tp=$!
  until curl -s -o /dev/null http://127.0.0.1:18099/health; do sleep 0.1; done
  taskset -c 0 "$lg" --url http://127.0.0.1:18099 --schedule spec --duration "$(q 40s 200s)" --check \
    --report-interval 20s --json "$out/$name.json" "$@"
  local rc=$?
  kill -TERM "$tp"; wait "$tp" 2>/dev/null; discard "$d"
  return $rc
}

step single40 env ASYNC=1 bash "$here/save_compare.sh" "$(q 5 10)" 1 40
step single200 env ASYNC=1 bash "$here/save_compare.sh" "$(q 5 10)" 1 200
step bulk bash "$here/bulk_ndjson.sh" "$(q 5 10)"
step lp bash "$here/lp_compare.sh" "$(q 5 15)" 40
step query1h bash "$here/query_window.sh" 1h 360000 "$(q 50 200)"
step query30d bash "$here/query_window.sh" 30d 43200 "$(q 50 200)"
step scale bash "$here/scale.sh" "$(q 60 600)" 100000 100000
# shellcheck disable=SC2046
step start bash "$here/start_curve.sh" $(q "10000 30000" "10000 30000 100000 300000")
step spec spec spec --batch 10 --query-clients 10
step spec10x spec spec10x --batch "${BATCH10X:-1000}" --query-clients 100 --tags 100000 \
  --spec-base-rate 100000 --spec-plateau-rate 500000 --spec-burst-rate 2000000
minutes=$(( ($(date +%s) - began + 59) / 60 ))
commit=$(git -C "$root" rev-parse --short HEAD)
git -C "$root" diff --quiet HEAD -- src loadgen benches Cargo.toml || commit="$commit+uncommitted"
python3 "$here/all_table.py" "$out" "$commit" "$minutes" "$quick" "${BATCH10X:-1000}" > "$out/table.md"
cat "$out/table.md"
python3 - "$root/benches/RESULTS.md" "$out/table.md" <<'PY'
import sys
path, table = sys.argv[1], open(sys.argv[2]).read()
text = open(path).read()
at = text.index("\n## ") + 1 if "\n## " in text else len(text)
open(path, "w").write(text[:at] + table + "\n" + text[at:])
PY
echo "inserted at the top of benches/RESULTS.md; raw outputs in $out"
