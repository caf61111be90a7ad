#include "kernels/cuda/gemv.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

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
  GemvNorm norm;
};

// U 16-byte chunks of each of R rows (R = 2: gate and up) at chunk index i + 32 u.
template <int U, int R>
struct Chunks {
  uint4 c[R][U];
  __device__ __forceinline__ void load(const uint16_t* const (&w)[R], int i) {
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int u = 0; u < U; ++u) c[r][u] = ld_stream(w[r] + size_t(i + 32 * u) * 8);
  }
};

// x's 8 floats of chunk i: from shared memory (the normalized x) or through the read-only path.
template <bool XS>
__device__ __forceinline__ void x_chunk(const float* x, int i, float4& a, float4& b) {
  const float4* x4 = reinterpret_cast<const float4*>(x) + 2 * i;
  if constexpr (XS) {
    a = x4[0], b = x4[1];
  } else {
    a = __ldg(x4), b = __ldg(x4 + 1);
  }
}

template <int R, bool XS>
__device__ __forceinline__ void dot_chunk(const uint4 (&c)[R], const float* x, int i,
                                          float (&acc)[R]) {
  float4 a, b;
  x_chunk<XS>(x, i, a, b);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float f[8];
    unpack8(c[r], f);
    acc[r] += f[0] * a.x + f[1] * a.y + f[2] * a.z + f[3] * a.w;
    acc[r] += f[4] * b.x + f[5] * b.y + f[6] * b.z + f[7] * b.w;
  }
}

template <int U, int R, bool XS>
__device__ __forceinline__ void dot_chunks(const Chunks<U, R>& ch, const float* x, int i,
                                           float (&acc)[R]) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    uint4 c[R];
#pragma unroll
    for (int r = 0; r < R; ++r) c[r] = ch.c[r][u];
    dot_chunk<R, XS>(c, x, i + 32 * u, acc);
  }
}

// The lane's first full batch of U chunks exists when lane + 32 (U - 1) < k / 8.
template <int U>
__device__ __forceinline__ bool has_first_batch(int lane, int k) {
  return lane + 32 * (U - 1) < k / 8;
}

// Dot products of R rows with x, lane-partial. Each lane streams 16-byte chunks; the main loop
// has no predicates, so its U * R loads are all in flight before the first use, then a remainder
// loop and a scalar tail for k % 8. With use_first, `first` is the first batch, already loaded.
template <int U, int R, bool XS>
__device__ __forceinline__ void dot_rows(const uint16_t* const (&w)[R], const float* x, int k,
                                         int lane, float (&acc)[R], bool use_first,
                                         const Chunks<U, R>& first) {
  const int nv = k / 8;
  int i = lane;
  if (use_first) {
    dot_chunks<U, R, XS>(first, x, i, acc);
    i += 32 * U;
  }
  for (; i + 32 * (U - 1) < nv; i += 32 * U) {
    Chunks<U, R> ch;
    ch.load(w, i);
    dot_chunks<U, R, XS>(ch, x, i, acc);
  }
  for (; i < nv; i += 32) {
    uint4 c[R];
#pragma unroll
    for (int r = 0; r < R; ++r) c[r] = ld_stream(w[r] + size_t(i) * 8);
    dot_chunk<R, XS>(c, x, i, acc);
  }
  for (int j = nv * 8 + lane; j < k; j += 32)
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] += __uint_as_float(uint32_t(w[r][j]) << 16) * x[j];
}

