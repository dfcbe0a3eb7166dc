#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 60) with libFuzzer, starting from the committed seeds; new
# corpus entries go to fuzz/corpus/<target>/ (not committed; tests/fuzz_corpus.rs replays them when present),
# crashes to fuzz/artifacts/<target>/. Stable toolchain: RUSTC_BOOTSTRAP lets cargo-fuzz pass its flags.
# Inputs grow to MAX_LEN bytes (default 1 MiB: deep nesting and long lines hide in big inputs, not small ones).
# Usage: [MAX_LEN=bytes] fuzz/run.sh [SECONDS] [TARGET...]      (needs: cargo install cargo-fuzz)
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(http_head chunked_body save_body query_string wal_log line_protocol replicated_batch)
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t for ${secs}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -max_len="${MAX_LEN:-1048576}" 2>&1 |
    grep -E "^#[0-9]+.*(DONE|pulse)|ERROR|SUMMARY|Done [0-9]+ runs" | tail -n 2
done
