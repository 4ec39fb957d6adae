"""Word tokenizers and the line policies of tokenize_corpus.py (src/tokenization.py)."""
import os

from conftest import shared_data

from src.tokenization import get_tokenizer, tokenize_block, tokenize_files


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
