"""MASS masking and fine-tuning pair construction: pure NumPy, every draw from an explicit Generator.

A sentence is an int32 id array ending with </s>; masking acts on the m tokens before </s>.
Every function returns an `Example` whose fields are the record schema (src/records.py).

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


def _draw_fragment(ids, rng, mask_ratio):
    num_tokens = len(ids) - 1
    length = fragment_length(num_tokens, mask_ratio)
    start = int(rng.integers(0, num_tokens - length + 1))
    return start, start + length


def _shifted_fragment_example(ids, source, start, end):
    """Decoder side of the paper: input [<mask>, x_u .. x_{v-2}], target x_u .. x_{v-1}, positions u .. v-1."""
    fragment = ids[start:end]
    decoder_input = np.concatenate(([MASK_ID], fragment[:-1])).astype(np.int32)
    return Example(ids, source, decoder_input, fragment.copy(), np.arange(start, end, dtype=np.int32))


def mass_mask(sentence_ids, rng, mask_ratio, vocab_size):
    """MASS as in the paper: one contiguous fragment; encoder tokens in it 80% <mask>, 10% random, 10% kept."""
    if vocab_size <= FIRST_REGULAR_ID:
        raise ValueError(f"vocab_size must exceed {FIRST_REGULAR_ID} (the special ids), got {vocab_size}")
    ids = _as_sentence(sentence_ids)
    start, end = _draw_fragment(ids, rng, mask_ratio)
    length = end - start
    # Always draw both arrays so the stream of draws does not depend on the outcome.
    choice = rng.random(length)
    random_tokens = rng.integers(FIRST_REGULAR_ID, vocab_size, length, dtype=np.int64).astype(np.int32)
    fragment = ids[start:end]
    source = ids.copy()
    source[start:end] = np.where(choice < 0.8, MASK_ID, np.where(choice < 0.9, random_tokens, fragment))
    return _shifted_fragment_example(ids, source, start, end)


def mlm_mask(sentence_ids, rng, mask_ratio, vocab_size=None):
    """As `mass_mask`, but every fragment token becomes <mask> in the encoder (no 80/10/10)."""
    ids = _as_sentence(sentence_ids)
    start, end = _draw_fragment(ids, rng, mask_ratio)
    source = ids.copy()
    source[start:end] = MASK_ID
    return _shifted_fragment_example(ids, source, start, end)


def loose_mask(sentence_ids, rng, mask_ratio, vocab_size=None):
    """The older MindSpore port's loose variant (see the module docstring): for u > 0 the decoder also
    predicts x_{u-1}: input [<mask>, x_{u-1} .. x_{v-2}], target x_{u-1} .. x_{v-1}, positions u-1 .. v-1."""
    ids = _as_sentence(sentence_ids)
    start, end = _draw_fragment(ids, rng, mask_ratio)
    source = ids.copy()
    source[start:end] = MASK_ID
    first = max(start - 1, 0)
    target = ids[first:end].copy()
    decoder_input = np.concatenate(([MASK_ID], target[:-1])).astype(np.int32)
    return Example(ids, source, decoder_input, target, np.arange(first, end, dtype=np.int32))


MASKERS = {"mass": mass_mask, "loose": loose_mask, "mlm": mlm_mask}


def mask_sentence(language_model, sentence_ids, rng, mask_ratio, vocab_size):
    try:
        masker = MASKERS[language_model]
    except KeyError:
        raise ValueError(f"language_model must be one of {', '.join(LANGUAGE_MODELS)}, "
                         f"got {language_model!r}") from None
    return masker(sentence_ids, rng, mask_ratio, vocab_size)


def noise_channel(source_ids, rng, noise_prob):
    """Each token except the final </s> becomes <mask> with probability noise_prob (a new array)."""
    ids = _as_sentence(source_ids, minimum_tokens=0)
    noisy = ids.copy()
    if noise_prob > 0:
        hit = rng.random(len(ids) - 1) < noise_prob
        noisy[:-1][hit] = MASK_ID
    return noisy


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
           "fragment_length", "LANGUAGE_MODELS", "RECORD_FIELDS", "ARRAY_FIELDS", "SCALAR_FIELDS"]
