import numpy as np
import pytest

from src.dictionary import BOS_ID, EOS_ID, MASK_ID
from src.masking import (Example, fragment_length, hashed_uniforms, loose_mask, make_pair_example, mask_sentence,
                         mask_sentences, mass_mask, mlm_mask, noise_channel, noise_sentences)

SENTENCE = np.array([10, 11, 12, 13, 14, 15, 16, 17, EOS_ID], dtype=np.int32)  # m = 8


def draw_with_start(masker, start, sentence=SENTENCE, ratio=0.5, vocab_size=100):
    """The first seed's draw whose fragment starts at `start` (read back from the target's first position)."""
    for seed in range(1000):
        example = masker(sentence, np.random.default_rng(seed), ratio, vocab_size)
        fragment_start = example.decoder_positions[0] + (1 if masker is loose_mask and start > 0 else 0)
        if fragment_start == start:
            return example
    raise AssertionError("no seed gave that start")


def test_mlm_hand_checked():
    example = draw_with_start(mlm_mask, 3)
    assert example.sentence_ids.tolist() == SENTENCE.tolist()
    assert example.source_ids.tolist() == [10, 11, 12, MASK_ID, MASK_ID, MASK_ID, MASK_ID, 17, EOS_ID]
    assert example.decoder_input_ids.tolist() == [MASK_ID, 13, 14, 15]
    assert example.target_ids.tolist() == [13, 14, 15, 16]
    assert example.decoder_positions.tolist() == [3, 4, 5, 6]
    assert (example.source_length, example.target_length) == (9, 4)


def test_mass_hand_checked_decoder_side_and_encoder_outside_fragment():
    example = draw_with_start(mass_mask, 3)
    assert example.decoder_input_ids.tolist() == [MASK_ID, 13, 14, 15]
    assert example.target_ids.tolist() == [13, 14, 15, 16]
    assert example.decoder_positions.tolist() == [3, 4, 5, 6]
    assert example.source_ids[[0, 1, 2, 7, 8]].tolist() == [10, 11, 12, 17, EOS_ID]
    inside = example.source_ids[3:7]
    assert all(t == MASK_ID or 5 <= t < 100 for t in inside)


def test_loose_hand_checked_predicts_the_token_before_the_fragment():
    example = draw_with_start(loose_mask, 3)
    assert example.source_ids.tolist() == [10, 11, 12, MASK_ID, MASK_ID, MASK_ID, MASK_ID, 17, EOS_ID]
    assert example.decoder_input_ids.tolist() == [MASK_ID, 12, 13, 14, 15]
    assert example.target_ids.tolist() == [12, 13, 14, 15, 16]
    assert example.decoder_positions.tolist() == [2, 3, 4, 5, 6]


def test_loose_at_start_equals_mlm():
    loose, mlm = draw_with_start(loose_mask, 0), draw_with_start(mlm_mask, 0)
    assert loose.decoder_input_ids.tolist() == mlm.decoder_input_ids.tolist() == [MASK_ID, 10, 11, 12]
    assert loose.target_ids.tolist() == mlm.target_ids.tolist() == [10, 11, 12, 13]
    assert loose.decoder_positions.tolist() == [0, 1, 2, 3]
    assert loose.source_ids.tolist() == mlm.source_ids.tolist()


def test_pair_example_hand_checked():
    example = make_pair_example(np.array([7, 8, 9, EOS_ID]), np.array([20, 21, EOS_ID]))
    assert example.sentence_ids.tolist() == example.source_ids.tolist() == [7, 8, 9, EOS_ID]
    assert example.decoder_input_ids.tolist() == [BOS_ID, 20, 21]
    assert example.target_ids.tolist() == [20, 21, EOS_ID]
    assert example.decoder_positions.tolist() == [0, 1, 2]
    noisy = make_pair_example(np.array([7, 8, 9, EOS_ID]), np.array([20, 21, EOS_ID]),
                              rng=np.random.default_rng(0), noise_prob=0.99)
    assert noisy.source_ids.tolist() == [MASK_ID, MASK_ID, MASK_ID, EOS_ID]
    assert noisy.sentence_ids.tolist() == [7, 8, 9, EOS_ID]
    with pytest.raises(ValueError):
        make_pair_example(np.array([7, 8]), np.array([20, EOS_ID]))


