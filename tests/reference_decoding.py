"""Reference decoders that src/beam_search.py is checked and timed against (tests and bench/decode_speed.py).

`TableStep`: a step cell returning hand-specified probabilities, so a test knows the answer exactly.
`python_loop_search`: the same `BeamSearch` rules driven from Python over any next-token function.
`reference_beam_search`: uncached decoding of the Transformer - the decoder recomputes the whole prefix every
step - the baseline the cached one-graph decoder must equal.
`SteppedBeamSearchDecoder`: the cached decoder with a Python loop over one compiled step instead of a graph
`while` loop.
"""
import weakref

import numpy as np

import mindspore as ms
from mindspore import nn, ops

from src.beam_search import LIVE_SEQS, BeamSearchDecoder, flatten_beam_dim
from src.dictionary import BOS_ID


def repeat_beams(x, beam_width, axis):
    """Each sentence's slice repeated k times, a sentence's beams adjacent: [.., B, ..] -> [.., B*k, ..].

    (broadcast + reshape keeps the shape static in graph mode, where ops.repeat_interleave's output shape is
    unknown at compile time and makes the whole loop dynamic-shaped and slow.)"""
    shape = x.shape
    expanded = ops.broadcast_to(x.expand_dims(axis + 1), shape[:axis + 1] + (beam_width,) + shape[axis + 1:])
    return expanded.reshape(shape[:axis] + (shape[axis] * beam_width,) + shape[axis + 1:])



class TableStep(nn.Cell):
    """Hand-specified probabilities: log_probs[b, t, previous token] is sentence b's next-token distribution
    at step t ([B, L, vocab, vocab]); `start` takes any [B, ...] tensor (only its batch size is used)."""

    def __init__(self, log_prob_table, beam_width):
        super().__init__()
        table = np.asarray(log_prob_table, np.float32)
        self.batch_size, self.steps, self.vocab_size, _ = table.shape
        self.table = ms.Tensor(table.reshape(-1, self.vocab_size))
        self.beam_width = beam_width

    def start(self, inputs):
        return (ops.zeros((inputs.shape[0] * self.beam_width,), ms.int32),)

    def construct(self, token_ids, step, state):
        sentence = ops.arange(token_ids.shape[0], dtype=ms.int32) // self.beam_width
        rows = (sentence * self.steps + step) * self.vocab_size + token_ids
        return ops.gather(self.table, rows, 0), state

    def reorder(self, state, rows):
        return state

    def prefix_log_probs(self, prefix):
        """For `python_loop_search`: prefix [n, t+1] (from <s>) -> the table's row for the last token."""
        return self.construct(prefix[:, -1], ms.Tensor(prefix.shape[1] - 1, ms.int32), ())[0]


class CompiledMethod(nn.Cell):
    """One method of a cell as a compiled graph of its own. (ms.jit applied directly to a bound method of a
    Cell can make later graphs that call the same Cell resolve to that method.)"""

    def __init__(self, owner, method):
        super().__init__()
        self.owner = owner
        self.method = method

    @ms.jit
    def construct(self, *args):
        return getattr(self.owner, self.method)(*args)


class SteppedBeamSearchDecoder:
    """`BeamSearchDecoder` with a Python loop over one compiled step instead of the graph `while` loop; the state
    goes in as `ms.mutable` so the step compiles once, not once per step."""

    def __init__(self, step_cell, search):
        self.decoder = BeamSearchDecoder(step_cell, search)
        self.search = search
        self._start = CompiledMethod(self.decoder, "start")
        self._step = CompiledMethod(self.decoder, "step")
        self._finalize = CompiledMethod(search, "finalize")

    def __call__(self, inputs):
        state, model_state = self._start(inputs)
        while bool(self.search.is_running(state).asnumpy()):
            state, model_state = self._step(ms.mutable(state), ms.mutable(model_state))
        return self._finalize(ms.mutable(state))


# Compiled update/finalize graphs per search, reused across calls.
_SEARCH_STEPS = weakref.WeakKeyDictionary()


def python_loop_search(search, batch_size, prefix_log_probs):
    """Drives `search` from Python: `prefix_log_probs(prefix [B*k, t+1] int32 Tensor)` -> log-probs [B*k, vocab]
    for the live hypotheses given their whole prefix (starting with <s>). Shares every search rule with
    `BeamSearchDecoder`; only the model side differs (nothing is cached)."""
    if search not in _SEARCH_STEPS:
        _SEARCH_STEPS[search] = (CompiledMethod(search, "update"), CompiledMethod(search, "finalize"))
    update, finalize = _SEARCH_STEPS[search]
    state = search.init_state(batch_size)
    bos = ops.full((batch_size * search.beam_width, 1), BOS_ID, dtype=ms.int32)
    for step in range(search.max_decode_length):
        if not bool(search.is_running(state).asnumpy()):
            break
        history = flatten_beam_dim(state[LIVE_SEQS])[:, :step]
        prefix = ops.concat((bos, history), 1) if step else bos
        state, _ = update(ms.mutable(state), prefix_log_probs(prefix))
    return finalize(ms.mutable(state))


class PrefixDecoder(nn.Cell):
    """Next-token log-probs of the last position, the decoder (the second half of `Seq2SeqModel.construct`,
    cross-attention projections included) recomputing the whole prefix: [n, t+1] ids -> [n, vocab].
    Compiled once with dynamic shapes, so every prefix length runs the same graph."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.set_inputs(ms.Tensor(shape=[None, None], dtype=ms.int32), ms.Tensor(shape=[None, None], dtype=ms.int32),
                        ms.Tensor(shape=[None, None, None], dtype=ms.float32),
                        ms.Tensor(shape=[None, 1, 1, None], dtype=ms.float32))

    @ms.jit
    def construct(self, prefix, positions, encoded, cross_bias):
        logits = self.model.decode(prefix, positions, encoded, cross_bias)
        return ops.log_softmax(logits[:, -1, :], -1)


# One compiled prefix decoder per model, reused by every reference search on it.
_PREFIX_DECODERS = weakref.WeakKeyDictionary()


class FullPrefixLogProbs:
    """Uncached next-token log-probs: the encoder runs once per batch, then every step the decoder recomputes
    the whole prefix."""

    def __init__(self, model, source_ids, beam_width):
        model.set_train(False)
        if model not in _PREFIX_DECODERS:
            _PREFIX_DECODERS[model] = PrefixDecoder(model)
        self.last_log_probs = _PREFIX_DECODERS[model]
        encoded, cross_bias = model.encode(source_ids)
        self.encoded = repeat_beams(encoded, beam_width, 0)
        self.cross_bias = repeat_beams(cross_bias, beam_width, 0)

    def __call__(self, prefix):
        rows, length = prefix.shape
        positions = ops.broadcast_to(ops.arange(length, dtype=ms.int32).reshape(1, length), (rows, length))
        return self.last_log_probs(prefix, positions, self.encoded, self.cross_bias)


def reference_beam_search(model, source_ids, search):
    """Uncached decoding with the same search rules: -> (sequences [B, k, L], scores [B, k])."""
    return python_loop_search(search, source_ids.shape[0], FullPrefixLogProbs(model, source_ids,
                                                                              search.beam_width))
