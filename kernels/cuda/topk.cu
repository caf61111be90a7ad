// Top-k block selection with the scores held in registers (RESA.md steps 5-6). Contract:
// top_blocks in attention.h; the loop kernel in attention.cu is the reference and the fallback
// for caches of more than kMaxBlocks blocks per head.
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/scores.cuh"
#include "kernels/cuda/topk.h"

namespace resa::cuda::topk {
namespace {

constexpr uint32_t kFull = 0xffffffffu;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 256;                 // 8-bit digits
constexpr int kWideBits = 12;              // the fused kernel's first digit
constexpr int kWideBins = 1 << kWideBits;  // kSelectWorkBins
static_assert(kWideBins == kSelectWorkBins && kWideBins == 4 * kThreads, "wide histogram");

// The key of a block: its order is the score order (-0 the key of +0, equal for the CPU twin's
// float comparison); forced blocks (sink, local) get the largest key.
__device__ __forceinline__ uint32_t order_key(float score, bool forced) {
  uint32_t u = __float_as_uint(score);
  if (u == 0x80000000u) u = 0;
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return forced ? kFull : u;
}
__device__ __forceinline__ bool forced_block(int b, int nb, const SelectParams& p) {
  return (b == 0 && p.sink) || b >= nb - p.local;
}

template <int KPT>
struct Smem {
  __align__(16) int sub[kBins][32];  // a copy per lane: no address shared in a warp
  __align__(16) int tot[kBins];
  uint32_t row_counts[KPT][kWarps + 1];  // (above | in bucket << 16) per row, warp
};

// Thread t owns (zeroes, then sums) words q * 4 .. q * 4 + 3 and 16 + q * 4 .. 19 + q * 4 of
// bin t / 4, q = t % 4 (in int4 units: own and own + 4).
__device__ __forceinline__ int owned_int4() {
  return (int(threadIdx.x) >> 2) * 8 + (int(threadIdx.x) & 3);
}
template <int KPT>
__device__ __forceinline__ void zero_owned(Smem<KPT>& sm) {
  int4* sub4 = reinterpret_cast<int4*>(sm.sub);
  sub4[owned_int4()] = sub4[owned_int4() + 4] = make_int4(0, 0, 0, 0);
}

// k >= nb: every block of head h, ascending.
template <int KPT>
__device__ __forceinline__ void write_all(int h, int rows, int lim, const KvLayerDev& kv,
                                          const SelectionDev& sel) {
#pragma unroll
  for (int j = 0; j < KPT; ++j) {
    if (j >= rows) break;
    if (j * kThreads < lim) {
      const int b = j * kThreads + int(threadIdx.x);
      sel.blocks[size_t(h) * kv.cap_blocks + b] = b;
      if (sel.hits) atomicAdd(&sel.hits[b], 1u);
    }
  }
}

// Thread t's keys: blocks j * 1024 + t of head h, j < rows, from scores (read through L2: other
// CTAs of the fused kernel wrote them). Blocks past nb (in rows < rows) get key 0, the lowest, and
// take no part: at least k + 1 blocks exist, so the k-th largest key and the blocks picked are
// those of the existing blocks alone, and blocks past nb come last in index order.
template <int KPT>
__device__ __forceinline__ void load_keys(uint32_t (&key)[KPT], const float* scores, int rows,
                                          int lim, int nb, const SelectParams& p) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int j = 0; j < KPT; ++j) {
    if (j >= rows) break;  // rows is uniform: each row loop ends after the last row in use
    key[j] = j * kThreads < lim ? order_key(__ldcg(scores + j * kThreads + tid),
                                            forced_block(j * kThreads + tid, nb, p))
                                : 0u;
  }
}

// Steps 1 and 2 of the file comment over the keys, from the digit at `shift` down (8 bits at a
// time, the last one at shift 0), given the bits already found (prefix under mask) and the blocks
// still wanted among the keys that match them; done: the bucket found so far is picked whole.
// sm.sub must be zero (zero_owned, then a barrier).
template <int KPT>
__device__ __forceinline__ void select_and_write(const uint32_t (&key)[KPT], int rows, int lim,
                                                 uint32_t prefix, uint32_t mask, int remaining,
                                                 int shift, bool done, Smem<KPT>& sm, int h,
                                                 const KvLayerDev& kv, const SelectionDev& sel) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
