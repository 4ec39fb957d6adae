"""Training throughput of the d_model 512, 6+6 layer model against this machine's fp32 matmul peak.

Prints tokens/s, the model FLOPs per step and, last, `train_fraction_of_peak: X`
(achieved matmul FLOP/s of a training step / FLOP/s of a bare jit-compiled fp32 matmul, measured in the same run).
Then, as in a bucketed run, a few updates at other (source, target) lengths (--bucket_shapes): `train_compilations: N`
counts the training-step graphs compiled over all these updates (1 for `update` and 1 for `apply` with
dynamic shapes; one `update` per shape with --shapes static) and `train_compile_s: X` their compile seconds.
"""
import argparse
import dataclasses
import os
import resource
import sys
import time

import numpy as np

import mindspore as ms

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from config.config import MassConfig, ModelConfig  # noqa: E402  (needs the repository on sys.path)
from bench.flops import best_matmul_peak, training_flops  # noqa: E402


def bench_config(args):
    model = ModelConfig(random_seed=1, seq_length=args.source_len, vocab_size=args.vocab, hidden_size=args.d_model,
                        num_hidden_layers=args.layers, num_decoder_layers=args.layers, num_attention_heads=8,
                        intermediate_size=4 * args.d_model, hidden_dropout_prob=0.1, attention_dropout_prob=0.1,
                        max_position_embeddings=max(args.source_len, 64), max_decode_length=args.target_len)
    return dataclasses.replace(MassConfig(), model_config=model).validate()


