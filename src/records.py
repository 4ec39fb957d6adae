"""Record files (MindRecord / TFRecord) with one schema for every corpus: format, shards, writing, reading.

Schema (all int32): sentence_ids, source_ids, decoder_input_ids, target_ids, decoder_positions (variable length),
source_length, target_length (scalars). See src/masking.py for what each holds.

Shards: N shards of PATH are the files PATH0 .. PATH{N-1} (MindRecord's own naming), each holding a contiguous
block of the examples, so reading the shards in order gives back the input order. MindRecord shards are written
by N single-shard FileWriters rather than one FileWriter(shard_num=N): that writer hands the rows left over by
N (row_count % N) to shards picked with std::random_device, so its files differ from run to run. A MindRecord
shard written here therefore lists only itself: open a sharded set with `read_records(PATH0)` or pass all the
files to `ds.MindDataset([...])`.

Writing streams: `ShardWriter` / `ShardSetWriter` take chunks of examples (MindRecord page sizes fixed up front from
row-size bounds). Reading: a whole set (`read_records`), or, for the streaming loader, rows on demand
(`read_rows`) and their lengths from MindRecord's .db index without reading the data (`mindrecord_lengths`,
`mindrecord_length_counts`).
"""
import contextlib
import dataclasses
import importlib
import json
import os
import re
import shutil
import struct
import sys
import tempfile

import numpy as np
from tqdm import tqdm

from src.errors import UserError, process_alive
from src.masking import ARRAY_FIELDS, RECORD_FIELDS, SCALAR_FIELDS, Example
from src.workers import ordered_job_map

FORMATS = ("mindrecord", "tfrecord")
MINDRECORD_SCHEMA = {**{name: {"type": "int32", "shape": [-1]} for name in ARRAY_FIELDS},
                     **{name: {"type": "int32"} for name in SCALAR_FIELDS}}
_WRITE_CHUNK = 2000


# ----------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------

def infer_format(path, format=None):
    """`format` if given, else from the file name (.mindrecord / .tfrecord, shard digits allowed)."""
    if format:
        if format not in FORMATS:
            raise UserError(f"record format must be one of {', '.join(FORMATS)}, got {format!r}")
        return format
    name = re.sub(r"\d+$", "", os.path.basename(path))
    for candidate in FORMATS:
        if name.endswith("." + candidate):
            return candidate
    if os.path.exists(path + ".db") or os.path.exists(path + "0.db"):
        return "mindrecord"
    raise UserError(f"cannot tell the record format of {path}: name it *.mindrecord or *.tfrecord, or pass a format")


def shard_paths(path, num_shards):
    """PATH for one shard, PATH0 .. PATH{N-1} for N (the names FileWriter(shard_num=N) would use)."""
    return [path] if num_shards == 1 else [f"{path}{i}" for i in range(num_shards)]


