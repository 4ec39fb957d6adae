import os

import numpy as np
import pytest

from src import records
from src.dataset import iterate_batches, load_dataset
from src.dictionary import EOS_ID
from src.errors import UserError
from src.masking import make_pair_example, mass_mask
from src.records import read_records, resolve_shards, write_records

VOCAB_SIZE = 64


def make_examples(count, seed=0):
    rng = np.random.default_rng(seed)
    examples = []
    for index in range(count):
        sentence = np.concatenate((rng.integers(5, VOCAB_SIZE, 1 + index % 23), [EOS_ID])).astype(np.int32)
        if index % 3 == 2:
            target = np.concatenate((rng.integers(5, VOCAB_SIZE, 1 + index % 5), [EOS_ID])).astype(np.int32)
            examples.append(make_pair_example(sentence, target, rng=rng, noise_prob=0.3))
        else:
            examples.append(mass_mask(sentence, rng, 0.5, VOCAB_SIZE))
    return examples


def same_examples(left, right):
    return len(left) == len(right) and all(a.equals(b) for a, b in zip(left, right))


def folder_bytes(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


@pytest.mark.parametrize("format", ["mindrecord", "tfrecord"])
def test_round_trip_gives_identical_examples_and_batches(tmp_path, format):
    examples = make_examples(50)
    path = str(tmp_path / f"set.{format}")
    assert write_records(path, examples, vocab_size=VOCAB_SIZE) == [path]
    back = read_records(path)
    assert same_examples(back, examples)
    assert back[0].source_ids.dtype == np.int32 and isinstance(back[0].source_length, int)
    options = dict(batch_size=4, bucket_boundaries=[8, 16], shuffle=True, seed=3, epoch=1)
    for mine, theirs in zip(iterate_batches(examples, **options), iterate_batches(back, **options)):
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert np.array_equal(mine[key], theirs[key]) and mine[key].dtype == np.int32


@pytest.mark.parametrize("format", ["mindrecord", "tfrecord"])
def test_shards_lose_and_duplicate_nothing(tmp_path, format):
    examples = make_examples(10)
    path = str(tmp_path / f"set.{format}")
    paths = write_records(path, examples, num_shards=3)
    assert paths == [path + "0", path + "1", path + "2"]
    per_shard = [read_records(p) for p in paths if not p.endswith("0")]
    # A shard named explicitly (not the first) reads alone; the first shard names the whole set.
    assert [len(s) for s in per_shard] == [3, 4]
    assert same_examples(read_records(paths[0]), examples)
    assert same_examples(read_records(path), examples)  # the base name finds PATH0.. as well
    expected = sorted(os.path.basename(p) + suffix for p in paths
                      for suffix in (("", ".db") if format == "mindrecord" else ("",)))
    assert sorted(os.listdir(tmp_path)) == expected
    # Rewriting with fewer shards removes the old shards instead of leaving them to be read.
    write_records(path, examples[:4], num_shards=2)
    assert same_examples(read_records(path), examples[:4])
    assert len(os.listdir(tmp_path)) == (4 if format == "mindrecord" else 2)


def test_mindspore_reads_the_shard_files_directly(tmp_path):
    import mindspore.dataset as ds
    examples = make_examples(9)
    paths = write_records(str(tmp_path / "set.mindrecord"), examples, num_shards=3)
    rows = list(ds.MindDataset(paths, shuffle=False).create_dict_iterator(output_numpy=True))
    assert [r["target_ids"].tolist() for r in rows] == [e.target_ids.tolist() for e in examples]


def test_same_input_same_bytes_and_parallel_shard_writing(tmp_path):
    examples = make_examples(40)
    for format in ("mindrecord", "tfrecord"):
        write_records(str(tmp_path / "a" / f"set.{format}"), examples, num_shards=3)
        write_records(str(tmp_path / "b" / f"set.{format}"), make_examples(40), num_shards=3, processes=2)
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")


def test_failed_write_leaves_no_output(tmp_path, monkeypatch):
    examples = make_examples(10)
    original = records._SHARD_WRITERS["tfrecord"]

    def fail_on_last_shard(path, shard_examples):
        original(path, shard_examples)  # the shard is on disk (in the temporary folder) when the failure hits
        if path.endswith("2"):
            raise OSError("disk full")

    monkeypatch.setitem(records._SHARD_WRITERS, "tfrecord", fail_on_last_shard)
    with pytest.raises(OSError):
        write_records(str(tmp_path / "set.tfrecord"), examples, num_shards=3)
    assert os.listdir(tmp_path) == []


def test_token_id_beyond_vocabulary_is_a_one_line_error(tmp_path):
    examples = make_examples(5)
    examples[3].target_ids[0] = VOCAB_SIZE + 7
    with pytest.raises(UserError) as error:
        write_records(str(tmp_path / "set.mindrecord"), examples, vocab_size=VOCAB_SIZE)
    message = str(error.value)
    assert "\n" not in message and "example 3" in message and "target_ids" in message and str(VOCAB_SIZE + 7) in message
    assert os.listdir(tmp_path) == []


def test_bad_paths_and_formats(tmp_path):
    with pytest.raises(UserError, match="record file not found"):
        read_records(str(tmp_path / "missing.mindrecord"))
    (tmp_path / "data.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="cannot tell the record format"):
        read_records(str(tmp_path / "data.bin"))
    (tmp_path / "junk.tfrecord").write_bytes(b"not a tfrecord file at all")
    with pytest.raises(UserError, match="cannot read"):
        read_records(str(tmp_path / "junk.tfrecord"))
    with pytest.raises(UserError, match="no examples"):
        write_records(str(tmp_path / "empty.tfrecord"), [])
    with pytest.raises(UserError, match="cannot split 2 examples into 3 shards"):
        write_records(str(tmp_path / "few.tfrecord"), make_examples(2), num_shards=3)


def test_load_dataset_concatenates_a_comma_separated_list(tmp_path):
    first, second = make_examples(6, seed=1), make_examples(4, seed=2)
    write_records(str(tmp_path / "a.mindrecord"), first, num_shards=2)
    write_records(str(tmp_path / "b.tfrecord"), second)
    loaded = load_dataset(f"{tmp_path / 'a.mindrecord0'}, {tmp_path / 'b.tfrecord'}")
    assert same_examples(loaded, first + second)
    assert resolve_shards(str(tmp_path / "a.mindrecord")) == [str(tmp_path / "a.mindrecord0"),
                                                               str(tmp_path / "a.mindrecord1")]
