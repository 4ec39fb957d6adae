import tracemalloc

import numpy as np
import pytest

from src.dataset import DynamicMasking, iterate_batches, open_rows, padded_length
from src.dictionary import EOS_ID, MASK_ID
from src.errors import UserError
from src.masking import Example, make_pair_example, mask_sentence, mask_sentences
from src.records import write_records
from src.workers import process_pool

VOCAB_SIZE = 50
BOUNDARIES = [8, 16, 32]


def mono_examples(count=60, seed=0, max_tokens=45):
    rng = np.random.default_rng(seed)
    examples = []
    for index in range(count):
        num_tokens = int(rng.integers(1, max_tokens + 1))
        sentence = np.concatenate((rng.integers(5, VOCAB_SIZE, num_tokens), [EOS_ID])).astype(np.int32)
        examples.append(mask_sentence("mass", sentence, rng, 0.5, VOCAB_SIZE))
    return examples


def pair_examples(count=30, seed=0):
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        source = np.concatenate((rng.integers(5, VOCAB_SIZE, int(rng.integers(1, 40))), [EOS_ID])).astype(np.int32)
        target = np.concatenate((rng.integers(5, VOCAB_SIZE, int(rng.integers(1, 12))), [EOS_ID])).astype(np.int32)
        examples.append(make_pair_example(source, target))
    return examples


def check_rows(batch, examples):
    """Every real row holds its example's arrays followed by zeros; pad rows are all zero."""
    for row, index in enumerate(batch["example_index"]):
        if index < 0:
            assert all(not batch[name][row].any() for name in ("source_ids", "target_ids", "decoder_input_ids"))
            continue
        example = examples[index]
        for name in ("source_ids", "decoder_input_ids", "decoder_positions", "target_ids"):
            values = getattr(example, name)
            assert np.array_equal(batch[name][row, :len(values)], values)
            assert not batch[name][row, len(values):].any()


def test_padded_length():
    assert [padded_length(n, BOUNDARIES) for n in (1, 8, 9, 16, 32, 33, 40, 41)] == [8, 8, 16, 16, 32, 40, 40, 48]


def test_buckets_never_truncate_and_every_example_appears_once():
    examples = mono_examples(120)
    iterator = iterate_batches(examples, batch_size=8, bucket_boundaries=BOUNDARIES, shuffle=True, seed=1, epoch=0)
    seen = []
    for batch in iterator:
        source_width, target_width = batch["source_ids"].shape[1], batch["target_ids"].shape[1]
        real = batch["example_index"][batch["example_index"] >= 0]
        longest_source = max(len(examples[i].source_ids) for i in real)
        longest_target = max(len(examples[i].target_ids) for i in real)
        assert source_width == padded_length(longest_source, BOUNDARIES) >= longest_source
        assert target_width == padded_length(longest_target, BOUNDARIES) >= longest_target
        assert batch["source_ids"].shape[0] == 8 and all(v.dtype == np.int32 for v in batch.values())
        check_rows(batch, examples)
        seen.extend(real.tolist())
    assert sorted(seen) == list(range(len(examples)))
    assert any(len(e.source_ids) > 32 for e in examples)  # the over-long rule was exercised


def test_same_seed_and_epoch_same_batches_other_epoch_other_order():
    examples = mono_examples(80)
    options = dict(batch_size=4, bucket_boundaries=BOUNDARIES, shuffle=True, seed=7)
    first = [b["example_index"].tolist() for b in iterate_batches(examples, epoch=2, **options)]
    again = [b["example_index"].tolist() for b in iterate_batches(examples, epoch=2, **options)]
    other = [b["example_index"].tolist() for b in iterate_batches(examples, epoch=3, **options)]
    assert first == again and first != other


def test_resume_from_a_batch_position():
    examples = mono_examples(50)
    options = dict(batch_size=4, bucket_boundaries=BOUNDARIES, shuffle=True, seed=2, epoch=5)
    full = list(iterate_batches(examples, **options))
    resumed = list(iterate_batches(examples, start_batch=6, **options))
    assert len(iterate_batches(examples, **options)) == len(full)
    assert len(resumed) == len(full) - 6
    for mine, theirs in zip(resumed, full[6:]):
        assert all(np.array_equal(mine[k], theirs[k]) for k in mine)


