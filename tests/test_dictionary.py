"""Dictionary: fixed special ids, exact plain-text round trip, shrink, padding, classic API."""
import collections

import numpy as np
import pytest

from src import Dictionary
from src.dictionary import SPECIAL_SYMBOLS
from src.errors import UserError


def sample_vocab():
    return Dictionary.from_counter(collections.Counter("the cat sat on the mat the end".split()))


def test_special_ids_are_fixed():
    vocab = sample_vocab()
    assert [vocab[i] for i in range(5)] == ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]
    assert (vocab.pad_index, vocab.bos_index, vocab.eos_index, vocab.unk_index, vocab.mask_index) == (0, 1, 2, 3, 4)
    assert vocab.index("<mask>") == 4 and vocab.index("never-seen") == 3


def test_frequency_order_and_encoding():
    vocab = sample_vocab()
    # "the" is most frequent; ties are broken alphabetically.
    assert vocab.symbols[5:] == ["the", "cat", "end", "mat", "on", "sat"]
    np.testing.assert_array_equal(vocab.encode_line("the cat xyz"), [5, 6, 3, 2])
    assert vocab.encode_line("the cat").dtype == np.int32
    assert vocab.decode([5, 6, 2, 7]) == "the cat"


def test_persisted_file_round_trips_exactly(tmp_path):
    vocab = sample_vocab().pad_to_multiple(8)
    assert len(vocab) == 16 and vocab[15] == "madeupword0004"
    path = tmp_path / "vocab.txt"
    vocab.persistence(path)
    text = path.read_text()
    assert text.splitlines()[:6] == ["<pad> 0", "<s> 0", "</s> 0", "<unk> 0", "<mask> 0", "the 3"]
    loaded = Dictionary.load_from_persisted_dict(path)
    assert loaded == vocab and loaded.checksum() == vocab.checksum()
    loaded.persistence(tmp_path / "again.txt")
    assert (tmp_path / "again.txt").read_bytes() == path.read_bytes()


def test_load_from_text_and_shrink(tmp_path):
    (tmp_path / "a.txt").write_text("low 5\nlow@@ 2\nest 1\n")
    (tmp_path / "b.txt").write_text("est 4\n")
    vocab = Dictionary.load_from_text([tmp_path / "a.txt", tmp_path / "b.txt"])
    assert vocab.symbols[5:] == ["est", "low", "low@@"] and vocab.counts[5:] == [5, 5, 2]
    shrunk = vocab.shrink(3)
    assert shrunk.symbols == list(SPECIAL_SYMBOLS) + ["est", "low"]
    assert len(vocab) == 8  # shrink returns a new vocabulary


@pytest.mark.parametrize("content, message", [
    ("<pad> 0\n<s> 0\n</s> 0\n<unk> 0\n", "must start with"),
    ("<pad> 0\n<s> 0\n</s> 0\n<unk> 0\n<mask> 0\nword x\n", ":6: expected 'symbol count'"),
    ("<pad> 0\n<s> 0\n</s> 0\n<unk> 0\n<mask> 0\nword 1\nword 2\n", ":7: duplicate symbol 'word'"),
])
def test_bad_persisted_files(tmp_path, content, message):
    path = tmp_path / "vocab.txt"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        Dictionary.load_from_persisted_dict(path)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(UserError, match="vocabulary file not found"):
        Dictionary.load_from_persisted_dict(tmp_path / "nope.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe 1\n")
    with pytest.raises(UserError, match="not valid UTF-8"):
        Dictionary.load_from_text(tmp_path / "bin.txt")
