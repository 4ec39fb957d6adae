"""Beam search as one fixed-shape, graph-compiled loop (in the spirit of flax's examples/wmt/decode.py).

The search logic (`BeamSearch`) only sees log-probabilities; the model enters as a step cell with three methods:
`start(inputs)` -> model state for B*k hypotheses, `construct(token_ids [B*k], step, state)` -> (log_probs
[B*k, vocab], state), `reorder(state, rows)` -> state with hypotheses re-ordered after the beam moved.
`CachedModelStep` is the Transformer with its key/value caches. `BeamSearchDecoder` runs the whole search - a
`while` loop - inside one graph (also what export.py writes to MINDIR). The uncached reference decoder and the
table-driven step cell the tests and bench/decode_speed.py compare against live in tests/reference_decoding.py.

Search state: a tuple of tensors, its fields read with the index constants below, e.g. `state[DONE]` (all
shapes fixed; B sentences, k = beam_width, L = max_decode_length):
    STEP            int32 []         tokens generated so far
    LIVE_TOKENS     int32 [B, k]     last token of each live hypothesis (the next decoder input; <s> at first)
    LIVE_SEQS       int32 [B, k, L]  generated tokens, 0 (pad) beyond `step`
    LIVE_SCORES     f32   [B, k]     cumulative log-probability; IMPOSSIBLE_SCORE marks an empty slot
    FINISHED_SEQS   int32 [B, k, L]  hypotheses that emitted </s>, kept apart so they use no live slot
    FINISHED_SCORES f32   [B, k]     length-normalised scores, best first; IMPOSSIBLE_SCORE marks an empty slot
    DONE            bool  [B]        the sentence's search is over

Conventions: a hypothesis's length counts its generated tokens including </s> (not <s>); its score is
log P / ((5 + length) / 6) ** length_penalty_weight (GNMT). Outputs hold at most L tokens including </s>.
<pad>, <s>, <mask>, the ids given as forbidden_ids (a vocabulary's fillers) and ids >= num_symbols are never
generated; </s> is forbidden while fewer than min_decode_length tokens were generated; <unk>'s log-probability is
lowered by unk_penalty at every step (fairseq's --unkpen; scores include the penalty).
With early_stopping (the default, fairseq's rule) a </s> candidate is finished only if it ranks among the
step's top k, and a sentence is done once k hypotheses finished: beam 1 is then exactly greedy decoding.
Without it (flax's rule) every </s> candidate among the top 2k competes for the finished store, and a sentence
is done only when no live hypothesis can still beat the worst stored one. A sentence that finished nothing by
step L returns its live hypotheses, scored as if their length were L.
"""
import numpy as np

import mindspore as ms
from mindspore import nn, ops

from src.dictionary import BOS_ID, EOS_ID, MASK_ID, PAD_ID, UNK_ID
from src.kernels import beam_cache_op, beam_topk_op
from src.model import write_cache

# The score of an empty beam slot, and the log-probability added to a forbidden token. Finite, so that sums and
# differences of such scores never produce NaN; far below any real cumulative log-probability, however many steps
# it sums (the model's -1e4 attention-mask bias would not be: a long, unlikely hypothesis can fall below -5e3).
IMPOSSIBLE_SCORE = -1.0e9
# A candidate scoring below this descends from an empty slot or a forbidden token: never a real hypothesis.
REAL_SCORE_FLOOR = IMPOSSIBLE_SCORE / 2

# Fields of the search state tuple, in order. A plain tuple with index constants, not a NamedTuple: MindSpore 2.10
# builds a NamedTuple inside a graph through its Python fallback (strict syntax mode rejects it), and a `while`
# loop carrying one beside the model state's plain tuple, or iterating over a tuple held in one, failed to compile.
STEP, LIVE_TOKENS, LIVE_SEQS, LIVE_SCORES, FINISHED_SEQS, FINISHED_SCORES, DONE = range(7)


def length_penalty(length, alpha):
    """GNMT length penalty ((5 + length) / 6) ** alpha (length: tokens including </s>)."""
    return ((5.0 + length) / 6.0) ** alpha


