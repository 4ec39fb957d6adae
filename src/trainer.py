"""Training: compiled train and eval steps, loss scaling, gradient accumulation, data parallelism, the epoch loop.

Pieces, bottom-up:
- `use_counter_dropout` (model_config.resumable_dropout): dropout masks hashed from (micro-batch key, dropout
  site, element index), so a resumed run draws exactly the masks the uninterrupted run would have drawn.
  MindSpore's Dropout kernels keep a hidden random state that restarts with the process, and its seed-and-offset
  random ops (mint.rand & co.) have no CPU kernels. Cost: about +25% step time for a d256 3+3 model on CPU.
- `build_optimizer`: adam | momentum | lamb from learn_rate_config.
- `LossScaler`: static / dynamic / none loss scale, updated on the host after each update.
- `TrainStep`: two graph-compiled functions. `accumulate` adds one micro-batch's gradients to accumulators;
  `update` adds the last micro-batch's, all-reduces (data parallel), unscales, checks that every gradient is
  finite, clips by global norm and, only when finite, applies the optimizer. The objective is
  loss_sum * loss_scale / tokens, where tokens counts the whole update (all micro-batches, all ranks), so
  accumulation and data parallelism weight every target token equally.
- `EvalStep`: the loss sums without dropout; perplexity = exp(nll_sum / tokens).
- `train_and_evaluate`: pre-training then fine-tuning phases, epochs, logging, checkpoints, resume, SIGTERM.
"""
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import time

import numpy as np

import mindspore as ms
from mindspore import nn, ops

from src import checkpoint as ckpt
from src.dictionary import PAD_ID
from src.errors import UserError
from src.schedules import learning_rate_at

PHASES = ("pretrain", "finetune")
BATCH_FIELDS = ("source_ids", "decoder_input_ids", "decoder_positions", "target_ids")
# A run whose updates keep overflowing at loss scale 1 (or with a fixed scale) has diverged.
MAX_CONSECUTIVE_OVERFLOWS = 20
# Config keys a resumed run may change: they stretch or shorten the run, not what a step computes.
RESUMABLE_CHANGES = ("dataset_config.epochs", "dataset_config.fine_tune_epochs", "checkpoint_options.save_ckpt_steps",
                     "checkpoint_options.keep_ckpt_max", "checkpoint_options.existed_ckpt")


# ----------------------------------------------------------------------------------------------------------------
# Device and data parallelism
# ----------------------------------------------------------------------------------------------------------------

def launched_distributed():
    """True inside a multi-process launch: msrun sets MS_WORKER_NUM, Ascend rank tables RANK_SIZE."""
    for variable in ("MS_WORKER_NUM", "RANK_SIZE"):
        value = os.environ.get(variable, "")
        if value.isdigit() and int(value) > 1:
            return True
    return False


def setup_device(device_target, device_id=None, threads=0):
    """threads > 0 caps MindSpore's CPU kernel threads (default: 25, more than this machine's cores): two
    processes sharing the cores each run best with one thread per core they get."""
    if device_id is None:
        ms.set_device(device_target)
    else:
        ms.set_device(device_target, device_id)
    if threads > 0 and device_target == "CPU":
        ms.device_context.cpu.op_tuning.threads_num(threads)


def init_data_parallel():
    """(rank, world size): initialises communication and DATA_PARALLEL mode when launched by msrun."""
    if not launched_distributed():
        return 0, 1
    from mindspore.communication import get_group_size, get_rank, init
    init()
    world = get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=world)
    return get_rank(), world


# ----------------------------------------------------------------------------------------------------------------
# Counter-based dropout
# ----------------------------------------------------------------------------------------------------------------

_UINT32 = 1 << 32
_GOLDEN = 0x9E3779B9
_FMIX_1 = ms.Tensor(0x85EBCA6B, ms.uint32)
_FMIX_2 = ms.Tensor(0xC2B2AE35, ms.uint32)
_WEYL = ms.Tensor(_GOLDEN, ms.uint32)


def _fmix32(h):
    """MurmurHash3's 32-bit finaliser on uint32 tensors (products wrap modulo 2^32)."""
    h = ops.bitwise_xor(h, ops.bitwise_right_shift(h, 16))
    h = h * _FMIX_1
    h = ops.bitwise_xor(h, ops.bitwise_right_shift(h, 13))
    h = h * _FMIX_2
    return ops.bitwise_xor(h, ops.bitwise_right_shift(h, 16))


def fmix32_numpy(values):
    """Reference of `_fmix32` in NumPy uint32 arithmetic (tests)."""
    h = np.asarray(values).astype(np.uint32)
    with np.errstate(over="ignore"):  # uint32 products wrap modulo 2^32 on purpose
        h ^= h >> np.uint32(16)
        h = h * np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h = h * np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    return h


