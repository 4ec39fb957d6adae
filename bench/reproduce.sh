#!/usr/bin/env bash
# Reduced-scale MASS reproduction on ../shared/data: pre-train a d256 3+3 model on the news sentences, fine-tune it on
# Gigaword 10K and the first 10K Cornell train pairs, and compare with training from scratch for the same fine-tuning
# epochs and for the same total compute (fine-tuning extended by the pre-training time). Checkpoints are selected on
# the validation sets; ROUGE-1/2/L on the 1,951 Gigaword test pairs, perplexity on the Cornell test set.
# usage: bash bench/reproduce.sh [RUN_FOLDER]      QUICK=1 runs every stage on small subsets (a smoke test)
# Budget: PRETRAIN_UPDATES (default 1000 updates of 64 sentences), FINETUNE_EPOCHS (3); the same-compute baseline's
# epochs are computed from the measured times (SCRATCH_LONG_EPOCHS overrides). A rerun into the same folder skips
# what completed; UNTIL=text|bpe|records stops after that stage. TASKS=gigaword / TASKS=cornell (default both) limits
# the fine-tuning to one task, so the two can run side by side; the one that ends last writes the table.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
data=${SHARED_DATA:-$repo/../shared/data}
[ -d "$data/news" ] || { echo "error: $data not found (the real corpora live in ../shared/data)" >&2; exit 2; }
run=${1:-runs/reproduce}
python="$(bash scripts/ensure_venv.sh)/bin/python"
export PYTHONUNBUFFERED=1 PYTHON=$python
quick=${QUICK:-0}
pre_updates=${PRETRAIN_UPDATES:-1000} ft_epochs=${FINETUNE_EPOCHS:-3} SCRATCH_LONG_EPOCHS=${SCRATCH_LONG_EPOCHS:-}
lines=0
if [ "$quick" = 1 ]; then lines=600; pre_updates=10; ft_epochs=1; fi
mkdir -p "$run"
tasks=${TASKS:-gigaword cornell}
# TASKS=gigaword and TASKS=cornell may run side by side (after the shared stages): each logs on its own.
log=reproduce.log; [ "$tasks" = "gigaword cornell" ] || log="reproduce.${tasks// /_}.log"
exec > >(tee -a "$run/$log") 2>&1
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
"$python" apply_bpe_encoding.py --codes "$run/vocab/bpe.codes" --src_folder "$tok" --output_folder "$bpe" \
  --prefix "" --vocab_path "$run/vocab/vocab.txt" --threshold 3 --processes 2
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

run_train_stage() {  # NAME: a training whose wall_s marks it complete; a rerun restarts an unfinished one
  local name=$1; shift
  if [ -f "$run/$name/wall_s" ]; then printf '\n=== train %s: done before, skipped\n' "$name"; return; fi
  rm -rf "${run:?}/$name"
  local begin=$SECONDS
  "$python" train.py "${common[@]}" --output "$run/$name" "$@"
  echo $((SECONDS - begin)) > "$run/$name/wall_s"
}

stage "MASS pre-training on news ($pre_updates updates)"
run_train_stage pretrain --set "dataset_config.epochs=1" --set "dataset_config.pre_train_dataset=$run/data/news/news.mindrecord" \
  --max_updates "$pre_updates"
pretrain_s=$(cat "$run/pretrain/wall_s")
# The pre-trained weights: the newest training checkpoint (the run stops after max_updates with one).
pretrained=$("$python" -c 'import json, os, sys; folder = sys.argv[1]; kept = json.load(open(os.path.join(folder, "latest.json")))["kept"]; print(os.path.join(folder, kept[-1]))' "$run/pretrain/checkpoints")
echo "pre-trained weights: $pretrained"

giga=$run/data/gigaword cornell=$run/data/cornell
for task in $tasks; do
  if [ "$task" = gigaword ]; then dataset=$giga/gigaword_train.mindrecord valid=$giga/gigaword_valid.mindrecord
  else dataset=$cornell/cornell_train.mindrecord valid=$cornell/cornell_valid.mindrecord; fi
  data_sets=(--set "dataset_config.fine_tune_dataset=$dataset" --set "dataset_config.valid_dataset=$valid")
  # Every (source, target) bucket shape compiles its own train and eval graphs, each with its own memory (~1 GB at
  # 64 x 64 with this vocabulary): Cornell, long on both sides, filled 16 GB with the 4 x 4 shapes of the 4 boundaries.
  [ "$task" = cornell ] && data_sets+=(--set "dataset_config.bucket_boundaries=[32, 64]")
  stage "fine-tune ${task}_pretrained ($ft_epochs epochs)"
  run_train_stage "${task}_pretrained" --set "dataset_config.epochs=$ft_epochs" "${data_sets[@]}" \
    --set "checkpoint_options.existed_ckpt=$pretrained"
  stage "train ${task}_scratch ($ft_epochs epochs)"
  run_train_stage "${task}_scratch" --set "dataset_config.epochs=$ft_epochs" "${data_sets[@]}"
  # Same total compute: the fine-tuning epochs plus as many epochs as this task's share of the pre-training
  # updates buys (the pre-training serves both tasks, so each is charged half), counted in updates rather than
  # seconds so that the figure does not depend on what else the machine was running; a pre-training update (64
  # news sentences of ~25 subwords) costs about what a fine-tuning one does, so this errs towards the baseline.
  batches=$("$python" -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["batches"])' \
    "$run/${task}_scratch/metrics.jsonl")
  long_epochs=$(( ft_epochs + (pre_updates + batches) / (2 * batches) ))
  [ -n "$SCRATCH_LONG_EPOCHS" ] && long_epochs=$SCRATCH_LONG_EPOCHS
  stage "train ${task}_scratch_long ($long_epochs epochs: $ft_epochs + $pre_updates pre-training updates / 2 at $batches updates per epoch)"
  run_train_stage "${task}_scratch_long" --set "dataset_config.epochs=$long_epochs" "${data_sets[@]}"

  for variant in pretrained scratch scratch_long; do
    stage "evaluate ${task}_$variant"
    if [ "$task" = gigaword ]; then
      [ -f "$run/gigaword_$variant/test.hyp.txt.json" ] ||
      "$python" eval.py --config "$run/gigaword_$variant/config.json" --vocab "$vocab" --metric rouge \
        --checkpoint "$run/gigaword_$variant/checkpoints/best.ckpt" --test_dataset "$giga/gigaword_test.mindrecord" \
        --reference "$tok/giga_test.title.txt" --output "$run/gigaword_$variant/test.hyp.txt"
    else
      [ -f "$run/cornell_$variant/test.nll.txt.json" ] ||
      "$python" eval.py --config "$run/cornell_$variant/config.json" --vocab "$vocab" --metric ppl \
        --checkpoint "$run/cornell_$variant/checkpoints/best.ckpt" --test_dataset "$cornell/cornell_test.mindrecord" \
        --output "$run/cornell_$variant/test.nll.txt"
    fi
  done
done

# The table of what has test scores so far (the chain that ends last writes the complete one).
stage "results table"
"$python" bench/reproduce_table.py "$run"
stage "done in $((SECONDS - start)) s: $run/results.md"
