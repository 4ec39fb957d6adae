"""Text pipeline: word tokenization with line policies, fast BPE apply, BPE removal, vocabulary counting.

Line policies of `tokenize_line` (tokenize_corpus.py); every input line gives exactly one output line, so
parallel files (article/title, source/target) stay aligned:
- lines are split at "\\n" only (as `wc -l` counts them); a last line without "\\n" is still a line,
  and every output line ends with "\\n";
- CRLF or CR line end: the trailing "\\r" is stripped (counted as `crlf`); other white space, including a
  stray "\\r" inside a line, separates tokens;
- invalid UTF-8: each undecodable byte becomes U+FFFD and the rest of the line is kept (`invalid_utf8`);
- more than `max_chars` characters: emitted as an empty line (`too_long`), so that one runaway line
  (a table, a binary blob) cannot stall a worker;
- empty or white-space-only line: empty output line (`empty`).

BPE apply (`BpeApplier`) gives byte-identical output to `subword-nmt apply-bpe -c CODES` (no vocabulary,
glossary or dropout options): same line splitting, same leading/trailing white space handling, same
codes-file reading (version 0.1 and 0.2, duplicate merges, </w> handling).
"""
import collections
import contextlib
import os
import re

import numpy as np

from src.errors import UserError, atomic_path, require_file, require_folder

TOKENIZERS = ("nltk", "jieba")
STAT_KEYS = ("files", "lines", "tokens", "empty", "crlf", "invalid_utf8", "too_long")
BPE_SEPARATOR = "@@"
END_OF_WORD = "</w>"


# ----------------------------------------------------------------------------------------------------------
# Tokenization and line policies
# ----------------------------------------------------------------------------------------------------------

_TOKENIZER_CACHE = {}


def get_tokenizer(name):
    """A function str -> list of tokens. Both work offline: no nltk data package is needed."""
    if name in _TOKENIZER_CACHE:
        return _TOKENIZER_CACHE[name]
    if name == "nltk":
        # nltk.word_tokenize would first split sentences with punkt, whose model is a separate download;
        # NLTKWordTokenizer is the rule-based (regex) word tokenizer behind it and needs no data files.
        from nltk.tokenize import NLTKWordTokenizer
        tokenize = NLTKWordTokenizer().tokenize
    elif name == "jieba":
        import logging

        import jieba
        jieba.setLogLevel(logging.WARNING)  # silences "Building prefix dict ..." on every worker start
        jieba.initialize()

        def tokenize(text):
            return [token for piece in jieba.cut(text) for token in piece.split()]
    else:
        raise UserError(f"unknown tokenizer {name!r}: expected one of {', '.join(TOKENIZERS)}")
    _TOKENIZER_CACHE[name] = tokenize
    return tokenize


def tokenize_line(raw, tokenize, max_chars, stats):
    """One raw line (bytes, without its "\\n") -> the space-joined tokens; applies the line policies.

    `stats` (a Counter) gets lines, tokens, empty, crlf, invalid_utf8 and too_long added.
    """
    stats["lines"] += 1
    if raw.endswith(b"\r"):
        raw = raw.rstrip(b"\r")
        stats["crlf"] += 1
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        stats["invalid_utf8"] += 1
    if len(text) > max_chars:
        stats["too_long"] += 1
        return ""
    # str.split() afterwards: no token may hold white space, or the vocabulary could not store it.
    tokens = [part for token in tokenize(text) for part in token.split()] if not text.isspace() else []
    if not tokens:
        stats["empty"] += 1
        return ""
    stats["tokens"] += len(tokens)
    return " ".join(tokens)


def tokenize_block(lines, tokenizer_name, max_chars):
    """Worker task: raw lines -> (output text, one "\\n"-terminated line per input line; stats Counter)."""
    tokenize = get_tokenizer(tokenizer_name)
    stats = collections.Counter()
    out = [tokenize_line(raw, tokenize, max_chars, stats) for raw in lines]
    return "".join(line + "\n" for line in out), stats


def find_text_files(folders):
    """Every `.txt` entry of each folder (sorted, not recursive), checked readable before any work starts."""
    files = []
    for folder in folders:
        require_folder(folder, "corpus folder")
        names = sorted(name for name in os.listdir(folder) if name.endswith(".txt"))
        if not names:
            raise UserError(f"no .txt files in folder {folder} (empty corpus)")
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                raise UserError(f"cannot read {path}: not a regular file (a folder or a dangling link?)")
            try:
                with open(path, "rb"):
                    pass
            except OSError as error:
                raise UserError(f"cannot read {path}: {error.strerror}") from None
            files.append(path)
    return files


def output_paths(files, output_folder, prefix=""):
    """OUTPUT_FOLDER/[PREFIX.]name for each input; refuses collisions and writing over an input."""
    outputs, seen = [], {}
    for path in files:
        name = os.path.basename(path)
        target = os.path.join(output_folder, f"{prefix}.{name}" if prefix else name)
        if target in seen:
            raise UserError(f"{seen[target]} and {path} would both be written to {target}")
        if os.path.exists(target) and os.path.samefile(target, path):
            raise UserError(f"output {target} would overwrite its input: choose another output folder")
        seen[target] = path
        outputs.append(target)
    return outputs


