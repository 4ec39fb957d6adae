"""The text tools as commands: tokenize_corpus.py, scripts/learn_subword.sh, apply_bpe_encoding.py.

Each is run as a real subprocess; bad input must give one `error:` line, a non-zero exit, no traceback
and no output files. The commands run on the bundled data/sample corpus, and again on the real corpora
where ../shared/data is present.
"""
import collections
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, shared_data
from subword_nmt_reference import sample_lines, subword_nmt_command

from src.dictionary import SPECIAL_SYMBOLS, Dictionary

PYTHON = sys.executable


def run(*command, env=None):
    return subprocess.run(list(command), cwd=REPO, capture_output=True, text=True, env=env)


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def files_under(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def tokenize_corpus(root, news, dialogue, valid_lines):
    """Two raw folders (news.txt + valid.txt: its last `valid_lines`; dialogue.txt), tokenized by the command."""
    first, second = root / "news", root / "dialogue"
    first.mkdir()
    second.mkdir()
    (first / "news.txt").write_text("".join(news[:-valid_lines]))
    (first / "valid.txt").write_text("".join(news[-valid_lines:]))
    (second / "dialogue.txt").write_text("".join(dialogue))
    tokenized = root / "tokenized"
    result = run(PYTHON, "tokenize_corpus.py", "--corpus_folder", f"{first},{second}", "--output_folder",
                 str(tokenized), "--tokenizer", "nltk", "--pool_size", "2")
    assert result.returncode == 0, result.stderr
    return root, tokenized, result.stdout


@pytest.fixture(scope="module")
def sample_corpus(tmp_path_factory):
    """data/sample news (400 lines) and dialogue (300 lines, one with a double space)."""
    news = [line + "\n" for line in sample_lines("news", "news.txt")]
    dialogue = [line + "\n" for line in sample_lines("dialog", "train.src.txt")]
    return tokenize_corpus(tmp_path_factory.mktemp("sample_corpus"), news, dialogue, 50)


@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory):
    """3,000 real news lines and 1,000 real dialogue lines."""
    with open(shared_data("news", "news.en.txt"), encoding="utf-8") as handle:
        news = [next(handle) for _ in range(3000)]
    with open(shared_data("cornell", "valid.src.txt"), encoding="utf-8") as handle:
        dialogue = [next(handle) for _ in range(1000)]
    return tokenize_corpus(tmp_path_factory.mktemp("real_corpus"), news, dialogue, 500)


def test_tokenize_corpus_command_on_sample(sample_corpus):
    root, tokenized, stdout = sample_corpus
    assert files_under(tokenized) == ["dialogue.txt", "news.txt", "valid.txt"]
    news_out = (tokenized / "news.txt").read_text().split("\n")
    assert len(news_out) == 351 and news_out[-1] == ""
    assert news_out[0] == ("A team from the Kessington Institute has developed a cheap battery that can store solar "
                           "power for up to 36 hours .")
    dialogue_out = (tokenized / "dialogue.txt").read_text()
    assert dialogue_out.count("\n") == 300 and "  " not in dialogue_out  # double spaces vanish
    assert stdout.startswith(f"tokenized into {tokenized}: files=3 lines=700 tokens=")
    assert "empty=0 crlf=0 invalid_utf8=0 too_long=0" in stdout


def test_tokenize_corpus_command_on_real_data(real_corpus):
    root, tokenized, stdout = real_corpus
    assert files_under(tokenized) == ["dialogue.txt", "news.txt", "valid.txt"]
    news_out = (tokenized / "news.txt").read_text().split("\n")
    assert len(news_out) == 2501 and news_out[-1] == ""
    assert news_out[0] == "Food : Where European inflation slipped up"
    assert len((tokenized / "dialogue.txt").read_text().split("\n")) == 1001
    assert stdout.startswith(f"tokenized into {tokenized}: files=3 lines=4000 tokens=")
    assert "empty=0 crlf=0 invalid_utf8=0 too_long=0" in stdout


