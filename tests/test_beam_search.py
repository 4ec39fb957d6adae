"""Beam search: hand-specified step probabilities with known answers, exhaustive search, cached == uncached."""
import dataclasses
import itertools

import numpy as np
import pytest

import mindspore as ms

from config.config import ConfigError, ModelConfig, config_from_dict
from reference_decoding import SteppedBeamSearchDecoder, TableStep, python_loop_search, reference_beam_search
from src.beam_search import (DONE, FINISHED_SCORES, FINISHED_SEQS, IMPOSSIBLE_SCORE, LIVE_SCORES, LIVE_SEQS,
                             LIVE_TOKENS, REAL_SCORE_FLOOR, STEP, BeamSearch, BeamSearchDecoder, CachedModelStep,
                             best_hypotheses, cached_decoder, gather_beams, length_penalty, search_from_config)
from src.dictionary import BOS_ID, EOS_ID, MASK_ID, PAD_ID, UNK_ID, Dictionary, build_vocabulary
from src.kernels import beam_cache_op, beam_topk_op
from src.model import Seq2SeqModel, write_cache

VOCAB = 9
A, B, C, D = 5, 6, 7, 8
FLOOR = 1e-6  # probability of every token a table does not mention: never competitive


def markov_table(steps, rules, floor=FLOOR):
    """[1, steps, VOCAB, VOCAB] log-probs: rules {(step or None for all steps, previous token): {token: p}}."""
    table = np.full((steps, VOCAB, VOCAB), np.log(floor))
    for (step, previous), probs in rules.items():
        for s in range(steps) if step is None else [step]:
            for token, p in probs.items():
                table[s, previous, token] = np.log(p)
    return table[None]


def decode_table(table, beam_width, alpha=0.0, min_length=0, ngram=0, early_stopping=True, search=None):
    """-> (sequences [B, k, L], scores [B, k]) from the graph-compiled decoder (`search`, if given, replaces the
    one the other arguments describe)."""
    batch, steps = table.shape[:2]
    search = search or BeamSearch(beam_width, steps, VOCAB, alpha, min_length, ngram, early_stopping)
    decoder = BeamSearchDecoder(TableStep(table, beam_width), search)
    sequences, scores = decoder(ms.Tensor(np.zeros((batch, 1), np.int32)))
    return sequences.asnumpy(), scores.asnumpy()


def outputs(sequences, sentence=0):
    """Every beam of a sentence as a token list cut before </s>."""
    return [list(row[:list(row).index(EOS_ID)]) if EOS_ID in row else list(row) for row in sequences[sentence]]


def test_helpers():
    x = ms.Tensor(np.arange(2 * 3 * 2, dtype=np.int32).reshape(2, 3, 2))
    picked = gather_beams(x, ms.Tensor(np.array([[2, 0], [1, 1]], np.int32))).asnumpy()
    np.testing.assert_array_equal(picked, [[[4, 5], [0, 1]], [[8, 9], [8, 9]]])
    assert length_penalty(1, 1.0) == 1.0 and length_penalty(7, 2.0) == 4.0 and length_penalty(9, 0.0) == 1.0


def test_initial_state_fields():
    state = BeamSearch(3, 5, VOCAB).init_state(2)
    assert state[STEP].shape == () and int(state[STEP]) == 0
    np.testing.assert_array_equal(state[LIVE_TOKENS].asnumpy(), np.full((2, 3), BOS_ID))
    assert state[LIVE_SEQS].shape == state[FINISHED_SEQS].shape == (2, 3, 5)
    live_scores = state[LIVE_SCORES].asnumpy()
    # Only beam 0 is live; the other slots and the finished store are empty.
    assert (live_scores[:, 0] == 0).all() and (live_scores[:, 1:] < REAL_SCORE_FLOOR).all()
    assert (state[FINISHED_SCORES].asnumpy() < REAL_SCORE_FLOOR).all() and not state[DONE].asnumpy().any()


# The three finished hypotheses of this table: "A" (p .54, length 2 with </s>), "B C" (.4, 3), "A C" (.06, 3).
LENGTH_RULES = {(0, BOS_ID): {A: .6, B: .4}, (None, A): {EOS_ID: .9, C: .1}, (None, B): {C: 1.0},
                (None, C): {EOS_ID: 1.0}}