def iter_line_blocks(path, lines_per_block):
    """Raw lines of a file (split at b"\\n", terminators removed) in lists of `lines_per_block`, each with
    its size in bytes."""
    block, size = [], 0
    with open(path, "rb") as handle:
        for raw in handle:
            size += len(raw)
            block.append(raw[:-1] if raw.endswith(b"\n") else raw)
            if len(block) == lines_per_block:
                yield block, size
                block, size = [], 0
    if block:
        yield block, size


@contextlib.contextmanager
def atomic_outputs(paths):
    """Temporary paths for all outputs; all are renamed into place only if the whole block succeeds."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(path)) for path in paths]


def _pool(processes, initializer=None, initargs=()):
    """A multiprocessing pool, or None for one process (work done here: no start-up cost)."""
    if processes <= 1:
        return None
    import multiprocessing
    return multiprocessing.get_context("fork").Pool(processes, initializer, initargs)


def _ordered_map(pool, function, tasks, processes):
    """map(function, tasks) on the pool (or here when pool is None), in order, with at most a few tasks
    per worker read ahead: Pool.imap would read the whole input into memory."""
    if pool is None:
        yield from map(function, tasks)
        return
    pending = collections.deque()
    for task in tasks:
        pending.append(pool.apply_async(function, (task,)))
        if len(pending) >= 3 * processes:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def tokenize_files(folders, output_folder, tokenizer="nltk", pool_size=2, max_chars=10000,
                   lines_per_block=2000, progress=True):
    """Tokenizes every .txt file of `folders` into OUTPUT_FOLDER/<same name>; returns the stats Counter.

    The progress bar shows only when stderr is a terminal (tqdm's disable=None): logs and pipes, and
    the one-line errors read from them, stay free of bar updates.
    """
    from tqdm import tqdm
    if tokenizer not in TOKENIZERS:
        raise UserError(f"unknown tokenizer {tokenizer!r}: expected one of {', '.join(TOKENIZERS)}")
    if pool_size < 1:
        raise UserError(f"--pool_size must be >= 1, got {pool_size}")
    if max_chars < 1:
        raise UserError(f"--max_chars must be >= 1, got {max_chars}")
    files = find_text_files(folders)
    outputs = output_paths(files, output_folder)
    stats = collections.Counter({key: 0 for key in STAT_KEYS})
    get_tokenizer(tokenizer)  # loaded once here, inherited by the forked workers (jieba takes ~1 s)
    pool = _pool(pool_size)
    total_bytes = sum(os.path.getsize(path) for path in files)
    try:
        with atomic_outputs(outputs) as temporaries, tqdm(total=total_bytes, unit="B", unit_scale=True,
                                                          desc="tokenize", disable=None if progress else True) as bar:
            for path, temporary in zip(files, temporaries):
                tasks = ((block, size, tokenizer, max_chars)
                         for block, size in iter_line_blocks(path, lines_per_block))
                with open(temporary, "w", encoding="utf-8", newline="") as out:
                    for text, block_stats, block_bytes in _ordered_map(pool, _tokenize_task, tasks, pool_size):
                        out.write(text)
                        stats.update(block_stats)
                        bar.update(block_bytes)
                stats["files"] += 1
    finally:
        if pool:
            pool.terminate()
    return stats


def _tokenize_task(task):
    block, size, tokenizer, max_chars = task
    text, stats = tokenize_block(block, tokenizer, max_chars)
    return text, stats, size


def format_stats(stats, keys=STAT_KEYS):
    return " ".join(f"{key}={stats.get(key, 0)}" for key in keys)


# ----------------------------------------------------------------------------------------------------------
# BPE codes
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
# Fast BPE apply
# ----------------------------------------------------------------------------------------------------------

class _PairTable:
    """Open-addressing hash map from a symbol pair (left id << 32 | right id) to its merge rank, probed with
    NumPy for whole arrays of pairs at once.

    Hand-written because NumPy has no hash map: looking pairs up one by one in a dict costs ~0.1 us each
    from Python, and np.searchsorted over the sorted keys was ~4x slower than this probe (measured).
    """
    _MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing
    _EMPTY = -1

    def __init__(self, keys, values, missing):
        bits = max(4, int(len(keys) * 4).bit_length())  # load factor <= 1/4: few second probes
        self.shift = np.uint64(64 - bits)
        self.mask = (1 << bits) - 1
        self.missing = missing
        self.keys = np.full(1 << bits, self._EMPTY, dtype=np.int64)
        self.values = np.zeros(1 << bits, dtype=np.int32)
        slots = self._slots(keys)
        for key, value, slot in zip(keys.tolist(), values.tolist(), slots.tolist()):
            while self.keys[slot] != self._EMPTY:
                slot = (slot + 1) & self.mask
            self.keys[slot] = key
            self.values[slot] = value

    def _slots(self, keys):
        return ((keys.astype(np.uint64) * self._MULTIPLIER) >> self.shift).astype(np.int64)

    def lookup(self, left, right):
        """Ranks of the pairs (left[i], right[i]); `missing` where the pair is not a merge."""
        keys = (left.astype(np.int64) << 32) | right
        slots = self._slots(keys)
        stored = self.keys[slots]
        result = np.where(stored == keys, self.values[slots], self.missing)
        pending = np.flatnonzero((stored != keys) & (stored != self._EMPTY))
        while pending.size:  # collisions: probe the next slots for the few keys not settled yet
            slots[pending] = (slots[pending] + 1) & self.mask
            stored = self.keys[slots[pending]]
            hit = stored == keys[pending]
            result[pending[hit]] = self.values[slots[pending[hit]]]
            pending = pending[~hit & (stored != self._EMPTY)]
        return result


class BpeApplier:
    """Applies BPE codes like `subword-nmt apply-bpe -c CODES`, byte for byte, but faster.

    subword-nmt caches each word type's encoding, so its time goes mostly to per-token Python work
    (~2 us a token), the rest to encoding each type once in a loop over the word. Here:
    - a text whose lines are plain (single spaces, "\\n" ends: what tokenize_corpus.py writes) takes no
      Python step per token (_apply_plain): BPE only cuts words, so the output is the input with "@@ "
      put in at cut points found with NumPy (token keys hashed in arrays, one bit mask of cut offsets per
      distinct word); with `counts` it is mapped whole instead: one split at " ", one dict lookup per
      token inside map(), one join, all in C;
    - each distinct word is encoded once, all new words of a text together, with NumPy: every round,
      every word merges all occurrences of its lowest-ranked pair, which is exactly one iteration of
      subword_nmt.apply_bpe.encode's loop, run for all words in parallel.
    Other texts take a per-line path that copies BPE.process_line.
    """

    def __init__(self, codes, separator=BPE_SEPARATOR):
        self.codes = codes
        self.separator = separator
        self.version = codes.version
        # Symbol ids; 0 is the word separator of the batch layout, never a real symbol.
        self.symbols = [None]
        self.ids = {}
        pairs = list(codes.ranks)  # dict order is rank order (dense ranks)
        left = np.array([self._id(a) for a, _ in pairs], dtype=np.int64)
        right = np.array([self._id(b) for _, b in pairs], dtype=np.int64)
        self.merged = np.array([self._id(a + b) for a, b in pairs] + [0], dtype=np.int32)
        self.no_merge = len(pairs)  # rank of "no merge": larger than every real rank
        self.pairs = _PairTable((left << 32) | right, np.arange(len(pairs)), self.no_merge)
        self.end_of_word_id = self._id(END_OF_WORD)
        # word -> encoding, as str (per-line path) and as UTF-8 bytes seen as Latin-1 (plain-text path
        # with counts). Words are split at " " only, so "" (double spaces) maps to itself; so does "\n", the plain
        # path's line marker.
        self.table = {"": "", "\n": "\n"}
        self.latin1_table = dict(self.table)
        self._forms_size = None
        # Plain-text path: word (UTF-8 bytes) -> bit mask of the byte offsets where the separator goes in.
        # b"\xff" * 16 is the key _apply_plain gives words longer than 16 bytes (never valid UTF-8).
        self.plain_masks = {b"": 0, b"\xff" * 16: 0}
        self._insert = (separator + " ").encode("utf-8")
        self._symbol_bytes = np.zeros(0, dtype=np.int64)
        self._native = _NativeBpe.create(self, left, right)

    def _id(self, symbol):
        index = self.ids.get(symbol)
        if index is None:
            index = self.ids[symbol] = len(self.symbols)
            self.symbols.append(symbol)
        return index

    # -- words --------------------------------------------------------------------------------------------

    def encode(self, word):
        """The subwords of one word (str without " "), joined by "@@ " as subword-nmt prints them."""
        if word not in self.table:
            self.encode_words([word])
        return self.table[word]

    def encode_words(self, words):
        """Adds the encoding of each new word (str without " ") to `self.table`."""
        new = list(set(words).difference(self.table))
        self.table.update(zip(new, self._encode_list(new)))

    def _encode_list(self, words):
        """Distinct words -> their encodings, in order."""
        if not words:
            return []
        if END_OF_WORD not in "\n".join(words):
            return self._encode_batch(words)
        out = [None] * len(words)
        batch = []
        for index, word in enumerate(words):
            if END_OF_WORD in word:
                out[index] = self._encode_reference(word)
            else:
                batch.append(index)
        for index, encoded in zip(batch, self._encode_batch([words[i] for i in batch]) if batch else ()):
            out[index] = encoded
        return out

    def _encode_reference(self, word):
        """subword-nmt's own encode, for words that spell "</w>" themselves: there the v0.1 rule "drop a
        final bare </w>, print the rest verbatim" and this class's rule "strip </w> from the last
        subword" can differ. Such words are vanishingly rare, so exactness costs nothing."""
        from subword_nmt.apply_bpe import encode
        subwords = encode(word, self.codes.ranks, None, None, self.separator, self.version, {})
        return (self.separator + " ").join(subwords)

    def _encode_batch(self, words):
        """Encodes distinct words (no "</w>" inside) with NumPy, all at once; returns their encodings."""
        return self._spell(len(words), self._merge_batch(words))

    def _merge_batch(self, words):
        """Merges distinct words (no "</w>" inside) with NumPy, all at once; returns the retired
        (word indices, symbol arrays) pairs, each array holding its words' symbols and a 0 after each.

        Layout: the symbol ids of all words in one array, each word followed by a separator (id 0);
        rank[p] is the merge rank of the pair (sym[p], sym[p + 1]), `no_merge` when there is none
        (always at a separator). Each round, every word takes its lowest rank and merges all its
        non-overlapping occurrences left to right, as subword_nmt.apply_bpe.encode does in one
        iteration of its while loop; words with no merge left are retired from the arrays.
        """
        no_merge = self.no_merge
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        codepoints = np.frombuffer("".join(words).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        char_ids, final_ids = self._char_tables(codepoints)
        v01 = self.version == (0, 1)
        # v0.2: the last character carries </w> ("e</w>"); v0.1: </w> is a symbol of its own.
        segment = lengths + (2 if v01 else 1)  # symbols of each word and its separator
        ends = np.cumsum(segment) - 1  # separator positions
        sym = np.zeros(int(ends[-1]) + 1, dtype=np.int32)
        is_char = np.ones(len(sym), dtype=bool)
        is_char[ends] = False
        if v01:
            is_char[ends - 1] = False
            sym[ends - 1] = self.end_of_word_id
        sym[is_char] = char_ids[codepoints]
        if not v01:
            sym[ends - 1] = final_ids[codepoints[np.cumsum(lengths) - 1]]
        rank = np.full(len(sym), no_merge, dtype=np.int32)
        inner = np.flatnonzero(sym[1:] != 0)
        inner = inner[sym[inner] != 0]
        rank[inner] = self.pairs.lookup(sym[inner], sym[inner + 1])

        word_index = np.arange(len(words))
        retired = []
        starts = np.cumsum(segment) - segment
        while True:
            lowest = np.minimum.reduceat(rank, starts)
            done = lowest == no_merge
            done_count = np.count_nonzero(done)
            if done_count == len(done):
                retired.append((word_index, sym))
                break
            # Finished words leave the arrays once they hold a good share of them (each compaction is
            # a pass over everything); until then they stay, with a lowest rank no pair can match.
            if done_count and segment[done].sum() * 4 > len(sym):
                done_mask = np.repeat(done, segment)
                retired.append((word_index[done], sym[done_mask]))
                keep = ~done_mask
                sym, rank = sym[keep], rank[keep]
                word_index, segment, lowest = word_index[~done], segment[~done], lowest[~done]
                starts = np.cumsum(segment) - segment
            elif done_count:
                lowest[done] = -1
            at = np.flatnonzero(rank == np.repeat(lowest, segment))
            if len(at) > 1:
                at = _drop_overlaps(at)
            sym[at] = self.merged[rank[at]]
            keep = np.ones(len(sym), dtype=bool)  # one mask for both arrays: np.delete builds its own
            keep[at + 1] = False
            sym, rank = sym[keep], rank[keep]
            segment -= np.bincount(np.searchsorted(starts, at, side="right") - 1, minlength=len(segment))
            starts = np.cumsum(segment) - segment
            # Only the pairs touching a merged symbol change. at - 1 may be -1: the last element, a
            # separator, whose rank stays no_merge.
            merged_at = at - np.arange(len(at))
            touched = np.concatenate((merged_at, merged_at - 1))
            rank[touched] = self.pairs.lookup(sym[touched], sym[touched + 1])
        return retired

    def _char_tables(self, codepoints):
        """Lookup arrays codepoint -> id of the character symbol and of the character + "</w>"."""
        present = np.flatnonzero(np.bincount(codepoints))  # a counting pass: cheaper than np.unique's sort
        char_ids = np.zeros(int(present[-1]) + 1, dtype=np.int32)
        final_ids = np.zeros_like(char_ids)
        for codepoint in present.tolist():
            char = chr(codepoint)
            char_ids[codepoint] = self._id(char)
            final_ids[codepoint] = self._id(char + END_OF_WORD)
        return char_ids, final_ids

    def _forms(self):
        """Printed forms by id: id -> "sym@@ " inside a word, id + n -> "sym\\n" ending it (</w> stripped)."""
        n = len(self.symbols)
        if self._forms_size != n:
            inner = [""] + [symbol + self.separator + " " for symbol in self.symbols[1:]]
            final = ["\n"] + [(symbol[:-len(END_OF_WORD)] if symbol.endswith(END_OF_WORD) else symbol) + "\n"
                              for symbol in self.symbols[1:]]
            self._forms_list, self._forms_size = inner + final, n
        return self._forms_list, n

    def _cut_masks(self, count, retired):
        """Retired symbol arrays -> per word, the bit mask of the byte offsets where a subword starts (but
        the first), as uint64, in the original word order; and the indices of words cut beyond byte 63."""
        known = len(self._symbol_bytes)
        if known != len(self.symbols):  # symbols only grow: size the new ones
            self._symbol_bytes = np.concatenate((self._symbol_bytes, np.array(
                [len(self._strip_end(symbol).encode("utf-8")) if symbol else 0 for symbol in self.symbols[known:]],
                dtype=np.int64)))
        masks = np.zeros(count, dtype=np.uint64)
        overflow = []
        for word_index, sym in retired:
            if self.version == (0, 1):  # as in _spell: a final bare </w> is dropped
                bare = np.flatnonzero(sym == self.end_of_word_id)
                sym = np.delete(sym, bare[sym[bare + 1] == 0])
            sizes = self._symbol_bytes[sym]
            offsets = np.cumsum(sizes) - sizes  # of each symbol from the start of the batch
            is_end = sym == 0
            # The k-th separator ends word k: word of each symbol = separators before it.
            word_of = np.cumsum(is_end) - is_end
            first = np.ones(len(sym), dtype=bool)
            first[1:] = is_end[:-1]
            word_start = offsets[first & ~is_end]
            inner = np.flatnonzero(~first & ~is_end)
            owner = word_of[inner]
            cut = offsets[inner] - word_start[owner]
            wide = cut >= 64
            if wide.any():
                overflow.extend(word_index[np.unique(owner[wide])].tolist())
                cut, owner = cut[~wide], owner[~wide]
            word_masks = np.zeros(len(word_index), dtype=np.uint64)
            np.bitwise_or.at(word_masks, owner, np.left_shift(np.uint64(1), cut.astype(np.uint64)))
            masks[word_index] = word_masks
        return masks, overflow

    @staticmethod
    def _strip_end(symbol):
        return symbol[:-len(END_OF_WORD)] if symbol.endswith(END_OF_WORD) else symbol

    def _spell(self, count, retired):
        """Retired symbol arrays -> the encoded word strings, in the original word order."""
        forms, n = self._forms()
        out = [None] * count
        for word_index, sym in retired:
            if self.version == (0, 1):
                # subword-nmt drops a final bare </w>; the symbol before it then ends the word.
                bare = np.flatnonzero(sym == self.end_of_word_id)
                sym = np.delete(sym, bare[sym[bare + 1] == 0])
            next_is_end = np.zeros(len(sym), dtype=bool)
            next_is_end[:-1] = sym[1:] == 0
            codes = np.where(next_is_end, sym + n, sym)[sym != 0]
            text = "".join(map(forms.__getitem__, codes.tolist()))
            for index, encoded in zip(word_index.tolist(), text.split("\n")):
                out[index] = encoded
        return out

    # -- lines and texts ------------------------------------------------------------------------------------

    # Characters that end a line for str.splitlines (and so for subword-nmt), besides "\n".
    _OTHER_LINE_ENDS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")

    def apply_bytes(self, data, counts=None):
        """BPE-encodes UTF-8 text of whole lines; the same bytes as subword-nmt apply-bpe on it.

        When `counts` (a Counter) is given, the output's subwords are added to it, split at any white
        space as Dictionary.encode_line splits them. Invalid UTF-8 raises UnicodeDecodeError.
        """
        # Work on the UTF-8 bytes seen as Latin-1 text: one byte per character whatever the language, so
        # split and join copy bytes (a real str with one CJK character in it takes 4 bytes per character,
        # and bytes.join allocates an 80-byte buffer record per item).
        final_newline = data.endswith(b"\n")
        body = data[:-1] if final_newline else data
        if counts is None and self._native is not None:
            out = self._native.apply_plain(body)
            if out is not None:
                return out + b"\n" if final_newline else out
        if counts is None and self._is_plain(body):
            out = self._apply_plain(body)
            if out is not None:
                return out + b"\n" if final_newline else out
        words = body.decode("latin-1").replace("\n", " \n ").split(" ")
        word_counts = collections.Counter(words) if counts is not None else None
        word_set = set(word_counts if word_counts is not None else words)
        new = list(word_set.difference(self.latin1_table))
        # Decoding only the new words also validates the whole text: the rest is ASCII " " and "\n".
        new_words = "\n".join(new).encode("latin-1").decode("utf-8")
        # One split at " " and "\n" equals subword-nmt's per-line handling when the lines are plain: no
        # word holds another line end (words in the table passed this test when they were new), and each
        # "" word is an empty line, not extra spaces.
        if self._OTHER_LINE_ENDS.search(new_words) or (
                "" in word_set and words.count("") != body.split(b"\n").count(b"")):
            return self.apply_text(data.decode("utf-8"), counts).encode("utf-8")
        if new:
            encoded = self._encode_list(new_words.split("\n"))
            self.latin1_table.update(zip(new, "\n".join(encoded).encode("utf-8").decode("latin-1").split("\n")))
        out = " ".join(map(self.latin1_table.__getitem__, words)).replace(" \n ", "\n").encode("latin-1")
        if final_newline:
            out += b"\n"
        if counts is not None:
            # Per distinct word, not per token: the same subwords as splitting `out`, far fewer steps.
            subword_counts = collections.Counter()
            for word, count in word_counts.items():
                for subword in self.latin1_table[word].split(" "):
                    subword_counts[subword] += count
            for subword, count in subword_counts.items():
                for part in subword.encode("latin-1").decode("utf-8").split():
                    counts[part] += count
        return out

    # Bytes that make a text not plain: NUL (the key padding of _apply_plain) and the other line ends of
    # str.splitlines. Spaces that make empty words, and the multi-byte line ends U+0085, U+2028 and
    # U+2029, are checked in _apply_plain (searching for a 2- or 3-byte string takes ~10x a memchr).
    # 0xFF (never in UTF-8) is the key of words longer than 16 bytes: a text holding it is invalid, and
    # the general path says so.
    _NOT_PLAIN = (b"\x00", b"\r", b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\xff")

    def _is_plain(self, body):
        """Whether `body` (lines without the last "\\n") has none of _NOT_PLAIN and no space at its ends."""
        return bool(body) and not body.startswith(b" ") and not body.endswith(b" ") and not any(
            part in body for part in self._NOT_PLAIN)

    @staticmethod
    def _has_unicode_line_end(data):
        """Whether UTF-8 bytes hold U+0085 (C2 85), U+2028 or U+2029 (E2 80 A8/A9)."""
        lead = np.flatnonzero(data[:-1] == 0xC2)
        if (data[lead + 1] == 0x85).any():
            return True
        lead = np.flatnonzero(data[:-2] == 0xE2)
        return bool(((data[lead + 1] == 0x80) & ((data[lead + 2] | 1) == 0xA9)).any())

    _LOW_BYTES = np.array([(1 << (8 * size)) - 1 for size in range(9)], dtype=np.uint64)
    _ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
    _HASH_MULTIPLIERS = ((0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F), (0xD6E8FEB86659FD93, 0x94D049BB133111EB),
                         (0xBF58476D1CE4E5B9, 0xFF51AFD7ED558CCD), (0xC4CEB9FE1A85EC53, 0x2545F4914F6CDD1D))

    def _apply_plain(self, body):
        """BPE-encodes a plain text (see _is_plain) without a Python step per token; None when it holds an
        empty word that is not an empty line, or some word's encoding is not the word cut into pieces (the
        caller then takes the general path).

        The output is the input with "@@ " put in at the cut points of each word, so only the cut points
        are computed: per distinct word once (plain_masks), per token by vectorised hashing. Words of up to
        16 bytes are their own keys (two little-endian uint64 read at the word's start, masked to its
        length; NUL-free text makes them exact); the few longer ones go through a dict in Python.
        """
        data = np.frombuffer(body, dtype=np.uint8)
        size = len(data)
        if size >= 1 << 31 or self._has_unicode_line_end(data):
            return None  # int32 offsets below; lines subword-nmt ends inside a word
        breaks = np.flatnonzero(data <= 32)  # one pass; tabs and other controls are word characters
        found = data[breaks]
        is_break = (found == 32) | (found == 10)
        breaks = (breaks if is_break.all() else breaks[is_break]).astype(np.int32)
        starts = np.empty(len(breaks) + 1, dtype=np.int32)
        starts[0] = 0
        np.add(breaks, 1, out=starts[1:])
        lengths = np.empty_like(starts)
        lengths[:-1] = breaks
        lengths[-1] = size
        lengths -= starts
        del breaks
        empty = starts[lengths == 0]
        if len(empty):  # an empty word must be an empty line, not double spaces or a space at a line end
            after_line_end = (np.take(data, empty - 1, mode="clip") == 10) | (empty == 0)
            before_line_end = (np.take(data, empty, mode="clip") == 10) | (empty == size)
            if not (after_line_end.all() and before_line_end.all()):
                return None
        padded = np.zeros(size + 16, dtype=np.uint8)
        padded[:size] = data
        # A uint64 at every byte offset (stride 1): reads 8 bytes at any start in one gather.
        at_offset = np.ndarray((size + 9,), dtype="<u8", buffer=padded, strides=(1,))
        first = at_offset[starts]
        first &= self._LOW_BYTES[np.minimum(lengths, 8)]
        second = np.zeros_like(first)  # only the few words longer than 8 bytes need it
        over8 = np.flatnonzero(lengths > 8)
        second[over8] = at_offset[starts[over8] + 8] & self._LOW_BYTES[np.minimum(lengths[over8], 16) - 8]
        long_words = over8[lengths[over8] > 16]
        first[long_words] = self._ALL_ONES
        second[long_words] = self._ALL_ONES
        masks = self._token_masks(first, second)
        if masks is None:
            return None
        del first, second
        nonzero = np.flatnonzero(masks)
        # Bit b of a token's mask: a cut b bytes after its start. Unpacked in token order, bits ascending:
        # the positions come out sorted.
        bits = np.flatnonzero(np.unpackbits(masks[nonzero].astype("<u2").view(np.uint8), bitorder="little"))
        positions = starts[nonzero[bits >> 4]] + (bits & 15).astype(np.int32)
        if len(long_words):
            words = [body[start:start + length] for start, length in
                     zip(starts[long_words].tolist(), lengths[long_words].tolist())]
            if not self._learn_plain([word for word in dict.fromkeys(words) if word not in self.plain_masks]):
                return None
            plain_masks = self.plain_masks
            long_positions = [start + bit for start, word in zip(starts[long_words].tolist(), words)
                              for bit in _bits(plain_masks[word])]
            if long_positions:
                positions = np.sort(np.concatenate((positions, np.array(long_positions, dtype=np.int32))))
        insert = np.frombuffer(self._insert, dtype=np.uint8)
        # Each cut shifts the rest of the text by len(insert): mark the inserted bytes, fill both parts.
        shifted = positions.astype(np.int64) + np.arange(len(positions)) * len(insert)
        inserted = shifted[:, None] + np.arange(len(insert))
        out = np.empty(size + inserted.size, dtype=np.uint8)
        is_original = np.ones(len(out), dtype=bool)
        is_original[inserted.ravel()] = False
        out[is_original] = data
        out[inserted.ravel()] = np.tile(insert, len(positions))
        return out.tobytes()

    def _token_masks(self, first, second):
        """Cut-point masks of the tokens with keys (first, second); None as in _apply_plain, or when some
        keys still collide after 16 rounds.

        Distinct keys are found with a hash table scattered and gathered in NumPy (np.unique sorts, and
        its inverse costs ~4x more): each token writes its index to its slot, the last write owning the
        slot; tokens whose owner has the same key are settled, the rest (slot collisions) go round again
        with another hash."""
        masks = np.zeros(len(first), dtype=np.uint16)
        pending = None
        bits = max(10, min(22, (len(first) // 8).bit_length()))
        shift = np.uint64(64 - bits)
        for multipliers in self._HASH_MULTIPLIERS * 4:
            keys1, keys2 = (first, second) if pending is None else (first[pending], second[pending])
            slot = keys1 * np.uint64(multipliers[0])
            slot ^= keys2 * np.uint64(multipliers[1])
            slot >>= shift
            slot = slot.view(np.int64)  # < 2 ** bits after the shift
            owner = np.full(1 << bits, -1, dtype=np.int32)
            owner[slot] = np.arange(len(slot), dtype=np.int32)
            distinct = owner[owner >= 0]
            # Each slot's owner key, in tables small enough for the cache: the check gathers from them.
            owned = slot[distinct]
            owner_keys = np.zeros(1 << bits, dtype=np.uint64)
            owner_keys[owned] = keys1[distinct]
            settled = owner_keys[slot] == keys1
            owner_keys[owned] = keys2[distinct]
            settled &= owner_keys[slot] == keys2
            words = np.stack((keys1[distinct], keys2[distinct]), axis=1).view("S16").ravel().tolist()
            if not self._learn_plain([word for word in words if word not in self.plain_masks]):
                return None
            table = np.zeros(1 << bits, dtype=np.uint16)
            table[owned] = list(map(self.plain_masks.__getitem__, words))
            if pending is None:
                if settled.all():
                    return table[slot]
                masks[settled] = table[slot[settled]]
                pending = np.flatnonzero(~settled)
            else:
                masks[pending[settled]] = table[slot[settled]]
                pending = pending[~settled]
            if not len(pending):
                return masks
        return None  # keys that collided in 16 hash rounds (not seen in practice): the general path

    def _learn_plain(self, new):
        """Adds the cut-point masks of new words (UTF-8 bytes) to plain_masks; False when an encoding is not
        its word cut into pieces. Invalid UTF-8 raises UnicodeDecodeError."""
        if not new:
            return True
        text = b"\n".join(new).decode("utf-8")
        words = text.split("\n")
        if END_OF_WORD in text:  # words that spell "</w>": via the exact strings (vanishingly rare)
            return all(self._learn_from_string(raw, word, encoded)
                       for raw, word, encoded in zip(new, words, self._encode_list(words)))
        masks, overflow = self._cut_masks(len(words), self._merge_batch(words))
        self.plain_masks.update(zip(new, masks.tolist()))
        return all(self._learn_from_string(new[index], words[index], self._encode_batch([words[index]])[0])
                   for index in overflow)

    def _learn_from_string(self, raw, word, encoded):
        """plain_masks[raw] from a word's printed encoding; False when it is not the word cut into pieces."""
        pieces = encoded.split(" ")
        mask, offset = 0, 0
        separator, cut = self.separator, len(self.separator)
        for piece in pieces[:-1]:
            if not piece.endswith(separator):
                return False
            offset += len(piece[:-cut].encode("utf-8"))
            mask |= 1 << offset
        if "".join(piece[:-cut] for piece in pieces[:-1]) + pieces[-1] != word:
            return False
        self.plain_masks[raw] = mask
        return True

    def apply_text(self, text, counts=None):
        """BPE-encodes a str of whole lines; equal to subword-nmt apply-bpe on the same text."""
        lines = text.splitlines(True)
        words = [word for line in lines for word in line.strip("\r\n ").split(" ")]
        self.encode_words(words)
        out = "".join(map(self.apply_line, lines))
        if counts is not None:
            for word, count in collections.Counter(words).items():
                for subword in self.table[word].split():
                    counts[subword] += count
        return out

    def apply_line(self, line):
        """One line (with its end) as subword_nmt.apply_bpe.BPE.process_line does it, white space included."""
        words = [word for word in line.strip("\r\n ").split(" ") if word]
        if not self.table.keys() >= set(words):
            self.encode_words(words)
        out = line[:len(line) - len(line.lstrip("\r\n "))]
        out += " ".join(map(self.table.__getitem__, words))
        trailing = len(line) - len(line.rstrip("\r\n "))
        if trailing and trailing != len(line):
            out += line[-trailing:]
        return out


class _NativeBpe:
    """BpeApplier's plain-text path in C++ (src/kernels/bpe.cc, through ctypes): one pass over the text with a cache
    of each word's cut points, new words encoded by subword-nmt's loop. About 2x the NumPy path end to end; absent
    without a C++ compiler (or with MASS_STOCK_KERNELS=1), and the NumPy path then runs. It answers None for the
    texts it does not handle exactly (see bpe_apply_plain) and the Python paths take them, invalid UTF-8 included."""

    def __init__(self, library, handle, insert):
        self.library, self.handle, self.insert = library, handle, insert

    @classmethod
    def create(cls, applier, left, right):
        from src.kernels import bpe_library
        library = bpe_library()
        if library is None:
            return None
        version = 1 if applier.version == (0, 1) else 2
        chars, finals = {}, {}
        for symbol, index in applier.ids.items():
            if len(symbol) == 1:
                chars[ord(symbol)] = index
            elif len(symbol) == 1 + len(END_OF_WORD) and symbol.endswith(END_OF_WORD):
                finals[ord(symbol[0])] = index
        arrays = [np.ascontiguousarray(left, dtype=np.int32), np.ascontiguousarray(right, dtype=np.int32),
                  np.ascontiguousarray(applier.merged[:-1], dtype=np.int32),
                  np.array(list(chars), dtype=np.int32), np.array(list(chars.values()), dtype=np.int32),
                  np.array(list(finals), dtype=np.int32), np.array(list(finals.values()), dtype=np.int32)]
        pointers = [array.ctypes.data for array in arrays]
        handle = library.bpe_create(pointers[0], pointers[1], pointers[2], len(arrays[0]), pointers[3], pointers[4],
                                    len(chars), pointers[5], pointers[6], len(finals), applier.end_of_word_id,
                                    version)
        return cls(library, handle, applier._insert)

    def apply_plain(self, body):
        out = np.empty(len(body) * (1 + len(self.insert)) + 1, dtype=np.uint8)
        size = self.library.bpe_apply_plain(self.handle, body, len(body), self.insert, len(self.insert),
                                            out.ctypes.data)
        return out[:size].tobytes() if size >= 0 else None

    def __del__(self):
        if self.handle:
            self.library.bpe_free(self.handle)
            self.handle = None


def _bits(mask):
    """Positions of the set bits of an int, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _drop_overlaps(at):
    """Of sorted merge positions, drops those overlapping the previous kept one ("x x x" merges as
    "xx x"): within each run of consecutive positions keep every other one, from the left."""
    step = np.diff(at)
    if not (step == 1).any():
        return at
    run_start = np.ones(len(at), dtype=bool)
    run_start[1:] = step != 1
    first = np.flatnonzero(run_start)
    offset = np.arange(len(at)) - first[np.cumsum(run_start) - 1]
    return at[offset % 2 == 0]


# ----------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------

def iter_byte_blocks(path, block_bytes=16 << 20):
    """Blocks of whole lines of a file, as bytes (each ends at b"\\n" or at the end of the file), with the
    number of the block's first line."""
    line_number = 1
    with open(path, "rb") as handle:
        rest = b""
        while True:
            chunk = handle.read(block_bytes)
            data = rest + chunk
            if not data:
                return
            cut = data.rfind(b"\n") + 1 if chunk else len(data)
            if cut == 0:  # no line end yet: read on
                rest = data
                continue
            block, rest = data[:cut], data[cut:]
            yield block, line_number
            line_number += block.count(b"\n")
            if not chunk:
                return


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


def _init_apply_worker(codes):
    global _WORKER_APPLIER
    _WORKER_APPLIER = BpeApplier(codes)


def _apply_task(task):
    path, block, first_line, count = task
    counts = collections.Counter() if count else None
    try:
        return _WORKER_APPLIER.apply_bytes(block, counts), counts, len(block)
    except UnicodeDecodeError:
        raise _utf8_error(path, block, first_line) from None


class _NoBar:
    """What apply_bpe_files uses of a tqdm bar, doing nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def update(self, count):
        pass


def _progress_bar(progress, total_bytes):
    """A tqdm bar over bytes, or a stand-in without importing tqdm (~50 ms of a short command's start-up)."""
    if not progress:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total_bytes, unit="B", unit_scale=True, desc="apply bpe", disable=None)


def apply_bpe_files(codes, sources, targets, processes=1, count_vocabulary=True, progress=True, block_bytes=None):
    """BPE-encodes each source file into its target (all written atomically, all or none).

    Returns (Counter of the outputs' subwords, or None; number of output lines). With processes > 1 the
    files are cut into blocks of whole lines for a pool, each worker keeping its own table of words.
    """
    if processes < 1:
        raise UserError(f"--processes must be >= 1, got {processes}")
    global _WORKER_APPLIER
    counts = collections.Counter() if count_vocabulary else None
    lines = 0
    total_bytes = sum(os.path.getsize(path) for path in sources)
    # Blocks of whole lines: up to 16 MB for one process (a few new words per block after the first:
    # the NumPy encoder likes large batches; memory stays ~20x the block); for a pool, small enough to
    # share out among the workers.
    if block_bytes is None:
        block_bytes = 16 << 20 if processes == 1 else max(1 << 20, min(16 << 20, total_bytes // (4 * processes) + 1))
    if processes == 1:
        _init_apply_worker(codes)
    pool = _pool(processes, _init_apply_worker, (codes,))
    try:
        with atomic_outputs(targets) as temporaries, _progress_bar(progress, total_bytes) as bar:
            for source, temporary in zip(sources, temporaries):
                tasks = ((source, block, first_line, count_vocabulary)
                         for block, first_line in iter_byte_blocks(source, block_bytes))
                with open(temporary, "wb") as out:
                    for encoded, block_counts, block_size in _ordered_map(pool, _apply_task, tasks, processes):
                        out.write(encoded)
                        lines += encoded.count(b"\n") + (bool(encoded) and not encoded.endswith(b"\n"))
                        if block_counts is not None:
                            counts.update(block_counts)
                        bar.update(block_size)
    finally:
        if pool:
            pool.terminate()
        _WORKER_APPLIER = None
    return counts, lines


def apply_bpe_file(codes, source, target, processes=1):
    """BPE-encodes one file: the same bytes as `subword-nmt apply-bpe -c CODES -i SOURCE -o TARGET`."""
    apply_bpe_files(codes, [source], [target], processes=processes, count_vocabulary=False, progress=False)


# ----------------------------------------------------------------------------------------------------------
# Evaluation helpers and vocabulary
# ----------------------------------------------------------------------------------------------------------

def remove_bpe(line, separator=BPE_SEPARATOR):
    """Undoes BPE: "un@@ believ@@ able" -> "unbelievable" (fairseq's rule, also for a dangling final "@@")."""
    return (line + " ").replace(separator + " ", "").rstrip()


def count_vocabulary(lines):
    """Token counts of lines, split at any white space (as Dictionary.encode_line splits)."""
    counts = collections.Counter()
    for line in lines:
        counts.update(line.split())
    return counts
