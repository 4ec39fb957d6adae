"""Text pipeline: tokenizer and line policies, BPE apply equal to subword-nmt's, BPE removal, vocabulary."""
import codecs
import collections
import io
import os

import pytest
from conftest import shared_data

from src.dictionary import Dictionary
from src.errors import UserError
from src.text import (BpeApplier, apply_bpe_file, apply_bpe_files, count_vocabulary, get_tokenizer,
                      load_bpe_codes, parse_bpe_codes, remove_bpe, tokenize_block, tokenize_files)


def read_lines(path, count=None):
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    return lines[:count]


# ---------------------------------------------------------------------------------------------- tokenizers

def test_nltk_tokenizer_on_real_news_lines():
    lines = read_lines(shared_data("news", "news.en.txt"), 3000)
    tokenize = get_tokenizer("nltk")
    assert tokenize(lines[0]) == ["Food", ":", "Where", "European", "inflation", "slipped", "up"]
    assert tokenize(lines[2]) == [
        "November", "price", "hikes", "were", "higher", "than", "expected", "in", "the", "13", "eurozone",
        "countries", ",", "with", "October", "'s", "2.6", "percent", "yr/yr", "inflation", "rate", "followed",
        "by", "3.1", "percent", "in", "November", ",", "the", "EU", "'s", "Luxembourg-based", "statistical",
        "office", "reported", "."]
    # Curly quotes and apostrophes are split off as their own tokens.
    assert lines[2700] == "The condition “I’m in if I’ll be alive” applies."
    assert tokenize(lines[2700]) == ["The", "condition", "“", "I", "’", "m", "in", "if", "I", "’", "ll", "be",
                                     "alive", "”", "applies", "."]


def test_nltk_tokenizer_on_real_dialogue_lines():
    lines = read_lines(shared_data("cornell", "train.src.txt"), 20)
    tokenize = get_tokenizer("nltk")
    # Double spaces vanish; no punkt model, so only the line-final period is split off a word.
    assert lines[8] == "Hey!  What is this, the planes all bunched up like that?"
    assert tokenize(lines[8]) == ["Hey", "!", "What", "is", "this", ",", "the", "planes", "all", "bunched", "up",
                                  "like", "that", "?"]
    assert tokenize(lines[11])[:8] == ["Wrong.", "It", "'s", "because", "you", "ai", "n't", "got"]


def test_jieba_tokenizer():
    tokenize = get_tokenizer("jieba")
    assert tokenize("我来到北京清华大学") == ["我", "来到", "北京", "清华大学"]
    assert tokenize("MindSpore 2.10 发布了！ 很好") == ["MindSpore", "2.10", "发布", "了", "！", "很", "好"]


# --------------------------------------------------------------------------------------------- line policies

def test_line_policies_and_counts():
    lines = [b"Hello, world.\r", b"", b"  \t ", b"caf\xc3\xa9 ok", b"bad \xff byte", b"x" * 21, b"\r",
             b"a\rb", b"x" * 20]
    text, stats = tokenize_block(lines, "nltk", max_chars=20)
    assert text.split("\n") == ["Hello , world .", "", "", "café ok", "bad \ufffd byte", "", "", "a b", "x" * 20, ""]
    assert dict(stats) == {"lines": 9, "tokens": 12, "empty": 3, "crlf": 2, "invalid_utf8": 1, "too_long": 1}


def test_tokenize_files_keeps_one_line_per_line(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "x.article.txt").write_bytes(b"One sentence.\r\n\r\nTwo  words\nno newline at end")
    (first / "notes.md").write_text("not a corpus file")
    (second / "x.title.txt").write_bytes(b"\xff title\n" + b"y" * 30 + b"\n")
    for pool_size in (1, 2):
        out = tmp_path / f"out{pool_size}"
        stats = tokenize_files([str(first), str(second)], str(out), "nltk", pool_size, max_chars=25,
                               lines_per_block=1, progress=False)
        assert sorted(os.listdir(out)) == ["x.article.txt", "x.title.txt"]
        assert (out / "x.article.txt").read_text() == "One sentence .\n\nTwo words\nno newline at end\n"
        assert (out / "x.title.txt").read_text() == "\ufffd title\n\n"
        assert dict(stats) == {"files": 2, "lines": 6, "tokens": 11, "empty": 1, "crlf": 2, "invalid_utf8": 1,
                               "too_long": 1}


