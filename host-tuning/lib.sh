#!/usr/bin/env bash
# Shared by every host-tuning script: argument parsing and one engine for "a file that should hold a value".
# A script declares its settings with `setting PATH VALUE MODE REASON` and ends with `run_settings`.
#
#   SCRIPT check    [--root DIR]      print current vs recommended; exit 0 all good, 1 some differ, 2 unreadable
#   SCRIPT apply    [--root DIR] [--dry-run]   write the recommended values, saving the previous ones once
#   SCRIPT revert   [--root DIR] [--dry-run]   write the saved values back and forget them
#
# --root DIR stands in for / (tests point it at a scratch copy of /proc/sys and /sys); --dry-run prints the
# exact commands instead of running them. Previous values live in $STATE_DIR/<script>.saved (under --root).
# MODE: `eq` (the value must match), `min` (a number at least VALUE), `mins` (each of several numbers at least
# the one in VALUE), `sel` (a "[chosen] other" selector file),
# `file` (PATH is a config file that should hold exactly VALUE; revert deletes it if it did not exist).

set -euo pipefail

MODE=""
DRY_RUN=0
ROOT=""
EXTRA_ARGS=()
SCRIPT_NAME=$(basename "${0%.sh}")

usage() {
  sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
  echo "usage: $0 check|apply|revert [--dry-run] [--root DIR] $SCRIPT_USAGE_EXTRA" >&2
  exit 2
}
SCRIPT_USAGE_EXTRA=${SCRIPT_USAGE_EXTRA:-}

parse_args() {
  [ $# -ge 1 ] || usage
  case $1 in check|apply|revert) MODE=$1 ;; -h|--help) usage ;; *) usage ;; esac
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --dry-run) DRY_RUN=1 ;;
      --root) ROOT=${2:?--root needs a directory}; shift ;;
      *) EXTRA_ARGS+=("$1") ;;
    esac
    shift
  done
  STATE_DIR=${TICKCORE_TUNING_STATE:-$ROOT/var/lib/tickcore-host-tuning}
  STATE_FILE=$STATE_DIR/$SCRIPT_NAME.saved
}

PATHS=(); VALUES=(); MODES=(); REASONS=()
# setting PATH VALUE MODE REASON: PATH is absolute (without --root) and may hold a glob.
setting() {
  local pattern=$1 p
  # shellcheck disable=SC2206 # the glob is meant to expand here
  local matches=( $ROOT$pattern )
  for p in "${matches[@]}"; do
    [ -e "$p" ] || [ "$3" = file ] || continue
    PATHS+=("$p"); VALUES+=("$2"); MODES+=("$3"); REASONS+=("$4")
  done
}

# The current value of a setting file, normalized: whitespace squeezed; for `sel`, the bracketed choice.
current() {
  local path=$1 mode=$2 v
  if [ "$mode" = file ]; then
    if [ -e "$path" ]; then cat "$path"; else echo "__absent__"; fi
    return
  fi
  v=$(tr -s '[:space:]' ' ' < "$path") || return 1
  v=${v% }
  if [ "$mode" = sel ] && [[ $v == *"["* ]]; then
    v=$(sed -n 's/.*\[\([^]]*\)\].*/\1/p' <<< "$v")
  fi
  printf '%s\n' "$v"
}

satisfied() { # CURRENT VALUE MODE
  case $3 in
    min) [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ] ;;
    mins)
      local -a have want; local k
      read -r -a have <<< "$1"; read -r -a want <<< "$2"
      [ "${#have[@]}" = "${#want[@]}" ] || return 1
      for k in "${!want[@]}"; do
        [[ ${have[k]} =~ ^[0-9]+$ ]] && [ "${have[k]}" -ge "${want[k]}" ] || return 1
      done ;;
    *) [ "$1" = "$2" ] ;;
  esac
}

show() { if [ -n "$ROOT" ]; then echo "${1#"$ROOT"}"; else echo "$1"; fi; }

