"""Text to examples, the steps news_crawl.py, gigaword.py and cornell_dialog.py share: read and check text
files, filter and mask monolingual sentences, encode aligned pairs, and write the record sets (src/records.py).

Every random draw is seeded by the sentence's (or pair's) line index, so the records are the same for any
number of processes.
"""
import dataclasses
import functools
import os

import numpy as np

from src.dictionary import EOS_ID, UNK_ID
from src.errors import UserError, check_output_file, check_output_folder, require_file
from src.masking import make_pair_example, mask_sentence
from src.progress import progress_bar
from src.records import (import_writer, infer_format, shard_bounds, shard_paths, staged_record_set,
                         validate_examples, write_records, write_shard)
from src.workers import ordered_map, process_pool


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


def format_counts(name, counts):
    """`name: key=value ...`, the one summary line each builder prints."""
    return f"{name}: " + " ".join(f"{key}={value}" for key, value in counts.items())


def _count_unknown(ids):
    return int(np.count_nonzero(ids[:-1] == UNK_ID))


# ----------------------------------------------------------------------------------------------------------------
# Aligned pairs (fine-tuning)
# ----------------------------------------------------------------------------------------------------------------

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
    bar = progress_bar(total=len(sources), desc="encoding pairs", unit="pair", leave=False)
    for index, (source_line, target_line) in enumerate(zip(sources, targets)):
        bar.update(1)
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
    bar.close()
    return examples, counts


def check_record_set_output(path, format, num_shards):
    """Before any work: every file a record set PATH of `num_shards` shards may write can be written."""
    for shard in shard_paths(path, num_shards):
        check_output_file(shard, "record file")
        if format == "mindrecord":
            check_output_file(shard + ".db", "record index file")


def build_pair_record_sets(splits, vocab, *, output_folder, prefix, max_len, noise_prob, seed, format,
                           num_shards=1, token_map=None, processes=1):
    """Builds OUTPUT/{prefix}_{split}.{format} for each (split, source file, target file, is_train); returns
    {split: counts}, each ending with output=(first record file). Every input is read and checked before anything
    is written, and every output is checked to be writable first."""
    check_output_folder(output_folder, "--output_folder")
    for name, *_ in splits:
        check_record_set_output(os.path.join(output_folder, f"{prefix}_{name}.{format}"), format, num_shards)
    texts = [(name, read_pair_files(source, target), train) for name, source, target, train in splits]
    built = []
    for name, (sources, targets), train in texts:
        examples, counts = build_pair_examples(sources, targets, vocab, max_len=max_len, train=train,
                                               noise_prob=noise_prob, seed=seed, token_map=token_map)
        if not examples:
            raise UserError(f"{prefix} {name}: every pair was dropped (longer than --max_len {max_len} or empty)")
        built.append((name, examples, counts))
    for name, examples, counts in built:
        path = os.path.join(output_folder, f"{prefix}_{name}.{format}")
        paths = write_records(path, examples, format=format, num_shards=min(num_shards, len(examples)),
                              vocab_size=len(vocab), processes=processes)
        counts["output"] = paths[0]
    return {name: counts for name, _, counts in built}


# ----------------------------------------------------------------------------------------------------------------
# Monolingual sentences (MASS pre-training)
# ----------------------------------------------------------------------------------------------------------------

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


@dataclasses.dataclass
class _MaskJob:
    """What every masking worker reads: given once to each worker by the pool initializer (shared, not copied,
    where workers are forked)."""
    items: list
    vocab: object
    language_model: str
    mask_ratio: float
    seed: int
    format: str = None


_job = None  # this worker's _MaskJob


def _start_worker(job):
    global _job
    _job = job


def _mask_range(job, bounds):
    """(examples, unknown tokens) of items[start:end]."""
    examples, unknown = [], 0
    for index, line in job.items[bounds[0]:bounds[1]]:
        ids = job.vocab.encode_line(line)
        unknown += _count_unknown(ids)
        # Seeded by the sentence's global line index: the same output whatever the number of processes.
        rng = np.random.default_rng([job.seed, index])
        examples.append(mask_sentence(job.language_model, ids, rng, job.mask_ratio, len(job.vocab)))
    return examples, unknown


def _mask_task(bounds):
    return _mask_range(_job, bounds)


def _mask_and_write_shard(job, task):
    start, end, target = task
    examples, unknown = _mask_range(job, (start, end))
    validate_examples(examples, len(job.vocab), where=target)
    write_shard(target, examples, job.format)
    return end - start, unknown


def _mask_and_write_task(task):
    return _mask_and_write_shard(_job, task)


def mask_monolingual(items, vocab, *, language_model, mask_ratio, seed, processes=1, chunk_size=2000,
                     progress=None):
    """Encodes and masks (line index, line) items, in a process pool when processes > 1; returns
    (examples in input order, number of unknown tokens)."""
    job = _MaskJob(items, vocab, language_model, mask_ratio, seed)
    ranges = [(start, min(start + chunk_size, len(items))) for start in range(0, len(items), chunk_size)]
    examples, unknown = [], 0
    with process_pool(processes if len(ranges) > 1 else 1, _start_worker, (job,)) as pool:
        mask = _mask_task if pool else functools.partial(_mask_range, job)
        for chunk_examples, chunk_unknown in ordered_map(pool, mask, ranges):
            examples.extend(chunk_examples)
            unknown += chunk_unknown
            if progress is not None:
                progress.update(len(chunk_examples))
    return examples, unknown


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
        job = _MaskJob(items, vocab, language_model, mask_ratio, seed, format)
        import_writer(format)
        unknown = 0
        with staged_record_set(path, format, num_shards) as staged:
            tasks = [(start, end, target) for target, (start, end) in zip(staged, shard_bounds(len(items), num_shards))]
            with process_pool(min(processes, num_shards), _start_worker, (job,)) as pool:
                for count, shard_unknown in ordered_map(pool, _mask_and_write_task, tasks):
                    unknown += shard_unknown
                    if progress is not None:
                        progress.update(count)
        return shard_paths(path, num_shards), unknown
    examples, unknown = mask_monolingual(items, vocab, language_model=language_model, mask_ratio=mask_ratio,
                                         seed=seed, processes=processes, progress=progress)
    return write_records(path, examples, format=format, num_shards=num_shards, vocab_size=len(vocab)), unknown