@pytest.mark.parametrize("early_stopping", [True, False])
def test_length_penalty_picks_short_or_long(early_stopping):
    table = markov_table(4, LENGTH_RULES)
    sequences, scores = decode_table(table, 2, alpha=0.0, early_stopping=early_stopping)
    assert outputs(sequences) == [[A], [B, C]]                          # no penalty: the likelier, shorter one
    np.testing.assert_allclose(scores[0], [np.log(.54), np.log(.4)], rtol=1e-6)
    sequences, scores = decode_table(table, 2, alpha=5.0, early_stopping=early_stopping)
    # alpha 5: log .4 / (8/6)^5 = -0.2174 beats log .54 / (7/6)^5 = -0.2851: the longer one wins.
    assert outputs(sequences) == [[B, C], [A]]
    np.testing.assert_allclose(scores[0], [np.log(.4) / (8 / 6) ** 5, np.log(.54) / (7 / 6) ** 5], rtol=1e-6)


# "" (</s> first, p .55, length 1) against "A B C" (p .45, length 4).
GREEDY_RULES = {(0, BOS_ID): {EOS_ID: .55, A: .45}, (None, A): {B: 1.0}, (None, B): {C: 1.0},
                (None, C): {EOS_ID: 1.0}}


def test_beam_one_is_greedy_but_flax_rule_keeps_searching():
    table = markov_table(4, GREEDY_RULES)
    sequences, scores = decode_table(table, 1, alpha=1.0, early_stopping=True)
    assert outputs(sequences) == [[]]                                     # </s> is the argmax: empty output
    np.testing.assert_allclose(scores[0, 0], np.log(.55), rtol=1e-6)
    # Flax's rule: the finished "" is kept apart, the live slot goes on with A and finds a better normalised
    # score, log .45 / (9/6) = -0.532 > log .55 / 1 = -0.598.
    sequences, scores = decode_table(table, 1, alpha=1.0, early_stopping=False)
    assert outputs(sequences) == [[A, B, C]]
    np.testing.assert_allclose(scores[0, 0], np.log(.45) / 1.5, rtol=1e-6)
    # Without a length penalty nothing can beat the first </s>: both rules stop there.
    assert outputs(decode_table(table, 1, alpha=0.0, early_stopping=False)[0]) == [[]]


MIN_LENGTH_RULES = {(0, BOS_ID): {EOS_ID: .7, A: .3}, (None, A): {EOS_ID: .6, B: .4}, (None, B): {EOS_ID: 1.0}}


# Unconstrained, </s> (p .7) would come first.
@pytest.mark.parametrize("min_length,expected,probability", [(1, [A], .3 * .6), (2, [A, B], .3 * .4)])
def test_min_decode_length_forbids_early_eos(min_length, expected, probability):
    sequences, scores = decode_table(markov_table(4, MIN_LENGTH_RULES), 1, min_length=min_length)
    assert outputs(sequences) == [expected]
    np.testing.assert_allclose(scores[0, 0], np.log(probability), rtol=1e-6)


NGRAM_RULES = {(0, BOS_ID): {A: .9, B: .1}, (None, A): {A: .7, B: .2, EOS_ID: .1}, (None, B): {EOS_ID: .9, A: .1}}


@pytest.mark.parametrize("ngram,expected,probability", [
    (1, [A, B], .9 * .2 * .9),                  # A may not recur: A B </s>
    (2, [A, A, B], .9 * .7 * .2 * .9),          # the bigram A A may not recur
    (3, [A, A, A, B], .9 * .7 * .7 * .2 * .9),  # the trigram A A A may not recur; </s> is the 5th token
])
def test_no_repeat_ngram(ngram, expected, probability):
    sequences, scores = decode_table(markov_table(5, NGRAM_RULES), 1, ngram=ngram)
    assert outputs(sequences) == [expected]
    np.testing.assert_allclose(scores[0, 0], np.log(probability), rtol=1e-6)


