"""Cornell Movie-Dialogs: (context, response) pair files from the raw corpus, and fine-tuning records from them.

Records mode: reads {prefix}.src.txt / {prefix}.tgt.txt (BPE'd, one utterance per line, aligned) in --src_folder
for the train, valid and test prefixes and writes OUTPUT/cornell_{train,valid,test}.{mindrecord,tfrecord}, with
gigaword.py's policy: train pairs longer than --max_len ids (</s> included) or empty are dropped and counted and
get the noise channel; valid/test pairs are truncated (keeping </s>) and counted, never dropped.

Raw mode (--raw_folder DIR --pairs_output OUT): reads DIR/movie_lines.txt and DIR/movie_conversations.txt
(or the one movie_lines*.txt / movie_conversations*.txt there) in the corpus's ` +++$+++ ` format and writes every
two consecutive utterances of each conversation as a pair (--pair_stride 2: disjoint pairs only, as in the
released pair files) to OUT/{train,valid,test}.{src,tgt}.txt, split at
random (np.random.default_rng(--seed)) with --valid_size and --test_size pairs, each split in corpus order.
Text is kept as in the corpus (stripped); lines that are not UTF-8 are read as cp1252, else Latin-1.
Pairs touching a line missing from movie_lines, or an empty utterance, are skipped and counted.
"""
import argparse
import ast
import glob
import os
import re

import numpy as np

from src.builders import build_pair_record_sets, format_counts
from src.cli_args import add_pair_builder_arguments, check_pair_builder_arguments
from src.dictionary import Dictionary
from src.errors import UserError, atomic_outputs, check_output_folder, require_file, require_folder, run_cli

SEPARATOR = re.compile(r" ?\+\+\+\$\+\+\+ ?")


def decode_line(raw):
    """(text, fell_back): UTF-8, else cp1252, else Latin-1 (which accepts every byte)."""
    for encoding in ("utf-8", "cp1252"):
        try:
            return raw.decode(encoding), encoding != "utf-8"
        except UnicodeDecodeError:
            pass
    return raw.decode("latin-1"), True


def _raw_lines(path):
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            raw = raw.rstrip(b"\r\n")
            if raw.strip():
                yield number, raw


def parse_raw_corpus(lines_path, conversations_path, stride=1):
    """Consecutive-utterance (context, response) pairs of the raw corpus, in conversation order, and counts.

    stride 1 pairs every utterance with the next (u1 u2, u2 u3, ...); stride 2 takes disjoint pairs (u1 u2,
    u3 u4, ...), the scheme of the released pair files in ../shared/data/cornell."""
    counts = dict(lines=0, conversations=0, pairs=0, conversations_with_missing_lines=0,
                  pairs_skipped_missing_line=0, pairs_skipped_empty=0, malformed_lines=0, non_utf8_lines=0)
    utterances = {}
    for number, raw in _raw_lines(require_file(lines_path, "movie_lines file")):
        text, fell_back = decode_line(raw)
        counts["non_utf8_lines"] += fell_back
        fields = SEPARATOR.split(text, maxsplit=4)
        if len(fields) != 5:
            counts["malformed_lines"] += 1
            continue
        utterances[fields[0].strip()] = fields[4].strip()
        counts["lines"] += 1
    if not utterances:
        raise UserError(f"{lines_path}: no line in the movie_lines format "
                        "'L1 +++$+++ u0 +++$+++ m0 +++$+++ NAME +++$+++ text'")
    pairs = []
    for number, raw in _raw_lines(require_file(conversations_path, "movie_conversations file")):
        fields = SEPARATOR.split(decode_line(raw)[0], maxsplit=3)
        try:
            line_ids = ast.literal_eval(fields[-1].strip()) if len(fields) == 4 else None
        except (ValueError, SyntaxError):
            line_ids = None
        if not isinstance(line_ids, list) or not all(isinstance(i, str) for i in line_ids):
            raise UserError(f"{conversations_path}:{number}: expected 'u0 +++$+++ u2 +++$+++ m0 +++$+++ "
                            f"['L1', 'L2', ...]'")
        counts["conversations"] += 1
        counts["conversations_with_missing_lines"] += any(i not in utterances for i in line_ids)
        for first, second in list(zip(line_ids, line_ids[1:]))[::stride]:
            if first not in utterances or second not in utterances:
                counts["pairs_skipped_missing_line"] += 1
            elif not utterances[first] or not utterances[second]:
                counts["pairs_skipped_empty"] += 1
            else:
                pairs.append((utterances[first], utterances[second]))
    counts["pairs"] = len(pairs)
    return pairs, counts


