"""Learning-rate schedules: pure NumPy functions of the update step.

`step` counts the optimizer updates already applied in the current phase (0 for the first update); skipped
(overflowed) updates do not count. With lr = `lr`, lr0 = `warmup_init_lr`, W = `warmup_steps`,
D = max(`decay_start_step`, 1), N = `decay_steps`, p = `poly_lr_scheduler_power`, floor = `min_lr`:

    warm-up (all schedules), step < W:   lr0 + (lr - lr0) * step / W
    constant, step >= W:                 lr
    isr (inverse square root):           lr                                   for W <= step <= D
                                         max(floor, lr * sqrt(D / step))      for step > D
    poly:                                lr                                   for W <= step <= D
                                         (lr - floor) * (1 - (step - D) / N)^p + floor   for D < step < D + N
                                         floor                                for step >= D + N

Every piece meets the next without a jump: warm-up reaches lr at step W, and both decays start from lr at D.
(config validation guarantees decay_start_step >= warmup_steps; D is floored at 1 so that isr with no warm-up
and decay_start_step 0 decays as lr / sqrt(step) instead of dividing by zero.)
"""
import numpy as np

SCHEDULES = ("constant", "isr", "poly")


def learning_rates(lr_config, steps):
    """The learning rate of each update step in `steps` (array-like of ints) -> float64 array of the same shape."""
    steps = np.asarray(steps, dtype=np.float64)
    if np.any(steps < 0):
        raise ValueError("update steps must be >= 0")
    peak, start, floor = lr_config.lr, lr_config.warmup_init_lr, lr_config.min_lr
    warmup = lr_config.warmup_steps
    decay_start = max(lr_config.decay_start_step, 1)
    if lr_config.lr_scheduler == "constant":
        rates = np.full_like(steps, peak)
    elif lr_config.lr_scheduler == "isr":
        after = np.maximum(steps, decay_start)
        rates = np.maximum(floor, peak * np.sqrt(decay_start / after))
    elif lr_config.lr_scheduler == "poly":
        progress = np.clip((steps - decay_start) / lr_config.decay_steps, 0.0, 1.0)
        rates = (peak - floor) * (1.0 - progress) ** lr_config.poly_lr_scheduler_power + floor
    else:
        raise ValueError(f"unknown lr_scheduler {lr_config.lr_scheduler!r}; expected one of {', '.join(SCHEDULES)}")
    if warmup > 0:
        warming = steps < warmup
        rates = np.where(warming, start + (peak - start) * steps / warmup, rates)
    return rates


def learning_rate_at(lr_config, step):
    """The learning rate of one update step, as a Python float."""
    return float(learning_rates(lr_config, [step])[0])