// The norm's prologue, by the whole CTA (every thread must call it): xs[j] = w[j] * x[j], and the
// returned factor inv = 1 / sqrt(mean(x^2) + eps). rmsnorm(x) = w * x * inv, so a row's product
// with it is inv * (row . xs): the products scale by inv at the end, and x and w are read once,
// with VEC in 16-byte loads, kNormBatch of each in flight per thread (a batch of 2 and not 4 keeps
// the kernel at 64 registers, 4 CTAs per SM, beside the weights loaded before the wait).
constexpr int kNormBatch = 2;  // 16-byte loads of x and of w in flight per thread
template <bool VEC>
__device__ __forceinline__ float norm_prologue(const GemvParams& p, float* xs) {
  __shared__ float part[kWarps];
  float ss = 0.f;
  if constexpr (VEC) {
    const float4* x4 = reinterpret_cast<const float4*>(p.x);
    const float4* w4 = reinterpret_cast<const float4*>(p.norm.w);
    float4* xs4 = reinterpret_cast<float4*>(xs);
    const int n4 = p.k / 4;
    for (int j0 = threadIdx.x; j0 < n4; j0 += kNormBatch * blockDim.x) {
      float4 a[kNormBatch], w[kNormBatch];
#pragma unroll
      for (int u = 0; u < kNormBatch; ++u) {
        const int j = j0 + u * blockDim.x;
        a[u] = j < n4 ? x4[j] : make_float4(0.f, 0.f, 0.f, 0.f);
        w[u] = j < n4 ? __ldg(w4 + j) : make_float4(0.f, 0.f, 0.f, 0.f);
      }
#pragma unroll
      for (int u = 0; u < kNormBatch; ++u) {
        const int j = j0 + u * blockDim.x;
        ss += a[u].x * a[u].x + a[u].y * a[u].y + a[u].z * a[u].z + a[u].w * a[u].w;
        if (j < n4)
          xs4[j] = make_float4(w[u].x * a[u].x, w[u].y * a[u].y, w[u].z * a[u].z, w[u].w * a[u].w);
      }
    }
  } else {
    for (int j = threadIdx.x; j < p.k; j += blockDim.x) {
      const float v = p.x[j];
      ss += v * v;
      xs[j] = p.norm.w[j] * v;
    }
  }
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) total += part[w];
  return 1.0f / sqrtf(total / float(p.k) + p.norm.eps);
}

// Row r of segment s for item `item` (rows counted over the segments in order).
__device__ __forceinline__ int segment_of(const GemvParams& p, int& r) {
  int s = 0;
  while (s < p.count - 1 && r >= p.seg[s].rows) r -= p.seg[s].rows, ++s;
  return s;
}

// A warp takes items gw, gw + W, ... (W warps in the grid, per_warp items each at most). The
// first item's first batch of weights is loaded before the wait for the previous kernel (with
// programmatic dependent launch, while it drains); x is read only after it.
template <int U, GemvOut OUT, bool NORM>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const __grid_constant__ GemvParams p) {
  constexpr int R = OUT == GemvOut::kSiluMul ? 2 : 1;
  extern __shared__ float4 xs4[];
  const int lane = threadIdx.x & 31;
  const int gw = blockIdx.x * kWarps + (threadIdx.x >> 5), W = gridDim.x * kWarps;
  auto rows_of = [&](int item, const uint16_t*(&rows)[R], int& s, int& r) {
    r = item;
    if constexpr (OUT == GemvOut::kSiluMul) {
      s = 0;
      rows[0] = p.seg[0].w + size_t(item) * p.k;
      rows[1] = p.seg[1].w + size_t(item) * p.k;
    } else {
      s = segment_of(p, r);
      rows[0] = p.seg[s].w + size_t(r) * p.k;
    }
  };
  Chunks<U, R> first;
  const bool prefetched = gw < p.items && has_first_batch<U>(lane, p.k);
  if (prefetched) {
    const uint16_t* rows[R];
    int s, r;
    rows_of(gw, rows, s, r);
    first.load(rows, lane);
  }
  grid_dependency_wait();
  allow_next_launch();
  float inv = 1.f;  // the norm's factor (see norm_prologue)
  const float* x = p.x;
  if constexpr (NORM) {
    x = reinterpret_cast<const float*>(xs4);
    inv = norm_prologue<true>(p, reinterpret_cast<float*>(xs4));
  }
  auto item_of = [&](int item, bool use_first) {
    const uint16_t* rows[R];
    int s, r;
    rows_of(item, rows, s, r);
    float acc[R];
#pragma unroll
    for (int j = 0; j < R; ++j) acc[j] = 0.f;
    dot_rows<U, R, NORM>(rows, x, p.k, lane, acc, use_first, first);
    if constexpr (OUT == GemvOut::kSiluMul) {
      const GemvSegment &g = p.seg[0], &u = p.seg[1];
      const float a = warp_sum(acc[0]) * inv + (g.bias ? g.bias[item] : 0.f);
      const float b = warp_sum(acc[1]) * inv + (u.bias ? u.bias[item] : 0.f);
      if (lane == 0) g.y[item] = a / (1.0f + expf(-a)) * b;
    } else {
      const GemvSegment& seg = p.seg[s];
      const float y = warp_sum(acc[0]) * inv + (seg.bias ? seg.bias[r] : 0.f);
      if (lane == 0) {
        if constexpr (OUT == GemvOut::kAccumulate)
          seg.y[r] += y;
        else
          seg.y[r] = y;
      }
    }
  };
  // The first item apart, so that `first` is dead in the loop (its registers free).
  if (gw < p.items) item_of(gw, prefetched);
  for (int it = 1, item = gw + W; it < p.per_warp && item < p.items; ++it, item += W)
    item_of(item, false);
}

