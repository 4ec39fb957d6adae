"""The hand-written CPU LayerNorm kernel equals MindSpore's own LayerNorm, forward and gradients, with static and
dynamic shapes; the dropout kernel takes dynamic shapes."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn, ops

from src import kernels
from src.model import LayerNorm
from src.train_step import count_compilations

needs_kernel = pytest.mark.skipif(kernels.layer_norm_ops() is None, reason="no C++ compiler with OpenMP")


class WeightedSum(nn.Cell):
    def __init__(self, norm):
        super().__init__()
        self.norm = norm

    def construct(self, x, dy):
        return (self.norm(x) * dy).sum()


def forward_and_grads(norm, x, dy):
    """Output, loss and the gradients of sum(norm(x) * dy) for x, gamma and beta, from a compiled graph."""
    net = WeightedSum(norm)
    grad = ms.jit(ops.value_and_grad(net, grad_position=0, weights=net.trainable_params()))
    value, (dx, (dgamma, dbeta)) = grad(x, dy)
    return norm(x).asnumpy(), value.asnumpy(), dx.asnumpy(), dgamma.asnumpy(), dbeta.asnumpy()


@needs_kernel
@pytest.mark.parametrize("shape", [(3, 5, 16), (7, 1024)])
def test_custom_layer_norm_matches_stock(shape):
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.normal(2.0, 3.0, size=shape).astype(np.float32))
    dy = ms.Tensor(rng.normal(size=shape).astype(np.float32))
    gamma = rng.normal(1.0, 0.5, size=shape[-1]).astype(np.float32)
    beta = rng.normal(0.0, 0.5, size=shape[-1]).astype(np.float32)

    custom = LayerNorm(shape[-1])
    stock = nn.LayerNorm((shape[-1],), epsilon=1e-5)
    custom.set_train(True)  # the kernel runs in training; evaluation keeps MindSpore's op
    assert custom.custom_forward is not None
    for norm in (custom, stock):
        norm.gamma.set_data(ms.Tensor(gamma))
        norm.beta.set_data(ms.Tensor(beta))
    ours = forward_and_grads(custom, x, dy)
    theirs = forward_and_grads(stock, x, dy)
    for name, a, b in zip(["y", "loss", "dx", "dgamma", "dbeta"], ours, theirs):
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * scale, err_msg=name)
    # the layer really normalises: zero mean and unit variance per row before gamma and beta
    normalised = (ours[0] - beta) / gamma
    np.testing.assert_allclose(normalised.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalised.var(-1), 1.0, atol=1e-3)


@needs_kernel
def test_kernels_compile_once_for_dynamic_shapes():
    """[None, None, 16] inputs: one graph per function for three shapes (the kernels' C++ InferShape functions give
    the output shapes at run time), with the results of per-shape static graphs."""
    rng = np.random.default_rng(0)
    custom, stock = LayerNorm(16), nn.LayerNorm((16,), epsilon=1e-5)
    custom.set_train(True)
    dropout = kernels.dropout_op()
    stream, threshold = ms.Tensor([12345], ms.uint32), ms.Tensor([3 << 30], ms.uint32)
    scale = ms.Tensor([4 / 3], ms.float32)

    def make(norm):
        net = WeightedSum(norm)
        return ops.value_and_grad(net, grad_position=0, weights=net.trainable_params())

    custom_grad, stock_grad = make(custom), make(stock)

    def custom_step():
        # a new function object each time: enable_dynamic marks the Python function itself
        def step(x, dy):
            return custom_grad(x, dy), custom(x), dropout(x, stream, threshold, scale)
        return step

    def stock_step(x, dy):
        return stock_grad(x, dy), stock(x)

    spec = ms.Tensor(shape=[None, None, 16], dtype=ms.float32)
    dynamic_custom = ms.enable_dynamic(x=spec, dy=spec)(ms.jit(custom_step()))
    static_custom, static_stock = ms.jit(custom_step()), ms.jit(stock_step)
    with count_compilations() as compilations:
        for shape in [(2, 3, 16), (4, 7, 16), (1, 5, 16)]:
            x = ms.Tensor(rng.normal(2.0, 3.0, size=shape).astype(np.float32))
            dy = ms.Tensor(rng.normal(size=shape).astype(np.float32))
            dynamic = dynamic_custom(x, dy)
            static = static_custom(x, dy)
            (value, (dx, (dgamma, dbeta))), y, (dropped, mask) = dynamic
            (s_value, (s_dx, (s_dgamma, s_dbeta))), s_y, (s_dropped, s_mask) = static
            for a, b in [(value, s_value), (dx, s_dx), (dgamma, s_dgamma), (dbeta, s_dbeta), (y, s_y),
                         (dropped, s_dropped), (mask, s_mask)]:
                assert a.shape == b.shape
                np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
            kept = mask.asnumpy() != 0
            assert 0.5 < kept.mean() < 1.0 and mask.shape == shape
            (t_value, (t_dx, _)), t_y = static_stock(x, dy)
            np.testing.assert_allclose(y.asnumpy(), t_y.asnumpy(), rtol=0, atol=1e-4)
            np.testing.assert_allclose(dx.asnumpy(), t_dx.asnumpy(), rtol=0, atol=1e-4)
    assert compilations["step"][0] == 1 + 3  # dynamic once, static once per shape


def test_stock_kernels_switch_and_failed_build(monkeypatch, tmp_path):
    monkeypatch.setenv("MASS_STOCK_KERNELS", "1")
    assert kernels.layer_norm_ops() is None
    assert LayerNorm(8).custom_forward is None
    monkeypatch.delenv("MASS_STOCK_KERNELS")
    # a compiler that fails leaves no library behind and reports None (the model then uses nn.LayerNorm)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CXX", "false")
    assert kernels.build("layer_norm.cc") is None
    assert not list(tmp_path.rglob("*.so"))


@needs_kernel
def test_build_is_cached_by_source_hash(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = kernels.build("layer_norm.cc")
    assert first is not None and first.startswith(str(tmp_path))
    stamp = __import__("os").stat(first).st_mtime_ns
    assert kernels.build("layer_norm.cc") == first
    assert __import__("os").stat(first).st_mtime_ns == stamp
