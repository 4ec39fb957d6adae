"""Matmul FLOP counts of the model's training step and beam search, and the same-run matmul peak they are set against.

FLOPs count 2 per multiply-add, matmuls only (the elementwise work is what a fraction below 1 pays for).
Shapes: d = hidden size, f = FFN size, V = vocabulary rows, S = source length, T = target length.
"""
import time

import numpy as np

import mindspore as ms
from mindspore import ops


def training_flops(model_config, batch, source_len, target_len):
    """Matmul FLOPs of one training step on a [batch, S] / [batch, T] batch: forward x 3 (forward + backward).

    Per encoder token: q, k, v, out 8 d^2, FFN 4 d f, scores and context 4 S d. Per decoder token: self-attention
    8 d^2 + 4 T d, cross-attention q and out 4 d^2 + 4 S d, FFN 4 d f, and per source token the cross keys and
    values 4 d^2; the output projection 2 d V per target token."""
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


def decoding_flops(model_config, sentences, source_len, beam_width, steps):
    """Matmul FLOPs of a cached beam search of `steps` steps over `sentences` sources of length S.

    Once per sentence: the encoder (forward) and every decoder layer's cross keys and values (4 d^2 per source
    token). Per hypothesis (sentences x beam) and step, one new position: self-attention q, k, v, out 8 d^2 and
    scores and context over the whole fixed-length cache 4 L d (L = max_decode_length, what the graph computes),
    cross-attention q, out 4 d^2 and scores and context 4 S d, FFN 4 d f, the output projection 2 d V.
    At d 512, 6+6 layers, f 2048, V 10,000, beam 4, L = 64 steps and S = 40 that is 16.0 GFLOP a sentence, 14.2 of
    them in the steps."""
    d, d_ff, vocab = model_config.hidden_size, model_config.intermediate_size, model_config.vocab_size
    cache_len = model_config.max_decode_length
    encoder = sentences * source_len * model_config.num_hidden_layers * (8 * d * d + 4 * d * d_ff + 4 * source_len * d)
    cross_memory = sentences * source_len * model_config.decoder_layers * 4 * d * d
    per_position = (model_config.decoder_layers * (8 * d * d + 4 * cache_len * d + 4 * d * d + 4 * source_len * d
                                                   + 4 * d * d_ff)
                    + 2 * d * vocab)
    return encoder + cross_memory + sentences * beam_width * steps * per_position


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


def best_matmul_peak(sizes=(512, 1024, 2048)):
    """(peak FLOP/s: the best square size, the strictest reference; {size: FLOP/s})."""
    peaks = {size: matmul_peak(size) for size in sizes}
    return max(peaks.values()), peaks