# ------------------------------------------------------------------------------------------------ BPE codes

@pytest.fixture(scope="module")
def bpe_setup(tmp_path_factory):
    """3,000 merges learned by subword-nmt on 5,000 real tokenized sentences, and >= 10,000 test sentences."""
    from subword_nmt.learn_bpe import learn_bpe
    articles = read_lines(shared_data("gigaword", "train.article.txt"))
    folder = tmp_path_factory.mktemp("bpe")
    codes_path = folder / "codes"
    with open(codes_path, "w", encoding="utf-8") as out:
        learn_bpe(io.StringIO("\n".join(articles[:5000])), out, 3000)
    # Articles (PTB-tokenized) and raw dialogue lines (curly quotes, double spaces, other languages' letters).
    dialogue = read_lines(shared_data("cornell", "valid.src.txt"), 2000)
    sentences = articles[5000:10000] + read_lines(shared_data("gigaword", "extra.article.txt"), 4000) + dialogue
    assert len(sentences) >= 10000
    text = "".join(line + "\n" for line in sentences)
    return str(codes_path), text


@pytest.fixture(params=["native", "numpy"])
def bpe_path(request, monkeypatch):
    """Each BPE test runs on the C++ plain-text path (src/kernels/bpe.cc) and on the NumPy one."""
    from src.kernels import bpe_library
    if request.param == "native" and bpe_library() is None:
        pytest.skip("no C++ compiler")
    if request.param == "numpy":
        monkeypatch.setenv("MASS_STOCK_KERNELS", "1")
    return request.param


def took_plain_path(applier, bpe_path):
    """Whether the applier encoded its texts on the plain-text path of `bpe_path`, not the per-line one."""
    if bpe_path == "native":
        return applier._native is not None and len(applier.plain_masks) == 2 and len(applier.table) == 2
    return applier._native is None and len(applier.plain_masks) > 1000 and len(applier.table) == 2


def subword_nmt_apply(codes_path, text):
    """What `subword-nmt apply-bpe -c CODES` prints for `text`: its BPE class and its line loop over a codecs
    reader (which ends lines wherever str.splitlines does: real dialogue data has a U+0085 in a line)."""
    from subword_nmt.apply_bpe import BPE
    bpe = BPE(codecs.open(codes_path, encoding="utf-8"))
    return "".join(bpe.process_line(line) for line in codecs.getreader("utf-8")(io.BytesIO(text.encode())))


def test_bpe_equals_subword_nmt_on_real_sentences(bpe_setup, tmp_path, bpe_path):
    codes_path, text = bpe_setup
    expected = subword_nmt_apply(codes_path, text)
    assert "@@ " in expected and expected.count("\n") == text.count("\n")
    # The tokenized articles alone are plain (single spaces, "\n" ends): encoded as one whole text.
    articles = "".join(text.splitlines(True)[:9000])
    applier = BpeApplier(load_bpe_codes(codes_path))
    assert applier.apply_bytes(articles.encode()).decode() == "".join(expected.splitlines(True)[:9000])
    assert took_plain_path(applier, bpe_path)
    # With the dialogue lines (double spaces, a U+0085 that ends a line for subword-nmt): the per-line path.
    applier = BpeApplier(load_bpe_codes(codes_path))
    assert applier.apply_bytes(text.encode()).decode() == expected
    assert len(applier.table) > 10000
    # And through files: one block, and many blocks on two processes.
    source, target = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text(text)
    apply_bpe_file(load_bpe_codes(codes_path), str(source), str(target))
    assert target.read_text() == expected
    counts, lines = apply_bpe_files(load_bpe_codes(codes_path), [str(source)], [str(target)], processes=2,
                                    progress=False, block_bytes=1 << 16)
    assert target.read_text() == expected
    assert lines == text.count("\n")
    assert counts == count_vocabulary(expected.split("\n"))