def test_max_length_without_eos_returns_the_live_hypothesis():
    sequences, scores = decode_table(markov_table(5, NGRAM_RULES), 1, alpha=1.0)
    assert outputs(sequences) == [[A, A, A, A, A]]                          # never ended: L tokens, no </s>
    np.testing.assert_allclose(scores[0, 0], np.log(.9 * .7 ** 4) / length_penalty(5, 1.0), rtol=1e-6)


# A vocabulary of 8 symbols for the 9-row model: <pad> <s> </s> <unk> <mask>, the word A, then B and C as the
# fillers of pad_to_multiple(8); D (id 8) is a model row past the vocabulary's end.
FILLED_VOCAB = Dictionary(["a"], [3]).pad_to_multiple(8)


def filled_vocab_search(beam_width, steps, vocab=FILLED_VOCAB, unk_penalty=0.0):
    config = dataclasses.replace(ModelConfig(), vocab_size=VOCAB, beam_width=beam_width, max_decode_length=steps,
                                 length_penalty_weight=0.0, unk_penalty=unk_penalty)
    return search_from_config(config, vocab)


def test_vocabulary_fillers_and_never_generated_ids():
    assert FILLED_VOCAB.symbols[A:] == ["a", "madeupword0000", "madeupword0001"]
    assert FILLED_VOCAB.filler_ids() == [B, C]
    assert FILLED_VOCAB.never_generated_ids() == [PAD_ID, BOS_ID, MASK_ID, B, C]
    # A corpus word of a filler's name keeps its count: a real symbol, not a filler, wherever it sits.
    vocab = build_vocabulary({"madeupword0000": 2, "x": 5, "y": 1}, pad_to_multiple=5)
    assert vocab.symbols[5:] == ["x", "madeupword0000", "y", "madeupword0001", "madeupword0002"]
    assert vocab.filler_ids() == [8, 9]


@pytest.mark.parametrize("top", [PAD_ID, BOS_ID, MASK_ID, B, C, D])
def test_never_emits_specials_fillers_or_ids_past_the_vocabulary(top):
    """`top` is every step's most probable token, yet the search given the vocabulary never emits it."""
    rules = {(None, previous): {top: .9, A: .06, EOS_ID: .04} for previous in (BOS_ID, A, top)}
    rules[(None, A)] = {top: .9, EOS_ID: .1}
    table = markov_table(3, rules)
    sequences, scores = decode_table(table, 1, search=filled_vocab_search(1, 3))
    assert outputs(sequences) == [[A]]
    np.testing.assert_allclose(scores[0, 0], np.log(.06 * .1), rtol=1e-6)
    # Without the vocabulary only <pad>, <s> and <mask> are known to be forbidden: fillers and D are emitted.
    sequences, _ = decode_table(table, 1, search=BeamSearch(1, 3, VOCAB, 0.0))
    assert outputs(sequences) == [[A] if top in (PAD_ID, BOS_ID, MASK_ID) else [top, top, top]]


def test_beams_hold_no_forbidden_token_anywhere():
    """Beam 2: the forbidden tokens outweigh everything at every step; the two real hypotheses remain."""
    rules = {(0, BOS_ID): {PAD_ID: .3, MASK_ID: .2, B: .15, C: .1, D: .1, BOS_ID: .05, A: .06, UNK_ID: .03,
                           EOS_ID: .01},
             (None, A): {MASK_ID: .5, B: .3, EOS_ID: .15}, (None, UNK_ID): {PAD_ID: .9, EOS_ID: .05}}
    sequences, scores = decode_table(markov_table(3, rules), 2, search=filled_vocab_search(2, 3))
    assert outputs(sequences) == [[A], [UNK_ID]]
    np.testing.assert_allclose(scores[0], np.log([.06 * .15, .03 * .05]), rtol=1e-6)
    assert set(np.unique(sequences)) == {PAD_ID, A, UNK_ID, EOS_ID}               # 0: the padding after </s>


# <unk> against A by log .5 - log .4 = log 1.25 = 0.2231 (one <unk>) or the same gap over two <unk>s.
ONE_UNK_RULES = {(0, BOS_ID): {UNK_ID: .5, A: .4}, (None, UNK_ID): {EOS_ID: 1.0}, (None, A): {EOS_ID: 1.0}}
TWO_UNK_RULES = {(0, BOS_ID): {UNK_ID: .5, A: .4}, (1, UNK_ID): {UNK_ID: 1.0}, (2, UNK_ID): {EOS_ID: 1.0},
                 (1, A): {A: 1.0}, (2, A): {EOS_ID: 1.0}}


