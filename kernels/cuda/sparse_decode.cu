// Split-KV decode with K/V tiles staged through shared memory by cp.async (contract:
// sparse_decode.h).
//
// The reference decode_kernel issues its K/V loads (4 keys per key group) and then waits for
// them before the math, so each warp alternates between loading and computing, and in sparse
// mode every load first waits for its block id. Here a CTA streams its range of keys in tiles of
// 4 KiB of K plus 4 KiB of V (16 keys at head_dim 128) through a 4-stage cp.async ring: while a
// tile is scored, the next three are in flight (24 KiB per CTA), and the block ids of a tile are
// loaded one iteration before its copies are issued. Keys outside the range or past the context
// are zero-filled (no global read) and masked by a position table in shared memory. The math
// per key (16-byte rows per lane, f32 online softmax in log2 units) and the final merge of the
// key groups are decode_kernel's.
#include "kernels/cuda/sparse_decode.h"

#include <type_traits>

#include "kernels/cuda/common.cuh"

namespace resa::cuda::pipe {
namespace {

constexpr int kThreads = 128;
constexpr int kStages = 4;
constexpr int kTileBytes = 4096;  // of K, and again of V

__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  const int bytes = valid ? 16 : 0;  // 0: no read, the 16 bytes are zero-filled
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

template <int D, int G>
__global__ void __launch_bounds__(kThreads)
    decode_pipe_kernel(KvLayerDev kv, const float* __restrict__ q, float scale_log2,
                       const PassState* st, const int* sel_blocks, const int* sel_count,
                       int n_heads, float* part_o, float* part_lse) {
  constexpr int T = kTileBytes / (2 * D);  // keys per tile
  constexpr int CPK = D / 8;               // 16-byte chunks per key row (= lanes per key)
  constexpr int NG = kThreads / CPK;       // key groups
  constexpr int UT = T / NG;               // keys per group per tile
  constexpr int LR = T * CPK / kThreads;   // K chunks (and V chunks) each thread copies per tile
  static_assert(UT == 2 && LR == 2, "tile shape");
  constexpr int kPipeBytes = kStages * 2 * kTileBytes;
  constexpr int kMergeBytes = NG * G * D * 4;
  constexpr int kSmemBytes = kPipeBytes > kMergeBytes ? kPipeBytes : kMergeBytes;
  __shared__ __align__(16) unsigned char smem[kSmemBytes];
  __shared__ int spos[kStages][T];  // position of each key of a staged tile, -1: none
  __shared__ float sm_m[NG][G], sm_l[NG][G];
  uint16_t* tiles = reinterpret_cast<uint16_t*>(smem);  // [stage][K, V][T][D]

  const int h = blockIdx.y, split = blockIdx.x, splits = gridDim.x, tid = threadIdx.x;
  const int gi = tid / CPK, li = tid % CPK;
  const int ctx = st->pos0 + 1, bs = kv.block_size;
  const bool sparse = sel_blocks != nullptr;
  const int* blocks = sparse ? sel_blocks + size_t(h) * kv.cap_blocks : nullptr;
  const int total = sparse ? sel_count[h] * bs : ctx;
  int per = (total + splits - 1) / splits;
  per = (per + T - 1) / T * T;  // whole tiles
  const int begin = min(total, split * per), end = min(total, begin + per);
  const int ntiles = (end - begin + T - 1) / T;

  const uint16_t* kg = kv.k + size_t(h) * kv.capacity * D;
  const uint16_t* vg = kv.v + size_t(h) * kv.capacity * D;
  // Copy role: chunks tid and tid + kThreads of a tile's K (and V) rows.
  const int lk0 = tid / CPK, col = (tid % CPK) * 8;
  auto fetch_ids = [&](int t, int(&ids)[LR]) {
#pragma unroll
    for (int r = 0; r < LR; ++r) {
      const int i = begin + t * T + lk0 + r * NG;
      ids[r] = sparse && t < ntiles && i < end ? blocks[i / bs] : 0;
    }
  };
  auto issue = [&](int t, const int(&ids)[LR]) {
    if (t < ntiles) {
      const int slot = t % kStages;
      uint16_t* ks = tiles + size_t(slot) * 2 * T * D;
      uint16_t* vs = ks + T * D;
#pragma unroll
      for (int r = 0; r < LR; ++r) {
        const int lk = lk0 + r * NG, i = begin + t * T + lk;
        int pos = -1;
        if (i < end) {
          pos = sparse ? ids[r] * bs + i % bs : i;
          if (pos >= ctx) pos = -1;
        }
        const size_t src = size_t(pos < 0 ? 0 : pos) * D + col;
        cp_async16(ks + lk * D + col, kg + src, pos >= 0);
        cp_async16(vs + lk * D + col, vg + src, pos >= 0);
        if (col == 0) spos[slot][lk] = pos;
      }
    }
    cp_async_commit();  // every thread commits one group per call, possibly empty
  };

  float qf[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g)
#pragma unroll
    for (int j = 0; j < 8; ++j) qf[g][j] = q[size_t(h * G + g) * D + li * 8 + j] * scale_log2;
  float m[G], l[G], acc[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY, l[g] = 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[g][j] = 0.f;
  }

  int ids[LR];
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    fetch_ids(t, ids);
    issue(t, ids);
  }
  fetch_ids(kStages - 1, ids);
  for (int t = 0; t < ntiles; ++t) {  // ntiles is uniform over the CTA
    cp_async_wait<kStages - 2>();     // this thread's copies of tile t have landed
    __syncthreads();                  // everyone's have; everyone is done with tile t - 1
    issue(t + kStages - 1, ids);      // into tile t - 1's slot
    fetch_ids(t + kStages, ids);      // used by the next iteration's issue
    const int slot = t % kStages;
    const uint16_t* ks = tiles + size_t(slot) * 2 * T * D;
    const uint16_t* vs = ks + T * D;
    float s[UT][G], vf[UT][8];
#pragma unroll
    for (int u = 0; u < UT; ++u) {
      const int key = gi + u * NG;
      const bool ok = spos[slot][key] >= 0;
      float kf[8];
      unpack8(*reinterpret_cast<const uint4*>(ks + key * D + li * 8), kf);
      unpack8(*reinterpret_cast<const uint4*>(vs + key * D + li * 8), vf[u]);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float d = 0.f;
#pragma unroll
        for (int j = 0; j < 8; ++j) d += qf[g][j] * kf[j];
#pragma unroll
        for (int o = CPK / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        s[u][g] = ok ? d : -INFINITY;
      }
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float mx = m[g];
#pragma unroll
      for (int u = 0; u < UT; ++u) mx = fmaxf(mx, s[u][g]);
      if (mx == -INFINITY) continue;
      const float corr = exp2f(m[g] - mx);
      l[g] *= corr;
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[g][j] *= corr;
#pragma unroll
      for (int u = 0; u < UT; ++u) {
        const float p = exp2f(s[u][g] - mx);
        l[g] += p;
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[g][j] += p * vf[u][j];
      }
      m[g] = mx;
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the tile ring is reused for the merge below

  // Merge the key groups of this CTA (decode_kernel's merge).
  float* sm_acc = reinterpret_cast<float*>(smem);  // [NG][G][D]
#pragma unroll
  for (int g = 0; g < G; ++g) {
#pragma unroll
    for (int j = 0; j < 8; ++j) sm_acc[(gi * G + g) * D + li * 8 + j] = acc[g][j];
    if (li == 0) sm_m[gi][g] = m[g], sm_l[gi][g] = l[g];
  }
  __syncthreads();
  for (int e = tid; e < G * D; e += kThreads) {
    const int g = e / D, x = e % D;
    float M = -INFINITY;
    for (int i = 0; i < NG; ++i) M = fmaxf(M, sm_m[i][g]);
    float L = 0.f, o = 0.f;
    if (M != -INFINITY) {
      for (int i = 0; i < NG; ++i) {
        const float w = exp2f(sm_m[i][g] - M);
        L += w * sm_l[i][g];
        o += w * sm_acc[(i * G + g) * D + x];
      }
    }
    const size_t row = size_t(split) * n_heads + h * G + g;
    part_o[row * D + x] = L > 0.f ? o / L : 0.f;
    if (x == 0) part_lse[row] = L > 0.f ? M + log2f(L) : -INFINITY;
  }
}

template <int D, int G>
cudaError_t launch(const KvLayerDev& kv, const float* q, float scale_log2, const PassState* st,
                   const int* sel_blocks, const int* sel_count, int n_heads, int splits,
                   float* part_o, float* part_lse, cudaStream_t s) {
  decode_pipe_kernel<D, G><<<dim3(splits, kv.kv_heads), kThreads, 0, s>>>(
      kv, q, scale_log2, st, sel_blocks, sel_count, n_heads, part_o, part_lse);
  return cudaGetLastError();
}

template <int D>
cudaError_t launch_g(int g, const KvLayerDev& kv, const float* q, float scale_log2,
                     const PassState* st, const int* sel_blocks, const int* sel_count, int n_heads,
                     int splits, float* part_o, float* part_lse, cudaStream_t s) {
  switch (g) {
#define RESA_PIPE_G(N)                                                                         \
  case N:                                                                                      \
    return launch<D, N>(kv, q, scale_log2, st, sel_blocks, sel_count, n_heads, splits, part_o, \
                        part_lse, s);
    RESA_PIPE_G(1)
    RESA_PIPE_G(2)
    RESA_PIPE_G(3)
    RESA_PIPE_G(4)
    RESA_PIPE_G(5)
    RESA_PIPE_G(6)
    RESA_PIPE_G(7)
    RESA_PIPE_G(8)
#undef RESA_PIPE_G
  }
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t decode_launch(const KvLayerDev& kv, const float* q, float scale_log2,
                          const PassState* st, const int* sel_blocks, const int* sel_count,
                          int n_heads, int splits, float* part_o, float* part_lse, cudaStream_t s) {
  if (kv.kv_heads < 1 || n_heads % kv.kv_heads || splits < 1) return cudaErrorInvalidValue;
  const int g = n_heads / kv.kv_heads;
  switch (kv.head_dim) {
    case 128:
      return launch_g<128>(g, kv, q, scale_log2, st, sel_blocks, sel_count, n_heads, splits, part_o,
                           part_lse, s);
    case 64:
      return launch_g<64>(g, kv, q, scale_log2, st, sel_blocks, sel_count, n_heads, splits, part_o,
                          part_lse, s);
    case 32:
      return launch_g<32>(g, kv, q, scale_log2, st, sel_blocks, sel_count, n_heads, splits, part_o,
                          part_lse, s);
    case 16:
      return launch_g<16>(g, kv, q, scale_log2, st, sel_blocks, sel_count, n_heads, splits, part_o,
                          part_lse, s);
  }
  return cudaErrorInvalidValue;
}

}  // namespace resa::cuda::pipe