# How a value is printed by check: config files by state, not by content.
label() { # VALUE MODE
  if [ "$2" != file ]; then echo "$1"
  elif [ "$1" = "__absent__" ]; then echo "absent"
  else echo "present"; fi
}

# write PATH VALUE: the one place a setting changes (or, with --dry-run, is printed as a command).
write_value() {
  local path=$1 value=$2
  if [ "$value" = "__absent__" ]; then
    if [ "$DRY_RUN" = 1 ]; then echo "rm -f $(show "$path")"; else rm -f "$path"; fi
  elif [ "$DRY_RUN" = 1 ]; then
    printf 'printf %%s %q > %s\n' "$value" "$(show "$path")"
  else
    mkdir -p "$(dirname "$path")"
    printf '%s' "$value" > "$path"
  fi
}

saved_value() { # PATH -> saved value, or nothing
  [ -f "$STATE_FILE" ] || return 0
  awk -F '\t' -v p="$1" '$1 == p { sub(/^[^\t]*\t/, ""); print; exit }' "$STATE_FILE"
}

run_settings() {
  local i n=${#PATHS[@]} cur differ=0 unreadable=0 saved
  case $MODE in
    check)
      for ((i = 0; i < n; i++)); do
        if ! cur=$(current "${PATHS[i]}" "${MODES[i]}"); then
          printf '%-8s %s: cannot read\n' "UNKNOWN" "$(show "${PATHS[i]}")"; unreadable=1; continue
        fi
        if satisfied "$cur" "${VALUES[i]}" "${MODES[i]}"; then
          printf '%-8s %s = %s  # %s\n' "ok" "$(show "${PATHS[i]}")" "$(label "$cur" "${MODES[i]}")" "${REASONS[i]}"
        else
          printf '%-8s %s = %s, recommended %s  # %s\n' "DIFFERS" "$(show "${PATHS[i]}")" \
            "$(label "$cur" "${MODES[i]}")" "$(label "${VALUES[i]}" "${MODES[i]}" | sed 's/present/as shipped/')" "${REASONS[i]}"
          differ=1
        fi
      done
      [ "$n" -gt 0 ] || echo "nothing to check here (no matching files)"
      [ "$unreadable" = 0 ] || return 2
      return "$differ"
      ;;
    apply)
      if [ "$DRY_RUN" = 1 ]; then echo "mkdir -p $STATE_DIR"; else mkdir -p "$STATE_DIR"; fi
      for ((i = 0; i < n; i++)); do
        cur=$(current "${PATHS[i]}" "${MODES[i]}") || { echo "cannot read $(show "${PATHS[i]}")" >&2; return 2; }
        satisfied "$cur" "${VALUES[i]}" "${MODES[i]}" && continue
        # Save the value from before the first apply only: a second apply must not overwrite it.
        if [ -z "$(saved_value "${PATHS[i]}")" ]; then
          if [ "$DRY_RUN" = 1 ]; then
            printf "printf '%%s\\\\t%%s\\\\n' %q %q >> %s\n" "${PATHS[i]}" "${cur//$'\n'/\\n}" "$STATE_FILE"
          else
            printf '%s\t%s\n' "${PATHS[i]}" "${cur//$'\n'/\\n}" >> "$STATE_FILE"
          fi
        fi
        write_value "${PATHS[i]}" "${VALUES[i]}"
      done
      ;;
    revert)
      if [ ! -f "$STATE_FILE" ]; then echo "nothing saved in $STATE_FILE: nothing to revert"; return 0; fi
      while IFS=$'\t' read -r path saved; do
        write_value "$path" "${saved//\\n/$'\n'}"
      done < "$STATE_FILE"
      if [ "$DRY_RUN" = 1 ]; then echo "rm -f $STATE_FILE"; else rm -f "$STATE_FILE"; fi
      ;;
  esac
}
