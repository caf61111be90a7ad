// Top-k of the block scores with the keys in shared memory (contract: select_topk.h).
//
// The reference topk_kernel streams the 16K scores of a 256K context from global memory on
// each of its 4 radix passes and 2 compaction passes (a chain of dependent loads per thread),
// and its histogram atomics collide: scores of one head share their top bits, so in the first
// pass nearly every thread adds to the same bin. Here the keys are loaded once (8 independent
// loads in flight per thread) into shared memory, and every histogram update is aggregated per
// warp with __match_any_sync (one atomic per distinct bin per warp). Thread t owns the
// contiguous blocks [t*C, t*C + C) (C = ceil(nb / 1024)) in the passes and in the ordered
// compaction; the key array is padded by one word per 32 so those strided reads do not share a
// bank.
#include <cub/block/block_scan.cuh>

#include <atomic>

#include "kernels/cuda/select_topk.h"

namespace resa::cuda::sel {
namespace {

constexpr int kThreads = 1024;
constexpr int kLoadBatch = 8;

__host__ __device__ constexpr int kpad(int i) { return i + (i >> 5); }

__global__ void __launch_bounds__(kThreads)
    topk_smem_kernel(KvLayerDev kv, SelectParams p, const PassState* st, SelectionDev sel) {
  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ typename Scan::TempStorage tmp;
  __shared__ int hist[256];
  __shared__ uint32_t s_prefix;
  __shared__ int s_remaining;
  extern __shared__ uint32_t keys[];  // kpad(C * kThreads) words
  const int h = blockIdx.x, tid = threadIdx.x, lane = tid & 31;
  const int ctx = st->pos0 + 1, bs = kv.block_size, nb = (ctx + bs - 1) / bs;
  // RESA.md step 6 and select_top_blocks' forced count: the same arithmetic as topk_kernel.
  const int by_ratio = int(ceil(double(nb) * p.ratio - 1e-9));
  const int chosen = max(by_ratio, min(nb, p.min_blocks));
  const int forced_n = min(nb, p.local + (p.sink && nb > p.local ? 1 : 0));
  const int budget = min(nb, max(chosen, forced_n));
  const int forced_count = min(nb, p.local) + (p.sink && nb - p.local > 0 ? 1 : 0);
  const int k = max(budget, min(forced_count, nb));
  const float* sc = sel.scores + size_t(h) * kv.cap_blocks;
  // Order-preserving map of the score to 32 bits (forced blocks: the largest key). -0 maps to
  // +0's key: the CPU twin compares the floats, where the two are equal (a tie).
  auto key_of = [&](int b, float f) -> uint32_t {
    if ((p.sink && b == 0) || b >= nb - p.local) return 0xffffffffu;
    uint32_t u = __float_as_uint(f);
    if (u == 0x80000000u) u = 0;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  };
  const bool all = k >= nb;
  const int C = (nb + kThreads - 1) / kThreads;
  const int b0 = tid * C;
  // k == 0 (no budget, nothing forced): T above every key, nothing picked.
  uint32_t prefix = k > 0 ? 0u : 0xffffffffu;
  int remaining = k > 0 ? k : 0;
  if (!all) {
    for (int base = 0; base < C; base += kLoadBatch) {
      float v[kLoadBatch];
#pragma unroll
      for (int u = 0; u < kLoadBatch; ++u) {
        const int b = (base + u) * kThreads + tid;
        v[u] = base + u < C && b < nb ? sc[b] : 0.f;
      }
#pragma unroll
      for (int u = 0; u < kLoadBatch; ++u) {
        const int b = (base + u) * kThreads + tid;
        if (base + u < C && b < nb) keys[kpad(b)] = key_of(b, v[u]);
      }
    }
    __syncthreads();
    uint32_t mask = 0;
    for (int shift = 24; shift >= 0 && k > 0; shift -= 8) {
      if (tid < 256) hist[tid] = 0;
      __syncthreads();               // also: s_prefix of the previous pass read by every thread
      for (int j = 0; j < C; ++j) {  // C is uniform: the warp stays converged for the match
        const int b = b0 + j;
        const uint32_t u = b < nb ? keys[kpad(b)] : 0u;
        const bool in = b < nb && (u & mask) == prefix;
        const uint32_t digit = in ? (u >> shift) & 255u : 256u;
        const uint32_t peers = __match_any_sync(0xffffffffu, digit);
        if (in && lane == __ffs(peers) - 1) atomicAdd(&hist[digit], __popc(peers));
      }
      __syncthreads();
      const int c = tid < 256 ? hist[255 - tid] : 0;
      int incl;
      Scan(tmp).InclusiveSum(c, incl);
      const int excl = incl - c;
      if (tid < 256 && excl < remaining && incl >= remaining) {
        s_prefix = prefix | (uint32_t(255 - tid) << shift);
        s_remaining = remaining - excl;
      }
      __syncthreads();
      prefix = s_prefix;
      remaining = s_remaining;
      mask |= 0xffu << shift;
    }
  }
  // prefix: the k-th largest key T; remaining: how many keys equal to T are picked (the
  // lowest-index ones).
  const uint32_t T = prefix;
  const int b1 = min(nb, b0 + C), bb = min(nb, b0);
  int eq = 0;
  if (!all)
    for (int b = bb; b < b1; ++b) eq += keys[kpad(b)] == T;
  int eq_before;
  __syncthreads();
  Scan(tmp).ExclusiveSum(eq, eq_before);
  int cnt = 0, e = eq_before;
  for (int b = bb; b < b1; ++b) {
    bool pick = all;
    if (!all) {
      const uint32_t u = keys[kpad(b)];
      pick = u > T || (u == T && e++ < remaining);
    }
    cnt += pick;
  }
  int out_pos;
  __syncthreads();
  Scan(tmp).ExclusiveSum(cnt, out_pos);
  int* out = sel.blocks + size_t(h) * kv.cap_blocks;
  e = eq_before;
  for (int b = bb; b < b1; ++b) {
    bool pick = all;
    if (!all) {
      const uint32_t u = keys[kpad(b)];
      pick = u > T || (u == T && e++ < remaining);
    }
    if (pick) {
      out[out_pos++] = b;
      if (sel.hits) atomicAdd(&sel.hits[b], 1u);
    }
  }
  if (tid == 0) sel.count[h] = k;
}

// Opt-in shared memory per block of the current device, read once per device.
int smem_optin() {
  static std::atomic<int> cache[64];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 0;
  if (dev >= 0 && dev < 64) {
    const int c = cache[dev].load(std::memory_order_relaxed);
    if (c > 0) return c;
  }
  int v = 0;
  if (cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
    v = 0;
  if (dev >= 0 && dev < 64 && v > 0) cache[dev].store(v, std::memory_order_relaxed);
  return v;
}

}  // namespace

size_t topk_smem_bytes(int cap_blocks) {
  const int c = (cap_blocks + kThreads - 1) / kThreads;
  return size_t(kpad(c * kThreads)) * 4;
}

bool topk_smem_fits(int cap_blocks) {
  // Static shared memory (scan storage, histogram) stays under 8 KiB.
  return cap_blocks > 0 && topk_smem_bytes(cap_blocks) + 8192 <= size_t(smem_optin());
}

cudaError_t topk_smem_launch(const KvLayerDev& kv, const SelectParams& p, const PassState* st,
                             const SelectionDev& sel, cudaStream_t s) {
  if (!topk_smem_fits(kv.cap_blocks)) return cudaErrorInvalidValue;
  // The kernel's dynamic shared memory limit, raised once per device to everything
  // topk_smem_fits allows (never lowered: graphs captured for a larger cache stay valid).
  static std::atomic<int> raised[64];
  int dev = 0;
  cudaError_t a = cudaGetDevice(&dev);
  if (a != cudaSuccess) return a;
  if (dev < 0 || dev >= 64 || raised[dev].load(std::memory_order_relaxed) == 0) {
    a = cudaFuncSetAttribute(topk_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             smem_optin() - 8192);
    if (a != cudaSuccess) return a;
    if (dev >= 0 && dev < 64) raised[dev].store(1, std::memory_order_relaxed);
  }
  const size_t smem = topk_smem_bytes(kv.cap_blocks);
  topk_smem_kernel<<<kv.kv_heads, kThreads, smem, s>>>(kv, p, st, sel);
  return cudaGetLastError();
}

}  // namespace resa::cuda::sel