#pragma unroll 1
  for (; !done; shift = max(shift - 8, 0)) {
#pragma unroll
    for (int j = 0; j < KPT; ++j) {
      if (j >= rows) break;
      if ((key[j] & mask) == prefix) atomicAdd(&sm.sub[(key[j] >> shift) & 0xffu][lane], 1);
    }
    __syncthreads();
    {  // bin totals; each thread clears the words it read, for the next pass
      int4* sub4 = reinterpret_cast<int4*>(sm.sub);
      const int own = owned_int4();
      const int4 a = sub4[own], b = sub4[own + 4];
      sub4[own] = sub4[own + 4] = make_int4(0, 0, 0, 0);
      int c = a.x + a.y + a.z + a.w + b.x + b.y + b.z + b.w;
      c += __shfl_xor_sync(kFull, c, 1);
      c += __shfl_xor_sync(kFull, c, 2);
      if ((tid & 3) == 0) sm.tot[tid >> 2] = c;
    }
    __syncthreads();
    // Lane l holds bins 255 - 8l down to 248 - 8l; counts summed from the top bin down.
    const int4 lo4 = reinterpret_cast<const int4*>(sm.tot)[62 - 2 * lane];  // 248-8l .. 251-8l
    const int4 hi4 = reinterpret_cast<const int4*>(sm.tot)[63 - 2 * lane];  // 252-8l .. 255-8l
    const int sum = lo4.x + lo4.y + lo4.z + lo4.w + hi4.x + hi4.y + hi4.z + hi4.w;
    int incl = sum;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int v = __shfl_up_sync(kFull, incl, o);
      if (lane >= o) incl += v;
    }
    const int excl = incl - sum;
    const bool mine = excl < remaining && remaining <= incl;  // exactly one lane
    int digit = 0, above = 0, in_bin = 0;
    if (mine) {  // that lane walks its bins down (read again: fewer live registers)
      int run = excl;
      for (int i = 0; i < 8; ++i) {
        const int bin = 255 - 8 * lane - i, c = sm.tot[bin];
        if (run + c >= remaining) {
          digit = bin, above = run, in_bin = c;
          break;
        }
        run += c;
      }
    }
    const int src = __ffs(__ballot_sync(kFull, mine)) - 1;
    digit = __shfl_sync(kFull, digit, src);
    above = __shfl_sync(kFull, above, src);
    in_bin = __shfl_sync(kFull, in_bin, src);
    prefix |= uint32_t(digit) << shift;
    mask |= 0xffu << shift;
    remaining -= above;
    // The whole bucket is picked, or every bit is known (the same in every thread).
    done = in_bin == remaining || shift == 0;
  }

  // Row j's flags as bit j: above the bucket, in it.
  uint32_t above_rows = 0, at_rows = 0;
#pragma unroll
  for (int j = 0; j < KPT; ++j) {
    if (j >= rows) break;
    const uint32_t m = key[j] & mask;
    if (j * kThreads < lim) {
      above_rows |= uint32_t(m > prefix) << j;
      at_rows |= uint32_t(m == prefix) << j;
    }
  }
  // Counts per (row, warp): above in the low, in the bucket in the high 16 bits (at most
  // kMaxBlocks each, so the sums below never carry).
