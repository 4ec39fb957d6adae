"""The MASS Transformer encoder-decoder, read bottom-up:
positions -> attention -> feed-forward -> encoder/decoder layers -> encoder/decoder -> seq2seq model -> loss.

Every size comes from `ModelConfig`. One embedding table serves the encoder input, the decoder input and the
output projection. Positions are sinusoidal and looked up from explicit position ids, so a MASS decoder can
process only the masked fragment at its true sentence positions. Masks come from the ids (padding) and from
positions (causal), never from a separate mask tensor.

Besides teacher-forced `construct`, the model exposes the pieces beam search needs: `encode`,
`cross_attention_cache` (encoder keys/values computed once), `decode_step` (one token against a fixed-shape
self-attention key/value cache, one tensor per layer) and `write_cache` (the step's keys/values into the cache).
"""
import math

import numpy as np

import mindspore as ms
from mindspore import nn, ops
from mindspore.common.initializer import Normal, TruncatedNormal

from src.dictionary import MASK_ID, PAD_ID

# Additive attention-mask bias: large enough to zero a softmax weight, small enough to stay finite in float16
# (beam scores use their own, far lower src.beam_search.IMPOSSIBLE_SCORE).
ATTENTION_MASK_BIAS = -1e4


def sinusoidal_table(num_positions, d_model):
    """[num_positions, d_model] sin/cos table of "Attention Is All You Need" (sin in even, cos in odd columns)."""
    positions = np.arange(num_positions, dtype=np.float64)[:, None]
    rates = np.exp(-math.log(10000.0) * np.arange(0, d_model, 2, dtype=np.float64) / d_model)
    table = np.zeros((num_positions, d_model), dtype=np.float64)
    table[:, 0::2] = np.sin(positions * rates)
    table[:, 1::2] = np.cos(positions * rates)[:, :d_model // 2]
    return table.astype(np.float32)


def padding_bias(ids, hide_ids=(PAD_ID,)):
    """[batch, len] ids -> [batch, 1, 1, len] additive bias: ATTENTION_MASK_BIAS where the id is in hide_ids."""
    hidden = ids == hide_ids[0]
    for hide_id in hide_ids[1:]:
        hidden = ops.logical_or(hidden, ids == hide_id)
    return (hidden.astype(ms.float32) * ATTENTION_MASK_BIAS)[:, None, None, :]


def causal_bias(length):
    """[1, 1, length, length]: position i may attend to positions <= i."""
    allowed = ops.tril(ops.ones((length, length), ms.float32))
    return ((1.0 - allowed) * ATTENTION_MASK_BIAS)[None, None, :, :]


class BiasAdd(nn.Cell):
    """ops.BiasAdd with its gradient as a ReduceSum over the rows: MindSpore 2.10's CPU BiasAddGrad took 7% of a d256
    training step, about 8x the ReduceSum (and a broadcast Add, whose gradient is that ReduceSum, runs its forward
    14x slower than BiasAdd: bench/RESULTS.md). Same values either way."""

    def __init__(self):
        super().__init__()
        self.bias_add = ops.BiasAdd()

    def construct(self, x, bias):
        return self.bias_add(x, bias)

    def bprop(self, x, bias, out, dout):
        return dout, dout.sum(0)


class Dense(nn.Dense):
    """nn.Dense (same parameters, same initial values, same outputs) with the bias gradient of `BiasAdd` above."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bias_add = BiasAdd()


def dense(d_in, d_out, initializer_range):
    return Dense(d_in, d_out, weight_init=TruncatedNormal(initializer_range), bias_init="zeros")


class MultiHeadAttention(nn.Cell):
    """Scaled dot-product attention over `num_heads` heads; keys and values may come from another sequence."""

    def __init__(self, d_model, num_heads, dropout, initializer_range):
        super().__init__()
        # BatchMatMul, not ops.matmul: with dynamic shapes ops.matmul expands into broadcasts and transposes of both
        # operands (their batch dimensions are not known to match): +23% step time for a d512 2+2 model. Same values.
        self.scores_matmul = ops.BatchMatMul(transpose_b=True)
        self.context_matmul = ops.BatchMatMul()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.scale = self.head_dim ** -0.5
        self.query = dense(d_model, d_model, initializer_range)
        self.key = dense(d_model, d_model, initializer_range)
        self.value = dense(d_model, d_model, initializer_range)
        self.output = dense(d_model, d_model, initializer_range)
        self.dropout = nn.Dropout(p=dropout)

    def split_heads(self, x):
        batch, length, _ = x.shape
        return x.reshape(batch, length, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)  # [b, h, len, dh]

    def project_key_value(self, memory):
        return self.split_heads(self.key(memory)), self.split_heads(self.value(memory))

    def attend(self, query, keys, values, bias):
        """query [b, q_len, d_model], keys/values [b, h, k_len, dh], bias broadcastable to [b, h, q_len, k_len]."""
        batch, q_len, d_model = query.shape
        q = self.split_heads(self.query(query)) * self.scale                      # [b, h, q_len, dh]
        scores = self.scores_matmul(q, keys) + bias                                # [b, h, q_len, k_len]
        weights = self.dropout(ops.softmax(scores, -1))
        context = self.context_matmul(weights, values)                             # [b, h, q_len, dh]
        context = context.transpose(0, 2, 1, 3).reshape(batch, q_len, d_model)    # [b, q_len, d_model]
        return self.output(context)

    def attend_step(self, query, keys, values, bias, new_key, new_value):
        """One new position: query [n, 1, d_model] over cached keys/values [n, h, L, dh] (bias [1, 1, 1, L] masks
        the slots not yet written) and over its own new_key/new_value [n, h, 1, dh], which are not in the cache: the
        caller writes them there afterwards (beam search fuses that write with re-ordering the beams). The softmax
        over the L + 1 scores is written out, so that no [.., L + 1] tensor is concatenated or sliced."""
        n, _, d_model = query.shape
        q = self.query(query).reshape(n, self.num_heads, 1, self.head_dim) * self.scale   # [n, h, 1, dh]
        scores = self.scores_matmul(q, keys) + bias                                # [n, h, 1, L]
        new_score = (q * new_key).sum(-1, keepdims=True)                           # [n, h, 1, 1]
        top = ops.maximum(scores.max(-1, keepdims=True), new_score)
        weights, new_weight = ops.exp(scores - top), ops.exp(new_score - top)
        total = weights.sum(-1, keepdims=True) + new_weight
        context = (self.context_matmul(weights, values) + new_weight * new_value) / total  # [n, h, 1, dh]
        return self.output(context.reshape(n, 1, d_model))

    def attend_grouped(self, query, keys, values, bias):
        """One position for each of n = B * g rows (a sentence's g rows adjacent, e.g. its beams) over keys/values
        [B, h, S, dh] computed once per sentence: query [n, 1, d_model], bias broadcastable to [B, h, g, S]. The
        same values as `attend` on keys repeated g times, reading them once per sentence instead of once per row."""
        n, _, d_model = query.shape
        batch = keys.shape[0]
        group = n // batch
        q = self.query(query).reshape(batch, group, self.num_heads, self.head_dim).transpose(0, 2, 1, 3) * self.scale
        weights = ops.softmax(self.scores_matmul(q, keys) + bias, -1)             # [B, h, g, S]
        context = self.context_matmul(weights, values)                             # [B, h, g, dh]
        return self.output(context.transpose(0, 2, 1, 3).reshape(n, 1, d_model))

    def construct(self, query, memory, bias):
        keys, values = self.project_key_value(memory)
        return self.attend(query, keys, values, bias)


class FeedForward(nn.Cell):
    def __init__(self, d_model, d_ff, activation, dropout, initializer_range):
        super().__init__()
        self.inner = dense(d_model, d_ff, initializer_range)
        self.outer = dense(d_ff, d_model, initializer_range)
        self.activation = nn.GELU(approximate=False) if activation == "gelu" else nn.ReLU()
        self.dropout = nn.Dropout(p=dropout)

    def construct(self, x):
        return self.outer(self.dropout(self.activation(self.inner(x))))


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm over the last axis (same parameters, same checkpoint names, and mixed precision keeps it in
    float32 as it does nn.LayerNorm) that in training on CPU runs src/kernels/layer_norm.cc when a C++ compiler
    can build it: forward + backward 11x faster than MindSpore 2.10's CPU LayerNorm/LayerNormGrad on [2048, 512]."""

    def __init__(self, d_model, epsilon=1e-5):
        super().__init__((d_model,), epsilon=epsilon)
        from src.kernels import layer_norm_ops
        kernels = layer_norm_ops() if ms.get_context("device_target") == "CPU" else None
        self.custom_forward = kernels[0] if kernels else None
        self.epsilon_input = ms.Tensor([epsilon], ms.float32)

    def construct(self, x):
        # Training only: evaluation and decoding keep MindSpore's op, where the forward alone gains little. (The
        # kernel takes dynamic shapes too, through its C++ shape function: src/kernels/__init__.py.)
        if self.custom_forward is None or not self.training or x.dtype != ms.float32:
            return super().construct(x)
        return self.custom_forward(x, self.gamma, self.beta, self.epsilon_input)[0]


class Sublayer(nn.Cell):
    """Residual wrapper: pre-LN `x + drop(f(LN(x)))` or post-LN `LN(x + drop(f(x)))`."""

    def __init__(self, d_model, dropout, pre_layernorm):
        super().__init__()
        self.norm = LayerNorm(d_model)
        self.dropout = nn.Dropout(p=dropout)
        self.pre_layernorm = pre_layernorm

    def before(self, x):
        return self.norm(x) if self.pre_layernorm else x

    def after(self, x, sublayer_output):
        out = x + self.dropout(sublayer_output)
        return out if self.pre_layernorm else self.norm(out)


class EncoderLayer(nn.Cell):
    def __init__(self, config):
        super().__init__()
        d_model = config.hidden_size
        self.self_attention = MultiHeadAttention(d_model, config.num_attention_heads, config.attention_dropout_prob,
                                                 config.initializer_range)
        self.attention_block = Sublayer(d_model, config.hidden_dropout_prob, config.pre_layernorm)
        self.feed_forward = FeedForward(d_model, config.intermediate_size, config.hidden_act,
                                        config.hidden_dropout_prob, config.initializer_range)
        self.feed_forward_block = Sublayer(d_model, config.hidden_dropout_prob, config.pre_layernorm)

    def construct(self, x, self_bias):
        h = self.attention_block.before(x)
        x = self.attention_block.after(x, self.self_attention(h, h, self_bias))
        return self.feed_forward_block.after(x, self.feed_forward(self.feed_forward_block.before(x)))


class DecoderLayer(nn.Cell):
    def __init__(self, config):
        super().__init__()
        d_model = config.hidden_size
        heads, attention_dropout = config.num_attention_heads, config.attention_dropout_prob
        self.self_attention = MultiHeadAttention(d_model, heads, attention_dropout, config.initializer_range)
        self.self_attention_block = Sublayer(d_model, config.hidden_dropout_prob, config.pre_layernorm)
        self.cross_attention = MultiHeadAttention(d_model, heads, attention_dropout, config.initializer_range)
        self.cross_attention_block = Sublayer(d_model, config.hidden_dropout_prob, config.pre_layernorm)
        self.feed_forward = FeedForward(d_model, config.intermediate_size, config.hidden_act,
                                        config.hidden_dropout_prob, config.initializer_range)
        self.feed_forward_block = Sublayer(d_model, config.hidden_dropout_prob, config.pre_layernorm)

    def construct(self, x, self_bias, cross_keys, cross_values, cross_bias):
        h = self.self_attention_block.before(x)
        x = self.self_attention_block.after(x, self.self_attention(h, h, self_bias))
        h = self.cross_attention_block.before(x)
        x = self.cross_attention_block.after(x, self.cross_attention.attend(h, cross_keys, cross_values, cross_bias))
        return self.feed_forward_block.after(x, self.feed_forward(self.feed_forward_block.before(x)))

    def step(self, x, self_keys, self_values, self_bias, cross_keys, cross_values, cross_bias):
        """One new position. x [n, 1, d_model]; self_keys/values [n, h, max_len, dh] are this layer's cache of the
        earlier positions; cross keys/values [B, h, S, dh] and cross_bias [B, 1, 1, S] may be per sentence, for
        n = B * g rows (`attend_grouped`). Returns (x, this position's key and value [n, h, 1, dh], for the caller to
        write)."""
        h = self.self_attention_block.before(x)
        new_keys, new_values = self.self_attention.project_key_value(h)          # [n, h, 1, dh]
        attended = self.self_attention.attend_step(h, self_keys, self_values, self_bias, new_keys, new_values)
        x = self.self_attention_block.after(x, attended)
        h = self.cross_attention_block.before(x)
        attended = self.cross_attention.attend_grouped(h, cross_keys, cross_values, cross_bias)
        x = self.cross_attention_block.after(x, attended)
        x = self.feed_forward_block.after(x, self.feed_forward(self.feed_forward_block.before(x)))
        return x, new_keys, new_values


class Embedder(nn.Cell):
    """Token embedding * sqrt(d_model) + sinusoidal position embedding; also the tied output projection."""

    def __init__(self, config):
        super().__init__()
        d_model = config.hidden_size
        # Tied with the output projection, so initialised at the scale of fairseq's Transformer (d_model^-0.5).
        self.table = ms.Parameter(ms.common.initializer.initializer(Normal(d_model ** -0.5),
                                                                    (config.vocab_size, d_model), ms.float32),
                                  name="embedding_table")
        self.positions = ms.Tensor(sinusoidal_table(config.max_position_embeddings, d_model))
        self.scale = math.sqrt(d_model)
        self.output_matmul = ops.MatMul(transpose_b=True)
        self.dropout = nn.Dropout(p=config.hidden_dropout_prob)

    def construct(self, ids, positions):
        # Indexing, not ops.gather, for the position table: with the training step compiled for dynamic shapes, two
        # ops.gather calls on the constant table (encoder and decoder) broke MindSpore 2.10's graph optimizer ("The
        # pointer[manager] is null" in parameter_eliminate). Same values.
        x = ops.gather(self.table, ids, 0) * self.scale + self.positions[positions]
        return self.dropout(x)                                                      # [b, len, d_model]

    def logits(self, hidden):
        # One 2-d MatMul with transpose_b: with dynamic shapes ops.dense on [b, len, d_model] becomes a batched matmul
        # over a copy of the table per sequence, and its gradient transposes [b * len, vocab]. Same values.
        batch, length, d_model = hidden.shape
        logits = self.output_matmul(hidden.reshape(batch * length, d_model), self.table)
        return logits.reshape(batch, length, -1)                                    # [b, len, vocab]


class Encoder(nn.Cell):
    def __init__(self, config):
        super().__init__()
        self.layers = nn.CellList([EncoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.final_norm = LayerNorm(config.hidden_size) if config.pre_layernorm else None

    def construct(self, x, self_bias):
        for layer in self.layers:
            x = layer(x, self_bias)
        return self.final_norm(x) if self.final_norm is not None else x


class Decoder(nn.Cell):
    def __init__(self, config):
        super().__init__()
        self.layers = nn.CellList([DecoderLayer(config) for _ in range(config.decoder_layers)])
        self.final_norm = LayerNorm(config.hidden_size) if config.pre_layernorm else None

    def construct(self, x, self_bias, cross_keys, cross_values, cross_bias):
        for i, layer in enumerate(self.layers):
            x = layer(x, self_bias, cross_keys[i], cross_values[i], cross_bias)
        return self.final_norm(x) if self.final_norm is not None else x

    def step(self, x, self_keys, self_values, self_bias, cross_keys, cross_values, cross_bias):
        """Caches are tuples with one tensor per layer (slicing and re-stacking one big tensor cost ~6x per step);
        returns (x, the new position's keys and values: tuples of [n, h, 1, dh])."""
        new_keys, new_values = (), ()
        for i, layer in enumerate(self.layers):
            x, layer_keys, layer_values = layer.step(x, self_keys[i], self_values[i], self_bias,
                                                     cross_keys[i], cross_values[i], cross_bias)
            new_keys += (layer_keys,)
            new_values += (layer_values,)
        x = self.final_norm(x) if self.final_norm is not None else x
        return x, new_keys, new_values


class Seq2SeqModel(nn.Cell):
    """MASS Transformer. `construct(source_ids, decoder_input_ids, decoder_positions)` -> logits [b, tgt_len, vocab].

    `hide_masked_source=True` (pre-training) keeps encoder-decoder attention off `<mask>` positions, so the decoder
    must take what it predicts from the unmasked context, as in the MASS paper.
    """

    def __init__(self, config, hide_masked_source=False):
        super().__init__()
        self.config = config
        self.embedder = Embedder(config)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.cross_hidden_ids = (PAD_ID, MASK_ID) if hide_masked_source else (PAD_ID,)

    def encode(self, source_ids):
        """source_ids [b, src_len] -> (encoder output [b, src_len, d_model], cross-attention bias [b, 1, 1, src_len])."""
        batch, src_len = source_ids.shape
        positions = ops.broadcast_to(ops.arange(src_len, dtype=ms.int32)[None, :], (batch, src_len))
        x = self.embedder(source_ids, positions)                                   # [b, src_len, d_model]
        encoded = self.encoder(x, padding_bias(source_ids))
        return encoded, padding_bias(source_ids, self.cross_hidden_ids)

    def cross_attention_cache(self, encoded):
        """Per decoder layer keys/values of the encoder output: tuples of [b, h, src_len, dh], one per layer."""
        keys, values = (), ()
        for layer in self.decoder.layers:
            layer_keys, layer_values = layer.cross_attention.project_key_value(encoded)
            keys += (layer_keys,)
            values += (layer_values,)
        return keys, values

    def decode(self, decoder_input_ids, decoder_positions, encoded, cross_bias):
        x = self.embedder(decoder_input_ids, decoder_positions)                    # [b, tgt_len, d_model]
        cross_keys, cross_values = self.cross_attention_cache(encoded)
        # Padding of the decoder input needs no mask: causal attention keeps real positions off later pads.
        hidden = self.decoder(x, causal_bias(decoder_input_ids.shape[1]), cross_keys, cross_values, cross_bias)
        return self.embedder.logits(hidden)                                         # [b, tgt_len, vocab]

    def construct(self, source_ids, decoder_input_ids, decoder_positions):
        encoded, cross_bias = self.encode(source_ids)
        return self.decode(decoder_input_ids, decoder_positions, encoded, cross_bias)

    def decode_step(self, token_ids, step, self_keys, self_values, cross_keys, cross_values, cross_bias):
        """One decoding step at position `step` (int32 scalar Tensor) for n hypotheses.

        token_ids [n]; self_keys/values: tuples (one per layer) of [n, h, max_len, dh] caches holding positions
        0 .. step - 1; cross_* from `cross_attention_cache`. Returns (log-probabilities [n, vocab], new_keys,
        new_values): this position's keys and values, tuples of [n, h, 1, dh], which `write_cache` puts into the
        caches at slot `step` (beam search writes them while it re-orders the beams).
        """
        n = token_ids.shape[0]
        max_len = self_keys[0].shape[2]
        positions = ops.broadcast_to(step.reshape(1, 1), (n, 1)).astype(ms.int32)
        x = self.embedder(token_ids.reshape(n, 1), positions)                       # [n, 1, d_model]
        unwritten = ops.arange(max_len, dtype=ms.int32) >= step
        self_bias = (unwritten.astype(ms.float32) * ATTENTION_MASK_BIAS).reshape(1, 1, 1, max_len)
        hidden, new_keys, new_values = self.decoder.step(x, self_keys, self_values, self_bias,
                                                         cross_keys, cross_values, cross_bias)
        # reshape, not [:, 0, :]: MindSpore 2.10's CPU StridedSlice took 16% of a beam-search step on [n, 1, vocab]
        log_probs = ops.log_softmax(self.embedder.logits(hidden).reshape(n, -1), -1)   # [n, vocab]
        return log_probs, new_keys, new_values


def write_cache(caches, new, step):
    """caches: tuple of [n, h, L, dh]; new: tuple of [n, h, 1, dh] -> the caches with `new` at slot `step` (a select,
    not a one-hot blend, which would do arithmetic over the whole cache)."""
    write = (ops.arange(caches[0].shape[2], dtype=ms.int32) == step).reshape(1, 1, -1, 1)
    return tuple(ops.where(write, value, cache) for cache, value in zip(caches, new))


def label_smoothed_nll(logits, target_ids, smoothing):
    """Sums over non-pad targets: (label-smoothed loss, plain NLL, token count).

    The smoothed target puts 1 - smoothing on the gold token and spreads `smoothing` uniformly over the vocabulary.
    Sums (not means) let gradient accumulation and data-parallel ranks weight every token equally.
    """
    log_probs = ops.log_softmax(logits.astype(ms.float32), -1)                    # [b, tgt_len, vocab]
    gold = ops.gather_elements(log_probs, -1, target_ids[..., None].astype(ms.int32))[..., 0]  # [b, tgt_len]
    token_weight = (target_ids != PAD_ID).astype(ms.float32)
    nll = -gold * token_weight
    # A sum divided, not a mean: MindSpore 2.10's CPU ReduceMean gradient is a RealDiv over the whole
    # [b, tgt_len, vocab] (5% of a d256 training step with the ReduceMean itself; the sum costs 3%).
    uniform = -(log_probs.sum(-1) / log_probs.shape[-1]) * token_weight
    loss = (1.0 - smoothing) * nll + smoothing * uniform
    return loss.sum(), nll.sum(), token_weight.sum()


class LossNetwork(nn.Cell):
    """Model + loss: returns the token-mean smoothed loss (for gradients) and the sums for logging."""

    def __init__(self, model, smoothing):
        super().__init__()
        self.model = model
        self.smoothing = smoothing

    def construct(self, source_ids, decoder_input_ids, decoder_positions, target_ids):
        logits = self.model(source_ids, decoder_input_ids, decoder_positions)
        loss_sum, nll_sum, tokens = label_smoothed_nll(logits, target_ids, self.smoothing)
        return loss_sum, nll_sum, tokens


def count_parameters(model):
    return int(sum(np.prod(p.shape) for p in model.trainable_params()))
