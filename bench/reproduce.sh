#!/usr/bin/env bash
# Reduced-scale MASS reproduction on ../shared/data: pre-train a d128 3+3 model on the news sentences, fine-tune it on
# Gigaword 10K and the first 10K Cornell train pairs, and compare with training from scratch for the same fine-tuning
# epochs and for the same total compute (fine-tuning extended by the task's half of the pre-training updates).
# Checkpoints are selected on the validation sets; ROUGE-1/2/L on the 1,951 Gigaword test pairs, perplexity on the
# Cornell test set.
# usage: bash bench/reproduce.sh [RUN_FOLDER]      QUICK=1 runs every stage on small subsets (a smoke test)
# Budget: PRETRAIN_UPDATES (default 1200 updates of 64 sentences), FINETUNE_EPOCHS (2); the same-compute baseline's
# epochs are computed from the updates (SCRATCH_LONG_EPOCHS overrides). After the text stages, two chains run side
# by side with one thread each (PARALLEL=0: one after the other): MASS pre-training and fine-tuning from it, and
# training from scratch. A rerun into the same folder skips what completed; UNTIL=text|bpe|records stops after
# that stage; TASKS=gigaword or TASKS=cornell (default both) limits the fine-tuning to one task.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
data=${SHARED_DATA:-$repo/../shared/data}
[ -d "$data/news" ] || { echo "error: $data not found (the real corpora live in ../shared/data)" >&2; exit 2; }
run=${1:-runs/reproduce}
python="$(bash scripts/ensure_venv.sh)/bin/python"
export PYTHONUNBUFFERED=1 PYTHON=$python
quick=${QUICK:-0} parallel=${PARALLEL:-1} threads=0
pre_updates=${PRETRAIN_UPDATES:-1200} ft_epochs=${FINETUNE_EPOCHS:-2} SCRATCH_LONG_EPOCHS=${SCRATCH_LONG_EPOCHS:-}
lines=0
if [ "$quick" = 1 ]; then lines=600; pre_updates=10; ft_epochs=1; fi
mkdir -p "$run"
tasks=${TASKS:-gigaword cornell}
exec > >(tee -a "$run/reproduce.log") 2>&1
stage() { printf '\n=== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
# A rerun into the same folder skips the stages that completed (marker files .done_NAME); UNTIL=NAME stops after one.
run_stage() {  # NAME FUNCTION [ARGS...]
  local name=$1; shift
  if [ -f "$run/.done_$name" ]; then printf '\n=== %s: done before, skipped\n' "$name"
  else "$@"; touch "$run/.done_$name"; fi
  if [ "${UNTIL:-}" = "$name" ]; then echo "stopped after $name (UNTIL=$name)"; exit 0; fi
}
# First N lines (N = 0: all), capped at QUICK's line count; no pipes into head, which pipefail would fail on.
take() {
  local count=${2:-0}
  if [ "$lines" -gt 0 ] && { [ "$count" = 0 ] || [ "$count" -gt "$lines" ]; }; then count=$lines; fi
  if [ "$count" -gt 0 ]; then head -n "$count" "$1"; else cat "$1"; fi
}
start=$SECONDS

text_stage() {
stage "text: raw news and Cornell (first 10K train pairs) -> tokens; Gigaword is already tokenized"
mkdir -p "$raw" "$tok"
take "$data/news/news.en.txt" > "$raw/news.txt"
for side in src tgt; do
  take "$data/cornell/train.$side.txt" 10000 > "$raw/cornell_train.$side.txt"
  take "$data/cornell/valid.$side.txt" 2000 > "$raw/cornell_valid.$side.txt"
  take "$data/cornell/test.$side.txt" > "$raw/cornell_test.$side.txt"
done
"$python" tokenize_corpus.py --corpus_folder "$raw" --output_folder "$tok" --tokenizer nltk --pool_size 2
for split in train valid test; do
  for side in article title; do take "$data/gigaword/$split.$side.txt" > "$tok/giga_$split.$side.txt"; done
done
}
raw=$run/text/raw tok=$run/text/tok bpe=$run/text/bpe
run_stage text text_stage

bpe_stage() {
stage "BPE: 10K joint merges, vocabulary"
merges=10000; [ "$quick" = 1 ] && merges=2000
mkdir -p "$run/vocab"
bash scripts/learn_subword.sh "$merges" "$run/vocab/bpe.codes" "$tok/news.txt" "$tok/giga_train.article.txt" \
  "$tok/giga_train.title.txt" "$tok/cornell_train.src.txt" "$tok/cornell_train.tgt.txt"
# Gigaword writes its unknown word UNK (test) or <unk> (train, valid): both become the one token <unk>, which BPE
# never cuts (apply_bpe_encoding.py's default glossary) and learn_subword.sh leaves out of the merges.
"$python" apply_bpe_encoding.py --codes "$run/vocab/bpe.codes" --src_folder "$tok" --output_folder "$bpe" \
  --prefix "" --vocab_path "$run/vocab/vocab.txt" --threshold 3 --processes 2 --map_token 'UNK=<unk>'
}
run_stage bpe bpe_stage
vocab=$run/vocab/vocab.txt
vocab_size=$(wc -l < "$vocab")

records_stage() {
stage "records"
mkdir -p "$run/text/mono"
cp "$bpe/news.txt" "$run/text/mono/news.txt"
"$python" news_crawl.py --src_folder "$run/text/mono" --existed_vocab "$vocab" --output_folder "$run/data/news" \
  --max_len 64 --processes 2
"$python" gigaword.py --train_src "$bpe/giga_train.article.txt" --train_ref "$bpe/giga_train.title.txt" \
  --valid_src "$bpe/giga_valid.article.txt" --valid_ref "$bpe/giga_valid.title.txt" \
  --test_src "$bpe/giga_test.article.txt" --test_ref "$bpe/giga_test.title.txt" \
  --existed_vocab "$vocab" --output_folder "$run/data/gigaword" --max_len 64
mkdir -p "$run/text/cornell"
for split in train valid test; do
  for side in src tgt; do cp "$bpe/cornell_$split.$side.txt" "$run/text/cornell/$split.$side.txt"; done
done
"$python" cornell_dialog.py --src_folder "$run/text/cornell" --existed_vocab "$vocab" \
  --output_folder "$run/data/cornell" --max_len 64
}
run_stage records records_stage

common=(--config config/config_reproduce.json --vocab "$vocab" --set "model_config.vocab_size=$vocab_size")
giga=$run/data/gigaword cornell=$run/data/cornell

run_train_stage() {  # NAME ARGS...: a training whose wall_s marks it complete; a rerun restarts an unfinished one
  local name=$1; shift
  if [ -f "$run/$name/wall_s" ]; then printf '\n=== train %s: done before, skipped\n' "$name"; return; fi
  rm -rf "${run:?}/$name"
  mkdir -p "$run/$name"
  date +%s > "$run/$name/start_time"
  local begin=$SECONDS
  "$python" train.py "${common[@]}" --threads "$threads" --output "$run/$name" "$@"
  echo $((SECONDS - begin)) > "$run/$name/wall_s"
}

task_data() {  # TASK -> data_overrides (KEY=VALUE) for its fine-tuning data, and data_sets (the same, with --set)
  local dataset valid override
  if [ "$1" = gigaword ]; then dataset=$giga/gigaword_train.mindrecord valid=$giga/gigaword_valid.mindrecord
  else dataset=$cornell/cornell_train.mindrecord valid=$cornell/cornell_valid.mindrecord; fi
  data_overrides=("dataset_config.fine_tune_dataset=$dataset" "dataset_config.valid_dataset=$valid")
  # Every (source, target) bucket shape compiles its own train and eval graphs (~1 GB and about a minute each at
  # 64 x 64 with this vocabulary): Cornell, long on both sides, filled 16 GB with the 4 x 4 shapes of 4 boundaries.
  if [ "$1" = cornell ]; then data_overrides+=("dataset_config.bucket_boundaries=[32, 64]"); fi
  data_sets=()
  for override in "${data_overrides[@]}"; do data_sets+=(--set "$override"); done
}

evaluate() {  # TASK VARIANT CHECKPOINT: test scores into RUN/TASK_VARIANT/
  local task=$1 variant=$2 checkpoint=$3 folder=$run/$1_$2
  stage "evaluate ${task}_$variant ($checkpoint)"
  if [ "$task" = gigaword ]; then
    [ -f "$folder/test.hyp.txt.json" ] ||
    "$python" eval.py --config "$folder/config.json" --vocab "$vocab" --metric rouge --checkpoint "$checkpoint" \
      --test_dataset "$giga/gigaword_test.mindrecord" --reference "$tok/giga_test.title.txt" \
      --output "$folder/test.hyp.txt" --threads "$threads"
  else
    [ -f "$folder/test.nll.txt.json" ] ||
    "$python" eval.py --config "$folder/config.json" --vocab "$vocab" --metric ppl --checkpoint "$checkpoint" \
      --test_dataset "$cornell/cornell_test.mindrecord" --output "$folder/test.nll.txt" --threads "$threads"
  fi
}

# Chain 1: MASS pre-training, then fine-tuning from its weights on each task.
pretrained_chain() {
  stage "MASS pre-training on news ($pre_updates updates)"
  run_train_stage pretrain --set "dataset_config.epochs=1" \
    --set "dataset_config.pre_train_dataset=$run/data/news/news.mindrecord" --max_updates "$pre_updates"
  # The pre-trained weights: the newest training checkpoint (the run stops after max_updates with one).
  local pretrained task
  pretrained=$("$python" -c 'import json, os, sys; folder = sys.argv[1]; kept = json.load(open(os.path.join(folder, "latest.json")))["kept"]; print(os.path.join(folder, kept[-1]))' "$run/pretrain/checkpoints")
  echo "pre-trained weights: $pretrained"
  for task in $tasks; do
    task_data "$task"
    stage "fine-tune ${task}_pretrained ($ft_epochs epochs)"
    run_train_stage "${task}_pretrained" --set "dataset_config.epochs=$ft_epochs" "${data_sets[@]}" \
      --set "checkpoint_options.existed_ckpt=$pretrained"
  done
  for task in $tasks; do evaluate "$task" pretrained "$run/${task}_pretrained/checkpoints/best.ckpt"; done
}

# Chain 2: from random weights. One run per task serves both baselines: trained for the same total compute (the
# fine-tuning epochs plus as many epochs as the task's half of the pre-training updates buys; the pre-training
# serves both tasks), it also keeps, as best_epochN.ckpt, the checkpoint that a run of only the N fine-tuning
# epochs would have selected (the data order and the isr schedule do not depend on the total; tests/test_trainer.py
# checks it bit for bit). Compute is counted in updates, not seconds, so the figure does not depend on what else
# the machine runs; a pre-training update (64 news sentences of ~25 subwords) costs about what a fine-tuning one
# does, so this errs towards the baseline.
scratch_chain() {
  local task batches long_epochs
  for task in $tasks; do
    task_data "$task"
    # Updates per epoch: the batch plan of this config (batch size, bucket boundaries) on the task's records.
    batches=$("$python" -c 'import sys; from config.config import load_config; from src.dataset import iterate_batches, load_dataset; data = load_config(sys.argv[1], sys.argv[2:]).dataset_config; print(len(iterate_batches(load_dataset(data.fine_tune_dataset), batch_size=data.batch_size, max_tokens=data.max_tokens, bucket_boundaries=data.bucket_boundaries)))' \
      config/config_reproduce.json "${data_overrides[@]}")
    long_epochs=$(( ft_epochs + (pre_updates + batches) / (2 * batches) ))
    [ -n "$SCRATCH_LONG_EPOCHS" ] && long_epochs=$SCRATCH_LONG_EPOCHS
    stage "train ${task}_scratch_long ($long_epochs epochs: $ft_epochs + $pre_updates pre-training updates / 2 at $batches updates per epoch; epoch $ft_epochs's selection kept for ${task}_scratch)"
    run_train_stage "${task}_scratch_long" --set "dataset_config.epochs=$long_epochs" "${data_sets[@]}" \
      --set "checkpoint_options.best_at_epochs=[$ft_epochs]"
    # RUN/TASK_scratch: the same-epochs baseline's config, wall time (to the end of its last epoch) and scores.
    "$python" - "$run/${task}_scratch_long" "$run/${task}_scratch" "$ft_epochs" <<'PY'
import json, os, sys
long_run, short_run, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(short_run, exist_ok=True)
with open(os.path.join(long_run, "config.json"), encoding="utf-8") as handle:
    config = json.load(handle)
config["dataset_config"]["epochs"] = epochs
with open(os.path.join(short_run, "config.json"), "w", encoding="utf-8") as out:
    json.dump(config, out, indent=2)
with open(os.path.join(long_run, "start_time"), encoding="utf-8") as handle:
    start = int(handle.read())
with open(os.path.join(long_run, "metrics.jsonl"), encoding="utf-8") as handle:
    end = [record["time"] for record in map(json.loads, handle)
           if record["type"] == "valid" and record.get("epoch_end", True)][epochs - 1]
with open(os.path.join(short_run, "wall_s"), "w", encoding="utf-8") as out:
    out.write(f"{round(end - start)}\n")
with open(os.path.join(short_run, "README"), "w", encoding="utf-8") as out:
    out.write(f"The first {epochs} epochs of {long_run}: its checkpoints/best_epoch{epochs}.ckpt.\n")
PY
  done
  for task in $tasks; do
    evaluate "$task" scratch "$run/${task}_scratch_long/checkpoints/best_epoch$ft_epochs.ckpt"
    evaluate "$task" scratch_long "$run/${task}_scratch_long/checkpoints/best.ckpt"
  done
}

if [ "$parallel" = 1 ]; then
  # The two chains side by side, one kernel thread each: on 2 cores this gives more total throughput than one
  # chain after the other with 2 threads each (MindSpore's CPU kernels scale poorly on these small matrices), and
  # the two chains are about equally long (P + 2 F updates each, for P pre-training and F fine-tuning updates).
  stage "two chains side by side, one thread each: logs $run/reproduce.pretrained.log and reproduce.scratch.log"
  threads=1; export OMP_NUM_THREADS=1
  pretrained_chain > >(sed -u "s/^/[pretrained] /" | tee -a "$run/reproduce.pretrained.log") 2>&1 &
  first=$!
  scratch_chain > >(sed -u "s/^/[scratch] /" | tee -a "$run/reproduce.scratch.log") 2>&1 &
  second=$!
  failed=0
  wait "$first" || failed=1
  wait "$second" || failed=1
  [ "$failed" = 0 ] || { echo "error: a chain failed (see $run/reproduce.*.log)" >&2; exit 1; }
else
  pretrained_chain
  scratch_chain
fi

# The table of what has test scores so far.
stage "results table"
"$python" bench/reproduce_table.py "$run"
stage "done in $((SECONDS - start)) s: $run/results.md"