def shard_bounds(num_examples, num_shards):
    """Contiguous [start, end) blocks whose sizes differ by at most one."""
    edges = [num_examples * i // num_shards for i in range(num_shards + 1)]
    return list(zip(edges[:-1], edges[1:]))


def validate_examples(examples, vocab_size=None, where="examples"):
    """A one-line UserError for the first example with an id outside [0, vocab_size) or inconsistent lengths.
    (Checked a chunk at a time; the examples are walked one by one only to name the first bad one.)"""
    if not examples or _examples_valid(examples, vocab_size):
        return
    for index, example in enumerate(examples):
        for name in ("sentence_ids", "source_ids", "decoder_input_ids", "target_ids"):
            ids = getattr(example, name)
            if not ids.size:
                continue
            low, high = int(ids.min()), int(ids.max())
            bad = low if low < 0 else high if vocab_size is not None and high >= vocab_size else None
            if bad is not None:
                raise UserError(f"{where}: example {index} field {name} has token id {bad} outside the vocabulary "
                                f"[0, {vocab_size}) - was it built with another vocabulary?")
        if example.decoder_positions.size and example.decoder_positions.min() < 0:
            raise UserError(f"{where}: example {index} has a negative decoder position")
        if example.source_length != len(example.source_ids) or example.target_length != len(example.target_ids):
            raise UserError(f"{where}: example {index} lengths disagree with its arrays")


def _examples_valid(examples, vocab_size):
    ids = np.concatenate([getattr(e, name) for e in examples
                          for name in ("sentence_ids", "source_ids", "decoder_input_ids", "target_ids")])
    positions = np.concatenate([e.decoder_positions for e in examples])
    lengths = np.array([(e.source_length - len(e.source_ids), e.target_length - len(e.target_ids))
                        for e in examples])
    return ((not ids.size or (ids.min() >= 0 and (vocab_size is None or ids.max() < vocab_size)))
            and (not positions.size or positions.min() >= 0) and not lengths.any())


def example_bytes(example):
    """A row's size in a record file, for page sizing: its int32 arrays plus room for scalars and framing."""
    return 4 * sum(len(getattr(example, name)) for name in ARRAY_FIELDS) + 64


def page_sizes(largest_row, total):
    """MindRecord page/header sizes for rows of at most `largest_row` bytes and `total` bytes in all (bounds are
    fine: they only make the header larger). MindRecord's defaults (32 MB pages, 16 MB header) make every file at
    least 48 MB however few rows it holds."""
    page = max(1 << 15, 1 << int(np.ceil(np.log2(4 * largest_row))))
    if total > 16 * page:
        page = max(page, 1 << 20)
    page = min(page, 1 << 28)
    pages = 2 * (total // page + 2)
    header = min(max(1 << 15, 1 << int(np.ceil(np.log2(pages * 512 + 8192)))), 1 << 27)
    return page, header


def _page_sizes(examples):
    sizes = [example_bytes(e) for e in examples]
    return page_sizes(max(sizes), sum(sizes))


class _MindRecordFile:
    """One MindRecord file written in chunks (one FileWriter with shard_num=1: see the module docstring)."""

    def __init__(self, path, sizes):
        from mindspore.mindrecord import FileWriter
        self.writer = FileWriter(path, shard_num=1, overwrite=True)
        self.writer.set_page_size(sizes[0])
        self.writer.set_header_size(sizes[1])
        self.writer.add_schema(MINDRECORD_SCHEMA, "mass")
        # FileWriter's Python layer asks the C++ header for the schema again for every field of every row (60% of
        # its time); the schema is fixed from here on, so answer from one copy. Bytes are unchanged.
        header = getattr(self.writer, "_header", None)
        if header is not None and hasattr(header, "_get_meta"):
            meta = header._get_meta()
            header._get_meta = lambda: meta
        # Its per-row type check (a third of the rest) drops rows it rejects with a warning; rows here are
        # `Example`s (int32 arrays, int scalars) that validate_examples has checked, so it is skipped.
        if hasattr(self.writer, "_verify_based_on_schema"):
            self.writer._verify_based_on_schema = lambda rows: None

    def write(self, examples):
        self.writer.write_raw_data([e.as_dict() for e in examples])

    def close(self):
        self.writer.commit()


class _TFRecordFile:
    """One TFRecord file. The tfrecord package's TFRecordWriter.write serializes the feature map in hash order,
    which changes between processes; deterministic=True sorts it so the same examples give the same bytes.
    Framing is the package's."""

    def __init__(self, path, sizes=None):
        self.handle = open(path, "wb")

    def write(self, examples):
        from tfrecord import example_pb2
        from tfrecord.writer import TFRecordWriter
        for example in examples:
            features = {name: example_pb2.Feature(int64_list=example_pb2.Int64List(
                value=np.atleast_1d(getattr(example, name)).tolist())) for name in RECORD_FIELDS}
            record = example_pb2.Example(features=example_pb2.Features(feature=features)).SerializeToString(
                deterministic=True)
            length = struct.pack("<Q", len(record))
            self.handle.write(length + TFRecordWriter.masked_crc(length) + record + TFRecordWriter.masked_crc(record))

    def close(self):
        self.handle.close()


class ShardWriter:
    """Writes one record file from chunks of examples, in calls of _WRITE_CHUNK rows counted from the file's first
    row (so the bytes do not depend on how the caller cuts its chunks). `sizes`: MindRecord (page, header) sizes
    from `page_sizes`, fixed before the first row."""

    def __init__(self, path, format, sizes):
        self.path = path
        self.file = (_MindRecordFile if format == "mindrecord" else _TFRecordFile)(path, sizes)
        self.pending = []
        self.rows = 0

    def write(self, examples):
        self.pending.extend(examples)
        self.rows += len(examples)
        while len(self.pending) >= _WRITE_CHUNK:
            self.file.write(self.pending[:_WRITE_CHUNK])
            del self.pending[:_WRITE_CHUNK]

    def close(self):
        if self.pending:
            self.file.write(self.pending)
            self.pending = []
        self.file.close()


class ShardSetWriter:
    """Writes consecutive examples across the files of a record set: file i gets `counts[i]` rows."""

    def __init__(self, paths, counts, format, sizes):
        self.targets = list(zip(paths, counts))
        self.format, self.sizes = format, sizes
        self.current, self.left = None, 0

    def write(self, examples):
        while examples:
            if self.left == 0:
                self._next_file()
            taken, examples = examples[:self.left], examples[self.left:]
            self.current.write(taken)
            self.left -= len(taken)

    def _next_file(self):
        if self.current is not None:
            self.current.close()
        if not self.targets:
            raise ValueError("more examples than the record set's shards hold")
        path, self.left = self.targets.pop(0)
        self.current = ShardWriter(path, self.format, self.sizes)

    def close(self):
        """Closes the last file; every file must have received its rows."""
        if self.left or self.targets:
            raise ValueError("fewer examples than the record set's shards hold")
        if self.current is not None:
            self.current.close()


def _write_shard_file(path, examples, format):
    writer = ShardWriter(path, format, _page_sizes(examples) if format == "mindrecord" else None)
    with tqdm(total=len(examples), desc=f"writing {os.path.basename(path)}", unit="row", file=sys.stderr,
              disable=None, leave=False) as progress:
        for start in range(0, len(examples), _WRITE_CHUNK):
            writer.write(examples[start:start + _WRITE_CHUNK])
            progress.update(min(_WRITE_CHUNK, len(examples) - start))
    writer.close()


def _write_mindrecord_shard(path, examples):
    _write_shard_file(path, examples, "mindrecord")


def _write_tfrecord_shard(path, examples):
    _write_shard_file(path, examples, "tfrecord")


_SHARD_WRITERS = {"mindrecord": _write_mindrecord_shard, "tfrecord": _write_tfrecord_shard}


def write_shard(path, examples, format):
    """Writes `examples` to the one file PATH (no staging, no checks: see `write_records`)."""
    _SHARD_WRITERS[format](path, examples)


def import_writer(format):
    """Imports the record writer's library before a pool starts, so that forked workers inherit it instead of
    each importing it again (2-6 s apiece on a busy 2-core machine)."""
    importlib.import_module("mindspore.mindrecord" if format == "mindrecord" else "tfrecord")


@dataclasses.dataclass
class _WriteJob:
    """What every shard-writing worker reads: given once to each worker by the pool initializer."""
    format: str
    examples: list


def _write_shard_range(job, task):
    path, start, end = task
    write_shard(path, job.examples[start:end], job.format)
    return path


def _stale_outputs(path):
    """Files a previous run with another shard count may have left under PATH's names."""
    folder, base = os.path.split(os.path.abspath(path))
    pattern = re.compile(re.escape(base) + r"\d*(\.db)?$")
    return [os.path.join(folder, name) for name in os.listdir(folder) if pattern.fullmatch(name)]


def _staging_pattern(path):
    """Names of PATH's staging folders: .NAME.PID.RANDOM (PID: the writing process)."""
    return re.compile(re.escape("." + os.path.basename(path) + ".") + r"(\d+)\.[^.]+")


def remove_abandoned_staging(path):
    """Removes staging folders of PATH whose writer is gone (killed: kill -9, a crash, a power cut); those of a
    live writer (another build of the same output running now) are left alone. Returns the removed folders."""
    folder = os.path.dirname(os.path.abspath(path))
    pattern, removed = _staging_pattern(path), []
    for name in os.listdir(folder):
        match = pattern.fullmatch(name)
        staging = os.path.join(folder, name)
        if match and os.path.isdir(staging) and not process_alive(int(match.group(1))):
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
    return removed


@contextlib.contextmanager
def staged_record_set(path, format, num_shards):
    """Yields the temporary paths to write the shards to; when the block succeeds, renames them (and MindRecord's
    .db files) onto PATH / PATH0 .. PATH{N-1}, after removing stale shards of an earlier run. On failure nothing
    appears under PATH's names.

    The shards are staged in the hidden folder .NAME.PID.RANDOM beside PATH. A writer killed before its end
    (kill -9) cannot remove its folder: the next write of PATH does, once that PID is no longer running.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_abandoned_staging(path)
    temporary = tempfile.mkdtemp(dir=folder, prefix=f".{os.path.basename(path)}.{os.getpid()}.")
    try:
        finals = shard_paths(path, num_shards)
        staged = [os.path.join(temporary, os.path.basename(final)) for final in finals]
        yield staged
        for stale in _stale_outputs(path):
            os.remove(stale)
        for final, written in zip(finals, staged):
            for suffix in ("", ".db") if format == "mindrecord" else ("",):
                os.replace(written + suffix, final + suffix)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def write_records(path, examples, *, format=None, num_shards=1, vocab_size=None, processes=1):
    """Writes `examples` to PATH (one shard) or PATH0 .. PATH{N-1} atomically (see `staged_record_set`);
    returns the record file paths. With processes > 1 the shards are written in parallel."""
    format = infer_format(path, format)
    examples = list(examples)
    if not examples:
        raise UserError(f"{path}: no examples to write")
    if num_shards < 1 or num_shards > len(examples):
        raise UserError(f"{path}: cannot split {len(examples)} examples into {num_shards} shards")
    validate_examples(examples, vocab_size, where=path)
    job = _WriteJob(format, examples)
    workers = min(processes, num_shards)
    if workers > 1:
        import_writer(format)
    with staged_record_set(path, format, num_shards) as staged:
        tasks = [(target, start, end) for target, (start, end) in zip(staged, shard_bounds(len(examples), num_shards))]
        for _ in ordered_job_map(workers, job, _write_shard_range, tasks):
            pass
    return shard_paths(path, num_shards)


# ----------------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------------

def resolve_shards(path):
    """The record files of a set named by PATH (unsharded file), PATH0 (first shard) or PATH (shards PATH0..)."""
    if not os.path.exists(path) and os.path.exists(path + "0"):
        path = path + "0"
    if not os.path.isfile(path):
        raise UserError(f"record file not found: {path}")
    if not path.endswith("0") or not os.path.exists(path[:-1] + "1"):
        return [path]
    base, files = path[:-1], []
    while os.path.exists(f"{base}{len(files)}"):
        files.append(f"{base}{len(files)}")
    return files


# Each file is checked before MindSpore opens it: on a truncated or corrupt file MindSpore's C++ reader logs
# `[ERROR] MD(...)` lines (C++ file names, raw record bytes) to stderr and raises an error that does not say what
# is wrong with the file.
_MINDRECORD_LAYOUT = "an 8-byte header length, the JSON header, then pages at header_size + page_id * page_size"
_TFRECORD_LAYOUT = "records of an 8-byte length, its masked CRC32C, the data and the data's masked CRC32C"


def _corrupt(path, format, details):
    return UserError(f"{path}: truncated or corrupt {format} file ({details})")


def _mindrecord_header(path, size):
    """The JSON header of a MindRecord file, checked to describe the pages a reader will look for."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise _corrupt(path, "mindrecord", f"{size} bytes; expected {_MINDRECORD_LAYOUT}")
        length = struct.unpack("<Q", head)[0]
        if not 0 < length <= size - 8:
            raise _corrupt(path, "mindrecord", f"{size} bytes, whose first 8 give a header length of {length}; "
                           f"expected {_MINDRECORD_LAYOUT}")
        text = handle.read(length)
    try:
        header = json.loads(text)
        pages = [page for page in header["page"] if page.get("shard_id", 0) == header.get("shard_id", 0)]
        page_size, header_size = int(header["page_size"]), int(header["header_size"])
        end = header_size + max((int(page["page_id"]) * page_size + int(page["page_size"]) for page in pages),
                                default=0)
        rows = sum(int(page["end_row_id"]) - int(page["start_row_id"]) for page in pages
                   if page.get("page_type") == "BLOB_DATA")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _corrupt(path, "mindrecord", f"the header is not MindRecord's JSON header; expected {_MINDRECORD_LAYOUT}"
                       ) from None
    if size < end:
        raise _corrupt(path, "mindrecord", f"expected {end} bytes from its header: a {header_size}-byte header and "
                       f"{len(pages)} pages of up to {page_size} bytes; found {size}")
    return rows


def _mindrecord_index_rows(path):
    """Rows listed by PATH's .db index (an SQLite file that MindSpore reads with the data file)."""
    import sqlite3
    import urllib.parse
    index = path + ".db"
    if not os.path.isfile(index):
        raise UserError(f"{path}: its MindRecord index {index} is missing (each .mindrecord file is read with the "
                        ".db file written beside it)")
    uri = "file:" + urllib.parse.quote(os.path.abspath(index)) + "?mode=ro&immutable=1"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as database:
            names = [row[0] for row in database.execute("SELECT NAME FROM SHARD_NAME")]
            rows = database.execute("SELECT COUNT(*) FROM INDEXES").fetchone()[0]
    except sqlite3.Error as error:
        raise UserError(f"{index}: truncated or corrupt MindRecord index file (expected the SQLite index written "
                        f"with {os.path.basename(path)}; sqlite: {error})") from None
    if names != [os.path.basename(path)]:
        raise UserError(f"{index}: the MindRecord index of {', '.join(names) or 'no file'}, not of "
                        f"{os.path.basename(path)} (a .mindrecord file and its .db cannot be renamed: rebuild them "
                        "or restore their names)")
    return rows


def _check_mindrecord(path):
    size = os.path.getsize(path)
    rows = _mindrecord_header(path, size)
    indexed = _mindrecord_index_rows(path)
    if rows != indexed:
        raise _corrupt(path, "mindrecord", f"expected the {rows} rows its header lists in its index {path}.db, "
                       f"found {indexed}")


def _masked_crc32c(data):
    """TFRecord's checksum: CRC32C rotated right by 15 bits plus a constant."""
    import crc32c  # the C implementation the tfrecord package installs and writes with
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _check_tfrecord(path):
    """Walks the file's framing and verifies both checksums of every record (the data too: a flipped bit in a
    record would otherwise reach MindSpore's protobuf parser)."""
    size = os.path.getsize(path)
    if size == 0:
        raise _corrupt(path, "tfrecord", f"0 bytes; expected {_TFRECORD_LAYOUT}")
    offset, record = 0, 0
    with open(path, "rb") as handle:
        while offset < size:
            where = f"record {record} at byte {offset}"
            head = handle.read(12)
            if len(head) < 12:
                raise _corrupt(path, "tfrecord", f"{where}: {len(head)} bytes left, expected a 12-byte length and "
                               "length checksum")
            if struct.unpack("<I", head[8:])[0] != _masked_crc32c(head[:8]):
                raise _corrupt(path, "tfrecord", f"{where}: the length checksum does not match; expected "
                               f"{_TFRECORD_LAYOUT}")
            length = struct.unpack("<Q", head[:8])[0]
            left = size - offset - 12
            if length + 4 > left:
                raise _corrupt(path, "tfrecord", f"{where}: {left} bytes left, expected {length} data bytes and a "
                               "4-byte checksum")
            data = handle.read(length + 4)
            if struct.unpack("<I", data[length:])[0] != _masked_crc32c(data[:length]):
                raise _corrupt(path, "tfrecord", f"{where}: the data checksum does not match")
            offset += 12 + length + 4
            record += 1


def check_record_file(path, format):
    """A one-line UserError when PATH is not a complete record file of `format` (truncated, overwritten with other
    bytes, a MindRecord file without its .db index), so that MindSpore never reads it."""
    (_check_mindrecord if format == "mindrecord" else _check_tfrecord)(path)


def _pipeline_message(error):
    """The informative line of a MindSpore dataset error, whose text also holds banners and a C++ call stack."""
    lines = [line.strip() for line in str(error).splitlines()]
    marker = next((index for index, line in enumerate(lines) if line.startswith("- Dataset Pipeline Error Message")),
                  None)
    candidates = lines[marker + 1:] if marker is not None else lines
    line = next((line for line in candidates if line and not line.startswith("---")), "") or repr(error)
    line = line.removeprefix("[ERROR]").strip()
    return "".join(char if char.isprintable() else "?" for char in line)[:300]


@contextlib.contextmanager
def _held_stderr():
    """Holds back what reaches file descriptor 2 while MindSpore reads, and passes it on unless the read ends in a
    UserError. MindSpore's C++ dataset threads log a failing read as `[ERROR] MD(...)` lines straight to the
    descriptor before the error reaches Python; the UserError says it in one line instead."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        pass_on = True
        try:
            yield
        except UserError:
            pass_on = False
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read()
            if pass_on and text:
                sys.stderr.write(text.decode(errors="replace"))
                sys.stderr.flush()


def _dataset_rows(files, format):
    """Rows as tuples in RECORD_FIELDS order. MindSpore's readers cost ~60-100 us a row here; one worker and
    tuples are the quickest of the variants tried (dict rows, more workers, FileReader, padded batches)."""
    import mindspore.dataset as ds
    for path in files:
        reader = ds.MindDataset if format == "mindrecord" else ds.TFRecordDataset
        dataset = reader([path], columns_list=list(RECORD_FIELDS), shuffle=False, num_parallel_workers=1)
        try:
            yield from dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)
        except RuntimeError as error:
            raise UserError(f"cannot read {format} file {path}: {_pipeline_message(error)}") from None


def read_records(path_or_first_shard, format=None):
    """Every example of a record set, in written order, as a list of `Example`s (numpy int32)."""
    files = resolve_shards(path_or_first_shard)
    format = infer_format(files[0], format)
    for path in files:
        check_record_file(path, format)
    examples = []
    for path in files:
        examples.extend(_read_file(path, format, files[0]))
    return examples


def read_record_file(path, format=None):
    """Every example of one record file (a shard alone, even the first), checked first."""
    format = infer_format(path, format)
    check_record_file(path, format)
    return _read_file(path, format, path)


def _read_file(path, format, name):
    examples = []
    arrays, scalars = len(ARRAY_FIELDS), len(RECORD_FIELDS)
    with _held_stderr():
        try:
            for row in _dataset_rows([path], format):
                values = [np.asarray(row[i]).astype(np.int32, copy=False) for i in range(arrays)]
                values += [int(np.asarray(row[i]).reshape(-1)[0]) for i in range(arrays, scalars)]
                examples.append(Example(*values))
        except (RuntimeError, KeyError, ValueError) as error:
            raise UserError(f"cannot read {format} records {name}: {_pipeline_message(error)}") from None
    return examples


# ----------------------------------------------------------------------------------------------------------------
# Reading rows on demand (the streaming loader, src/dataset.py)
# ----------------------------------------------------------------------------------------------------------------

def _index_database(path):
    import sqlite3
    import urllib.parse
    uri = "file:" + urllib.parse.quote(os.path.abspath(path + ".db")) + "?mode=ro&immutable=1"
    return contextlib.closing(sqlite3.connect(uri, uri=True))


def open_mindrecord(path):
    """Checks a MindRecord file (see check_record_file) and returns its number of rows."""
    _check_mindrecord(path)
    return _mindrecord_index_rows(path)


def _query_index(path, sql, parameters):
    """The rows an SQL query returns on a MindRecord file's index, or None where the index lacks its columns."""
    import sqlite3
    try:
        with _index_database(path) as database:
            return database.execute(sql, parameters).fetchall()
    except sqlite3.OperationalError:
        return None


def mindrecord_lengths(path, start, end):
    """(source_length, target_length) int32 arrays of rows [start, end) of a MindRecord file, from its index:
    MindRecord's .db holds a column per scalar field (`source_length_0`, `target_length_0`), so no data page is
    read (~1 s per million rows). Files whose index lacks them are read with MindDataset instead."""
    rows = _query_index(path, "SELECT source_length_0, target_length_0 FROM INDEXES WHERE ROW_ID >= ? AND "
                              "ROW_ID < ? ORDER BY ROW_ID", (start, end))
    if rows is None or len(rows) != end - start:
        lengths = read_rows(path, np.arange(start, end), ("source_length", "target_length"))
        return lengths["source_length"][:, 0], lengths["target_length"][:, 0]
    lengths = np.asarray(rows, dtype=np.int32).reshape(-1, 2)
    return lengths[:, 0].copy(), lengths[:, 1].copy()


def mindrecord_length_counts(path, start, end):
    """[k, 3] int64 array of (source_length, target_length, rows) over rows [start, end) of a MindRecord file,
    counted by SQLite in the index (no row is fetched)."""
    counts = _query_index(path, "SELECT source_length_0, target_length_0, COUNT(*) FROM INDEXES WHERE "
                                "ROW_ID >= ? AND ROW_ID < ? GROUP BY 1, 2", (start, end))
    if counts is None or sum(row[2] for row in counts) != end - start:
        return length_counts(*mindrecord_lengths(path, start, end))
    return np.asarray(counts, dtype=np.int64).reshape(-1, 3)


def length_counts(source_lengths, target_lengths):
    """[k, 3] int64 array of (source_length, target_length, rows) of two length arrays."""
    pairs, counts = np.unique(np.stack([np.asarray(source_lengths, dtype=np.int64),
                                        np.asarray(target_lengths, dtype=np.int64)], axis=1), axis=0,
                              return_counts=True)
    return np.concatenate([pairs.reshape(-1, 2), counts[:, None]], axis=1)


_READ_BATCH = 4096  # rows per padded batch of a read


def read_rows(path, rows, fields):
    """Rows `rows` (distinct row numbers, any order) of a MindRecord file: {field: int32 array [len(rows), width]}
    in the order given, each row zero-padded to the widest. MindDataset reads them with a SubsetSampler (sorted,
    so pages are read in order) and pads them in its C++ pipeline: ~45 us of CPU a row, against ~80 through the
    per-row iterator."""
    import mindspore.dataset as ds
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    if not len(rows):
        return {field: np.zeros((0, 1), dtype=np.int32) for field in fields}
    dataset = ds.MindDataset([path], columns_list=list(fields), sampler=ds.SubsetSampler(rows[order].tolist()),
                             num_parallel_workers=2)  # 2 reader threads: less CPU a row than 1 (measured)
    arrays = [name for name in fields if name in ARRAY_FIELDS]
    dataset = dataset.padded_batch(_READ_BATCH, pad_info={name: (None, 0) for name in arrays})
    parts = {field: [] for field in fields}
    with _held_stderr():
        try:
            for batch in dataset.create_tuple_iterator(output_numpy=True, num_epochs=1):
                for field, values in zip(fields, batch):
                    parts[field].append(np.asarray(values, dtype=np.int32).reshape(len(values), -1))
        except RuntimeError as error:
            raise UserError(f"cannot read mindrecord file {path}: {_pipeline_message(error)}") from None
    result = {}
    for field, pieces in parts.items():
        width = max(piece.shape[1] for piece in pieces)
        array = np.zeros((len(rows), width), dtype=np.int32)
        array[order] = np.concatenate([np.pad(piece, ((0, 0), (0, width - piece.shape[1]))) for piece in pieces])
        result[field] = array
    return result