@pytest.mark.parametrize("rules,penalty,unk_output,word_output", [
    (ONE_UNK_RULES, 0.0, [UNK_ID], [A]),                 # no penalty: <unk> (.5) beats A (.4)
    (ONE_UNK_RULES, 0.2, [UNK_ID], [A]),                 # 0.2 < 0.2231: still <unk>
    (ONE_UNK_RULES, 0.25, [UNK_ID], [A]),                # 0.25 > 0.2231: A wins
    (TWO_UNK_RULES, 0.11, [UNK_ID, UNK_ID], [A, A]),     # paid twice: 0.22 < 0.2231
    (TWO_UNK_RULES, 0.12, [UNK_ID, UNK_ID], [A, A]),     # 0.24 > 0.2231
])
def test_unk_penalty_is_paid_for_every_unk(rules, penalty, unk_output, word_output):
    sequences, scores = decode_table(markov_table(4, rules), 2, search=filled_vocab_search(2, 4, unk_penalty=penalty))
    unk_score = np.log(.5) - penalty * len(unk_output)                            # scores include the penalty
    word_score = np.log(.4)
    unk_wins = penalty * len(unk_output) < np.log(1.25)
    assert outputs(sequences) == ([unk_output, word_output] if unk_wins else [word_output, unk_output])
    np.testing.assert_allclose(scores[0], sorted([unk_score, word_score], reverse=True), rtol=1e-6)


def test_search_settings_are_checked():
    with pytest.raises(ValueError, match="forbidden_ids"):
        BeamSearch(1, 3, VOCAB, forbidden_ids=[EOS_ID])
    with pytest.raises(ValueError, match="forbidden_ids"):
        BeamSearch(1, 3, VOCAB, forbidden_ids=[VOCAB])
    with pytest.raises(ValueError, match="unk_penalty"):
        BeamSearch(1, 3, VOCAB, unk_penalty=-0.5)
    for bad in (-1, float("inf")):
        with pytest.raises(ConfigError, match="model_config.unk_penalty: must be a finite number >= 0"):
            config_from_dict({"model_config": {"unk_penalty": bad}})
    assert config_from_dict({"model_config": {"unk_penalty": 1}}).model_config.unk_penalty == 1.0


def random_tables(seed, batch=2, steps=4):
    logits = np.random.default_rng(seed).normal(size=(batch, steps, VOCAB, VOCAB)) * 2.0
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def exhaustive_finished(table, alpha, min_length, ngram):
    """Every allowed finished hypothesis of one sentence with its normalised score, best first."""
    steps = table.shape[0]
    words = [t for t in range(VOCAB) if t not in (PAD_ID, BOS_ID, EOS_ID, MASK_ID)]
    found = []
    for length in range(min_length, steps):
        for tokens in itertools.product(words, repeat=length):
            sequence = list(tokens) + [EOS_ID]
            grams = [tuple(sequence[i:i + ngram]) for i in range(len(sequence) - ngram + 1)] if ngram else []
            if len(set(grams)) < len(grams):
                continue
            previous = [BOS_ID] + sequence[:-1]
            log_prob = sum(table[t, previous[t], sequence[t]] for t in range(len(sequence)))
            found.append((log_prob / length_penalty(len(sequence), alpha), tokens))
    return sorted(found, reverse=True)


@pytest.mark.parametrize("alpha,min_length,ngram", [(0.6, 1, 2), (0.0, 0, 0), (2.0, 2, 1)])
def test_exhaustive_beam_finds_the_exact_best(alpha, min_length, ngram):
    """With flax's rule and a beam wide enough to hold every prefix, the finished store is exactly the best
    finished hypotheses of an exhaustive enumeration (two sentences: beams must not mix across the batch)."""
    tables = random_tables(7, steps=3)
    beam = 130                                     # 2k covers every candidate: 5^2 live prefixes x 6 tokens
    sequences, scores = decode_table(tables, beam, alpha, min_length, ngram, early_stopping=False)
    for sentence in range(2):
        expected = exhaustive_finished(tables[sentence], alpha, min_length, ngram)
        real = scores[sentence] > REAL_SCORE_FLOOR
        assert real.sum() == min(len(expected), beam)
        np.testing.assert_allclose(scores[sentence][real], [s for s, _ in expected[:beam]], rtol=1e-5)
        assert [tuple(t) for t in outputs(sequences, sentence)[:5]] == [t for _, t in expected[:5]]