def make_batch(rng, batch, source_len, target_len, vocab):
    """NumPy arrays in src.dataset.BATCH_FIELDS order: source, decoder input, positions, target."""
    source = rng.integers(5, vocab, size=(batch, source_len)).astype(np.int32)
    source[:, -1] = 2
    decoder_input = rng.integers(5, vocab, size=(batch, target_len)).astype(np.int32)
    positions = np.tile(np.arange(target_len, dtype=np.int32), (batch, 1))
    target = rng.integers(5, vocab, size=(batch, target_len)).astype(np.int32)
    return [source, decoder_input, positions, target]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d_model", type=int, default=512)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--source_len", type=int, default=64)
    parser.add_argument("--target_len", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU kernel threads (MindSpore's threads_num; 0 leaves MindSpore's default)")
    parser.add_argument("--resumable_dropout", action="store_true",
                        help="the counter-based dropout of model_config.resumable_dropout instead of MindSpore's")
    parser.add_argument("--shapes", choices=("dynamic", "static"), default=None,
                        help="compile the step once for all shapes or once per shape (dataset_config.dynamic_shapes; "
                             "default: the config's default)")
    parser.add_argument("--bucket_shapes", default="48x24,32x16",
                        help="SOURCExTARGET lengths, comma-separated, trained after the --source_len x --target_len "
                             "steps as further buckets ('' skips them)")
    parser.add_argument("--bucket_updates", type=int, default=2, help="updates per bucket shape")
    args = parser.parse_args(argv)
    try:
        args.bucket_shapes = [tuple(int(n) for n in shape.split("x")) for shape in args.bucket_shapes.split(",")
                              if shape]
    except ValueError:
        parser.error(f"--bucket_shapes: expected SOURCExTARGET[,SOURCExTARGET...], got {args.bucket_shapes!r}")
    if any(len(shape) != 2 or min(shape) < 2 for shape in args.bucket_shapes):
        parser.error(f"--bucket_shapes: expected lengths >= 2 as SOURCExTARGET, got {args.bucket_shapes}")
    return args


def updater(network, batch_arrays, scale):
    """update(step) -> seconds of one optimizer update of `network` on the batch (loss weighted as in training)."""
    from src.dataset import BATCH_FIELDS
    from src.dropout import dropout_key
    from src.train_step import to_tensors
    batch = dict(zip(BATCH_FIELDS, batch_arrays))
    tensors = to_tensors(batch)
    tokens = float((batch["target_ids"] != 0).sum())

    def update(step):
        start = time.perf_counter()
        totals, _, _ = network.train_step.update(tensors, scale / tokens, 1.0 / scale, 1e-4,
                                                 dropout_key(1, 0, 0, step, 0), [0, 0, 0, 0])
        totals.asnumpy()
        return time.perf_counter() - start

    return update


def time_training(network, config, batch_arrays, steps):
    """(seconds of the compile + first update, median seconds per update) of the trainer's compiled update."""
    update = updater(network, batch_arrays, config.loss_scale_config.init_loss_scale)
    compile_seconds = update(0)
    return compile_seconds, float(np.median([update(step) for step in range(1, steps + 1)]))


def bucket_training(network, config, rng, args):
    """Median seconds per update at each of args.bucket_shapes, after its first update (a compile when static)."""
    times = {}
    for source_len, target_len in args.bucket_shapes:
        arrays = make_batch(rng, args.batch, source_len, target_len, args.vocab)
        update = updater(network, arrays, config.loss_scale_config.init_loss_scale)
        first = update(0)
        rest = [update(step) for step in range(1, args.bucket_updates)]
        times[(source_len, target_len)] = (first, float(np.median(rest)) if rest else float("nan"))
    return times


def main(args):
    from src.train_step import build_network, count_compilations
    ms.set_device("CPU")
    if args.threads:
        ms.device_context.cpu.op_tuning.threads_num(args.threads)
    config = bench_config(args)
    if args.resumable_dropout:
        config = config.replace(model_config=dataclasses.replace(config.model_config, resumable_dropout=True))
    if args.shapes is not None:
        config = config.replace(dataset_config=dataclasses.replace(config.dataset_config,
                                                                   dynamic_shapes=args.shapes == "dynamic"))
    rng = np.random.default_rng(0)
    arrays = make_batch(rng, args.batch, args.source_len, args.target_len, args.vocab)
    network = build_network(config, hide_masked_source=True)
    with count_compilations() as compilations:
        compile_seconds, step_time = time_training(network, config, arrays, args.steps)
        bucket_times = bucket_training(network, config, rng, args)
    flops = training_flops(config.model_config, args.batch, args.source_len, args.target_len)
    peak, peaks = best_matmul_peak()
    tokens = args.batch * (args.source_len + args.target_len)
    train_functions = ("accumulate", "update", "apply")  # src/train_step.py's TrainStep graphs
    print(f"model: d_model {args.d_model}, {args.layers}+{args.layers} layers, FFN {4 * args.d_model}, vocab "
          f"{args.vocab}, batch {args.batch} x ({args.source_len} + {args.target_len}) tokens, "
          f"{'resumable' if args.resumable_dropout else 'stock'} dropout, "
          f"{'dynamic' if config.dataset_config.dynamic_shapes else 'static'} shapes")
    print(f"compile_and_first_step_s: {compile_seconds:.1f}")
    print(f"step_s: {step_time:.3f}")
    for (source_len, target_len), (first, median) in bucket_times.items():
        print(f"bucket {source_len}x{target_len}: first_step_s {first:.1f}, step_s {median:.3f}")
    print("train_compilations_by_function: " + ", ".join(
        f"{name} {compilations[name][0]}" for name in train_functions if name in compilations))
    print(f"train_compilations: {sum(compilations[name][0] for name in train_functions if name in compilations)}")
    print(f"train_compile_s: {sum(compilations[name][1] for name in train_functions if name in compilations):.1f}")
    # every graph compiled for a shape keeps its own memory: the static steps grow with the number of shapes
    print(f"peak_rss_gib: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f}")
    print(f"sentences_per_s: {args.batch / step_time:.1f}")
    print(f"tokens_per_s: {tokens / step_time:.0f}")
    print(f"model_gflop_per_step: {flops / 1e9:.1f}")
    print(f"achieved_gflop_per_s: {flops / step_time / 1e9:.1f}")
    print("matmul_gflop_per_s: " + ", ".join(f"{size}: {value / 1e9:.1f}" for size, value in peaks.items()))
    print(f"matmul_peak_gflop_per_s: {peak / 1e9:.1f}")
    print(f"train_fraction_of_peak: {flops / step_time / peak:.3f}")


if __name__ == "__main__":
    main(parse_args())