def flatten_beam_dim(x):
    """[B, k, ...] -> [B*k, ...]."""
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def unflatten_beam_dim(x, batch_size, beam_width):
    """[B*k, ...] -> [B, k, ...]."""
    return x.reshape((batch_size, beam_width) + x.shape[1:])


def flat_beam_rows(beam_indices, beam_width_in):
    """beam_indices [B, k_out] (beams of each sentence) -> [B*k_out] rows of the flattened [B*k_in] axis."""
    batch_size = beam_indices.shape[0]
    offsets = ops.arange(batch_size, dtype=ms.int32).reshape(batch_size, 1) * beam_width_in
    return (beam_indices.astype(ms.int32) + offsets).reshape(-1)


def gather_beams(x, beam_indices):
    """x [B, k_in, ...], beam_indices [B, k_out] -> [B, k_out, ...]: x's beams picked per sentence."""
    batch_size, beam_width_in = x.shape[0], x.shape[1]
    rows = flat_beam_rows(beam_indices, beam_width_in)
    picked = ops.gather(flatten_beam_dim(x), rows, 0)
    return picked.reshape((batch_size, beam_indices.shape[1]) + x.shape[2:])


class BeamSearch(nn.Cell):
    """The search logic on fixed-shape tensors: `init_state`, `update`, `is_running`, `finalize`."""

    def __init__(self, beam_width, max_decode_length, vocab_size, length_penalty_weight=1.0, min_decode_length=0,
                 no_repeat_ngram_size=0, early_stopping=True, num_symbols=None, forbidden_ids=(), unk_penalty=0.0,
                 kernels=True):
        """num_symbols: ids from it up to vocab_size (model rows no vocabulary symbol uses) are never generated;
        forbidden_ids: more ids never generated (`Dictionary.never_generated_ids()`: its fillers; <pad>, <s> and
        <mask> are always forbidden); unk_penalty: subtracted from <unk>'s log-probability at every step;
        kernels: each hypothesis's best continuations by src/kernels/beam_topk.cc where it can be built (False:
        MindSpore's TopK; the same scores, but among equal scores TopK's order is its own)."""
        super().__init__()
        if beam_width < 1 or max_decode_length < 1:
            raise ValueError("beam_width and max_decode_length must be >= 1")
        if not 0 <= min_decode_length < max_decode_length:
            raise ValueError("min_decode_length must be >= 0 and below max_decode_length")
        forbidden_ids = sorted({int(i) for i in forbidden_ids} | {PAD_ID, BOS_ID, MASK_ID})
        if forbidden_ids[0] < 0 or forbidden_ids[-1] >= vocab_size or EOS_ID in forbidden_ids:
            raise ValueError(f"forbidden_ids must be ids in [0, {vocab_size}) other than </s> ({EOS_ID})")
        if not 0.0 <= unk_penalty < float("inf"):
            raise ValueError(f"unk_penalty must be a finite number >= 0, got {unk_penalty}")
        self.beam_width = beam_width
        self.max_decode_length = max_decode_length
        self.vocab_size = vocab_size
        self.alpha = float(length_penalty_weight)
        self.min_decode_length = min_decode_length
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.early_stopping = early_stopping
        self.unk_penalty = float(unk_penalty)
        # An upper bound on the normalised score any live hypothesis can still reach (log-probs only fall):
        # its cumulative log-prob divided by the largest penalty (alpha >= 0).
        self.max_penalty = float(length_penalty(max_decode_length, self.alpha))
        # Added to every step's log-probs: IMPOSSIBLE_SCORE on tokens never generated, -unk_penalty on <unk>
        # (0 by default, and adding 0 changes no score).
        token_bias = np.zeros(vocab_size, np.float32)
        token_bias[UNK_ID] = -self.unk_penalty
        token_bias[forbidden_ids] = IMPOSSIBLE_SCORE
        token_bias[num_symbols or vocab_size:] = IMPOSSIBLE_SCORE
        self.token_bias = ms.Tensor(token_bias)
        eos_only = np.zeros(vocab_size, np.float32)
        eos_only[EOS_ID] = IMPOSSIBLE_SCORE
        self.eos_forbidden = ms.Tensor(eos_only)
        self.per_beam = min(2 * beam_width, vocab_size)
        self.topk_kernel = beam_topk_op() if kernels else None
        self.per_beam_carrier = ms.Tensor(np.zeros(self.per_beam, np.int32))   # its length is the kernel's k

    def init_state(self, batch_size):
        k, length = self.beam_width, self.max_decode_length
        step = ms.Tensor(0, ms.int32)
        live_tokens = ops.full((batch_size, k), BOS_ID, dtype=ms.int32)
        live_seqs = ops.zeros((batch_size, k, length), ms.int32)
        # Only beam 0 is live at the start: the others would duplicate it.
        first_beam = (ops.arange(k, dtype=ms.int32) == 0).astype(ms.float32)
        live_scores = ops.broadcast_to(((1.0 - first_beam) * IMPOSSIBLE_SCORE).reshape(1, k), (batch_size, k))
        finished_seqs = ops.zeros((batch_size, k, length), ms.int32)
        finished_scores = ops.full((batch_size, k), IMPOSSIBLE_SCORE, dtype=ms.float32)
        done = ops.zeros((batch_size,), ms.bool_)
        return step, live_tokens, live_seqs, live_scores, finished_seqs, finished_scores, done

    def is_running(self, state):
        return ops.logical_and(state[STEP] < self.max_decode_length, ops.logical_not(state[DONE].all()))

    def update(self, state, log_probs):
        """One search step from the live hypotheses' next-token log-probs [B*k, vocab].

        Returns (new state, rows [B*k]): row r of the new live beam continues row rows[r] of the old one
        (the model state must be re-ordered with it)."""
        step, live_tokens, live_seqs, live_scores, finished_seqs, finished_scores, done = state
        batch_size, k = live_scores.shape
        length = self.max_decode_length
        log_probs = log_probs.astype(ms.float32)
        # Added to every hypothesis's log-probs: forbidden tokens, the <unk> penalty, </s> before min_decode_length
        # (the two vectors never both change one token: </s> is never forbidden).
        bias = self.token_bias + self.eos_forbidden * (step < self.min_decode_length).astype(ms.float32)
        if self.no_repeat_ngram_size > 0:
            banned = self.repeated_ngram_tokens(flatten_beam_dim(live_seqs), step)
            log_probs = log_probs + banned.astype(ms.float32) * IMPOSSIBLE_SCORE

        # The 2k best continuations: even if k of them end with </s>, k remain to stay live. In two stages: each
        # hypothesis's 2k best contain all of its continuations among its sentence's 2k best, so the best 2k of
        # those k * 2k are the best 2k of all k * vocab (a top-k over [B, k * vocab] took 8% of a step).
        per_beam = self.per_beam
        flat_live_scores = live_scores.reshape(batch_size * k)
        if self.topk_kernel is not None:
            beam_scores, beam_tokens = self.topk_kernel(log_probs, bias, flat_live_scores, self.per_beam_carrier)
        else:
            candidates = flat_live_scores.reshape(batch_size * k, 1) + (log_probs + bias)   # [B*k, vocab]
            beam_scores, beam_tokens = ops.topk(candidates, per_beam)                  # [B*k, per_beam]
        top_scores, pick = ops.topk(beam_scores.reshape(batch_size, k * per_beam), 2 * k)
        pick = pick.astype(ms.int32)
        origin = pick // per_beam                                                  # [B, 2k] beam continued
        tokens = ops.gather_elements(beam_tokens.astype(ms.int32).reshape(batch_size, k * per_beam), 1, pick)
        at_step = (ops.arange(length, dtype=ms.int32) == step).reshape(1, 1, length)
        top_seqs = ops.where(at_step, tokens.reshape(batch_size, 2 * k, 1), gather_beams(live_seqs, origin))
        ends = tokens == EOS_ID

        # Live: the k best candidates that did not end.
        live_keys = ops.where(ends, ms.Tensor(IMPOSSIBLE_SCORE, ms.float32), top_scores)
        new_live_scores, live_pick = ops.topk(live_keys, k)                       # [B, k] over the 2k
        live_pick = live_pick.astype(ms.int32)
        new_live_tokens = ops.gather_elements(tokens, 1, live_pick)
        new_live_seqs = gather_beams(top_seqs, live_pick)
        rows = flat_beam_rows(ops.gather_elements(origin, 1, live_pick), k)

        # Finished: candidates that ended join the store, which keeps its k best normalised scores.
        new_finished = ops.logical_and(ends, top_scores > REAL_SCORE_FLOOR)
        new_finished = ops.logical_and(new_finished, ops.logical_not(done).reshape(batch_size, 1))
        if self.early_stopping:
            in_top_k = (ops.arange(2 * k, dtype=ms.int32) < k).reshape(1, 2 * k)
            new_finished = ops.logical_and(new_finished, in_top_k)
        penalty = length_penalty((step + 1).astype(ms.float32), self.alpha)
        new_finished_scores = ops.where(new_finished, top_scores / penalty, ms.Tensor(IMPOSSIBLE_SCORE, ms.float32))
        pool_scores = ops.concat((finished_scores, new_finished_scores), 1)      # [B, 3k]
        pool_seqs = ops.concat((finished_seqs, top_seqs), 1)
        kept_scores, kept = ops.topk(pool_scores, k)
        kept_seqs = gather_beams(pool_seqs, kept.astype(ms.int32))

        if self.early_stopping:
            finished_now = (kept_scores > REAL_SCORE_FLOOR).all(1)
        else:
            best_live_bound = new_live_scores[:, 0] / self.max_penalty
            worst_finished = ops.where(kept_scores[:, k - 1] > REAL_SCORE_FLOOR, kept_scores[:, k - 1],
                                       ms.Tensor(IMPOSSIBLE_SCORE, ms.float32))
            finished_now = worst_finished > best_live_bound
        new_done = ops.logical_or(done, finished_now)
        new_state = (step + 1, new_live_tokens, new_live_seqs, new_live_scores, kept_seqs, kept_scores, new_done)
        return new_state, rows

    def repeated_ngram_tokens(self, seqs, step):
        """seqs [n, L] (tokens generated before `step`) -> bool [n, vocab]: tokens that would repeat an n-gram."""
        size = self.no_repeat_ngram_size
        rows, length = seqs.shape
        starts = length - size + 1                                                 # n-grams that fit in L
        if starts < 1:
            return ops.zeros((rows, self.vocab_size), ms.bool_)
        # An earlier n-gram starting at j is complete once j + size - 1 < step.
        match = (ops.arange(starts, dtype=ms.int32) <= step - size).reshape(1, starts)
        match = ops.broadcast_to(match, (rows, starts))
        positions = ops.arange(length, dtype=ms.int32).reshape(1, length)
        for offset in range(size - 1):
            # The current (size-1)-token prefix, token `offset`, against the same token of every earlier n-gram.
            current = ((positions == step - size + 1 + offset).astype(ms.int32) * seqs).sum(1, keepdims=True)
            match = ops.logical_and(match, seqs[:, offset:offset + starts] == current)
        following = seqs[:, size - 1:size - 1 + starts]                             # token completing each n-gram
        counts = ops.tensor_scatter_elements(ops.zeros((rows, self.vocab_size), ms.float32), following,
                                             match.astype(ms.float32), axis=1, reduction="add")
        return counts > 0

    def finalize(self, state):
        """-> (sequences int32 [B, k, L], scores f32 [B, k]), best first; tokens after </s> are 0 (pad)."""
        live_seqs, live_scores = state[LIVE_SEQS], state[LIVE_SCORES]
        finished_seqs, finished_scores = state[FINISHED_SEQS], state[FINISHED_SCORES]
        any_finished = (finished_scores[:, 0] > REAL_SCORE_FLOOR).reshape(-1, 1)
        fallback_scores = live_scores / self.max_penalty
        scores = ops.where(any_finished, finished_scores, fallback_scores)
        seqs = ops.where(any_finished.reshape(-1, 1, 1), finished_seqs, live_seqs)
        return seqs, scores