def test_beam_one_equals_argmax_chain():
    tables = random_tables(11, steps=6)
    sequences, _ = decode_table(tables, 1, alpha=1.0)
    for sentence in range(2):
        previous, chain = BOS_ID, []
        for step in range(6):
            row = tables[sentence, step, previous].copy()
            row[[PAD_ID, BOS_ID, MASK_ID]] = -np.inf
            previous = int(row.argmax())
            if previous == EOS_ID:
                break
            chain.append(previous)
        assert outputs(sequences, sentence)[0] == chain


def test_graph_loop_equals_python_loop():
    tables = random_tables(3, steps=6)
    sequences, scores = decode_table(tables, 3, 1.0, 1, 2, early_stopping=False)
    search = BeamSearch(3, 6, VOCAB, 1.0, 1, 2, early_stopping=False)
    loop_sequences, loop_scores = python_loop_search(search, 2, TableStep(tables, 3).prefix_log_probs)
    np.testing.assert_array_equal(loop_sequences.asnumpy(), sequences)
    np.testing.assert_allclose(loop_scores.asnumpy(), scores, rtol=1e-6)


# ------------------------------------------------------------------------------------------------------------
# The Transformer: cached (one graph) against uncached (whole prefix recomputed each step)
# ------------------------------------------------------------------------------------------------------------

def tiny_config(**changes):
    base = ModelConfig(random_seed=1, seq_length=16, vocab_size=40, hidden_size=16, num_hidden_layers=2,
                       num_decoder_layers=1, num_attention_heads=2, intermediate_size=32, hidden_dropout_prob=0.0,
                       attention_dropout_prob=0.0, max_position_embeddings=32, max_decode_length=10)
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def model():
    ms.set_seed(5)
    # Large random weights make the output depend on the source; a larger </s> embedding makes </s> likely
    # enough that some hypotheses end before the length limit and others do not.
    net = Seq2SeqModel(tiny_config(initializer_range=1.0))
    table = net.embedder.table.asnumpy()
    table[EOS_ID] *= 4.0
    net.embedder.table.set_data(ms.Tensor(table))
    net.set_train(False)
    return net


def sources(seed=0, batch=4, length=7):
    source = np.random.default_rng(seed).integers(5, 40, size=(batch, length)).astype(np.int32)
    source[:, -1] = EOS_ID
    source[1, 4:] = PAD_ID                                                     # a shorter sentence
    return source


@pytest.mark.parametrize("kernels", [True, False])
def test_cached_step_equals_model_decode_step(model, kernels):
    """The beam search's step cell (beams repeated in its start state) computes what Seq2SeqModel.decode_step
    computes on the beam-repeated batch, and its cache update (the C++ kernel, or MindSpore's ops) writes the step's
    keys/values and moves the beams exactly as write_cache and a gather do."""
    source = sources()
    beam, max_len = 2, 4
    cell = CachedModelStep(model, beam, max_len, kernels)
    assert (cell.cache_kernel is not None) == (kernels and beam_cache_op() is not None)
    state = cell.start(ms.Tensor(source))
    encoded, cross_bias = model.encode(ms.Tensor(np.repeat(source, beam, 0)))
    cross_keys, cross_values = model.cross_attention_cache(encoded)
    rows, heads, _, head_dim = cross_keys[0].shape
    self_keys = tuple(ms.ops.zeros((rows, heads, max_len, head_dim), ms.float32) for _ in cross_keys)
    self_values = self_keys
    rng = np.random.default_rng(9)
    tokens = rng.integers(5, 40, size=(max_len, len(source) * beam)).astype(np.int32)
    tokens[0] = BOS_ID
    for step in range(max_len):
        step_tensor = ms.Tensor(step, ms.int32)
        log_probs, state = cell(ms.Tensor(tokens[step]), step_tensor, state)
        expected, new_keys, new_values = model.decode_step(ms.Tensor(tokens[step]), step_tensor, self_keys,
                                                           self_values, cross_keys, cross_values, cross_bias)
        np.testing.assert_allclose(log_probs.asnumpy(), expected.asnumpy(), rtol=1e-5, atol=1e-5)
        # each sentence's beams swapped or kept, at random
        moved = (np.arange(rows) ^ rng.integers(0, 2, size=rows)).astype(np.int32)
        state = cell.reorder(state, ms.Tensor(moved))
        self_keys = tuple(ms.ops.gather(cache, ms.Tensor(moved), 0)
                          for cache in write_cache(self_keys, new_keys, step_tensor))
        self_values = tuple(ms.ops.gather(cache, ms.Tensor(moved), 0)
                            for cache in write_cache(self_values, new_values, step_tensor))
        _, _, cell_keys, cell_values, _, _, _, _ = cell.split_state(state)
        for cell_cache, expected_cache in zip(cell_keys + cell_values, self_keys + self_values):
            np.testing.assert_array_equal(cell_cache.asnumpy(), expected_cache.asnumpy())