class CounterDropout(nn.Cell):
    """Stands in for the `ops.Dropout` primitive inside `nn.Dropout`: x -> (x * mask / keep_prob, mask).

    Element i (flat index) is kept when fmix32((golden * i) XOR fmix32(key + salt)) < keep_prob * 2^32, in uint32
    arithmetic, where `key` (a shared Parameter set before each micro-batch) names the micro-batch and `salt`
    the dropout site and the tensor's shape. On CPU the mask comes from src/kernels/dropout.cc (same formula, one
    pass; its second output is the mask already scaled by 1 / keep_prob), elsewhere from graph ops.
    """

    def __init__(self, keep_prob, site, key, kernel=None):
        super().__init__()
        self.threshold = ms.Tensor(min(int(round(keep_prob * _UINT32)), _UINT32 - 1), ms.uint32)
        self.scale = 1.0 / keep_prob
        self.site = site
        self.key = key
        self.kernel = kernel
        self.kernel_threshold = self.threshold.reshape((1,))
        self.kernel_scale = ms.Tensor([self.scale], ms.float32)

    def construct(self, x):
        salt = (self.site * _GOLDEN + x.size * 0x27D4EB2F + x.shape[-1] * 0x165667B1) % _UINT32
        stream = _fmix32(self.key + ms.Tensor(salt, ms.uint32))
        if self.kernel is not None and x.dtype == ms.float32:
            return self.kernel(x, stream.reshape((1,)), self.kernel_threshold, self.kernel_scale)
        index = ops.arange(x.size, dtype=ms.int32).astype(ms.uint32).reshape(x.shape)
        bits = _fmix32(ops.bitwise_xor(index * _WEYL, stream))
        mask = (bits < self.threshold).astype(x.dtype)
        return x * mask * self.scale, mask


def use_counter_dropout(model, kernel=None):
    """Replaces the random kernel of every `nn.Dropout` in `model`; returns the shared uint32 key Parameter."""
    key = ms.Parameter(ms.Tensor(0, ms.uint32), name="dropout_key", requires_grad=False)
    site = 0
    for _, cell in model.cells_and_names():
        if isinstance(cell, nn.Dropout) and cell.p:
            cell.dropout = CounterDropout(1.0 - cell.p, site, key, kernel)
            site += 1
    return key


def dropout_key(seed, phase_index, epoch, batch_number, rank):
    """The key of one micro-batch: a function of where it is in the run, never of how the run got there."""
    return int(np.random.default_rng([seed, phase_index, epoch, batch_number, rank]).integers(0, _UINT32))


# ----------------------------------------------------------------------------------------------------------------
# Optimizer and loss scale
# ----------------------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------------------
# Compiled steps
# ----------------------------------------------------------------------------------------------------------------

def to_tensors(batch):
    return tuple(ms.Tensor(np.ascontiguousarray(batch[name], dtype=np.int32)) for name in BATCH_FIELDS)


def _square_sum(tensor):
    """Sum of squares. A full ReduceSum runs on one thread on CPU (2.3 ms per 262K floats); summing the first axis
    first parallelises (0.44 ms)."""
    squares = ops.square(tensor)
    return squares.sum(0).sum() if tensor.ndim > 1 else squares.sum()