// Unaligned rows (k % 8 != 0 or unaligned pointers): scalar loads, one warp per item.
template <GemvOut OUT, bool NORM>
__global__ void gemv_scalar_kernel(const __grid_constant__ GemvParams p) {
  extern __shared__ float4 xs4[];
  grid_dependency_wait();
  allow_next_launch();
  float inv = 1.f;
  const float* x = p.x;
  if constexpr (NORM) {
    x = reinterpret_cast<const float*>(xs4);
    inv = norm_prologue<false>(p, reinterpret_cast<float*>(xs4));
  }
  const int lane = threadIdx.x & 31;
  const int gw = blockIdx.x * kWarps + (threadIdx.x >> 5), W = gridDim.x * kWarps;
  for (int it = 0, item = gw; it < p.per_warp && item < p.items; ++it, item += W) {
    const int R = OUT == GemvOut::kSiluMul ? 2 : 1;
    int r = item;
    const int s = OUT == GemvOut::kSiluMul ? 0 : segment_of(p, r);
    float v[2] = {0.f, 0.f};
    for (int m = 0; m < R; ++m) {
      const GemvSegment& seg = p.seg[s + m];
      const uint16_t* wrow = seg.w + size_t(r) * p.k;
      float acc = 0.f;
      for (int j = lane; j < p.k; j += 32) acc += __uint_as_float(uint32_t(wrow[j]) << 16) * x[j];
      v[m] = warp_sum(acc) * inv + (seg.bias ? seg.bias[r] : 0.f);
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

// Whether every GEMV kernel asks for the same shared-memory carveout, kCarveoutPercent (on unless
// RESA_GEMV_CARVEOUT=0, read once per process). An SM runs CTAs of one carveout at a time, so
// with programmatic dependent launch a GEMV with the norm (shared memory) could not start on an
// SM still running one without (none: the driver's choice is all L1), and back. On an H200 a
// llama-3.1-8b step at 4K took 4.59 ms with it and 4.90 without (docs/benchmarks/h200-s13.json).
bool same_carveout() {
  static const bool on = [] {
    const char* e = std::getenv("RESA_GEMV_CARVEOUT");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}
// 43% of 228 KB: the 100 KB configuration, room for 4 CTAs of the norm's x up to k = 5,600 (the
// 8B's 4,096 takes 68 KB), and 150 KB of L1 for x of the down projection (k = 14,336: 56 KB).
constexpr int kCarveoutPercent = 43;

// Resident CTAs of this kernel per SM with `smem` bytes of dynamic shared memory (occupancy API,
// once per instance), then the common carveout. The kernel is first allowed that much: 48 KB
// and the static 32 bytes are more than the default limit, and the occupancy of a launch that
// cannot run is 0.
template <typename K>
int ctas_per_sm(K kernel, size_t smem) {
  int n = 0;
  if (smem > 0 && cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(smem)) != cudaSuccess)
    (void)cudaGetLastError();
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kWarps * 32, smem) != cudaSuccess ||
      n < 1) {
    (void)cudaGetLastError();
    n = 1;
  }
  if (same_carveout() &&
      cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                           kCarveoutPercent) != cudaSuccess)
    (void)cudaGetLastError();
  return n;
}

