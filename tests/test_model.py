"""The Transformer on a tiny config: shapes, padding invariance, causality, cached step == full decode, loss."""
import dataclasses

import numpy as np
import pytest

import mindspore as ms
from mindspore import ops

from config.config import ModelConfig
from src.model import LossNetwork, Seq2SeqModel, label_smoothed_nll, sinusoidal_table, write_cache


def tiny_config(**changes):
    base = ModelConfig(random_seed=1, seq_length=16, vocab_size=40, hidden_size=16, num_hidden_layers=2,
                       num_decoder_layers=1, num_attention_heads=2, intermediate_size=32, hidden_dropout_prob=0.0,
                       attention_dropout_prob=0.0, max_position_embeddings=32, max_decode_length=12)
    config = dataclasses.replace(base, **changes)
    config.validate()
    return config


@pytest.fixture(scope="module", params=[True, False], ids=["pre_ln", "post_ln"])
def model(request):
    ms.set_seed(3)
    net = Seq2SeqModel(tiny_config(pre_layernorm=request.param))
    net.set_train(False)
    return net


def batch(rng, batch_size=3, src_len=7, tgt_len=5):
    source = rng.integers(5, 40, size=(batch_size, src_len)).astype(np.int32)
    source[:, -1] = 2
    decoder_input = rng.integers(5, 40, size=(batch_size, tgt_len)).astype(np.int32)
    positions = np.tile(np.arange(tgt_len, dtype=np.int32), (batch_size, 1))
    return source, decoder_input, positions


def run(model, source, decoder_input, positions):
    return model(ms.Tensor(source), ms.Tensor(decoder_input), ms.Tensor(positions)).asnumpy()


def test_sinusoidal_table_values():
    table = sinusoidal_table(4, 6)
    assert table.shape == (4, 6)
    np.testing.assert_allclose(table[0], [0, 1, 0, 1, 0, 1], atol=1e-7)
    np.testing.assert_allclose(table[3, 0], np.sin(3.0), rtol=1e-6)
    np.testing.assert_allclose(table[3, 3], np.cos(3.0 / 10000 ** (2 / 6)), rtol=1e-6)


def test_output_shape_and_depths(model):
    rng = np.random.default_rng(0)
    logits = run(model, *batch(rng))
    assert logits.shape == (3, 5, 40)
    assert len(model.encoder.layers) == 2 and len(model.decoder.layers) == 1
    assert np.isfinite(logits).all()


def test_padding_invariance(model):
    rng = np.random.default_rng(1)
    source, decoder_input, positions = batch(rng)
    logits = run(model, source, decoder_input, positions)
    padded_source = np.concatenate([source, np.zeros((3, 4), np.int32)], axis=1)
    padded_input = np.concatenate([decoder_input, np.zeros((3, 3), np.int32)], axis=1)
    padded_positions = np.concatenate([positions, np.zeros((3, 3), np.int32)], axis=1)
    padded_logits = run(model, padded_source, padded_input, padded_positions)
    np.testing.assert_allclose(padded_logits[:, :5], logits, atol=1e-5)


def test_no_leakage_from_future_targets(model):
    rng = np.random.default_rng(2)
    source, decoder_input, positions = batch(rng)
    logits = run(model, source, decoder_input, positions)
    changed = decoder_input.copy()
    changed[:, 3:] = rng.integers(5, 40, size=(3, 2))
    changed_logits = run(model, source, changed, positions)
    np.testing.assert_allclose(changed_logits[:, :3], logits[:, :3], atol=1e-6)
    assert np.abs(changed_logits[:, 3:] - logits[:, 3:]).max() > 1e-4


def test_positions_are_explicit(model):
    rng = np.random.default_rng(3)
    source, decoder_input, positions = batch(rng)
    shifted = run(model, source, decoder_input, positions + 4)
    assert np.abs(shifted - run(model, source, decoder_input, positions)).max() > 1e-4


def test_hidden_mask_tokens_are_ignored_by_cross_attention():
    ms.set_seed(4)
    net = Seq2SeqModel(tiny_config(), hide_masked_source=True)
    net.set_train(False)
    rng = np.random.default_rng(4)
    source, decoder_input, positions = batch(rng)
    source[:, 2] = 4  # <mask>
    encoded, cross_bias = net.encode(ms.Tensor(source))
    assert (cross_bias.asnumpy()[:, 0, 0, 2] < -1e3).all() and (cross_bias.asnumpy()[:, 0, 0, 3] == 0).all()


def test_cached_steps_equal_full_decode(model):
    rng = np.random.default_rng(5)
    source, decoder_input, positions = batch(rng, tgt_len=6)
    full = run(model, source, decoder_input, positions)
    full_log_probs = full - np.log(np.exp(full).sum(-1, keepdims=True))
    encoded, cross_bias = model.encode(ms.Tensor(source))
    cross_keys, cross_values = model.cross_attention_cache(encoded)
    n, heads, _, head_dim = cross_keys[0].shape
    assert len(cross_keys) == len(model.decoder.layers)
    max_len = 9
    self_keys = tuple(ops.zeros((n, heads, max_len, head_dim), ms.float32) for _ in cross_keys)
    self_values = self_keys
    for step in range(6):
        log_probs, new_keys, new_values = model.decode_step(
            ms.Tensor(decoder_input[:, step]), ms.Tensor(step, ms.int32), self_keys, self_values,
            cross_keys, cross_values, cross_bias)
        self_keys = write_cache(self_keys, new_keys, ms.Tensor(step, ms.int32))
        self_values = write_cache(self_values, new_values, ms.Tensor(step, ms.int32))
        np.testing.assert_allclose(log_probs.asnumpy(), full_log_probs[:, step], atol=1e-5)


def test_label_smoothed_loss_hand_computed():
    logits = np.log(np.array([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [0.2, 0.3, 0.5]]], dtype=np.float32))
    target = np.array([[1, 2, 0]], dtype=np.int32)  # the last target is padding
    loss, nll, tokens = label_smoothed_nll(ms.Tensor(logits), ms.Tensor(target), 0.1)
    expected_nll = -np.log(0.25) - np.log(0.8)
    uniform = -np.log([0.5, 0.25, 0.25]).mean() - np.log([0.1, 0.1, 0.8]).mean()
    assert tokens.asnumpy() == 2
    np.testing.assert_allclose(nll.asnumpy(), expected_nll, rtol=1e-6)
    np.testing.assert_allclose(loss.asnumpy(), 0.9 * expected_nll + 0.1 * uniform, rtol=1e-6)


def test_loss_network_in_graph_mode():
    ms.set_seed(6)
    net = LossNetwork(Seq2SeqModel(tiny_config()), 0.1)
    rng = np.random.default_rng(6)
    source, decoder_input, positions = batch(rng)
    step = ms.jit(net.construct)
    loss, nll, tokens = step(*(ms.Tensor(a) for a in (source, decoder_input, positions, decoder_input)))
    assert tokens.asnumpy() == decoder_input.size
    assert 0 < float(nll.asnumpy()) / decoder_input.size < 2 * np.log(40)
