#!/usr/bin/env bash
# Runs every host-tuning script: all.sh check|apply|revert [--dry-run] [--root DIR] [--engine-cpus LIST]
# [--nic IFACE] [--data-dir PATH | --dev NAME]; each script gets the options it knows.
# check exits with the worst status of the scripts (0 all good, 1 some differ, 2 something unreadable).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
common=() irq=() block=()
while [ $# -gt 0 ]; do
  case $1 in
    --root) common+=("$1" "${2:?}"); shift ;;
    --engine-cpus|--nic) irq+=("$1" "${2:?}"); shift ;;
    --data-dir|--dev) block+=("$1" "${2:?}"); shift ;;
    *) common+=("$1") ;;
  esac
  shift
done
worst=0
for s in network limits cpu irq block; do
  echo "== $s"
  extra=()
  [ "$s" = irq ] && extra=("${irq[@]+"${irq[@]}"}")
  [ "$s" = block ] && extra=("${block[@]+"${block[@]}"}")
  "$here/$s.sh" "${common[@]+"${common[@]}"}" "${extra[@]+"${extra[@]}"}"; rc=$?
  [ "$rc" -gt "$worst" ] && worst=$rc
done
exit "$worst"