#pragma unroll
  for (int j = 0; j < KPT; ++j) {
    if (j >= rows) break;
    const uint32_t above = __ballot_sync(kFull, (above_rows >> j) & 1u);
    const uint32_t at = __ballot_sync(kFull, (at_rows >> j) & 1u);
    if (lane == 0) sm.row_counts[j][warp] = uint32_t(__popc(above)) | uint32_t(__popc(at)) << 16;
  }
  __syncthreads();
  // Lane j: row j's total, and its count in the warps before this one; then the rows' exclusive
  // scan gives this warp's start in row j.
  uint32_t total = 0, before = 0;
  if (lane < rows) {
#pragma unroll 8
    for (int w = 0; w < kWarps; ++w) {
      const uint32_t v = sm.row_counts[lane][w];
      total += v;
      before += w < warp ? v : 0u;
    }
  }
  uint32_t incl = total;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t v = __shfl_up_sync(kFull, incl, o);
    if (lane >= o) incl += v;
  }
  const uint32_t start = incl - total + before;
  const uint32_t lanes_below = (1u << lane) - 1u;
  int* out = sel.blocks + size_t(h) * kv.cap_blocks;
#pragma unroll
  for (int j = 0; j < KPT; ++j) {
    if (j >= rows) break;
    const uint32_t row_start = __shfl_sync(kFull, start, j);
    const bool is_above = (above_rows >> j) & 1u, is_at = (at_rows >> j) & 1u;
    const uint32_t above = __ballot_sync(kFull, is_above);
    const uint32_t at = __ballot_sync(kFull, is_at);
    const int n_above = int(row_start & 0xffffu) + __popc(above & lanes_below);
    const int n_at = int(row_start >> 16) + __popc(at & lanes_below);
    if (is_above || (is_at && n_at < remaining)) {
      const int b = j * kThreads + tid;
      out[n_above + min(n_at, remaining)] = b;
      if (sel.hits) atomicAdd(&sel.hits[b], 1u);
    }
  }
}

// One CTA of 1024 threads per KV head: thread t holds blocks j * 1024 + t, j < KPT, as keys
// (order_key).
//
// 1. Radix select of the k-th largest key, most significant byte first. Per pass each candidate
//    adds 1 to its digit's bin in a histogram with one copy per lane (scores of one magnitude
//    share the top byte, and a warp's same-address shared atomics serialize; __match_any_sync
//    aggregation measured slower), then the copies are summed (each thread sums and clears its
//    own 8 words, so no extra clearing barrier), and every warp finds the digit's bucket from the
//    same totals. The select stops once the bucket holds exactly the blocks still wanted. The
//    SM is issue-bound (32 warps on one SM), so row loops end at the last row in use.
// 2. Ordered compaction: every block above the bucket is picked, and of the blocks in the bucket
//    the first `remaining` in index order (ties to the lower index, as in the CPU twin). A block's
//    output slot is (blocks above before it) + min(blocks in the bucket before it, remaining):
//    per-warp ballot counts of both, for every row at once, then one barrier and a scan.
template <int KPT>
__global__ void __launch_bounds__(kThreads, 1)
    topk_registers_kernel(KvLayerDev kv, SelectParams p, const PassState* st, SelectionDev sel) {
  grid_dependency_wait();
  allow_next_launch();
  __shared__ Smem<KPT> sm;
  const int h = blockIdx.x, tid = threadIdx.x;
  const int ctx = st->pos0 + 1, bs = kv.block_size, nb = (ctx + bs - 1) / bs;
  const int k = selection_size(nb, p);
  // Block j * kThreads + tid exists iff j * kThreads < lim. Every test of a block index is
  // written against lim (one register), so that the compiler keeps no per-row index alive.
  const int lim = nb - tid;
  const int rows = min(KPT, (nb + kThreads - 1) / kThreads);  // rows holding a block < nb
  if (tid == 0) sel.count[h] = k;
  if (k <= 0) return;
  if (k >= nb) return write_all<KPT>(h, rows, lim, kv, sel);
  uint32_t key[KPT];
  load_keys<KPT>(key, sel.scores + size_t(h) * kv.cap_blocks, rows, lim, nb, p);
  zero_owned(sm);
  __syncthreads();
  select_and_write<KPT>(key, rows, lim, 0u, 0u, k, 24, false, sm, h, kv, sel);
}

