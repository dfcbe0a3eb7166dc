# shellcheck shell=bash
# Sourced by the benchmark scripts: where finished data directories go, and when a run may start.
#
# On ext4 without a journal (these machines' root filesystem), creating a file soon after many deletions is
# slow: the inode allocator looks up each free inode deleted in the last 60 s (300 s while its inode-table
# block is still dirty) and skips it (`recently_deleted` in fs/ext4/ialloc.c, only checked when there is no
# journal). Here 50,000 creations took 38.4 s right after 50,000 deletions and 1.9 s 45 s later, and the
# same idle 100k-tag checkpoint took 22 s or 78 s. A benchmark would measure its predecessor's `rm -rf`, not
# the engine.
# So:
#   discard DIR...   moves a finished data directory into the trash (a rename, nothing is deleted);
#   empty_trash      removes the trash when the outermost sourcing script ends (its EXIT trap), and notes the
#                    time in $BENCH_REMOVED;
#   settle           waits until 65 s have passed since that time: call it before measuring.
# A script run by another (benches/all.sh) shares its parent's trash, so nothing is deleted until the end.
# The trash is beside the data directories (/tmp) so that discarding is a rename.
BENCH_REMOVED=${BENCH_REMOVED:-/tmp/tickcore-bench-removed}
if [ -z "${BENCH_TRASH:-}" ]; then
  BENCH_TRASH=$(mktemp -d /tmp/tickcore-trash.XXXXXX)
  export BENCH_TRASH
  bench_trash_owner=1
fi

discard() {
  local d
  for d in "$@"; do
    if [ -e "$d" ]; then mv "$d" "$(mktemp -u "$BENCH_TRASH/d.XXXXXX")"; fi
  done
}

empty_trash() {
  if [ -z "${bench_trash_owner:-}" ] || [ ! -d "$BENCH_TRASH" ]; then return 0; fi
  if [ -n "$(ls -A "$BENCH_TRASH")" ]; then
    rm -rf "$BENCH_TRASH"
    touch "$BENCH_REMOVED"
  else
    rmdir "$BENCH_TRASH"
  fi
}

settle() {
  local age
  if [ -e "$BENCH_REMOVED" ]; then
    age=$(($(date +%s) - $(stat -c %Y "$BENCH_REMOVED")))
    if [ "$age" -lt 65 ]; then
      echo "settle: $((65 - age)) s after the last benchmark's deletions (benches/trash.sh)" >&2
      sleep $((65 - age))
    fi
  fi
}
