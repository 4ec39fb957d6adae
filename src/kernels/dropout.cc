// Counter-based dropout, as a MindSpore AOT custom CPU kernel: element i of a tensor is kept when
// fmix32((0x9E3779B9 * i) ^ stream) < threshold (uint32 arithmetic; MurmurHash3's finaliser), and the output is
// x * mask with mask = 0 or 1 / keep_prob. The same formula as src/trainer.py's CounterDropout in graph ops, which
// makes the masks a function of (stream, i) only: a resumed run draws the masks the uninterrupted run drew.
// Why hand-written: in graph ops the hash takes a dozen passes over the tensor (+25% step time), and MindSpore 2.10's
// own CPU Dropout draws its mask at ~8 ms per million elements; this kernel makes one pass, split across threads.
#include <cstdint>
#include <vector>

static inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  return h ^ (h >> 16);
}

class AotExtra;  // MindSpore's attribute accessor (custom_aot_extra.h); unused here

// Output shapes (y and mask take x's shape), for compiling and, under dynamic shapes, before every launch.
extern "C" std::vector<std::vector<int64_t>> CounterDropoutInferShape(int *ndims, int64_t **shapes, AotExtra *) {
  const std::vector<int64_t> shape(shapes[0], shapes[0] + ndims[0]);
  return {shape, shape};
}

// inputs x [...] float32, stream [1] uint32, threshold [1] uint32, scale [1] float32; outputs y [...], mask [...]
extern "C" int CounterDropout(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                              void *stream, void *extra) {
  if (nparam != 6) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const uint32_t key = *static_cast<const uint32_t *>(params[1]);
  const uint32_t threshold = *static_cast<const uint32_t *>(params[2]);
  const float scale = *static_cast<const float *>(params[3]);
  float *y = static_cast<float *>(params[4]);
  float *mask = static_cast<float *>(params[5]);
  int64_t size = 1;
  for (int i = 0; i < ndims[0]; ++i) size *= shapes[0][i];
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < size; ++i) {
    const float keep = fmix32((0x9E3779B9u * static_cast<uint32_t>(i)) ^ key) < threshold ? scale : 0.f;
    mask[i] = keep;
    y[i] = x[i] * keep;
  }
  return 0;
}
