"""The optimizer (adam | momentum | lamb, from learn_rate_config) and the host-side loss scale."""
import dataclasses

from mindspore import nn

from src.errors import UserError


def build_optimizer(params, lr_config):
    """adam (nn.Adam, bias-corrected), momentum (nn.Momentum) or lamb (nn.Lamb) over `params`.

    With weight_decay > 0 only matrices are decayed (not biases or LayerNorm scales). The learning rate starts
    at the schedule's first value and is overwritten before every update by `TrainStep.update`.
    """
    params = list(params)
    if lr_config.weight_decay > 0:
        groups = [{"params": [p for p in params if len(p.shape) > 1], "weight_decay": lr_config.weight_decay},
                  {"params": [p for p in params if len(p.shape) <= 1], "weight_decay": 0.0}]
        groups = [group for group in groups if group["params"]]
    else:
        groups = params
    learning_rate = lr_config.warmup_init_lr if lr_config.warmup_steps else lr_config.lr
    if lr_config.optimizer == "adam":
        return nn.Adam(groups, learning_rate=learning_rate, beta1=lr_config.adam_beta1, beta2=lr_config.adam_beta2,
                       eps=lr_config.adam_eps)
    if lr_config.optimizer == "momentum":
        return nn.Momentum(groups, learning_rate=learning_rate, momentum=lr_config.momentum)
    if lr_config.optimizer == "lamb":
        return nn.Lamb(groups, learning_rate=learning_rate, beta1=lr_config.adam_beta1, beta2=lr_config.adam_beta2,
                       eps=lr_config.adam_eps)
    raise UserError(f"config key learn_rate_config.optimizer: unknown optimizer {lr_config.optimizer!r}")


@dataclasses.dataclass
class LossScaler:
    """mode dynamic: divide by `factor` on overflow (not below 1), multiply after `window` finite updates in a row;
    static: fixed `scale`; none: scale 1. In every mode a non-finite update is skipped."""
    mode: str
    scale: float
    factor: float = 2.0
    window: int = 200
    good_steps: int = 0

    @classmethod
    def from_config(cls, config):
        scale = 1.0 if config.loss_scale_mode == "none" else float(config.init_loss_scale)
        return cls(config.loss_scale_mode, scale, config.loss_scale_factor, config.scale_window)

    def update(self, finite):
        if self.mode != "dynamic":
            return
        if finite:
            self.good_steps += 1
            if self.good_steps >= self.window:
                self.scale *= self.factor
                self.good_steps = 0
        else:
            self.scale = max(self.scale / self.factor, 1.0)
            self.good_steps = 0

    @property
    def at_floor(self):
        return self.mode != "dynamic" or self.scale <= 1.0
