"""BPE apply (src/bpe.py) equals `subword-nmt apply-bpe` byte for byte, on the C++ path and on the subword-nmt
fallback; codes parsing; vocabulary counting; BPE removal.

Each comparison runs on codes learned from the bundled data/sample corpus (always) and from the real corpora
(skipped without ../shared/data)."""
import collections
import io
import re

import pytest
from conftest import shared_data
from subword_nmt_reference import (count_vocabulary, learn_codes, read_lines, sample_lines, subword_nmt_apply,
                                   subword_nmt_command)

from src.bpe import BpeApplier, apply_bpe_file, apply_bpe_files, count_subwords, load_bpe_codes, parse_bpe_codes
from src.dictionary import Dictionary
from src.errors import UserError
from src.metrics import remove_bpe


def joined(lines):
    return "".join(line + "\n" for line in lines)


@pytest.fixture(scope="module")
def sample_bpe(tmp_path_factory):
    """800 merges learned by subword-nmt on data/sample; held-out tokenized lines (plain: single spaces, "\\n"
    ends) and raw dialogue lines (a few double spaces, curly apostrophes)."""
    folder = tmp_path_factory.mktemp("sample_bpe")
    codes_path = learn_codes(sample_lines("gigaword", "train.article.txt") + sample_lines("news", "news.txt")
                             + sample_lines("dialog", "train.src.txt"), 800, folder / "codes")
    plain = [line for split in ("train", "valid", "test") for name in ("article", "title")
             for line in sample_lines("gigaword", f"{split}.{name}.txt")] + sample_lines("news", "news.txt")
    dialogue = [line for split in ("train", "valid", "test") for side in ("src", "tgt")
                for line in sample_lines("dialog", f"{split}.{side}.txt")]
    assert any("  " in line for line in dialogue)
    return codes_path, joined(plain), joined(plain + dialogue)


@pytest.fixture(scope="module")
def real_bpe(tmp_path_factory):
    """3,000 merges learned by subword-nmt on 5,000 real tokenized sentences; >= 10,000 test sentences."""
    articles = read_lines(shared_data("gigaword", "train.article.txt"))
    codes_path = learn_codes(articles[:5000], 3000, tmp_path_factory.mktemp("real_bpe") / "codes")
    # Articles (PTB-tokenized) and raw dialogue lines (curly quotes, double spaces, other languages' letters,
    # a U+0085 that ends a line for subword-nmt).
    plain = articles[5000:10000] + read_lines(shared_data("gigaword", "extra.article.txt"), 4000)
    dialogue = read_lines(shared_data("cornell", "valid.src.txt"), 2000)
    return codes_path, joined(plain), joined(plain + dialogue)


@pytest.fixture(scope="module", params=["sample", "real"])
def bpe_setup(request):
    """(codes path, plain text, plain text + dialogue)."""
    return request.getfixturevalue(f"{request.param}_bpe")


@pytest.fixture(params=["native", "subword_nmt"])
def bpe_path(request, monkeypatch):
    """Each BPE test runs on the C++ path (src/kernels/bpe.cc) and on the subword-nmt fallback alone."""
    from src.kernels import bpe_library
    if request.param == "native" and bpe_library() is None:
        pytest.skip("no C++ compiler")
    if request.param == "subword_nmt":
        monkeypatch.setenv("MASS_STOCK_KERNELS", "1")
    return request.param


def assert_path(applier, bpe_path, all_native):
    """The applier ran on `bpe_path`: with the C++ code, subword-nmt was never needed when `all_native`."""
    if bpe_path == "native":
        assert applier._native is not None
        assert (applier._reference is None) == all_native
    else:
        assert applier._native is None and applier._reference is not None


