#include "kernels/cuda/gemv.h"

#include <algorithm>

#include "kernels/cuda/common.cuh"

namespace resa::cuda {
namespace {

constexpr int kMaxSegments = 4;
constexpr int kWarps = 8;

struct GemvParams {
  GemvSegment seg[kMaxSegments];
  int count;
  int k;
  int items;  // rows over all segments; kSiluMul: rows of the gate
  int per_warp;
  const float* x;
};

// Dot products of R rows (R = 2: gate and up) with x, lane-partial. Each lane streams 16-byte
// chunks; the main loop has no predicates, so its U * R loads are all in flight before the first
// use, then a remainder loop and a scalar tail for k % 8.
template <int U, int R>
__device__ __forceinline__ void dot_rows(const uint16_t* const (&w)[R], const float* x, int k,
                                         int lane, float (&acc)[R]) {
  const float4* x4 = reinterpret_cast<const float4*>(x);
  const int nv = k / 8;
  int i = lane;
  for (; i + 32 * (U - 1) < nv; i += 32 * U) {
    uint4 c[R][U];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int u = 0; u < U; ++u) c[r][u] = ld_stream(w[r] + size_t(i + 32 * u) * 8);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const float4 a = __ldg(x4 + 2 * (i + 32 * u)), b = __ldg(x4 + 2 * (i + 32 * u) + 1);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float f[8];
        unpack8(c[r][u], f);
        acc[r] += f[0] * a.x + f[1] * a.y + f[2] * a.z + f[3] * a.w;
        acc[r] += f[4] * b.x + f[5] * b.y + f[6] * b.z + f[7] * b.w;
      }
    }
  }
  for (; i < nv; i += 32) {
    const float4 a = __ldg(x4 + 2 * i), b = __ldg(x4 + 2 * i + 1);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float f[8];
      unpack8(ld_stream(w[r] + size_t(i) * 8), f);
      acc[r] += f[0] * a.x + f[1] * a.y + f[2] * a.z + f[3] * a.w;
      acc[r] += f[4] * b.x + f[5] * b.y + f[6] * b.z + f[7] * b.w;
    }
  }
  for (int j = nv * 8 + lane; j < k; j += 32)
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] += __uint_as_float(uint32_t(w[r][j]) << 16) * x[j];
}

// A warp takes items gw, gw + W, ... (W warps in the grid, per_warp items each at most).
template <int U, GemvOut OUT>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const __grid_constant__ GemvParams p) {
  grid_dependency_wait();
  allow_next_launch();
  const int lane = threadIdx.x & 31;
  const int gw = blockIdx.x * kWarps + (threadIdx.x >> 5), W = gridDim.x * kWarps;
  for (int it = 0, item = gw; it < p.per_warp && item < p.items; ++it, item += W) {
    if constexpr (OUT == GemvOut::kSiluMul) {
      const GemvSegment &g = p.seg[0], &u = p.seg[1];
      const uint16_t* const rows[2] = {g.w + size_t(item) * p.k, u.w + size_t(item) * p.k};
      float acc[2] = {0.f, 0.f};
      dot_rows<U, 2>(rows, p.x, p.k, lane, acc);
      const float a = warp_sum(acc[0]) + (g.bias ? g.bias[item] : 0.f);
      const float b = warp_sum(acc[1]) + (u.bias ? u.bias[item] : 0.f);
      if (lane == 0) g.y[item] = a / (1.0f + expf(-a)) * b;
    } else {
      int r = item, s = 0;
      while (s < p.count - 1 && r >= p.seg[s].rows) r -= p.seg[s].rows, ++s;
      const GemvSegment& seg = p.seg[s];
      const uint16_t* const rows[1] = {seg.w + size_t(r) * p.k};
      float acc[1] = {0.f};
      dot_rows<U, 1>(rows, p.x, p.k, lane, acc);
      const float y = warp_sum(acc[0]) + (seg.bias ? seg.bias[r] : 0.f);
      if (lane == 0) {
        if constexpr (OUT == GemvOut::kAccumulate)
          seg.y[r] += y;
        else
          seg.y[r] = y;
      }
    }
  }
}

