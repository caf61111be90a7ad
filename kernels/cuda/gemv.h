// Batch-1 products with bf16 weight matrices, for decode steps: the whole step streams the
// weights once, so this is a memory-bound kernel (16-byte loads, several in flight per lane).
// Up to four matrices that share the input run as one launch (q/k/v, gate/up).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace resa::cuda {

struct GemvSegment {
  const uint16_t* w = nullptr;  // [rows][k] bf16, row-major
  const float* bias = nullptr;  // [rows] f32 or null
  float* y = nullptr;           // [rows] f32
  int rows = 0;
};

// y_s[r] = sum_j w_s[r][j] * x[j] (+ bias_s[r]) for each segment s. x: [k] f32.
cudaError_t gemv_bf16(const float* x, int k, const GemvSegment* segments, int count,
                      cudaStream_t s);

}  // namespace resa::cuda
