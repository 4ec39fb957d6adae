"""Applies BPE codes to every .txt file of a folder and builds the vocabulary of the result.

    python apply_bpe_encoding.py --codes vocab/all.bpe.codes --src_folder data/tok --output_folder data/bpe \
        --prefix bpe --vocab_path vocab/vocab.txt --threshold 0 --processes 2

Each SRC_FOLDER/name.txt becomes OUTPUT_FOLDER/PREFIX.name.txt (OUTPUT_FOLDER/name.txt with an empty
prefix), byte-identical to `subword-nmt apply-bpe -c CODES`. The subwords of all outputs are counted into
a vocabulary by build_vocabulary (src/dictionary.py, shared with news_crawl.py --dict_folder): ids 0-4 are
<pad> <s> </s> <unk> <mask>, then most frequent first; subwords seen fewer than --threshold times are dropped,
and filler symbols pad its size to a multiple of --pad_to_multiple.
It is written with Dictionary.persistence (`symbol count` lines, line number = id).
--glossaries (default <unk>) are never cut, as with `subword-nmt apply-bpe --glossaries`: a word equal to one
stays one subword, a word holding one is cut around it. --map_token FROM=TO first replaces every whole token FROM
(white-space separated, as written) by TO, for text tokenized elsewhere: Gigaword's UNK=<unk>.
"""
import argparse
import collections
import os

from src.dictionary import build_vocabulary
from src.errors import UserError, check_output_file, check_output_folder, run_cli
from src.bpe import GLOSSARIES, apply_bpe_files, load_bpe_codes
from src.corpus_files import find_text_files, output_paths
from src.tokenization import parse_token_map


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--codes", required=True, help="BPE codes file (subword-nmt learn-bpe output)")
    parser.add_argument("--src_folder", required=True, help="folder of tokenized .txt files")
    parser.add_argument("--output_folder", required=True, help="where the encoded files go")
    parser.add_argument("--prefix", default="bpe", help="output names are PREFIX.<input name> ('' keeps the name)")
    parser.add_argument("--vocab_path", required=True, help="vocabulary file to write")
    parser.add_argument("--threshold", type=int, default=0,
                        help="keep subwords seen at least this many times (0: all)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    parser.add_argument("--pad_to_multiple", type=int, default=8,
                        help="pad the vocabulary size to a multiple of this (1: no padding)")
    parser.add_argument("--glossaries", nargs="*", default=list(GLOSSARIES), metavar="WORD",
                        help=f"words BPE never cuts (default: {' '.join(GLOSSARIES)}; none: --glossaries with no word)")
    parser.add_argument("--map_token", action="append", default=[], metavar="FROM=TO",
                        help="replace the whole token FROM by TO before BPE (repeatable), e.g. UNK=<unk>")
    return parser.parse_args(argv)


def main(args):
    if args.threshold < 0:
        raise UserError(f"--threshold must be >= 0, got {args.threshold}")
    if args.pad_to_multiple < 1:
        raise UserError(f"--pad_to_multiple must be >= 1, got {args.pad_to_multiple}")
    if "/" in args.prefix or args.prefix.startswith("."):
        raise UserError(f"--prefix must be a plain name part, got {args.prefix!r}")
    for glossary in args.glossaries:
        if not glossary or any(c.isspace() for c in glossary):
            raise UserError(f"--glossaries {glossary!r}: expected words without white space")
    token_map = parse_token_map(args.map_token)
    check_output_folder(args.output_folder, "--output_folder")
    check_output_file(args.vocab_path, "--vocab_path")
    codes = load_bpe_codes(args.codes)
    sources = find_text_files([args.src_folder])
    if os.path.realpath(args.output_folder) == os.path.realpath(args.src_folder):
        raise UserError(f"--output_folder must differ from --src_folder {args.src_folder}: its outputs are .txt "
                        f"files too, and a second run would encode them again")
    targets = output_paths(sources, args.output_folder, args.prefix)
    if os.path.abspath(args.vocab_path) in map(os.path.abspath, targets + sources):
        raise UserError(f"--vocab_path {args.vocab_path} is also a text file of the run")
    stats = collections.Counter()
    counts, lines = apply_bpe_files(codes, sources, targets, processes=args.processes, glossaries=args.glossaries,
                                    token_map=token_map, stats=stats)
    vocab = build_vocabulary(counts, threshold=args.threshold, pad_to_multiple=args.pad_to_multiple)
    vocab.persistence(args.vocab_path)
    print(f"encoded {len(sources)} files ({lines} lines, {sum(counts.values())} subwords, {len(counts)} distinct) "
          f"with {len(codes)} merges into {args.output_folder}; vocabulary of {len(vocab)} symbols "
          f"(threshold {args.threshold}) -> {args.vocab_path}; glossaries: {' '.join(args.glossaries) or 'none'}; "
          f"mapped={stats['mapped']}")


if __name__ == "__main__":
    run_cli(main, parse_args())
