#!/usr/bin/env bash
# Network backlog, buffers and ports for many short keep-alive connections at 100k+ requests/s per core.
# Usage: network.sh check|apply|revert [--dry-run] [--root DIR]
# Raising somaxconn only helps with a listen backlog to match: tickcore's --backlog (default 4096).
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
parse_args "$@"
s=/proc/sys/net
setting $s/core/somaxconn 4096 min "accept queue cap: bursts of new connections are not dropped (match --backlog)"
setting $s/ipv4/tcp_max_syn_backlog 8192 min "half-open connections queued during a connect storm"
setting $s/core/netdev_max_backlog 16384 min "packets queued per CPU before the stack drops them at 200k msg/s bursts"
setting $s/core/rmem_max 16777216 min "lets sockets grow receive buffers for bulk NDJSON bodies"
setting $s/core/wmem_max 16777216 min "lets sockets grow send buffers for large /api and /export answers"
setting $s/ipv4/tcp_rmem "4096 131072 16777216" mins "per-socket receive buffer: min, default, max (autotuned)"
setting $s/ipv4/tcp_wmem "4096 131072 16777216" mins "per-socket send buffer: min, default, max (autotuned)"
setting $s/ipv4/ip_local_port_range "1024 65535" eq "more ephemeral ports for load generators and proxies on this host"
setting $s/ipv4/tcp_tw_reuse 1 eq "reuse TIME_WAIT ports for new outgoing connections (clients on this host)"
setting $s/ipv4/tcp_fin_timeout 15 eq "free orphaned FIN_WAIT_2 sockets sooner (default 60 s)"
run_settings