def test_bpe_equals_subword_nmt(bpe_setup, tmp_path, bpe_path):
    codes_path, plain, text = bpe_setup
    expected = subword_nmt_apply(codes_path, text)
    assert expected.count("@@ ") > 1000 and expected.count("\n") == text.count("\n")
    expected_plain = "".join(expected.splitlines(True)[:plain.count("\n")])
    # Tokenized text alone is plain: the C++ code encodes it whole.
    applier = BpeApplier(load_bpe_codes(codes_path))
    assert applier.apply_bytes(plain.encode()).decode() == expected_plain
    assert_path(applier, bpe_path, all_native=True)
    # With the dialogue lines (double spaces): line by line, subword-nmt for the lines the C++ code leaves.
    applier = BpeApplier(load_bpe_codes(codes_path))
    assert applier.apply_bytes(text.encode()).decode() == expected
    assert_path(applier, bpe_path, all_native=False)
    # And through files: one block, and many blocks on two processes, with the vocabulary of the output.
    source, target = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text(text)
    apply_bpe_file(load_bpe_codes(codes_path), str(source), str(target))
    assert target.read_text() == expected
    counts, lines = apply_bpe_files(load_bpe_codes(codes_path), [str(source)], [str(target)], processes=2,
                                    progress=False, block_bytes=len(text) // 10)
    assert target.read_text() == expected
    assert lines == text.count("\n")
    assert counts == count_vocabulary(expected.split("\n"))


def test_bpe_equals_subword_nmt_with_version_0_1_codes(bpe_setup, tmp_path, bpe_path):
    codes_path, plain, _ = bpe_setup
    old_codes = tmp_path / "codes.v01"
    with open(codes_path, encoding="utf-8") as handle:
        old_codes.write_text("".join(handle.readlines()[1:]))  # no "#version" line: subword-nmt reads 0.1
    plain = "".join(plain.splitlines(True)[:3000])
    codes = load_bpe_codes(str(old_codes))
    assert codes.version == (0, 1)
    applier = BpeApplier(codes)
    assert applier.apply_bytes(plain.encode()).decode() == subword_nmt_apply(str(old_codes), plain)
    assert_path(applier, bpe_path, all_native=True)


UNUSUAL_TEXT = ("\n  \n   leading and trailing   \nin  the  middle\ttab\r\nlone\rcarriage\x0cform\x1cfeed"
                "\x85next\u2028line\u2029para\n</w> a</w>b x</w> @@ @@@ q \ufeffbom 日本語 ✓\n\n"
                "single a b c . , 1\nno newline at the end ")


@pytest.mark.parametrize("version_line", ["#version: 0.2\n", ""])
def test_bpe_equals_subword_nmt_command_on_unusual_text(bpe_setup, tmp_path, version_line, bpe_path):
    """Empty and white-space lines, every line end str.splitlines knows, "</w>" spelled in words: the same
    bytes as the `subword-nmt apply-bpe` command."""
    codes_path, plain, _ = bpe_setup
    codes = tmp_path / "codes"
    with open(codes_path, encoding="utf-8") as handle:
        codes.write_text(version_line + "".join(handle.readlines()[1:]))
    source = tmp_path / "unusual.txt"
    source.write_bytes((UNUSUAL_TEXT + "\n" + "".join(plain.splitlines(True)[:200]) + UNUSUAL_TEXT).encode())
    expected = subword_nmt_command(codes, source, tmp_path / "expected.txt")
    target = tmp_path / "ours.txt"
    apply_bpe_file(load_bpe_codes(str(codes)), str(source), str(target))
    assert target.read_bytes() == expected
    assert b"\r\n" in expected and b"\n\n" in expected and b"@@ " in expected


def test_bpe_merge_order_rules_match_subword_nmt(bpe_path):
    """Hand-made codes: duplicates (first wins), overlapping pairs (x x x -> xx x), a merge whose
    result makes a pair ranked earlier than itself, a merge of "</w>" itself (version 0.1)."""
    from subword_nmt.apply_bpe import BPE

    def encode(codes_text, word):
        return BpeApplier(parse_bpe_codes(codes_text)).apply_bytes(word.encode()).decode()

    # All occurrences of the best pair merge before the pair "ab a" they create is considered:
    # merging one occurrence at a time would give "aba@@ b@@ x".
    assert encode("#version: 0.2\nab a\na b\n", "ababx") == "ab@@ ab@@ x"
    assert encode("#version: 0.2\nx x\n", "xxxxxy") == "xx@@ xx@@ x@@ y"
    words = ["xxxx", "xxx", "xxxxx", "abc", "abcab", "aab", "b", "ba", "xyx", "cab", "abab", "xxab"]
    for codes_text in ("#version: 0.2\nx x\nb c</w>\na b\nab c</w>\nxx x\nx x\nc ab</w>\na ab\nab ab</w>\n",
                       "b </w>\nx x\na b\nxx xx\nab </w>\nc a\nca b</w>\nx </w>\n"):
        reference = BPE(io.StringIO(codes_text))
        applier = BpeApplier(parse_bpe_codes(codes_text))
        line = " ".join(words) + "\n"
        assert applier.apply_bytes(line.encode()).decode() == reference.process_line(line)
        assert_path(applier, bpe_path, all_native=True)
        for word in words:
            assert encode(codes_text, word) == reference.process_line(word)


@pytest.mark.parametrize("version_line", ["#version: 0.2\n", ""])
def test_bpe_word_edges_equal_subword_nmt(bpe_setup, version_line, bpe_path):
    """Words of 1 to 90 bytes around the C++ cache's 64-byte cut-point mask, multi-byte characters across it,
    "@@" and "</w>" inside words, empty lines, a text without a final newline; several blocks on one applier."""
    from subword_nmt.apply_bpe import BPE
    codes_path, plain, _ = bpe_setup
    with open(codes_path, encoding="utf-8") as handle:
        codes_text = version_line + "".join(handle.readlines()[1:])
    reference = BPE(io.StringIO(codes_text))
    lines = plain.splitlines(True)[:300]
    long_words = [("abcdefghijklmnopqrstuvwxyz" * 4)[:size] for size in (7, 8, 9, 15, 16, 17, 63, 64, 65, 90)]
    long_words += ["日本語のテキスト", "naïveté" * 3, "x" * 70 + "é", "é" * 40]
    long_words += ["@@", "a@@", "@@b", "ab@@cd"]
    text = "".join(lines[:100]) + "\n" + " ".join(long_words) + "\n\n" + "".join(lines[100:])
    applier = BpeApplier(parse_bpe_codes(codes_text))
    for block in (text, text[:-1], " ".join(reversed(long_words)) + "\n"):
        expected = "".join(reference.process_line(line) for line in block.splitlines(True))
        assert applier.apply_bytes(block.encode()).decode() == expected
    assert_path(applier, bpe_path, all_native=True)
    weird = "a</w>b x</w> </w> tab\there q\n" + "".join(lines[:20])
    expected = "".join(reference.process_line(line) for line in weird.splitlines(True))
    applier = BpeApplier(parse_bpe_codes(codes_text))
    assert applier.apply_bytes(weird.encode()).decode() == expected
    assert_path(applier, bpe_path, all_native=False)  # words spelling "</w>": subword-nmt


# <unk> whole, glued to words on either side, twice in a word, beside "@@", among double spaces and CRLF, alone.
GLOSSARY_TEXT = ("the <unk> said\n<unk>\na<unk>b <unk><unk> x<unk> <unk>y <unk>@@ @@<unk>\n  <unk>  double <unk> \r\n"
                 "<unk> ended\n")


def test_glossary_unk_equals_subword_nmt_and_stays_whole(bpe_setup, tmp_path, bpe_path):
    """With the glossary <unk>, both paths give the bytes of `subword-nmt apply-bpe --glossaries '<unk>'`: a whole
    <unk> stays one subword, one glued to a word is cut out of it, and the lines without it are unchanged."""
    codes_path, plain, _ = bpe_setup
    text = "".join(plain.splitlines(True)[:300]) + GLOSSARY_TEXT + "".join(plain.splitlines(True)[300:400])
    without = subword_nmt_apply(codes_path, text)
    expected = subword_nmt_apply(codes_path, text, glossaries=["<unk>"])
    applier = BpeApplier(load_bpe_codes(codes_path), glossaries=("<unk>",))
    assert applier.apply_bytes(text.encode()).decode() == expected
    assert_path(applier, bpe_path, all_native=False)  # the lines holding <unk>: subword-nmt
    encoded = expected.splitlines()[300:306]
    assert encoded[:2] == ["the <unk> said", "<unk>"]
    # Single characters merge with nothing: these cuts hold for any codes.
    assert encoded[2].startswith("a@@ <unk>@@ b <unk>@@ <unk> x@@ <unk> <unk>@@ y ")
    assert encoded[3].startswith("  <unk> ") and encoded[3].endswith(" <unk> ") and encoded[4].startswith("<unk> ")
    for line, out in zip(text.splitlines(), expected.splitlines()):
        if line.split().count("<unk>") == line.count("<unk>"):  # every <unk> a word of its own
            assert out.split().count("<unk>") == line.count("<unk>")
    assert "<@@ " in without  # without the glossary, these codes cut some <unk>
    assert all(a == b for a, b in zip(expected.splitlines(True), without.splitlines(True)) if "<unk>" not in a)
    source, target = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text(text)
    assert subword_nmt_command(codes_path, source, tmp_path / "reference.txt", ["<unk>"]) == expected.encode()
    counts, _ = apply_bpe_files(load_bpe_codes(codes_path), [str(source)], [str(target)], processes=2,
                                progress=False, block_bytes=len(text) // 7, glossaries=("<unk>",))
    assert target.read_bytes() == expected.encode() and counts == count_vocabulary(expected.split("\n"))


def test_token_map_before_bpe(sample_bpe, tmp_path, bpe_path):
    """apply_bpe_files' token_map replaces whole white-space separated tokens only (UNK, not UNKs or xUNK) before
    BPE, counting them; the result is subword-nmt's on the mapped text."""
    codes_path, plain, _ = sample_bpe
    lines = plain.splitlines(True)[:50]
    text = "".join(lines[:25]) + "UNK said UNKs xUNK UNK-b\n  UNK\tUNK \r\nUNK\n" + "".join(lines[25:])
    mapped = "".join(lines[:25]) + "<unk> said UNKs xUNK UNK-b\n  <unk>\t<unk> \r\n<unk>\n" + "".join(lines[25:])
    source, target = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text(text)
    stats = collections.Counter()
    apply_bpe_files(load_bpe_codes(codes_path), [str(source)], [str(target)], progress=False, glossaries=("<unk>",),
                    token_map={"UNK": "<unk>"}, stats=stats)
    assert stats["mapped"] == 4
    assert target.read_bytes() == subword_nmt_apply(codes_path, mapped, glossaries=["<unk>"]).encode()
    assert target.read_text().splitlines()[25].startswith("<unk> said U@@ N@@ K@@ s ")


def test_invalid_utf8_names_file_and_line(sample_bpe, tmp_path, bpe_path):
    """Invalid UTF-8 after a line the C++ code leaves to subword-nmt, in the second block of a file: a
    UserError naming the file and line, and no output."""
    codes_path, plain, _ = sample_bpe
    lines = plain.encode().splitlines(True)[:40]
    source = tmp_path / "in.txt"
    source.write_bytes(b"".join(lines[:30]) + b"two  spaces\n" + b"bad \xe9 byte\n" + b"".join(lines[30:]))
    target = tmp_path / "out" / "in.txt"
    with pytest.raises(UserError, match=rf"^{re.escape(str(source))}:32: invalid UTF-8 \(byte 0xe9\)"):
        apply_bpe_files(load_bpe_codes(codes_path), [str(source)], [str(target)], progress=False,
                        block_bytes=sum(map(len, lines[:20])))
    assert not target.parent.exists() or not list(target.parent.iterdir())


def test_codes_text_reads_back_in_subword_nmt():
    """The fallback builds subword-nmt's BPE from BpeCodes.text(): same merges in the same order."""
    from subword_nmt.apply_bpe import BPE
    for codes_text in ("#version: 0.2\nt h\nth e</w>\nt h\na\rb c\n", "b </w>\nx x\nb </w>\n"):
        codes = parse_bpe_codes(codes_text)
        ours, theirs = BPE(io.StringIO(codes.text())), BPE(io.StringIO(codes_text))
        assert ours.version == theirs.version == codes.version
        assert sorted(ours.bpe_codes, key=ours.bpe_codes.get) == sorted(theirs.bpe_codes, key=theirs.bpe_codes.get)


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
    codes_path, plain, _ = bpe_setup
    lines = plain.split("\n")[:5000]  # tokenized text: single spaces, no "@@" of its own
    encoded = BpeApplier(load_bpe_codes(codes_path)).apply_bytes("\n".join(lines).encode()).decode().split("\n")
    assert sum(line.count("@@ ") for line in encoded) > 1000
    assert [remove_bpe(line) for line in encoded] == lines
    assert remove_bpe("un@@ believ@@ able news\n") == "unbelievable news"
    assert remove_bpe("a dangling@@") == "a dangling"


def test_count_subwords_splits_at_any_white_space():
    text = "a b@@ c\na  a\tc\n\n x\x85y\u00a0z\u3000b@@ \x1cc\r\n"
    assert count_subwords(text.encode()) == count_vocabulary([text])
    assert count_subwords(text.encode()) == collections.Counter({"a": 3, "c": 3, "b@@": 2, "x": 1, "y": 1, "z": 1})


def test_vocabulary_counts_and_round_trip(tmp_path):
    counts = count_subwords("a b@@ c\na  a\tc\n".encode())
    assert counts == collections.Counter({"a": 3, "c": 2, "b@@": 1})
    vocab = Dictionary.from_counter(counts)
    assert [vocab[i] for i in range(len(vocab))] == ["<pad>", "<s>", "</s>", "<unk>", "<mask>", "a", "c", "b@@"]
    path = tmp_path / "vocab.txt"
    vocab.persistence(str(path))
    assert Dictionary.load_from_persisted_dict(str(path)) == vocab
