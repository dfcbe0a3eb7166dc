#!/usr/bin/env bash
# The block device under the data directory: tickcore submits its own queue of O_DIRECT writes through
# io_uring and reads tag files through mmap at scattered offsets.
# Usage: block.sh check|apply|revert [--dry-run] [--root DIR] [--data-dir PATH | --dev NAME]
#   --data-dir PATH  the engine's data directory (default ./data, or . when it does not exist yet)
#   --dev NAME       the block device (e.g. nvme0n1, vda) instead of finding it from the data directory
here=$(cd "$(dirname "$0")" && pwd)
SCRIPT_USAGE_EXTRA="[--data-dir PATH | --dev NAME]"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
parse_args "$@"
dev="" data=./data
set -- "${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"}"
while [ $# -gt 0 ]; do
  case $1 in
    --dev) dev=${2:?}; shift ;;
    --data-dir) data=${2:?}; shift ;;
    *) usage ;;
  esac
  shift
done
if [ -z "$dev" ]; then
  [ -e "$data" ] || data=.
  src=$(df --output=source "$data" | tail -n 1)   # /dev/vda1, /dev/nvme0n1p2, /dev/mapper/...
  name=$(basename "$(readlink -f "$src")")
  # A partition's queue settings live on its parent disk.
  if [ -e "/sys/class/block/$name/partition" ]; then
    name=$(basename "$(readlink -f "/sys/class/block/$name/..")")
  fi
  dev=$name
fi
q=/sys/block/$dev/queue
setting "$q/scheduler" none sel "tickcore batches and orders its own I/O; a kernel I/O scheduler only adds latency on SSD/NVMe"
setting "$q/read_ahead_kb" 32 eq "queries touch scattered 4 KiB pages of tag files; large read-ahead reads data nobody asked for"
run_settings
