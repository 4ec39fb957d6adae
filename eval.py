"""Decodes a test set with beam search and scores it (ROUGE), or scores the teacher-forced test set (perplexity).

    python eval.py --config config/config.json --vocab VOCAB --metric rouge --output runs/x/test.hyp.txt \
        [--checkpoint CKPT] [--test_dataset RECORDS] [--reference TITLES] [--batch_size N] [--set KEY=VALUE ...]
    python eval.py --config RUN/config.json --vocab VOCAB --metric rouge --output headlines.txt --checkpoint CKPT \
        --input_text articles.txt --codes BPE_CODES [--tokenizer nltk] [--lowercase] [--digits_to_hash] \
        [--map_token FROM=TO ...] [--tokenized] [--reference TITLES]

rouge: every test example is decoded (none dropped, input order kept) with the config's beam settings
(model_config.beam_width, length_penalty_weight, max_decode_length, min_decode_length, no_repeat_ngram_size,
unk_penalty), never emitting <pad> <s> <mask> or the vocabulary's fillers; OUTPUT gets one hypothesis per line,
BPE removed. References: --reference (one title per line, BPE removed if present) or else the records' targets
decoded with the vocabulary (truncated by the record builder when long).
ppl: OUTPUT gets one line per example, `nll<TAB>tokens` (its summed -log p and target tokens, </s> included).
Either way OUTPUT.json holds the scores, the number of examples, the decode settings and the wall time.
Both files are written only when everything succeeded.

--input_text FILE (rouge only, instead of records): plain text articles, one per line, go through the run's text
pipeline here: tokenize_corpus.py's tokenizer, line policies and normalisation (--tokenizer, --lowercase,
--digits_to_hash, --map_token: give the flags the training text had), then BPE with --codes (<unk> never cut, as
apply_bpe_encoding.py), the vocabulary's ids and </s>, each source cut to model_config.seq_length ids keeping </s>.
Every line gives one headline line, an empty article too: the decoded tokens with BPE removed, detokenized by the
tokenizer's detokenizer (src/tokenization.py get_detokenizer: "police say ## hurt in nessa , officials say" ->
"police say ## hurt in nessa, officials say"), or with --tokenized joined by single spaces, as decoding records
writes them (Gigaword's references are tokenized text). With --reference the lines as written are scored with
ROUGE; without, OUTPUT.json holds no scores.
"""
import argparse
import json
import os
import time

from src.errors import UserError, atomic_outputs, check_output_file, require_file, run_cli
from src.tokenization import TOKENIZERS

TEXT_FLAGS = ("--codes", "--tokenizer", "--lowercase", "--digits_to_hash", "--map_token", "--tokenized")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="JSON config file")
    parser.add_argument("--set", action="append", default=[], metavar="GROUP.KEY=VALUE",
                        help="override a config key (repeatable), e.g. --set model_config.beam_width=1")
    parser.add_argument("--vocab", required=True, help="vocabulary file the records were built with")
    parser.add_argument("--metric", required=True, choices=("rouge", "ppl"))
    parser.add_argument("--output", required=True, help="hypotheses (rouge) or per-example NLL (ppl); scores go "
                        "to OUTPUT.json")
    parser.add_argument("--checkpoint", default=None, help="model weights .ckpt/.npz (default "
                        "checkpoint_options.existed_ckpt)")
    parser.add_argument("--test_dataset", default=None, help="record file(s), comma-separated (default "
                        "dataset_config.test_dataset)")
    parser.add_argument("--reference", default=None, help="reference titles, one per test example (rouge)")
    parser.add_argument("--batch_size", type=int, default=None, help="sentences per batch (default "
                        "dataset_config.batch_size)")
    parser.add_argument("--rouge_stemmer", action="store_true", help="Porter stemming in ROUGE (as files2rouge's "
                        "-m); off by default")
    parser.add_argument("--device_target", choices=("CPU", "GPU", "Ascend"), default="CPU")
    parser.add_argument("--threads", type=int, default=0, metavar="N", help="CPU kernel threads (default: MindSpore's)")
    parser.add_argument("--input_text", default=None, metavar="FILE", help="plain text articles, one per line "
                        "(untokenized), decoded instead of --test_dataset (rouge)")
    parser.add_argument("--codes", default=None, help="BPE codes of the run (with --input_text)")
    parser.add_argument("--tokenizer", choices=TOKENIZERS, default=None,
                        help="as tokenize_corpus.py --tokenizer (with --input_text; default nltk)")
    parser.add_argument("--lowercase", action="store_true", help="as tokenize_corpus.py (with --input_text)")
    parser.add_argument("--digits_to_hash", action="store_true", help="as tokenize_corpus.py (with --input_text)")
    parser.add_argument("--map_token", action="append", default=[], metavar="FROM=TO",
                        help="as tokenize_corpus.py, repeatable (with --input_text), e.g. UNK=<unk>")
    parser.add_argument("--tokenized", action="store_true", help="with --input_text: write the headlines' tokens "
                        "joined by spaces, as decoding records does, instead of detokenized text")
    args = parser.parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch_size must be >= 1")
    if args.threads < 0:
        parser.error("--threads must be >= 0 (0: MindSpore's default)")
    if args.reference is not None and args.metric != "rouge":
        parser.error("--reference goes with --metric rouge")
    if args.input_text is None:
        given = [flag for flag in TEXT_FLAGS if getattr(args, flag[2:]) not in (None, False, [])]
        if given:
            parser.error(f"{', '.join(given)} go(es) with --input_text")
    else:
        if args.metric != "rouge":
            parser.error("--input_text goes with --metric rouge (plain text has no targets to score)")
        if args.test_dataset is not None:
            parser.error("--input_text and --test_dataset exclude each other")
        if args.codes is None:
            parser.error("--input_text needs --codes, the BPE codes the run's text was encoded with")
        args.tokenizer = args.tokenizer or "nltk"
    return args


