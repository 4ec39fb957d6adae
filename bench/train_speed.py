"""Training throughput of the d_model 512, 6+6 layer model against this machine's fp32 matmul peak.

Prints tokens/s, the model FLOPs per step and, last, `train_fraction_of_peak: X`
(achieved matmul FLOP/s of a training step / FLOP/s of a bare jit-compiled fp32 matmul, measured in the same run).
"""
import argparse
import dataclasses
import os
import sys
import time

import numpy as np

import mindspore as ms
from mindspore import ops

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from config.config import MassConfig, ModelConfig  # noqa: E402  (needs the repository on sys.path)


def bench_config(args):
    model = ModelConfig(random_seed=1, seq_length=args.source_len, vocab_size=args.vocab, hidden_size=args.d_model,
                        num_hidden_layers=args.layers, num_decoder_layers=args.layers, num_attention_heads=8,
                        intermediate_size=4 * args.d_model, hidden_dropout_prob=0.1, attention_dropout_prob=0.1,
                        max_position_embeddings=max(args.source_len, 64), max_decode_length=args.target_len)
    return dataclasses.replace(MassConfig(), model_config=model).validate()


def model_flops_per_step(model_config, batch, source_len, target_len):
    """Matmul FLOPs of one training step (forward x 3 for forward + backward), 2 FLOPs per multiply-add."""
    d, d_ff, vocab = model_config.hidden_size, model_config.intermediate_size, model_config.vocab_size
    source_tokens, target_tokens = batch * source_len, batch * target_len
    encoder_layer = source_tokens * (8 * d * d + 4 * d * d_ff + 4 * source_len * d)
    decoder_layer = (target_tokens * (8 * d * d + 4 * target_len * d)             # self-attention
                     + target_tokens * (4 * d * d + 4 * source_len * d)            # cross: q, out, scores
                     + source_tokens * 4 * d * d                                  # cross: keys, values
                     + target_tokens * 4 * d * d_ff)
    forward = (model_config.num_hidden_layers * encoder_layer + model_config.decoder_layers * decoder_layer
               + target_tokens * 2 * d * vocab)
    return 3 * forward


def matmul_peak(size=1024, repeats=20):
    """FLOP/s of a jit-compiled fp32 matmul of two size x size matrices (best of several timings)."""
    a = ms.Tensor(np.random.default_rng(0).standard_normal((size, size)).astype(np.float32))
    b = ms.Tensor(np.random.default_rng(1).standard_normal((size, size)).astype(np.float32))
    @ms.jit
    def matmul(x, y):
        return ops.matmul(x, y)

    matmul(a, b).asnumpy()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            out = matmul(a, b)
        out.asnumpy()
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * size ** 3 / best


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
    return parser.parse_args(argv)


def time_training(config, batch_arrays, steps):
    """(seconds of the compile + first update, median seconds per update) of the trainer's compiled update."""
    from src.dataset import BATCH_FIELDS
    from src.dropout import dropout_key
    from src.train_step import build_network, to_tensors
    network = build_network(config, hide_masked_source=True)
    batch = dict(zip(BATCH_FIELDS, batch_arrays))
    tensors = to_tensors(batch)
    tokens = float((batch["target_ids"] != 0).sum())
    scale = config.loss_scale_config.init_loss_scale

    def update(step):
        totals, finite, _ = network.train_step.update(tensors, scale / tokens, 1.0 / scale, 1e-4,
                                                      dropout_key(1, 0, 0, step, 0), [0, 0, 0, 0])
        return float(totals.asnumpy()[0])

    start = time.perf_counter()
    update(0)
    compile_seconds = time.perf_counter() - start
    times = []
    for step in range(1, steps + 1):
        start = time.perf_counter()
        update(step)
        times.append(time.perf_counter() - start)
    return compile_seconds, float(np.median(times))


def main(args):
    ms.set_device("CPU")
    if args.threads:
        ms.device_context.cpu.op_tuning.threads_num(args.threads)
    config = bench_config(args)
    if args.resumable_dropout:
        config = config.replace(model_config=dataclasses.replace(config.model_config, resumable_dropout=True))
    rng = np.random.default_rng(0)
    arrays = make_batch(rng, args.batch, args.source_len, args.target_len, args.vocab)
    compile_seconds, step_time = time_training(config, arrays, args.steps)
    flops = model_flops_per_step(config.model_config, args.batch, args.source_len, args.target_len)
    peaks = {size: matmul_peak(size) for size in (512, 1024, 2048)}
    peak = max(peaks.values())  # the strictest reference: the best square size
    tokens = args.batch * (args.source_len + args.target_len)
    print(f"model: d_model {args.d_model}, {args.layers}+{args.layers} layers, FFN {4 * args.d_model}, vocab "
          f"{args.vocab}, batch {args.batch} x ({args.source_len} + {args.target_len}) tokens, "
          f"{'resumable' if args.resumable_dropout else 'stock'} dropout")
    print(f"compile_and_first_step_s: {compile_seconds:.1f}")
    print(f"step_s: {step_time:.3f}")
    print(f"sentences_per_s: {args.batch / step_time:.1f}")
    print(f"tokens_per_s: {tokens / step_time:.0f}")
    print(f"model_gflop_per_step: {flops / 1e9:.1f}")
    print(f"achieved_gflop_per_s: {flops / step_time / 1e9:.1f}")
    print("matmul_gflop_per_s: " + ", ".join(f"{size}: {value / 1e9:.1f}" for size, value in peaks.items()))
    print(f"matmul_peak_gflop_per_s: {peak / 1e9:.1f}")
    print(f"train_fraction_of_peak: {flops / step_time / peak:.3f}")


if __name__ == "__main__":
    main(parse_args())
