"""MASS masking and fine-tuning pair construction: pure NumPy, every draw explicit.

A sentence is an int32 id array ending with </s>; masking acts on the m tokens before </s>.
One implementation masks: `mask_sentences`, many sentences at once, with draws hashed from (seed, stream, example
index, draw number) (`hashed_uniforms`), so an example's masks depend on nothing else: not on the batch, chunk,
worker or rank that masks it. The builders mask chunks of sentences with (--seed, 0, line index), the loader's
dynamic masking batches with (seed, epoch, example index). The one-sentence functions (`mass_mask`, `mask_sentence`
...) draw a key from an explicit Generator and mask through it. Functions that build examples return an `Example`
whose fields are the record schema (src/records.py).

Hand-checked example, sentence x = [10 11 12 13 14 15 16 17 </s>] (m = 8), mask_ratio 0.5 -> fragment
length L = 4; with start u = 3 the fragment is [u, v) = [3, 7) = x3..x6 = 13 14 15 16:

    mass   source            10 11 12 M  M  M  M  17 </s>   (each fragment token: 80% M, 10% random, 10% kept)
           decoder_input     M  13 14 15
           target            13 14 15 16
           decoder_positions 3  4  5  6
    mlm    as mass, every fragment token replaced by M in the source.
    loose  source            10 11 12 M  M  M  M  17 </s>   (M only, as the older MindSpore port)
           decoder_input     M  12 13 14 15
           target            12 13 14 15 16                  (one longer: x_{u-1} is predicted as well)
           decoder_positions 2  3  4  5  6
           with u = 0 there is no x_{u-1}: loose is then identical to mlm.

`loose` is the older MindSpore port's LooseMaskedLanguageModel (which pads the decoder side with u-1 <pad>
tokens; here the decoder sees only the fragment and the padding is replaced by explicit positions). The released
microsoft/MASS code (restricted_mask_sent) instead feeds the real previous tokens [x_{u-1} .. x_{v-2}] with target
x_u .. x_{v-1}; that is the paper's `mass` decoder side with x_{u-1} in place of the leading <mask>.
The fragment length is Python's round(mask_ratio * m) (ties to even, as the released code), clipped to [1, m].
"""
import dataclasses

import numpy as np

from src.dictionary import BOS_ID, EOS_ID, MASK_ID

# Ids below this are <pad> <s> </s> <unk> <mask>: never drawn as random replacement tokens.
FIRST_REGULAR_ID = 5
LANGUAGE_MODELS = ("mass", "loose", "mlm")
ARRAY_FIELDS = ("sentence_ids", "source_ids", "decoder_input_ids", "target_ids", "decoder_positions")
SCALAR_FIELDS = ("source_length", "target_length")
RECORD_FIELDS = ARRAY_FIELDS + SCALAR_FIELDS


@dataclasses.dataclass(eq=False)
class Example:
    """One training example; field names are the record schema.

    sentence_ids: the clean encoder-side sentence (ending with </s>), kept so masking/noise can be re-drawn.
    source_ids: encoder input. decoder_input_ids / target_ids / decoder_positions: equal lengths.
    source_length / target_length default to the array lengths.
    """
    sentence_ids: np.ndarray
    source_ids: np.ndarray
    decoder_input_ids: np.ndarray
    target_ids: np.ndarray
    decoder_positions: np.ndarray
    source_length: int = -1
    target_length: int = -1

    def __post_init__(self):
        for name in ARRAY_FIELDS:
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.int32).reshape(-1))
        if self.source_length < 0:
            self.source_length = len(self.source_ids)
        if self.target_length < 0:
            self.target_length = len(self.target_ids)
        self.source_length, self.target_length = int(self.source_length), int(self.target_length)
        if not len(self.decoder_input_ids) == len(self.target_ids) == len(self.decoder_positions):
            raise ValueError("decoder_input_ids, target_ids and decoder_positions must have equal lengths, got "
                             f"{len(self.decoder_input_ids)}, {len(self.target_ids)}, {len(self.decoder_positions)}")

    def as_dict(self):
        return {name: getattr(self, name) for name in RECORD_FIELDS}

    def equals(self, other):
        return all(np.array_equal(getattr(self, name), getattr(other, name)) for name in RECORD_FIELDS)


def _as_sentence(sentence_ids, minimum_tokens=1):
    ids = np.asarray(sentence_ids, dtype=np.int32).reshape(-1)
    if len(ids) == 0 or ids[-1] != EOS_ID:
        raise ValueError("a sentence must end with </s> (id 2)")
    if len(ids) - 1 < minimum_tokens:
        raise ValueError(f"a sentence needs at least {minimum_tokens} token(s) before </s> to be masked")
    return ids


def fragment_length(num_tokens, mask_ratio):
    """round(mask_ratio * m), at least 1 and at most m."""
    return min(num_tokens, max(1, round(mask_ratio * num_tokens)))