class CachedModelStep(nn.Cell):
    """The Transformer as a step cell: encoder and cross-attention keys/values once per sentence, then one token
    per step against a fixed-shape self-attention key/value cache.

    Each step is `Seq2SeqModel.decode_step`, which attends over the cache and the new position and returns the new
    position's keys/values; `reorder` then writes them into the cache while it re-orders the beams, in one pass
    (src/kernels/beam_cache.cc where it can be built, else `write_cache` and a gather: the same values). State: one
    flat tuple, (cross_bias, step) + self_keys + self_values + new_keys + new_values + cross_keys + cross_values,
    each of the six a tuple with one tensor per decoder layer: self keys/values [B*k, h, L, dh], new keys/values
    [B*k, h, 1, dh], cross keys/values [B, h, S, dh] once per sentence (a sentence's beams share them:
    `MultiHeadAttention.attend_grouped`); cross_bias [B, 1, 1, S], step int32 [] (the slot of the new
    keys/values). `split_state` names its parts. (Flat, because a `while` loop carrying the nested tuple ran
    in-process but failed to compile in ms.export, MindSpore 2.10.) kernels=False keeps to MindSpore's own ops
    (export.py: a MINDIR file must not depend on a library built on this machine)."""

    def __init__(self, model, beam_width, max_decode_length, kernels=True):
        super().__init__()
        self.model = model
        self.beam_width = beam_width
        self.max_decode_length = max_decode_length
        self.num_layers = len(model.decoder.layers)
        self.cache_kernel = beam_cache_op() if kernels else None

    def split_state(self, state):
        """The flat state -> (cross_bias, step, self_keys, self_values, new_keys, new_values, cross_keys,
        cross_values)."""
        n = self.num_layers
        return (state[0], state[1], state[2:2 + n], state[2 + n:2 + 2 * n], state[2 + 2 * n:2 + 3 * n],
                state[2 + 3 * n:2 + 4 * n], state[2 + 4 * n:2 + 5 * n], state[2 + 5 * n:])

    def start(self, source_ids):
        encoded, cross_bias = self.model.encode(source_ids)
        rows = source_ids.shape[0] * self.beam_width
        self_keys, new_keys, cross_keys, cross_values = (), (), (), ()
        for layer in self.model.decoder.layers:
            keys, values = layer.cross_attention.project_key_value(encoded)     # [B, h, S, dh]
            cross_keys += (keys,)
            cross_values += (values,)
            self_keys += (ops.zeros((rows, keys.shape[1], self.max_decode_length, keys.shape[3]), ms.float32),)
            new_keys += (ops.zeros((rows, keys.shape[1], 1, keys.shape[3]), ms.float32),)
        step = ms.Tensor(0, ms.int32)
        return (cross_bias, step) + self_keys + self_keys + new_keys + new_keys + cross_keys + cross_values

    def construct(self, token_ids, step, state):
        cross_bias, _, self_keys, self_values, _, _, cross_keys, cross_values = self.split_state(state)
        log_probs, new_keys, new_values = self.model.decode_step(token_ids, step, self_keys, self_values,
                                                                 cross_keys, cross_values, cross_bias)
        return log_probs, ((cross_bias, step) + self_keys + self_values + new_keys + new_values + cross_keys
                           + cross_values)

    def update_cache(self, caches, new, rows, step):
        """caches [B*k, h, L, dh] with new [B*k, h, 1, dh] at slot `step`, then row r <- row rows[r]."""
        if self.cache_kernel is not None:
            slot = step.reshape(1)
            return tuple(self.cache_kernel(cache, value, rows, slot)[0] for cache, value in zip(caches, new))
        return tuple(ops.gather(cache, rows, 0) for cache in write_cache(caches, new, step))

    def reorder(self, state, rows):
        # Beams only move within their sentence, so the cross-attention tensors (one per sentence) need no
        # re-ordering.
        cross_bias, step, self_keys, self_values, new_keys, new_values, cross_keys, cross_values = \
            self.split_state(state)
        self_keys = self.update_cache(self_keys, new_keys, rows, step)
        self_values = self.update_cache(self_values, new_values, rows, step)
        return ((cross_bias, step) + self_keys + self_values + new_keys + new_values + cross_keys + cross_values)


