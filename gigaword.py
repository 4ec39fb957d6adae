"""Fine-tuning records for Gigaword headline generation (article -> title) from BPE'd text.

Outputs OUTPUT/gigaword_{train,valid,test}.{mindrecord,tfrecord}. Lengths count ids with </s>.
Train pairs with a side longer than --max_len (or empty) are dropped and counted, and their sources get the
noise channel (--noise_prob). Valid and test pairs are never dropped: longer sides are truncated to --max_len
ids (keeping </s>) and counted, so scores cover all pairs (all 1,951 of the standard test set); score against
the reference text files, not the truncated record targets. Gigaword's `UNK` and `<unk>` both map to <unk>.
"""
import argparse

from src.dictionary import UNK, Dictionary
from src.errors import run_cli
from src.records import FORMATS, build_pair_record_sets

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
    parser.add_argument("--noise_prob", type=float, default=0.0, help="source tokens -> <mask> (train only)")
    parser.add_argument("--max_len", type=int, default=64, help="most ids per side, </s> included")
    parser.add_argument("--format", choices=FORMATS, default="mindrecord")
    parser.add_argument("--num_shards", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if (args.valid_src is None) != (args.valid_ref is None):
        parser.error("--valid_src and --valid_ref go together")
    if not 0.0 <= args.noise_prob < 1.0:
        parser.error("--noise_prob must be in [0, 1)")
    if args.max_len < 2 or args.num_shards < 1:
        parser.error("need --max_len >= 2 and --num_shards >= 1")
    return args


def main(args):
    vocab = Dictionary.load_from_persisted_dict(args.existed_vocab)
    splits = [("train", args.train_src, args.train_ref, True)]
    if args.valid_src:
        splits.append(("valid", args.valid_src, args.valid_ref, False))
    splits.append(("test", args.test_src, args.test_ref, False))
    build_pair_record_sets(splits, vocab, output_folder=args.output_folder, prefix="gigaword", max_len=args.max_len,
                           noise_prob=args.noise_prob, seed=args.seed, format=args.format,
                           num_shards=args.num_shards, token_map=TOKEN_MAP)


if __name__ == "__main__":
    run_cli(main, parse_args())