def test_tokenize_corpus_jieba_is_quiet(tmp_path):
    source = tmp_path / "zh"
    source.mkdir()
    (source / "zh.txt").write_text("我来到北京清华大学\n\n他来到了网易杭研大厦\n")
    result = run(PYTHON, "tokenize_corpus.py", "--corpus_folder", str(source), "--output_folder",
                 str(tmp_path / "out"), "--tokenizer", "jieba", "--pool_size", "1")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "zh.txt").read_text() == "我 来到 北京 清华大学\n\n他 来到 了 网易 杭研 大厦\n"
    assert "prefix dict" not in result.stderr and "Loading model" not in result.stderr
    assert "files=1 lines=3 tokens=10 empty=1" in result.stdout


def test_tokenize_corpus_normalization_flags(tmp_path):
    source = tmp_path / "giga"
    source.mkdir()
    (source / "a.txt").write_text("UNK Shares rose 1.5% in 2008.\n\nNo digits here, unk or UNK\n")
    result = run(PYTHON, "tokenize_corpus.py", "--corpus_folder", str(source), "--output_folder",
                 str(tmp_path / "out"), "--pool_size", "1", "--lowercase", "--digits_to_hash", "--map_token",
                 "UNK=<unk>")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "a.txt").read_text() == ("<unk> shares rose #.# % in #### .\n\n"
                                                         "no digits here , unk or <unk>\n")
    assert result.stdout.endswith("files=1 lines=3 tokens=15 empty=1 crlf=0 invalid_utf8=0 too_long=0 mapped=2\n")


@pytest.fixture()
def bad_folders(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.txt").write_text("Hello world.\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("no corpus here\n")
    folder_named_txt = tmp_path / "folder_named_txt"
    (folder_named_txt / "x.txt").mkdir(parents=True)
    dangling = tmp_path / "dangling"
    dangling.mkdir()
    os.symlink(tmp_path / "nowhere.txt", dangling / "x.txt")
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "a.txt").write_text("Same name.\n")
    return tmp_path


@pytest.mark.parametrize("folders, fragments", [
    ("missing", ["corpus folder not found", "missing"]),
    ("empty", ["no .txt files in folder", "empty corpus"]),
    ("good,folder_named_txt", ["cannot read", "folder_named_txt/x.txt"]),
    ("good,dangling", ["cannot read", "dangling/x.txt"]),
    ("good,twin", ["would both be written to", "a.txt"]),
])
def test_tokenize_corpus_bad_input(bad_folders, folders, fragments):
    output = bad_folders / "out"
    folders = ",".join(str(bad_folders / name) for name in folders.split(","))
    result = run(PYTHON, "tokenize_corpus.py", "--corpus_folder", folders, "--output_folder", str(output))
    assert_one_line_error(result, *fragments)
    assert files_under(output) == []


def test_tokenize_corpus_bad_flags(bad_folders):
    result = run(PYTHON, "tokenize_corpus.py", "--corpus_folder", str(bad_folders / "good"), "--output_folder",
                 str(bad_folders / "out"), "--pool_size", "0")
    assert_one_line_error(result, "--pool_size must be >= 1")
    for mapping, fragment in (("UNK", "--map_token 'UNK': expected FROM=TO"),
                              ("UNK=", "--map_token 'UNK=': expected FROM=TO")):
        result = run(PYTHON, "tokenize_corpus.py", "--corpus_folder", str(bad_folders / "good"), "--output_folder",
                     str(bad_folders / "out"), "--map_token", "x=y", "--map_token", mapping)
        assert_one_line_error(result, fragment)
    result = run(PYTHON, "tokenize_corpus.py", "--corpus_folder", str(bad_folders / "good"), "--output_folder",
                 str(bad_folders / "out"), "--map_token", "UNK=<unk>", "--map_token", "UNK=<UNK>")
    assert_one_line_error(result, "--map_token 'UNK' is mapped twice, to '<unk>' and '<UNK>'")
    assert files_under(bad_folders / "out") == []
    result = run(PYTHON, "tokenize_corpus.py", "--corpus_folder", str(bad_folders / "good"), "--output_folder",
                 str(bad_folders / "good"))
    assert_one_line_error(result, "would overwrite its input")
    assert (bad_folders / "good" / "a.txt").read_text() == "Hello world.\n"


def learn_codes(corpus):
    root, tokenized, _ = corpus
    path = root / "vocab" / "all.bpe.codes"
    result = run("bash", "scripts/learn_subword.sh", "800", str(path), str(tokenized))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("learned 800 merges (asked 800) from 3 files in ")
    return path


