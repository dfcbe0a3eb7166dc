#!/usr/bin/env bash
# The long version of tests/start_stress.rs: ROUNDS rounds of 6 engines started at the same moment (two
# cores each, fresh data directories, release build); fails if any start prints no ready line within 20 s.
#   benches/start_stress.sh [ROUNDS]      (default 84: 504 starts)
set -euo pipefail
cd "$(dirname "$0")/.."
START_STRESS_ROUNDS=${1:-84} cargo nextest run --profile long --release --test start_stress --no-capture