class BeamSearchDecoder(nn.Cell):
    """The whole search - start, `while` loop over steps, finalize - as one compiled graph.

    `decoder(inputs)` -> (sequences [B, k, L], scores [B, k]); inputs are what the step cell's `start` takes
    (source_ids [B, S] for `CachedModelStep`)."""

    def __init__(self, step_cell, search):
        super().__init__()
        self.step_cell = step_cell
        self.search = search

    def start(self, inputs):
        return self.search.init_state(inputs.shape[0]), self.step_cell.start(inputs)

    def step(self, state, model_state):
        log_probs, model_state = self.step_cell(flatten_beam_dim(state[LIVE_TOKENS]), state[STEP], model_state)
        state, rows = self.search.update(state, log_probs)
        return state, self.step_cell.reorder(model_state, rows)

    @ms.jit
    def construct(self, inputs):
        state, model_state = self.start(inputs)
        running = self.search.is_running(state)
        while running:
            state, model_state = self.step(state, model_state)
            running = self.search.is_running(state)
        return self.search.finalize(state)


def search_from_config(model_config, vocab=None, early_stopping=True, kernels=True):
    """A `BeamSearch` with the decode settings of a `ModelConfig`. With `vocab` (the Dictionary) it never emits
    the vocabulary's fillers (`never_generated_ids`) nor ids past its end (model rows no symbol uses); kernels=False:
    MindSpore's own ops only (see `BeamSearch`)."""
    num_symbols, forbidden_ids = (len(vocab), vocab.never_generated_ids()) if vocab is not None else (None, ())
    return BeamSearch(model_config.beam_width, model_config.max_decode_length, model_config.vocab_size,
                      model_config.length_penalty_weight, model_config.min_decode_length,
                      model_config.no_repeat_ngram_size, early_stopping, num_symbols, forbidden_ids,
                      model_config.unk_penalty, kernels)


