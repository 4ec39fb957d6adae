"""Text to examples, the steps news_crawl.py, gigaword.py and cornell_dialog.py share: read and check text
files, filter and mask monolingual sentences, encode aligned pairs, and write the record sets (src/records.py).

Every random draw is keyed by the sentence's (or pair's) line index, so the records are the same for any
number of processes.

The builders stream: a first pass reads the text once (checks it, counts what is kept and dropped, the token
counts of a vocabulary to build, the row sizes that fix MindRecord's page sizes) and notes where every
CHUNK-th kept item starts (`Scan.checkpoints`); the second pass encodes, masks and writes chunks of CHUNK items,
each read from its checkpoint. Memory is a few chunks, whatever the corpus. With --processes > 1 the chunks are
built in a pool while this process writes, or, with several shards, each worker builds and writes whole shards
(examples never travel between processes). Chunks are aligned to the checkpoints and the writers cut their calls
at the same rows either way, so the bytes are the same for any --processes.
"""
import bisect
import collections
import dataclasses
import itertools
import os

import numpy as np

from src.corpus_files import LinePosition, iter_text_lines
from src.dictionary import EOS_ID, UNK_ID
from src.errors import UserError, check_output_file, check_output_folder, require_file
from src.masking import Example, fragment_length, make_pair_example, mask_sentences
from src.records import (ShardSetWriter, ShardWriter, import_writer, infer_format, page_sizes, shard_bounds,
                         shard_paths, staged_record_set, validate_examples)
from src.workers import ordered_job_map

CHUNK = 2000  # items per chunk of work (and per record write call)


def read_text_lines(path, what="text file"):
    """Lines of a UTF-8 file without their newlines; a one-line UserError if it is missing, binary or empty."""
    require_file(path, what)
    return [text for _, text in iter_text_lines([path], what)]


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


def check_record_set_output(path, format, num_shards):
    """Before any work: every file a record set PATH of `num_shards` shards may write can be written."""
    for shard in shard_paths(path, num_shards):
        check_output_file(shard, "record file")
        if format == "mindrecord":
            check_output_file(shard + ".db", "record index file")


# ----------------------------------------------------------------------------------------------------------------
# The two passes, for any kind of item
# ----------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Scan:
    """What the first pass learnt: counts for the summary, the number of kept items, where every CHUNK-th kept
    item starts (kept index, position), and the bytes of the largest row and of all rows (upper bounds)."""
    counts: dict
    kept: int = 0
    checkpoints: list = dataclasses.field(default_factory=list)
    largest_row: int = 0
    total_bytes: int = 0

    def keep(self, position, row_bytes):
        if self.kept % CHUNK == 0:
            self.checkpoints.append((self.kept, position))
        self.kept += 1
        self.largest_row = max(self.largest_row, row_bytes)
        self.total_bytes += row_bytes


@dataclasses.dataclass
class _BuildJob:
    """What every worker reads: given once to each worker by the pool initializer (shared, not copied, where
    workers are forked). `build(job, start, end)` returns (examples, counts) of kept items [start, end)."""
    build: object
    scan: Scan
    format: str
    vocab: object
    settings: dict