def scores_path(output):
    return output + ".json"


def read_references(path, count):
    from src.builders import read_text_lines
    lines = read_text_lines(path, "reference file")
    if len(lines) != count:
        raise UserError(f"reference file {path} has {len(lines)} lines but the test set has {count} examples")
    return lines


def text_examples(path, codes, vocab, *, tokenizer, normalize, max_len, max_chars=10000):
    """Plain text articles -> (one fine-tuning example per line, its source the article's ids and </s>, cut to
    max_len ids; a dict of counts). The text pipeline of the records: tokenize_corpus.py's tokenization and line
    policies, `normalize`, BPE with `codes` (never cutting <unk>), the vocabulary's ids."""
    import collections

    import numpy as np

    from src.bpe import GLOSSARIES, BpeApplier
    from src.builders import truncate_ids
    from src.corpus_files import iter_line_blocks
    from src.dictionary import EOS_ID, UNK_ID
    from src.masking import make_pair_example
    from src.tokenization import tokenize_block

    stats = collections.Counter()
    tokenized = []
    for block, _ in iter_line_blocks(path, 2000):
        text, block_stats = tokenize_block(block, tokenizer, max_chars, normalize)
        tokenized.append(text)
        stats.update(block_stats)
    if not stats["lines"]:
        raise UserError(f"input text file {path} is empty: expected one article per line")
    encoded = BpeApplier(codes, glossaries=GLOSSARIES).apply_bytes("".join(tokenized).encode("utf-8"))
    lines = encoded.decode("utf-8").split("\n")[:-1]  # tokenized lines end with "\n" and hold no other line end
    assert len(lines) == stats["lines"], (len(lines), stats["lines"])
    examples = []
    for line in lines:
        ids = vocab.encode_line(line)
        stats["truncated"] += len(ids) > max_len
        ids = truncate_ids(ids, max_len)
        stats["unknown_tokens"] += int(np.count_nonzero(ids == UNK_ID))
        examples.append(make_pair_example(ids, np.array([EOS_ID], np.int32)))
    counts = {key: int(stats[key]) for key in ("lines", "tokens", "empty", "crlf", "invalid_utf8", "too_long",
                                               "mapped", "truncated", "unknown_tokens")}
    return examples, counts


