#!/usr/bin/env bash
# What safe retries cost single-message ingest: wrk -t1 -c40 (CPU 0) against tickcore --cpus 1 (CPU 1),
# fresh data directory per column, ROUNDS rounds of three columns in one run:
#   unique      this build, every message new (loadgen/wrk/save.lua)
#   retried     this build, every message sent twice in a row (save_retry.lua: half are duplicates)
#   no-dedup    the build before duplicates were detected (BASE, default the parent of the commit that
#               added the check), every message new
#   benches/dedup_cost.sh [SECS] [ROUNDS]
set -euo pipefail
secs=${1:-15}; rounds=${2:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --manifest-path "$root/Cargo.toml" --bin tickcore >/dev/null 2>&1
intro=$(git -C "$root" log --format=%H -S'fn inflight_push' -- src/store/view.rs | tail -1)
base=${BASE:-$intro^}
old=/tmp/tickcore-nodedup
if [ ! -x "$old/target/release/tickcore" ] || [ "$(cat "$old/.rev" 2>/dev/null)" != "$(git -C "$root" rev-parse "$base")" ]; then
  rm -rf "$old"
  git -C "$root" worktree add -f --detach "$old" "$base" >/dev/null 2>&1
  cargo build --release --manifest-path "$old/Cargo.toml" --bin tickcore >/dev/null 2>&1
  git -C "$root" rev-parse "$base" > "$old/.rev"
fi
ulimit -l 65536 2>/dev/null || true
# shellcheck source=benches/trash.sh
source "$root/benches/trash.sh"
trap empty_trash EXIT
settle
one() { # BINARY SCRIPT LABEL
  local d tp
  d=$(mktemp -d /tmp/tickcore-dedup.XXXXXX)
  taskset -c 1 "$1" --cpus 1 --listen 127.0.0.1:18098 --data-dir "$d" --report-interval 0 > "$d.log" 2>&1 & tp=$!
  sleep 1
  printf '  %-10s ' "$3"
  taskset -c 0 wrk -t1 -c40 -d"${secs}s" --timeout 10s -s "$root/loadgen/wrk/$2" http://127.0.0.1:18098/save |
    grep -E '^RESULT' | sed 's/^RESULT //'
  curl -s http://127.0.0.1:18098/metrics | awk '/^tickcore_records_(ingested|deduplicated)_total/ {printf "    %s %s\n", $1, $2}' || true
  kill -TERM "$tp"; wait "$tp" 2>/dev/null || true
  discard "$d"; rm -f "$d.log"
}
for r in $(seq 1 "$rounds"); do
  echo "round $r (wrk -t1 -c40, ${secs}s per column)"
  one "$root/target/release/tickcore" save.lua unique
  one "$root/target/release/tickcore" save_retry.lua retried
  one "$old/target/release/tickcore" save.lua no-dedup
done