def _chunk_ranges(start, end):
    """[start, end) cut at multiples of CHUNK (the checkpoints)."""
    edges = sorted({start, end, *range((start // CHUNK + 1) * CHUNK, end, CHUNK)})
    return list(zip(edges[:-1], edges[1:]))


def _checkpoint_before(scan, start):
    """(kept index, position) of the last checkpoint at or before kept item `start`."""
    index = bisect.bisect_right([kept for kept, _ in scan.checkpoints], start) - 1
    return scan.checkpoints[index]


def _build_chunk(job, bounds):
    examples, counts = job.build(job, *bounds)
    validate_examples(examples, len(job.vocab), where=f"items {bounds[0]}-{bounds[1]}")
    return examples, counts


def _build_and_write_shard(job, task):
    start, end, target = task
    writer = ShardWriter(target, job.format, page_sizes(job.scan.largest_row, job.scan.total_bytes))
    counts = collections.Counter()
    for bounds in _chunk_ranges(start, end):
        examples, chunk_counts = _build_chunk(job, bounds)
        writer.write(examples)
        counts.update(chunk_counts)
    writer.close()
    return end - start, counts


def write_streamed_record_set(path, job, *, num_shards, processes, progress=None):
    """Builds and writes the kept items of `job.scan` to PATH / PATH0 ..; returns (record paths, summed counts of
    the build function). With processes > 1 and several shards each worker builds and writes whole shards;
    otherwise chunks are built in the pool (or here) and written by this process. The bytes are the same."""
    total = job.scan.kept
    if num_shards < 1 or num_shards > total:
        raise UserError(f"{path}: cannot split {total} examples into {num_shards} shards")
    counts = collections.Counter()
    import_writer(job.format)  # before the pool starts: forked workers inherit it
    with staged_record_set(path, job.format, num_shards) as staged:
        bounds = shard_bounds(total, num_shards)
        if processes > 1 and num_shards > 1:
            tasks = [(start, end, target) for target, (start, end) in zip(staged, bounds)]
            for count, shard_counts in ordered_job_map(min(processes, num_shards), job, _build_and_write_shard,
                                                       tasks):
                counts.update(shard_counts)
                if progress is not None:
                    progress.update(count)
        else:
            writer = ShardSetWriter(staged, [end - start for start, end in bounds], job.format,
                                    page_sizes(job.scan.largest_row, job.scan.total_bytes))
            ranges = _chunk_ranges(0, total)
            for examples, chunk_counts in ordered_job_map(processes if len(ranges) > 1 else 1, job, _build_chunk,
                                                          ranges):
                writer.write(examples)
                counts.update(chunk_counts)
                if progress is not None:
                    progress.update(len(examples))
            writer.close()
    return shard_paths(path, num_shards), counts


# ----------------------------------------------------------------------------------------------------------------
# Aligned pairs (fine-tuning)
# ----------------------------------------------------------------------------------------------------------------

def truncate_ids(ids, max_len):
    """The first max_len - 1 tokens and </s>."""
    return ids if len(ids) <= max_len else np.concatenate((ids[:max_len - 1], [EOS_ID])).astype(np.int32)


def pair_fate(source_tokens, target_tokens, max_len, train):
    """What happens to a pair of n and m tokens (n + 1 and m + 1 ids with </s>): train pairs with an empty side
    or a side longer than max_len ids are dropped; valid/test pairs are kept, longer sides truncated. Returns
    (kept, counts to add)."""
    if train:
        if not source_tokens or not target_tokens:
            return False, ("dropped_empty",)
        if source_tokens + 1 > max_len:
            return False, ("dropped_source_too_long",)
        if target_tokens + 1 > max_len:
            return False, ("dropped_target_too_long",)
        return True, ()
    return True, tuple(name for name, tokens in (("truncated_source", source_tokens),
                                                 ("truncated_target", target_tokens)) if tokens + 1 > max_len)


PAIR_COUNTS = ("pairs", "kept", "dropped_empty", "dropped_source_too_long", "dropped_target_too_long",
               "truncated_source", "truncated_target", "unknown_tokens")


def build_pair_examples(sources, targets, vocab, *, max_len, train, noise_prob=0.0, seed=0, token_map=None,
                        first_index=0):
    """Encodes aligned lines into fine-tuning examples; returns (examples, counts).

    train: pairs with an empty side or a side longer than max_len ids (</s> included) are dropped and counted,
    and the source is noised with noise_prob (rng default_rng([seed, line index]); the first line has index
    `first_index`). Otherwise (valid/test) every pair is kept, so scores cover the whole set: longer sides are
    truncated to max_len ids (keeping </s>) and counted. token_map rewrites tokens before lookup (e.g. Gigaword's
    `UNK` -> `<unk>`).
    """
    counts = dict.fromkeys(PAIR_COUNTS, 0)
    counts["pairs"] = len(sources)
    examples = []
    for index, (source_line, target_line) in enumerate(zip(sources, targets), first_index):
        source_tokens, target_tokens = source_line.split(), target_line.split()
        kept, fates = pair_fate(len(source_tokens), len(target_tokens), max_len, train)
        for name in fates:
            counts[name] += 1
        if not kept:
            continue
        if token_map:
            source_tokens = [token_map.get(t, t) for t in source_tokens]
            target_tokens = [token_map.get(t, t) for t in target_tokens]
        source_ids = truncate_ids(vocab.encode_tokens(source_tokens), max_len)
        target_ids = truncate_ids(vocab.encode_tokens(target_tokens), max_len)
        counts["unknown_tokens"] += _count_unknown(source_ids) + _count_unknown(target_ids)
        noise = noise_prob if train else 0.0
        rng = np.random.default_rng([seed, index]) if noise > 0 else None
        examples.append(make_pair_example(source_ids, target_ids, rng=rng, noise_prob=noise))
    counts["kept"] = len(examples)
    return examples, counts


def _pair_lines(paths, start=(LinePosition(), LinePosition())):
    """((source position, target position), source text, target text) of two aligned files, streamed; a one-line
    UserError naming both files when their line counts differ."""
    sources = iter_text_lines(paths[:1], "source file", start[0])
    targets = iter_text_lines(paths[1:], "target file", start[1])
    for source, target in itertools.zip_longest(sources, targets):
        if source is None or target is None:
            raise UserError(f"misaligned pair files: {paths[0]} has {_count_lines(paths[0])} lines but {paths[1]} "
                            f"has {_count_lines(paths[1])}")
        yield (source[0], target[0]), source[1], target[1]


def _count_lines(path):
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def scan_pairs(source_path, target_path, *, max_len, train):
    """The first pass over a pair split (see the module docstring)."""
    require_file(source_path, "source file")
    require_file(target_path, "target file")
    scan = Scan(dict.fromkeys(PAIR_COUNTS, 0))
    for position, source, target in _pair_lines((source_path, target_path)):
        source_tokens, target_tokens = len(source.split()), len(target.split())
        scan.counts["pairs"] += 1
        kept, fates = pair_fate(source_tokens, target_tokens, max_len, train)
        for name in fates:
            scan.counts[name] += 1
        if kept:
            source_ids, target_ids = min(source_tokens + 1, max_len), min(target_tokens + 1, max_len)
            scan.keep(position, 4 * (3 * target_ids + 2 * source_ids) + 64)
    scan.counts["kept"] = scan.kept
    return scan


def _build_pairs(job, start, end):
    """Examples of kept pairs [start, end) of job.scan, read from the checkpoint before `start`."""
    settings = job.settings
    kept, position = _checkpoint_before(job.scan, start)
    examples, unknown = [], 0
    for (source_position, _), source, target in _pair_lines(settings["paths"], position):
        if not pair_fate(len(source.split()), len(target.split()), settings["max_len"], settings["train"])[0]:
            continue
        if kept >= end:
            break
        if kept >= start:  # built alone, with its line index: the noise is that of the whole file built at once
            built, counts = build_pair_examples(
                [source], [target], job.vocab, max_len=settings["max_len"], train=settings["train"],
                noise_prob=settings["noise_prob"], seed=settings["seed"], token_map=settings["token_map"],
                first_index=source_position.line)
            examples.extend(built)
            unknown += counts["unknown_tokens"]
        kept += 1
    return examples, {"unknown_tokens": unknown}


def build_pair_record_sets(splits, vocab, *, output_folder, prefix, max_len, noise_prob, seed, format,
                           num_shards=1, token_map=None, processes=1):
    """Builds OUTPUT/{prefix}_{split}.{format} for each (split, source file, target file, is_train); returns
    {split: counts}, each ending with output=(first record file). Every input is read and checked before anything
    is written, and every output is checked to be writable first."""
    check_output_folder(output_folder, "--output_folder")
    for name, *_ in splits:
        check_record_set_output(os.path.join(output_folder, f"{prefix}_{name}.{format}"), format, num_shards)
    scans = []
    for name, source, target, train in splits:
        scan = scan_pairs(source, target, max_len=max_len, train=train)
        if not scan.kept:
            raise UserError(f"{prefix} {name}: every pair was dropped (longer than --max_len {max_len} or empty)")
        scans.append((name, source, target, train, scan))
    built = {}
    for name, source, target, train, scan in scans:
        path = os.path.join(output_folder, f"{prefix}_{name}.{format}")
        settings = dict(paths=(source, target), max_len=max_len, train=train, noise_prob=noise_prob, seed=seed,
                        token_map=token_map)
        job = _BuildJob(_build_pairs, scan, infer_format(path, format), vocab, settings)
        paths, counts = write_streamed_record_set(path, job, num_shards=min(num_shards, scan.kept),
                                                  processes=processes)
        built[name] = dict(scan.counts, unknown_tokens=counts["unknown_tokens"], output=paths[0])
    return built


# ----------------------------------------------------------------------------------------------------------------
# Monolingual sentences (MASS pre-training)
# ----------------------------------------------------------------------------------------------------------------

def sentence_kept(num_tokens, min_len, max_len):
    """A sentence of m tokens becomes m + 1 ids with </s>; it is kept when m >= min_len and m + 1 <= max_len."""
    return min_len <= num_tokens and num_tokens + 1 <= max_len


def masked_row_bytes(num_tokens, language_model, mask_ratio):
    """Upper bound of a masked sentence's record size: sentence and source m + 1 ids, three decoder arrays of
    the fragment (one longer for loose)."""
    target = fragment_length(num_tokens, mask_ratio) + (language_model == "loose")
    return 4 * (2 * (num_tokens + 1) + 3 * target) + 64


def scan_monolingual(paths, *, min_len, max_len, language_model, mask_ratio, count_tokens=False):
    """The first pass over monolingual text files (see the module docstring); with count_tokens, the token
    counts of the kept sentences (what a vocabulary built from the data covers) in `scan.token_counts`."""
    scan = Scan(dict(read=0, kept=0, dropped_too_long=0, dropped_too_short=0))
    scan.token_counts = collections.Counter() if count_tokens else None
    for position, line in iter_text_lines(paths, "corpus file"):
        tokens = line.split()
        if len(tokens) < min_len:
            scan.counts["dropped_too_short"] += 1
        elif len(tokens) + 1 > max_len:
            scan.counts["dropped_too_long"] += 1
        else:
            scan.keep(position, masked_row_bytes(len(tokens), language_model, mask_ratio))
            if count_tokens:
                scan.token_counts.update(tokens)
    scan.counts["kept"] = scan.kept
    scan.counts["read"] = scan.kept + scan.counts["dropped_too_long"] + scan.counts["dropped_too_short"]
    return scan


def _mask_items(items, vocab, language_model, mask_ratio, seed):
    """(examples, unknown tokens) of (line index, line) items, masked together (`mask_sentences`) with draws keyed
    by (seed, 0, line index): the same output whatever the chunks and the number of processes."""
    if not items:
        return [], 0
    sentences = [vocab.encode_line(line) for _, line in items]
    unknown = sum(_count_unknown(ids) for ids in sentences)
    padded = np.zeros((len(sentences), max(len(ids) for ids in sentences)), dtype=np.int32)
    for row, ids in enumerate(sentences):
        padded[row, :len(ids)] = ids
    source, decoder_input, target, positions, lengths = mask_sentences(
        language_model, padded, [len(ids) - 1 for ids in sentences], seed, 0, [index for index, _ in items],
        mask_ratio, len(vocab))
    examples = [Example(ids, source[row, :len(ids)], decoder_input[row, :length], target[row, :length],
                        positions[row, :length]) for row, (ids, length) in enumerate(zip(sentences, lengths))]
    return examples, unknown


def _build_sentences(job, start, end):
    """Masked examples of kept sentences [start, end) of job.scan, read from the checkpoint before `start`."""
    settings = job.settings
    kept, position = _checkpoint_before(job.scan, start)
    items = []
    for line_position, line in iter_text_lines(settings["paths"], "corpus file", position):
        if not sentence_kept(len(line.split()), settings["min_len"], settings["max_len"]):
            continue
        if kept >= end:
            break
        if kept >= start:
            items.append((line_position.line, line))
        kept += 1
    examples, unknown = _mask_items(items, job.vocab, settings["language_model"], settings["mask_ratio"],
                                    settings["seed"])
    return examples, {"unknown_tokens": unknown}


def build_monolingual_records(paths, scan, vocab, *, path, language_model, mask_ratio, seed, min_len, max_len,
                              format=None, num_shards=1, processes=1, progress=None):
    """Masks the kept sentences of text files `paths` (first pass: `scan`) and writes them to PATH / PATH0 ..;
    returns (record paths, unknown tokens)."""
    settings = dict(paths=list(paths), language_model=language_model, mask_ratio=mask_ratio, seed=seed,
                    min_len=min_len, max_len=max_len)
    job = _BuildJob(_build_sentences, scan, infer_format(path, format), vocab, settings)
    written, counts = write_streamed_record_set(path, job, num_shards=num_shards, processes=processes,
                                                progress=progress)
    return written, counts["unknown_tokens"]


def mask_monolingual(items, vocab, *, language_model, mask_ratio, seed, processes=1, chunk_size=CHUNK,
                     progress=None):
    """Encodes and masks in-memory (line index, line) items, in a process pool when processes > 1; returns
    (examples in input order, number of unknown tokens)."""
    chunks = [items[start:start + chunk_size] for start in range(0, len(items), chunk_size)]
    settings = (vocab, language_model, mask_ratio, seed)
    examples, unknown = [], 0
    for chunk_examples, chunk_unknown in ordered_job_map(processes if len(chunks) > 1 else 1, settings, _mask_chunk,
                                                         chunks):
        examples.extend(chunk_examples)
        unknown += chunk_unknown
        if progress is not None:
            progress.update(len(chunk_examples))
    return examples, unknown


def _mask_chunk(settings, chunk):
    return _mask_items(chunk, *settings)


__all__ = ["read_text_lines", "read_pair_files", "format_counts", "check_record_set_output", "build_pair_examples",
           "build_pair_record_sets", "scan_monolingual", "build_monolingual_records", "mask_monolingual"]
