"""Word tokenization of raw corpus files (tokenize_corpus.py), with the line policies below.

Every input line gives exactly one output line, so parallel files (article/title, source/target) stay aligned:
- lines are split at "\\n" only (as `wc -l` counts them); a last line without "\\n" is still a line,
  and every output line ends with "\\n";
- CRLF or CR line end: the trailing "\\r" is stripped (counted as `crlf`); other white space, including a
  stray "\\r" inside a line, separates tokens;
- invalid UTF-8: each undecodable byte becomes U+FFFD and the rest of the line is kept (`invalid_utf8`);
- more than `max_chars` characters: emitted as an empty line (`too_long`), so that one runaway line
  (a table, a binary blob) cannot stall a worker;
- empty or white-space-only line: empty output line (`empty`).

A `<unk>` in the text stays one token whatever the tokenizer (nltk would write `< unk >`): see `tokenize_keeping`.
`Normalization` then rewrites the tokens (tokenize_corpus.py --map_token, --lowercase, --digits_to_hash).
`get_detokenizer` goes back from tokens to text for output meant to be read (eval.py --input_text's headlines).
"""
import collections
import dataclasses
import os
import re
import sys

from src.corpus_files import find_text_files, iter_line_blocks, output_paths
from src.dictionary import UNK
from src.errors import UserError, atomic_outputs
from src.progress import progress_bar
from src.workers import ordered_map, process_pool

TOKENIZERS = ("nltk", "jieba")
STAT_KEYS = ("files", "lines", "tokens", "empty", "crlf", "invalid_utf8", "too_long", "mapped")
# On str, \d is any Unicode decimal digit (category Nd: 0-9, Arabic-Indic, Devanagari, full-width ...), not ² or ½.
_DIGIT = re.compile(r"\d")
# Symbols written in corpora that a tokenizer must not cut: each becomes one token of its own.
KEPT_TOKENS = (UNK,)

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


# Penn Treebank bracket tokens (Gigaword writes them) become the brackets again when detokenizing.
_PTB_BRACKETS = {"-lrb-": "(", "-rrb-": ")", "-lsb-": "[", "-rsb-": "]", "-lcb-": "{", "-rcb-": "}"}
# `#` stands for a digit in normalised text (--digits_to_hash): nltk's detokenizer would glue it to the next word as
# a currency sign ("## hurt" -> "##hurt"), so it is hidden from it behind a private-use character.
_HASH_STANDIN = "\ue000"
_LATIN = re.compile(r"[0-9A-Za-z#]")


def get_detokenizer(name):
    """A function list of tokens -> str, undoing get_tokenizer(name) as far as the tokens tell: nltk's Treebank
    detokenizer (the inverse of its word tokenizer: "do n't" -> "don't", "( yet ) ," -> "(yet),"), with Treebank's
    bracket tokens back to brackets and `#` digit placeholders kept as words; jieba's tokens joined, with a space
    kept only between two Latin words or numbers."""
    if name == "nltk":
        from nltk.tokenize.treebank import TreebankWordDetokenizer
        detokenizer = TreebankWordDetokenizer()

        def detokenize(tokens):
            tokens = [_PTB_BRACKETS.get(token.lower(), token).replace("#", _HASH_STANDIN) for token in tokens]
            return detokenizer.detokenize(tokens).replace(_HASH_STANDIN, "#")
    elif name == "jieba":
        def detokenize(tokens):
            text = ""
            for token in tokens:
                if text and _LATIN.match(text[-1]) and _LATIN.match(token[0]):
                    text += " "
                text += token
            return text
    else:
        raise UserError(f"unknown tokenizer {name!r}: expected one of {', '.join(TOKENIZERS)}")
    return detokenize


def tokenize_keeping(text, tokenize, kept=KEPT_TOKENS):
    """tokenize(text), with every occurrence of a `kept` string (e.g. `<unk>`) one token of its own, unchanged.

    Each kept string is swapped for a placeholder word of ASCII letters, which the tokenizers keep whole and treat
    like any word (quotes, a final period and 's around it come out as around a word), then restored; a token the
    tokenizer glued to it (`<unk>-based`) is cut there (`<unk>`, `-based`). The placeholders start with a letter
    found nowhere else in them, so no two occurrences overlap, and are chosen absent from the text.
    """
    present = [token for token in kept if token in text]
    if not present:
        return tokenize(text)
    base = "keptword"
    while any(base + chr(ord("a") + n) in text for n in range(len(present))):
        base += "x"
    placeholders = {base + chr(ord("a") + n): token for n, token in enumerate(present)}
    for placeholder, token in placeholders.items():
        text = text.replace(token, placeholder)
    pattern = re.compile("(" + "|".join(placeholders) + ")")
    out = []
    for token in tokenize(text):
        if base not in token:
            out.append(token)
            continue
        out.extend(placeholders.get(part, part) for part in pattern.split(token) if part)
    return out


@dataclasses.dataclass(frozen=True)
class Normalization:
    """Rewrites of the tokenizer's tokens, in this order: a token that is a key of `token_map` is replaced whole by
    its value, written as given (looked up once: no chains); every other token is lowercased (`lowercase`), then
    each of its Unicode decimal digits written `#` (`digits_to_hash`, Gigaword's convention: 1.5 -> #.#).
    The default changes nothing."""
    lowercase: bool = False
    digits_to_hash: bool = False
    token_map: dict = dataclasses.field(default_factory=dict)

    def __call__(self, tokens, stats):
        """tokens -> normalised tokens; `stats` (a Counter) counts the replaced tokens as `mapped`."""
        out = []
        for token in tokens:
            if token in self.token_map:
                stats["mapped"] += 1
                out.append(self.token_map[token])
                continue
            if self.lowercase:
                token = token.lower()
            if self.digits_to_hash:
                token = _DIGIT.sub("#", token)
            out.append(token)
        return out