@pytest.mark.parametrize("num_tokens, ratio, expected", [
    (8, 0.5, 4), (5, 0.5, 2), (7, 0.5, 4), (1, 0.5, 1), (3, 0.1, 1), (10, 1.0, 10), (9, 0.3, 3)])
def test_fragment_length_is_round_of_ratio_times_m(num_tokens, ratio, expected):
    assert fragment_length(num_tokens, ratio) == expected
    sentence = np.concatenate((np.arange(20, 20 + num_tokens), [EOS_ID])).astype(np.int32)
    for language_model in ("mass", "mlm"):
        example = mask_sentence(language_model, sentence, np.random.default_rng(num_tokens), ratio, 50)
        assert len(example.target_ids) == expected


def test_mass_statistics_over_100k_draws():
    vocab_size, draws, num_tokens, length = 1005, 100_000, 10, 5
    sentence = np.concatenate((np.arange(500, 500 + num_tokens), [EOS_ID])).astype(np.int32)
    source, decoder_input, target, positions, lengths = mask_sentences(
        "mass", np.tile(sentence, (draws, 1)), [num_tokens] * draws, 123, 0, np.arange(draws), 0.5, vocab_size)
    assert np.all(lengths == length)
    starts = positions[:, 0]
    # Contiguous fragment, decoder side aligned with it.
    assert np.array_equal(positions, starts[:, None] + np.arange(length))
    assert np.array_equal(target, sentence[positions])
    assert np.all(decoder_input[:, 0] == MASK_ID) and np.array_equal(decoder_input[:, 1:], target[:, :-1])
    inside = np.zeros(source.shape, dtype=bool)
    np.put_along_axis(inside, positions.astype(np.int64), True, axis=1)
    assert np.array_equal(source[~inside], np.tile(sentence, (draws, 1))[~inside])
    fragment_source = np.take_along_axis(source, positions.astype(np.int64), axis=1)
    is_mask, is_kept = fragment_source == MASK_ID, fragment_source == target
    masked, kept, replaced = is_mask.sum(), is_kept.sum(), (~is_mask & ~is_kept).sum()
    total = draws * length
    assert abs(masked / total - 0.8) < 0.005
    # A random replacement equals the original token with probability 1/1000: it then counts as kept.
    assert abs(kept / total - (0.1 + 0.1 / 1000)) < 0.004
    assert abs(replaced / total - (0.1 - 0.1 / 1000)) < 0.004
    replacements = fragment_source[~is_mask & ~is_kept]
    assert replacements.min() >= 5 and replacements.max() <= vocab_size - 1
    assert abs(replacements.mean() - (5 + vocab_size - 1) / 2) < 10  # uniform over 5..1004: mean 504.5
    # The start is uniform over the 6 valid starts: each within 5 standard deviations of draws / 6.
    counts = np.bincount(starts, minlength=num_tokens - length + 1)
    expected = draws / len(counts)
    assert len(counts) == 6 and np.all(np.abs(counts - expected) < 5 * np.sqrt(expected * (1 - 1 / 6))), counts


def test_random_tokens_are_the_non_special_ids_below_vocab_size():
    sentence = np.array([7, 8, 9, 10, EOS_ID], dtype=np.int32)
    rng = np.random.default_rng(5)
    replacements = set()
    for _ in range(3000):
        source = mass_mask(sentence, rng, 1.0, 8).source_ids[:4]
        changed = (source != sentence[:4]) & (source != MASK_ID)
        replacements.update(source[changed].tolist())
    # vocab_size 8: random tokens are drawn from 5, 6, 7 (7 is also a sentence token, so it shows up only
    # where it differs from the original).
    assert replacements == {5, 6, 7}


