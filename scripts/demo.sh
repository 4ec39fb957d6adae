#!/usr/bin/env bash
# The whole MASS pipeline on the bundled sample (data/sample), on CPU, into one run folder:
# tokenize -> learn BPE -> apply BPE + vocabulary -> pre-training and fine-tuning records ->
# MASS pre-training -> fine-tuning (Gigaword-style headlines) -> beam search -> ROUGE.
# usage: bash scripts/demo.sh [RUN_FOLDER]   (default runs/demo; an existing one is replaced)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
run=${1:-runs/demo}
python="$(bash scripts/ensure_venv.sh)/bin/python"
export PYTHON=$python PYTHONUNBUFFERED=1
sample=data/sample
rm -rf "$run"
mkdir -p "$run"
exec > >(tee "$run/demo.log") 2>&1
stage() { printf '\n=== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
start=$SECONDS

stage "1/8 tokenize the sample corpus (nltk, 2 processes)"
"$python" tokenize_corpus.py --corpus_folder "$sample/news,$sample/gigaword" \
  --output_folder "$run/text/tokenized" --tokenizer nltk --pool_size 2

stage "2/8 learn 1500 BPE merges with subword-nmt"
bash scripts/learn_subword.sh 1500 "$run/vocab/bpe.codes" "$run/text/tokenized"

stage "3/8 apply BPE, build the vocabulary"
"$python" apply_bpe_encoding.py --codes "$run/vocab/bpe.codes" --src_folder "$run/text/tokenized" \
  --output_folder "$run/text/bpe" --prefix "" --vocab_path "$run/vocab/vocab.txt" --processes 2
vocab_size=$(wc -l < "$run/vocab/vocab.txt")

stage "4/8 MASS pre-training records (news sentences + headline articles, mask ratio 0.5)"
"$python" news_crawl.py --input_files "$run/text/bpe/news.txt" "$run/text/bpe/train.article.txt" \
  --existed_vocab "$run/vocab/vocab.txt" --output_folder "$run/data/pretrain" --mask_ratio 0.5 --max_len 64 \
  --processes 2

stage "5/8 fine-tuning records (article -> headline)"
b="$run/text/bpe"
"$python" gigaword.py --train_src "$b/train.article.txt" --train_ref "$b/train.title.txt" \
  --valid_src "$b/valid.article.txt" --valid_ref "$b/valid.title.txt" \
  --test_src "$b/test.article.txt" --test_ref "$b/test.title.txt" \
  --existed_vocab "$run/vocab/vocab.txt" --output_folder "$run/data/finetune" --max_len 64

stage "6/8 pre-train with MASS, then fine-tune (config/config_tiny.json)"
# resumable_dropout: with MindSpore's own dropout the demo's weights and ROUGE change from run to run (one dropout
# op alone repeats its masks; the whole graph does not); the counter-based masks make every run give the same
# weights and scores, for about 60 s more.
"$python" train.py --config config/config_tiny.json --output "$run" --vocab "$run/vocab/vocab.txt" \
  --set model_config.vocab_size="$vocab_size" --set dataset_config.epochs=10 --set fine_tune_epochs=30 \
  --set bucket_boundaries=[32,64] --set learn_rate_config.lr=0.002 --set warmup_steps=40 --set decay_start_step=40 \
  --set model_config.resumable_dropout=true \
  --set dataset_config.pre_train_dataset="$run/data/pretrain/news.mindrecord" \
  --set dataset_config.fine_tune_dataset="$run/data/finetune/gigaword_train.mindrecord" \
  --set dataset_config.valid_dataset="$run/data/finetune/gigaword_valid.mindrecord"

stage "7/8 beam search on the test headlines, ROUGE"
"$python" eval.py --config "$run/config.json" --vocab "$run/vocab/vocab.txt" --metric rouge \
  --checkpoint "$run/checkpoints/best.ckpt" \
  --test_dataset "$run/data/finetune/gigaword_test.mindrecord" \
  --reference "$sample/gigaword/test.title.txt" --output "$run/hypotheses.txt"

stage "8/8 done in $((SECONDS - start)) s; everything is in $run"
ls "$run"
echo "scores:"; cat "$run/hypotheses.txt.json" 2>/dev/null || ls "$run"/*.json
