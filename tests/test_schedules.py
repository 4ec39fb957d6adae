"""LR schedules against hand-computed values, and continuity where one piece hands over to the next."""
import dataclasses
import math

import numpy as np
import pytest

from config.config import LearnRateConfig
from src.schedules import learning_rate_at, learning_rates


def lr_config(**changes):
    base = LearnRateConfig(lr=1e-3, warmup_init_lr=1e-5, warmup_steps=10, decay_start_step=40, min_lr=1e-4,
                           decay_steps=100, poly_lr_scheduler_power=0.5)
    config = dataclasses.replace(base, **changes)
    config.validate()
    return config


@pytest.mark.parametrize("scheduler", ["constant", "isr", "poly"])
def test_warmup_is_linear_from_warmup_init_lr(scheduler):
    config = lr_config(lr_scheduler=scheduler)
    assert learning_rate_at(config, 0) == pytest.approx(1e-5, rel=1e-12)
    assert learning_rate_at(config, 5) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 5 / 10, rel=1e-12)
    assert learning_rate_at(config, 9) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 9 / 10, rel=1e-12)
    assert learning_rate_at(config, 10) == pytest.approx(1e-3, rel=1e-12)


def test_constant_after_warmup():
    rates = learning_rates(lr_config(lr_scheduler="constant"), [10, 11, 40, 41, 10 ** 6])
    np.testing.assert_array_equal(rates, [1e-3] * 5)


def test_isr_hand_computed():
    config = lr_config(lr_scheduler="isr")
    # held at lr until decay_start_step (40), then lr * sqrt(40 / step), floored at min_lr 1e-4
    assert learning_rate_at(config, 25) == pytest.approx(1e-3, rel=1e-12)
    assert learning_rate_at(config, 40) == pytest.approx(1e-3, rel=1e-12)
    assert learning_rate_at(config, 160) == pytest.approx(5e-4, rel=1e-12)
    assert learning_rate_at(config, 90) == pytest.approx(1e-3 * 2 / 3, rel=1e-12)
    assert learning_rate_at(config, 4000) == pytest.approx(1e-4, rel=1e-12)     # sqrt(40/4000) = 0.1: the floor
    assert learning_rate_at(config, 10000) == pytest.approx(1e-4, rel=1e-12)    # below the floor: floored


def test_isr_without_warmup_or_decay_start():
    config = lr_config(lr_scheduler="isr", warmup_steps=0, decay_start_step=0, min_lr=0.0)
    np.testing.assert_allclose(learning_rates(config, [0, 1, 4, 100]), [1e-3, 1e-3, 5e-4, 1e-4], rtol=1e-12)


def test_poly_hand_computed():
    config = lr_config(lr_scheduler="poly")
    # (lr - min_lr) * (1 - (step - 40) / 100) ** 0.5 + min_lr between 40 and 140, then min_lr
    assert learning_rate_at(config, 40) == pytest.approx(1e-3, rel=1e-12)
    assert learning_rate_at(config, 65) == pytest.approx(9e-4 * math.sqrt(0.75) + 1e-4, rel=1e-12)
    assert learning_rate_at(config, 90) == pytest.approx(9e-4 * math.sqrt(0.5) + 1e-4, rel=1e-12)
    assert learning_rate_at(config, 140) == pytest.approx(1e-4, rel=1e-12)
    assert learning_rate_at(config, 5000) == pytest.approx(1e-4, rel=1e-12)
    squared = lr_config(lr_scheduler="poly", poly_lr_scheduler_power=2.0)
    assert learning_rate_at(squared, 90) == pytest.approx(9e-4 * 0.25 + 1e-4, rel=1e-12)


@pytest.mark.parametrize("scheduler", ["constant", "isr", "poly"])
def test_no_jump_at_piece_boundaries(scheduler):
    config = lr_config(lr_scheduler=scheduler, warmup_steps=1000, decay_start_step=3000, decay_steps=5000,
                       warmup_init_lr=1e-6)
    # The formulas are continuous in a real-valued step: the value just before each boundary (end of warm-up,
    # decay start, end of the poly decay) equals the value at it.
    for boundary in (1000, 3000, 8000):
        before, at = learning_rates(config, [boundary - 1e-9, boundary])
        assert before == pytest.approx(at, abs=1e-9)
    rates = learning_rates(config, np.arange(0, 10000))
    assert rates[0] == pytest.approx(1e-6) and rates.max() == pytest.approx(1e-3, rel=1e-12)
    assert np.all(np.diff(rates[:1001]) > 0) and np.all(np.diff(rates[1000:]) <= 0)
    assert rates[1000:].min() >= 1e-4 * (1 - 1e-12)


def test_vectorised_equals_scalar_and_rejects_negative_steps():
    config = lr_config(lr_scheduler="isr")
    steps = [0, 3, 10, 41, 500]
    np.testing.assert_array_equal(learning_rates(config, steps), [learning_rate_at(config, s) for s in steps])
    with pytest.raises(ValueError):
        learning_rates(config, [-1])