// Dynamic shared memory of a launch: the normalized x (k floats), or none.
template <bool NORM>
constexpr size_t smem_for(int k) {
  return NORM ? size_t(k) * sizeof(float) : 0;
}

// The kernel for U loads per row in flight (U = 0: the scalar kernel).
template <int U, GemvOut OUT, bool NORM>
constexpr auto kernel_for() {
  if constexpr (U == 0)
    return gemv_scalar_kernel<OUT, NORM>;
  else
    return gemv_kernel<U, OUT, NORM>;
}

// One wave of resident warps, each with the same number of items (the last ones may have one
// fewer): a matrix of 1.4 waves of one-row warps would leave most SMs idle in its second wave.
// Kernels with the norm are sized for kGemvNormMaxK (their occupancy can only be higher).
template <int U, GemvOut OUT, bool NORM>
cudaError_t run(GemvParams& p, cudaStream_t s) {
  static const int per_sm = ctas_per_sm(kernel_for<U, OUT, NORM>(), smem_for<NORM>(kGemvNormMaxK));
  const int most = std::max(1, per_sm * device_sm_count() * kWarps);
  p.per_warp = (p.items + most - 1) / most;
  const int warps = (p.items + p.per_warp - 1) / p.per_warp;
  const int grid = (warps + kWarps - 1) / kWarps;
  return launch(kernel_for<U, OUT, NORM>(), dim3(grid), dim3(kWarps * 32), smem_for<NORM>(p.k), s,
                p);
}

template <GemvOut OUT, bool NORM>
cudaError_t run_out(GemvParams& p, bool aligned, cudaStream_t s) {
  if (!aligned) return run<0, OUT, NORM>(p, s);
  // Loads in flight per lane: 8 (one row) or 2 x 4 (gate and up).
  if constexpr (OUT == GemvOut::kSiluMul)
    return run<4, OUT, NORM>(p, s);
  else
    return p.k >= 8 * 32 * 8 ? run<8, OUT, NORM>(p, s) : run<4, OUT, NORM>(p, s);
}

template <GemvOut OUT>
cudaError_t run_out(GemvParams& p, bool aligned, cudaStream_t s) {
  return p.norm.w ? run_out<OUT, true>(p, aligned, s) : run_out<OUT, false>(p, aligned, s);
}

}  // namespace

cudaError_t gemv_bf16(const float* x, int k, const GemvSegment* segments, int count, cudaStream_t s,
                      GemvOut out, GemvNorm norm) {
  if (count < 1 || count > kMaxSegments || k < 1) return cudaErrorInvalidValue;
  if (out == GemvOut::kSiluMul && (count != 2 || segments[0].rows != segments[1].rows))
    return cudaErrorInvalidValue;
  if (norm.w && k > kGemvNormMaxK) return cudaErrorInvalidValue;
  GemvParams p{};
  p.count = count;
  p.k = k;
  p.x = x;
  p.norm = norm;
  for (int i = 0; i < count; ++i) p.seg[i] = segments[i], p.items += segments[i].rows;
  if (out == GemvOut::kSiluMul) p.items = segments[0].rows;
  if (p.items < 1) return cudaSuccess;
  bool aligned = k % 8 == 0 && (reinterpret_cast<uintptr_t>(x) % 16) == 0;
  for (int i = 0; i < count; ++i)
    aligned = aligned && reinterpret_cast<uintptr_t>(segments[i].w) % 16 == 0;
  aligned = aligned && reinterpret_cast<uintptr_t>(norm.w) % 16 == 0;
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
