#!/usr/bin/env bash
# File descriptors and locked memory. Every connection is a descriptor; every glommio executor locks its
# io_uring memory (tickcore needs cores x (--io-memory-kib + 512) KiB of RLIMIT_MEMLOCK and says so at start).
# Usage: limits.sh check|apply|revert [--dry-run] [--root DIR]
# The per-process limits take effect at the next login or service start: systemd units need LimitNOFILE= and
# LimitMEMLOCK= (see docs), docker needs `ulimits` (docker-compose.yml).
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
parse_args "$@"
setting /proc/sys/fs/file-max 2097152 min "system-wide open files: one per connection, tag file and log"
setting /proc/sys/fs/nr_open 1048576 min "ceiling for a process's RLIMIT_NOFILE"
setting /etc/security/limits.d/90-tickcore.conf "# tickcore: descriptors for connections, locked memory for io_uring
*    soft    nofile     1048576
*    hard    nofile     1048576
*    soft    memlock    unlimited
*    hard    memlock    unlimited" file "login sessions get enough descriptors and io_uring locked memory"
if [ "$MODE" = check ] && [ -z "$ROOT" ]; then
  echo "info     this shell: ulimit -n $(ulimit -n), ulimit -l $(ulimit -l) KiB (tickcore needs cores x (io-memory-kib + 512) KiB)"
fi
run_settings
