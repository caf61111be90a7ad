// Top-k block selection with the scores held in registers (RESA.md steps 5-6). Contract:
// top_blocks in attention.h; the loop kernel in attention.cu is the reference and the fallback
// for caches of more than kMaxBlocks blocks per head.
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/scores.cuh"
#include "kernels/cuda/topk.h"

namespace resa::cuda::topk {
namespace {

constexpr uint32_t kFull = 0xffffffffu;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 256;  // 8-bit digits

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

// k >= nb: every block of head h, ascending (this CTA's: first + j * 1024 + t).
template <int KPT>
__device__ __forceinline__ void write_all(int h, int rows, int lim, int first, const KvLayerDev& kv,
                                          const SelectionDev& sel) {
#pragma unroll
  for (int j = 0; j < KPT; ++j) {
    if (j >= rows) break;
    if (j * kThreads < lim) {
      const int b = first + j * kThreads + int(threadIdx.x);
      sel.blocks[size_t(h) * kv.cap_blocks + b] = b;
      if (sel.hits) atomicAdd(&sel.hits[b], 1u);
    }
  }
}

// Thread t's keys: blocks first + j * 1024 + t of head h, j < rows, from scores (the head's,
// read through L2: other CTAs may have written them). Blocks past nb (in rows < rows) get key 0,
// the lowest, and take no part: at least k + 1 blocks exist, so the k-th largest key and the
// blocks picked are those of the existing blocks alone, and blocks past nb come last in index
// order.
template <int KPT>
__device__ __forceinline__ void load_keys(uint32_t (&key)[KPT], const float* scores, int first,
                                          int rows, int lim, int nb, const SelectParams& p) {
  const int b0 = first + int(threadIdx.x);
#pragma unroll
  for (int j = 0; j < KPT; ++j) {
    if (j >= rows) break;  // rows is uniform: each row loop ends after the last row in use
    key[j] = j * kThreads < lim ? order_key(__ldcg(scores + b0 + j * kThreads),
                                            forced_block(b0 + j * kThreads, nb, p))
                                : 0u;
  }
}

// The single-CTA select's exchange with other CTAs: none.
struct Alone {
  template <int KPT>
  __device__ void totals(Smem<KPT>&, int) const {}
  __device__ uint32_t before(uint32_t) const { return 0u; }
};

// Steps 1 and 2 of the file comment over the keys, from the digit at `shift` down (8 bits at a
// time, the last one at shift 0), given the bits already found (prefix under mask) and the blocks
// still wanted among the keys that match them; done: the bucket found so far is picked whole.
// sm.sub must be zero (zero_owned, then a barrier).
//
// Ex exchanges with the other CTAs of the head, where several share its blocks (this CTA's are
// first + j * 1024 + t): ex.totals(sm, pass) turns this CTA's digit counts in sm.tot into the
// head's, ex.before(packed counts of this CTA) returns those of the CTAs before it.
template <int KPT, typename Ex>
__device__ __forceinline__ void select_and_write(const uint32_t (&key)[KPT], int rows, int lim,
                                                 int first, uint32_t prefix, uint32_t mask,
                                                 int remaining, int shift, bool done, Smem<KPT>& sm,
                                                 int h, const KvLayerDev& kv,
                                                 const SelectionDev& sel, const Ex& ex) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
#pragma unroll 1
  for (int pass = 0; !done; shift = max(shift - 8, 0), ++pass) {
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
    ex.totals(sm, pass);
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
  // kMaxBlocks each over the head, so the sums below never carry).
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
  const uint32_t start = incl - total + before + ex.before(__shfl_sync(kFull, incl, 31));
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
      const int b = first + j * kThreads + tid;
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
  if (k >= nb) return write_all<KPT>(h, rows, lim, 0, kv, sel);
  uint32_t key[KPT];
  load_keys<KPT>(key, sel.scores + size_t(h) * kv.cap_blocks, 0, rows, lim, nb, p);
  zero_owned(sm);
  __syncthreads();
  select_and_write<KPT>(key, rows, lim, 0, 0u, 0u, k, 24, false, sm, h, kv, sel, Alone{});
}

// The fused selection's workspace per KV head (kSelectWorkPerHead words): 4 x 256 digit counts
// (one histogram per radix pass) and the barrier's arrival count, zero between calls; then the
// barrier's generation, then one word per CTA (its packed counts for the compaction); the last
// word is the flip barrier of both fused kernels (head_sync_flip).
constexpr int kHistWords = 4 * kBins;
constexpr int kFlipBarWord = kSelectWorkPerHead - 1;
constexpr int kMaxCoopCtas = kSelectWorkPerHead - kHistWords - 3;
static_assert(kSelectWorkZeroed == kHistWords + 1 && kMaxCoopCtas >= 128, "select workspace");

// A barrier of the n CTAs of one KV head (they are co-resident: the kernel is launched
// cooperatively). bar[0] counts arrivals, bar[1] is the generation. Writes before it (any thread
// of an arriving CTA) are visible after it. A CTA that waits past about a second traps (a CUDA
// error instead of a hang, should co-residency ever fail).
__device__ __forceinline__ void head_sync(uint32_t* bar, int n) {
  __syncthreads();
  if (threadIdx.x == 0) {
    volatile uint32_t* gen = bar + 1;
    const uint32_t g = *gen;
    __threadfence();
    if (atomicAdd(bar, 1u) == uint32_t(n - 1)) {
      bar[0] = 0u;
      __threadfence();
      atomicAdd(bar + 1, 1u);
    } else {
      for (uint32_t spins = 0; *gen == g;) {
        __nanosleep(64);
        if (++spins == (1u << 24)) __trap();
      }
    }
    __threadfence();
  }
  __syncthreads();
}

// A barrier of the n CTAs of one KV head that needs no reset: each call flips the top bit of
// the word (CTA 0 adds 2^31 - (n - 1), the others 1, so the low bits come back to where they
// were, whatever n is), and a CTA waits until the top bit differs from the one its own add saw.
// Writes before it are visible after it; a CTA that waits past about a second traps.
__device__ __forceinline__ uint32_t ld_acquire(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void head_sync_flip(uint32_t* word, int n, bool first) {
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    const uint32_t old = atomicAdd(word, first ? 0x80000000u - uint32_t(n - 1) : 1u);
    for (uint32_t spins = 0; ((old ^ ld_acquire(word)) & 0x80000000u) == 0u;)
      if (++spins == (1u << 22)) __trap();
    __threadfence();
  }
  __syncthreads();
}

// The fused selection's exchange (select_and_write): digit counts summed in the head's
// histograms, compaction counts published per CTA. Its barriers: head_sync_flip on flip_word, or
// with gen false head_sync on bar (RESA_COOP_BARRIER=gen, read once per process).
struct Coop {
  uint32_t *hist, *bar, *cnt, *flip_word;
  int ctas, cta;
  bool flip;
  __device__ void sync() const {
    if (flip)
      head_sync_flip(flip_word, ctas, cta == 0);
    else
      head_sync(bar, ctas);
  }
  template <int KPT>
  __device__ void totals(Smem<KPT>& sm, int pass) const {
    const int tid = threadIdx.x;
    uint32_t* const hp = hist + pass * kBins;
    if (tid < kBins && sm.tot[tid]) atomicAdd(hp + tid, uint32_t(sm.tot[tid]));
    sync();
    if (tid < kBins) sm.tot[tid] = int(__ldcg(hp + tid));
    __syncthreads();
  }
  __device__ uint32_t before(uint32_t mine) const {
    if (threadIdx.x == 0) cnt[cta] = mine;
    sync();
    uint32_t v = 0;
    for (int i = int(threadIdx.x & 31); i < cta; i += 32) v += __ldcg(cnt + i);
    return __reduce_add_sync(kFull, v);
  }
};

// The fused selection: grid (CTAs per head, kv_heads) of 1024 threads, launched cooperatively
// (every CTA resident at once). CTA c of head h owns the contiguous blocks [c * P, c * P + P),
// P = ceil(nb / CTAs), thread t those at j * 1024 + t.
// 1. Scores of its blocks (scores.cuh), written to sel.scores (with q null: read from there).
// 2. The radix select of the register kernel, each pass's digit counts summed over the head's
//    CTAs in sel.work (a barrier per pass), and its ordered compaction with every CTA's counts
//    published (one more barrier), so each CTA writes its picked blocks at their final slots.
// CTA 0 of the head zeroes the histograms at the end, for the next call.
template <int D, int KPT>
__global__ void __launch_bounds__(kThreads, 1)
    select_coop_kernel(KvLayerDev kv, const float* __restrict__ q, int group, float scale,
                       SelectParams p, const PassState* st, SelectionDev sel, bool flip) {
  __shared__ Smem<KPT> sm;
  __shared__ float qs[D];
  const int h = blockIdx.y, c = blockIdx.x, ctas = gridDim.x, tid = threadIdx.x;
  const int ctx = st->pos0 + 1, bs = kv.block_size, nb = (ctx + bs - 1) / bs;
  const int per = (nb + ctas - 1) / ctas;
  const int first = min(nb, c * per), count = min(nb, first + per) - first;
  float* const scores = sel.scores + size_t(h) * kv.cap_blocks;
  uint32_t* const wk = sel.work + size_t(h) * kSelectWorkPerHead;
  const Coop ex{wk, wk + kHistWords, wk + kHistWords + 2, wk + kFlipBarWord, ctas, c, flip};
  if (q) {
    scores::group_query<D>(q, h, group, scale, qs);
    scores::for_each_score<D, 4>(kv, qs, h, first, first + count, tid >> 5, kWarps,
                                 [&](int b, float sc) { scores[b] = sc; });
    __syncthreads();  // the CTA's scores are written before its threads read them back
  }
  const int k = selection_size(nb, p);
  const int lim = count - tid;
  const int rows = min(KPT, (count + kThreads - 1) / kThreads);
  if (c == 0 && tid == 0) sel.count[h] = k;
  if (k <= 0) return;  // the same in every CTA of the head: no barrier is left waiting
  if (k >= nb) return write_all<KPT>(h, rows, lim, first, kv, sel);
  uint32_t key[KPT];
  load_keys<KPT>(key, scores, first, rows, lim, nb, p);
  zero_owned(sm);
  __syncthreads();
  select_and_write<KPT>(key, rows, lim, first, 0u, 0u, k, 24, false, sm, h, kv, sel, ex);
  if (c == 0)  // every CTA has read the histograms (before the compaction's barrier)
    for (int i = tid; i < kHistWords; i += kThreads) wk[i] = 0u;
}

// ------------------------------------------------------------------ kSorted: sorted runs
//
// Sorts the CTA's KPT * 1024 keys, largest first (bitonic, every stage unrolled): element
// e = j * 1024 + t is key[j] of thread t, before and after. Partners within a warp are exchanged
// by shuffles, the others through xs (2 * KPT * 1024 words of shared memory, used in turns so
// that a stage needs one barrier). Every thread of the CTA must call it.
template <int KPT, int K, int D>
__device__ __forceinline__ void bitonic_stage(uint32_t (&key)[KPT], uint32_t* xs, int& turn) {
  const int tid = threadIdx.x;
  uint32_t other[KPT];
  if constexpr (D >= 32) {
    uint32_t* x = xs + turn * KPT * kThreads;
    turn ^= 1;
#pragma unroll
    for (int j = 0; j < KPT; ++j) x[j * kThreads + tid] = key[j];
    __syncthreads();
#pragma unroll
    for (int j = 0; j < KPT; ++j) other[j] = x[(j * kThreads + tid) ^ D];
  } else {
#pragma unroll
    for (int j = 0; j < KPT; ++j) other[j] = __shfl_xor_sync(kFull, key[j], D);
  }
  // In a block of K sorted largest first ((e & K) == 0), the lower of a pair keeps the max.
#pragma unroll
  for (int j = 0; j < KPT; ++j) {
    const int e = j * kThreads + tid;
    const bool keep_max = ((e & D) == 0) == ((e & K) == 0);
    key[j] = keep_max ? max(key[j], other[j]) : min(key[j], other[j]);
  }
}
template <int KPT, int K, int D>
__device__ __forceinline__ void bitonic_merge(uint32_t (&key)[KPT], uint32_t* xs, int& turn) {
  bitonic_stage<KPT, K, D>(key, xs, turn);
  if constexpr (D > 1) bitonic_merge<KPT, K, D / 2>(key, xs, turn);
}
template <int KPT, int K = 2>
__device__ __forceinline__ void bitonic_sort_desc(uint32_t (&key)[KPT], uint32_t* xs,
                                                  int turn = 0) {
  bitonic_merge<KPT, K, K / 2>(key, xs, turn);
  if constexpr (K < KPT * kThreads) bitonic_sort_desc<KPT, K * 2>(key, xs, turn);
}

// The digits of a search round: 8 bits, from the top.
constexpr int kSearchBits = 8, kSearchCands = 1 << kSearchBits;

// kSorted's dynamic shared memory, in this order: the head's runs (before they are read: the
// sort's exchange), this CTA's keys in block order (KPT * 1024), the searches' results (ctas *
// 256), and each run's bracket (ctas each: lo, hi).
__host__ __device__ constexpr size_t align16(size_t n) { return (n + 15) / 16 * 16; }
template <int KPT>
__host__ __device__ constexpr size_t sorted_runs_bytes(int cap_blocks) {
  return align16(size_t(2 * KPT) * kThreads > select_sorted_stride(cap_blocks)
                     ? size_t(2 * KPT) * kThreads * 4
                     : select_sorted_stride(cap_blocks) * 4);
}
template <int KPT>
__host__ __device__ constexpr size_t sorted_smem_bytes(int cap_blocks, int ctas) {
  return sorted_runs_bytes<KPT>(cap_blocks) + size_t(KPT) * kThreads * 4 +
         size_t(ctas) * (kSearchCands + 2) * 4;
}

// The sorted-runs selection (TopkKernel::kSorted): the grid and shares of select_coop_kernel.
// 1. Scores of its blocks (as select_coop_kernel; with q null read from sel.scores), kept as keys
//    (order_key) in block order in shared memory.
// 2. The keys sorted, largest first (bitonic_sort_desc), and published as this CTA's run;
//    the head's one barrier.
// 3. Every run of the head read into shared memory. The k-th largest key T, 8 bits per round:
//    for each of the 256 next digits x and each run, a binary search for the keys >= prefix | x
//    (one thread per pair, inside the run's bracket of keys that match the prefix so far); the
//    largest x with at least k such keys over all runs is the digit, and the searches of x and
//    x + 1 are the new brackets. It stops when the keys from the bucket up are exactly k.
// 4. Each run's keys above the bucket (lo) and in it (hi - lo) give, with ties to the lower
//    index (runs in block order), how many of the bucket this CTA takes and where its picks
//    start; its picks are written in block order at their final slots (a block scan).
template <int D, int KPT>
__global__ void __launch_bounds__(kThreads, 1)
    select_sorted_kernel(KvLayerDev kv, const float* __restrict__ q, int group, float scale,
                         SelectParams p, const PassState* st, SelectionDev sel) {
  extern __shared__ __align__(16) unsigned char dyn[];
  __shared__ float qs[D];
  __shared__ int cnt[kSearchCands];
  __shared__ int pick[3];
  __shared__ typename cub::BlockScan<uint32_t, kThreads>::TempStorage scan;
  const int h = blockIdx.y, c = blockIdx.x, ctas = gridDim.x, tid = threadIdx.x;
  const int ctx = st->pos0 + 1, bs = kv.block_size, nb = (ctx + bs - 1) / bs;
  const int per = (nb + ctas - 1) / ctas;
  const int first = min(nb, c * per), count = min(nb, first + per) - first;
  uint32_t* const runs = reinterpret_cast<uint32_t*>(dyn);
  uint32_t* const own = reinterpret_cast<uint32_t*>(dyn + sorted_runs_bytes<KPT>(kv.cap_blocks));
  int* const res = reinterpret_cast<int*>(own + KPT * kThreads);  // [ctas][kSearchCands]
  int* const lo = res + ctas * kSearchCands;
  int* const hi = lo + ctas;
  float* const scores = sel.scores + size_t(h) * kv.cap_blocks;
  int* const out = sel.blocks + size_t(h) * kv.cap_blocks;
  uint32_t* const bar = sel.work + size_t(h) * kSelectWorkPerHead + kFlipBarWord;
  uint32_t* const sorted = sel.work + size_t(kv.kv_heads) * kSelectWorkPerHead +
                           size_t(h) * select_sorted_stride(kv.cap_blocks);
  if (q) {
    scores::group_query<D>(q, h, group, scale, qs);
    scores::for_each_score<D, 4>(kv, qs, h, first, first + count, tid >> 5, kWarps,
                                 [&](int b, float sc) {
                                   scores[b] = sc;
                                   own[b - first] = order_key(sc, forced_block(b, nb, p));
                                 });
  } else {
    for (int i = tid; i < count; i += kThreads)
      own[i] = order_key(__ldcg(scores + first + i), forced_block(first + i, nb, p));
  }
  const int k = selection_size(nb, p);
  if (c == 0 && tid == 0) sel.count[h] = k;
  if (k <= 0) return;  // the same in every CTA of the head: no barrier is left waiting
  if (k >= nb) {
    for (int i = tid; i < count; i += kThreads) {
      out[first + i] = first + i;
      if (sel.hits) atomicAdd(&sel.hits[first + i], 1u);
    }
    return;
  }
  __syncthreads();
  {  // 2. this CTA's run
    uint32_t key[KPT];
#pragma unroll
    for (int j = 0; j < KPT; ++j) {
      const int i = j * kThreads + tid;
      key[j] = i < count ? own[i] : 0u;
    }
    bitonic_sort_desc<KPT>(key, runs);
#pragma unroll
    for (int j = 0; j < KPT; ++j) {
      const int i = j * kThreads + tid;
      if (i < count) sorted[first + i] = key[j];
    }
  }
  head_sync_flip(bar, ctas, c == 0);
  // 3. the k-th largest key
#pragma unroll 4
  for (int i = tid; i < nb; i += kThreads) runs[i] = __ldcg(sorted + i);
  for (int l = tid; l < ctas; l += kThreads) lo[l] = 0, hi[l] = max(0, min(per, nb - l * per));
  uint32_t prefix = 0u;
  int shift = 32 - kSearchBits;
#pragma unroll 1
  for (;;) {
    if (tid < kSearchCands) cnt[tid] = 0;
    __syncthreads();
    // Pair pr = l * 256 + x: run l, digit x (a thread's pairs share x, as 1024 % 256 == 0).
    for (int pr = tid; pr < ctas * kSearchCands; pr += kThreads) {
      const int l = pr / kSearchCands, x = pr % kSearchCands;
      const uint32_t v = prefix | uint32_t(x) << shift;
      const uint32_t* run = runs + l * per;
      int a = lo[l], b = hi[l];  // the first key < v in [a, b)
      while (a < b) {
        const int m = (a + b) >> 1;
        if (run[m] >= v)
          a = m + 1;
        else
          b = m;
      }
      res[pr] = a;
      atomicAdd(&cnt[x], a);
    }
    __syncthreads();
    // The digit: the largest x with cnt[x] >= k (cnt falls as x grows; cnt[0] >= k).
    if (tid < kSearchCands && cnt[tid] >= k && (tid + 1 == kSearchCands || cnt[tid + 1] < k))
      pick[0] = tid;
    __syncthreads();
    const int x = pick[0];
    const bool done = cnt[x] == k || shift == 0;  // the bucket is taken whole, or fully known
    prefix |= uint32_t(x) << shift;
    for (int l = tid; l < ctas; l += kThreads) {
      const int nlo = x + 1 < kSearchCands ? res[l * kSearchCands + x + 1] : lo[l];
      hi[l] = res[l * kSearchCands + x];
      lo[l] = nlo;
    }
    __syncthreads();
    if (done) break;
    shift -= kSearchBits;
  }
  // 4. this CTA's share of the bucket and its first slot
  if (tid < 32) {
    int above_all = 0, above_before = 0, at_before = 0;
    for (int l = tid; l < ctas; l += 32) {
      above_all += lo[l];
      if (l < c) above_before += lo[l], at_before += hi[l] - lo[l];
    }
    above_all = __reduce_add_sync(kFull, above_all);
    above_before = __reduce_add_sync(kFull, above_before);
    at_before = __reduce_add_sync(kFull, at_before);
    const int need = k - above_all;  // taken from the bucket, lowest blocks first
    if (tid == 0) {
      pick[1] = max(0, min(need - at_before, hi[c] - lo[c]));
      pick[2] = above_before + min(need, at_before);
    }
  }
  __syncthreads();
  const int take = pick[1], start = pick[2];
  const uint32_t mask = shift == 0 ? kFull : ~((1u << shift) - 1u);
  uint32_t carry = 0;  // above in the low, in the bucket in the high 16 bits
#pragma unroll
  for (int j = 0; j < KPT; ++j) {
    const int i = j * kThreads + tid;
    const uint32_t m = i < count ? own[i] & mask : 0u;
    const bool is_above = i < count && m > prefix, is_at = i < count && m == prefix;
    uint32_t before, total;
    cub::BlockScan<uint32_t, kThreads>(scan).ExclusiveSum(
        uint32_t(is_above) | uint32_t(is_at) << 16, before, total);
    before += carry;
    carry += total;
    const int n_above = int(before & 0xffffu), n_at = int(before >> 16);
    if (is_above || (is_at && n_at < take)) {
      out[start + n_above + min(n_at, take)] = first + i;
      if (sel.hits) atomicAdd(&sel.hits[first + i], 1u);
    }
    if (j + 1 < KPT) __syncthreads();
  }
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

namespace {

// A cooperative launch (every CTA resident at once) of a (ctas, kv_heads) grid of kThreads-thread
// CTAs: cudaLaunchKernelEx(&l.cfg, kernel, args...).
struct CoopLaunch {
  cudaLaunchConfig_t cfg{};
  cudaLaunchAttribute attr[1]{};
  CoopLaunch(int ctas, int kv_heads, size_t smem, cudaStream_t s) {
    cfg.gridDim = dim3(ctas, kv_heads);
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
  }
  CoopLaunch(const CoopLaunch&) = delete;
  CoopLaunch& operator=(const CoopLaunch&) = delete;
};

// The fused selection's launch.
template <int D, int KPT>
cudaError_t launch_coop(const KvLayerDev& kv, const float* q, int group, float scale,
                        const SelectParams& p, const PassState* st, const SelectionDev& sel,
                        int ctas, cudaStream_t s) {
  const CoopLaunch l(ctas, kv.kv_heads, 0, s);
  static const bool flip = [] {
    const char* e = std::getenv("RESA_COOP_BARRIER");
    return !(e && std::strcmp(e, "gen") == 0);
  }();
  return cudaLaunchKernelEx(&l.cfg, select_coop_kernel<D, KPT>, kv, q, group, scale, p, st, sel,
                            flip);
}

// Resident CTAs per SM of the kernel (the largest instance), asked once per process.
template <int D>
int coop_ctas_per_sm() {
  static const int n = [] {
    int b = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, select_coop_kernel<D, 4>, kThreads, 0) !=
        cudaSuccess) {
      (void)cudaGetLastError();
      b = 0;
    }
    return b;
  }();
  return n;
}

}  // namespace

int fused_ctas(const KvLayerDev& kv, int sm_count) {
  int per_sm = 0;
  (void)dispatch_dim<128, 64, 32, 16>(kv.head_dim, [&](auto dc) {
    per_sm = coop_ctas_per_sm<decltype(dc)::value>();
    return cudaSuccess;
  });
  if (kv.kv_heads < 1 || per_sm < 1) return 0;
  // One CTA per SM at most (all must be resident), no more than one per 256 blocks, and each
  // holding at most 4 rows of 1024 blocks.
  const int ctas =
      std::min({per_sm * sm_count / kv.kv_heads, kMaxCoopCtas, (kv.cap_blocks + 255) / 256});
  // Packed counts of 16 bits (select_and_write) hold at most 65535 blocks per head.
  return ctas >= 1 && kv.cap_blocks < 65536 && (kv.cap_blocks + ctas - 1) / ctas <= 4 * kThreads
             ? ctas
             : 0;
}

cudaError_t fused_launch(const KvLayerDev& kv, const float* q, int group, float scale,
                         const SelectParams& p, const PassState* st, const SelectionDev& sel,
                         int sm_count, cudaStream_t s) {
  const int ctas = fused_ctas(kv, sm_count);
  if (!sel.work || ctas < 1) return cudaErrorInvalidValue;
  const int rows = ((kv.cap_blocks + ctas - 1) / ctas + kThreads - 1) / kThreads;
  return dispatch_dim<128, 64, 32, 16>(kv.head_dim, [&](auto dc) {
    constexpr int D = decltype(dc)::value;
    if (rows <= 1) return launch_coop<D, 1>(kv, q, group, scale, p, st, sel, ctas, s);
    if (rows <= 2) return launch_coop<D, 2>(kv, q, group, scale, p, st, sel, ctas, s);
    return launch_coop<D, 4>(kv, q, group, scale, p, st, sel, ctas, s);
  });
}

namespace {

// The shared memory an instance may take (set once per instance; the launch asks for less).
int smem_optin() {
  static const int n = [] {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      v = 0;
    }
    return v;
  }();
  return n;
}

// kSorted's instance for the rows of 1024 blocks a CTA holds: f(integral_constant<KPT>).
template <typename F>
cudaError_t dispatch_rows(int rows, F&& f) {
  if (rows <= 1) return f(std::integral_constant<int, 1>{});
  if (rows <= 2) return f(std::integral_constant<int, 2>{});
  return f(std::integral_constant<int, 4>{});
}

int rows_of(const KvLayerDev& kv, int ctas) {
  return ((kv.cap_blocks + ctas - 1) / ctas + kThreads - 1) / kThreads;
}

// The dynamic shared memory the instance may take: what a CTA may have less its static shared
// memory, allowed once per instance (0: it could not be).
template <int D, int KPT>
size_t sorted_dyn_limit() {
  static const size_t n = [] {
    cudaFuncAttributes a{};
    if (cudaFuncGetAttributes(&a, select_sorted_kernel<D, KPT>) != cudaSuccess ||
        size_t(smem_optin()) <= a.sharedSizeBytes) {
      (void)cudaGetLastError();
      return size_t(0);
    }
    const size_t dyn = size_t(smem_optin()) - a.sharedSizeBytes;
    if (cudaFuncSetAttribute(select_sorted_kernel<D, KPT>,
                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                             int(dyn)) != cudaSuccess) {
      (void)cudaGetLastError();
      return size_t(0);
    }
    return dyn;
  }();
  return n;
}

template <int D, int KPT>
cudaError_t launch_sorted(const KvLayerDev& kv, const float* q, int group, float scale,
                          const SelectParams& p, const PassState* st, const SelectionDev& sel,
                          int ctas, cudaStream_t s) {
  if (sorted_dyn_limit<D, KPT>() < sorted_smem_bytes<KPT>(kv.cap_blocks, ctas))
    return cudaErrorInvalidValue;
  const CoopLaunch l(ctas, kv.kv_heads, sorted_smem_bytes<KPT>(kv.cap_blocks, ctas), s);
  return cudaLaunchKernelEx(&l.cfg, select_sorted_kernel<D, KPT>, kv, q, group, scale, p, st, sel);
}

}  // namespace