def test_noise_channel_rate_and_eos_kept():
    sentence = np.concatenate((np.arange(10, 110), [EOS_ID])).astype(np.int32)
    rng = np.random.default_rng(9)
    hits = 0
    for _ in range(2000):
        noisy = noise_channel(sentence, rng, 0.2)
        assert noisy[-1] == EOS_ID
        changed = noisy != sentence
        assert np.all(noisy[changed] == MASK_ID)
        hits += changed.sum()
    assert abs(hits / (2000 * 100) - 0.2) < 0.005
    assert np.array_equal(noise_channel(sentence, rng, 0.0), sentence)


def test_same_seed_same_draws_and_bad_input():
    a = mass_mask(SENTENCE, np.random.default_rng(3), 0.5, 100)
    b = mass_mask(SENTENCE, np.random.default_rng(3), 0.5, 100)
    assert a.equals(b)
    with pytest.raises(ValueError, match="end with </s>"):
        mass_mask(SENTENCE[:-1], np.random.default_rng(0), 0.5, 100)
    with pytest.raises(ValueError, match="at least 1 token"):
        mlm_mask(np.array([EOS_ID]), np.random.default_rng(0), 0.5)
    with pytest.raises(ValueError, match="language_model"):
        mask_sentence("bert", SENTENCE, np.random.default_rng(0), 0.5, 100)
    with pytest.raises(ValueError, match="equal lengths"):
        Example([2], [2], [1, 2], [2], [0])


@pytest.mark.parametrize("language_model", ["mass", "loose", "mlm"])
def test_an_examples_masks_depend_on_its_key_only(language_model):
    """mask_sentences gives a sentence masked among 199 others in a wide batch what it gives it alone in a batch of
    its own width, by the one-sentence rules (fragment, decoder side, positions)."""
    rng = np.random.default_rng(0)
    sentences = [np.concatenate((rng.integers(5, 100, int(rng.integers(1, 30))), [EOS_ID])).astype(np.int32)
                 for _ in range(200)]
    padded = np.zeros((len(sentences), 40), dtype=np.int32)
    for row, sentence in enumerate(sentences):
        padded[row, :len(sentence)] = sentence
    indices = np.arange(1000, 1200)
    together = mask_sentences(language_model, padded, [len(s) - 1 for s in sentences], 7, 3, indices, 0.5, 100)
    for row, sentence in enumerate(sentences):
        alone = mask_sentences(language_model, sentence[None], [len(sentence) - 1], 7, 3, indices[row:row + 1], 0.5,
                               100)
        n, t = len(sentence), int(alone[4][0])
        assert together[4][row] == t and not together[0][row, n:].any() and not together[2][row, t:].any()
        for mine, theirs in zip(together[:4], alone[:4]):
            assert np.array_equal(mine[row, :theirs.shape[1]], theirs[0])
        positions = alone[3][0, :t]
        assert np.array_equal(positions, np.arange(positions[0], positions[0] + t))
        assert np.array_equal(alone[2][0, :t], sentence[positions])
        masked = np.flatnonzero(alone[0][0] != sentence)
        assert np.all((masked >= positions[0]) & (masked <= positions[-1]))


def test_batch_noise_follows_the_noise_channel_and_the_draws_are_uniform():
    rng = np.random.default_rng(1)
    sentence = np.concatenate((rng.integers(5, 100, 40), [EOS_ID])).astype(np.int32)
    indices = np.arange(500)
    noisy = noise_sentences(np.tile(sentence, (500, 1)), [40] * 500, 2, 0, indices, 0.3)
    uniforms = hashed_uniforms(2, 0, indices, 41)

    class NoiseDraws:
        def __init__(self, row):
            self.row = row

        def random(self, size):
            return uniforms[self.row, :size]

    for row in range(500):
        assert np.array_equal(noisy[row], noise_channel(sentence, NoiseDraws(row), 0.3))
    assert abs((noisy == MASK_ID).mean() * 41 / 40 - 0.3) < 0.01
    draws = hashed_uniforms(0, 0, np.arange(20000), 5)
    assert 0.0 <= draws.min() and draws.max() < 1.0 and abs(draws.mean() - 0.5) < 0.005
    assert abs(np.corrcoef(draws[:, 0], draws[:, 1])[0, 1]) < 0.02
