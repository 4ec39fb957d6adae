#!/usr/bin/env bash
# Learns BPE merge operations (subword-nmt learn-bpe) from tokenized text.
#
#   bash scripts/learn_subword.sh MERGES OUTPUT_CODES INPUT...
#
#   MERGES        number of merge operations to learn, e.g. 10000 (fewer if the text runs out of pairs)
#   OUTPUT_CODES  codes file to write; "-" means vocab/all.bpe.codes
#   INPUT...      tokenized text files (tokenize_corpus.py output), or folders: all their *.txt files
#
# Uses $PYTHON, else the repository's .venv/bin/python. The codes file is written atomically.
# Whole <unk> tokens are left out of the counts: BPE never cuts <unk> (apply_bpe_encoding.py --glossaries), so merges
# rebuilding it would be wasted.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
usage="usage: bash scripts/learn_subword.sh MERGES OUTPUT_CODES INPUT... (OUTPUT_CODES '-' = vocab/all.bpe.codes)"
fail() { echo "error: $*" >&2; exit 2; }

[ "$#" -ge 3 ] || { echo "$usage" >&2; exit 2; }
merges=$1; codes=$2; shift 2
[[ "$merges" =~ ^[1-9][0-9]*$ ]] || fail "MERGES must be a positive integer, got '$merges'"
[ "$codes" = "-" ] && codes="$repo/vocab/all.bpe.codes"
# The output is checked before any work: a folder there would swallow the codes as a hidden file.
[ ! -d "$codes" ] || fail "OUTPUT_CODES $codes is a directory; expected the path of a codes file"

inputs=()
for input in "$@"; do
  if [ -d "$input" ]; then
    found=0
    for file in "$input"/*.txt; do
      [ -e "$file" ] || [ -L "$file" ] || continue  # no match leaves the pattern; a dangling link fails below
      [ -f "$file" ] && [ -r "$file" ] || fail "cannot read $file: not a readable regular file"
      inputs+=("$file"); found=1
    done
    [ "$found" = 1 ] || fail "no .txt files in folder $input"
  elif [ -f "$input" ] && [ -r "$input" ]; then
    inputs+=("$input")
  else
    fail "input not found or not readable: $input"
  fi
done
# learn-bpe fails with a traceback on text without a single word.
grep -qm1 '[^[:space:]]' "${inputs[@]}" || fail "no words in ${inputs[*]} (empty corpus)"

python=${PYTHON:-$repo/.venv/bin/python}
[ -x "$python" ] || command -v "$python" >/dev/null 2>&1 || fail "python not found: $python (run 'make venv' or set PYTHON)"

mkdir -p "$(dirname "$codes")" 2>/dev/null || fail "cannot create the folder of OUTPUT_CODES $codes"
[ -w "$(dirname "$codes")" ] || fail "cannot write OUTPUT_CODES $codes: folder $(dirname "$codes") is not writable"
tmp=$(mktemp "$(dirname "$codes")/.$(basename "$codes").XXXXXX") || fail "cannot write OUTPUT_CODES $codes"
trap 'rm -f "$tmp"' EXIT
SECONDS=0
# sed loop: one whole-token <unk> removed per pass (its spaces kept: learn-bpe skips empty words) until none is left.
cat "${inputs[@]}" | sed -e ':a' -e 's/\(^\| \)<unk>\( \|$\)/\1\2/' -e 'ta' \
  | "$python" -m subword_nmt.learn_bpe --symbols "$merges" --output "$tmp"
learned=$(($(wc -l < "$tmp") - 1))
[ "$learned" -ge 1 ] || fail "no merges learned from ${inputs[*]} (is the text empty?)"
mv -T "$tmp" "$codes"
trap - EXIT
echo "learned $learned merges (asked $merges) from ${#inputs[@]} files in ${SECONDS}s -> $codes"
