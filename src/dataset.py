"""Batches for training and evaluation: deterministic, resumable, streamed from record files in bounded memory.

Shapes: each batch pads source_ids to S and the decoder arrays to T, where S (T) is the smallest bucket boundary
>= the batch's longest source (target); a row longer than the largest boundary is padded to its own length
rounded up to a multiple of 8. Nothing is ever truncated. Pad id 0 everywhere; example_index is -1 on pad rows.

Rows: a `RowSet` is the rows of one or more record sets in order (a row's index is its position in the
concatenation, as `load_dataset` lists them). MindRecord files are read on demand, only the rows a batch needs;
their lengths come from MindRecord's own index (the .db file holds a column per scalar field, so the source and
target lengths of a million rows come back in about a second without reading a data page). TFRecord sets (no row
index) and lists of `Example`s are held in memory: they are for small sets (evaluation, tests).

Training plan: the rows are cut into windows of `window_rows` consecutive rows (never across files; 0: one window
per file or list). An epoch visits the windows in the order np.random.default_rng([seed, epoch]).permutation
gives; inside a window the rows are grouped by (S, T) bucket, each bucket's rows are permuted and cut into
global batches, and the window's batches are permuted, with default_rng([seed, epoch, window]) (no shuffle:
windows, buckets and rows in order). A window's number of batches depends on its lengths only, so len() is known
from the lengths before anything is read, and a resumed epoch (`start_batch`) finds its window and batch without
planning or reading the ones before. Memory: the plans of two windows (their row numbers and lengths) and the
batches in flight, whatever the size of the corpus.

Data parallel: `batch_size` (or the `max_tokens` budget, rows * max(S, T) <= max_tokens) is per rank: with
num_shards = N every rank plans the same global batches of N * rows rows from the lengths and reads only its
block of rows [shard_id * rows, (shard_id + 1) * rows) of each, so rank batches concatenated in rank order are
the global batch, and every rank has the same number of batches. The last batch of a bucket is filled with pad
rows (a rank may get a batch of pad rows only: weight the loss by non-pad targets and guard the division).
`global_tokens(number)` counts the target tokens of a whole global batch from the lengths, for the loss weights,
without communication.

eval_mode keeps the input order, takes every example exactly once, ignores max_tokens and pads the last batch
with pad rows to batch_size (per rank).

Dynamic masking (`dynamic`): masking (or the pairs' noise) is re-drawn from sentence_ids every epoch by the rules
of src/masking.py, a batch at a time (`mask_sentences`, `noise_sentences`), with draws hashed from (seed, epoch,
example index, draw number): they depend neither on the batches nor on the number of workers or ranks. Static
(stored) masks are copied as they are.

Workers: with a `pool` (`loader_pool`), batches of MindRecord sets are read, masked and padded in its worker
processes, a task being a run of consecutive batches of this rank (256 rows for the first, doubling up to 4,096:
each MindDataset read has a start-up cost), and come back in order with a bounded read-ahead (src/workers.py).
Without one it all happens here.

Why not MindSpore's pipeline end to end: MindDataset(num_shards, shard_id) splits rows between ranks, so the
ranks' batches would differ in shape and in number and the loss weights would need every rank's token count
before each step; bucket_batch_by_length has no token budget per bucket and no batch order shared by ranks;
skipping to a batch for resume would read and batch every row before it; `map` does not see a row's index,
which the per-example draws need; and a pipeline per window would restart its worker processes every window.
So MindSpore reads the rows (MindDataset with a SubsetSampler, padded in its pipeline: `records.read_rows`),
and the plan is NumPy.
"""
import collections
import dataclasses

import numpy as np

from src.errors import UserError
from src.masking import LANGUAGE_MODELS, fragment_lengths, hashed_fragments, mask_sentences, noise_sentences
from src.records import (infer_format, length_counts, mindrecord_length_counts, mindrecord_lengths, open_mindrecord,
                         read_record_file, read_records, read_rows, resolve_shards)
from src.workers import ordered_map

BATCH_FIELDS = ("source_ids", "decoder_input_ids", "decoder_positions", "target_ids")
TASK_ROWS = (256, 4096)  # rows of this rank in the first worker task and at most in later ones (doubling)