@pytest.fixture(scope="module")
def sample_codes(sample_corpus):
    return learn_codes(sample_corpus)


@pytest.fixture(scope="module")
def real_codes(real_corpus):
    return learn_codes(real_corpus)


@pytest.fixture(scope="module", params=["sample", "real"])
def corpus_and_codes(request):
    return request.getfixturevalue(f"{request.param}_corpus"), request.getfixturevalue(f"{request.param}_codes")


def test_learn_subword_writes_codes(corpus_and_codes):
    _, codes = corpus_and_codes
    lines = codes.read_text().split("\n")
    assert lines[0] == "#version: 0.2" and len(lines) == 802 and lines[-1] == ""
    assert all(len(line.split(" ")) == 2 for line in lines[1:-1])
    assert files_under(codes.parent) == ["all.bpe.codes"]  # no temporary left


def test_learn_subword_bad_arguments(tmp_path):
    usage = run("bash", "scripts/learn_subword.sh", "100")
    assert usage.returncode == 2 and usage.stderr.startswith("usage: bash scripts/learn_subword.sh MERGES")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blank.txt").write_text("\n  \n")
    folder_named_txt = tmp_path / "odd"
    (folder_named_txt / "x.txt").mkdir(parents=True)
    output = tmp_path / "out" / "codes"
    for args, fragments in ((["ten", str(output), str(empty)], ["MERGES must be a positive integer"]),
                            (["100", str(output), str(tmp_path / "missing.txt")], ["input not found"]),
                            (["100", str(output), str(tmp_path)], ["no .txt files in folder"]),
                            (["100", str(output), str(empty)], ["no words in", "empty corpus"]),
                            (["100", str(output), str(folder_named_txt)], ["cannot read", "odd/x.txt"])):
        assert_one_line_error(run("bash", "scripts/learn_subword.sh", *args), *fragments)
        assert files_under(output.parent) == []


def test_apply_bpe_encoding_command(corpus_and_codes, tmp_path):
    (root, tokenized, _), codes = corpus_and_codes
    output, vocab_path = tmp_path / "bpe", tmp_path / "vocab.txt"
    result = run(PYTHON, "apply_bpe_encoding.py", "--codes", str(codes), "--src_folder", str(tokenized),
                 "--output_folder", str(output), "--prefix", "bpe", "--vocab_path", str(vocab_path),
                 "--processes", "2")
    assert result.returncode == 0, result.stderr
    assert files_under(output) == ["bpe.dialogue.txt", "bpe.news.txt", "bpe.valid.txt"]
    counts = collections.Counter()
    for name in ("dialogue.txt", "news.txt", "valid.txt"):
        encoded = (output / f"bpe.{name}").read_bytes()
        assert encoded == subword_nmt_command(codes, tokenized / name, tmp_path / f"reference.{name}")
        counts.update(encoded.decode().split())
    vocab = Dictionary.load_from_persisted_dict(str(vocab_path))
    assert [vocab[i] for i in range(5)] == list(SPECIAL_SYMBOLS)
    assert len(vocab) % 8 == 0
    assert {vocab[i]: vocab.counts[i] for i in range(5, len(vocab)) if not vocab[i].startswith("madeupword")} \
        == dict(counts)
    assert vocab == Dictionary.from_counter(counts).pad_to_multiple(8)
    line = (output / "bpe.news.txt").read_text().split("\n")[0]
    assert vocab.decode(vocab.encode_line(line)) == line  # every subword of the output is in the vocabulary
    assert f"{sum(counts.values())} subwords, {len(counts)} distinct" in result.stdout

    # --threshold drops rare subwords; an empty prefix keeps the names; --pad_to_multiple 1 does not pad.
    result = run(PYTHON, "apply_bpe_encoding.py", "--codes", str(codes), "--src_folder", str(tokenized),
                 "--output_folder", str(tmp_path / "kept"), "--prefix", "", "--vocab_path", str(vocab_path),
                 "--threshold", "20", "--pad_to_multiple", "1")
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path / "kept") == ["dialogue.txt", "news.txt", "valid.txt"]
    shrunk = Dictionary.load_from_persisted_dict(str(vocab_path))
    assert shrunk.symbols[5:] == [s for s in Dictionary.from_counter(counts).symbols[5:] if counts[s] >= 20]
    assert min(shrunk.counts[5:]) >= 20 and len(shrunk) < len(vocab)


