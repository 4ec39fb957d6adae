"""Counter-based dropout (model_config.resumable_dropout): masks that a resumed run draws exactly as the
uninterrupted run would have.

Each mask is hashed from (micro-batch key, dropout site, element index). MindSpore's Dropout kernels keep a hidden
random state that restarts with the process, and its seed-and-offset random ops (mint.rand & co.) have no CPU
kernels. Cost: about +25% step time for a d256 3+3 model on CPU.
"""
import numpy as np

import mindspore as ms
from mindspore import nn, ops

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
        # Under dynamic shapes x.size and x.shape[-1] are known only at run time, and ms.Tensor() of such a scalar
        # is no Tensor in a graph: scalar_to_tensor is (salt < 2^32, so the int64 -> uint32 cast keeps it).
        salt = (self.site * _GOLDEN + x.size * 0x27D4EB2F + x.shape[-1] * 0x165667B1) % _UINT32
        stream = _fmix32(self.key + ops.scalar_to_tensor(salt, ms.int64).astype(ms.uint32))
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