@dataclasses.dataclass(frozen=True)
class DynamicMasking:
    """language_model: mass | loose | mlm (monolingual records) or pair (fine-tuning records, noise only)."""
    language_model: str = "mass"
    mask_ratio: float = 0.5
    vocab_size: int = 0
    noise_prob: float = 0.0

    def __post_init__(self):
        if self.language_model not in LANGUAGE_MODELS + ("pair",):
            raise UserError(f"dynamic masking language_model must be one of {', '.join(LANGUAGE_MODELS)} or pair, "
                            f"got {self.language_model!r}")
        if self.language_model == "mass" and self.vocab_size <= 5:
            raise UserError("dynamic mass masking needs vocab_size (random replacement tokens)")
        if not 0.0 <= self.noise_prob < 1.0 or not 0.0 < self.mask_ratio <= 1.0:
            raise UserError("dynamic masking needs 0 < mask_ratio <= 1 and 0 <= noise_prob < 1")

    @property
    def fields(self):
        """The record fields a re-draw reads."""
        if self.language_model == "pair":
            return ("sentence_ids", "decoder_input_ids", "decoder_positions", "target_ids")
        return ("sentence_ids",)

    def plan_target_lengths(self, source_lengths, target_lengths):
        """Decoder lengths to bucket by: the fragment of a sentence of source_length - 1 tokens (for loose one more
        when the fragment may start after the first token: an upper bound); pairs keep theirs."""
        if self.language_model == "pair":
            return target_lengths
        tokens = np.asarray(source_lengths, dtype=np.int64) - 1
        fragment = fragment_lengths(tokens, self.mask_ratio)
        return fragment + (fragment < tokens) if self.language_model == "loose" else fragment

    def exact_target_lengths(self, indices, source_lengths, plan_lengths, seed, epoch):
        """The decoder lengths the masking gives rows `indices`: the plan's, but for loose, whose fragment start
        is drawn (the masker's draw 0 is repeated)."""
        if self.language_model != "loose":
            return plan_lengths
        return hashed_fragments("loose", np.asarray(source_lengths) - 1, seed, epoch, indices, self.mask_ratio)[2]

    def apply(self, batch, rows, sentences, indices, seed, epoch):
        """Writes the masking (or the noise) of `sentences` (zero-padded clean rows of examples `indices`) into
        rows `rows` of a batch."""
        num_tokens = np.count_nonzero(sentences, axis=1) - 1
        if self.language_model == "pair":
            _fill(batch["source_ids"], rows, noise_sentences(sentences, num_tokens, seed, epoch, indices,
                                                             self.noise_prob))
            return
        masked = mask_sentences(self.language_model, sentences, num_tokens, seed, epoch, indices, self.mask_ratio,
                                self.vocab_size)
        for name, values in zip(("source_ids", "decoder_input_ids", "target_ids", "decoder_positions"), masked):
            _fill(batch[name], rows, values)


