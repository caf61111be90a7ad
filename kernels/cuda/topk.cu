// Top-k block selection with the scores held in registers (RESA.md steps 5-6). Contract:
// top_blocks in attention.h; the loop kernel in attention.cu is the reference and the fallback
// for caches of more than kMaxBlocks blocks per head.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/topk.h"

namespace resa::cuda::topk {
namespace {

constexpr uint32_t kFull = 0xffffffffu;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 256;  // 8-bit digits, 4 passes over the 32-bit key

// One CTA of 1024 threads per KV head; thread t holds blocks j * 1024 + t, j < KPT, as uint32
// keys whose order is the score order: forced blocks (sink, local) get the largest key, -0 the
// key of +0 (equal for the CPU twin's float comparison).
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
  __shared__ __align__(16) int sub[kBins][32];  // a copy per lane: no address shared in a warp
  __shared__ __align__(16) int tot[kBins];
  __shared__ uint32_t row_counts[KPT][kWarps + 1];  // (above | in bucket << 16) per row, warp
  const int h = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int ctx = st->pos0 + 1, bs = kv.block_size, nb = (ctx + bs - 1) / bs;
  const int k = selection_size(nb, p);
  // Block j * kThreads + tid exists iff j * kThreads < lim. Every test of a block index below is
  // written against lim (one register), so that the compiler keeps no per-row index alive.
  const int lim = nb - tid;
  const int rows = min(KPT, (nb + kThreads - 1) / kThreads);  // rows holding a block < nb
  if (tid == 0) sel.count[h] = k;
  if (k <= 0) return;
  if (k >= nb) {  // every block
#pragma unroll
    for (int j = 0; j < KPT; ++j) {
      if (j >= rows) break;
      if (j * kThreads < lim) {
        const int b = j * kThreads + tid;
        sel.blocks[size_t(h) * kv.cap_blocks + b] = b;
        if (sel.hits) atomicAdd(&sel.hits[b], 1u);
      }
    }
    return;
  }

  // Keys of the blocks; blocks past nb (in rows < rows) get key 0, the lowest, and take no part:
  // at least k + 1 blocks exist, so the k-th largest key and the blocks picked are those of the
  // existing blocks alone, and blocks past nb come last in index order.
  const float* sc = sel.scores + size_t(h) * kv.cap_blocks + tid;
  uint32_t key[KPT];
#pragma unroll
  for (int j = 0; j < KPT; ++j) {
    if (j >= rows) break;  // rows is uniform: each row loop ends after the last row in use
    key[j] = j * kThreads < lim ? __float_as_uint(sc[j * kThreads]) : 0u;
  }
  // Thread t owns (zeroes, then sums) words q * 4 .. q * 4 + 3 and 16 + q * 4 .. 19 + q * 4 of
  // bin t / 4, q = t % 4.
  {
    const int own = (tid >> 2) * 8 + (tid & 3);  // in int4 units
    reinterpret_cast<int4*>(sub)[own] = reinterpret_cast<int4*>(sub)[own + 4] =
        make_int4(0, 0, 0, 0);
  }
  const int local_from = nb - p.local - tid;  // block >= nb - local: forced
#pragma unroll
  for (int j = 0; j < KPT; ++j) {
    if (j >= rows) break;
    uint32_t u = key[j];
    if (u == 0x80000000u) u = 0;
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    if ((j == 0 && p.sink && tid == 0) || j * kThreads >= local_from) u = kFull;
    key[j] = j * kThreads < lim ? u : 0u;
  }
  __syncthreads();

  uint32_t prefix = 0, mask = 0;  // the digits found so far, and their bits
  int remaining = k;              // blocks still wanted among the keys matching prefix under mask
#pragma unroll 1
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
#pragma unroll
    for (int j = 0; j < KPT; ++j) {
      if (j >= rows) break;
      if ((key[j] & mask) == prefix) atomicAdd(&sub[(key[j] >> shift) & 0xffu][lane], 1);
    }
    __syncthreads();
    {  // bin totals; each thread clears the words it read, for the next pass
      int4* sub4 = reinterpret_cast<int4*>(sub);
      const int own = (tid >> 2) * 8 + (tid & 3);
      const int4 a = sub4[own], b = sub4[own + 4];
      sub4[own] = sub4[own + 4] = make_int4(0, 0, 0, 0);
      int c = a.x + a.y + a.z + a.w + b.x + b.y + b.z + b.w;
      c += __shfl_xor_sync(kFull, c, 1);
      c += __shfl_xor_sync(kFull, c, 2);
      if ((tid & 3) == 0) tot[tid >> 2] = c;
    }
    __syncthreads();
    // Lane l holds bins 255 - 8l down to 248 - 8l; counts summed from the top bin down.
    const int4 lo4 = reinterpret_cast<const int4*>(tot)[62 - 2 * lane];  // bins 248-8l .. 251-8l
    const int4 hi4 = reinterpret_cast<const int4*>(tot)[63 - 2 * lane];  // bins 252-8l .. 255-8l
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
        const int bin = 255 - 8 * lane - i, c = tot[bin];
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
    if (in_bin == remaining) break;  // the whole bucket is picked (the same in every thread)
  }

  // Row j's flags as bit j: above the bucket, in it (the keys are dead from here on).
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
    if (lane == 0) row_counts[j][warp] = uint32_t(__popc(above)) | uint32_t(__popc(at)) << 16;
  }
  __syncthreads();
  // Lane j: row j's total, and its count in the warps before this one; then the rows' exclusive
  // scan gives this warp's start in row j.
  uint32_t total = 0, before = 0;
  if (lane < rows) {
#pragma unroll 8
    for (int w = 0; w < kWarps; ++w) {
      const uint32_t v = row_counts[lane][w];
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

template <int KPT>
cudaError_t launch_kpt(const KvLayerDev& kv, const SelectParams& p, const PassState* st,
                       const SelectionDev& sel, cudaStream_t s) {
  return launch(topk_registers_kernel<KPT>, dim3(kv.kv_heads), dim3(kThreads), 0, s, kv, p, st,
                sel);
}

}  // namespace

cudaError_t registers_launch(const KvLayerDev& kv, const SelectParams& p, const PassState* st,
                             const SelectionDev& sel, cudaStream_t s) {
  // The fewest keys per thread that cover the cache: nb is only known on the device (a recorded
  // step replays at later positions).
  const int c = kv.cap_blocks;
  if (c <= 1 * kThreads) return launch_kpt<1>(kv, p, st, sel, s);
  if (c <= 2 * kThreads) return launch_kpt<2>(kv, p, st, sel, s);
  if (c <= 4 * kThreads) return launch_kpt<4>(kv, p, st, sel, s);
  if (c <= 8 * kThreads) return launch_kpt<8>(kv, p, st, sel, s);
  if (c <= 16 * kThreads) return launch_kpt<16>(kv, p, st, sel, s);
  if (c <= 32 * kThreads) return launch_kpt<32>(kv, p, st, sel, s);
  return cudaErrorInvalidValue;
}

}  // namespace resa::cuda::topk
