#!/usr/bin/env bash
# Shared body of run_cpu.sh / run_gpu.sh / run_ascend.sh: parse the classic options, make a run folder,
# start train.py or eval.py (through msrun when more than one device), record the pid for stop_training.sh.
# Hyperparameters belong in the config file, not here.
set -euo pipefail
target=$1; shift
repo=$(cd "$(dirname "$0")/.." && pwd)

usage() {
  cat <<USAGE
usage: scripts/run_${target,,}.sh -t t|i -c CONFIG [options]
  -h, --help             this text
  -t, --task t|i         t: train (train.py), i: inference (eval.py)
  -n, --device_num N     devices (processes) to use; N > 1 launches data-parallel ranks with msrun (default 1)
  -i, --device_id ID     device id for a single-device run (default 0)
  -c, --config FILE      JSON config (config/config.json, config/config_tiny.json, ...)
  -o, --output PATH      train: the run folder; inference: the hypotheses file (default runs/<task>_<time>)
  -v, --vocab FILE       vocabulary (inference; optional for training)
  -m, --metric rouge|ppl metric for inference (default rouge)
  -d, --detach           return at once; the job runs in the background (stop it with scripts/stop_training.sh)
  -T, --threads N        CPU kernel threads per process (CPU only; default: this machine's cores shared out
                         among the processes, at least 1 each)
USAGE
  [ "$target" = Ascend ] && echo "  -j, --hccl_json FILE   rank table file for multi-card Ascend runs"
  return 0
}

# The usage first, the error last: the last line of stderr names the problem.
fail() { usage >&2; echo "error: $1" >&2; exit 2; }

task="" device_num=1 device_id=0 config="" output="" vocab="" metric=rouge detach=0 hccl_json="" threads=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -t|--task) task=${2:-}; shift 2 || fail "$1 needs a value" ;;
    -n|--device_num) device_num=${2:-}; shift 2 || fail "$1 needs a value" ;;
    -i|--device_id) device_id=${2:-}; shift 2 || fail "$1 needs a value" ;;
    -c|--config) config=${2:-}; shift 2 || fail "$1 needs a value" ;;
    -o|--output) output=${2:-}; shift 2 || fail "$1 needs a value" ;;
    -v|--vocab) vocab=${2:-}; shift 2 || fail "$1 needs a value" ;;
    -m|--metric) metric=${2:-}; shift 2 || fail "$1 needs a value" ;;
    -d|--detach) detach=1; shift ;;
    -T|--threads) threads=${2:-}; shift 2 || fail "$1 needs a value" ;;
    -j|--hccl_json) [ "$target" = Ascend ] || fail "-j/--hccl_json is for Ascend only"
                    hccl_json=${2:-}; shift 2 || fail "$1 needs a value" ;;
    *) fail "unknown option: $1" ;;
  esac
done

case "$task" in t|i) ;; *) fail "-t/--task must be t (train) or i (inference)" ;; esac
[[ "$device_num" =~ ^[1-9][0-9]*$ ]] || fail "-n/--device_num must be a positive integer, got '$device_num'"
[[ "$device_id" =~ ^[0-9]+$ ]] || fail "-i/--device_id must be a non-negative integer, got '$device_id'"
[ -n "$config" ] || fail "-c/--config is required"
[ -f "$config" ] || fail "config file not found: $config"
case "$metric" in rouge|ppl) ;; *) fail "-m/--metric must be rouge or ppl, got '$metric'" ;; esac
[ -z "$vocab" ] || [ -f "$vocab" ] || fail "vocabulary file not found: $vocab"
[ -z "$hccl_json" ] || [ -f "$hccl_json" ] || fail "rank table file not found: $hccl_json"
[ "$task" = t ] || [ -n "$vocab" ] || fail "-v/--vocab is required for inference"
[ "$task" = t ] || [ "$device_num" = 1 ] || fail "inference runs on one device (-n 1)"
[ -z "$threads" ] || [[ "$threads" =~ ^[1-9][0-9]*$ ]] || fail "-T/--threads must be a positive integer, got '$threads'"
[ -z "$threads" ] || [ "$target" = CPU ] || fail "-T/--threads is for CPU runs only"
if [ "$target" = CPU ] && [ -z "$threads" ]; then
  # MindSpore's default (25 threads a process) oversubscribes the cores as soon as there are several ranks.
  threads=$(( $(nproc) / device_num )); [ "$threads" -ge 1 ] || threads=1
fi

python=${PYTHON:-}
if [ -z "$python" ]; then python="$(bash "$repo/scripts/ensure_venv.sh")/bin/python"; fi
stamp=$(date +%Y%m%d_%H%M%S)
if [ "$task" = t ]; then
  run_folder=${output:-runs/train_$stamp}
  command=("$repo/train.py" --config "$config" --output "$run_folder" --device_target "$target")
  [ -z "$threads" ] || command+=(--threads "$threads")
  [ -z "$vocab" ] || command+=(--vocab "$vocab")
else
  output=${output:-runs/infer_$stamp/hypotheses.txt}
  run_folder=$(dirname "$output")
  command=("$repo/eval.py" --config "$config" --vocab "$vocab" --metric "$metric" --output "$output"
           --device_target "$target")
  [ -z "$threads" ] || command+=(--threads "$threads")
fi
mkdir -p "$run_folder/logs"
run_folder=$(cd "$run_folder" && pwd)

if [ "$device_num" -gt 1 ]; then
  # msrun starts the bare word `python`: the environment's bin must come first on PATH.
  export PATH="$(dirname "$python"):$PATH"
  port=${MASTER_PORT:-$((8118 + RANDOM % 1000))}
  launcher=(msrun --worker_num="$device_num" --local_worker_num="$device_num" --master_port="$port"
            --log_dir="$run_folder/logs" --join=True)
  [ -z "$hccl_json" ] || launcher+=(--rank_table_file="$hccl_json")
  full=("${launcher[@]}" "${command[@]}")
else
  export DEVICE_ID=$device_id
  full=("$python" "${command[@]}" --device_id "$device_id")
fi

# The log exists before the job starts, so `tail` below can never miss its first lines.
: > "$run_folder/logs/console.log"
echo "run folder: $run_folder"
echo "command: ${full[*]}" | tee "$run_folder/logs/command.txt"
# setsid: the job gets its own process group, so stop_training.sh can signal every rank at once.
setsid "${full[@]}" > "$run_folder/logs/console.log" 2>&1 < /dev/null &
job=$!
echo "$job" > "$run_folder/pid"
if [ "$detach" = 1 ]; then
  echo "started in the background, pid $job; log: $run_folder/logs/console.log"
  exit 0
fi
trap 'kill -TERM -- -"$job" 2>/dev/null || true' INT TERM
# `|| true`: tail itself may end in error ("no files remaining", seen under load); the job's status is what counts.
tail -n +1 --pid="$job" -f "$run_folder/logs/console.log" || true
status=0; wait "$job" || status=$?
rm -f "$run_folder/pid"
if [ "$status" != 0 ]; then
  # The job's own one-line error (train.py / eval.py, or a rank's under msrun) is what the user needs to read.
  reason=$(grep -h '^error:' "$run_folder/logs/console.log" "$run_folder"/logs/worker_*.log 2>/dev/null | tail -n 1 || true)
  reason=${reason#error: }
  echo "error: ${reason:-the job failed} (exit status $status; logs: $run_folder/logs/)" >&2
fi
exit "$status"
