"""Command-line flags the record builders share (news_crawl.py, gigaword.py, cornell_dialog.py), so that the
CLIs never import each other."""
from src.records import FORMATS


def add_record_set_arguments(parser):
    """How the records are written: --format, --num_shards, --seed (every builder)."""
    parser.add_argument("--format", choices=FORMATS, default="mindrecord")
    parser.add_argument("--num_shards", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)


def add_pair_builder_arguments(parser):
    """The flags gigaword.py and cornell_dialog.py share."""
    parser.add_argument("--max_len", type=int, default=64, help="most ids per side, </s> included")
    parser.add_argument("--noise_prob", type=float, default=0.0, help="source tokens -> <mask> (train only)")
    parser.add_argument("--processes", type=int, default=1,
                        help="worker processes that encode and write the pairs (the output bytes do not depend on it)")
    add_record_set_arguments(parser)


def check_pair_builder_arguments(parser, args):
    if not 0.0 <= args.noise_prob < 1.0:
        parser.error("--noise_prob must be in [0, 1)")
    if args.max_len < 2 or args.num_shards < 1 or args.processes < 1:
        parser.error("need --max_len >= 2, --num_shards >= 1 and --processes >= 1")
