#!/usr/bin/env bash
# NIC interrupts and receive packet steering away from the engine's cores: a core that runs tickcore should
# not also run the network card's interrupt handlers and softirqs (they preempt requests mid-flight).
# Usage: irq.sh check|apply|revert [--dry-run] [--root DIR] [--engine-cpus LIST] [--nic IFACE]
#   --engine-cpus LIST  the CPUs given to tickcore --cpus (default: what engine-cpus.sh recommends, every
#                       online CPU but the first)
#   --nic IFACE         default: the interface of the default route
here=$(cd "$(dirname "$0")" && pwd)
SCRIPT_USAGE_EXTRA="[--engine-cpus LIST] [--nic IFACE]"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
# shellcheck source-path=SCRIPTDIR source=cpus.sh
. "$here/cpus.sh"
parse_args "$@"
engine="" nic=""
set -- "${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"}"
while [ $# -gt 0 ]; do
  case $1 in
    --engine-cpus) engine=${2:?}; shift ;;
    --nic) nic=${2:?}; shift ;;
    *) usage ;;
  esac
  shift
done
online=$(online_cpus "$ROOT")
[ -n "$engine" ] || engine=$(recommended_engine_cpus "$online")
house=$(cpu_list_minus "$online" "$engine")
if [ -z "$house" ]; then
  echo "every online CPU ($online) is an engine CPU: nothing left for interrupts; nothing to do" >&2
  exit 0
fi
if [ -z "$nic" ] && [ -z "$ROOT" ]; then
  nic=$(ip -o route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1); exit}')
fi
nic=${nic:-eth0}
# The NIC's interrupts: /proc/interrupts lines naming the interface or a virtio network queue.
while read -r irq; do
  setting "/proc/irq/$irq/smp_affinity_list" "$house" eq "IRQ $irq ($nic) handled on housekeeping CPUs $house, not engine CPUs $engine"
done < <(awk -v nic="$nic" '$1 ~ /^[0-9]+:$/ && ($0 ~ nic || $0 ~ /virtio[0-9]+-(input|output)\.[0-9]+/) { sub(":", "", $1); print $1 }' \
  "$ROOT/proc/interrupts" 2>/dev/null)
setting "/sys/class/net/$nic/queues/rx-*/rps_cpus" "$(cpu_mask "$house")" eq "receive softirq work steered to housekeeping CPUs"
run_settings
