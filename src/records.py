"""Record files (MindRecord / TFRecord) with one schema for every corpus: format, shards, writing, reading.

Schema (all int32): sentence_ids, source_ids, decoder_input_ids, target_ids, decoder_positions (variable length),
source_length, target_length (scalars). See src/masking.py for what each holds.

Shards: N shards of PATH are the files PATH0 .. PATH{N-1} (MindRecord's own naming), each holding a contiguous
block of the examples, so reading the shards in order gives back the input order. MindRecord shards are written
by N single-shard FileWriters rather than one FileWriter(shard_num=N): that writer hands the rows left over by
N (row_count % N) to shards picked with std::random_device, so its files differ from run to run. A MindRecord
shard written here therefore lists only itself: open a sharded set with `read_records(PATH0)` or pass all the
files to `ds.MindDataset([...])`.
"""
import contextlib
import dataclasses
import functools
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
from src.workers import ordered_map, process_pool

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
    """A one-line UserError for the first example with an id outside [0, vocab_size) or inconsistent lengths."""
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


def _page_sizes(examples):
    """MindRecord page/header sizes fitted to the data: the defaults (32 MB pages, 16 MB header) make every
    file at least 48 MB however few rows it holds."""
    row_bytes = [4 * sum(len(getattr(e, n)) for n in ARRAY_FIELDS) + 64 for e in examples]
    largest, total = max(row_bytes), sum(row_bytes)
    page = max(1 << 15, 1 << int(np.ceil(np.log2(4 * largest))))
    if total > 16 * page:
        page = max(page, 1 << 20)
    page = min(page, 1 << 28)
    pages = 2 * (total // page + 2)
    header = min(max(1 << 15, 1 << int(np.ceil(np.log2(pages * 512 + 8192)))), 1 << 27)
    return page, header


def _chunks(examples, path):
    """Write-sized slices of `examples`, with a progress bar on a terminal (MindRecord writes ~2-5K rows/s)."""
    with tqdm(total=len(examples), desc=f"writing {os.path.basename(path)}", unit="row", file=sys.stderr,
              disable=None, leave=False) as progress:
        for start in range(0, len(examples), _WRITE_CHUNK):
            yield examples[start:start + _WRITE_CHUNK]
            progress.update(min(_WRITE_CHUNK, len(examples) - start))


def _write_mindrecord_shard(path, examples):
    from mindspore.mindrecord import FileWriter
    page, header = _page_sizes(examples)
    writer = FileWriter(path, shard_num=1, overwrite=True)
    writer.set_page_size(page)
    writer.set_header_size(header)
    writer.add_schema(MINDRECORD_SCHEMA, "mass")
    for chunk in _chunks(examples, path):
        writer.write_raw_data([e.as_dict() for e in chunk])
    writer.commit()


def _write_tfrecord_shard(path, examples):
    from tfrecord import example_pb2
    from tfrecord.writer import TFRecordWriter
    # The package's TFRecordWriter.write serializes the feature map in hash order, which changes between
    # processes; deterministic=True sorts it so the same examples give the same bytes. Framing is the package's.
    with open(path, "wb") as handle:
        for example in examples:
            features = {name: example_pb2.Feature(int64_list=example_pb2.Int64List(
                value=np.atleast_1d(getattr(example, name)).tolist())) for name in RECORD_FIELDS}
            record = example_pb2.Example(features=example_pb2.Features(feature=features)).SerializeToString(
                deterministic=True)
            length = struct.pack("<Q", len(record))
            handle.write(length + TFRecordWriter.masked_crc(length) + record + TFRecordWriter.masked_crc(record))


_SHARD_WRITERS = {"mindrecord": _write_mindrecord_shard, "tfrecord": _write_tfrecord_shard}


def write_shard(path, examples, format):
    """Writes `examples` to the one file PATH (no staging, no checks: see `write_records`)."""
    _SHARD_WRITERS[format](path, examples)


def import_writer(format):
    """Imports the record writer's library before a pool starts, so that forked workers inherit it instead of
    each importing it again (2-6 s apiece on a busy 2-core machine)."""
    if format == "mindrecord":
        import mindspore.mindrecord  # noqa: F401
    elif format == "tfrecord":
        import tfrecord  # noqa: F401


@dataclasses.dataclass
class _WriteJob:
    """What every shard-writing worker reads: given once to each worker by the pool initializer."""
    format: str
    examples: list


_job = None  # this worker's _WriteJob


def _start_worker(job):
    global _job
    _job = job


def _write_shard_range(job, task):
    path, start, end = task
    write_shard(path, job.examples[start:end], job.format)
    return path


def _write_shard_task(task):
    return _write_shard_range(_job, task)


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
        with process_pool(workers, _start_worker, (job,)) as pool:
            write = _write_shard_task if pool else functools.partial(_write_shard_range, job)
            for _ in ordered_map(pool, write, tasks):
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
    arrays, scalars = len(ARRAY_FIELDS), len(RECORD_FIELDS)
    with _held_stderr():
        try:
            for row in _dataset_rows(files, format):
                values = [np.asarray(row[i]).astype(np.int32, copy=False) for i in range(arrays)]
                values += [int(np.asarray(row[i]).reshape(-1)[0]) for i in range(arrays, scalars)]
                examples.append(Example(*values))
        except (RuntimeError, KeyError, ValueError) as error:
            raise UserError(f"cannot read {format} records {files[0]}: {_pipeline_message(error)}") from None
    return examples
