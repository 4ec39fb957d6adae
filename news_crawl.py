"""Pre-training records from BPE'd monolingual text (e.g. News Crawl): filter, mask (MASS), write.

Input: --input_files A B ... (read in the order given), or every file in --src_folder whose name ends with
--suffix (sorted by name); one sentence per line, space-separated subword tokens. A sentence of m tokens becomes
m + 1 ids with </s>; it is kept when m >= --min_len and m + 1 <= --max_len (so records fit a model with
seq_length = max_len).
Vocabulary: --existed_vocab FILE, or --dict_folder DIR to build one from the tokens of the kept sentences
(build_vocabulary in src/dictionary.py, as apply_bpe_encoding.py: most frequent first, padded to a multiple of 8)
and save it as DIR/vocab.txt. The vocabulary used is also saved beside the records as OUTPUT/vocab.txt.
Output: OUTPUT/news.mindrecord (or news.tfrecord); with --num_shards N > 1: news.mindrecord0 .. news.mindrecord{N-1}
(+ .db index files for MindRecord). Each sentence's masking draws are hashed from (seed, line index) (line index
counted over all input files; src/masking.py), so the output is the same for any --processes.
Streaming: the text is read twice (a check-and-count pass, then masking and writing in chunks of 2,000 sentences),
never held whole; --processes workers mask chunks while this process writes, or with --num_shards > 1 each worker
masks and writes whole shards (src/builders.py).
"""
import argparse
import os
import time

from src.builders import build_monolingual_records, check_record_set_output, format_counts, scan_monolingual
from src.cli_args import add_record_set_arguments
from src.dictionary import Dictionary, build_vocabulary
from src.errors import UserError, check_output_folder, require_file, require_folder, run_cli
from src.masking import LANGUAGE_MODELS
from src.progress import progress_bar


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    inputs = parser.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--input_files", nargs="+", metavar="FILE",
                        help="BPE'd monolingual text files, read in this order")
    inputs.add_argument("--src_folder", help="folder of BPE'd monolingual text files (see --suffix)")
    vocab = parser.add_mutually_exclusive_group(required=True)
    vocab.add_argument("--existed_vocab", help="vocabulary file (Dictionary.persistence format)")
    vocab.add_argument("--dict_folder", help="build the vocabulary from the data and save it as DIR/vocab.txt")
    parser.add_argument("--output_folder", required=True)
    parser.add_argument("--mask_ratio", type=float, default=0.5)
    parser.add_argument("--language_model", choices=LANGUAGE_MODELS, default="mass")
    parser.add_argument("--max_len", type=int, default=64, help="most ids per sentence, </s> included")
    parser.add_argument("--min_len", type=int, default=1, help="fewest tokens per sentence, </s> excluded")
    parser.add_argument("--suffix", help="with --src_folder: read only files whose names end with this")
    parser.add_argument("--processes", type=int, default=2)
    add_record_set_arguments(parser)
    args = parser.parse_args(argv)
    if args.suffix is not None and not args.src_folder:
        parser.error("--suffix goes with --src_folder")
    if not 0.0 < args.mask_ratio <= 1.0:
        parser.error("--mask_ratio must be in (0, 1]")
    if args.min_len < 1 or args.max_len < args.min_len + 1:
        parser.error("need --min_len >= 1 and --max_len >= --min_len + 1")
    if args.processes < 1 or args.num_shards < 1:
        parser.error("--processes and --num_shards must be at least 1")
    return args


def folder_files(src_folder, suffix=""):
    """The files of src_folder whose names end with suffix, sorted by name (hidden files left out)."""
    require_folder(src_folder, "source folder")
    names = sorted(name for name in os.listdir(src_folder)
                   if name.endswith(suffix) and not name.startswith(".")
                   and os.path.isfile(os.path.join(src_folder, name)))
    if not names:
        raise UserError(f"no files ending with {suffix!r} in {src_folder}")
    return [os.path.join(src_folder, name) for name in names]


def main(args):
    started = time.time()
    vocab = Dictionary.load_from_persisted_dict(args.existed_vocab) if args.existed_vocab else None
    sources = args.input_files or folder_files(args.src_folder, args.suffix or "")
    for path in sources:
        require_file(path, "corpus file")
    output = os.path.join(args.output_folder, f"news.{args.format}")
    check_output_folder(args.output_folder, "--output_folder", files=["vocab.txt"])
    check_record_set_output(output, args.format, args.num_shards)
    if args.dict_folder:
        check_output_folder(args.dict_folder, "--dict_folder", files=["vocab.txt"])
    # First pass: check the text, count kept and dropped sentences (and their tokens for --dict_folder).
    scan = scan_monolingual(sources, min_len=args.min_len, max_len=args.max_len, language_model=args.language_model,
                            mask_ratio=args.mask_ratio, count_tokens=vocab is None)
    if not scan.kept:
        raise UserError(f"no sentence in {args.src_folder or ' '.join(sources)} has between {args.min_len} and "
                        f"{args.max_len - 1} tokens")
    if vocab is None:
        vocab = build_vocabulary(scan.token_counts, pad_to_multiple=8)
    counts = dict(scan.counts)
    with progress_bar(total=scan.kept, desc="news records", unit="sent") as progress:
        paths, unknown = build_monolingual_records(
            sources, scan, vocab, path=output, language_model=args.language_model, mask_ratio=args.mask_ratio,
            seed=args.seed, min_len=args.min_len, max_len=args.max_len, format=args.format,
            num_shards=args.num_shards, processes=args.processes, progress=progress)
    vocab.persistence(os.path.join(args.output_folder, "vocab.txt"))
    if args.dict_folder:
        vocab.persistence(os.path.join(args.dict_folder, "vocab.txt"))
    counts.update(unknown_tokens=unknown, vocab_size=len(vocab), shards=len(paths),
                  seconds=round(time.time() - started, 1))
    print(format_counts("news_crawl", counts) + f" output={paths[0]}")


if __name__ == "__main__":
    run_cli(main, parse_args())