class TrainStep:
    """Graph-compiled gradient accumulation and update over `loss_network` (a `LossNetwork`).

    accumulate(batch, loss_weight, key) -> (loss_sum, nll_sum, tokens) of the micro-batch (this rank).
    update(batch, loss_weight, unscale, lr, key, partial) -> (totals, finite, grad_norm): `partial` holds this
    rank's (loss_sum, nll_sum, tokens, stop) of the update's earlier micro-batches; `totals` adds this micro-batch
    and sums over ranks. loss_weight = loss_scale * ranks / tokens of the whole update; unscale = 1 / loss_scale.
    """

    def __init__(self, loss_network, optimizer, *, update_freq=1, clip_norm=0.0, dropout_key_param=None,
                 distributed=False):
        weights = optimizer.parameters
        accumulators = weights.clone(prefix="accumulated", init="zeros") if update_freq > 1 else None
        reducer = nn.DistributedGradReducer(weights) if distributed else None
        all_reduce_sum = ops.AllReduce(ops.ReduceOp.SUM) if distributed else None
        learning_rate = optimizer.learning_rate
        self.accumulators = accumulators

        def objective(source, decoder_input, positions, target, loss_weight):
            loss_sum, nll_sum, tokens = loss_network(source, decoder_input, positions, target)
            return loss_sum * loss_weight, (loss_sum, nll_sum, tokens)

        grad_fn = ms.value_and_grad(objective, None, weights, has_aux=True)

        def set_key(key):
            if dropout_key_param is not None:
                ops.assign(dropout_key_param, key)

        def accumulate(source, decoder_input, positions, target, loss_weight, key):
            set_key(key)
            (_, (loss_sum, nll_sum, tokens)), grads = grad_fn(source, decoder_input, positions, target, loss_weight)
            for accumulator, grad in zip(accumulators, grads):
                ops.assign_add(accumulator, grad)
            return loss_sum, nll_sum, tokens

        def update(source, decoder_input, positions, target, loss_weight, unscale, lr, key, partial):
            set_key(key)
            (_, (loss_sum, nll_sum, tokens)), grads = grad_fn(source, decoder_input, positions, target, loss_weight)
            if accumulators is not None:
                grads = tuple([grad + accumulator for grad, accumulator in zip(grads, accumulators)])
                for accumulator in accumulators:
                    ops.assign(accumulator, ops.zeros_like(accumulator))
            totals = partial + ops.stack([loss_sum, nll_sum, tokens, ops.zeros_like(tokens)])
            if reducer is not None:
                grads = reducer(grads)
                totals = all_reduce_sum(totals)
            # One pass over the gradients gives the norm, the overflow check (an inf/nan anywhere makes the norm
            # non-finite) and, folded into one multiplier, unscaling and global-norm clipping: every extra pass
            # over ~50M gradients costs tens of ms on CPU. Checked after the all-reduce, so all ranks agree.
            grad_norm = ops.sqrt(ops.stack([_square_sum(grad) for grad in grads]).sum()) * unscale
            finite = ops.isfinite(grad_norm)
            factor = unscale
            if clip_norm > 0:
                # Hand-written: ops.clip_by_global_norm is deprecated in MindSpore 2.10, and the norm is logged anyway.
                factor = unscale * clip_norm / ops.maximum(grad_norm, clip_norm)
            # A 0-d multiplier takes MindSpore's slow general broadcast path on CPU (0.79 ms per 262K floats); one
            # of shape [1, ..., 1] takes the fast one (0.34 ms).
            grads = tuple([grad * factor.reshape((1,) * grad.ndim) for grad in grads])
            return totals, finite, grad_norm, grads

        def apply(grads, lr):
            ops.assign(learning_rate, lr)
            optimizer(grads)
            return lr

        self._accumulate = ms.jit(accumulate)
        self._gradients = ms.jit(update)
        # The optimizer runs in a graph of its own, called only for finite gradients: a data-dependent `if` around
        # it inside one graph made the compile 4x longer and the step slower (control flow blocks fusion).
        self._apply = ms.jit(apply)

    def accumulate(self, tensors, loss_weight, key):
        return self._accumulate(*tensors, ms.Tensor(loss_weight, ms.float32), ms.Tensor(key, ms.uint32))

    def update(self, tensors, loss_weight, unscale, lr, key, partial):
        totals, finite, grad_norm, grads = self._gradients(
            *tensors, ms.Tensor(loss_weight, ms.float32), ms.Tensor(unscale, ms.float32), ms.Tensor(lr, ms.float32),
            ms.Tensor(key, ms.uint32), ms.Tensor(np.asarray(partial, dtype=np.float32)))
        if bool(finite.asnumpy()):
            # ms.mutable: a plain tuple of Tensors would be a compile-time constant and recompile every call.
            self._apply(ms.mutable(grads), ms.Tensor(lr, ms.float32))
        return totals, finite, grad_norm


class EvalStep:
    """Loss sums of a batch with the model in inference mode (no dropout)."""

    def __init__(self, loss_network):
        self.loss_network = loss_network

        def evaluate(source, decoder_input, positions, target):
            return loss_network(source, decoder_input, positions, target)

        self._evaluate = ms.jit(evaluate)

    def __call__(self, tensors):
        return self._evaluate(*tensors)


def evaluate(eval_step, batches, model):
    """Valid loss per token, nll per token and perplexity exp(nll_sum / tokens) over `batches`."""
    model.set_train(False)
    sums = np.zeros(3, dtype=np.float64)
    for batch in batches:
        loss_sum, nll_sum, tokens = eval_step(to_tensors(batch))
        sums += [float(loss_sum.asnumpy()), float(nll_sum.asnumpy()), float(tokens.asnumpy())]
    model.set_train(True)
    tokens = max(sums[2], 1.0)
    return {"loss": sums[0] / tokens, "nll": sums[1] / tokens, "ppl": math.exp(min(sums[1] / tokens, 700.0)),
            "tokens": int(sums[2])}


