#!/usr/bin/env bash
# Stops runs started by run_cpu.sh / run_gpu.sh / run_ascend.sh, from their pid files (never by process name):
# SIGTERM to the whole process group first (train.py writes a checkpoint and exits), SIGKILL after a timeout.
# usage: scripts/stop_training.sh [-w SECONDS] RUN_FOLDER...   (default: every runs/*/pid)
set -euo pipefail
wait_seconds=120
if [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
  sed -n '2,4p' "$0" | cut -c3-; exit 0
fi
if [ "${1:-}" = -w ]; then
  [[ "${2:-}" =~ ^[0-9]+$ ]] || { echo "error: -w needs a number of seconds" >&2; exit 2; }
  wait_seconds=$2; shift 2
fi
folders=("$@")
[ ${#folders[@]} -gt 0 ] || folders=(runs/*/)
status=0
for folder in "${folders[@]}"; do
  pid_file="${folder%/}/pid"
  [ -f "$pid_file" ] || { [ $# -eq 0 ] && continue; echo "error: no pid file in $folder" >&2; status=2; continue; }
  pid=$(cat "$pid_file")
  [[ "$pid" =~ ^[0-9]+$ ]] || { echo "error: $pid_file does not hold a pid" >&2; status=2; continue; }
  if ! kill -0 "$pid" 2>/dev/null; then echo "$folder: not running (stale pid $pid)"; rm -f "$pid_file"; continue; fi
  echo "$folder: stopping pid $pid (SIGTERM; a checkpoint is written)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
  for ((i = 0; i < wait_seconds * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$folder: still running after ${wait_seconds}s, sending SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
  fi
  rm -f "$pid_file"
  echo "$folder: stopped"
done
exit $status