// Unaligned rows (k % 8 != 0 or unaligned pointers): scalar loads, one warp per item.
template <GemvOut OUT>
__global__ void gemv_scalar_kernel(const __grid_constant__ GemvParams p) {
  grid_dependency_wait();
  allow_next_launch();
  const int lane = threadIdx.x & 31;
  const int gw = blockIdx.x * kWarps + (threadIdx.x >> 5), W = gridDim.x * kWarps;
  for (int it = 0, item = gw; it < p.per_warp && item < p.items; ++it, item += W) {
    const int R = OUT == GemvOut::kSiluMul ? 2 : 1;
    int r = item, s = 0;
    if (OUT != GemvOut::kSiluMul)
      while (s < p.count - 1 && r >= p.seg[s].rows) r -= p.seg[s].rows, ++s;
    float v[2] = {0.f, 0.f};
    for (int m = 0; m < R; ++m) {
      const GemvSegment& seg = p.seg[s + m];
      const uint16_t* wrow = seg.w + size_t(r) * p.k;
      float acc = 0.f;
      for (int j = lane; j < p.k; j += 32) acc += __uint_as_float(uint32_t(wrow[j]) << 16) * p.x[j];
      v[m] = warp_sum(acc) + (seg.bias ? seg.bias[r] : 0.f);
    }
    if (lane == 0) {
      if constexpr (OUT == GemvOut::kSiluMul)
        p.seg[0].y[r] = v[0] / (1.0f + expf(-v[0])) * v[1];
      else if constexpr (OUT == GemvOut::kAccumulate)
        p.seg[s].y[r] += v[0];
      else
        p.seg[s].y[r] = v[0];
    }
  }
}

// Resident CTAs of this kernel per SM (occupancy API, once per instance).
template <typename K>
int ctas_per_sm(K kernel) {
  int n = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kWarps * 32, 0) != cudaSuccess ||
      n < 1) {
    (void)cudaGetLastError();
    n = 1;
  }
  return n;
}

// One wave of resident warps, each with the same number of items (the last ones may have one
// fewer): a matrix of 1.4 waves of one-row warps would leave most SMs idle in its second wave.
template <typename K>
cudaError_t run(K kernel, int per_sm, GemvParams& p, cudaStream_t s) {
  const int most = std::max(1, per_sm * device_sm_count() * kWarps);
  p.per_warp = (p.items + most - 1) / most;
  const int warps = (p.items + p.per_warp - 1) / p.per_warp;
  const int grid = (warps + kWarps - 1) / kWarps;
  return launch(kernel, dim3(grid), dim3(kWarps * 32), 0, s, p);
}

template <int U, GemvOut OUT>
cudaError_t run_vector(GemvParams& p, cudaStream_t s) {
  static const int per_sm = ctas_per_sm(gemv_kernel<U, OUT>);
  return run(gemv_kernel<U, OUT>, per_sm, p, s);
}

template <GemvOut OUT>
cudaError_t run_out(GemvParams& p, bool aligned, cudaStream_t s) {
  if (!aligned) {
    static const int per_sm = ctas_per_sm(gemv_scalar_kernel<OUT>);
    return run(gemv_scalar_kernel<OUT>, per_sm, p, s);
  }
  // Loads in flight per lane: 8 (one row) or 2 x 4 (gate and up).
  if constexpr (OUT == GemvOut::kSiluMul)
    return run_vector<4, OUT>(p, s);
  else
    return p.k >= 8 * 32 * 8 ? run_vector<8, OUT>(p, s) : run_vector<4, OUT>(p, s);
}

}  // namespace

cudaError_t gemv_bf16(const float* x, int k, const GemvSegment* segments, int count, cudaStream_t s,
                      GemvOut out) {
  if (count < 1 || count > kMaxSegments || k < 1) return cudaErrorInvalidValue;
  if (out == GemvOut::kSiluMul && (count != 2 || segments[0].rows != segments[1].rows))
    return cudaErrorInvalidValue;
  GemvParams p{};
  p.count = count;
  p.k = k;
  p.x = x;
  for (int i = 0; i < count; ++i) p.seg[i] = segments[i], p.items += segments[i].rows;
  if (out == GemvOut::kSiluMul) p.items = segments[0].rows;
  if (p.items < 1) return cudaSuccess;
  bool aligned = k % 8 == 0 && (reinterpret_cast<uintptr_t>(x) % 16) == 0;
  for (int i = 0; i < count; ++i)
    aligned = aligned && reinterpret_cast<uintptr_t>(segments[i].w) % 16 == 0;
  switch (out) {
    case GemvOut::kStore:
      return run_out<GemvOut::kStore>(p, aligned, s);
    case GemvOut::kAccumulate:
      return run_out<GemvOut::kAccumulate>(p, aligned, s);
    case GemvOut::kSiluMul:
      return run_out<GemvOut::kSiluMul>(p, aligned, s);
  }
  return cudaErrorInvalidValue;
}

}  // namespace resa::cuda