def main(args):
    os.environ.setdefault("GLOG_v", "3")  # keep MindSpore's warnings out of the progress output
    from config.config import load_config
    from src.dictionary import Dictionary, check_vocabulary_fits
    config = load_config(args.config, args.set)
    model_config = config.model_config
    for path in (args.output, scores_path(args.output)):
        check_output_file(path)
    vocab = Dictionary.load_from_persisted_dict(require_file(args.vocab, "vocabulary file"))
    check_vocabulary_fits(vocab, args.vocab, model_config.vocab_size)
    checkpoint = args.checkpoint or config.checkpoint_options.existed_ckpt
    if not checkpoint:
        raise UserError("no weights to evaluate: pass --checkpoint or set checkpoint_options.existed_ckpt")
    require_file(checkpoint, "checkpoint")
    test_dataset = None if args.input_text else args.test_dataset or config.dataset_config.test_dataset
    if not test_dataset and not args.input_text:
        raise UserError("no test set: pass --test_dataset or set dataset_config.test_dataset")
    if args.input_text:
        from src.bpe import load_bpe_codes
        from src.tokenization import Normalization, parse_token_map
        require_file(args.input_text, "input text file")
        normalize = Normalization(args.lowercase, args.digits_to_hash, parse_token_map(args.map_token))
        codes = load_bpe_codes(args.codes)
    batch_size = args.batch_size or config.dataset_config.batch_size
    for path in (args.reference,) if args.reference else ():
        require_file(path, "reference file")

    from src.checkpoint import load_model_weights
    from src.dataset import iterate_batches, load_dataset
    from src.device import setup_device
    from src.model import Seq2SeqModel
    from src.progress import progress_bar
    from src.records import validate_examples

    setup_device(args.device_target, threads=args.threads)
    if args.input_text:
        examples, text_counts = text_examples(args.input_text, codes, vocab, tokenizer=args.tokenizer,
                                              normalize=normalize, max_len=model_config.seq_length)
    else:
        examples = load_dataset(test_dataset)
    validate_examples(examples, len(vocab), where=test_dataset or args.input_text)
    references = read_references(args.reference, len(examples)) if args.reference else None
    model = Seq2SeqModel(model_config)
    load_model_weights(model, checkpoint, vocab.checksum())
    model.set_train(False)
    batches = iterate_batches(examples, batch_size=batch_size, eval_mode=True, shuffle=False,
                              bucket_boundaries=config.dataset_config.bucket_boundaries)
    summary = {"metric": args.metric, "examples": len(examples), "checkpoint": checkpoint,
               "test_dataset": test_dataset, "batch_size": batch_size, "device_target": args.device_target}
    if args.input_text:
        from src.bpe import GLOSSARIES
        summary["input_text"] = {"path": args.input_text, "codes": args.codes, "tokenizer": args.tokenizer,
                                 "lowercase": args.lowercase, "digits_to_hash": args.digits_to_hash,
                                 "map_token": normalize.token_map, "glossaries": list(GLOSSARIES),
                                 "detokenized": not args.tokenized,
                                 "max_len": model_config.seq_length, **text_counts}
    if args.metric == "rouge":
        summary["reference"] = args.reference or (None if args.input_text else "record targets")
    start = time.perf_counter()
    progress = progress_bar(total=len(examples), unit="sent", desc="decode" if args.metric == "rouge" else "score",
                            dynamic_ncols=True)
    with progress:
        if args.metric == "rouge":
            detokenize = None
            if args.input_text and not args.tokenized:
                from src.tokenization import get_detokenizer
                detokenize = get_detokenizer(args.tokenizer)
            lines, scores = evaluate_rouge(model, model_config, vocab, examples, batches, references,
                                           args.rouge_stemmer, progress, summary,
                                           targets_as_references=not args.input_text, detokenize=detokenize)
        else:
            lines, scores = evaluate_perplexity(model, examples, batches, progress)
    summary.update(scores)
    summary["wall_time_s"] = round(time.perf_counter() - start, 3)
    summary["sentences_per_s"] = round(len(examples) / max(summary["wall_time_s"], 1e-9), 3)
    with atomic_outputs([args.output, scores_path(args.output)]) as (lines_path, scores_file):
        with open(lines_path, "w", encoding="utf-8") as handle:
            handle.writelines(line + "\n" for line in lines)
        with open(scores_file, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
            handle.write("\n")
    shown = " ".join(f"{name}={value:.2f}" for name, value in scores.items() if isinstance(value, float))
    shown = shown + ", " if shown else ""
    print(f"eval: {len(examples)} examples, {shown}{summary['wall_time_s']:.1f} s -> {args.output}, "
          f"{scores_path(args.output)}")
    return 0


def evaluate_rouge(model, model_config, vocab, examples, batches, references, use_stemmer, progress, summary,
                   targets_as_references=True, detokenize=None):
    """Decoded lines (BPE removed; `detokenize`d: tokens -> text, when given) and their ROUGE scores against
    `references`, or the examples' targets when `targets_as_references`; no scores ({}) without either."""
    from src.beam_search import cached_decoder, decode_batches, search_from_config
    from src.metrics import UNKNOWN_TOKEN, rouge_scores
    from src.metrics import remove_bpe

    search = search_from_config(model_config, vocab)  # never emits the vocabulary's fillers nor ids past its end
    decoder = cached_decoder(model, search)
    hypotheses = decode_batches(decoder, batches, len(examples), progress)
    lines = [remove_bpe(vocab.decode(tokens)) for tokens in hypotheses]
    if detokenize is not None:
        lines = [detokenize(line.split()) for line in lines]
    if references is None and targets_as_references:
        references = [remove_bpe(vocab.decode(example.target_ids)) for example in examples]
    summary["decode"] = {"beam_width": search.beam_width, "length_penalty_weight": search.alpha,
                         "max_decode_length": search.max_decode_length,
                         "min_decode_length": search.min_decode_length,
                         "no_repeat_ngram_size": search.no_repeat_ngram_size,
                         "early_stopping": search.early_stopping, "unk_penalty": search.unk_penalty}
    if references is None:
        return lines, {}
    summary["rouge"] = {"package": "rouge-score", "stemming": use_stemmer,
                        "unknown_words": f"<unk> and UNK scored as '{UNKNOWN_TOKEN}'"}
    return lines, rouge_scores(references, lines, use_stemmer=use_stemmer)


def evaluate_perplexity(model, examples, batches, progress):
    from src.metrics import perplexity, teacher_forced_nll

    nll, tokens = teacher_forced_nll(model, batches, len(examples), progress)
    lines = [f"{value:.6f}\t{count}" for value, count in zip(nll, tokens)]
    return lines, {"ppl": perplexity(float(nll.sum()), int(tokens.sum())), "nll_sum": float(nll.sum()),
                   "target_tokens": int(tokens.sum())}


if __name__ == "__main__":
    run_cli(main, parse_args())
