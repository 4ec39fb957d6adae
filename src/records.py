"""Record files (MindRecord / TFRecord) with one schema for every corpus, and the text-to-examples steps the
three corpus builders share.

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
import multiprocessing
import os
import re
import shutil
import struct
import sys
import tempfile

import numpy as np
from tqdm import tqdm

from src.dictionary import EOS_ID, UNK_ID
from src.errors import UserError, require_file
from src.masking import ARRAY_FIELDS, RECORD_FIELDS, SCALAR_FIELDS, Example, make_pair_example, mask_sentence

FORMATS = ("mindrecord", "tfrecord")


def add_pair_builder_arguments(parser):
    """The flags gigaword.py and cornell_dialog.py share."""
    parser.add_argument("--max_len", type=int, default=64, help="most ids per side, </s> included")
    parser.add_argument("--noise_prob", type=float, default=0.0, help="source tokens -> <mask> (train only)")
    parser.add_argument("--format", choices=FORMATS, default="mindrecord")
    parser.add_argument("--num_shards", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)


def check_pair_builder_arguments(parser, args):
    if not 0.0 <= args.noise_prob < 1.0:
        parser.error("--noise_prob must be in [0, 1)")
    if args.max_len < 2 or args.num_shards < 1:
        parser.error("need --max_len >= 2 and --num_shards >= 1")
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
_WRITE_STATE = {}


def _init_write_worker(state):
    _WRITE_STATE.update(state)


def _write_shard_task(task):
    path, start, end = task
    _SHARD_WRITERS[_WRITE_STATE["format"]](path, _WRITE_STATE["examples"][start:end])
    return path


def _pool_context(format=None):
    """fork where available: workers share the parent's data for free. The record writer's library is imported
    first so that each worker does not import it again (2-6 s apiece on a busy 2-core machine)."""
    if format == "mindrecord":
        import mindspore.mindrecord  # noqa: F401
    elif format == "tfrecord":
        import tfrecord  # noqa: F401
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _stale_outputs(path):
    """Files a previous run with another shard count may have left under PATH's names."""
    folder, base = os.path.split(os.path.abspath(path))
    pattern = re.compile(re.escape(base) + r"\d*(\.db)?$")
    return [os.path.join(folder, name) for name in os.listdir(folder) if pattern.fullmatch(name)]


