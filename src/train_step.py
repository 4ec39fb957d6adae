"""Graph-compiled train and eval steps over a `LossNetwork`, and `build_network`, which builds one phase's model,
loss, optimizer and steps.

`TrainStep.accumulate` adds one micro-batch's gradients to accumulators; `TrainStep.update` adds the last
micro-batch's, all-reduces (data parallel), unscales, checks that every gradient is finite, clips by global norm
and, only when finite, applies the optimizer. The objective is loss_sum * loss_scale / tokens, where tokens counts
the whole update (all micro-batches, all ranks), so accumulation and data parallelism weight every target token
equally. `EvalStep` gives the loss sums without dropout; perplexity = exp(nll_sum / tokens).

With `dynamic_shapes` each step is compiled once for any batch size and lengths (`jit_batch_step`); otherwise
once per (rows, source length, target length) bucket shape, each keeping its own compiled graph and memory.
`count_compilations` counts the compiles.
"""
import collections
import contextlib
import dataclasses
import inspect
import math
import time

import numpy as np

import mindspore as ms
from mindspore import nn, ops

from src.dataset import BATCH_FIELDS
from src.dropout import use_counter_dropout
from src.errors import UserError
from src.optimizer import build_optimizer


def to_tensors(batch):
    """int32 Tensors of a batch's BATCH_FIELDS, in the order the steps take them."""
    return tuple(ms.Tensor(np.ascontiguousarray(batch[name], dtype=np.int32)) for name in BATCH_FIELDS)


def jit_batch_step(function, dynamic_shapes):
    """ms.jit(function) whose first four parameters take a batch's BATCH_FIELDS tensors.

    dynamic_shapes: one graph for every batch size, source length and target length (the decoder input, positions
    and target share [batch, target length]); otherwise a graph per new shape. ms.enable_dynamic marks the Python
    function object itself, so pass a function of its own (a closure), never one also compiled with static shapes.
    """
    compiled = ms.jit(function)
    if not dynamic_shapes:
        return compiled
    # unique=True: every dimension named by one Symbol has the same length, so shape checks between them hold.
    batch, source_len, target_len = (ms.Symbol(unique=True) for _ in range(3))
    source = ms.Tensor(shape=[batch, source_len], dtype=ms.int32)
    target = ms.Tensor(shape=[batch, target_len], dtype=ms.int32)
    names = list(inspect.signature(function).parameters)[:len(BATCH_FIELDS)]
    return ms.enable_dynamic(**dict(zip(names, (source, target, target, target))))(compiled)


@contextlib.contextmanager
def count_compilations():
    """Counts the graphs compiled inside the block, by function name: yields a dict name -> [count, seconds].

    Hooks MindSpore's jit executor (mindspore.graph.api, 2.10): a call compiles when its phase (function, argument
    shapes and types) is not yet in the compile cache. The seconds are those of the compile itself.
    """
    from mindspore.graph import api
    counts = collections.defaultdict(lambda: [0, 0.0])
    original = api._JitExecutor.compile

    def compile_and_count(executor, method_name, *args, **kwargs):
        known = len(api.ms_compile_cache)
        start = time.perf_counter()
        phase = original(executor, method_name, *args, **kwargs)
        if len(api.ms_compile_cache) > known:
            counts[executor.fn.__name__][0] += 1
            counts[executor.fn.__name__][1] += time.perf_counter() - start
        return phase

    api._JitExecutor.compile = compile_and_count
    try:
        yield counts
    finally:
        api._JitExecutor.compile = original


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
                 distributed=False, dynamic_shapes=False):
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

        self._accumulate = jit_batch_step(accumulate, dynamic_shapes)
        self._gradients = jit_batch_step(update, dynamic_shapes)
        # The optimizer runs in a graph of its own, called only for finite gradients: a data-dependent `if` around
        # it inside one graph made the compile 4x longer and the step slower (control flow blocks fusion). Its
        # inputs have the parameters' shapes: one graph whatever the batch shapes.
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

    def __init__(self, loss_network, dynamic_shapes=False):
        self.loss_network = loss_network

        def evaluate(source, decoder_input, positions, target):
            return loss_network(source, decoder_input, positions, target)

        self._evaluate = jit_batch_step(evaluate, dynamic_shapes)

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


@dataclasses.dataclass
class Network:
    """One phase's model (the bare one, as saved in checkpoints) and what trains it."""
    model: object
    loss_network: object
    optimizer: object
    train_step: TrainStep
    eval_step: EvalStep


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
    dynamic_shapes = config.dataset_config.dynamic_shapes
    train_step = TrainStep(loss_network, optimizer, update_freq=lr_config.update_freq, clip_norm=lr_config.clip_norm,
                           dropout_key_param=key, distributed=distributed, dynamic_shapes=dynamic_shapes)
    return Network(model, loss_network, optimizer, train_step, EvalStep(loss_network, dynamic_shapes))
