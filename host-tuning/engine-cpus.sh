#!/usr/bin/env bash
# Prints which --cpus to give tickcore on this host: every online CPU but the first, which is left to NIC
# interrupts (see irq.sh), the kernel and local clients. Usage: engine-cpus.sh [--root DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=cpus.sh
. "$here/cpus.sh"
root=""
[ "${1:-}" = --root ] && root=${2:?--root needs a directory}
online=$(online_cpus "$root")
engine=$(recommended_engine_cpus "$online")
echo "online CPUs: $online"
echo "housekeeping (interrupts, kernel, clients): $(cpu_list_minus "$online" "$engine")"
echo "run: tickcore --cpus $engine"
