#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemv.h"

namespace resa::cuda {
namespace {

constexpr int kMaxSegments = 4;
constexpr int kWarps = 8;

struct GemvParams {
  GemvSegment seg[kMaxSegments];
  int count;
  int k;
  int total_rows;
  const float* x;
};

// One warp per output row; each lane streams 16-byte chunks of the row, U of them in flight.
template <int U>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const __grid_constant__ GemvParams p) {
  const int lane = threadIdx.x & 31;
  int r = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (r >= p.total_rows) return;
  int s = 0;
  while (s < p.count - 1 && r >= p.seg[s].rows) r -= p.seg[s].rows, ++s;
  const GemvSegment& seg = p.seg[s];
  const uint16_t* wrow = seg.w + size_t(r) * p.k;
  const float4* x4 = reinterpret_cast<const float4*>(p.x);
  const int nv = p.k / 8;
  float acc = 0.f;
  for (int base = lane; base < nv; base += 32 * U) {
    uint4 w[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int i = base + u * 32;
      w[u] = i < nv ? ld_stream(wrow + size_t(i) * 8) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int i = base + u * 32;
      if (i < nv) {
        const float4 a = __ldg(x4 + 2 * i), b = __ldg(x4 + 2 * i + 1);
        float f[8];
        unpack8(w[u], f);
        acc += f[0] * a.x + f[1] * a.y + f[2] * a.z + f[3] * a.w;
        acc += f[4] * b.x + f[5] * b.y + f[6] * b.z + f[7] * b.w;
      }
    }
  }
  // A tail shorter than 8 elements (k % 8 != 0) in plain loads.
  for (int j = nv * 8 + lane; j < p.k; j += 32)
    acc += __uint_as_float(uint32_t(wrow[j]) << 16) * p.x[j];
  acc = warp_sum(acc);
  if (lane == 0) seg.y[r] = acc + (seg.bias ? seg.bias[r] : 0.f);
}

// Unaligned rows (k % 8 != 0): scalar loads.
__global__ void gemv_scalar_kernel(const __grid_constant__ GemvParams p) {
  const int lane = threadIdx.x & 31;
  int r = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (r >= p.total_rows) return;
  int s = 0;
  while (s < p.count - 1 && r >= p.seg[s].rows) r -= p.seg[s].rows, ++s;
  const GemvSegment& seg = p.seg[s];
  const uint16_t* wrow = seg.w + size_t(r) * p.k;
  float acc = 0.f;
  for (int j = lane; j < p.k; j += 32) acc += __uint_as_float(uint32_t(wrow[j]) << 16) * p.x[j];
  acc = warp_sum(acc);
  if (lane == 0) seg.y[r] = acc + (seg.bias ? seg.bias[r] : 0.f);
}

}  // namespace

cudaError_t gemv_bf16(const float* x, int k, const GemvSegment* segments, int count,
                      cudaStream_t s) {
  if (count < 1 || count > kMaxSegments) return cudaErrorInvalidValue;
  GemvParams p{};
  p.count = count;
  p.k = k;
  p.x = x;
  for (int i = 0; i < count; ++i) p.seg[i] = segments[i], p.total_rows += segments[i].rows;
  const int grid = (p.total_rows + kWarps - 1) / kWarps;
  bool aligned = k % 8 == 0 && (reinterpret_cast<uintptr_t>(x) % 16) == 0;
  for (int i = 0; i < count; ++i)
    aligned = aligned && reinterpret_cast<uintptr_t>(segments[i].w) % 16 == 0;
  if (!aligned)
    gemv_scalar_kernel<<<grid, kWarps * 32, 0, s>>>(p);
  else if (k >= 8 * 32 * 8)
    gemv_kernel<8><<<grid, kWarps * 32, 0, s>>>(p);
  else
    gemv_kernel<4><<<grid, kWarps * 32, 0, s>>>(p);
  return cudaGetLastError();
}

}  // namespace resa::cuda
