"""Beam-search decoding speed: the cached one-graph decoder against the uncached reference, same run, same model.

Model: d_model 512, 6+6 layers, FFN 2048, 8 heads, vocabulary ~10,000, random weights (seeded). Input: the first
--sentences Gigaword test articles (../shared/data/gigaword/test.article.txt; skipped cleanly when absent), whitespace
tokens mapped through a vocabulary of the file's most frequent words. Beam 4, max_decode_length 64.
Cached: encoder and cross-attention keys/values once, one token per step with the self-attention key/value cache,
the whole search a `while` loop in one compiled graph. Reference: the same search rules driven from Python, the
decoder recomputing the whole prefix every step (encoder once). With random weights </s> may never win, so both
usually run all 64 steps: the fair comparison (the same hypotheses, checked). Compile time is excluded (warm-up).
Prints sentences/s for both, `decode_cache_speedup: X` (reference time / cached time) and, last,
`decode_fraction_of_peak: X`: the matmul FLOPs of the cached search (bench/flops.py `decoding_flops`: 16.0 GFLOP a
sentence at the default sizes and source length 40, the encoder included; all max_decode_length steps counted) per
second of the cached decoder, over the FLOP/s of a bare jit-compiled fp32 matmul measured in the same run.
"""
import argparse
import collections
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
# The uncached reference decoder lives beside the tests, which check the cached decoder against it.
sys.path.insert(0, os.path.join(REPO, "tests"))
from bench.flops import best_matmul_peak, decoding_flops  # noqa: E402  (needs the repository on sys.path)
DEFAULT_DATA = os.path.join(os.path.dirname(REPO), "shared", "data", "gigaword", "test.article.txt")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="source sentences, one per line")
    parser.add_argument("--sentences", type=int, default=32)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--max_decode_length", type=int, default=64)
    parser.add_argument("--d_model", type=int, default=512)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--ffn", type=int, default=2048)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of the cached decoder (best is kept)")
    return parser.parse_args(argv)


def source_batch(path, sentences, vocab_size):
    """First `sentences` lines -> int32 [sentences, longest + 1] ids (</s>, then 0) with a vocabulary of the file."""
    from src.dictionary import Dictionary
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    counts = collections.Counter(word for line in lines for word in line.split())
    ranked = Dictionary.from_counter(counts)
    vocab = Dictionary(ranked.symbols[5:vocab_size], ranked.counts[5:vocab_size])
    encoded = [vocab.encode_line(line) for line in lines[:sentences]]
    source = np.zeros((len(encoded), max(len(ids) for ids in encoded)), np.int32)
    for row, ids in enumerate(encoded):
        source[row, :len(ids)] = ids
    return source, len(vocab)


def main(args):
    if not os.path.exists(args.data):
        print(f"skipped: {args.data} not found (the shared Gigaword data is not present)")
        return 0
    os.environ.setdefault("GLOG_v", "3")
    import mindspore as ms

    from config.config import ModelConfig
    from reference_decoding import FullPrefixLogProbs, python_loop_search
    from src.beam_search import BeamSearch, cached_decoder
    from src.model import Seq2SeqModel

    ms.set_device("CPU")
    source, symbols = source_batch(args.data, args.sentences, args.vocab)
    batch, source_len = source.shape
    positions = max(source_len, args.max_decode_length, 64)
    config = ModelConfig(random_seed=1, seq_length=positions, vocab_size=args.vocab, hidden_size=args.d_model,
                         num_hidden_layers=args.layers, num_decoder_layers=args.layers, num_attention_heads=args.heads,
                         intermediate_size=args.ffn, hidden_dropout_prob=0.0, attention_dropout_prob=0.0,
                         max_position_embeddings=positions, max_decode_length=args.max_decode_length)
    config.validate()
    ms.set_seed(1)
    model = Seq2SeqModel(config)
    model.set_train(False)
    search = BeamSearch(args.beam, args.max_decode_length, args.vocab, 1.0, num_symbols=symbols)
    source_tensor = ms.Tensor(source)
    print(f"model d_model {args.d_model}, {args.layers}+{args.layers} layers, FFN {args.ffn}, {args.heads} heads, "
          f"vocab {args.vocab}; {batch} Gigaword test sentences (source length {source_len}), beam {args.beam}, "
          f"max_decode_length {args.max_decode_length}")

    decoder = cached_decoder(model, search)
    start = time.perf_counter()
    decoder(source_tensor)[0].asnumpy()
    print(f"cached: compile + first run {time.perf_counter() - start:.1f} s")
    cached_time = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        sequences, scores = decoder(source_tensor)
        sequences = sequences.asnumpy()
        cached_time = min(cached_time, time.perf_counter() - start)

    # Warm-up of the reference: the search step's graph (on dummy log-probs) and the dynamic-shape prefix decoder.
    prefix_log_probs = FullPrefixLogProbs(model, source_tensor, args.beam)
    uniform = ms.ops.zeros((batch * args.beam, args.vocab), ms.float32)
    python_loop_search(search, batch, lambda prefix: uniform)
    prefix_log_probs(ms.ops.ones((batch * args.beam, 2), ms.int32)).asnumpy()
    start = time.perf_counter()
    reference_sequences, reference_scores = python_loop_search(search, batch, prefix_log_probs)
    reference_sequences = reference_sequences.asnumpy()
    reference_time = time.perf_counter() - start

    same = np.array_equal(sequences, reference_sequences)
    lengths = [(row != 0).sum() for row in sequences[:, 0]]
    at_limit = sum(length >= args.max_decode_length for length in lengths)
    print(f"best hypotheses: mean length {np.mean(lengths):.1f} tokens ({at_limit}/{batch} reached "
          f"max_decode_length); cached and reference outputs identical: {same}, "
          f"max score difference {np.abs(scores.asnumpy() - reference_scores.asnumpy()).max():.2e}")
    print(f"cached decoder: {batch / cached_time:.2f} sentences/s ({cached_time:.2f} s)")
    print(f"reference (whole prefix recomputed each step): {batch / reference_time:.2f} sentences/s "
          f"({reference_time:.2f} s)")
    print(f"decode_cache_speedup: {reference_time / cached_time:.2f}")
    # All L steps are counted: with random weights every best hypothesis reaches max_decode_length (printed above);
    # when fewer do, the search may have stopped early and the figure overstates the work.
    steps = args.max_decode_length
    flops = decoding_flops(config, batch, source_len, args.beam, steps)
    peak, peaks = best_matmul_peak()
    print(f"decode_gflop: {flops / 1e9:.1f} ({steps} steps), achieved_gflop_per_s: {flops / cached_time / 1e9:.1f}")
    print("matmul_gflop_per_s: " + ", ".join(f"{size}: {value / 1e9:.1f}" for size, value in peaks.items()))
    print(f"decode_fraction_of_peak: {flops / cached_time / peak:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
