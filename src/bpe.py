"""BPE apply (apply_bpe_encoding.py): byte-identical to `subword-nmt apply-bpe -c CODES [--glossaries G ...]`, with
no vocabulary or dropout options: same codes-file reading (version 0.1 and 0.2, duplicate merges, </w> handling),
same line splitting, same leading/trailing white space handling. Glossaries (none unless given; the commands give
GLOSSARIES, `<unk>`) are literal strings never cut: a word equal to one stays whole, a word holding one is cut
around it (`a<unk>` -> `a@@ <unk>`), as subword-nmt does.

One fast path, C++ (src/kernels/bpe.cc through ctypes), for what tokenize_corpus.py writes: single spaces
between words, "\\n" line ends. subword-nmt's own BPE class does everything else: the lines the C++ code
answers "not handled" (other line ends, double spaces, "</w>" inside a word, invalid UTF-8, which then
fails naming file:line), the lines holding a glossary, and all lines where there is no C++ compiler or
MASS_STOCK_KERNELS=1.
"""
import collections
import ctypes
import io
import os
import re
import sys

import numpy as np

from src.corpus_files import iter_byte_blocks
from src.dictionary import UNK
from src.errors import UserError, atomic_outputs, require_file
from src.progress import progress_bar
from src.tokenization import whole_token_replacer
from src.workers import ordered_map, process_pool

BPE_SEPARATOR = "@@"
END_OF_WORD = "</w>"
# What the commands (apply_bpe_encoding.py, eval.py --input_text) never cut: the unknown-word symbol, which
# Gigaword's text holds (its UNK mapped to <unk> before BPE).
GLOSSARIES = (UNK,)


# ----------------------------------------------------------------------------------------------------------
# Codes
# ----------------------------------------------------------------------------------------------------------

class BpeCodes:
    """Merge operations of a subword-nmt codes file.

    `ranks[(left, right)]` is the merge's priority (lower merges first; the first copy of a duplicated
    merge wins, as in subword-nmt); `version` is (0, 1) or (0, 2) (how the end-of-word marker is attached).
    """

    def __init__(self, ranks, version=(0, 2), path=None):
        self.ranks = ranks
        self.version = tuple(version)
        self.path = path

    def __len__(self):
        return len(self.ranks)

    def text(self):
        """The codes as a codes file that subword-nmt reads back to these ranks and version."""
        header = f"#version: {self.version[0]}.{self.version[1]}\n"
        return header + "".join(f"{left} {right}\n" for left, right in self.ranks)


def parse_bpe_codes(text, path="<codes>"):
    """Codes text -> BpeCodes, reading it exactly as subword_nmt.apply_bpe.BPE does; UserError naming the line."""
    # subword-nmt reads the header with codecs' readline, which ends a line at any str.splitlines boundary.
    first_line = text.splitlines(True)[0] if text else ""
    if first_line.startswith("#version:"):
        try:
            version = tuple(int(x) for x in re.sub(r"(\.0+)*$", "", first_line.split()[-1]).split("."))
        except (ValueError, IndexError):
            raise UserError(f"{path}:1: bad version header {first_line.strip()!r}") from None
        body, offset = text[len(first_line):], 2
    else:
        version, body, offset = (0, 1), text, 1
    if version not in ((0, 1), (0, 2)):
        raise UserError(f"{path}:1: unsupported BPE codes version {'.'.join(map(str, version))} "
                        f"(subword-nmt knows 0.1 and 0.2)")
    ranks = {}
    for number, line in enumerate(body.rstrip("\n").split("\n")):
        pair = tuple(line.strip("\r\n ").split(" "))
        if len(pair) != 2:
            raise UserError(f"{path}:{number + offset}: expected a merge 'LEFT RIGHT' (two subword units "
                            f"separated by one space), got {line[:60]!r}")
        ranks.setdefault(pair, len(ranks))  # the first copy of a duplicate wins; dense ranks keep the order
    return BpeCodes(ranks, version, path)


def load_bpe_codes(path):
    """Reads a subword-nmt codes file (`learn-bpe` output); one-line UserError when missing or malformed."""
    require_file(path, "BPE codes file")
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not a BPE codes file (invalid UTF-8)") from None
    return parse_bpe_codes(text, path)


# ----------------------------------------------------------------------------------------------------------
# Apply
# ----------------------------------------------------------------------------------------------------------