int sorted_ctas(const KvLayerDev& kv, int sm_count) {
  const int ctas = fused_ctas(kv, sm_count);
  if (ctas < 1) return 0;
  bool fits = false;
  (void)dispatch_dim<128, 64, 32, 16>(kv.head_dim, [&](auto dc) {
    return dispatch_rows(rows_of(kv, ctas), [&](auto kc) {
      constexpr int D = decltype(dc)::value, KPT = decltype(kc)::value;
      const size_t bytes = sorted_smem_bytes<KPT>(kv.cap_blocks, ctas);
      int per_sm = 0;
      if (bytes <= sorted_dyn_limit<D, KPT>() &&
          cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, select_sorted_kernel<D, KPT>,
                                                        kThreads, bytes) == cudaSuccess)
        fits = per_sm * sm_count >= ctas * kv.kv_heads;  // every CTA resident at once
      (void)cudaGetLastError();
      return cudaSuccess;
    });
  });
  return fits ? ctas : 0;
}

cudaError_t sorted_launch(const KvLayerDev& kv, const float* q, int group, float scale,
                          const SelectParams& p, const PassState* st, const SelectionDev& sel,
                          int sm_count, cudaStream_t s) {
  const int ctas = sorted_ctas(kv, sm_count);
  if (!sel.work || ctas < 1) return cudaErrorInvalidValue;
  return dispatch_dim<128, 64, 32, 16>(kv.head_dim, [&](auto dc) {
    return dispatch_rows(rows_of(kv, ctas), [&](auto kc) {
      return launch_sorted<decltype(dc)::value, decltype(kc)::value>(kv, q, group, scale, p, st,
                                                                     sel, ctas, s);
    });
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