def split_pairs(num_pairs, valid_size, test_size, seed):
    """Index arrays (train, valid, test), each sorted: a random split by np.random.default_rng(seed)."""
    if valid_size < 0 or test_size < 0 or valid_size + test_size >= num_pairs:
        raise UserError(f"cannot take {valid_size} valid and {test_size} test pairs from {num_pairs} pairs "
                        "and keep some for training")
    order = np.random.default_rng(seed).permutation(num_pairs)
    valid, test = order[:valid_size], order[valid_size:valid_size + test_size]
    return np.sort(order[valid_size + test_size:]), np.sort(valid), np.sort(test)


def _find_raw_file(folder, stem):
    exact = os.path.join(folder, stem + ".txt")
    if os.path.isfile(exact):
        return exact
    matches = sorted(glob.glob(os.path.join(glob.escape(folder), stem + "*.txt")))
    if len(matches) != 1:
        raise UserError(f"expected {stem}.txt (or exactly one {stem}*.txt) in {folder}, found {len(matches)}")
    return matches[0]


SPLITS = ("train", "valid", "test")


def pair_file_names():
    return [f"{name}.{side}.txt" for name in SPLITS for side in ("src", "tgt")]


def build_pair_files(raw_folder, pairs_output, valid_size, test_size, seed, stride=1):
    """Writes the six pair files together (all or none), after checking every output can be written."""
    require_folder(raw_folder, "raw corpus folder")
    check_output_folder(pairs_output, "--pairs_output", files=pair_file_names())
    pairs, counts = parse_raw_corpus(_find_raw_file(raw_folder, "movie_lines"),
                                     _find_raw_file(raw_folder, "movie_conversations"), stride=stride)
    splits = split_pairs(len(pairs), valid_size, test_size, seed)
    paths = [os.path.join(pairs_output, name) for name in pair_file_names()]
    with atomic_outputs(paths) as temporaries:
        for number, (name, indices) in enumerate(zip(SPLITS, splits)):
            for side in (0, 1):
                with open(temporaries[2 * number + side], "w", encoding="utf-8") as handle:
                    handle.writelines(pairs[i][side] + "\n" for i in indices)
            counts[name] = len(indices)
    print(format_counts("cornell pairs", counts) + f" output={pairs_output}")
    return counts


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src_folder", help="folder of {prefix}.src.txt / {prefix}.tgt.txt pair files")
    parser.add_argument("--existed_vocab")
    parser.add_argument("--train_prefix", default="train")
    parser.add_argument("--valid_prefix", default="valid", help="'' to build no valid set")
    parser.add_argument("--test_prefix", default="test")
    parser.add_argument("--output_folder")
    add_pair_builder_arguments(parser)
    parser.add_argument("--raw_folder", help="raw mode: the corpus's movie_lines / movie_conversations folder")
    parser.add_argument("--pairs_output", help="raw mode: folder for {train,valid,test}.{src,tgt}.txt")
    parser.add_argument("--valid_size", type=int, default=10000, help="raw mode: pairs held out for valid")
    parser.add_argument("--test_size", type=int, default=20000, help="raw mode: pairs held out for test")
    parser.add_argument("--pair_stride", type=int, choices=(1, 2), default=1,
                        help="raw mode: 1 pairs each utterance with the next; 2 takes disjoint pairs (the scheme "
                             "of the released pair files)")
    args = parser.parse_args(argv)
    if args.raw_folder or args.pairs_output:
        if not (args.raw_folder and args.pairs_output):
            parser.error("raw mode needs both --raw_folder and --pairs_output")
    elif not (args.src_folder and args.existed_vocab and args.output_folder):
        parser.error("records mode needs --src_folder, --existed_vocab and --output_folder")
    check_pair_builder_arguments(parser, args)
    return args


def main(args):
    if args.raw_folder:
        build_pair_files(args.raw_folder, args.pairs_output, args.valid_size, args.test_size, args.seed,
                         stride=args.pair_stride)
        return
    require_folder(args.src_folder, "source folder")
    vocab = Dictionary.load_from_persisted_dict(args.existed_vocab)
    splits = []
    for name, prefix, train in (("train", args.train_prefix, True), ("valid", args.valid_prefix, False),
                                ("test", args.test_prefix, False)):
        if prefix:
            splits.append((name, os.path.join(args.src_folder, prefix + ".src.txt"),
                           os.path.join(args.src_folder, prefix + ".tgt.txt"), train))
    built = build_pair_record_sets(splits, vocab, output_folder=args.output_folder, prefix="cornell",
                                   max_len=args.max_len, noise_prob=args.noise_prob, seed=args.seed,
                                   format=args.format, num_shards=args.num_shards, processes=args.processes)
    for name, counts in built.items():
        print(format_counts(f"cornell {name}", counts))


if __name__ == "__main__":
    run_cli(main, parse_args())