def _masked_example(language_model, sentence_ids, rng, mask_ratio, vocab_size):
    """One sentence masked by `mask_sentences`, with a key drawn from `rng` (one draw)."""
    if language_model not in LANGUAGE_MODELS:
        raise ValueError(f"language_model must be one of {', '.join(LANGUAGE_MODELS)}, got {language_model!r}")
    ids = _as_sentence(sentence_ids)
    key = int(rng.integers(0, 1 << 63))
    source, decoder_input, target, positions, lengths = mask_sentences(
        language_model, ids[None], [len(ids) - 1], key, 0, [0], mask_ratio, vocab_size)
    length = int(lengths[0])
    return Example(ids, source[0], decoder_input[0, :length], target[0, :length], positions[0, :length])


def mass_mask(sentence_ids, rng, mask_ratio, vocab_size):
    """MASS as in the paper: one contiguous fragment; encoder tokens in it 80% <mask>, 10% random, 10% kept."""
    return _masked_example("mass", sentence_ids, rng, mask_ratio, vocab_size)


def mlm_mask(sentence_ids, rng, mask_ratio, vocab_size=None):
    """As `mass_mask`, but every fragment token becomes <mask> in the encoder (no 80/10/10)."""
    return _masked_example("mlm", sentence_ids, rng, mask_ratio, vocab_size)


def loose_mask(sentence_ids, rng, mask_ratio, vocab_size=None):
    """The older MindSpore port's loose variant (see the module docstring): for u > 0 the decoder also
    predicts x_{u-1}: input [<mask>, x_{u-1} .. x_{v-2}], target x_{u-1} .. x_{v-1}, positions u-1 .. v-1."""
    return _masked_example("loose", sentence_ids, rng, mask_ratio, vocab_size)


def mask_sentence(language_model, sentence_ids, rng, mask_ratio, vocab_size):
    """One sentence masked by `language_model` (mass, loose or mlm) with a key drawn from the Generator `rng`."""
    return _masked_example(language_model, sentence_ids, rng, mask_ratio, vocab_size)


def noise_channel(source_ids, rng, noise_prob):
    """Each token except the final </s> becomes <mask> with probability noise_prob (a new array)."""
    ids = _as_sentence(source_ids, minimum_tokens=0)
    noisy = ids.copy()
    if noise_prob > 0:
        hit = rng.random(len(ids) - 1) < noise_prob
        noisy[:-1][hit] = MASK_ID
    return noisy


# ----------------------------------------------------------------------------------------------------------------
# Many sentences at once: the loader's dynamic masking (src/dataset.py)
# ----------------------------------------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


