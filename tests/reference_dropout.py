"""NumPy reference of the counter-based dropout of src/dropout.py: the masks CounterDropout must produce."""
import numpy as np


def fmix32_numpy(values):
    """MurmurHash3's 32-bit finaliser in NumPy uint32 arithmetic (src/dropout.py's `_fmix32`)."""
    h = np.asarray(values).astype(np.uint32)
    with np.errstate(over="ignore"):  # uint32 products wrap modulo 2^32 on purpose
        h ^= h >> np.uint32(16)
        h = h * np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h = h * np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    return h


def reference_mask(key, site, shape, keep_prob):
    """The 0/1 float32 mask CounterDropout(keep_prob, site) draws for a tensor of `shape` under `key`."""
    size = int(np.prod(shape))
    salt = (site * 0x9E3779B9 + size * 0x27D4EB2F + shape[-1] * 0x165667B1) % 2 ** 32
    stream = fmix32_numpy((key + salt) % 2 ** 32)
    weyl = (np.arange(size, dtype=np.uint64) * np.uint64(0x9E3779B9)) % np.uint64(2 ** 32)
    bits = fmix32_numpy(weyl.astype(np.uint32) ^ stream)
    return (bits < int(round(keep_prob * 2 ** 32))).reshape(shape).astype(np.float32)