# ----------------------------------------------------------------------------------------------------------------
# Building one phase's model
# ----------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Network:
    model: object
    loss_network: object
    optimizer: object
    train_step: TrainStep
    eval_step: EvalStep
    dropout_key: object


def build_network(config, *, hide_masked_source, device_target="CPU", distributed=False):
    """Model (seeded by model_config.random_seed), loss, optimizer and compiled steps of one phase."""
    from src.model import LossNetwork, Seq2SeqModel
    model_config = config.model_config
    if device_target == "CPU" and config.learn_rate_config.optimizer == "lamb":
        raise UserError("config key learn_rate_config.optimizer: MindSpore's Lamb kernel runs on GPU and Ascend "
                        "only; use adam or momentum on CPU")
    ms.set_seed(model_config.random_seed)
    model = Seq2SeqModel(model_config, hide_masked_source=hide_masked_source)
    key = None
    if model_config.resumable_dropout:
        from src.kernels import dropout_op
        key = use_counter_dropout(model, dropout_op() if device_target == "CPU" else None)
    if model_config.compute_type == "float16":
        if device_target == "CPU":
            raise UserError("config key model_config.compute_type: float16 needs GPU or Ascend; train in float32 "
                            "on CPU")
        # O2 casts the model's cells in place and wraps it (`_backbone.` names): checkpoints keep the bare model.
        compute_model = ms.amp.auto_mixed_precision(model, "O2")
    else:
        compute_model = model
    loss_network = LossNetwork(compute_model, model_config.label_smoothing)
    loss_network.set_train(True)
    optimizer = build_optimizer(loss_network.trainable_params(), config.learn_rate_config)
    lr_config = config.learn_rate_config
    train_step = TrainStep(loss_network, optimizer, update_freq=lr_config.update_freq, clip_norm=lr_config.clip_norm,
                           dropout_key_param=key, distributed=distributed)
    return Network(model, loss_network, optimizer, train_step, EvalStep(loss_network), key)


# ----------------------------------------------------------------------------------------------------------------
# Run state, logging
# ----------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class TrainState:
    """Where a phase stands; everything a checkpoint needs to continue exactly."""
    phase: str
    epoch: int = 0               # epoch in progress, 0-based (== epochs when the phase is done)
    batch_position: int = 0      # micro-batches of this epoch already trained
    step: int = 0                # applied optimizer updates in this phase (the schedule's step)
    loss_scale: float = 1.0
    good_steps: int = 0
    skipped_updates: int = 0
    best_valid_loss: float = None


class MetricsLog:
    """One JSON object per line in RUN_FOLDER/metrics.jsonl (rank 0 only), flushed at once."""

    def __init__(self, path, enabled=True):
        self.path, self.enabled = path, enabled
        self.lines = 0
        if enabled and os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                self.lines = sum(1 for _ in handle)

    def truncate(self, lines):
        """Drops lines written after a checkpoint (a resumed run writes them again)."""
        if not self.enabled or not os.path.exists(self.path):
            self.lines = 0
            return
        with open(self.path, encoding="utf-8") as handle:
            kept = [line for _, line in zip(range(lines), handle)]
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.writelines(kept)
        self.lines = len(kept)

    def write(self, record):
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        self.lines += 1


def format_duration(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class StopRequest:
    """Set by SIGTERM; the loop checks it before each update, so the run stops at an update boundary."""

    def __init__(self):
        self.requested = False
        self.installed = False
        self.previous = None

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGTERM, self._handle)
            self.installed = True
        except ValueError:  # not the main thread: signals cannot be handled here
            self.installed = False
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def raise_stop(self):
        """Sends this process SIGTERM (handled at once, in this thread) or, without a handler, sets the flag."""
        if self.installed:
            signal.raise_signal(signal.SIGTERM)
        self.requested = True

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous)
            self.installed = False
        return False


# ----------------------------------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------------------------------

def _config_differences(saved, current, prefix=""):
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current)):
            yield from _config_differences(saved.get(key), current.get(key), f"{prefix}{key}.")
    elif saved != current:
        yield prefix[:-1], saved, current