def cached_decoder(model, search, kernels=True):
    """The compiled decoder of `model` (set to inference mode) for `search`'s settings: one graph with a `while`
    loop over cached steps (kernels=False: MindSpore's own ops only, see `CachedModelStep`)."""
    model.set_train(False)
    return BeamSearchDecoder(CachedModelStep(model, search.beam_width, search.max_decode_length, kernels), search)


def best_hypotheses(sequences, scores=None):
    """[B, k, L] (numpy or Tensor) -> list of B token lists, best beam, cut before the first </s>."""
    sequences = sequences.asnumpy() if hasattr(sequences, "asnumpy") else np.asarray(sequences)
    out = []
    for tokens in sequences[:, 0]:
        tokens = list(int(t) for t in tokens)
        if EOS_ID in tokens:
            tokens = tokens[:tokens.index(EOS_ID)]
        out.append([t for t in tokens if t != PAD_ID])
    return out


def decode_batches(decoder, batches, num_examples, progress=None):
    """The best hypothesis of every example (token lists without </s>, in example order) over eval batches:
    dicts with source_ids [B, S] and example_index [B] (-1 on pad rows)."""
    hypotheses = [None] * num_examples
    for batch in batches:
        sequences, _ = decoder(ms.Tensor(batch["source_ids"]))
        for index, tokens in zip(batch["example_index"], best_hypotheses(sequences)):
            if index >= 0:
                hypotheses[index] = tokens
        if progress is not None:
            progress.update(int((batch["example_index"] >= 0).sum()))
    missing = sum(h is None for h in hypotheses)
    if missing:
        raise RuntimeError(f"{missing} examples were never decoded")
    return hypotheses