def padded_length(length, boundaries):
    """Smallest boundary >= length, else length rounded up to a multiple of 8."""
    for boundary in boundaries:
        if length <= boundary:
            return boundary
    return -(-length // 8) * 8


def padded_lengths(lengths, boundaries):
    """padded_length of every length of an array."""
    lengths = np.asarray(lengths, dtype=np.int64)
    boundaries = np.asarray(boundaries, dtype=np.int64)
    position = np.searchsorted(boundaries, lengths)
    beyond = -(-lengths // 8) * 8
    return np.where(position < len(boundaries), boundaries[np.minimum(position, len(boundaries) - 1)], beyond)


# ----------------------------------------------------------------------------------------------------------------
# Rows: record files read on demand, or examples in memory
# ----------------------------------------------------------------------------------------------------------------

class _MindRecordPart:
    """One MindRecord file: rows read on demand (picklable: a worker opens the file itself)."""
    in_memory = False

    def __init__(self, path):
        self.path = path
        self.rows = open_mindrecord(path)

    def lengths(self, start, end):
        return mindrecord_lengths(self.path, start, end)

    def length_counts(self, start, end):
        return mindrecord_length_counts(self.path, start, end)

    def read(self, rows, fields):
        return read_rows(self.path, rows, fields)


class _MemoryPart:
    """Examples held in memory (a TFRecord set or a list)."""
    in_memory = True

    def __init__(self, examples):
        self.examples = list(examples)
        self.rows = len(self.examples)
        self.source_lengths = np.array([len(e.source_ids) for e in self.examples], dtype=np.int32)
        self.target_lengths = np.array([len(e.target_ids) for e in self.examples], dtype=np.int32)

    def lengths(self, start, end):
        return self.source_lengths[start:end], self.target_lengths[start:end]

    def length_counts(self, start, end):
        return length_counts(*self.lengths(start, end))

    def read(self, rows, fields):
        result = {}
        for field in fields:
            values = [np.atleast_1d(getattr(self.examples[row], field)) for row in rows]
            array = np.zeros((len(values), max((len(v) for v in values), default=1)), dtype=np.int32)
            for position, value in enumerate(values):
                array[position, :len(value)] = value
            result[field] = array
        return result


class RowSet:
    """The rows of record sets (or example lists), in order; see the module docstring."""

    def __init__(self, parts, name="data"):
        self.parts, self.name = list(parts), name
        self.offsets = np.cumsum([0] + [part.rows for part in self.parts])
        self.in_memory = any(part.in_memory for part in self.parts)
        self._window_shapes = {}

    def __len__(self):
        return int(self.offsets[-1])

    def lengths(self, start, end):
        """(source_lengths, target_lengths) of rows [start, end), stored lengths."""
        sources, targets = [], []
        for index, part in enumerate(self.parts):
            low, high = max(start, self.offsets[index]), min(end, self.offsets[index + 1])
            if low < high:
                source, target = part.lengths(int(low - self.offsets[index]), int(high - self.offsets[index]))
                sources.append(source)
                targets.append(target)
        if not sources:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32)
        return np.concatenate(sources), np.concatenate(targets)

    def check_vocabulary(self, vocab_size, rows=2048):
        """UserError when a token id of the first `rows` rows of each file (every row of sets held in memory) is
        outside [0, vocab_size): a set built with another vocabulary fails before training starts. The loader
        checks every batch as well."""
        largest = 0
        for part in self.parts:
            read = part.read(np.arange(part.rows if part.in_memory else min(rows, part.rows)),
                             ("source_ids", "target_ids"))
            largest = max(largest, *(int(array.max(initial=0)) for array in read.values()))
        if largest >= vocab_size:
            raise UserError(f"{self.name} data holds token id {largest} but model_config.vocab_size is {vocab_size} "
                            "- were the records built with another vocabulary?")

    def segments(self, rows):
        """(part, rows in the part, positions in `rows`) for each part that `rows` (global, distinct) touch."""
        rows = np.asarray(rows, dtype=np.int64)
        owner = np.searchsorted(self.offsets, rows, side="right") - 1
        return [(self.parts[index], rows[owner == index] - self.offsets[index], np.flatnonzero(owner == index))
                for index in np.unique(owner)]

    def windows(self, window_rows):
        """[start, end) row ranges of at most window_rows rows (0: whole parts), never across parts."""
        windows = []
        for index, part in enumerate(self.parts):
            size = window_rows if window_rows > 0 else max(part.rows, 1)
            windows.extend((int(self.offsets[index] + start), int(self.offsets[index] + min(start + size, part.rows)))
                           for start in range(0, part.rows, size))
        return windows

    def window_shapes(self, window_rows, boundaries, dynamic):
        """For each window, {(S, T) bucket: rows}: what fixes its number of batches (cached: one pass over the
        lengths per set of options)."""
        key = (window_rows, tuple(boundaries), dynamic)
        if key not in self._window_shapes:
            shapes = []
            for start, end in self.windows(window_rows):
                index = int(np.searchsorted(self.offsets, start, side="right") - 1)
                counts = self.parts[index].length_counts(int(start - self.offsets[index]),
                                                         int(end - self.offsets[index]))
                target = counts[:, 1] if dynamic is None else dynamic.plan_target_lengths(counts[:, 0], counts[:, 1])
                window = collections.Counter()
                for shape in zip(padded_lengths(counts[:, 0], boundaries), padded_lengths(target, boundaries),
                                 counts[:, 2]):
                    window[(int(shape[0]), int(shape[1]))] += int(shape[2])
                shapes.append(dict(window))
            self._window_shapes[key] = shapes
        return self._window_shapes[key]


def plan_lengths(rows, start, end, dynamic):
    """(source lengths, decoder lengths to bucket by) of rows [start, end)."""
    source, target = rows.lengths(start, end)
    if dynamic is not None:
        target = dynamic.plan_target_lengths(source, target)
    return np.asarray(source, dtype=np.int64), np.asarray(target, dtype=np.int64)


def _split_paths(paths):
    if isinstance(paths, str):
        paths = [p.strip() for p in paths.split(",") if p.strip()]
    if not paths:
        raise UserError("no record files given")
    return paths


def open_rows(paths, format=None, name="data"):
    """A RowSet of one or more record sets: a list, or a comma-separated string, of files / first shards.
    MindRecord files are checked and indexed (not read); TFRecord sets are read into memory."""
    parts = []
    for path in _split_paths(paths):
        files = resolve_shards(path)
        if infer_format(files[0], format) == "mindrecord":
            parts.extend(_MindRecordPart(file) for file in files)
        else:
            parts.extend(_MemoryPart(read_record_file(file, format)) for file in files)
    return RowSet(parts, name)


def as_rows(rows):
    """A RowSet as it is; a list of Examples as an in-memory RowSet."""
    return rows if isinstance(rows, RowSet) else RowSet([_MemoryPart(rows)], "examples")


def load_dataset(paths, format=None):
    """Every example of one or more record sets, in memory: a list of `Example`s."""
    examples = []
    for path in _split_paths(paths):
        examples.extend(read_records(path, format))
    return examples


# ----------------------------------------------------------------------------------------------------------------
# Building batches (here or in a worker process)
# ----------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Task:
    """A run of consecutive batches of this rank: `rows` (distinct global indices of their real rows) are read
    from `segments` (see RowSet.segments); each batch is (example indices of its rows, -1 for pad rows; (S, T))."""
    segments: list
    rows: np.ndarray
    batches: list
    fields: tuple
    dynamic: DynamicMasking
    seed: int
    epoch: int
    vocab_size: int
    name: str


def _read(task):
    """{field: [len(task.rows), width]} of the task's rows, in task.rows order."""
    pieces = [(positions, part.read(rows, task.fields)) for part, rows, positions in task.segments]
    result = {}
    for field in task.fields:
        width = max((data[field].shape[1] for _, data in pieces), default=1)
        array = np.zeros((len(task.rows), width), dtype=np.int32)
        for positions, data in pieces:
            array[positions, :data[field].shape[1]] = data[field]
        result[field] = array
    return result


def _fill(array, rows, values):
    """array[rows] = values (rows of zero-padded data, cut or padded to the array's width)."""
    width = min(array.shape[1], values.shape[1])
    array[rows, :width] = values[:, :width]


def build_batches(task):
    """The batches of a task as int32 arrays (BATCH_FIELDS and example_index)."""
    data = _read(task)
    order = np.argsort(task.rows)
    sorted_rows = task.rows[order]
    batches = []
    for indices, (source_pad, target_pad) in task.batches:
        real = np.flatnonzero(indices >= 0)
        slots = order[np.searchsorted(sorted_rows, indices[real])]
        batch = {"source_ids": np.zeros((len(indices), source_pad), dtype=np.int32)}
        for name in BATCH_FIELDS[1:]:
            batch[name] = np.zeros((len(indices), target_pad), dtype=np.int32)
        if task.dynamic is None or task.dynamic.language_model == "pair":
            for name in BATCH_FIELDS if task.dynamic is None else BATCH_FIELDS[1:]:
                _fill(batch[name], real, data[name][slots])
        if task.dynamic is not None and len(real):
            task.dynamic.apply(batch, real, data["sentence_ids"][slots], indices[real], task.seed, task.epoch)
        batch["example_index"] = indices.astype(np.int32)
        largest = max(int(batch["source_ids"].max(initial=0)), int(batch["target_ids"].max(initial=0)))
        if task.vocab_size is not None and largest >= task.vocab_size:
            raise UserError(f"{task.name} data holds token id {largest} but model_config.vocab_size is "
                            f"{task.vocab_size} - were the records built with another vocabulary?")
        batches.append(batch)
    return batches


# ----------------------------------------------------------------------------------------------------------------
# The batches of one epoch
# ----------------------------------------------------------------------------------------------------------------

class BatchIterator:
    """This rank's batches of one epoch: len(), iteration from start_batch, batch(number) (sequential calls read
    ahead in the pool; others build the one batch here), global_indices(number) and global_tokens(number)."""

    def __init__(self, rows, *, batch_size, max_tokens=0, bucket_boundaries=(16, 32, 64), shuffle=True, seed=0,
                 epoch=0, num_shards=1, shard_id=0, eval_mode=False, dynamic=None, start_batch=0, window_rows=0,
                 pool=None, vocab_size=None, read_ahead=3):
        if not 0 <= shard_id < num_shards:
            raise UserError(f"shard_id must be in [0, {num_shards}), got {shard_id}")
        if (max_tokens <= 0 or eval_mode) and batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        boundaries = sorted(int(b) for b in bucket_boundaries)
        if not boundaries or boundaries[0] < 1:
            raise UserError(f"bucket_boundaries must be positive lengths, got {list(bucket_boundaries)}")
        self.rows = as_rows(rows)
        self.boundaries, self.batch_size, self.max_tokens = boundaries, batch_size, max_tokens
        self.num_shards, self.shard_id, self.start_batch = num_shards, shard_id, start_batch
        self.shuffle, self.seed, self.epoch, self.eval_mode = shuffle, seed, epoch, eval_mode
        self.dynamic, self.vocab_size, self.read_ahead = dynamic, vocab_size, read_ahead
        self.pool = None if self.rows.in_memory else pool
        self.fields = dynamic.fields if dynamic is not None else BATCH_FIELDS
        self._stream, self._next, self._last = None, None, (None, None)
        self._plans = collections.OrderedDict()  # the last two windows' plans
        if eval_mode:
            # Windows of whole global batches, in order (they may span files).
            self.global_rows = batch_size * num_shards
            size = self.global_rows * max(1, window_rows // self.global_rows) if window_rows > 0 else len(self.rows)
            self.windows = [(start, min(start + size, len(self.rows))) for start in range(0, len(self.rows), size)]
            self.counts = np.array([-(-(end - start) // self.global_rows) for start, end in self.windows],
                                   dtype=np.int64)
        else:
            self.windows = self.rows.windows(window_rows)
            shapes = self.rows.window_shapes(window_rows, boundaries, dynamic)
            order = (np.random.default_rng([seed, epoch]).permutation(len(self.windows)) if shuffle
                     else np.arange(len(self.windows)))
            self.windows = [self.windows[w] for w in order]
            self.window_ids = [int(w) for w in order]
            self.counts = np.array([sum(-(-rows // (self.rows_per_rank(*shape) * num_shards))
                                        for shape, rows in shapes[w].items()) for w in order], dtype=np.int64)
        self.first_batch = np.concatenate(([0], np.cumsum(self.counts)))

    def rows_per_rank(self, source_pad, target_pad):
        if self.max_tokens > 0:
            return max(1, self.max_tokens // max(source_pad, target_pad))
        return self.batch_size

    def __len__(self):
        return int(self.first_batch[-1])

    # -- plans ------------------------------------------------------------------------------------------------

    def _window_plan(self, position):
        """(batches: [(global indices, (S, T))], source lengths, decoder lengths to bucket by, first row) of the
        window at `position` in the epoch's order."""
        if position not in self._plans:
            self._plans[position] = self._plan_window(position)
            while len(self._plans) > 2:
                self._plans.popitem(last=False)
        return self._plans[position]

    def _plan_window(self, position):
        start, end = self.windows[position]
        source, target = plan_lengths(self.rows, start, end, self.dynamic)
        if self.eval_mode:
            return self._eval_plan(source, target, start), source, target, start
        rng = (np.random.default_rng([self.seed, self.epoch, self.window_ids[position]]) if self.shuffle else None)
        shapes = np.stack([padded_lengths(source, self.boundaries), padded_lengths(target, self.boundaries)], axis=1)
        plan = []
        for shape in sorted({(int(s), int(t)) for s, t in shapes}):
            members = start + np.flatnonzero((shapes[:, 0] == shape[0]) & (shapes[:, 1] == shape[1]))
            if rng is not None:
                members = rng.permutation(members)
            rows = self.rows_per_rank(*shape) * self.num_shards
            for first in range(0, len(members), rows):
                indices = np.full(rows, -1, dtype=np.int64)
                chunk = members[first:first + rows]
                indices[:len(chunk)] = chunk
                plan.append((indices, shape))
        if rng is not None:
            plan = [plan[i] for i in rng.permutation(len(plan))]
        assert len(plan) == self.counts[position]
        return plan, source, target, start

    def _eval_plan(self, source, target, start):
        plan = []
        for first in range(0, len(source), self.global_rows):
            indices = np.full(self.global_rows, -1, dtype=np.int64)
            chunk = np.arange(first, min(first + self.global_rows, len(source)))
            indices[:len(chunk)] = start + chunk
            plan.append((indices, (padded_length(int(source[chunk].max()), self.boundaries),
                                   padded_length(int(target[chunk].max()), self.boundaries))))
        return plan

    def _locate(self, number):
        if not 0 <= number < len(self):
            raise IndexError(f"batch {number} of an epoch of {len(self)}")
        position = int(np.searchsorted(self.first_batch, number, side="right") - 1)
        return position, number - int(self.first_batch[position])

    def global_indices(self, number):
        """Example indices of a global batch (all ranks' rows, -1 for pad rows)."""
        position, offset = self._locate(number)
        return self._window_plan(position)[0][offset][0]

    def global_tokens(self, number):
        """Target tokens of a global batch over all ranks, from the lengths (no communication needed)."""
        position, offset = self._locate(number)
        plan, source, target, first = self._window_plan(position)
        indices = plan[offset][0]
        real = indices[indices >= 0]
        lengths = target[real - first]
        if self.dynamic is not None:
            lengths = self.dynamic.exact_target_lengths(real, source[real - first], lengths, self.seed, self.epoch)
        return int(np.sum(lengths))

    # -- batches ----------------------------------------------------------------------------------------------

    def _mine(self, indices):
        rows = len(indices) // self.num_shards
        return indices[self.shard_id * rows:(self.shard_id + 1) * rows]

    def _task(self, batches):
        mine = [(self._mine(indices), shape) for indices, shape in batches]
        rows = np.concatenate([indices[indices >= 0] for indices, _ in mine])
        return _Task(self.rows.segments(rows), rows, mine, self.fields, self.dynamic, self.seed, self.epoch,
                     self.vocab_size, self.rows.name)

    def _tasks(self, number):
        """Tasks of this rank's batches from batch `number` to the end of the epoch."""
        if number >= len(self):
            return
        position, offset = self._locate(number)
        task_rows = TASK_ROWS[0]  # small first: the first batch comes quickly; then larger: MindDataset's start-up
        for position in range(position, len(self.windows)):
            plan = self._window_plan(position)[0]
            group, rows = [], 0
            for indices, shape in plan[offset:]:
                group.append((indices, shape))
                rows += len(indices) // self.num_shards
                if rows >= task_rows:
                    yield self._task(group)
                    group, rows, task_rows = [], 0, min(2 * task_rows, TASK_ROWS[1])
            if group:
                yield self._task(group)
            offset = 0

    def _batches_from(self, number):
        tasks = self._tasks(number)
        results = ordered_map(self.pool, build_batches, tasks, self.read_ahead) if self.pool is not None \
            else map(build_batches, tasks)
        for batches in results:
            yield from batches

    def batch(self, number):
        """This rank's rows of global batch `number` as int32 arrays. A call for the batch after the previous
        call's reads on from there (ahead, in the pool); any other is built alone, here."""
        if number == self._last[0]:
            return self._last[1]
        position, offset = self._locate(number)
        if number == self._next:
            if self._stream is None:
                self._stream = self._batches_from(number)
            result = next(self._stream)
        else:
            self._stream = None
            result = build_batches(self._task([self._window_plan(position)[0][offset]]))[0]
        self._next, self._last = number + 1, (number, result)
        return result

    def __iter__(self):
        return self._batches_from(self.start_batch)


def iterate_batches(rows, **options):
    """A `BatchIterator` over a RowSet or a list of Examples (see the module docstring for the options)."""
    return BatchIterator(rows, **options)