def test_gigaword_unk_is_one_token_through_tokenize_bpe_and_records(tmp_path):
    """The sample Gigaword (UNK in its test split, <unk> in train and valid, as the real corpus) through
    tokenize_corpus.py --map_token UNK=<unk>, learn_subword.sh, apply_bpe_encoding.py and gigaword.py: every unknown
    word is the one token <unk> in the text and the one id <unk> in the records, in every split."""
    import shutil

    from subword_nmt_reference import learn_codes

    from src.dictionary import UNK_ID
    from src.metrics import remove_bpe
    from src.records import read_records

    raw, tokenized, bpe, records = (tmp_path / name for name in ("raw", "tokenized", "bpe", "records"))
    shutil.copytree(os.path.join(REPO, "data", "sample", "gigaword"), raw, ignore=shutil.ignore_patterns("*.md"))
    names = sorted(os.listdir(raw))
    result = run(PYTHON, "tokenize_corpus.py", "--corpus_folder", str(raw), "--output_folder", str(tokenized),
                 "--map_token", "UNK=<unk>", "--pool_size", "1")
    assert result.returncode == 0 and "mapped=5" in result.stdout, result.stderr
    raw_unknown = {name: [line.split().count("UNK") + line.split().count("<unk>")
                          for line in (raw / name).read_text().splitlines()] for name in names}
    assert sum(map(sum, raw_unknown.values())) == 25  # 5 UNK in test, 20 <unk> in train and valid
    tokens = {name: (tokenized / name).read_text().splitlines() for name in names}
    assert {name: [line.split().count("<unk>") for line in lines] for name, lines in tokens.items()} == raw_unknown

    # learn_subword.sh leaves <unk> out of the merges: the codes of the text without it.
    codes = tmp_path / "codes"
    assert run("bash", "scripts/learn_subword.sh", "300", str(codes), str(tokenized)).returncode == 0
    without_unk = [" ".join(t for t in line.split(" ") if t != "<unk>") for name in names for line in tokens[name]]
    assert codes.read_text() == open(learn_codes(without_unk, 300, tmp_path / "expected.codes")).read()

    vocab_path = tmp_path / "vocab.txt"
    result = run(PYTHON, "apply_bpe_encoding.py", "--codes", str(codes), "--src_folder", str(tokenized),
                 "--output_folder", str(bpe), "--prefix", "", "--vocab_path", str(vocab_path))
    assert result.returncode == 0 and "glossaries: <unk>; mapped=0" in result.stdout, result.stderr
    encoded = {name: (bpe / name).read_text().splitlines() for name in names}
    for name in names:
        assert [remove_bpe(line) for line in encoded[name]] == tokens[name]
        assert [line.split().count("<unk>") for line in encoded[name]] == raw_unknown[name]
    # subword-nmt's default (no glossary) would cut it: these codes hold no merge that rebuilds <unk>.
    result = run(PYTHON, "apply_bpe_encoding.py", "--codes", str(codes), "--src_folder", str(tokenized),
                 "--output_folder", str(tmp_path / "cut"), "--vocab_path", str(tmp_path / "cut.txt"), "--glossaries")
    assert result.returncode == 0 and "glossaries: none" in result.stdout, result.stderr
    assert (tmp_path / "cut" / "bpe.test.title.txt").read_text().splitlines()[12].startswith("<@@ ")

    result = run(PYTHON, "gigaword.py", *[arg for split in ("train", "valid", "test") for side, name in
                                          (("src", "article"), ("ref", "title"))
                                          for arg in (f"--{split}_{side}", str(bpe / f"{split}.{name}.txt"))],
                 "--existed_vocab", str(vocab_path), "--output_folder", str(records), "--max_len", "128")
    assert result.returncode == 0, result.stderr
    vocab = Dictionary.load_from_persisted_dict(str(vocab_path))
    for split in ("valid", "test"):  # kept whole and in order (train drops none of the sample's pairs either)
        examples = read_records(str(records / f"gigaword_{split}.mindrecord"))
        for side, name in (("source_ids", "article"), ("target_ids", "title")):
            lines = encoded[f"{split}.{name}.txt"]
            assert [list(getattr(e, side)) for e in examples] == [list(vocab.encode_line(line)) for line in lines]
            assert [[i for i, token in enumerate(line.split()) if token == "<unk>"] for line in lines] == \
                [list(np.flatnonzero(getattr(e, side) == UNK_ID)) for e in examples]
    test = read_records(str(records / "gigaword_test.mindrecord"))
    assert sum(int((e.source_ids == UNK_ID).sum() + (e.target_ids == UNK_ID).sum()) for e in test) == 5