def test_eval_yields_every_example_once_in_order_with_padded_last_batch():
    examples = pair_examples(23)
    batches = list(iterate_batches(examples, batch_size=5, bucket_boundaries=BOUNDARIES, shuffle=True, seed=1,
                                   epoch=4, eval_mode=True, max_tokens=10))
    indices = np.concatenate([b["example_index"] for b in batches])
    assert indices.tolist() == list(range(23)) + [-1, -1]
    assert all(b["source_ids"].shape[0] == 5 for b in batches)
    for batch in batches:
        check_rows(batch, examples)
    # Two ranks: each takes its block of 5 rows of every global batch of 10; together every example once.
    ranks = [list(iterate_batches(examples, batch_size=5, bucket_boundaries=BOUNDARIES, shuffle=False, seed=0,
                                  epoch=0, eval_mode=True, num_shards=2, shard_id=r)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 3
    together = np.concatenate([np.concatenate((a["example_index"], b["example_index"])) for a, b in zip(*ranks)])
    assert together.tolist() == list(range(23)) + [-1] * 7


def test_two_ranks_of_b_rows_equal_one_process_of_2b_rows():
    examples = mono_examples(90)
    common = dict(bucket_boundaries=BOUNDARIES, shuffle=True, seed=11, epoch=1)
    single = list(iterate_batches(examples, batch_size=6, **common))
    ranks = [list(iterate_batches(examples, batch_size=3, num_shards=2, shard_id=r, **common)) for r in range(2)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) > 10
    for whole, first, second in zip(single, *ranks):
        for key in whole:
            assert np.array_equal(whole[key], np.concatenate((first[key], second[key])))


def test_token_budget_batches_per_rank():
    long_sentence = np.concatenate((np.full(99, 7), [EOS_ID])).astype(np.int32)  # wider than the budget alone
    examples = mono_examples(89) + [mask_sentence("mlm", long_sentence, np.random.default_rng(0), 0.5, VOCAB_SIZE)]
    common = dict(batch_size=0, max_tokens=96, bucket_boundaries=BOUNDARIES, shuffle=True, seed=4, epoch=0)
    ranks = [iterate_batches(examples, num_shards=2, shard_id=r, **common) for r in range(2)]
    seen = []
    for number in range(len(ranks[0])):
        first, second = ranks[0].batch(number), ranks[1].batch(number)
        assert np.array_equal(np.concatenate((first["example_index"], second["example_index"])),
                              ranks[0].global_indices(number))
        rows = first["source_ids"].shape[0]
        width = max(first["source_ids"].shape[1], first["target_ids"].shape[1])
        assert rows == max(1, 96 // width) and first["source_ids"].shape == second["source_ids"].shape
        seen.extend(i for i in ranks[0].global_indices(number) if i >= 0)
    assert sorted(seen) == list(range(90))
    assert {r["source_ids"].shape[0] for r in ranks[0]} == {1, 2, 3, 6, 12}


def test_dynamic_masking_redraws_every_epoch_from_sentence_ids():
    examples = mono_examples(30)
    spec = DynamicMasking("mass", 0.5, VOCAB_SIZE)
    options = dict(batch_size=4, bucket_boundaries=BOUNDARIES, shuffle=False, seed=3, eval_mode=True)
    epoch0 = list(iterate_batches(examples, epoch=0, dynamic=spec, **options))
    epoch0_again = list(iterate_batches(examples, epoch=0, dynamic=spec, **options))
    epoch1 = list(iterate_batches(examples, epoch=1, dynamic=spec, **options))
    assert all(np.array_equal(a["source_ids"], b["source_ids"]) for a, b in zip(epoch0, epoch0_again))
    assert any(not np.array_equal(a["source_ids"], b["source_ids"]) for a, b in zip(epoch0, epoch1))
    # Row 2 of batch 1 is example 6, masked alone with the draws of (seed, epoch, index) (src/masking.py).
    sentence = examples[6].sentence_ids
    source, decoder_input, target, positions, _ = mask_sentences("mass", sentence[None], [len(sentence) - 1], 3, 1,
                                                                 [6], 0.5, VOCAB_SIZE)
    expected = Example(sentence, source[0], decoder_input[0], target[0], positions[0])
    check_rows({k: v[2:3] for k, v in epoch1[1].items()}, {6: expected})
    static = list(iterate_batches(examples, epoch=1, **options))
    check_rows(static[1], examples)


def test_dynamic_noise_for_pairs_keeps_the_decoder_side():
    examples = pair_examples(20)
    batches = list(iterate_batches(examples, batch_size=4, bucket_boundaries=BOUNDARIES, shuffle=False, seed=0,
                                   epoch=0, eval_mode=True, dynamic=DynamicMasking("pair", noise_prob=0.5)))
    masked = 0
    for batch in batches:
        for row, index in enumerate(batch["example_index"]):
            example = examples[index]
            source = batch["source_ids"][row, :len(example.source_ids)]
            assert np.all((source == example.sentence_ids) | (source == MASK_ID)) and source[-1] == EOS_ID
            masked += (source == MASK_ID).sum()
            assert np.array_equal(batch["target_ids"][row, :len(example.target_ids)], example.target_ids)
    assert masked > 0


def test_bad_options():
    with pytest.raises(UserError, match="shard_id"):
        iterate_batches(mono_examples(4), batch_size=2, num_shards=2, shard_id=2)
    with pytest.raises(UserError, match="vocab_size"):
        DynamicMasking("mass", 0.5)


# ----------------------------------------------------------------------------------------------------------------
# Streaming from record files
# ----------------------------------------------------------------------------------------------------------------

WINDOWED = dict(bucket_boundaries=BOUNDARIES, shuffle=True, seed=5, epoch=2, window_rows=48)


def same_batches(left, right):
    left, right = list(left), list(right)
    return len(left) == len(right) and all(
        a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
        for a, b in zip(left, right))


@pytest.fixture(scope="module")
def record_sets(tmp_path_factory):
    """The same 200 monolingual and 90 pair examples as MindRecord (read on demand) and TFRecord (held in memory),
    in 3 and 2 shards."""
    folder = tmp_path_factory.mktemp("streamed")
    sets = {}
    for name, examples, shards in (("mono", mono_examples(200, seed=3), 3), ("pairs", pair_examples(90, seed=4), 2)):
        for format in ("mindrecord", "tfrecord"):
            write_records(str(folder / f"{name}.{format}"), examples, num_shards=shards)
        sets[name] = (examples, open_rows(str(folder / f"{name}.mindrecord0"), name=name),
                      open_rows(str(folder / f"{name}.tfrecord0"), name=name))
    return folder, sets


@pytest.fixture(scope="module")
def pool():
    with process_pool(2) as workers:
        yield workers


@pytest.mark.parametrize("name, dynamic", [
    ("mono", None), ("mono", DynamicMasking("mass", 0.5, VOCAB_SIZE)), ("mono", DynamicMasking("loose", 0.5)),
    ("pairs", DynamicMasking("pair", noise_prob=0.4))])
def test_records_streamed_from_files_or_workers_give_the_in_memory_batches(record_sets, pool, name, dynamic):
    """MindRecord rows read on demand, here or in 2 worker processes, give the batches of the same records held in
    memory, and global_tokens counts the targets the (dynamically masked) batches hold."""
    examples, streamed, in_memory = record_sets[1][name]
    options = dict(batch_size=0, max_tokens=96, dynamic=dynamic, **WINDOWED)
    expected = list(iterate_batches(in_memory, **options))
    assert same_batches(iterate_batches(streamed, **options), expected)
    assert same_batches(iterate_batches(streamed, pool=pool, **options), expected)
    batches = iterate_batches(streamed, **options)
    assert [batches.global_tokens(n) for n in range(len(batches))] == [int((b["target_ids"] > 0).sum())
                                                                       for b in expected]
    if dynamic is None:  # the stored arrays, row for row
        for batch in expected[:5]:
            check_rows(batch, examples)


def test_every_example_once_per_epoch_over_all_ranks(record_sets, pool):
    """3 shard files, windows of 48 rows, token budgets: 3 ranks have the same number of batches, their rows
    concatenated are the global batch, and together they hold every example exactly once."""
    examples, streamed, _ = record_sets[1]["mono"]
    options = dict(batch_size=0, max_tokens=96, num_shards=3, **WINDOWED)
    ranks = [iterate_batches(streamed, shard_id=rank, pool=pool, **options) for rank in range(3)]
    assert len({len(rank) for rank in ranks}) == 1
    seen = []
    for number, parts in enumerate(zip(*ranks)):
        together = np.concatenate([part["example_index"] for part in parts])
        assert np.array_equal(together, ranks[0].global_indices(number))
        assert ranks[0].global_tokens(number) == sum(int((part["target_ids"] > 0).sum()) for part in parts)
        seen.extend(together[together >= 0].tolist())
    assert sorted(seen) == list(range(len(examples)))
    # Windows never cross files: a window holds rows of one shard only.
    assert all(ranks[0].rows.segments(np.arange(start, end))[0][1].size == end - start
               for start, end in ranks[0].windows)


def test_a_resumed_epoch_continues_the_uninterrupted_batch_sequence(record_sets, pool):
    """From a batch inside the first window, at a window's first batch and inside the last window, iteration and
    sequential batch() calls give the rest of the uninterrupted epoch, dynamic masks included."""
    _, streamed, _ = record_sets[1]["mono"]
    options = dict(batch_size=4, dynamic=DynamicMasking("mass", 0.5, VOCAB_SIZE), **WINDOWED)
    full = list(iterate_batches(streamed, **options))
    first_batch = iterate_batches(streamed, **options).first_batch
    assert len(first_batch) > 4  # several windows
    for start in (1, int(first_batch[2]), int(first_batch[-2]) + 1):
        resumed = iterate_batches(streamed, start_batch=start, pool=pool, **options)
        assert same_batches(resumed, full[start:])
        assert same_batches((resumed.batch(n) for n in range(start, len(full))), full[start:])


def test_eval_mode_streams_every_example_once_in_input_order(record_sets, pool):
    examples, streamed, _ = record_sets[1]["pairs"]
    for window_rows in (0, 20):
        ranks = [list(iterate_batches(streamed, batch_size=7, bucket_boundaries=BOUNDARIES, eval_mode=True,
                                      num_shards=2, shard_id=rank, window_rows=window_rows, pool=pool))
                 for rank in range(2)]
        together = np.concatenate([np.concatenate((a["example_index"], b["example_index"])) for a, b in zip(*ranks)])
        assert together.tolist() == list(range(90)) + [-1] * 8
        for batch in ranks[0] + ranks[1]:
            check_rows(batch, examples)


def test_memory_is_bounded_by_the_window_not_the_corpus(tmp_path):
    """One epoch over 512 and 2,048 rows, windows of 128 rows: the largest Python/NumPy allocation (tracemalloc
    peak while iterating) does not grow with the corpus."""
    rng = np.random.default_rng(0)
    base = [mask_sentence("mass", np.concatenate((rng.integers(5, VOCAB_SIZE, 30), [EOS_ID])).astype(np.int32), rng,
                          0.5, VOCAB_SIZE) for _ in range(512)]
    peaks = {}
    for copies in (1, 4):
        path = str(tmp_path / f"x{copies}.mindrecord")
        write_records(path, base * copies)
        rows = open_rows(path)
        batches = iterate_batches(rows, batch_size=16, bucket_boundaries=BOUNDARIES, seed=1, window_rows=128,
                                  dynamic=DynamicMasking("mass", 0.5, VOCAB_SIZE))
        next(iter(batches))  # MindSpore's one-off start-up allocations
        tracemalloc.start()
        count = sum(int((batch["example_index"] >= 0).sum()) for batch in batches)
        peaks[copies] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == 512 * copies
    print(peaks)
    assert peaks[4] < 1.2 * peaks[1], peaks


def test_token_ids_beyond_the_vocabulary_are_one_line_errors(record_sets, pool):
    _, streamed, _ = record_sets[1]["pairs"]
    with pytest.raises(UserError, match=r"^pairs data holds token id \d+ but model_config.vocab_size is 10 - "):
        streamed.check_vocabulary(10)
    batches = iterate_batches(streamed, batch_size=4, bucket_boundaries=BOUNDARIES, vocab_size=10, pool=pool)
    with pytest.raises(UserError, match=r"^pairs data holds token id \d+ but model_config.vocab_size is 10 - "):
        list(batches)
    streamed.check_vocabulary(VOCAB_SIZE)