// The fused selection. Grid (CTAs per head, kv_heads) of 1024 threads; sel.work holds a wide
// histogram per head ([kv_heads][4096] counts of the keys' top 12 bits) and a counter per head
// after them, all zero between calls.
// 1. Every CTA scores its share of the head's blocks (scores.cuh; with q null the scores are
//    given in sel.scores), writes them, and counts their keys' top 12 bits in shared memory, then
//    adds its nonzero bins to the head's wide histogram.
// 2. The last CTA of the head to finish (atomic counter) finds the 12-bit bucket of the k-th
//    largest key from the wide histogram (a block scan over the bins, highest first), zeroes the
//    histogram and the counter for the next call, loads the head's keys into registers and runs
//    the remaining digits (shifts 12, 4, 0) over the bucket's keys alone and the compaction, as
//    the register kernel does. One 12-bit bin spans an eighth of an octave of scores, so the
//    later passes see a small share of the blocks.
template <int D, int KPT>
__global__ void __launch_bounds__(kThreads, 1)
    select_fused_kernel(KvLayerDev kv, const float* __restrict__ q, int group, float scale,
                        SelectParams p, const PassState* st, SelectionDev sel) {
  grid_dependency_wait();
  allow_next_launch();
  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ Smem<KPT> sm;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ float qs[D];
  __shared__ int s_last, s_digit, s_above, s_in_bin;
  const int h = blockIdx.y, tid = threadIdx.x;
  const int ctx = st->pos0 + 1, bs = kv.block_size, nb = (ctx + bs - 1) / bs;
  uint32_t* const wide = sel.work + size_t(h) * kWideBins;
  uint32_t* const counter = sel.work + size_t(kv.kv_heads) * kWideBins + h;
  float* const scores = sel.scores + size_t(h) * kv.cap_blocks;
  int* const local = &sm.sub[0][0];  // this CTA's wide histogram
  for (int i = tid; i < kWideBins; i += kThreads) local[i] = 0;
  __syncthreads();
  if (q) {
    scores::group_query<D>(q, h, group, scale, qs);
    scores::for_each_score<D, 4>(
        kv, qs, h, nb, blockIdx.x * kWarps + (tid >> 5), gridDim.x * kWarps, [&](int b, float s) {
          scores[b] = s;
          atomicAdd(&local[order_key(s, forced_block(b, nb, p)) >> (32 - kWideBits)], 1);
        });
  } else {
    for (int b = blockIdx.x * kThreads + tid; b < nb; b += gridDim.x * kThreads)
      atomicAdd(&local[order_key(scores[b], forced_block(b, nb, p)) >> (32 - kWideBits)], 1);
  }
  __syncthreads();
  for (int i = tid; i < kWideBins; i += kThreads)
    if (const int c = local[i]) atomicAdd(&wide[i], uint32_t(c));
  __threadfence();  // this CTA's scores and counts are visible before its count says so
  __syncthreads();
  if (tid == 0) s_last = atomicAdd(counter, 1u) == unsigned(gridDim.x - 1);
  __syncthreads();
  if (!s_last) return;
  __threadfence();  // the other CTAs' scores and counts are read after their count

  // Thread t: bins 4095 - 4t down to 4092 - 4t (the last CTA reads them, then zeroes them).
  uint4* const wide4 = reinterpret_cast<uint4*>(wide) + (kWideBins / 4 - 1 - tid);
  const uint4 c4 = __ldcg(wide4);
  *wide4 = make_uint4(0, 0, 0, 0);
  if (tid == 0) *counter = 0u;
  const int k = selection_size(nb, p);
  const int lim = nb - tid;
  const int rows = min(KPT, (nb + kThreads - 1) / kThreads);
  if (tid == 0) sel.count[h] = k;
  if (k <= 0) return;
  if (k >= nb) return write_all<KPT>(h, rows, lim, kv, sel);
  const int sum = int(c4.x + c4.y + c4.z + c4.w);
  int excl = 0;
  Scan(scan_tmp).ExclusiveSum(sum, excl);
  if (excl < k && k <= excl + sum) {  // exactly one thread: its bins hold the k-th largest
    const int bin_count[4] = {int(c4.w), int(c4.z), int(c4.y), int(c4.x)};
    int run = excl;
    for (int i = 0; i < 4; ++i) {
      if (run + bin_count[i] >= k) {
        s_digit = kWideBins - 1 - 4 * tid - i, s_above = run, s_in_bin = bin_count[i];
        break;
      }
      run += bin_count[i];
    }
  }
  uint32_t key[KPT];
  load_keys<KPT>(key, scores, rows, lim, nb, p);
  zero_owned(sm);  // every thread is past its reads of `local` (barrier before s_last)
  __syncthreads();
  const int remaining = k - s_above;
  select_and_write<KPT>(key, rows, lim, uint32_t(s_digit) << (32 - kWideBits),
                        ~0u << (32 - kWideBits), remaining, 32 - kWideBits - 8,
                        s_in_bin == remaining, sm, h, kv, sel);
}

