// Block scores (RESA.md steps 3-4) as device code, shared by the scores kernel (attention.cu) and
// the fused selection (topk.cu). Device code: include from .cu files only.
#pragma once

#include "kernels/cuda/attention.h"
#include "kernels/cuda/common.cuh"

namespace resa::cuda::scores {

// qs[x] = the group's mean query, scaled (same order as the CPU twin), for x < D; called by every
// thread of the CTA, ends with a barrier.
template <int D>
__device__ __forceinline__ void group_query(const float* __restrict__ q, int h, int group,
                                            float scale, float* qs) {
  for (int x = threadIdx.x; x < D; x += blockDim.x) {
    float s = 0.f;
    for (int g = 0; g < group; ++g) s += q[size_t(h * group + g) * D + x];
    qs[x] = s * (scale / float(group));
  }
  __syncthreads();
}

// Scores of the blocks b in [begin, end) of KV head h that fall to warp gw of warps_total (U blocks
// per warp and BPW = 32 / (D / 4) lanes groups per warp at a time, strided over the warps): emit(b,
// score) runs on one lane per block. A block's summary (2 * D bf16: min, then max of the same
// dimensions) is read by D / 4 lanes, 16 bytes each. Every lane of the warp must call it.
template <int D, int U, typename Emit>
__device__ __forceinline__ void for_each_score(const KvLayerDev& kv, const float* qs, int h,
                                               int begin, int end, int gw, int warps_total,
                                               Emit&& emit) {
  constexpr int LPB = D / 4, HALF = LPB / 2, BPW = 32 / LPB;
  const int lane = threadIdx.x & 31;
  const int sub = lane / LPB, li = lane % LPB, dim0 = (li % HALF) * 8;
  float qf[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) qf[j] = qs[dim0 + j];
  const uint16_t* base = kv.summ + size_t(h) * kv.cap_blocks * 2 * D;
  for (int b0 = begin + gw * BPW * U; b0 < end; b0 += warps_total * BPW * U) {
    uint4 r[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int b = b0 + u * BPW + sub;
      r[u] = b < end ? ld_stream(base + size_t(b) * 2 * D + li * 8) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      uint4 o;
      o.x = __shfl_xor_sync(0xffffffffu, r[u].x, HALF);
      o.y = __shfl_xor_sync(0xffffffffu, r[u].y, HALF);
      o.z = __shfl_xor_sync(0xffffffffu, r[u].z, HALF);
      o.w = __shfl_xor_sync(0xffffffffu, r[u].w, HALF);
      float lo[8], hi[8];
      if (li < HALF)
        unpack8(r[u], lo), unpack8(o, hi);
      else
        unpack8(o, lo), unpack8(r[u], hi);
      float s = 0.f;
#pragma unroll
      for (int j = 0; j < 8; ++j) s += fmaxf(qf[j] * hi[j], qf[j] * lo[j]);
#pragma unroll
      for (int o2 = HALF / 2; o2 > 0; o2 >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o2);
      const int b = b0 + u * BPW + sub;
      if (li == 0 && b < end) emit(b, s);
    }
  }
}

}  // namespace resa::cuda::scores
