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

// What a row's result does to y (the next element-wise op of the block, fused):
//   kStore:      y_s[r] = w_s[r] . x (+ bias_s[r]);
//   kAccumulate: y_s[r] += w_s[r] . x (+ bias_s[r])   (the residual add after o / down);
//   kSiluMul:    two segments of equal rows, gate then up: seg[0].y[r] = silu(g) * u with
//                g = gate[r] . x (+ bias), u = up[r] . x (+ bias); seg[1].y is not written.
//                silu(g) = g / (1 + exp(-g)), as the CPU twin's silu_mul.
enum class GemvOut { kStore, kAccumulate, kSiluMul };

// The RMSNorm that precedes q/k/v, gate/up and lm_head, fused: with w set, the products take
// rmsnorm(x) = w * (x / sqrt(mean(x^2) + eps)) instead of x. Each CTA normalizes x into its
// shared memory (k floats), so k is at most kGemvNormMaxK.
struct GemvNorm {
  const float* w = nullptr;  // [k] f32, or null: no norm
  float eps = 0.f;
};
constexpr int kGemvNormMaxK = 12288;  // 48 KB of shared memory

// x: [k] f32. Rows are spread over one wave of resident warps, the same number of rows each.
// Programmatic dependent launch: a CTA loads its first weights before it waits for the previous
// kernel of the stream, so the weights must not be written by the kernel launched just before.
cudaError_t gemv_bf16(const float* x, int k, const GemvSegment* segments, int count, cudaStream_t s,
                      GemvOut out = GemvOut::kStore, GemvNorm norm = {});

}  // namespace resa::cuda