@contextlib.contextmanager
def staged_record_set(path, format, num_shards):
    """Yields the temporary paths to write the shards to; when the block succeeds, renames them (and MindRecord's
    .db files) onto PATH / PATH0 .. PATH{N-1}, after removing stale shards of an earlier run. On failure nothing
    appears under PATH's names."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = tempfile.mkdtemp(dir=folder, prefix="." + os.path.basename(path) + ".")
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
    with staged_record_set(path, format, num_shards) as staged:
        tasks = [(target, start, end) for target, (start, end) in zip(staged, shard_bounds(len(examples), num_shards))]
        workers = min(processes, num_shards)
        if workers > 1:
            state = {"format": format, "examples": examples}
            with _pool_context(format).Pool(workers, initializer=_init_write_worker, initargs=(state,)) as pool:
                pool.map(_write_shard_task, tasks, chunksize=1)
        else:
            for target, start, end in tasks:
                _SHARD_WRITERS[format](target, examples[start:end])
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
            first_line = next((line for line in str(error).splitlines() if line.strip()), "unreadable")
            raise UserError(f"cannot read {format} file {path}: {first_line.strip()}") from None


def read_records(path_or_first_shard, format=None):
    """Every example of a record set, in written order, as a list of `Example`s (numpy int32)."""
    files = resolve_shards(path_or_first_shard)
    format = infer_format(files[0], format)
    examples = []
    arrays, scalars = len(ARRAY_FIELDS), len(RECORD_FIELDS)
    try:
        for row in _dataset_rows(files, format):
            values = [np.asarray(row[i]).astype(np.int32, copy=False) for i in range(arrays)]
            values += [int(np.asarray(row[i]).reshape(-1)[0]) for i in range(arrays, scalars)]
            examples.append(Example(*values))
    except (RuntimeError, KeyError, ValueError) as error:
        first_line = next((line for line in str(error).splitlines() if line.strip()), repr(error))
        raise UserError(f"cannot read {format} records {files[0]}: {first_line.strip()}") from None
    return examples


# ----------------------------------------------------------------------------------------------------------------
# Text to examples (shared by news_crawl.py, gigaword.py, cornell_dialog.py)
# ----------------------------------------------------------------------------------------------------------------

def read_text_lines(path, what="text file"):
    """Lines of a UTF-8 file without their newlines; a one-line UserError if it is missing, binary or empty."""
    require_file(path, what)
    with open(path, "rb") as handle:
        data = handle.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise UserError(f"{what} is empty: {path}")
    try:
        return [line.decode("utf-8").rstrip("\r") for line in lines]
    except UnicodeDecodeError:
        for number, line in enumerate(lines, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                raise UserError(f"{path}:{number}: not valid UTF-8 text") from None
        raise


def read_pair_files(source_path, target_path):
    """Aligned (source, target) lines; a one-line UserError naming both files when the line counts differ."""
    sources = read_text_lines(source_path, "source file")
    targets = read_text_lines(target_path, "target file")
    if len(sources) != len(targets):
        raise UserError(f"misaligned pair files: {source_path} has {len(sources)} lines but {target_path} has "
                        f"{len(targets)}")
    return sources, targets


def _count_unknown(ids):
    return int(np.count_nonzero(ids[:-1] == UNK_ID))


def truncate_ids(ids, max_len):
    """The first max_len - 1 tokens and </s>."""
    return ids if len(ids) <= max_len else np.concatenate((ids[:max_len - 1], [EOS_ID])).astype(np.int32)


def build_pair_examples(sources, targets, vocab, *, max_len, train, noise_prob=0.0, seed=0, token_map=None):
    """Encodes aligned lines into fine-tuning examples; returns (examples, counts).

    train: pairs with an empty side or a side longer than max_len ids (</s> included) are dropped and counted,
    and the source is noised with noise_prob (rng default_rng([seed, line index])). Otherwise (valid/test) every
    pair is kept, so scores cover the whole set: longer sides are truncated to max_len ids (keeping </s>) and
    counted. token_map rewrites tokens before lookup (e.g. Gigaword's `UNK` -> `<unk>`).
    """
    counts = dict(pairs=len(sources), kept=0, dropped_empty=0, dropped_source_too_long=0,
                  dropped_target_too_long=0, truncated_source=0, truncated_target=0, unknown_tokens=0)
    examples = []
    pairs = tqdm(zip(sources, targets), total=len(sources), desc="encoding pairs", unit="pair", file=sys.stderr,
                 disable=None, leave=False)
    for index, (source_line, target_line) in enumerate(pairs):
        source_tokens, target_tokens = source_line.split(), target_line.split()
        if token_map:
            source_tokens = [token_map.get(t, t) for t in source_tokens]
            target_tokens = [token_map.get(t, t) for t in target_tokens]
        source_ids, target_ids = vocab.encode_tokens(source_tokens), vocab.encode_tokens(target_tokens)
        if train:
            if not source_tokens or not target_tokens:
                counts["dropped_empty"] += 1
                continue
            if len(source_ids) > max_len:
                counts["dropped_source_too_long"] += 1
                continue
            if len(target_ids) > max_len:
                counts["dropped_target_too_long"] += 1
                continue
        else:
            counts["truncated_source"] += len(source_ids) > max_len
            counts["truncated_target"] += len(target_ids) > max_len
            source_ids, target_ids = truncate_ids(source_ids, max_len), truncate_ids(target_ids, max_len)
        counts["unknown_tokens"] += _count_unknown(source_ids) + _count_unknown(target_ids)
        noise = noise_prob if train else 0.0
        rng = np.random.default_rng([seed, index]) if noise > 0 else None
        examples.append(make_pair_example(source_ids, target_ids, rng=rng, noise_prob=noise))
    counts["kept"] = len(examples)
    return examples, counts


def filter_sentences(lines, *, min_len, max_len):
    """(line index, line) of the sentences to keep, and counts: a sentence of m tokens becomes m + 1 ids with
    </s>; it is kept when m >= min_len and m + 1 <= max_len."""
    kept, too_short, too_long = [], 0, 0
    for index, line in enumerate(lines):
        num_tokens = len(line.split())
        if num_tokens < min_len:
            too_short += 1
        elif num_tokens + 1 > max_len:
            too_long += 1
        else:
            kept.append((index, line))
    return kept, dict(read=len(lines), kept=len(kept), dropped_too_long=too_long, dropped_too_short=too_short)


_MASK_STATE = {}


def _init_mask_worker(state):
    _MASK_STATE.update(state)


def _mask_range(bounds):
    state = _MASK_STATE
    vocab = state["vocab"]
    examples, unknown = [], 0
    for index, line in state["items"][bounds[0]:bounds[1]]:
        ids = vocab.encode_line(line)
        unknown += _count_unknown(ids)
        # Seeded by the sentence's global line index: the same output whatever the number of processes.
        rng = np.random.default_rng([state["seed"], index])
        examples.append(mask_sentence(state["language_model"], ids, rng, state["mask_ratio"], len(vocab)))
    return examples, unknown


def mask_monolingual(items, vocab, *, language_model, mask_ratio, seed, processes=1, chunk_size=2000,
                     progress=None):
    """Encodes and masks (line index, line) items, in a process pool when processes > 1; returns
    (examples in input order, number of unknown tokens)."""
    state = dict(items=items, vocab=vocab, language_model=language_model, mask_ratio=mask_ratio, seed=seed)
    ranges = [(start, min(start + chunk_size, len(items))) for start in range(0, len(items), chunk_size)]
    examples, unknown = [], 0

    def collect(results):
        nonlocal unknown
        for chunk_examples, chunk_unknown in results:
            examples.extend(chunk_examples)
            unknown += chunk_unknown
            if progress is not None:
                progress.update(len(chunk_examples))

    if processes > 1 and len(ranges) > 1:
        with _pool_context().Pool(processes, initializer=_init_mask_worker, initargs=(state,)) as pool:
            collect(pool.imap(_mask_range, ranges))
    else:
        _init_mask_worker(state)
        try:
            collect(map(_mask_range, ranges))
        finally:
            _MASK_STATE.clear()
    return examples, unknown


def _mask_and_write_shard(task):
    start, end, target = task
    examples, unknown = _mask_range((start, end))
    validate_examples(examples, len(_MASK_STATE["vocab"]), where=target)
    _SHARD_WRITERS[_MASK_STATE["format"]](target, examples)
    return end - start, unknown


def build_monolingual_records(items, vocab, *, path, language_model, mask_ratio, seed, format=None, num_shards=1,
                              processes=1, progress=None):
    """Masks (line index, line) items and writes them to PATH / PATH0 ..; returns (record paths, unknown tokens).

    With several processes and shards each worker masks and writes whole shards, so examples never travel
    between processes; otherwise masking uses the pool and the main process writes. The bytes are the same.
    """
    format = infer_format(path, format)
    if num_shards < 1 or num_shards > len(items):
        raise UserError(f"{path}: cannot split {len(items)} sentences into {num_shards} shards")
    if processes > 1 and num_shards > 1:
        state = dict(items=items, vocab=vocab, language_model=language_model, mask_ratio=mask_ratio, seed=seed,
                     format=format)
        unknown = 0
        with staged_record_set(path, format, num_shards) as staged:
            tasks = [(start, end, target) for target, (start, end) in zip(staged, shard_bounds(len(items), num_shards))]
            with _pool_context(format).Pool(min(processes, num_shards), initializer=_init_mask_worker,
                                      initargs=(state,)) as pool:
                for count, shard_unknown in pool.imap(_mask_and_write_shard, tasks):
                    unknown += shard_unknown
                    if progress is not None:
                        progress.update(count)
        return shard_paths(path, num_shards), unknown
    examples, unknown = mask_monolingual(items, vocab, language_model=language_model, mask_ratio=mask_ratio,
                                         seed=seed, processes=processes, progress=progress)
    return write_records(path, examples, format=format, num_shards=num_shards, vocab_size=len(vocab)), unknown


def format_counts(name, counts):
    return f"{name}: " + " ".join(f"{key}={value}" for key, value in counts.items())


def build_pair_record_sets(splits, vocab, *, output_folder, prefix, max_len, noise_prob, seed, format,
                           num_shards=1, token_map=None, processes=1):
    """Builds OUTPUT/{prefix}_{split}.{format} for each (split, source file, target file, is_train) and prints
    one summary line per split. Every input is read and checked before anything is written."""
    texts = [(name, read_pair_files(source, target), train) for name, source, target, train in splits]
    built = []
    for name, (sources, targets), train in texts:
        examples, counts = build_pair_examples(sources, targets, vocab, max_len=max_len, train=train,
                                               noise_prob=noise_prob, seed=seed, token_map=token_map)
        if not examples:
            raise UserError(f"{prefix} {name}: every pair was dropped (longer than --max_len {max_len} or empty)")
        built.append((name, examples, counts))
    summaries = []
    for name, examples, counts in built:
        path = os.path.join(output_folder, f"{prefix}_{name}.{format}")
        paths = write_records(path, examples, format=format, num_shards=min(num_shards, len(examples)),
                              vocab_size=len(vocab), processes=processes)
        summaries.append(format_counts(f"{prefix} {name}", counts) + f" output={paths[0]}")
    for line in summaries:
        print(line)
    return {name: counts for name, _, counts in built}
