"""The hand-written CPU LayerNorm kernel equals MindSpore's own LayerNorm, forward and gradients."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn, ops

from src import kernels
from src.model import LayerNorm

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
