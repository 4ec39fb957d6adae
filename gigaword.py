"""Fine-tuning records for Gigaword headline generation (article -> title) from BPE'd text.

Outputs OUTPUT/gigaword_{train,valid,test}.{mindrecord,tfrecord}. Lengths count ids with </s>.
Train pairs with a side longer than --max_len (or empty) are dropped and counted, and their sources get the
noise channel (--noise_prob). Valid and test pairs are never dropped: longer sides are truncated to --max_len
ids (keeping </s>) and counted, so scores cover all pairs (all 1,951 of the standard test set); score against
the reference text files, not the truncated record targets. Gigaword's `UNK` and `<unk>` both map to <unk>: map UNK
before BPE (tokenize_corpus.py or apply_bpe_encoding.py --map_token UNK=<unk>), or BPE cuts it into pieces; a whole
UNK left in the BPE text is mapped here as well.
"""
import argparse

from src.builders import build_pair_record_sets, format_counts
from src.cli_args import add_pair_builder_arguments, check_pair_builder_arguments
from src.dictionary import UNK, Dictionary
from src.errors import run_cli

TOKEN_MAP = {"UNK": UNK}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train_src", required=True, help="BPE'd articles, one per line")
    parser.add_argument("--train_ref", required=True, help="BPE'd titles aligned with --train_src")
    parser.add_argument("--test_src", required=True)
    parser.add_argument("--test_ref", required=True)
    parser.add_argument("--valid_src")
    parser.add_argument("--valid_ref")
    parser.add_argument("--existed_vocab", required=True)
    parser.add_argument("--output_folder", required=True)
    add_pair_builder_arguments(parser)
    args = parser.parse_args(argv)
    if (args.valid_src is None) != (args.valid_ref is None):
        parser.error("--valid_src and --valid_ref go together")
    check_pair_builder_arguments(parser, args)
    return args


def main(args):
    vocab = Dictionary.load_from_persisted_dict(args.existed_vocab)
    splits = [("train", args.train_src, args.train_ref, True)]
    if args.valid_src:
        splits.append(("valid", args.valid_src, args.valid_ref, False))
    splits.append(("test", args.test_src, args.test_ref, False))
    built = build_pair_record_sets(splits, vocab, output_folder=args.output_folder, prefix="gigaword",
                                   max_len=args.max_len, noise_prob=args.noise_prob, seed=args.seed,
                                   format=args.format, num_shards=args.num_shards, token_map=TOKEN_MAP,
                                   processes=args.processes)
    for name, counts in built.items():
        print(format_counts(f"gigaword {name}", counts))


if __name__ == "__main__":
    run_cli(main, parse_args())
