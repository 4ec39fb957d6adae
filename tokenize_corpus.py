"""Tokenizes every .txt file of one or more corpus folders, line by line, in a multiprocessing pool.

    python tokenize_corpus.py --corpus_folder data/raw_en,data/raw_more --output_folder data/tok \
        --tokenizer nltk --pool_size 2

Writes OUTPUT_FOLDER/<same file name>, one output line per input line (parallel files stay aligned),
tokens joined by single spaces. Line policies (see src/tokenization.py): CRLF/CR ends stripped, invalid UTF-8
bytes -> U+FFFD, lines over --max_chars characters -> empty line, blank lines -> empty line; each case is
counted in the closing summary line. Outputs are written atomically: all of them or none.
Then, token by token: --map_token FROM=TO replaces a whole token (matched as the tokenizer wrote it, TO written as
given; counted as `mapped`), --lowercase lowercases the others, --digits_to_hash writes each of their Unicode
decimal digits as # (1.5 -> #.#). A <unk> in the text (or mapped to, e.g. --map_token UNK=<unk> for Gigaword)
stays one token: the tokenizers do not cut it, nor does apply_bpe_encoding.py (its default --glossaries).
"""
import argparse

from src.errors import check_output_folder, run_cli
from src.tokenization import TOKENIZERS, Normalization, format_stats, parse_token_map, tokenize_files


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus_folder", required=True,
                        help="folder(s) of .txt files, comma-separated")
    parser.add_argument("--output_folder", required=True, help="where the tokenized files go (same names)")
    parser.add_argument("--tokenizer", choices=TOKENIZERS, default="nltk",
                        help="nltk: rule-based English word tokenizer (no data download); jieba: Chinese")
    parser.add_argument("--pool_size", type=int, default=2, help="worker processes (1: no pool)")
    parser.add_argument("--max_chars", type=int, default=10000,
                        help="lines longer than this many characters are emitted empty")
    parser.add_argument("--lowercase", action="store_true", help="lowercase every token")
    parser.add_argument("--digits_to_hash", action="store_true",
                        help="write every Unicode decimal digit as # (Gigaword's convention: 1.5 -> #.#)")
    parser.add_argument("--map_token", action="append", default=[], metavar="FROM=TO",
                        help="replace the whole token FROM by TO, before --lowercase/--digits_to_hash and exempt "
                             "from them (repeatable), e.g. UNK=<unk>")
    return parser.parse_args(argv)


def main(args):
    folders = [folder for folder in args.corpus_folder.split(",") if folder]
    normalize = Normalization(args.lowercase, args.digits_to_hash, parse_token_map(args.map_token))
    check_output_folder(args.output_folder, "--output_folder")
    stats = tokenize_files(folders, args.output_folder, args.tokenizer, args.pool_size, args.max_chars,
                           normalize=normalize)
    print(f"tokenized into {args.output_folder}: {format_stats(stats)}")


if __name__ == "__main__":
    run_cli(main, parse_args())