class Trainer:
    """Runs the phases of one run folder. Built by `train_and_evaluate`; tests drive it directly."""

    def __init__(self, config, run_folder, *, device_target="CPU", rank=0, world=1, vocab_checksum="",
                 log_every=10, max_updates=None, console=None, progress=False):
        self.config, self.run_folder = config, run_folder
        self.device_target, self.rank, self.world = device_target, rank, world
        self.vocab_checksum = vocab_checksum
        self.log_every = max(1, log_every)
        self.max_updates = max_updates
        self.updates_this_process = 0
        self.consecutive_overflows = 0
        if rank != 0:
            self.console = lambda text: None
        else:
            self.console = console if console is not None else (lambda text: print(text, flush=True))
        self.progress = progress
        self.is_main = rank == 0
        options = config.checkpoint_options
        self.ckpt_folder = options.ckpt_path if os.path.isabs(options.ckpt_path) else os.path.join(run_folder,
                                                                                                   options.ckpt_path)
        self.checkpoints = ckpt.CheckpointManager(self.ckpt_folder, options.ckpt_prefix, options.keep_ckpt_max)
        self.metrics = MetricsLog(os.path.join(run_folder, "metrics.jsonl"), enabled=self.is_main)
        dataset_config = config.dataset_config
        self.phases = [name for name, path in zip(PHASES, (dataset_config.pre_train_dataset,
                                                           dataset_config.fine_tune_dataset)) if path]
        if not self.phases:
            raise UserError("config: set dataset_config.pre_train_dataset and/or dataset_config.fine_tune_dataset")
        self.stop = StopRequest()
        self.network = None
        self.state = None

    # -- data -------------------------------------------------------------------------------------------------

    def phase_epochs(self, phase):
        dataset_config = self.config.dataset_config
        if phase == "finetune" and dataset_config.fine_tune_epochs:
            return dataset_config.fine_tune_epochs
        return dataset_config.epochs

    def load_data(self):
        from src.dataset import load_dataset
        dataset_config = self.config.dataset_config
        paths = {"pretrain": dataset_config.pre_train_dataset, "finetune": dataset_config.fine_tune_dataset}
        self.examples = {phase: load_dataset(paths[phase]) for phase in self.phases}
        self.valid_examples = load_dataset(dataset_config.valid_dataset) if dataset_config.valid_dataset else None
        vocab_size = self.config.model_config.vocab_size
        for name, examples in list(self.examples.items()) + [("valid", self.valid_examples or [])]:
            largest = max((int(e.source_ids.max(initial=0)), int(e.target_ids.max(initial=0))) for e in examples) \
                if examples else (0, 0)
            if max(largest) >= vocab_size:
                raise UserError(f"{name} data holds token id {max(largest)} but model_config.vocab_size is "
                                f"{vocab_size} - were the records built with another vocabulary?")

    def dynamic_masking(self, phase):
        dataset_config = self.config.dataset_config
        if dataset_config.masking != "dynamic":
            return None
        from src.dataset import DynamicMasking
        if phase == "pretrain":
            return DynamicMasking(language_model=dataset_config.language_model, mask_ratio=dataset_config.mask_ratio,
                                  vocab_size=self.config.model_config.vocab_size)
        if dataset_config.noise_prob > 0:
            return DynamicMasking(language_model="pair", noise_prob=dataset_config.noise_prob)
        return None

    def batches(self, phase, epoch):
        from src.dataset import iterate_batches
        dataset_config = self.config.dataset_config
        return iterate_batches(self.examples[phase], batch_size=dataset_config.batch_size,
                               max_tokens=dataset_config.max_tokens,
                               bucket_boundaries=dataset_config.bucket_boundaries, shuffle=dataset_config.shuffle,
                               seed=self.config.model_config.random_seed, epoch=epoch, num_shards=self.world,
                               shard_id=self.rank, dynamic=self.dynamic_masking(phase))

    def valid_batches(self):
        from src.dataset import iterate_batches
        dataset_config = self.config.dataset_config
        return iterate_batches(self.valid_examples, batch_size=dataset_config.batch_size,
                               bucket_boundaries=dataset_config.bucket_boundaries, shuffle=False, eval_mode=True)

    # -- checkpoints ------------------------------------------------------------------------------------------

    def metadata(self, kind="training"):
        state = dataclasses.asdict(self.state)
        return {"kind": kind, **state, "phases": self.phases, "world_size": self.world,
                "metrics_lines": self.metrics.lines, "config": self.config.to_dict(),
                "vocab_checksum": self.vocab_checksum}

    def save_training_checkpoint(self):
        if self.is_main:
            path = self.checkpoints.save(self.network.model, self.network.optimizer, self.metadata())
            self.console(f"checkpoint {path}")

    def best_name(self, phase):
        return "pretrain_best.ckpt" if phase == "pretrain" and phase != self.phases[-1] else "best.ckpt"

    def save_best(self):
        if self.is_main:
            path = os.path.join(self.ckpt_folder, self.best_name(self.state.phase))
            ckpt.save_checkpoint(path, self.network.model, None, self.metadata(kind="weights"))

    def resume_point(self):
        """(phase, checkpoint path, metadata) of the latest checkpoint, or None."""
        path = self.checkpoints.latest()
        if path is None:
            return None
        _, _, metadata = ckpt.read_checkpoint(path)
        if metadata.get("kind") != "training" or metadata.get("phase") not in self.phases:
            raise UserError(f"{path}: not a training checkpoint of this run's phases ({', '.join(self.phases)})")
        saved = metadata.get("config", {})
        for key, before, now in _config_differences(saved, self.config.to_dict()):
            if key not in RESUMABLE_CHANGES:
                raise UserError(f"cannot resume from {path}: config key {key} was {before!r}, now {now!r}")
        if metadata.get("world_size") != self.world:
            raise UserError(f"cannot resume from {path}: it was written by {metadata.get('world_size')} rank(s), "
                            f"this run has {self.world} (the data shards would differ)")
        ckpt.check_vocab(metadata, self.vocab_checksum, path)
        return metadata["phase"], path, metadata

    def has_checkpoints(self):
        return self.checkpoints.latest() is not None

    # -- one phase --------------------------------------------------------------------------------------------

    def start_phase(self, phase, *, weights_from=None, resume_from=None, previous_model=None):
        """Builds the phase's network; weights from a resume checkpoint, the previous phase, or existed_ckpt."""
        self.network = build_network(self.config, hide_masked_source=phase == "pretrain",
                                     device_target=self.device_target, distributed=self.world > 1)
        scaler = LossScaler.from_config(self.config.loss_scale_config)
        self.state = TrainState(phase=phase, loss_scale=scaler.scale)
        if resume_from is not None:
            path, metadata = resume_from
            weights, optimizer_state, _ = ckpt.read_checkpoint(path)
            ckpt.set_model_weights(self.network.model, weights, path)
            ckpt.load_optimizer_state(self.network.optimizer, self.network.model, optimizer_state, path)
            fields = {field.name for field in dataclasses.fields(TrainState)}
            self.state = TrainState(**{key: value for key, value in metadata.items() if key in fields})
        elif previous_model is not None:
            ckpt.set_model_weights(self.network.model, ckpt.model_weights(previous_model), "the pre-trained model")
        elif weights_from:
            ckpt.load_model_weights(self.network.model, weights_from, self.vocab_checksum)
            self.console(f"{phase}: initial weights from {weights_from}")

    def run_phase(self):
        """Trains the current phase to its last epoch; returns False when stopped early (checkpoint written)."""
        phase, state = self.state.phase, self.state
        epochs = self.phase_epochs(phase)
        scaler = LossScaler.from_config(self.config.loss_scale_config)
        scaler.scale, scaler.good_steps = state.loss_scale, state.good_steps
        self.scaler = scaler
        self.phase_clock = (time.perf_counter(), state.epoch, state.batch_position)
        while state.epoch < epochs:
            if not self.run_epoch(epochs):
                return False
            state.epoch += 1
            state.batch_position = 0
            self.end_of_epoch()
        return True

    def run_epoch(self, epochs):
        state, network, config = self.state, self.network, self.config
        lr_config = config.learn_rate_config
        phase_index = PHASES.index(state.phase)
        seed = config.model_config.random_seed
        batches = self.batches(state.phase, state.epoch)
        num_batches = len(batches)
        self.epoch_batches = num_batches
        update_freq = lr_config.update_freq
        interval = np.zeros(4)  # loss_sum, nll_sum, tokens, updates (global)
        interval_start, grad_norm, skipped = time.perf_counter(), 0.0, 0
        network.model.set_train(True)
        bar = None
        if self.progress and self.is_main:
            from tqdm import tqdm
            bar = tqdm(total=num_batches, initial=state.batch_position, desc=f"{state.phase} epoch {state.epoch + 1}",
                       unit="batch", file=sys.stderr, leave=False)
        position = state.batch_position
        while position < num_batches:
            group = list(range(position, min(position + update_freq, num_batches)))
            group_tokens = sum(self.global_tokens(batches, number) for number in group)
            scale = self.scaler.scale
            loss_weight = scale * self.world / max(group_tokens, 1)
            partial = np.zeros(4, dtype=np.float64)
            for number in group[:-1]:
                key = dropout_key(seed, phase_index, state.epoch, number, self.rank)
                loss_sum, nll_sum, tokens = network.train_step.accumulate(to_tensors(batches.batch(number)),
                                                                          loss_weight, key)
                partial[:3] += [float(loss_sum.asnumpy()), float(nll_sum.asnumpy()), float(tokens.asnumpy())]
            lr = learning_rate_at(lr_config, state.step)
            if self.max_updates is not None and self.updates_this_process + 1 >= self.max_updates:
                self.stop.raise_stop()  # max_updates takes the SIGTERM path: this update is the last
            partial[3] = 1.0 if self.stop.requested else 0.0
            key = dropout_key(seed, phase_index, state.epoch, group[-1], self.rank)
            totals, finite, norm = network.train_step.update(to_tensors(batches.batch(group[-1])), loss_weight,
                                                             1.0 / scale, lr, key, partial)
            totals = totals.asnumpy().astype(np.float64)
            finite = bool(finite.asnumpy())
            self.updates_this_process += 1
            position = group[-1] + 1
            state.batch_position = position
            self.scaler.update(finite)
            state.loss_scale, state.good_steps = self.scaler.scale, self.scaler.good_steps
            if finite:
                state.step += 1
                self.consecutive_overflows = 0
                interval += [totals[0], totals[1], totals[2], 1]
                grad_norm = float(norm.asnumpy())
            else:
                state.skipped_updates += 1
                skipped += 1
                self.consecutive_overflows += 1
                if self.scaler.at_floor and self.consecutive_overflows >= MAX_CONSECUTIVE_OVERFLOWS:
                    raise UserError(f"training diverged: {self.consecutive_overflows} updates in a row had non-finite "
                                    f"gradients at loss scale {self.scaler.scale:g} (lower learn_rate_config.lr?)")
            if bar is not None:
                bar.update(len(group))
            if finite and state.step % self.log_every == 0 or position >= num_batches or totals[3] > 0:
                if interval[3] > 0 or skipped:
                    self.log_train(interval, time.perf_counter() - interval_start, lr, grad_norm, skipped, epochs)
                interval[:] = 0
                interval_start, skipped = time.perf_counter(), 0
            if totals[3] > 0:
                if bar is not None:
                    bar.close()
                self.save_training_checkpoint()
                self.console(f"stopped at {state.phase} step {state.step} (epoch {state.epoch + 1}, batch "
                             f"{position}/{num_batches}); continue with --resume")
                return False
            if finite and state.step % config.checkpoint_options.save_ckpt_steps == 0:
                self.save_training_checkpoint()
        if bar is not None:
            bar.close()
        return True

    def global_tokens(self, batches, number):
        """Target tokens of a global batch over all ranks, from the examples (no communication needed)."""
        indices = batches.global_indices(number)
        return int(sum(np.count_nonzero(batches.examples[i].target_ids != PAD_ID) for i in indices if i >= 0))

    def eta_seconds(self, epochs):
        start, start_epoch, start_position = self.phase_clock
        batches = max(self.epoch_batches, 1)
        done = (self.state.epoch - start_epoch) + (self.state.batch_position - start_position) / batches
        remaining = (epochs - self.state.epoch) - self.state.batch_position / batches
        return (time.perf_counter() - start) / done * remaining if done > 0 else float("nan")

    def log_train(self, interval, seconds, lr, grad_norm, skipped, epochs):
        state = self.state
        tokens = max(interval[2], 1.0)
        applied = interval[3] > 0  # False when every update of the interval overflowed
        record = {"type": "train", "phase": state.phase, "epoch": state.epoch + 1, "step": state.step,
                  "batch": state.batch_position, "batches": self.epoch_batches,
                  "loss": interval[0] / tokens if applied else None, "nll": interval[1] / tokens if applied else None,
                  "ppl": math.exp(min(interval[1] / tokens, 700.0)) if applied else None,
                  "lr": lr, "loss_scale": self.scaler.scale,
                  "grad_norm": grad_norm, "tokens_per_s": interval[2] / max(seconds, 1e-9),
                  "updates": int(interval[3]), "skipped": skipped, "eta_s": self.eta_seconds(epochs),
                  "time": time.time()}
        if not math.isfinite(record["eta_s"]):
            record["eta_s"] = None
        self.metrics.write(record)
        if self.is_main:
            eta = format_duration(record["eta_s"]) if record["eta_s"] is not None else "?"
            losses = f"loss {record['loss']:.4f} nll {record['nll']:.4f}" if applied else "no finite update"
            self.console(f"{state.phase} epoch {state.epoch + 1} step {state.step} "
                         f"batch {state.batch_position}/{self.epoch_batches} {losses} lr {lr:.3e} "
                         f"scale {self.scaler.scale:g} "
                         f"{record['tokens_per_s']:.0f} tok/s eta {eta}" + (f" skipped {skipped}" if skipped else ""))

    def end_of_epoch(self):
        state = self.state
        if self.valid_examples:
            result = evaluate(self.network.eval_step, self.valid_batches(), self.network.model)
            self.metrics.write({"type": "valid", "phase": state.phase, "epoch": state.epoch, "step": state.step,
                                **result, "time": time.time()})
            improved = state.best_valid_loss is None or result["loss"] < state.best_valid_loss
            if self.is_main:
                self.console(f"{state.phase} epoch {state.epoch} valid loss {result['loss']:.4f} "
                             f"nll {result['nll']:.4f} ppl {result['ppl']:.2f}" + (" (best)" if improved else ""))
            if improved:
                state.best_valid_loss = result["loss"]
                self.save_best()
        else:
            self.save_best()  # without a valid set, best.ckpt holds the latest epoch's weights
        if self.is_main and state.epoch in self.config.checkpoint_options.best_at_epochs:
            best = os.path.join(self.ckpt_folder, self.best_name(state.phase))
            if os.path.exists(best):
                snapshot = best[:-len(".ckpt")] + f"_epoch{state.epoch}.ckpt"
                shutil.copyfile(best, snapshot + ".tmp")
                os.replace(snapshot + ".tmp", snapshot)
        self.save_training_checkpoint()

    # -- the whole run ----------------------------------------------------------------------------------------

    def run(self, resume=False):
        """Every phase in order; returns a summary dict (`stopped` True when interrupted).

        Everything that can fail on the user's input (config, data, checkpoints) is checked before the run folder
        is written to, so a failed start leaves no output behind.
        """
        started = time.perf_counter()
        resume_point = self.resume_point() if resume else None
        if not resume and self.has_checkpoints():
            raise UserError(f"run folder {self.run_folder} already holds checkpoints in {self.ckpt_folder}: "
                            "pass --resume to continue it or choose another --output")
        self.load_data()
        first = self.phases.index(resume_point[0]) if resume_point else 0
        if resume_point is not None:
            self.start_phase(self.phases[first], resume_from=resume_point[1:])
        else:
            self.start_phase(self.phases[0], weights_from=self.config.checkpoint_options.existed_ckpt)
        os.makedirs(self.run_folder, exist_ok=True)
        if self.is_main:
            self.config.save(os.path.join(self.run_folder, "config.json"))
        if resume_point is None:
            if resume:
                self.console(f"no checkpoint in {self.ckpt_folder}: starting from the beginning")
            self.metrics.truncate(0)
        else:
            self.metrics.truncate(resume_point[2]["metrics_lines"])
            self.console(f"resuming {resume_point[1]}: {self.state.phase} epoch {self.state.epoch + 1}, "
                         f"batch {self.state.batch_position}, step {self.state.step}")
        with self.stop, rank_pid_file(self.run_folder, self.rank):
            for index, phase in enumerate(self.phases[first:], first):
                if index > first:
                    self.start_phase(phase, previous_model=self.network.model)
                if not self.run_phase():
                    return {"stopped": True, "phase": phase, "step": self.state.step,
                            "seconds": time.perf_counter() - started}
        summary = {"stopped": False, "phase": self.state.phase, "step": self.state.step,
                   "best_valid_loss": self.state.best_valid_loss, "seconds": time.perf_counter() - started,
                   "parameters_sha256": parameters_digest(self.network.model)}
        best = f"best valid loss {summary['best_valid_loss']:.4f}, " if summary["best_valid_loss"] is not None else ""
        self.console(f"done: {', '.join(self.phases)}; {self.state.step} updates in the last phase; {best}"
                     f"{format_duration(summary['seconds'])}; checkpoints in {self.ckpt_folder}")
        return summary


