#!/usr/bin/env bash
# CPU list helpers shared by irq.sh and engine-cpus.sh (sourced, not run).

# online_cpus [ROOT] -> "0-3" style list of online CPUs.
online_cpus() {
  local f=${1:-}/sys/devices/system/cpu/online
  if [ -r "$f" ]; then cat "$f"; else echo "0-$(($(nproc) - 1))"; fi
}

# expand_cpus "0-2,5" -> "0 1 2 5"
expand_cpus() {
  local part out=() a b
  IFS=',' read -r -a parts <<< "$1"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then
      a=${part%-*}; b=${part#*-}
      for ((; a <= b; a++)); do out+=("$a"); done
    elif [ -n "$part" ]; then
      out+=("$part")
    fi
  done
  echo "${out[@]}"
}

# join_cpus "0 1 2" -> "0,1,2"
join_cpus() {
  local -a a
  read -r -a a <<< "$1"
  local IFS=,
  echo "${a[*]}"
}

# recommended_engine_cpus ONLINE: leave CPU 0 for interrupts, the kernel and clients; the rest serve.
# On a single-CPU machine the engine gets CPU 0 anyway.
recommended_engine_cpus() {
  local all; read -r -a all <<< "$(expand_cpus "$1")"
  if [ "${#all[@]}" -le 1 ]; then echo "${all[0]:-0}"; else join_cpus "${all[*]:1}"; fi
}

# cpu_list_minus ALL EXCLUDE -> the CPUs of ALL not in EXCLUDE, comma-separated.
cpu_list_minus() {
  local c keep=() ex
  ex=" $(expand_cpus "$2") "
  for c in $(expand_cpus "$1"); do
    [[ $ex == *" $c "* ]] || keep+=("$c")
  done
  join_cpus "${keep[*]}"
}

# cpu_mask "0,2" -> "5": the hex bitmask of a CPU list (for rps_cpus; up to 64 CPUs).
cpu_mask() {
  local c m=0
  for c in $(expand_cpus "$1"); do m=$((m | (1 << c))); done
  printf '%x\n' "$m"
}
