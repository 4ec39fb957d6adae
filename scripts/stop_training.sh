#!/usr/bin/env bash
# Stops runs started by run_cpu.sh / run_gpu.sh / run_ascend.sh, from their pid files (never by process name):
# SIGTERM to every rank (RUN/pids/rank_N.pid; train.py checkpoints at the next update and exits), then to the
# launcher's process group (RUN/pid); SIGKILL to whatever is left after the timeout.
# usage: scripts/stop_training.sh [-w SECONDS] RUN_FOLDER...   (default: every runs/*/ with a pid file; -w 120)
set -euo pipefail
wait_seconds=120
if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
  sed -n '2,5p' "$0" | cut -c3-; exit 0
fi
if [ "${1:-}" = -w ]; then
  [[ "${2:-}" =~ ^[0-9]+$ ]] || { echo "error: -w needs a number of seconds" >&2; exit 2; }
  wait_seconds=$2; shift 2
fi
folders=("$@")
[ ${#folders[@]} -gt 0 ] || folders=(runs/*/)

alive() { for pid in "$@"; do kill -0 "$pid" 2>/dev/null && return 0; done; return 1; }
wait_for_exit() {  # seconds pid...
  local limit=$(($1 * 10)); shift
  for ((i = 0; i < limit; i++)); do alive "$@" || return 0; sleep 0.1; done
  return 1
}

status=0
for folder in "${folders[@]}"; do
  folder=${folder%/}
  if [ ! -f "$folder/pid" ]; then
    [ $# -eq 0 ] && continue
    echo "error: no pid file in $folder (was it started by scripts/run_*.sh?)" >&2; status=2; continue
  fi
  leader=$(cat "$folder/pid")
  [[ "$leader" =~ ^[0-9]+$ ]] || { echo "error: $folder/pid does not hold a pid" >&2; status=2; continue; }
  ranks=()
  for file in "$folder"/pids/rank_*.pid; do
    [ -f "$file" ] && ranks+=("$(cat "$file")")
  done
  if ! alive "$leader" "${ranks[@]}"; then
    echo "$folder: not running (stale pid $leader)"; rm -f "$folder/pid"; continue
  fi
  echo "$folder: stopping (SIGTERM; every rank writes a checkpoint at its next update)"
  for pid in "${ranks[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # A single-process run is its own group leader; under msrun the leader exits once its workers have.
  if [ ${#ranks[@]} -eq 0 ] || ! wait_for_exit "$wait_seconds" "${ranks[@]}"; then
    kill -TERM -- "-$leader" 2>/dev/null || kill -TERM "$leader" 2>/dev/null || true
  fi
  if ! wait_for_exit "$wait_seconds" "$leader" "${ranks[@]}"; then
    echo "$folder: still running after ${wait_seconds}s, sending SIGKILL"
    for pid in "${ranks[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    kill -KILL -- "-$leader" 2>/dev/null || kill -KILL "$leader" 2>/dev/null || true
  fi
  rm -f "$folder/pid"
  echo "$folder: stopped"
done
exit $status
