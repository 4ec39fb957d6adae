"""Decodes a test set with beam search and scores it (ROUGE), or scores the teacher-forced test set (perplexity).

    python eval.py --config config/config.json --vocab VOCAB --metric rouge --output runs/x/test.hyp.txt \
        [--checkpoint CKPT] [--test_dataset RECORDS] [--reference TITLES] [--batch_size N] [--set KEY=VALUE ...]

rouge: every test example is decoded (none dropped, input order kept) with the config's beam settings
(model_config.beam_width, length_penalty_weight, max_decode_length, min_decode_length, no_repeat_ngram_size,
unk_penalty), never emitting <pad> <s> <mask> or the vocabulary's fillers; OUTPUT gets one hypothesis per line,
BPE removed. References: --reference (one title per line, BPE removed if present) or else the records' targets
decoded with the vocabulary (truncated by the record builder when long).
ppl: OUTPUT gets one line per example, `nll<TAB>tokens` (its summed -log p and target tokens, </s> included).
Either way OUTPUT.json holds the scores, the number of examples, the decode settings and the wall time.
Both files are written only when everything succeeded.
"""
import argparse
import json
import os
import time

from src.errors import UserError, atomic_outputs, check_output_file, require_file, run_cli


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
    args = parser.parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch_size must be >= 1")
    if args.threads < 0:
        parser.error("--threads must be >= 0 (0: MindSpore's default)")
    if args.reference is not None and args.metric != "rouge":
        parser.error("--reference goes with --metric rouge")
    return args


def scores_path(output):
    return output + ".json"


def read_references(path, count):
    from src.builders import read_text_lines
    lines = read_text_lines(path, "reference file")
    if len(lines) != count:
        raise UserError(f"reference file {path} has {len(lines)} lines but the test set has {count} examples")
    return lines


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
    test_dataset = args.test_dataset or config.dataset_config.test_dataset
    if not test_dataset:
        raise UserError("no test set: pass --test_dataset or set dataset_config.test_dataset")
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
    examples = load_dataset(test_dataset)
    validate_examples(examples, len(vocab), where=test_dataset)
    references = read_references(args.reference, len(examples)) if args.reference else None
    model = Seq2SeqModel(model_config)
    load_model_weights(model, checkpoint, vocab.checksum())
    model.set_train(False)
    batches = iterate_batches(examples, batch_size=batch_size, eval_mode=True, shuffle=False,
                              bucket_boundaries=config.dataset_config.bucket_boundaries)
    summary = {"metric": args.metric, "examples": len(examples), "checkpoint": checkpoint,
               "test_dataset": test_dataset, "batch_size": batch_size, "device_target": args.device_target}
    if args.metric == "rouge":
        summary["reference"] = args.reference or "record targets"
    start = time.perf_counter()
    progress = progress_bar(total=len(examples), unit="sent", desc="decode" if args.metric == "rouge" else "score",
                            dynamic_ncols=True)
    with progress:
        if args.metric == "rouge":
            lines, scores = evaluate_rouge(model, model_config, vocab, examples, batches, references,
                                           args.rouge_stemmer, progress, summary)
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
    print(f"eval: {len(examples)} examples, {shown}, {summary['wall_time_s']:.1f} s -> {args.output}, "
          f"{scores_path(args.output)}")
    return 0


def evaluate_rouge(model, model_config, vocab, examples, batches, references, use_stemmer, progress, summary):
    from src.beam_search import cached_decoder, decode_batches, search_from_config
    from src.metrics import UNKNOWN_TOKEN, rouge_scores
    from src.metrics import remove_bpe

    search = search_from_config(model_config, vocab)  # never emits the vocabulary's fillers nor ids past its end
    decoder = cached_decoder(model, search)
    hypotheses = decode_batches(decoder, batches, len(examples), progress)
    lines = [remove_bpe(vocab.decode(tokens)) for tokens in hypotheses]
    if references is None:
        references = [remove_bpe(vocab.decode(example.target_ids)) for example in examples]
    summary["decode"] = {"beam_width": search.beam_width, "length_penalty_weight": search.alpha,
                         "max_decode_length": search.max_decode_length,
                         "min_decode_length": search.min_decode_length,
                         "no_repeat_ngram_size": search.no_repeat_ngram_size,
                         "early_stopping": search.early_stopping, "unk_penalty": search.unk_penalty}
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
