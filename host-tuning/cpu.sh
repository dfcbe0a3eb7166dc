#!/usr/bin/env bash
# CPU frequency, idle states and transparent huge pages: steady per-request latency on the engine's cores.
# Usage: cpu.sh check|apply|revert [--dry-run] [--root DIR]
# Files a machine does not have (no cpufreq or cpuidle driver in many VMs) are skipped.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
parse_args "$@"
c=/sys/devices/system/cpu
setting "$c/cpu[0-9]*/cpufreq/scaling_governor" performance eq "no ramp-up delay when a burst arrives on an idle core"
# Deep C-states (state 2 and up) take tens to hundreds of microseconds to leave: keep POLL and C1 only.
setting "$c/cpu[0-9]*/cpuidle/state[2-9]/disable" 1 eq "no deep-sleep exit latency on the request path"
setting /sys/kernel/mm/transparent_hugepage/enabled madvise sel "no khugepaged compaction stalls; tickcore's heap is small and its reads are mmap pages"
setting /sys/kernel/mm/transparent_hugepage/defrag madvise sel "no synchronous compaction inside page faults"
run_settings
