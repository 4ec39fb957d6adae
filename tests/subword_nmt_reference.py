"""What the BPE tests compare src/bpe.py against: subword-nmt itself (its BPE class and its command), a plain
vocabulary count, and the bundled sample corpus they learn codes from."""
import codecs
import collections
import io
import os
import subprocess
import sys

from conftest import REPO

SAMPLE = os.path.join(REPO, "data", "sample")


def read_lines(path, count=None):
    """The lines of a UTF-8 file, universal newlines (the last item is "" after a final line end)."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    return lines[:count]


def sample_lines(*parts):
    """The lines of a file of data/sample, without the "" after the final "\\n"."""
    return read_lines(os.path.join(SAMPLE, *parts))[:-1]


def learn_codes(lines, merges, path):
    """Codes learned by subword-nmt (learn-bpe) from `lines`, written to `path`."""
    from subword_nmt.learn_bpe import learn_bpe
    with open(path, "w", encoding="utf-8") as out:
        learn_bpe(io.StringIO("\n".join(lines)), out, merges)
    return str(path)


def subword_nmt_apply(codes_path, text, glossaries=None):
    """What `subword-nmt apply-bpe -c CODES [--glossaries ...]` prints for `text`: its BPE class and its line loop
    over a codecs reader (which ends lines wherever str.splitlines does: real dialogue data has a U+0085 in a
    line)."""
    from subword_nmt.apply_bpe import BPE
    with codecs.open(codes_path, encoding="utf-8") as codes:
        bpe = BPE(codes, glossaries=glossaries)
    return "".join(bpe.process_line(line) for line in codecs.getreader("utf-8")(io.BytesIO(text.encode())))


def subword_nmt_command(codes_path, source, target, glossaries=()):
    """Runs the `subword-nmt apply-bpe` command (with `--glossaries` when given); returns the bytes it wrote."""
    command = os.path.join(os.path.dirname(sys.executable), "subword-nmt")
    extra = ["--glossaries", *glossaries] if glossaries else []
    subprocess.run([command, "apply-bpe", "-c", str(codes_path), "-i", str(source), "-o", str(target), *extra],
                   check=True)
    with open(target, "rb") as handle:
        return handle.read()


def count_vocabulary(lines):
    """Token counts of lines, split at any white space (as Dictionary.encode_line splits)."""
    counts = collections.Counter()
    for line in lines:
        counts.update(line.split())
    return counts