@contextlib.contextmanager
def rank_pid_file(run_folder, rank):
    """RUN/pids/rank_N.pid while this rank trains (SIGTERM handler already installed): stop_training.sh signals
    the ranks from these files, since msrun starts each worker in a session of its own and does not forward
    SIGTERM."""
    path = os.path.join(run_folder, "pids", f"rank_{rank}.pid")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()}\n")
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        with contextlib.suppress(OSError):  # other ranks may still hold theirs
            os.rmdir(os.path.dirname(path))


def parameters_digest(model):
    """SHA-256 of every parameter's name and bytes: equal digests on all ranks show they did not drift apart."""
    digest = hashlib.sha256()
    for parameter in sorted(model.get_parameters(), key=lambda p: p.name):
        digest.update(parameter.name.encode("utf-8"))
        digest.update(np.ascontiguousarray(parameter.asnumpy()).tobytes())
    return digest.hexdigest()


def train_and_evaluate(config, run_folder, *, resume=False, device_target="CPU", rank=0, world=1,
                       vocab_checksum="", log_every=10, max_updates=None, console=None, progress=False):
    """Trains the run described by `config` into `run_folder` (config.json, metrics.jsonl, checkpoints/)."""
    trainer = Trainer(config, run_folder, device_target=device_target, rank=rank, world=world,
                      vocab_checksum=vocab_checksum, log_every=log_every, max_updates=max_updates,
                      console=console, progress=progress)
    return trainer.run(resume=resume)
