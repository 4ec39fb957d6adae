"""Dynamic shapes: a phase over several bucket shapes compiles each step once, and trains exactly as static shapes."""
import collections
import os

import numpy as np

from config.config import CheckpointOptions, DatasetConfig, LearnRateConfig, MassConfig, ModelConfig
from src import checkpoint as ckpt
from src import trainer
from src.dataset import iterate_batches
from src.device import setup_device
from src.dictionary import Dictionary
from src.masking import make_pair_example
from src.records import write_records
from src.train_step import build_network, count_compilations, to_tensors

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_TITLES = os.path.join(REPO, "data", "sample", "gigaword", "train.title.txt")
BOUNDARIES = [6, 10, 16]

setup_device("CPU")


def tiny_config(fine_tune_dataset="", valid_dataset="", vocab_size=40, dynamic_shapes=True, resumable_dropout=False):
    model = ModelConfig(random_seed=1, seq_length=16, vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1,
                        num_decoder_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=16,
                        max_decode_length=12, hidden_dropout_prob=0.1, attention_dropout_prob=0.1,
                        resumable_dropout=resumable_dropout)
    # max_tokens: rows per batch differ between buckets too (48 // 6 = 8, 48 // 10 = 4, 48 // 16 = 3)
    dataset = DatasetConfig(epochs=1, batch_size=8, max_tokens=48, bucket_boundaries=BOUNDARIES,
                            fine_tune_dataset=fine_tune_dataset, valid_dataset=valid_dataset,
                            dynamic_shapes=dynamic_shapes)
    return MassConfig(dataset_config=dataset, model_config=model,
                      learn_rate_config=LearnRateConfig(lr=1e-2, warmup_steps=2, decay_start_step=2, update_freq=2),
                      checkpoint_options=CheckpointOptions(save_ckpt_steps=1000)).validate()


def copy_task(count=36):
    """(vocabulary, examples): sample headlines cut to 2-14 words (3-15 tokens with </s>), source = target."""
    with open(SAMPLE_TITLES, encoding="utf-8") as handle:
        titles = handle.read().splitlines()[:count]
    lines = [" ".join((title.split() * 3)[:2 + i % 13]) for i, title in enumerate(titles)]
    vocab = Dictionary.from_counter(collections.Counter(token for line in lines for token in line.split()))
    return vocab, [make_pair_example(vocab.encode_line(line), vocab.encode_line(line)) for line in lines]


def batch_shapes(batches):
    return {batches.batch(number)["target_ids"].shape + batches.batch(number)["source_ids"].shape[1:]
            for number in range(len(batches))}


def test_phase_over_three_bucket_shapes_compiles_each_step_once(tmp_path):
    vocab, examples = copy_task()
    write_records(str(tmp_path / "train.mindrecord"), examples)
    write_records(str(tmp_path / "valid.mindrecord"), examples[:9])
    config = tiny_config(str(tmp_path / "train.mindrecord"), str(tmp_path / "valid.mindrecord"), len(vocab))
    runner = trainer.Trainer(config, str(tmp_path / "run"), vocab_checksum=vocab.checksum(), console=lambda line: None)
    with count_compilations() as compilations:
        runner.run()
    # (rows, target length, source length) of the epoch's batches: 3 buckets, 3 row counts
    assert len(batch_shapes(runner.batches("finetune", 0))) >= 3
    assert len(batch_shapes(runner.valid_batches())) >= 2
    assert {name: count for name, (count, _) in compilations.items()} == {
        "accumulate": 1, "update": 1, "apply": 1, "evaluate": 1}


def test_dynamic_shapes_train_and_evaluate_exactly_as_static_shapes():
    """Updates over three bucket shapes (counter-based dropout on, so both draw the same masks): the same losses,
    gradient norms and weights, bit for bit; the static steps compile one graph per shape."""
    vocab, examples = copy_task()
    batches = iterate_batches(examples, batch_size=8, max_tokens=48, bucket_boundaries=BOUNDARIES, seed=3)
    order = sorted(range(len(batches)), key=lambda number: batches.batch(number)["source_ids"].shape)[::2]
    assert len({batches.batch(number)["source_ids"].shape for number in order}) >= 3
    results = {}
    for dynamic in (False, True):
        config = tiny_config(vocab_size=len(vocab), dynamic_shapes=dynamic, resumable_dropout=True)
        network = build_network(config, hide_masked_source=False)
        trace = []
        with count_compilations() as compilations:
            for step, number in enumerate(order):
                tensors = to_tensors(batches.batch(number))
                tokens = float((batches.batch(number)["target_ids"] != 0).sum())
                totals, finite, norm = network.train_step.update(tensors, 1024.0 / tokens, 1.0 / 1024, 5e-3, step,
                                                                 np.zeros(4))
                assert bool(finite.asnumpy())
                network.model.set_train(False)
                sums = network.eval_step(tensors)
                network.model.set_train(True)
                trace.append((totals.asnumpy(), norm.asnumpy(), np.stack([value.asnumpy() for value in sums])))
        results[dynamic] = trace, ckpt.model_weights(network.model), compilations
    (static_trace, static_weights, static_counts), (dynamic_trace, dynamic_weights, dynamic_counts) = \
        results[False], results[True]
    for static, dynamic in zip(static_trace, dynamic_trace):
        for a, b in zip(static, dynamic):
            np.testing.assert_array_equal(a, b)
    assert static_weights.keys() == dynamic_weights.keys()
    for name in static_weights:
        np.testing.assert_array_equal(static_weights[name], dynamic_weights[name], err_msg=name)
    shapes = len({batches.batch(number)["source_ids"].shape for number in order})
    assert (static_counts["update"][0], static_counts["evaluate"][0]) == (shapes, shapes)
    assert (dynamic_counts["update"][0], dynamic_counts["evaluate"][0]) == (1, 1)