def test_bpe_equals_subword_nmt_with_version_0_1_codes(bpe_setup, tmp_path, bpe_path):
    codes_path, text = bpe_setup
    old_codes = tmp_path / "codes.v01"
    with open(codes_path, encoding="utf-8") as handle:
        old_codes.write_text("".join(handle.readlines()[1:]))  # no "#version" line: subword-nmt reads 0.1
    text = "".join(text.splitlines(True)[:3000])
    codes = load_bpe_codes(str(old_codes))
    assert codes.version == (0, 1)
    applier = BpeApplier(codes)
    assert applier.apply_bytes(text.encode()).decode() == subword_nmt_apply(str(old_codes), text)
    assert took_plain_path(applier, bpe_path)


UNUSUAL_TEXT = ("\n  \n   leading and trailing   \nin  the  middle\ttab\r\nlone\rcarriage\x0cform\x1cfeed"
                "\x85next\u2028line\u2029para\n</w> a</w>b x</w> @@ @@@ q \ufeffbom 日本語 ✓\n\n"
                "single a b c . , 1\nno newline at the end ")


@pytest.mark.parametrize("version_line", ["#version: 0.2\n", ""])
def test_bpe_equals_subword_nmt_command_on_unusual_text(bpe_setup, tmp_path, version_line, bpe_path):
    """Empty and white-space lines, every line end str.splitlines knows, "</w>" spelled in words: the same
    bytes as the `subword-nmt apply-bpe` command."""
    import subprocess
    import sys
    codes_path, text = bpe_setup
    codes = tmp_path / "codes"
    with open(codes_path, encoding="utf-8") as handle:
        codes.write_text(version_line + "".join(handle.readlines()[1:]))
    source = tmp_path / "unusual.txt"
    source.write_bytes((UNUSUAL_TEXT + "\n" + "".join(text.splitlines(True)[:200]) + UNUSUAL_TEXT).encode())
    expected = tmp_path / "expected.txt"
    command = os.path.join(os.path.dirname(sys.executable), "subword-nmt")
    subprocess.run([command, "apply-bpe", "-c", str(codes), "-i", str(source), "-o", str(expected)], check=True)
    target = tmp_path / "ours.txt"
    apply_bpe_file(load_bpe_codes(str(codes)), str(source), str(target))
    assert target.read_bytes() == expected.read_bytes()
    assert b"\r\n" in target.read_bytes() and b"\n\n" in target.read_bytes()


def test_bpe_merge_order_rules_match_subword_nmt(bpe_path):
    """Hand-made codes: duplicates (first wins), overlapping pairs (x x x -> xx x), a merge whose
    result makes a pair ranked earlier than itself, a merge of "</w>" itself (version 0.1)."""
    from subword_nmt.apply_bpe import BPE
    # All occurrences of the best pair merge before the pair "ab a" they create is considered:
    # merging one occurrence at a time would give "aba@@ b@@ x".
    assert BpeApplier(parse_bpe_codes("#version: 0.2\nab a\na b\n")).encode("ababx") == "ab@@ ab@@ x"
    assert BpeApplier(parse_bpe_codes("#version: 0.2\nx x\n")).encode("xxxxxy") == "xx@@ xx@@ x@@ y"
    words = ["xxxx", "xxx", "xxxxx", "abc", "abcab", "aab", "b", "ba", "xyx", "cab", "abab", "xxab"]
    for codes_text in ("#version: 0.2\nx x\nb c</w>\na b\nab c</w>\nxx x\nx x\nc ab</w>\na ab\nab ab</w>\n",
                       "b </w>\nx x\na b\nxx xx\nab </w>\nc a\nca b</w>\nx </w>\n"):
        reference = BPE(io.StringIO(codes_text))
        applier = BpeApplier(parse_bpe_codes(codes_text))
        line = " ".join(words) + "\n"
        assert applier.apply_bytes(line.encode()).decode() == reference.process_line(line)
        for word in words:
            assert applier.encode(word) == reference.process_line(word)