@pytest.mark.skipif(beam_cache_op() is None, reason="no C++ compiler with OpenMP")
@pytest.mark.parametrize("slot", [0, 3, 5])
def test_cache_kernel_moves_rows_writes_slot_and_zero_tail(slot):
    """beam_cache.cc on a cache that holds zeros past `slot` (as every beam-search cache does): row r becomes row
    rows[r] with the fresh key at `slot`, and the slots after it stay zero (written, not copied)."""
    rng = np.random.default_rng(slot)
    rows, heads, length, head_dim = 6, 2, 6, 3
    cache = rng.standard_normal((rows, heads, length, head_dim)).astype(np.float32)
    cache[:, :, slot:] = 0
    fresh = rng.standard_normal((rows, heads, 1, head_dim)).astype(np.float32)
    moved = rng.permutation(rows).astype(np.int32)
    out = beam_cache_op()(ms.Tensor(cache), ms.Tensor(fresh), ms.Tensor(moved), ms.Tensor([slot], ms.int32))[0]
    expected = cache.copy()
    expected[:, :, slot] = fresh[:, :, 0]
    np.testing.assert_array_equal(out.asnumpy(), expected[moved])


@pytest.mark.skipif(beam_topk_op() is None, reason="no C++ compiler with OpenMP")
def test_topk_kernel_equals_stock_topk_with_ties_lowest_id_first():
    """beam_topk.cc: each row's `width` best of live + (log_probs + bias), the same values as MindSpore's adds and
    TopK; among equal scores (a row of an empty beam, forbidden tokens) the lower id comes first."""
    rng = np.random.default_rng(3)
    rows, vocab, width = 6, 50, 8
    log_probs = rng.standard_normal((rows, vocab)).astype(np.float32)
    log_probs[2, 10:20] = log_probs[2, 30]                                       # ties among real scores
    bias = np.zeros(vocab, np.float32)
    bias[[0, 1, 3, 40]] = IMPOSSIBLE_SCORE
    live = rng.standard_normal(rows).astype(np.float32)
    live[4] = IMPOSSIBLE_SCORE                                                   # an empty beam: all scores tie
    scores, ids = beam_topk_op()(ms.Tensor(log_probs), ms.Tensor(bias), ms.Tensor(live),
                                 ms.Tensor(np.zeros(width, np.int32)))
    stock_scores, _ = ms.ops.topk(ms.Tensor(live).reshape(rows, 1) + (ms.Tensor(log_probs) + ms.Tensor(bias)), width)
    np.testing.assert_array_equal(scores.asnumpy(), stock_scores.asnumpy())
    expected = live[:, None] + (log_probs + bias)
    order = np.argsort(-expected, axis=1, kind="stable")[:, :width]             # stable: lower id first on ties
    np.testing.assert_array_equal(ids.asnumpy(), order)
    assert ids.dtype == ms.int32 and scores.shape == (rows, width)


_DECODERS = {}


