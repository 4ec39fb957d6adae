"""Dictionary: fixed special ids, exact plain-text round trip, padding, classic API; the one vocabulary builder and
the one "vocabulary fits the model" check."""
import collections

import numpy as np
import pytest

from src import Dictionary
from src.dictionary import SPECIAL_SYMBOLS, build_vocabulary, check_vocabulary_fits
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


def test_build_vocabulary_threshold_order_and_padding():
    counts = collections.Counter({"low": 5, "est": 5, "low@@": 2, "er": 1, "<unk>": 9, "</s>": 3})
    vocab = build_vocabulary(counts)
    # Special symbols keep ids 0-4 whatever the counts say; ties are broken by symbol; padded to 8 by default.
    assert vocab.symbols[:9] == list(SPECIAL_SYMBOLS) + ["est", "low", "low@@", "er"]
    assert vocab.counts[5:9] == [5, 5, 2, 1] and len(vocab) == 16 and vocab[9] == "madeupword0000"
    assert vocab == Dictionary.from_counter(counts).pad_to_multiple(8)
    shrunk = build_vocabulary(counts, threshold=3, pad_to_multiple=1)
    assert shrunk.symbols == list(SPECIAL_SYMBOLS) + ["est", "low"]


def test_build_vocabulary_keeps_corpus_symbols_named_like_fillers():
    vocab = build_vocabulary({"madeupword0000": 2, "word": 1}, pad_to_multiple=4)
    # The corpus symbol keeps its id and count; the fillers skip its name.
    assert vocab.symbols[5:] == ["madeupword0000", "word", "madeupword0001"] and vocab.counts[5:] == [2, 1, 0]


def test_build_vocabulary_rejects_bad_options():
    with pytest.raises(UserError, match="threshold >= 0 and pad_to_multiple >= 1"):
        build_vocabulary({"a": 1}, threshold=-1)
    with pytest.raises(UserError, match="threshold >= 0 and pad_to_multiple >= 1"):
        build_vocabulary({"a": 1}, pad_to_multiple=0)


def test_vocabulary_fits_the_model_check():
    vocab = sample_vocab().pad_to_multiple(8)
    check_vocabulary_fits(vocab, "run/vocab.txt", 16)
    check_vocabulary_fits(vocab, "run/vocab.txt", 64)  # spare model rows are allowed
    with pytest.raises(UserError) as error:
        check_vocabulary_fits(vocab, "run/vocab.txt", 12)
    assert str(error.value) == ("vocabulary run/vocab.txt has 16 symbols but model_config.vocab_size is 12: "
                                "expected model_config.vocab_size >= 16")


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
        Dictionary.load_from_persisted_dict(tmp_path / "bin.txt")
