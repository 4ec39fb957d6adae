"""Hand-written CPU code, built once with the system C++ compiler: MindSpore AOT custom ops and a ctypes library.

`layer_norm_ops()` returns (forward, backward) custom ops of `layer_norm.cc`, `dropout_op()` the counter-based
dropout of `dropout.cc`, `beam_cache_op()` the beam-search cache update of `beam_cache.cc`, `beam_topk_op()` the
first top-k stage of a beam-search step of `beam_topk.cc`, `bpe_library()` the ctypes library of `bpe.cc` (BPE apply
on plain text, used by src/bpe.py). Each is None where it cannot be used: no C++ compiler with
OpenMP, a build failure, or MASS_STOCK_KERNELS=1 in the environment (for A/B timings and equivalence tests). The
shared library is cached under $XDG_CACHE_HOME/mass-kernels (default ~/.cache) in a folder named by the hash of the
source and the compile command, written to a temporary name and renamed, so concurrent ranks never see half a file.
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
COMPILE = ["-O3", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]
_CACHE = {}


def _cache_root():
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                        "mass-kernels")


def build(source_name):
    """Path of the shared library built from src/kernels/SOURCE_NAME, or None when it cannot be built."""
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        return None
    source = os.path.join(HERE, source_name)
    with open(source, "rb") as handle:
        digest = hashlib.sha256(handle.read() + " ".join([compiler] + COMPILE).encode()).hexdigest()[:16]
    folder = os.path.join(_cache_root(), digest)
    library = os.path.join(folder, os.path.splitext(source_name)[0] + ".so")
    if os.path.exists(library):
        return library
    try:
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(suffix=".so", dir=folder)
        os.close(handle)
        result = subprocess.run([compiler, *COMPILE, "-o", temporary, source], capture_output=True, text=True)
        if result.returncode != 0:
            os.unlink(temporary)
            return None
        os.replace(temporary, library)
    except OSError:
        return None
    return library


def _cached(name, source, make):
    """make(path of the library built from `source`) once per process; None without a library or with
    MASS_STOCK_KERNELS=1 (checked at every call, so tests can switch it)."""
    if os.environ.get("MASS_STOCK_KERNELS") == "1":
        return None
    if name not in _CACHE:
        library = build(source)
        _CACHE[name] = None if library is None else make(library)
    return _CACHE[name]


def layer_norm_ops():
    """(forward, backward) MindSpore custom ops over the last axis (see layer_norm.cc), or None."""
    return _cached("layer_norm", "layer_norm.cc", _make_layer_norm_ops)


def dropout_op():
    """MindSpore custom op (x, stream, threshold, scale) -> (x * mask, mask) of dropout.cc, with its bprop, or None."""
    return _cached("dropout", "dropout.cc", _make_dropout_op)


def beam_cache_op():
    """MindSpore custom op (cache, fresh, rows, slot) -> (updated cache,) of beam_cache.cc (inference only), or None."""
    return _cached("beam_cache", "beam_cache.cc", _make_beam_cache_op)


def beam_topk_op():
    """MindSpore custom op (log_probs, bias, live, width carrier) -> (scores, ids) of beam_topk.cc (inference only),
    or None."""
    return _cached("beam_topk", "beam_topk.cc", _make_beam_topk_op)


def bpe_library():
    """ctypes library of bpe.cc with its signatures, or None."""
    return _cached("bpe", "bpe.cc", _load_bpe_library)


def _aot_op(library, name, out_dtype, bprop):
    """ops.Custom of function `name` in `library`, with its output shapes from the library's `nameInferShape`.

    Under dynamic shapes the CPU kernel infers its output shapes again before every launch, in C++, where a Python
    `out_shape` function cannot be called ("The prim is not a PrimitivePy") and where a Custom op without reg_info
    lacks the `reg_op_name` attribute (a null-pointer GetValue error). The C++ shape function serves both static and
    dynamic graphs; it needs out_shape=None, `reg_op_name` and, for these ops' several outputs, `multi_output` (the
    C++ shape function returns one shape per output).
    """
    from mindspore import ops
    op = ops.Custom(f"{library}:{name}", out_shape=None, out_dtype=out_dtype, func_type="aot", bprop=bprop)
    op.add_prim_attr("reg_op_name", name)
    op.add_prim_attr("multi_output", True)
    return op


def _make_layer_norm_ops(library):
    from mindspore import ops
    backward = _aot_op(library, "LayerNormBackward", lambda dy, x, mean, rstd, gamma: (dy, gamma, gamma), None)

    def bprop(x, gamma, beta, epsilon, out, dout):
        dx, dgamma, dbeta = backward(dout[0], x, out[1], out[2], gamma)
        return dx, dgamma, dbeta, ops.zeros_like(epsilon)

    forward = _aot_op(library, "LayerNormForward", lambda x, gamma, beta, epsilon: (x, x, x), bprop)
    return forward, backward


def _make_dropout_op(library):
    from mindspore import ops

    def bprop(x, stream, threshold, scale, out, dout):
        return dout[0] * out[1], ops.zeros_like(stream), ops.zeros_like(threshold), ops.zeros_like(scale)

    return _aot_op(library, "CounterDropout", lambda x, stream, threshold, scale: (x, x), bprop)


def _make_beam_cache_op(library):
    return _aot_op(library, "BeamCacheUpdate", lambda cache, fresh, rows, slot: (cache,), None)


def _make_beam_topk_op(library):
    # The output dtypes are the inputs': scores as log_probs (float32), ids as the int32 width carrier.
    return _aot_op(library, "BeamTopK", lambda log_probs, bias, live, width: (log_probs, width), None)


def _load_bpe_library(path):
    library = ctypes.CDLL(path)
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    library.bpe_create.restype = pointer
    library.bpe_create.argtypes = [pointer, pointer, pointer, size, pointer, pointer, size, pointer, pointer, size,
                                   ctypes.c_int32, ctypes.c_int32]
    library.bpe_free.argtypes = [pointer]
    library.bpe_free.restype = None
    library.bpe_apply_plain.restype = size
    library.bpe_apply_plain.argtypes = [pointer, ctypes.c_char_p, size, ctypes.c_char_p, size, pointer]
    return library
