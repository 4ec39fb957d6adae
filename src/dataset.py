"""Batches for training and evaluation: pure NumPy over a list of `Example`s, deterministic and resumable.

Shapes: each batch pads source_ids to S and the decoder arrays to T, where S (T) is the smallest bucket boundary
>= the batch's longest source (target); a row longer than the largest boundary is padded to its own length
rounded up to a multiple of 8. Nothing is ever truncated. Pad id 0 everywhere; example_index is -1 on pad rows.

Training batches group examples with the same (S, T) bucket pair, so each batch has one of a few static shapes.
`batch_size` (or the `max_tokens` budget, rows * max(S, T) <= max_tokens) is per rank: with num_shards = N
every rank builds the same list of global batches of N * rows rows and takes the contiguous block of rows
[shard_id * rows, (shard_id + 1) * rows). Rank batches concatenated in rank order are the global batch, so
2 ranks x B rows see exactly what 1 process x 2B rows sees. The last batch of a bucket is filled with pad rows
(a rank may then get a batch of pad rows only: weight the loss by non-pad targets and guard the division).

Order: with shuffle, examples within a bucket and then the batches are permuted by
np.random.default_rng([seed, epoch]); the same seed and epoch give the same batches, and `start_batch` skips to
a position for resume. eval_mode keeps the input order, takes every example exactly once, ignores max_tokens and
pads the last batch with pad rows to batch_size.

Dynamic masking (`dynamic`): masking (or the pairs' noise) is re-drawn from sentence_ids every epoch with
np.random.default_rng([seed, epoch, example index]); without it the stored arrays are used.
"""
import dataclasses

import numpy as np

from src.errors import UserError
from src.masking import LANGUAGE_MODELS, Example, mask_sentence, noise_channel
from src.records import read_records

BATCH_FIELDS = ("source_ids", "decoder_input_ids", "decoder_positions", "target_ids")


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

    def redraw(self, example, rng):
        if self.language_model == "pair":
            source = noise_channel(example.sentence_ids, rng, self.noise_prob)
            return Example(example.sentence_ids, source, example.decoder_input_ids, example.target_ids,
                           example.decoder_positions)
        return mask_sentence(self.language_model, example.sentence_ids, rng, self.mask_ratio, self.vocab_size)


def padded_length(length, boundaries):
    """Smallest boundary >= length, else length rounded up to a multiple of 8."""
    for boundary in boundaries:
        if length <= boundary:
            return boundary
    return -(-length // 8) * 8


def epoch_examples(examples, dynamic, seed, epoch):
    """The examples of one epoch: re-masked by `dynamic` (a DynamicMasking) when given, else the stored ones."""
    if dynamic is None:
        return examples
    return [dynamic.redraw(example, np.random.default_rng([seed, epoch, index]))
            for index, example in enumerate(examples)]


class BatchIterator:
    """Iterable over this rank's batches of one epoch; len() is the number of batches."""

    def __init__(self, examples, *, batch_size, max_tokens=0, bucket_boundaries=(16, 32, 64), shuffle=True,
                 seed=0, epoch=0, num_shards=1, shard_id=0, eval_mode=False, dynamic=None, start_batch=0):
        if not 0 <= shard_id < num_shards:
            raise UserError(f"shard_id must be in [0, {num_shards}), got {shard_id}")
        if (max_tokens <= 0 or eval_mode) and batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        boundaries = sorted(int(b) for b in bucket_boundaries)
        if not boundaries or boundaries[0] < 1:
            raise UserError(f"bucket_boundaries must be positive lengths, got {list(bucket_boundaries)}")
        self.boundaries, self.batch_size, self.max_tokens = boundaries, batch_size, max_tokens
        self.num_shards, self.shard_id, self.start_batch = num_shards, shard_id, start_batch
        self.examples = epoch_examples(list(examples), dynamic, seed, epoch)
        source_lengths = np.array([len(e.source_ids) for e in self.examples], dtype=np.int64)
        target_lengths = np.array([len(e.target_ids) for e in self.examples], dtype=np.int64)
        if eval_mode:
            self.plan = self._eval_plan(source_lengths, target_lengths)
        else:
            rng = np.random.default_rng([seed, epoch]) if shuffle else None
            self.plan = self._train_plan(source_lengths, target_lengths, rng)

    def rows_per_rank(self, source_pad, target_pad):
        if self.max_tokens > 0:
            return max(1, self.max_tokens // max(source_pad, target_pad))
        return self.batch_size

    def _eval_plan(self, source_lengths, target_lengths):
        rows = self.batch_size * self.num_shards
        plan = []
        for start in range(0, len(self.examples), rows):
            indices = np.full(rows, -1, dtype=np.int64)
            chunk = np.arange(start, min(start + rows, len(self.examples)))
            indices[:len(chunk)] = chunk
            shape = (padded_length(int(source_lengths[chunk].max()), self.boundaries),
                     padded_length(int(target_lengths[chunk].max()), self.boundaries))
            plan.append((indices, shape))
        return plan

    def _train_plan(self, source_lengths, target_lengths, rng):
        buckets = {}
        for index, (source_length, target_length) in enumerate(zip(source_lengths, target_lengths)):
            shape = (padded_length(int(source_length), self.boundaries),
                     padded_length(int(target_length), self.boundaries))
            buckets.setdefault(shape, []).append(index)
        plan = []
        for shape in sorted(buckets):
            members = np.asarray(buckets[shape], dtype=np.int64)
            if rng is not None:
                members = rng.permutation(members)
            rows = self.rows_per_rank(*shape) * self.num_shards
            for start in range(0, len(members), rows):
                indices = np.full(rows, -1, dtype=np.int64)
                chunk = members[start:start + rows]
                indices[:len(chunk)] = chunk
                plan.append((indices, shape))
        if rng is not None:
            plan = [plan[i] for i in rng.permutation(len(plan))]
        return plan

    def __len__(self):
        return len(self.plan)

    def global_indices(self, batch_number):
        """Example indices of a global batch (all ranks' rows, -1 for pad rows)."""
        return self.plan[batch_number][0]

    def batch(self, batch_number):
        """This rank's rows of global batch `batch_number` as int32 arrays."""
        indices, (source_pad, target_pad) = self.plan[batch_number]
        rows = len(indices) // self.num_shards
        mine = indices[self.shard_id * rows:(self.shard_id + 1) * rows]
        batch = {"source_ids": np.zeros((rows, source_pad), dtype=np.int32)}
        for name in BATCH_FIELDS[1:]:
            batch[name] = np.zeros((rows, target_pad), dtype=np.int32)
        for row, index in enumerate(mine):
            if index < 0:
                continue
            example = self.examples[index]
            batch["source_ids"][row, :len(example.source_ids)] = example.source_ids
            for name in BATCH_FIELDS[1:]:
                values = getattr(example, name)
                batch[name][row, :len(values)] = values
        batch["example_index"] = mine.astype(np.int32)
        return batch

    def __iter__(self):
        for batch_number in range(self.start_batch, len(self.plan)):
            yield self.batch(batch_number)


def iterate_batches(examples, **options):
    """A `BatchIterator` (see the module docstring for the options)."""
    return BatchIterator(examples, **options)


def load_dataset(paths, format=None):
    """Examples of one or more record sets: a list, or a comma-separated string, of files / first shards."""
    if isinstance(paths, str):
        paths = [p.strip() for p in paths.split(",") if p.strip()]
    if not paths:
        raise UserError("no record files given")
    examples = []
    for path in paths:
        examples.extend(read_records(path, format))
    return examples