def test_apply_bpe_encoding_maps_tokens_of_pretokenized_text(sample_codes, tmp_path):
    """--map_token UNK=<unk> on Gigaword text tokenized elsewhere: the bytes of `subword-nmt apply-bpe --glossaries
    '<unk>'` on the text with every whole UNK token replaced."""
    source = tmp_path / "src"
    source.mkdir()
    raw = open(os.path.join(REPO, "data", "sample", "gigaword", "test.article.txt"), encoding="utf-8").read()
    (source / "test.article.txt").write_text(raw + "UNKs xUNK UNK\n")
    mapped = tmp_path / "mapped.txt"
    mapped.write_text(" ".join("<unk>" if t == "UNK" else t for t in raw.split(" ")).replace("UNK\n", "<unk>\n")
                      + "UNKs xUNK <unk>\n")
    assert mapped.read_text().split().count("<unk>") == 4 and "UNK" not in mapped.read_text().split()
    result = run(PYTHON, "apply_bpe_encoding.py", "--codes", str(sample_codes), "--src_folder", str(source),
                 "--output_folder", str(tmp_path / "bpe"), "--vocab_path", str(tmp_path / "vocab.txt"),
                 "--map_token", "UNK=<unk>")
    assert result.returncode == 0 and "mapped=4" in result.stdout, result.stderr
    assert (tmp_path / "bpe" / "bpe.test.article.txt").read_bytes() == subword_nmt_command(
        sample_codes, mapped, tmp_path / "reference.txt", ["<unk>"])
    result = run(PYTHON, "apply_bpe_encoding.py", "--codes", str(sample_codes), "--src_folder", str(source),
                 "--output_folder", str(tmp_path / "bad"), "--vocab_path", str(tmp_path / "bad.txt"),
                 "--map_token", "UNK")
    assert_one_line_error(result, "--map_token 'UNK': expected FROM=TO")
    assert files_under(tmp_path / "bad") == []


@pytest.fixture()
def apply_inputs(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("the first file is fine\n")
    (src / "b.txt").write_bytes(b"fine line\nbroken \xff line\n")
    return tmp_path


@pytest.mark.parametrize("case, fragments", [
    ("missing_codes", ["BPE codes file not found"]),
    ("text_as_codes", ["a.txt:1: expected a merge"]),
    ("malformed_line", ["bad.codes:4: expected a merge", "'t h e'"]),
    ("missing_src", ["corpus folder not found"]),
    ("empty_src", ["no .txt files in folder"]),
    ("unreadable_file", ["cannot read", "x.txt"]),
    ("invalid_utf8_input", ["b.txt:2: invalid UTF-8"]),
])
def test_apply_bpe_encoding_bad_input(apply_inputs, sample_codes, case, fragments):
    root = apply_inputs
    src = root / "src"
    codes_path = sample_codes
    if case == "missing_codes":
        codes_path = root / "no.codes"
    elif case == "text_as_codes":
        codes_path = src / "a.txt"
    elif case == "malformed_line":
        codes_path = root / "bad.codes"
        codes_path.write_text("#version: 0.2\nt h\ni n\nt h e\n")
    elif case == "missing_src":
        src = root / "nowhere"
    elif case == "empty_src":
        src = root / "empty"
        src.mkdir()
    elif case == "unreadable_file":
        (src / "x.txt").mkdir()
    if case != "invalid_utf8_input":
        (src / "b.txt").unlink(missing_ok=True)
    output, vocab_path = root / "out", root / "vocab.txt"
    result = run(PYTHON, "apply_bpe_encoding.py", "--codes", str(codes_path), "--src_folder", str(src),
                 "--output_folder", str(output), "--vocab_path", str(vocab_path))
    assert_one_line_error(result, *fragments)
    assert files_under(output) == [] and not vocab_path.exists()