def _splitmix64(values):
    """SplitMix64's finaliser on uint64 arrays (products wrap modulo 2^64)."""
    z = np.asarray(values, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hashed_uniforms(seed, epoch, indices, draws):
    """[len(indices), draws] floats in [0, 1), a function of (seed, epoch, example index, draw number) only:
    SplitMix64 of the example's key plus the draw number times the golden ratio. The masks an example gets do not
    depend on the batch, worker, rank or process that draws them; drawing them for a batch costs ~1 us a row
    (a Generator per example, ~15 us)."""
    golden = 0x9E3779B97F4A7C15
    base = int(_splitmix64([(int(seed) * golden + 1) & _MASK64])[0])
    base = int(_splitmix64([(base ^ (int(epoch) * golden)) & _MASK64])[0])
    with np.errstate(over="ignore"):
        keys = _splitmix64(np.uint64(base) ^ (np.asarray(indices, dtype=np.uint64) * np.uint64(golden)))
        counters = (np.arange(1, draws + 1, dtype=np.uint64) * np.uint64(golden))[None, :]
        bits = _splitmix64(keys[:, None] + counters)
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def fragment_lengths(num_tokens, mask_ratio):
    """fragment_length of an array of token counts (NumPy rounds half to even, as Python's round)."""
    num_tokens = np.asarray(num_tokens, dtype=np.int64)
    return np.minimum(num_tokens, np.maximum(1, np.round(mask_ratio * num_tokens).astype(np.int64)))


def hashed_fragments(language_model, num_tokens, seed, epoch, indices, mask_ratio):
    """(start, length, target length) of the fragments `mask_sentences` draws for sentences of num_tokens tokens
    (its draw 0): what the loader needs to count target tokens without masking."""
    num_tokens = np.asarray(num_tokens, dtype=np.int64)
    length = fragment_lengths(num_tokens, mask_ratio)
    start = np.minimum((hashed_uniforms(seed, epoch, indices, 1)[:, 0] * (num_tokens - length + 1)).astype(np.int64),
                       num_tokens - length)
    return start, length, length + (start > 0) if language_model == "loose" else length


def mask_sentences(language_model, sentences, num_tokens, seed, epoch, indices, mask_ratio, vocab_size):
    """Masks n sentences at once with the draws of `hashed_uniforms`, by the rules of `mask_sentence`.

    sentences: int32 [n, width], row i zero-padded after its </s> at column num_tokens[i]. Draw 0 places the
    fragment (start = floor(u * (m - L + 1))); for fragment token j, draw 1 + 2j chooses 80/10/10 (mass) and draw
    2 + 2j its random replacement (FIRST_REGULAR_ID + floor(u * (vocab_size - FIRST_REGULAR_ID))), so a row's masks
    do not depend on the width of the batch it is masked in.
    Returns zero-padded int32 (source [n, width], decoder_input, target, positions [n, T]) and the target lengths.
    """
    if language_model not in LANGUAGE_MODELS:
        raise ValueError(f"language_model must be one of {', '.join(LANGUAGE_MODELS)}, got {language_model!r}")
    sentences = np.asarray(sentences, dtype=np.int32)
    rows, width = sentences.shape
    num_tokens = np.asarray(num_tokens, dtype=np.int64)
    if rows and (num_tokens.min() < 1 or np.any(sentences[np.arange(rows), num_tokens] != EOS_ID)):
        raise ValueError("every sentence needs at least 1 token and </s> at its length")
    start, length, target_length = hashed_fragments(language_model, num_tokens, seed, epoch, indices, mask_ratio)
    uniforms = hashed_uniforms(seed, epoch, indices, 1 + 2 * width)
    step = np.arange(width)[None, :]
    inside = step < length[:, None]
    position = np.where(inside, start[:, None] + step, 0)
    fragment = np.where(inside, np.take_along_axis(sentences, position, axis=1), 0)
    source = sentences.copy()
    if language_model == "mass":
        if vocab_size <= FIRST_REGULAR_ID:
            raise ValueError(f"vocab_size must exceed {FIRST_REGULAR_ID} (the special ids), got {vocab_size}")
        choice, token = uniforms[:, 1::2], uniforms[:, 2::2]
        random_tokens = FIRST_REGULAR_ID + (token * (vocab_size - FIRST_REGULAR_ID)).astype(np.int64)
        replaced = np.where(choice < 0.8, MASK_ID, np.where(choice < 0.9, random_tokens, fragment))
    else:
        replaced = np.full_like(fragment, MASK_ID)
    row_index = np.broadcast_to(np.arange(rows)[:, None], position.shape)
    source[row_index[inside], position[inside]] = replaced[inside]
    first = start - (target_length - length)  # loose also predicts x_{u-1} when there is one
    columns = int(target_length.max(initial=1))
    step = np.arange(columns)[None, :]
    inside = step < target_length[:, None]
    positions = np.where(inside, first[:, None] + step, 0)
    target = np.where(inside, np.take_along_axis(sentences, positions, axis=1), 0)
    decoder_input = np.where(inside, np.concatenate((np.full((rows, 1), MASK_ID), target[:, :-1]), axis=1), 0)
    return (source, decoder_input.astype(np.int32), target.astype(np.int32), positions.astype(np.int32),
            target_length)


def noise_sentences(sentences, num_tokens, seed, epoch, indices, noise_prob):
    """noise_channel's rule for n zero-padded sentences at once, with the draws of `hashed_uniforms` (draw j for
    token j): each token but </s> becomes <mask> with probability noise_prob."""
    sentences = np.asarray(sentences, dtype=np.int32)
    uniforms = hashed_uniforms(seed, epoch, indices, sentences.shape[1])
    hit = (uniforms < noise_prob) & (np.arange(sentences.shape[1])[None, :] < np.asarray(num_tokens)[:, None])
    return np.where(hit, MASK_ID, sentences).astype(np.int32)


def make_pair_example(source_ids, target_ids, rng=None, noise_prob=0.0):
    """A fine-tuning pair; both id arrays end with </s> (as Dictionary.encode_line returns them).

    encoder = (noised) source; decoder input = [<s>] + target[:-1]; target = target; positions 0..n-1.
    """
    source = _as_sentence(source_ids, minimum_tokens=0)
    target = _as_sentence(target_ids, minimum_tokens=0)
    if noise_prob > 0 and rng is None:
        raise ValueError("noise_prob > 0 needs an explicit rng")
    noisy = noise_channel(source, rng, noise_prob) if noise_prob > 0 else source.copy()
    decoder_input = np.concatenate(([BOS_ID], target[:-1])).astype(np.int32)
    return Example(source, noisy, decoder_input, target.copy(), np.arange(len(target), dtype=np.int32))


__all__ = ["Example", "mass_mask", "loose_mask", "mlm_mask", "mask_sentence", "noise_channel", "make_pair_example",
           "fragment_length", "fragment_lengths", "mask_sentences", "noise_sentences", "hashed_uniforms",
           "hashed_fragments",
           "LANGUAGE_MODELS", "RECORD_FIELDS", "ARRAY_FIELDS", "SCALAR_FIELDS"]