def parse_token_map(items):
    """`FROM=TO` strings (--map_token, split at the first "=") -> {FROM: TO}; a one-line UserError otherwise."""
    token_map = {}
    for item in items:
        source, _, target = item.partition("=")
        if not source or not target or any(c.isspace() for c in item):
            raise UserError(f"--map_token {item!r}: expected FROM=TO, two non-empty tokens without white space, "
                            f"e.g. UNK=<unk>")
        if token_map.get(source, target) != target:
            raise UserError(f"--map_token {source!r} is mapped twice, to {token_map[source]!r} and {target!r}: "
                            f"expected one target per token")
        token_map[source] = target
    return token_map


def whole_token_replacer(token_map):
    """A function UTF-8 bytes -> (bytes, number of replacements) that replaces every whole token that is a key of
    `token_map` ({FROM: TO}, e.g. parse_token_map's) by its value; a token is a maximal run of bytes other than
    ASCII white space, and everything else (white space included) is kept byte for byte. apply_bpe_encoding.py
    --map_token: for text tokenized elsewhere (Gigaword's UNK -> <unk> before BPE)."""
    targets = {source.encode("utf-8"): target.encode("utf-8") for source, target in token_map.items()}
    # Longest first, so that no key matches inside a longer one; (?<!\S) and (?!\S): whole tokens only.
    alternatives = b"|".join(re.escape(source) for source in sorted(targets, key=len, reverse=True))
    pattern = re.compile(rb"(?<!\S)(?:" + alternatives + rb")(?!\S)")

    def replace(data):
        if not targets:
            return data, 0
        return pattern.subn(lambda match: targets[match.group(0)], data)

    return replace


def tokenize_line(raw, tokenize, max_chars, stats, normalize=None):
    """One raw line (bytes, without its "\\n") -> the space-joined tokens; applies the line policies, then
    `normalize` (a Normalization) if given.

    `stats` (a Counter) gets lines, tokens, empty, crlf, invalid_utf8 and too_long added (and mapped).
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
    tokens = [part for token in tokenize_keeping(text, tokenize) for part in token.split()] \
        if not text.isspace() else []
    if not tokens:
        stats["empty"] += 1
        return ""
    if normalize is not None:
        tokens = normalize(tokens, stats)
    stats["tokens"] += len(tokens)
    return " ".join(tokens)


def tokenize_block(lines, tokenizer_name, max_chars, normalize=None):
    """Worker task: raw lines -> (output text, one "\\n"-terminated line per input line; stats Counter)."""
    tokenize = get_tokenizer(tokenizer_name)
    stats = collections.Counter()
    out = [tokenize_line(raw, tokenize, max_chars, stats, normalize) for raw in lines]
    return "".join(line + "\n" for line in out), stats


def _tokenize_task(task):
    block, size, tokenizer, max_chars, normalize = task
    text, stats = tokenize_block(block, tokenizer, max_chars, normalize)
    return text, stats, size


def tokenize_files(folders, output_folder, tokenizer="nltk", pool_size=2, max_chars=10000,
                   lines_per_block=2000, progress=True, normalize=None):
    """Tokenizes every .txt file of `folders` into OUTPUT_FOLDER/<same name>, the tokens rewritten by `normalize`
    (a Normalization) if given; returns the stats Counter.

    Outputs are written atomically, all of them or none. The progress bar shows only when stderr is a
    terminal: logs and pipes, and the one-line errors read from them, stay free of bar updates.
    """
    if tokenizer not in TOKENIZERS:
        raise UserError(f"unknown tokenizer {tokenizer!r}: expected one of {', '.join(TOKENIZERS)}")
    if pool_size < 1:
        raise UserError(f"--pool_size must be >= 1, got {pool_size}")
    if max_chars < 1:
        raise UserError(f"--max_chars must be >= 1, got {max_chars}")
    files = find_text_files(folders)
    outputs = output_paths(files, output_folder)
    stats = collections.Counter({key: 0 for key in STAT_KEYS})
    get_tokenizer(tokenizer)  # loaded once here, inherited by forked workers (jieba takes ~1 s)
    total_bytes = sum(os.path.getsize(path) for path in files)
    bar = progress_bar(total_bytes, "tokenize", unit="B", enabled=progress and sys.stderr.isatty(), unit_scale=True)
    with process_pool(pool_size) as pool, atomic_outputs(outputs) as temporaries, bar:
        for path, temporary in zip(files, temporaries):
            tasks = ((block, size, tokenizer, max_chars, normalize)
                     for block, size in iter_line_blocks(path, lines_per_block))
            with open(temporary, "w", encoding="utf-8", newline="") as out:
                for text, block_stats, block_bytes in ordered_map(pool, _tokenize_task, tasks):
                    out.write(text)
                    stats.update(block_stats)
                    bar.update(block_bytes)
            stats["files"] += 1
    return stats


def format_stats(stats, keys=STAT_KEYS):
    return " ".join(f"{key}={stats.get(key, 0)}" for key in keys)