@pytest.mark.parametrize("version_line", ["#version: 0.2\n", ""])
def test_bpe_plain_path_edges_equal_subword_nmt(bpe_setup, version_line, bpe_path):
    """The plain-text path (words keyed by their first 16 bytes, cut points as bit masks): words of 1 to 90
    bytes around the 8/16/64-byte key and mask limits, multi-byte characters across them, "@@" and "</w>"
    inside words, empty lines, a text without a final newline; several blocks on one applier."""
    from subword_nmt.apply_bpe import BPE
    codes_path, text = bpe_setup
    with open(codes_path, encoding="utf-8") as handle:
        codes_text = version_line + "".join(handle.readlines()[1:])
    reference = BPE(io.StringIO(codes_text))
    articles = text.splitlines(True)[:300]
    long_words = [("abcdefghijklmnopqrstuvwxyz" * 4)[:size] for size in (7, 8, 9, 15, 16, 17, 63, 64, 65, 90)]
    long_words += ["日本語のテキスト", "naïveté" * 3, "x" * 70 + "é", "é" * 40]
    long_words += ["@@", "a@@", "@@b", "ab@@cd"]
    plain = "".join(articles[:100]) + "\n" + " ".join(long_words) + "\n\n" + "".join(articles[100:])
    applier = BpeApplier(parse_bpe_codes(codes_text))
    for block in (plain, plain[:-1], " ".join(reversed(long_words)) + "\n"):
        expected = "".join(reference.process_line(line) for line in block.splitlines(True))
        assert applier.apply_bytes(block.encode()).decode() == expected
    assert took_plain_path(applier, bpe_path)
    weird = "a</w>b x</w> </w> tab\there q\n" + "".join(articles[:20])
    expected = "".join(reference.process_line(line) for line in weird.splitlines(True))
    assert BpeApplier(parse_bpe_codes(codes_text)).apply_bytes(weird.encode()).decode() == expected


def test_parse_bpe_codes_errors(tmp_path):
    codes = parse_bpe_codes("#version: 0.2\nt h\nth e</w>\nt h\n")
    assert codes.version == (0, 2) and codes.ranks == {("t", "h"): 0, ("th", "e</w>"): 1}
    assert parse_bpe_codes("a b\n").version == (0, 1)
    with pytest.raises(UserError, match=r"^c:3: expected a merge"):
        parse_bpe_codes("#version: 0.2\nt h\nt h e\n", "c")
    with pytest.raises(UserError, match=r"^c:1: expected a merge"):
        parse_bpe_codes("The quick brown fox\n", "c")
    with pytest.raises(UserError, match=r"^c:1: unsupported BPE codes version 0.3"):
        parse_bpe_codes("#version: 0.3\nt h\n", "c")
    with pytest.raises(UserError, match=r"^c:2: expected a merge"):  # no merges at all
        parse_bpe_codes("#version: 0.2\n", "c")
    binary = tmp_path / "codes.bin"
    binary.write_bytes(b"#version: 0.2\nt h\n\xff\xfe\n")
    with pytest.raises(UserError, match=r"codes.bin:3: not a BPE codes file \(invalid UTF-8\)"):
        load_bpe_codes(str(binary))
    with pytest.raises(UserError, match="BPE codes file not found"):
        load_bpe_codes(str(tmp_path / "missing"))


# ------------------------------------------------------------------------------------ removal and vocabulary

def test_remove_bpe_round_trip(bpe_setup):
    codes_path, text = bpe_setup
    lines = text.split("\n")[:5000]  # tokenized articles: single spaces, no "@@" of their own
    encoded = BpeApplier(load_bpe_codes(codes_path)).apply_bytes("\n".join(lines).encode()).decode().split("\n")
    assert sum(line.count("@@ ") for line in encoded) > 1000
    assert [remove_bpe(line) for line in encoded] == lines
    assert remove_bpe("un@@ believ@@ able news\n") == "unbelievable news"
    assert remove_bpe("a dangling@@") == "a dangling"


def test_vocabulary_counts_and_round_trip(tmp_path):
    counts = count_vocabulary(["a b@@ c", "a  a\tc\n", ""])
    assert counts == collections.Counter({"a": 3, "c": 2, "b@@": 1})
    vocab = Dictionary.from_counter(counts)
    assert [vocab[i] for i in range(len(vocab))] == ["<pad>", "<s>", "</s>", "<unk>", "<mask>", "a", "c", "b@@"]
    path = tmp_path / "vocab.txt"
    vocab.persistence(str(path))
    assert Dictionary.load_from_persisted_dict(str(path)) == vocab