class _NativeBpe:
    """The C++ apply of src/kernels/bpe.cc: one pass over the text with a cache of each word's cut points, new
    words encoded by subword-nmt's merge loop. None from `create` without a C++ compiler or with
    MASS_STOCK_KERNELS=1."""

    def __init__(self, library, codes, separator):
        self.library, self.handle = library, None
        self.insert = (separator + " ").encode("utf-8")
        self.out, self.out_address = np.empty(0, dtype=np.uint8), None
        ids = {}  # symbol -> id > 0

        def symbol_id(symbol):
            return ids.setdefault(symbol, len(ids) + 1)

        pairs = list(codes.ranks)  # dict order is rank order (dense ranks)
        left = np.array([symbol_id(a) for a, _ in pairs], dtype=np.int32)
        right = np.array([symbol_id(b) for _, b in pairs], dtype=np.int32)
        merged = np.array([symbol_id(a + b) for a, b in pairs], dtype=np.int32)
        end_of_word_id = symbol_id(END_OF_WORD)
        # Code point -> id of its symbol "c", and of "c</w>" (v0.2 gives a word's last character the marker).
        chars = {ord(symbol): index for symbol, index in ids.items() if len(symbol) == 1}
        finals = {ord(symbol[0]): index for symbol, index in ids.items()
                  if len(symbol) == 1 + len(END_OF_WORD) and symbol.endswith(END_OF_WORD)}
        arrays = [left, right, merged, np.array(list(chars), dtype=np.int32),
                  np.array(list(chars.values()), dtype=np.int32), np.array(list(finals), dtype=np.int32),
                  np.array(list(finals.values()), dtype=np.int32)]
        pointers = [array.ctypes.data for array in arrays]  # bpe_create copies them
        self.handle = library.bpe_create(pointers[0], pointers[1], pointers[2], len(pairs), pointers[3], pointers[4],
                                         len(chars), pointers[5], pointers[6], len(finals), end_of_word_id,
                                         1 if codes.version == (0, 1) else 2)

    @classmethod
    def create(cls, codes, separator):
        from src.kernels import bpe_library
        library = bpe_library()
        return None if library is None else cls(library, codes, separator)

    def apply(self, data):
        """The encoding of UTF-8 text of whole lines, or None when some line is not handled exactly (see
        bpe_apply_plain) or not UTF-8."""
        body_size = len(data) - data.endswith(b"\n")  # the C++ code takes the lines without the last "\n"
        capacity = body_size * (1 + len(self.insert)) + 1  # a cut after every byte, and the last "\n"
        if capacity > len(self.out):  # one buffer for all calls: line by line, a new one would cost more than the call
            self.out = np.empty(capacity, dtype=np.uint8)
            self.out_address = self.out.ctypes.data
        size = self.library.bpe_apply_plain(self.handle, data, body_size, self.insert, len(self.insert),
                                            self.out_address)
        if size < 0:
            return None
        if body_size < len(data):
            self.out[size] = ord("\n")
            size += 1
        return ctypes.string_at(self.out_address, size)

    def __del__(self):
        if self.handle:
            self.library.bpe_free(self.handle)
            self.handle = None


class BpeApplier:
    """Applies BPE codes like `subword-nmt apply-bpe -c CODES --glossaries ...`, byte for byte.

    subword-nmt spends ~2 us of Python per token; the C++ path takes the whole text in one call. A text it
    does not handle is taken line by line: the C++ path for each line it handles, subword-nmt for the others.
    Lines holding a glossary go to subword-nmt (the C++ code knows none); the runs of lines between them to C++.
    """

    def __init__(self, codes, separator=BPE_SEPARATOR, glossaries=()):
        self.codes = codes
        self.separator = separator
        self.glossaries = tuple(glossaries)
        self._glossary_bytes = tuple(glossary.encode("utf-8") for glossary in self.glossaries)
        self._native = _NativeBpe.create(codes, separator)
        self._reference = None  # subword-nmt's BPE, built on first need

    def apply_bytes(self, data):
        """BPE-encodes UTF-8 text of whole lines: the bytes subword-nmt apply-bpe writes for it.
        Invalid UTF-8 raises UnicodeDecodeError."""
        if self._native is None:
            return self._apply_reference(data)
        if not self._holds_glossary(data):
            return self._apply_native(data)
        out, run = [], []  # run: consecutive lines without a glossary, encoded in one C++ call
        # bytes.splitlines ends lines at "\n", "\r" and "\r\n" only: all line ends for subword-nmt too.
        for line in data.splitlines(True):
            if self._holds_glossary(line):
                out.append(self._apply_native(b"".join(run)))
                out.append(self._apply_reference(line))
                run = []
            else:
                run.append(line)
        out.append(self._apply_native(b"".join(run)))
        return b"".join(out)

    def _holds_glossary(self, data):
        return any(glossary in data for glossary in self._glossary_bytes)

    def _apply_native(self, data):
        """The C++ encoding of text without glossaries; line by line (subword-nmt for the lines it leaves) when
        the C++ code does not handle all of it."""
        if not data:
            return b""
        encoded = self._native.apply(data)
        if encoded is not None:
            return encoded
        return b"".join(map(self._apply_line, data.splitlines(True)))

    def _apply_line(self, line):
        encoded = self._native.apply(line)
        return self._apply_reference(line) if encoded is None else encoded

    def _apply_reference(self, data):
        """subword-nmt's own apply: its lines are those of a codecs reader, ending wherever str.splitlines ends
        one (U+0085 and U+2028 included)."""
        if self._reference is None:
            from subword_nmt.apply_bpe import BPE
            # subword-nmt reads glossaries as regular expressions: escaped, they match themselves only.
            self._reference = BPE(io.StringIO(self.codes.text()), separator=self.separator,
                                  glossaries=[re.escape(glossary) for glossary in self.glossaries] or None)
        return "".join(map(self._reference.process_line, data.decode("utf-8").splitlines(True))).encode("utf-8")