template <int D, int KPT>
cudaError_t launch_fused(const KvLayerDev& kv, const float* q, int group, float scale,
                         const SelectParams& p, const PassState* st, const SelectionDev& sel,
                         int sm_count, cudaStream_t s) {
  // One wave (one CTA per SM) over the heads, no more CTAs than there are blocks to score.
  const int per_cta = q ? kWarps * (32 / (D / 4)) * 4 : kThreads;
  const int need = (kv.cap_blocks + per_cta - 1) / per_cta;
  const int ctas = std::max(1, std::min(need, sm_count / kv.kv_heads));
  return launch(select_fused_kernel<D, KPT>, dim3(ctas, kv.kv_heads), dim3(kThreads), 0, s, kv, q,
                group, scale, p, st, sel);
}

// f(std::integral_constant<int, KPT>) for the fewest keys per thread that cover cap_blocks (nb
// is only known on the device: a recorded step replays at later positions).
template <typename F>
cudaError_t dispatch_kpt(int cap_blocks, F&& f) {
  if (cap_blocks <= 1 * kThreads) return f(std::integral_constant<int, 1>{});
  if (cap_blocks <= 2 * kThreads) return f(std::integral_constant<int, 2>{});
  if (cap_blocks <= 4 * kThreads) return f(std::integral_constant<int, 4>{});
  if (cap_blocks <= 8 * kThreads) return f(std::integral_constant<int, 8>{});
  if (cap_blocks <= 16 * kThreads) return f(std::integral_constant<int, 16>{});
  if (cap_blocks <= 32 * kThreads) return f(std::integral_constant<int, 32>{});
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t fused_launch(const KvLayerDev& kv, const float* q, int group, float scale,
                         const SelectParams& p, const PassState* st, const SelectionDev& sel,
                         int sm_count, cudaStream_t s) {
  if (!sel.work || kv.kv_heads < 1) return cudaErrorInvalidValue;
  return dispatch_kpt(kv.cap_blocks, [&](auto kc) {
    constexpr int KPT = decltype(kc)::value;
    switch (kv.head_dim) {
      case 128:
        return launch_fused<128, KPT>(kv, q, group, scale, p, st, sel, sm_count, s);
      case 64:
        return launch_fused<64, KPT>(kv, q, group, scale, p, st, sel, sm_count, s);
      case 32:
        return launch_fused<32, KPT>(kv, q, group, scale, p, st, sel, sm_count, s);
      case 16:
        return launch_fused<16, KPT>(kv, q, group, scale, p, st, sel, sm_count, s);
    }
    return cudaErrorInvalidValue;
  });
}

cudaError_t registers_launch(const KvLayerDev& kv, const SelectParams& p, const PassState* st,
                             const SelectionDev& sel, cudaStream_t s) {
  return dispatch_kpt(kv.cap_blocks, [&](auto kc) {
    constexpr int KPT = decltype(kc)::value;
    return launch(topk_registers_kernel<KPT>, dim3(kv.kv_heads), dim3(kThreads), 0, s, kv, p, st,
                  sel);
  });
}

}  // namespace resa::cuda::topk