def model_decoder(model, beam, **settings):
    """The compiled decoder for `beam` (max length 10, alpha 1, min length 1; `settings`: more BeamSearch
    arguments), shared by the tests below."""
    key = (beam,) + tuple(sorted(settings.items()))
    if key not in _DECODERS:
        _DECODERS[key] = cached_decoder(model, BeamSearch(beam, 10, 40, 1.0, 1, **settings))
    return _DECODERS[key]


# A 36-symbol vocabulary with fillers at 20-27 (ids 36-39 are past its end), and a penalty on <unk>.
RESTRICTED = dict(num_symbols=36, forbidden_ids=tuple(range(20, 28)), unk_penalty=0.5)


@pytest.mark.parametrize("beam,settings", [(1, {}), (4, {}), (4, RESTRICTED)])
def test_cached_equals_uncached(model, beam, settings):
    decoder = model_decoder(model, beam, **settings)
    source = ms.Tensor(sources())
    sequences, scores = decoder(source)
    search = decoder.search
    ref_sequences, ref_scores = reference_beam_search(model, source, search)
    np.testing.assert_array_equal(sequences.asnumpy(), ref_sequences.asnumpy())
    np.testing.assert_allclose(scores.asnumpy(), ref_scores.asnumpy(), rtol=1e-4, atol=1e-5)
    if beam > 1 and not settings:                             # the Python loop over the compiled cached step
        stepped = SteppedBeamSearchDecoder(CachedModelStep(model, beam, search.max_decode_length), search)
        stepped_sequences, stepped_scores = stepped(source)
        np.testing.assert_array_equal(stepped_sequences.asnumpy(), sequences.asnumpy())
        np.testing.assert_allclose(stepped_scores.asnumpy(), scores.asnumpy(), rtol=1e-5, atol=1e-6)
    lengths = [len(h) for h in best_hypotheses(sequences)]
    assert min(lengths) < 10 and max(lengths) == 10                            # some ended, some did not
    if settings:
        # None of the restricted ids in any beam; the unrestricted search does emit some of them.
        banned = [BOS_ID, MASK_ID, *settings["forbidden_ids"], *range(settings["num_symbols"], 40)]
        assert not np.isin(sequences.asnumpy(), banned).any()
        assert np.isin(model_decoder(model, beam)(source)[0].asnumpy(), banned).any()


def test_greedy_equals_naive_argmax_decoding(model):
    """Beam 1 against a plain loop over the teacher-forced model (no search code at all)."""
    source = sources()
    sequences, scores = model_decoder(model, 1)(ms.Tensor(source))
    rows = len(source)
    # Fixed-shape prefix buffer (later positions cannot affect earlier ones: causal attention).
    prefix = np.zeros((rows, 11), np.int32)
    prefix[:, 0] = BOS_ID
    positions = np.tile(np.arange(11, dtype=np.int32), (rows, 1))
    log_prob, ended = np.zeros(rows), np.zeros(rows, bool)

    def teacher_forced(source_ids, decoder_input_ids, decoder_positions):
        return model(source_ids, decoder_input_ids, decoder_positions)

    teacher_forced = ms.jit(teacher_forced)
    for step in range(10):
        logits = teacher_forced(ms.Tensor(source), ms.Tensor(prefix), ms.Tensor(positions)).asnumpy()[:, step]
        logits = logits.astype(np.float64)
        log_probs = logits - logits.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        log_probs[:, [PAD_ID, BOS_ID, MASK_ID] + ([EOS_ID] if step == 0 else [])] = -np.inf   # min length 1
        tokens = log_probs.argmax(-1)
        log_prob += np.where(ended, 0.0, log_probs[np.arange(rows), tokens])
        ended |= tokens == EOS_ID
        prefix[:, step + 1] = tokens
    for row in range(rows):
        generated = list(prefix[row, 1:])
        generated = generated[:generated.index(EOS_ID) + 1] if EOS_ID in generated else generated
        assert best_hypotheses(sequences)[row] == [t for t in generated if t != EOS_ID]
        np.testing.assert_allclose(scores.asnumpy()[row, 0], log_prob[row] / length_penalty(len(generated), 1.0),
                                   rtol=1e-4)
    assert ended.any() and not ended.all()