def count_subwords(data):
    """Counter of the subwords of UTF-8 text, split at any white space as Dictionary.encode_line splits them."""
    counts = collections.Counter()
    # bytes.split() cuts at ASCII white space only; str.split() then cuts each distinct token at the rest
    # (U+0085, U+00A0, ...): the result of one str.split() of the text, with a Python step per distinct token.
    for token, count in collections.Counter(data.split()).items():
        for subword in token.decode("utf-8").split():
            counts[subword] += count
    return counts


# ----------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------

def _utf8_error(path, block, first_line):
    """The one-line error for a block that is not valid UTF-8, naming the file and line."""
    try:
        block.decode("utf-8")
    except UnicodeDecodeError as error:
        line = first_line + block[:error.start].count(b"\n")
        return UserError(f"{path}:{line}: invalid UTF-8 (byte {block[error.start]:#04x}); "
                         f"BPE input must be UTF-8 text, e.g. tokenize_corpus.py output")
    return None


_WORKER_APPLIER = None
_WORKER_REPLACER = None


def _start_apply_worker(codes, glossaries=(), token_map=None):
    global _WORKER_APPLIER, _WORKER_REPLACER
    _WORKER_APPLIER = BpeApplier(codes, glossaries=glossaries)
    _WORKER_REPLACER = whole_token_replacer(token_map or {})


def _apply_task(task):
    path, block, first_line, count = task
    mapped_block, mapped = _WORKER_REPLACER(block)
    try:
        encoded = _WORKER_APPLIER.apply_bytes(mapped_block)
    except UnicodeDecodeError:
        raise _utf8_error(path, block, first_line) from None
    return encoded, count_subwords(encoded) if count else None, len(block), mapped


def apply_bpe_files(codes, sources, targets, processes=1, count_vocabulary=True, progress=True, block_bytes=None,
                    glossaries=(), token_map=None, stats=None):
    """BPE-encodes each source file into its target (all written atomically, all or none), never cutting
    `glossaries`; first, every whole token that is a key of `token_map` is replaced by its value (counted as
    `mapped` in the Counter `stats`, when given).

    Returns (Counter of the outputs' subwords, or None; number of output lines). With processes > 1 the
    files are cut into blocks of whole lines for a pool, each worker keeping its own cache of words.
    """
    global _WORKER_APPLIER, _WORKER_REPLACER
    if processes < 1:
        raise UserError(f"--processes must be >= 1, got {processes}")
    counts = collections.Counter() if count_vocabulary else None
    lines = 0
    total_bytes = sum(os.path.getsize(path) for path in sources)
    # Blocks of whole lines: up to 16 MB for one process (memory ~5x the block); for a pool, small enough
    # to share out among the workers.
    if block_bytes is None:
        block_bytes = 16 << 20 if processes == 1 else max(1 << 20, min(16 << 20, total_bytes // (4 * processes) + 1))
    worker_arguments = (codes, tuple(glossaries), dict(token_map or {}))
    if processes == 1:
        _start_apply_worker(*worker_arguments)
    bar = progress_bar(total_bytes, "apply bpe", unit="B", enabled=progress and sys.stderr.isatty(), unit_scale=True)
    try:
        with process_pool(processes, _start_apply_worker, worker_arguments) as pool, \
                atomic_outputs(targets) as temporaries, bar:
            for source, temporary in zip(sources, temporaries):
                tasks = ((source, block, first_line, count_vocabulary)
                         for block, first_line in iter_byte_blocks(source, block_bytes))
                with open(temporary, "wb") as out:
                    for encoded, block_counts, block_size, mapped in ordered_map(pool, _apply_task, tasks):
                        out.write(encoded)
                        if stats is not None:
                            stats["mapped"] += mapped
                        lines += encoded.count(b"\n") + (bool(encoded) and not encoded.endswith(b"\n"))
                        if block_counts is not None:
                            counts.update(block_counts)
                        bar.update(block_size)
    finally:
        _WORKER_APPLIER = _WORKER_REPLACER = None
    return counts, lines


def apply_bpe_file(codes, source, target, processes=1, glossaries=()):
    """BPE-encodes one file: the same bytes as `subword-nmt apply-bpe -c CODES -i SOURCE -o TARGET --glossaries
    GLOSSARY...` (no --glossaries when `glossaries` is empty)."""
    apply_bpe_files(codes, [source], [target], processes=processes, count_vocabulary=False, progress=False,
                    glossaries=glossaries)
