"""Word tokenizers and the line policies of tokenize_corpus.py (src/tokenization.py)."""
import collections
import os

import pytest
from conftest import shared_data

from src.errors import UserError
from src.tokenization import (Normalization, get_detokenizer, get_tokenizer, parse_token_map, tokenize_block,
                              tokenize_files)


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
                               "too_long": 1, "mapped": 0}


# ------------------------------------------------------------------------------------------------ normalization

# nltk's tokens of a line with ASCII, Arabic-Indic (١٢٣) and full-width (２０) decimal digits, and the superscript
# ² and Roman numeral Ⅻ, which are not decimal digits.
NORMALIZATION_LINE = "In 2008, UNK prices rose 1.5% to ١٢٣ (²) Ⅻ ２０ and unk don't."
NORMALIZATION_CASES = [
    (Normalization(), "In 2008 , UNK prices rose 1.5 % to ١٢٣ ( ² ) Ⅻ ２０ and unk do n't ."),
    (Normalization(lowercase=True), "in 2008 , unk prices rose 1.5 % to ١٢٣ ( ² ) ⅻ ２０ and unk do n't ."),
    (Normalization(digits_to_hash=True), "In #### , UNK prices rose #.# % to ### ( ² ) Ⅻ ## and unk do n't ."),
    # The mapped tokens are matched as the tokenizer wrote them (UNK, not unk) and exempt from lowercasing.
    (Normalization(True, True, {"UNK": "<unk>", "n't": "NOT"}),
     "in #### , <unk> prices rose #.# % to ### ( ² ) ⅻ ## and unk do NOT ."),
]


@pytest.mark.parametrize("normalize,expected", NORMALIZATION_CASES)
def test_normalization_of_tokens(normalize, expected):
    stats = collections.Counter()
    assert " ".join(normalize(get_tokenizer("nltk")(NORMALIZATION_LINE), stats)) == expected
    assert stats == (collections.Counter(mapped=2) if normalize.token_map else collections.Counter())


def test_normalization_keeps_the_line_policies():
    lines = [b"UNK rose 12%\r", b"", b"x" * 21, b"UNK UNK \xff 3"]
    text, stats = tokenize_block(lines, "nltk", 20, Normalization(True, True, {"UNK": "<unk>"}))
    assert text == "<unk> rose ## %\n\n\n<unk> <unk> \ufffd #\n"
    assert dict(stats) == {"lines": 4, "tokens": 8, "empty": 1, "crlf": 1, "invalid_utf8": 1, "too_long": 1,
                           "mapped": 3}


def test_normalization_in_a_worker_pool(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("UNK won 3-1\nIn 1990 UNK\n")
    stats = tokenize_files([str(tmp_path / "in")], str(tmp_path / "out"), "nltk", pool_size=2, lines_per_block=1,
                           progress=False, normalize=Normalization(True, True, {"UNK": "<unk>"}))
    assert (tmp_path / "out" / "a.txt").read_text() == "<unk> won #-#\nin #### <unk>\n"
    assert stats["mapped"] == 2 and stats["tokens"] == 6


def test_parse_token_map():
    assert parse_token_map([]) == {}
    assert parse_token_map(["UNK=<unk>", "a=b=c", "UNK=<unk>"]) == {"UNK": "<unk>", "a": "b=c"}


@pytest.mark.parametrize("items,message", [
    (["UNK"], "--map_token 'UNK': expected FROM=TO"),
    (["=x"], "--map_token '=x': expected FROM=TO"),
    (["UNK="], "--map_token 'UNK=': expected FROM=TO"),
    (["a b=c"], "--map_token 'a b=c': expected FROM=TO, two non-empty tokens without white space"),
    (["UNK=<unk>", "UNK=<UNK>"], "--map_token 'UNK' is mapped twice, to '<unk>' and '<UNK>'"),
])
def test_parse_token_map_errors(items, message):
    with pytest.raises(UserError) as error:
        parse_token_map(items)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------------ kept <unk>

UNK_LINE = 'Mr. <unk> said "<unk>" (<unk>) <unk>\'s <unk>-based a<unk>b keptworda <unk>.'


@pytest.mark.parametrize("tokenizer,expected", [
    # Around <unk>, nltk tokenizes as around any word: quotes turned, 's and the final period split off.
    ("nltk", ["Mr.", "<unk>", "said", "``", "<unk>", "''", "(", "<unk>", ")", "<unk>", "'s", "<unk>", "-based",
              "a", "<unk>", "b", "keptworda", "<unk>", "."]),
    ("jieba", ["Mr", ".", "<unk>", "said", '"', "<unk>", '"', "(", "<unk>", ")", "<unk>", "'", "s", "<unk>", "-",
               "based", "a", "<unk>", "b", "keptworda", "<unk>", "."]),
])
def test_unk_survives_tokenization(tokenizer, expected):
    """A raw <unk> (nltk alone writes `< unk >`) is one token of its own, also glued to other characters and in a
    line holding the placeholder word's first choice."""
    assert get_tokenizer("nltk")("<unk> x") == ["<", "unk", ">", "x"]
    text, stats = tokenize_block([UNK_LINE.encode(), b"no unknown word", b"<unk>"], tokenizer, max_chars=200)
    assert text.split("\n") == [" ".join(expected), "no unknown word", "<unk>", ""]
    assert stats["tokens"] == len(expected) + 4


def test_gigaword_unk_maps_to_one_unk_token():
    """Gigaword's UNK (test set) and <unk> (train/valid) both come out as the token <unk> with --map_token UNK=<unk>,
    after lowercasing and digits_to_hash as well."""
    lines = [b"sunderan minister sipho UNK said sunday .", b"zofia <unk> beat jade 6-4 ."]
    text, stats = tokenize_block(lines, "nltk", 200, Normalization(True, True, {"UNK": "<unk>"}))
    assert text == "sunderan minister sipho <unk> said sunday .\nzofia <unk> beat jade #-# .\n"
    assert stats["mapped"] == 1


@pytest.mark.parametrize("text", ["Police said 12 people were hurt in Nessa on Monday.",
                                  'He said: "I don\'t know (yet), U.S. officials\' view."',
                                  "Is it over? Yes, for now; 3.5% of 1,200 voters (a poll)."])
def test_nltk_detokenizer_undoes_the_tokenizer(text):
    assert get_detokenizer("nltk")(get_tokenizer("nltk")(text)) == text


@pytest.mark.parametrize("tokens,expected", [
    ("police say ## hurt in nessa , officials say", "police say ## hurt in nessa, officials say"),
    ("us $ #.# billion deal -lrb- update # -rrb-", "us $#.# billion deal (update #)"),
    ("<unk> wins the #### world cup", "<unk> wins the #### world cup"),
])
def test_nltk_detokenizer_on_normalised_headlines(tokens, expected):
    """`#` digit placeholders stay words (not glued on as a currency sign), Treebank brackets become brackets."""
    assert get_detokenizer("nltk")(tokens.split()) == expected


def test_jieba_detokenizer():
    detokenize = get_detokenizer("jieba")
    assert detokenize("我 来到 北京 清华大学 ， 2024 年 New York".split()) == "我来到北京清华大学，2024年New York"
