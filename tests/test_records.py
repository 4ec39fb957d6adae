import os
import shutil
import struct
import sys

import numpy as np
import pytest

from src import records
from src.dataset import iterate_batches, load_dataset
from src.dictionary import EOS_ID
from src.errors import UserError, process_alive
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
    with pytest.raises(UserError, match="truncated or corrupt tfrecord file"):
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


# ----------------------------------------------------------------------------------------------------------------
# Damaged record files: one line naming the file and what was expected, before MindSpore reads anything
# ----------------------------------------------------------------------------------------------------------------

def damaged_copy(source, target, keep=None, data=None):
    """TARGET (with SOURCE's .db for MindRecord, under TARGET's name) holding SOURCE's first `keep` bytes or `data`."""
    content = open(source, "rb").read()
    with open(target, "wb") as handle:
        handle.write(data if data is not None else content[:keep])
    if os.path.exists(source + ".db"):
        shutil.copyfile(source + ".db", target + ".db")
    return target


def one_line_error(path, *fragments):
    with pytest.raises(UserError) as error:
        read_records(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(path), message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A 300-example set in each format (3 MindRecord pages) and a 2-shard MindRecord set, written once."""
    folder = tmp_path_factory.mktemp("written")
    examples = make_examples(300)
    for format in ("mindrecord", "tfrecord"):
        write_records(str(folder / f"set.{format}"), examples)
    write_records(str(folder / "shards.mindrecord"), examples, num_shards=2)
    return folder, examples


def test_truncated_mindrecord_files_are_named_as_such(written, tmp_path):
    folder, _ = written
    good = str(folder / "set.mindrecord")
    size = os.path.getsize(good)
    # A MindRecord file copied under another name cannot keep its .db (the index names its file): renamed back.
    for keep, fragment in ((size // 3, f"expected {size} bytes from its header"),
                           (size - 1, f"expected {size} bytes from its header: a 32768-byte header and 3 pages of up "
                                      f"to 32768 bytes; found {size - 1})"),
                           (500, "500 bytes, whose first 8 give a header length of"),
                           (5, "5 bytes; expected an 8-byte header length"), (0, "0 bytes")):
        shutil.rmtree(tmp_path / "cut", ignore_errors=True)
        os.makedirs(tmp_path / "cut")
        path = damaged_copy(good, str(tmp_path / "cut" / "set.mindrecord"), keep=keep)
        one_line_error(path, "truncated or corrupt mindrecord file", fragment)


def test_garbage_mindrecord_and_damaged_or_missing_index(written, tmp_path):
    folder, examples = written
    good = str(folder / "set.mindrecord")
    garbage = damaged_copy(good, str(tmp_path / "set.mindrecord"), data=np.random.default_rng(0).bytes(5000))
    one_line_error(garbage, "truncated or corrupt mindrecord file", "expected an 8-byte header length")
    header = open(good, "rb").read()
    not_json = header[:8] + b"{" * struct.unpack("<Q", header[:8])[0] + header[8 + struct.unpack("<Q", header[:8])[0]:]
    damaged_copy(good, garbage, data=not_json)
    one_line_error(garbage, "the header is not MindRecord's JSON header")

    os.makedirs(tmp_path / "index")
    path = str(tmp_path / "index" / "set.mindrecord")
    shutil.copyfile(good, path)
    one_line_error(path, f"its MindRecord index {path}.db is missing")
    index = open(good + ".db", "rb").read()
    for damaged in (index[:len(index) // 2], b"", b"SQLite format 3\0" + b"\xff" * 200):
        with open(path + ".db", "wb") as handle:
            handle.write(damaged)
        with pytest.raises(UserError) as error:
            read_records(path)
        assert str(error.value).startswith(f"{path}.db: truncated or corrupt MindRecord index file"), error.value
    renamed = damaged_copy(good, str(tmp_path / "index" / "renamed.mindrecord"), data=open(good, "rb").read())
    with pytest.raises(UserError, match="the MindRecord index of set.mindrecord, not of renamed.mindrecord"):
        read_records(renamed)
    # The .db of another write under the same name.
    os.makedirs(tmp_path / "mixed")
    mixed = str(tmp_path / "mixed" / "set.mindrecord")
    write_records(mixed, examples[:200])
    shutil.copyfile(good + ".db", mixed + ".db")
    one_line_error(mixed, f"expected the 200 rows its header lists in its index {mixed}.db, found 300")
    # One damaged shard of a set is named as the culprit.
    os.makedirs(tmp_path / "shards")
    for name in os.listdir(folder):
        if name.startswith("shards."):
            shutil.copyfile(folder / name, tmp_path / "shards" / name)
    second = str(tmp_path / "shards" / "shards.mindrecord1")
    damaged_copy(str(folder / "shards.mindrecord1"), second, keep=os.path.getsize(second) - 10)
    with pytest.raises(UserError) as error:
        read_records(str(tmp_path / "shards" / "shards.mindrecord"))
    assert str(error.value).startswith(f"{second}: truncated or corrupt mindrecord file")
    assert same_examples(read_records(str(folder / "shards.mindrecord")), examples)


def test_truncated_garbage_and_flipped_tfrecord_files(written, tmp_path):
    folder, _ = written
    good = str(folder / "set.tfrecord")
    content = open(good, "rb").read()
    first_length = struct.unpack("<Q", content[:8])[0]
    path = str(tmp_path / "set.tfrecord")
    damaged_copy(good, path, keep=len(content) // 3)
    one_line_error(path, "truncated or corrupt tfrecord file", "bytes left, expected", "data bytes and a 4-byte checksum")
    damaged_copy(good, path, keep=first_length + 16 + 7)  # 7 bytes into the second record's length
    one_line_error(path, f"record 1 at byte {first_length + 16}: 7 bytes left, expected a 12-byte length")
    damaged_copy(good, path, data=np.random.default_rng(1).bytes(5000))
    one_line_error(path, "record 0 at byte 0: the length checksum does not match",
                   "expected records of an 8-byte length")
    flipped = bytearray(content)
    flipped[first_length + 16 + 12 + 3] ^= 0x10  # a bit of the second record's data
    damaged_copy(good, path, data=bytes(flipped))
    one_line_error(path, f"record 1 at byte {first_length + 16}: the data checksum does not match")
    damaged_copy(good, path, data=b"")
    one_line_error(path, "0 bytes; expected records")


def test_the_tfrecord_check_agrees_with_the_writers_checksum():
    from tfrecord.writer import TFRecordWriter
    for data in (b"", b"a", struct.pack("<Q", 123456), bytes(range(256)) * 3):
        assert struct.pack("<I", records._masked_crc32c(data)) == TFRecordWriter.masked_crc(data)


def test_mindspore_messages_are_cut_to_their_informative_line():
    error = RuntimeError("Exception thrown from dataset pipeline. Refer to 'Dataset Pipeline Error Message'. \n\n"
                         "------------------------------------------------------------------\n"
                         "- Dataset Pipeline Error Message: \n"
                         "------------------------------------------------------------------\n"
                         "[ERROR] Invalid columns_list, tfrecord file failed to find column name: sentence_ids\n\n"
                         "------------------------------------------------------------------\n"
                         "- C++ Call Stack: (For framework developers) \n"
                         "mindspore/ccsrc/minddata/dataset/data_source/tf_reader_op.cc(898).\n")
    assert records._pipeline_message(error) == ("Invalid columns_list, tfrecord file failed to find column name: "
                                                "sentence_ids")
    assert records._pipeline_message(RuntimeError("bytes \x00\x01 here")) == "bytes ?? here"


def test_stderr_held_during_a_read_is_passed_on_unless_the_read_fails(capfd):
    with records._held_stderr():
        os.write(2, b"[WARNING] MD(1): a warning of a read that succeeds\n")
        print("python's own stderr", file=sys.stderr)
    with pytest.raises(UserError):
        with records._held_stderr():
            os.write(2, b"[ERROR] MD(1): C++ noise before a failure\n")
            raise UserError("one line")
    err = capfd.readouterr().err
    assert "a warning of a read that succeeds" in err and "python's own stderr" in err
    assert "C++ noise" not in err


def test_schema_of_another_corpus_is_one_line_without_mindspore_noise(tmp_path, capfd):
    from mindspore.mindrecord import FileWriter
    path = str(tmp_path / "other.mindrecord")
    writer = FileWriter(path, shard_num=1, overwrite=True)
    writer.add_schema({"text": {"type": "int32", "shape": [-1]}}, "other")
    writer.write_raw_data([{"text": np.arange(3, dtype=np.int32)}])
    writer.commit()
    capfd.readouterr()
    with pytest.raises(UserError) as error:
        read_records(path)
    assert "column name: sentence_ids can not found in schema" in str(error.value)
    assert "\n" not in str(error.value) and "C++" not in str(error.value)
    assert capfd.readouterr().err == ""


# ----------------------------------------------------------------------------------------------------------------
# Staging folders left by a killed writer
# ----------------------------------------------------------------------------------------------------------------

def dead_pid():
    """The pid of a process that has exited (and been waited for)."""
    import subprocess
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_abandoned_staging_folders_are_removed_and_live_ones_kept(tmp_path):
    path = str(tmp_path / "set.tfrecord")
    dead, live = dead_pid(), os.getppid()  # the parent (pytest's launcher) outlives this test
    abandoned = tmp_path / f".set.tfrecord.{dead}.abcd1234"
    running = tmp_path / f".set.tfrecord.{live}.efgh5678"
    other_output = tmp_path / f".other.tfrecord.{dead}.ijkl9012"
    for folder in (abandoned, running, other_output):
        os.makedirs(folder)
        (folder / "set.tfrecord").write_bytes(b"partial")
    legacy = tmp_path / ".set.tfrecord.k3j2h1g0"  # no pid: the writer is unknown, so it stays
    os.makedirs(legacy)
    write_records(path, make_examples(5))
    assert sorted(os.listdir(tmp_path)) == sorted([running.name, other_output.name, legacy.name, "set.tfrecord"])
    assert same_examples(read_records(path), make_examples(5))


def test_staging_folder_names_carry_the_writers_pid(tmp_path, monkeypatch):
    seen = []
    original = records._SHARD_WRITERS["tfrecord"]

    def spy(path, shard_examples):
        seen.append(os.path.basename(os.path.dirname(path)))
        original(path, shard_examples)

    monkeypatch.setitem(records._SHARD_WRITERS, "tfrecord", spy)
    write_records(str(tmp_path / "set.tfrecord"), make_examples(4))
    assert len(seen) == 1 and seen[0].startswith(f".set.tfrecord.{os.getpid()}.")
    assert records._staging_pattern(str(tmp_path / "set.tfrecord")).fullmatch(seen[0])


def test_process_alive():
    assert process_alive(os.getpid()) and process_alive(os.getppid())
    assert not process_alive(dead_pid())
    assert not process_alive(0) and not process_alive(-1)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_a_killed_child_not_yet_waited_for_counts_as_gone():
    import signal
    import subprocess
    import time
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.kill(process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while open(f"/proc/{process.pid}/stat").read().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(process.pid, 0)  # a zombie still answers signal 0
        assert not process_alive(process.pid)
    finally:
        process.wait()
