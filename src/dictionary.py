"""Vocabulary with fixed special ids, persisted as plain text (one `symbol count` line per id)."""
import hashlib
import re

import numpy as np

from src.errors import UserError, atomic_open

PAD, BOS, EOS, UNK, MASK = "<pad>", "<s>", "</s>", "<unk>", "<mask>"
SPECIAL_SYMBOLS = (PAD, BOS, EOS, UNK, MASK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID = range(5)
# Symbols appended only to round the vocabulary size up to a multiple (fairseq's convention).
FILLER_FORMAT = "madeupword{:04d}"
_FILLER_NAME = re.compile(r"madeupword[0-9]{4,}")


class Dictionary:
    """Maps symbols to ids. Ids 0-4 are always `<pad> <s> </s> <unk> <mask>`.

    `vocab[id]` gives the symbol, `vocab.index(symbol)` the id (`<unk>` for unknown symbols).
    """

    def __init__(self, symbols=(), counts=None):
        self.symbols = list(SPECIAL_SYMBOLS)
        self.counts = [0] * len(SPECIAL_SYMBOLS)
        self._ids = {symbol: i for i, symbol in enumerate(self.symbols)}
        counts = counts if counts is not None else [0] * len(symbols)
        for symbol, count in zip(symbols, counts):
            self.add_symbol(symbol, count)

    pad_index, bos_index, eos_index, unk_index, mask_index = PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID

    def add_symbol(self, symbol, count=1):
        if not symbol or any(c.isspace() for c in symbol):
            raise UserError(f"vocabulary symbol {symbol!r} is empty or contains white space")
        if symbol in self._ids:
            self.counts[self._ids[symbol]] += count
            return self._ids[symbol]
        self._ids[symbol] = len(self.symbols)
        self.symbols.append(symbol)
        self.counts.append(count)
        return self._ids[symbol]

    def __len__(self):
        return len(self.symbols)

    def __getitem__(self, index):
        return self.symbols[index]

    def __contains__(self, symbol):
        return symbol in self._ids

    def __eq__(self, other):
        return isinstance(other, Dictionary) and self.symbols == other.symbols and self.counts == other.counts

    def index(self, symbol):
        return self._ids.get(symbol, UNK_ID)

    def encode_tokens(self, tokens, append_eos=True):
        """Token strings -> int32 ids, `</s>` appended."""
        ids = [self._ids.get(token, UNK_ID) for token in tokens]
        if append_eos:
            ids.append(EOS_ID)
        return np.asarray(ids, dtype=np.int32)

    def encode_line(self, line, append_eos=True):
        return self.encode_tokens(line.split(), append_eos=append_eos)

    def decode(self, ids, strip_special=True):
        """Ids -> space-joined symbols, stopping at the first `</s>` when strip_special."""
        out = []
        for i in ids:
            i = int(i)
            if strip_special and i == EOS_ID:
                break
            if strip_special and i in (PAD_ID, BOS_ID):
                continue
            out.append(self.symbols[i])
        return " ".join(out)

    def pad_to_multiple(self, multiple=8):
        """Appends filler symbols until len(self) is a multiple of `multiple` (hardware tiling); a filler name
        the vocabulary already holds is skipped."""
        filler = 0
        while len(self) % multiple:
            self.add_symbol(FILLER_FORMAT.format(filler), 0)
            filler += 1
        return self

    def filler_ids(self):
        """Ids of the fillers `pad_to_multiple` appended: `madeupwordNNNN` symbols of count 0, wherever they sit
        (a corpus word of that name keeps its count and is a real symbol)."""
        return [i for i, (symbol, count) in enumerate(zip(self.symbols, self.counts))
                if i >= len(SPECIAL_SYMBOLS) and count == 0 and _FILLER_NAME.fullmatch(symbol)]

    def never_generated_ids(self):
        """Ids a decoder must never emit: `<pad> <s> <mask>` and the fillers (`</s>` and `<unk>` it may)."""
        return [PAD_ID, BOS_ID, MASK_ID] + self.filler_ids()

    @classmethod
    def from_counter(cls, counter):
        """Most frequent first; ties broken by symbol so the order is deterministic."""
        items = sorted(((s, c) for s, c in counter.items() if s not in SPECIAL_SYMBOLS),
                       key=lambda item: (-item[1], item[0]))
        return cls([s for s, _ in items], [c for _, c in items])

    @classmethod
    def load_from_persisted_dict(cls, filepath):
        """Reads a file written by `persistence`; ids are line numbers (0-based)."""
        symbols, counts = [], []
        for line_number, (symbol, count) in _read_count_lines(filepath):
            symbols.append(symbol)
            counts.append(count)
        if tuple(symbols[:len(SPECIAL_SYMBOLS)]) != SPECIAL_SYMBOLS:
            raise UserError(f"{filepath}: a vocabulary must start with {' '.join(SPECIAL_SYMBOLS)} (ids 0-4)")
        vocab = cls()
        vocab.counts[:] = counts[:len(SPECIAL_SYMBOLS)]
        for line_number, (symbol, count) in enumerate(zip(symbols[len(SPECIAL_SYMBOLS):],
                                                          counts[len(SPECIAL_SYMBOLS):]), len(SPECIAL_SYMBOLS) + 1):
            if symbol in vocab:
                raise UserError(f"{filepath}:{line_number}: duplicate symbol {symbol!r}")
            vocab.add_symbol(symbol, count)
        return vocab

    def persistence(self, path):
        """Writes `symbol count` lines in id order (atomically): plain text, never pickle."""
        with atomic_open(path) as handle:
            for symbol, count in zip(self.symbols, self.counts):
                handle.write(f"{symbol} {count}\n")

    def checksum(self):
        """A short digest of the symbols, stored in checkpoints to catch vocabulary mix-ups."""
        return hashlib.sha256("\n".join(self.symbols).encode("utf-8")).hexdigest()[:16]


def build_vocabulary(counts, threshold=0, pad_to_multiple=8):
    """The vocabulary of a corpus from its {symbol: count}: the special symbols, every symbol seen at least
    `threshold` times (most frequent first, ties by symbol), then fillers up to a multiple of `pad_to_multiple`.
    apply_bpe_encoding.py and news_crawl.py --dict_folder both build theirs here."""
    if threshold < 0 or pad_to_multiple < 1:
        raise UserError(f"vocabulary needs threshold >= 0 and pad_to_multiple >= 1, got {threshold} and "
                        f"{pad_to_multiple}")
    kept = {symbol: count for symbol, count in counts.items() if count >= threshold}
    return Dictionary.from_counter(kept).pad_to_multiple(pad_to_multiple)


def check_vocabulary_fits(vocab, path, vocab_size):
    """A one-line UserError unless every id of `vocab` (read from `path`) has a row in the model's embedding."""
    if len(vocab) > vocab_size:
        raise UserError(f"vocabulary {path} has {len(vocab)} symbols but model_config.vocab_size is {vocab_size}: "
                        f"expected model_config.vocab_size >= {len(vocab)}")


def _read_count_lines(path):
    """Yields (line_number, (symbol, count)) for `symbol count` lines; a one-line UserError otherwise."""
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"vocabulary file not found: {path}") from None
    except OSError as error:
        raise UserError(f"cannot read vocabulary file {path}: {error.strerror}") from None
    with handle:
        try:
            for line_number, line in enumerate(handle, 1):
                fields = line.rstrip("\n").split(" ")
                if len(fields) != 2 or not fields[0] or not fields[1].isdigit():
                    raise UserError(f"{path}:{line_number}: expected 'symbol count', got {line.rstrip()!r}")
                yield line_number, (fields[0], int(fields[1]))
        except UnicodeDecodeError:
            raise UserError(f"{path}: not valid UTF-8") from None
