# shellcheck shell=bash
# Sourced by the cluster benchmarks: three nats-server on loopback forming one JetStream cluster, as
# docs/cluster.md requires (file storage, sync_interval: always).
#   nats_cluster DIR NAME BASE   starts them (client ports BASE..BASE+2, routes BASE+10.., monitoring
#                                BASE+20..; stores and logs in DIR, named NAME-*) and waits until each is
#                                healthy; sets NATS_URLS (comma-separated) and adds their pids to NATS_PIDS.
# The binary is $NATS_SERVER (default: nats-server on PATH).
NATS_PIDS=()
NATS_URLS=""
nats_cluster() {
  local dir=$1 name=$2 base=$3 i j routes
  NATS_URLS=""
  for i in 0 1 2; do
    routes=""
    for j in 0 1 2; do [ "$j" = "$i" ] || routes="$routes nats://127.0.0.1:$((base + 10 + j)),"; done
    cat > "$dir/$name-n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$((base + i))
http: 127.0.0.1:$((base + 20 + i))
jetstream { store_dir: "$dir/$name-s$i", sync_interval: always, max_file_store: 16GB }
cluster { name: $name, listen: 127.0.0.1:$((base + 10 + i)), routes: [${routes%,}] }
CONF
    "${NATS_SERVER:-nats-server}" -c "$dir/$name-n$i.conf" > "$dir/$name-n$i.log" 2>&1 & NATS_PIDS+=($!)
    NATS_URLS="$NATS_URLS${NATS_URLS:+,}nats://127.0.0.1:$((base + i))"
  done
  for i in 0 1 2; do
    until curl -sf "http://127.0.0.1:$((base + 20 + i))/healthz" >/dev/null; do sleep 0.2; done
  done
}
