// Attention kernels over the device KV cache. Layouts and contracts: attention.h.
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/decode.h"
#include "kernels/cuda/prefill_tc.h"
#include "kernels/cuda/scores.cuh"
#include "kernels/cuda/topk.h"

namespace resa::cuda {
namespace {

// ---------------------------------------------------------------- KV write and summaries

__global__ void kv_write_kernel(KvLayerDev kv, const float* k, const float* v,
                                const PassState* st) {
  grid_dependency_wait();
  allow_next_launch();
  const int i = blockIdx.x, h = blockIdx.y, d = kv.head_dim;
  const int pos = st->pos0 + i;
  const size_t src = (size_t(i) * kv.kv_heads + h) * d;
  const size_t dst = (size_t(h) * kv.capacity + pos) * d;
  for (int x = threadIdx.x; x < d; x += blockDim.x) {
    kv.k[dst + x] = f2bf(k[src + x]);
    kv.v[dst + x] = f2bf(v[src + x]);
  }
}

// Dimension x of one block's summary: min and max of keys t0 .. t1 - 1 (kb: the head's keys),
// written to out[x] and out[d + x].
__device__ __forceinline__ void summarize_column(const uint16_t* kb, int d, int x, int t0, int t1,
                                                 uint16_t* out) {
  float lo = INFINITY, hi = -INFINITY;
  for (int t = t0; t < t1; ++t) {
    const float f = __uint_as_float(uint32_t(kb[size_t(t) * d + x]) << 16);
    lo = fminf(lo, f);
    hi = fmaxf(hi, f);
  }
  out[x] = f2bf(lo);
  out[d + x] = f2bf(hi);
}

// Block first + blockIdx.x of KV head blockIdx.y; one thread per dimension. With st, the
// range is the pass's touched blocks (RESA.md: touched blocks only, O(n) per write).
__global__ void summary_kernel(KvLayerDev kv, int first, int last, int tokens,
                               const PassState* st) {
  grid_dependency_wait();
  allow_next_launch();
  if (st) {
    first = st->pos0 / kv.block_size;
    last = (st->pos0 + st->n - 1) / kv.block_size;
    tokens = st->ctx_end;
  }
  const int b = first + blockIdx.x;
  if (b > last) return;
  const int h = blockIdx.y, d = kv.head_dim;
  const int t0 = b * kv.block_size, t1 = min(t0 + kv.block_size, tokens);
  const uint16_t* kb = kv.k + size_t(h) * kv.capacity * d;
  uint16_t* out = kv.summ + (size_t(h) * kv.cap_blocks + b) * 2 * d;
  for (int x = threadIdx.x; x < d; x += blockDim.x) {
    summarize_column(kb, d, x, t0, t1, out);
  }
}

// A decode step's kv_write (one position) and its block's summary in one launch: CTA = KV head,
// thread = dimension. Thread x writes K/V[pos][x] and then reads only column x of the block, so
// its own store is the only one it depends on (program order; no barrier needed).
__global__ void kv_write_one_kernel(KvLayerDev kv, const float* k, const float* v,
                                    const PassState* st) {
  grid_dependency_wait();
  allow_next_launch();
  const int h = blockIdx.x, d = kv.head_dim, pos = st->pos0;
  const int b = pos / kv.block_size, t0 = b * kv.block_size;
  const int t1 = min(t0 + kv.block_size, st->ctx_end);
  uint16_t* kb = kv.k + size_t(h) * kv.capacity * d;
  uint16_t* vb = kv.v + size_t(h) * kv.capacity * d;
  uint16_t* out = kv.summ + (size_t(h) * kv.cap_blocks + b) * 2 * d;
  for (int x = threadIdx.x; x < d; x += blockDim.x) {
    kb[size_t(pos) * d + x] = f2bf(k[size_t(h) * d + x]);
    vb[size_t(pos) * d + x] = f2bf(v[size_t(h) * d + x]);
    summarize_column(kb, d, x, t0, t1, out);
  }
}

// rope_qk then kv_write_one in one launch (a decode step): CTA = KV head, thread = dimension.
// Threads x < head_dim / 2 rotate the pair (x, x + head_dim / 2) of the head's group of queries
// and of its key, with rope_kernel's arithmetic; after the barrier each thread summarizes its
// column, which the pair's other thread may have written.
__global__ void rope_kv_write_one_kernel(KvLayerDev kv, float* q, int group, float* k,
                                         const float* v, const PassState* st,
                                         const float* inv_freq) {
  grid_dependency_wait();
  allow_next_launch();
  const int h = blockIdx.x, d = kv.head_dim, half = d / 2, x = threadIdx.x, pos = st->pos0;
  const int b = pos / kv.block_size, t0 = b * kv.block_size;
  const int t1 = min(t0 + kv.block_size, st->ctx_end);
  uint16_t* kb = kv.k + size_t(h) * kv.capacity * d;
  uint16_t* vb = kv.v + size_t(h) * kv.capacity * d;
  if (x < half) {
    const float a = float(pos) * inv_freq[x];
    const float c = cosf(a), sn = sinf(a);
    auto rotate = [&](float* r) {
      const float p0 = r[x], p1 = r[x + half];
      r[x] = p0 * c - p1 * sn;
      r[x + half] = p1 * c + p0 * sn;
    };
    for (int g = 0; g < group; ++g) rotate(q + size_t(h * group + g) * d);
    float* kr = k + size_t(h) * d;
    rotate(kr);
    kb[size_t(pos) * d + x] = f2bf(kr[x]);
    kb[size_t(pos) * d + x + half] = f2bf(kr[x + half]);
  }
  vb[size_t(pos) * d + x] = f2bf(v[size_t(h) * d + x]);
  __syncthreads();
  summarize_column(kb, d, x, t0, t1, kv.summ + (size_t(h) * kv.cap_blocks + b) * 2 * d);
}

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Roughly normal values (sum of four uniforms, unit variance) from a counter hash.
__global__ void fill_kernel(KvLayerDev kv, int tokens, uint64_t seed) {
  const int64_t per_head = int64_t(tokens) * kv.head_dim;
  const int64_t total = per_head * kv.kv_heads;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t h = e / per_head, r = e % per_head;
    const size_t dst = size_t(h) * kv.capacity * kv.head_dim + size_t(r);
    for (int which = 0; which < 2; ++which) {
      const uint64_t z = mix64(seed * 0x9e3779b97f4a7c15ull + uint64_t(e) * 2 + which);
      float s = 0;
      for (int j = 0; j < 4; ++j) s += float((z >> (16 * j)) & 0xffff) * (1.0f / 65536.0f);
      const float val = (s - 2.0f) * 1.7320508f;
      (which ? kv.v : kv.k)[dst] = f2bf(val);
    }
  }
}

// ---------------------------------------------------------------- split-KV decode

constexpr int kDecodeThreads = 128;
constexpr int kDecodeUnroll = 4;
constexpr int kDecodeBlockCache = 256;  // selected block ids of a sparse CTA's range, in smem

// Grid (splits, kv_heads). Each CTA reads its share of one KV head's keys once for all G query
// heads of the group (GQA-aware). A key is read by D/8 lanes (16 bytes each). Sparse: the key
// index runs over the selected blocks' positions. Output: per split, normalised partial
// attention and its log2-sum-exp, merged by combine_kernel (flash-decoding).
template <int D, int G>
__global__ void __launch_bounds__(kDecodeThreads)
    decode_kernel(KvLayerDev kv, const float* __restrict__ q, float scale_log2, const PassState* st,
                  const int* sel_blocks, const int* sel_count, int n_heads, float* part_o,
                  float* part_lse) {
  constexpr int LPK = D / 8;
  constexpr int NG = kDecodeThreads / LPK;  // key groups per CTA
  constexpr int U = kDecodeUnroll;
  const int h = blockIdx.y, split = blockIdx.x, splits = gridDim.x;
  const int gi = threadIdx.x / LPK, li = threadIdx.x % LPK;
  const int ctx = st->pos0 + 1, bs = kv.block_size;
  const bool sparse = sel_blocks != nullptr;
  const int* blocks = sparse ? sel_blocks + size_t(h) * kv.cap_blocks : nullptr;
  const int total = sparse ? sel_count[h] * bs : ctx;
  const int per = (total + splits - 1) / splits;
  const int begin = split * per, end = min(total, begin + per);
  // Sparse: the block ids of this CTA's key range go to shared memory first, so a key's address
  // does not wait on a global load of its block id (a dependent load per batch). Ranges of more
  // than kDecodeBlockCache blocks (few splits) read the ids past the cache from global memory.
  __shared__ int s_blk[kDecodeBlockCache];
  const int blk0 = begin / bs;
  const int nblk = sparse && end > begin ? min(kDecodeBlockCache, (end - 1) / bs - blk0 + 1) : 0;
  for (int i = threadIdx.x; i < nblk; i += kDecodeThreads) s_blk[i] = blocks[blk0 + i];
  __syncthreads();

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
  const uint16_t* kbase = kv.k + size_t(h) * kv.capacity * D + li * 8;
  const uint16_t* vbase = kv.v + size_t(h) * kv.capacity * D + li * 8;

  for (int base = begin; base < end; base += NG * U) {  // same trip count for every thread
    uint4 kr[U], vr[U];
    bool ok[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int i = base + gi + u * NG;
      int pos = -1;
      if (i < end) {
        if (sparse) {
          const int j = i / bs - blk0;
          pos = (j < nblk ? s_blk[j] : blocks[i / bs]) * bs + i % bs;
        } else {
          pos = i;
        }
        if (pos >= ctx) pos = -1;
      }
      ok[u] = pos >= 0;
      if (ok[u]) {
        kr[u] = ld_stream(kbase + size_t(pos) * D);
        vr[u] = ld_stream(vbase + size_t(pos) * D);
      } else {
        kr[u] = vr[u] = make_uint4(0, 0, 0, 0);
      }
    }
    float s[U][G];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float kf[8];
      unpack8(kr[u], kf);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float d = 0.f;
#pragma unroll
        for (int j = 0; j < 8; ++j) d += qf[g][j] * kf[j];
#pragma unroll
        for (int o = LPK / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        s[u][g] = ok[u] ? d : -INFINITY;
      }
    }
    float vf[U][8];
#pragma unroll
    for (int u = 0; u < U; ++u) unpack8(vr[u], vf[u]);
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float mx = m[g];
#pragma unroll
      for (int u = 0; u < U; ++u) mx = fmaxf(mx, s[u][g]);
      if (mx == -INFINITY) continue;
      const float corr = exp2f(m[g] - mx);
      l[g] *= corr;
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[g][j] *= corr;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const float p = exp2f(s[u][g] - mx);
        l[g] += p;
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[g][j] += p * vf[u][j];
      }
      m[g] = mx;
    }
  }

  // Merge the key groups of this CTA.
  __shared__ float sm_m[NG][G], sm_l[NG][G];
  __shared__ float sm_acc[NG][G][D];
#pragma unroll
  for (int g = 0; g < G; ++g) {
#pragma unroll
    for (int j = 0; j < 8; ++j) sm_acc[gi][g][li * 8 + j] = acc[g][j];
    if (li == 0) sm_m[gi][g] = m[g], sm_l[gi][g] = l[g];
  }
  __syncthreads();
  for (int e = threadIdx.x; e < G * D; e += kDecodeThreads) {
    const int g = e / D, x = e % D;
    float M = -INFINITY;
    for (int i = 0; i < NG; ++i) M = fmaxf(M, sm_m[i][g]);
    float L = 0.f, o = 0.f;
    if (M != -INFINITY) {
      for (int i = 0; i < NG; ++i) {
        const float w = exp2f(sm_m[i][g] - M);
        L += w * sm_l[i][g];
        o += w * sm_acc[i][g][x];
      }
    }
    const size_t row = size_t(split) * n_heads + h * G + g;
    part_o[row * D + x] = L > 0.f ? o / L : 0.f;
    if (x == 0) part_lse[row] = L > 0.f ? M + log2f(L) : -INFINITY;
  }
}

__global__ void combine_kernel(const float* part_o, const float* part_lse, int splits, int n_heads,
                               int d, float* out) {
  const int hq = blockIdx.x;
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s) M = fmaxf(M, part_lse[size_t(s) * n_heads + hq]);
  for (int x = threadIdx.x; x < d; x += blockDim.x) {
    float o = 0.f, W = 0.f;
    if (M != -INFINITY) {
      for (int s = 0; s < splits; ++s) {
        const float w = exp2f(part_lse[size_t(s) * n_heads + hq] - M);
        W += w;
        o += w * part_o[(size_t(s) * n_heads + hq) * d + x];
      }
    }
    out[size_t(hq) * d + x] = W > 0.f ? o / W : 0.f;
  }
}

// ---------------------------------------------------------------- chunked causal prefill

constexpr int kPrefillWarps = 8;
constexpr int kPrefillRowsPerWarp = 16;
constexpr int kPrefillRows = kPrefillWarps * kPrefillRowsPerWarp;  // (query, head) rows per CTA
constexpr int kPrefillK = 32;                                      // keys per tile (one per lane)

template <int D>
constexpr size_t prefill_smem_bytes() {
  return (size_t(kPrefillRows) * D + size_t(kPrefillK) * (D + 4) + size_t(kPrefillK) * D) * 4;
}

// Grid (query tiles, KV heads, key splits). A CTA holds 128 rows = (query, head-in-group)
// pairs of one KV head, so each K/V tile is read once for the whole group (GQA-aware). Keys in
// tiles of 32 in shared memory (f32, rows padded by 4 words: conflict-free 16-byte reads);
// lane j scores key j for the warp's 16 rows, then every lane accumulates its D/32 output
// dimensions. Grid z splits the keys (few queries over a long cache: rectification); each
// split then writes a normalised partial and its log2-sum-exp for combine_kernel.
template <int D>
__global__ void __launch_bounds__(kPrefillWarps * 32)
    prefill_kernel(KvLayerDev kv, const float* __restrict__ q, float* out, int n, int n_heads,
                   float scale_log2, const PassState* st, float* part_o, float* part_lse) {
  constexpr int KT = kPrefillK, DL = (D + 31) / 32, KS = D + 4, RW = kPrefillRowsPerWarp;
  extern __shared__ float4 smem4[];
  float* sq = reinterpret_cast<float*>(smem4);  // [128][D]
  float* sk = sq + kPrefillRows * D;            // [32][KS]
  float* sv = sk + KT * KS;                     // [32][D]
  const int G = n_heads / kv.kv_heads, h = blockIdx.y;
  const int QT = kPrefillRows / G, q0 = blockIdx.x * QT;
  const int nq = min(QT, n - q0), rows = nq * G;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, rb = warp * RW;
  const int pos0 = st->pos0;
  for (int e = threadIdx.x; e < kPrefillRows * D; e += blockDim.x) {
    const int r = e / D, x = e % D;
    sq[e] = r < rows ? q[(size_t(q0 + r / G) * n_heads + h * G + r % G) * D + x] * scale_log2 : 0.f;
  }
  const int last_pos = pos0 + q0 + nq - 1;
  float m[RW], l[RW], acc[RW][DL];
#pragma unroll
  for (int r = 0; r < RW; ++r) {
    m[r] = -INFINITY, l[r] = 0.f;
#pragma unroll
    for (int x = 0; x < DL; ++x) acc[r][x] = 0.f;
  }
  const uint16_t* kb = kv.k + size_t(h) * kv.capacity * D;
  const uint16_t* vb = kv.v + size_t(h) * kv.capacity * D;
  const int splits = gridDim.z, split = blockIdx.z;
  const int tiles = last_pos / KT + 1, per = (tiles + splits - 1) / splits;
  const int kt_begin = split * per * KT, kt_end = min(tiles, (split + 1) * per) * KT;
  for (int kt0 = kt_begin; kt0 < kt_end; kt0 += KT) {
    __syncthreads();
    for (int e = threadIdx.x; e < KT * D / 8; e += blockDim.x) {
      const int t = e / (D / 8), c = (e % (D / 8)) * 8, pos = kt0 + t;
      float kf[8], vf[8];
      if (pos <= last_pos) {
        unpack8(*reinterpret_cast<const uint4*>(kb + size_t(pos) * D + c), kf);
        unpack8(*reinterpret_cast<const uint4*>(vb + size_t(pos) * D + c), vf);
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) kf[j] = vf[j] = 0.f;
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) sk[t * KS + c + j] = kf[j], sv[t * D + c + j] = vf[j];
    }
    __syncthreads();
    if (rb >= rows) continue;  // warp-uniform; the next iteration's barriers are still reached
    float s[RW];
#pragma unroll
    for (int r = 0; r < RW; ++r) s[r] = 0.f;
#pragma unroll 4
    for (int x = 0; x < D; x += 4) {
      const float4 k4 = *reinterpret_cast<const float4*>(sk + lane * KS + x);
#pragma unroll
      for (int r = 0; r < RW; ++r) {
        const float4 q4 = *reinterpret_cast<const float4*>(sq + (rb + r) * D + x);
        s[r] += q4.x * k4.x + q4.y * k4.y + q4.z * k4.z + q4.w * k4.w;
      }
    }
    const int kpos = kt0 + lane;
#pragma unroll
    for (int r = 0; r < RW; ++r) {
      const int row = rb + r;
      const bool valid = row < rows && kpos <= pos0 + q0 + row / G;
      const float sr = valid ? s[r] : -INFINITY;
      const float m_new = fmaxf(m[r], warp_max(sr));
      if (m_new == -INFINITY) {  // warp-uniform: nothing visible yet for this row
        s[r] = 0.f;
        continue;
      }
      const float corr = exp2f(m[r] - m_new);
      const float p = exp2f(sr - m_new);
      l[r] = l[r] * corr + warp_sum(p);
#pragma unroll
      for (int x = 0; x < DL; ++x) acc[r][x] *= corr;
      m[r] = m_new;
      s[r] = p;
    }
#pragma unroll 4
    for (int j = 0; j < KT; ++j) {
      float vj[DL];
#pragma unroll
      for (int x = 0; x < DL; ++x) vj[x] = lane + 32 * x < D ? sv[j * D + lane + 32 * x] : 0.f;
#pragma unroll
      for (int r = 0; r < RW; ++r) {
        const float pj = __shfl_sync(0xffffffffu, s[r], j);
#pragma unroll
        for (int x = 0; x < DL; ++x) acc[r][x] += pj * vj[x];
      }
    }
  }
#pragma unroll
  for (int r = 0; r < RW; ++r) {
    const int row2 = rb + r;
    if (row2 >= rows) continue;
    const float inv = l[r] > 0.f ? 1.0f / l[r] : 0.f;
    const size_t row = size_t(q0 + row2 / G) * n_heads + h * G + row2 % G;
    float* dst = splits == 1 ? out + row * D : part_o + (size_t(split) * n * n_heads + row) * D;
#pragma unroll
    for (int x = 0; x < DL; ++x)
      if (lane + 32 * x < D) dst[lane + 32 * x] = acc[r][x] * inv;
    if (splits > 1 && lane == 0)
      part_lse[size_t(split) * n * n_heads + row] = l[r] > 0.f ? m[r] + log2f(l[r]) : -INFINITY;
  }
}

// ---------------------------------------------------------------- ReSA selection

constexpr int kScoreThreads = 256;
constexpr int kScoreUnroll = 4;

// Grid (CTAs per head, kv_heads): the warps of a head's CTAs share its blocks (scores.cuh).
template <int D>
__global__ void __launch_bounds__(kScoreThreads)
    scores_kernel(KvLayerDev kv, const float* __restrict__ q, int group, float scale,
                  const PassState* st, float* scores) {
  grid_dependency_wait();
  allow_next_launch();
  const int h = blockIdx.y;
  __shared__ float qs[D];
  scores::group_query<D>(q, h, group, scale, qs);
  const int ctx = st->pos0 + 1, nb = (ctx + kv.block_size - 1) / kv.block_size;
  float* out = scores + size_t(h) * kv.cap_blocks;
  scores::for_each_score<D, kScoreUnroll>(
      kv, qs, h, 0, nb, blockIdx.x * (kScoreThreads / 32) + int(threadIdx.x >> 5),
      gridDim.x * (kScoreThreads / 32), [&](int b, float s) { out[b] = s; });
}

constexpr int kTopkThreads = 1024;

// One CTA per KV head: radix select (4 passes of 8 bits) of the k-th largest key, where forced
// blocks (sink, local) get the largest key; then an ordered compaction writes the picked
// blocks ascending. Ties at the threshold go to the lower index, as in the CPU twin.
__global__ void __launch_bounds__(kTopkThreads)
    topk_kernel(KvLayerDev kv, SelectParams p, const PassState* st, SelectionDev sel) {
  using Scan = cub::BlockScan<int, kTopkThreads>;
  __shared__ typename Scan::TempStorage tmp;
  __shared__ int hist[256];
  __shared__ uint32_t s_prefix;
  __shared__ int s_remaining;
  const int h = blockIdx.x, tid = threadIdx.x;
  const int ctx = st->pos0 + 1, bs = kv.block_size, nb = (ctx + bs - 1) / bs;
  const int k = topk::selection_size(nb, p);
  const float* sc = sel.scores + size_t(h) * kv.cap_blocks;
  auto key_of = [&](int b) -> uint32_t {
    if ((p.sink && b == 0) || b >= nb - p.local) return 0xffffffffu;
    uint32_t u = __float_as_uint(sc[b]);
    if (u == 0x80000000u) u = 0;  // -0 ties with +0, as in the CPU twin's float comparison
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  };
  const bool all = k >= nb;
  // k == 0 (no budget, nothing forced): T above every key, nothing picked.
  uint32_t prefix = k > 0 ? 0u : 0xffffffffu, mask = 0;
  int remaining = k;
  if (!all) {
    for (int shift = 24; shift >= 0 && k > 0; shift -= 8) {
      if (tid < 256) hist[tid] = 0;
      __syncthreads();
      for (int b = tid; b < nb; b += kTopkThreads) {
        const uint32_t u = key_of(b);
        if ((u & mask) == prefix) atomicAdd(&hist[(u >> shift) & 255], 1);
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
  const uint32_t T = prefix;
  const int C = (nb + kTopkThreads - 1) / kTopkThreads;
  const int b0 = min(nb, tid * C), b1 = min(nb, b0 + C);
  int eq = 0;
  if (!all)
    for (int b = b0; b < b1; ++b) eq += key_of(b) == T;
  int eq_before;
  __syncthreads();
  Scan(tmp).ExclusiveSum(eq, eq_before);
  int cnt = 0, e = eq_before;
  for (int b = b0; b < b1; ++b) {
    const uint32_t u = all ? 0u : key_of(b);
    bool pick = all || u > T;
    if (!all && u == T) pick = e++ < remaining;
    cnt += pick;
  }
  int out_pos;
  __syncthreads();
  Scan(tmp).ExclusiveSum(cnt, out_pos);
  int* out = sel.blocks + size_t(h) * kv.cap_blocks;
  e = eq_before;
  for (int b = b0; b < b1; ++b) {
    const uint32_t u = all ? 0u : key_of(b);
    bool pick = all || u > T;
    if (!all && u == T) pick = e++ < remaining;
    if (pick) {
      out[out_pos++] = b;
      if (sel.hits) atomicAdd(&sel.hits[b], 1u);
    }
  }
  if (tid == 0) sel.count[h] = k;
}

template <int D, typename F>
cudaError_t dispatch_g(int g, F&& f) {
  switch (g) {
    case 1:
      return f(std::integral_constant<int, 1>{});
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 3:
      return f(std::integral_constant<int, 3>{});
    case 4:
      return f(std::integral_constant<int, 4>{});
    case 5:
      return f(std::integral_constant<int, 5>{});
    case 6:
      return f(std::integral_constant<int, 6>{});
    case 7:
      return f(std::integral_constant<int, 7>{});
    case 8:
      return f(std::integral_constant<int, 8>{});
  }
  return cudaErrorInvalidValue;
}

// The scores grid: at most one wave of resident CTAs over all heads (the occupancy API's CTAs
// per SM; a fixed 8 per SM, which the kernel's registers may not allow, left a partial second
// wave and measured slower), at least one CTA per head.
template <int D>
int score_ctas_per_head(const KvLayerDev& kv, int sm_count) {
  static const int per_sm = [] {
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, scores_kernel<D>, kScoreThreads, 0) !=
            cudaSuccess ||
        n < 1) {
      (void)cudaGetLastError();
      n = 1;
    }
    return n;
  }();
  const int blocks_per_cta = (kScoreThreads / 32) * (32 / (D / 4)) * kScoreUnroll;
  const int need = std::max(1, (kv.cap_blocks + blocks_per_cta - 1) / blocks_per_cta);
  const int most = std::max(1, per_sm * sm_count / std::max(1, kv.kv_heads));
  return std::min(need, most);
}

}  // namespace

bool attention_supported(int head_dim, int group) {
  return (head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128) && group >= 1 &&
         group <= 8;
}

cudaError_t kv_write(const KvLayerDev& kv, const float* k, const float* v, int n,
                     const PassState* st, cudaStream_t s) {
  if (n == 1)
    return launch(kv_write_one_kernel, dim3(kv.kv_heads), dim3(kv.head_dim), 0, s, kv, k, v, st);
  cudaError_t e =
      launch(kv_write_kernel, dim3(n, kv.kv_heads), dim3(kv.head_dim), 0, s, kv, k, v, st);
  if (e != cudaSuccess) return e;
  return launch(summary_kernel, dim3(n / kv.block_size + 2, kv.kv_heads), dim3(kv.head_dim), 0, s,
                kv, 0, 0, 0, st);
}

cudaError_t rope_kv_write_one(const KvLayerDev& kv, float* q, int q_heads, float* k, const float* v,
                              const PassState* st, const float* inv_freq, cudaStream_t s) {
  if (kv.kv_heads < 1 || q_heads % kv.kv_heads != 0 || kv.head_dim % 2 != 0 || kv.head_dim > 1024)
    return cudaErrorInvalidValue;
  return launch(rope_kv_write_one_kernel, dim3(kv.kv_heads), dim3(kv.head_dim), 0, s, kv, q,
                q_heads / kv.kv_heads, k, v, st, inv_freq);
}

cudaError_t summaries_recompute(const KvLayerDev& kv, int first, int last, int tokens,
                                cudaStream_t s) {
  if (last < first) return cudaSuccess;
  return launch(summary_kernel, dim3(last - first + 1, kv.kv_heads), dim3(kv.head_dim), 0, s, kv,
                first, last, tokens, static_cast<const PassState*>(nullptr));
}

int decode_splits(int kv_heads, int sm_count) {
  const int s = (sm_count * 4) / (kv_heads > 0 ? kv_heads : 1);
  return s < 1 ? 1 : (s > 128 ? 128 : s);
}

DecodeRing decode_ring_for(int ctx, bool sparse) {
  return !sparse && ctx <= 65536 ? DecodeRing::kDeep : DecodeRing::kShallow;
}

size_t decode_workspace_floats(int n_heads, int head_dim, int splits) {
  // Partials and their log2-sum-exp, then one counter per head (at least one per KV head).
  return size_t(splits) * n_heads * (head_dim + 1) + size_t(n_heads);
}

namespace {

// kAuto resolved: true for the tensor-core kernel.
bool decode_use_fast(DecodeKernel kernel, int head_dim, int group) {
  static const DecodeKernel forced = [] {
    const char* e = std::getenv("RESA_DECODE_KERNEL");
    if (e && std::strcmp(e, "simt") == 0) return DecodeKernel::kSimt;
    if (e && std::strcmp(e, "fast") == 0) return DecodeKernel::kFast;
    return DecodeKernel::kAuto;
  }();
  switch (kernel) {
    case DecodeKernel::kFast:
      return true;
    case DecodeKernel::kSimt:
      return false;
    case DecodeKernel::kAuto:
      break;
  }
  if (forced != DecodeKernel::kAuto)
    return forced == DecodeKernel::kFast && fast::decode_supported(head_dim, group);
  // Measured on an H200 (docs/benchmarks/h200-s11.json): with whole-row copies the tensor-core
  // kernel reads 256K positions x 8 KV heads in 270 us (94% of copy bandwidth) against 354 us
  // (72%) for the CUDA-core kernel, and their sparse read in 38 against 55 us; so it is the
  // default wherever it applies (head_dim 32, 64, 128).
  return fast::decode_supported(head_dim, group);
}

}  // namespace

cudaError_t attention_decode(const KvLayerDev& kv, const float* q, float* out, int n_heads,
                             float scale, const PassState* st, const SelectionDev* sel, int splits,
                             float* workspace, cudaStream_t s, DecodeKernel kernel,
                             DecodeRing ring) {
  if (kv.kv_heads < 1 || n_heads % kv.kv_heads || splits < 1) return cudaErrorInvalidValue;
  const int group = n_heads / kv.kv_heads;
  if (!attention_supported(kv.head_dim, group)) return cudaErrorInvalidValue;
  if (decode_use_fast(kernel, kv.head_dim, group))
    return fast::decode_launch(kv, q, out, n_heads, scale * kLog2e, st, sel, splits, workspace,
                               ring, s);
  float* part_o = workspace;
  float* part_lse = workspace + size_t(splits) * n_heads * kv.head_dim;
  const cudaError_t e = dispatch_dim<128, 64, 32, 16>(kv.head_dim, [&](auto dc) {
    constexpr int D = decltype(dc)::value;
    return dispatch_g<D>(group, [&](auto gc) {
      constexpr int G = decltype(gc)::value;
      decode_kernel<D, G><<<dim3(splits, kv.kv_heads), kDecodeThreads, 0, s>>>(
          kv, q, scale * kLog2e, st, sel ? sel->blocks : nullptr, sel ? sel->count : nullptr,
          n_heads, part_o, part_lse);
      return cudaGetLastError();
    });
  });
  if (e != cudaSuccess) return e;
  combine_kernel<<<n_heads, kv.head_dim, 0, s>>>(part_o, part_lse, splits, n_heads, kv.head_dim,
                                                 out);
  return cudaGetLastError();
}

namespace {

// kAuto resolved: true for the tensor-core kernel.
bool prefill_use_tc(PrefillKernel kernel, int head_dim, int group) {
  static const bool force_simt = [] {
    const char* e = std::getenv("RESA_PREFILL_KERNEL");
    return e && std::strcmp(e, "simt") == 0;
  }();
  switch (kernel) {
    case PrefillKernel::kTensorCore:
      return true;
    case PrefillKernel::kSimt:
      return false;
    case PrefillKernel::kAuto:
      break;
  }
  return !force_simt && tc::prefill_supported(head_dim, group);
}

// The SIMT kernel's split: few query tiles over a long cache, split the keys until the grid
// fills the GPU.
int simt_prefill_splits(int n, int group, int kv_heads, int ctx, int sm_count) {
  const int qt = kPrefillRows / group;
  const int ctas = (n + qt - 1) / qt * kv_heads;
  if (ctas >= 2 * sm_count) return 1;
  return std::max(1, std::min({64, (4 * sm_count + ctas - 1) / ctas,
                               (ctx + 4 * kPrefillK - 1) / (4 * kPrefillK)}));
}

// The tensor-core kernel's split, for grids under one wave of resident CTAs (few queries over a
// long cache: rectification). With CTAs of equal work a pass takes about waves(s) / s of the
// unsplit CTA's time, waves(s) = ceil(ctas * s / slots); the fewest splits within 5% of the best
// such time win (each split adds a partial output to write and combine). Each split keeps at
// least kMinTiles key tiles; at most kMaxSplits.
int tc_prefill_splits(const tc::PrefillShape& sh, int kv_heads, int ctx, int sm_count) {
  constexpr int kMinTiles = 4, kMaxSplits = 128;
  const int ctas = sh.qtiles * kv_heads, slots = std::max(1, sh.ctas_per_sm * sm_count);
  if (ctas >= slots) return 1;
  const int tiles = (ctx + tc::kPrefillKeys - 1) / tc::kPrefillKeys;
  const int most = std::max(1, std::min(tiles / kMinTiles, kMaxSplits));
  auto cost = [&](int s) { return double((int64_t(ctas) * s + slots - 1) / slots) / s; };
  double best = cost(1);
  for (int s = 2; s <= most; ++s) best = std::min(best, cost(s));
  int s = 1;
  while (s < most && cost(s) > best * 1.05) ++s;
  return s;
}

}  // namespace

bool prefill_tc_supported(int head_dim, int group) {
  return tc::prefill_supported(head_dim, group);
}

int prefill_splits(int n, int n_heads, int head_dim, int kv_heads, int ctx, int sm_count,
                   PrefillKernel kernel) {
  if (n < 1 || kv_heads < 1 || n_heads % kv_heads) return 1;
  const int group = n_heads / kv_heads;
  if (prefill_use_tc(kernel, head_dim, group)) {
    tc::PrefillShape sh;
    if (tc::prefill_shape(head_dim, n, group, &sh) != cudaSuccess) return 1;
    return tc_prefill_splits(sh, kv_heads, ctx, sm_count);
  }
  return simt_prefill_splits(n, group, kv_heads, ctx, sm_count);
}

size_t prefill_workspace_floats(int n, int n_heads, int head_dim, int splits) {
  return size_t(splits) * n * n_heads * (head_dim + 1);
}

cudaError_t attention_prefill(const KvLayerDev& kv, const float* q, float* out, int n, int n_heads,
                              float scale, const PassState* st, int ctx, int sm_count,
                              float* workspace, size_t workspace_floats, cudaStream_t s,
                              PrefillKernel kernel) {
  const int group = n_heads / kv.kv_heads;
  if (!attention_supported(kv.head_dim, group) || n_heads % kv.kv_heads || n < 1)
    return cudaErrorInvalidValue;
  const bool use_tc = prefill_use_tc(kernel, kv.head_dim, group);
  if (use_tc && !tc::prefill_supported(kv.head_dim, group)) return cudaErrorInvalidValue;
  tc::PrefillShape shape;
  int splits = 1;
  if (use_tc) {
    const cudaError_t e = tc::prefill_shape(kv.head_dim, n, group, &shape);
    if (e != cudaSuccess) return e;
    splits = tc_prefill_splits(shape, kv.kv_heads, ctx, sm_count);
  } else {
    splits = simt_prefill_splits(n, group, kv.kv_heads, ctx, sm_count);
  }
  // Capped by the workspace (none: no split).
  const size_t per_split = prefill_workspace_floats(n, n_heads, kv.head_dim, 1);
  splits = workspace ? int(std::min<size_t>(size_t(splits), workspace_floats / per_split)) : 1;
  splits = std::max(splits, 1);
  float* part_o = splits > 1 ? workspace : nullptr;
  float* part_lse = splits > 1 ? workspace + size_t(splits) * n * n_heads * kv.head_dim : nullptr;
  cudaError_t e;
  if (use_tc) {
    e = tc::prefill_launch(kv, q, out, n, n_heads, scale * kLog2e, st, shape, splits, part_o,
                           part_lse, s);
  } else {
    const int qt = kPrefillRows / group, qtiles = (n + qt - 1) / qt;
    e = dispatch_dim<128, 64, 32, 16>(kv.head_dim, [&](auto dc) {
      constexpr int D = decltype(dc)::value;
      constexpr size_t smem = prefill_smem_bytes<D>();
      cudaError_t a = cudaFuncSetAttribute(prefill_kernel<D>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
      if (a != cudaSuccess) return a;
      prefill_kernel<D><<<dim3(qtiles, kv.kv_heads, splits), kPrefillWarps * 32, smem, s>>>(
          kv, q, out, n, n_heads, scale * kLog2e, st, part_o, part_lse);
      return cudaGetLastError();
    });
  }
  if (e != cudaSuccess || splits == 1) return e;
  combine_kernel<<<n * n_heads, kv.head_dim, 0, s>>>(part_o, part_lse, splits, n * n_heads,
                                                     kv.head_dim, out);
  return cudaGetLastError();
}

cudaError_t block_scores(const KvLayerDev& kv, const float* q, int n_heads, float scale,
                         const PassState* st, float* scores, int sm_count, cudaStream_t s) {
  const int group = n_heads / kv.kv_heads;
  return dispatch_dim<128, 64, 32, 16>(kv.head_dim, [&](auto dc) {
    constexpr int D = decltype(dc)::value;
    return launch(scores_kernel<D>, dim3(score_ctas_per_head<D>(kv, sm_count), kv.kv_heads),
                  dim3(kScoreThreads), 0, s, kv, q, group, scale, st, scores);
  });
}

namespace {

// The top-k kernel for a call: kAuto resolved (fused only where the caller allows it), or
// cudaErrorInvalidValue through ok = false where the kernel asked for does not apply.
TopkKernel topk_choice(const KvLayerDev& kv, const SelectionDev& sel, TopkKernel kernel,
                       bool fused_auto, int sm_count, bool& ok) {
  static const TopkKernel forced = [] {
    const char* e = std::getenv("RESA_TOPK_KERNEL");
    if (e && std::strcmp(e, "loop") == 0) return TopkKernel::kLoop;
    if (e && std::strcmp(e, "registers") == 0) return TopkKernel::kRegisters;
    return TopkKernel::kAuto;
  }();
  const bool fits = topk::registers_fit(kv.cap_blocks);
  ok = true;
  switch (kernel) {
    case TopkKernel::kFused:
      ok = sel.work && topk::fused_ctas(kv, sm_count) > 0;
      return kernel;
    case TopkKernel::kSorted:
      ok = sel.work && topk::sorted_ctas(kv, sm_count) > 0;
      return kernel;
    case TopkKernel::kRegisters:
      ok = fits;
      return kernel;
    case TopkKernel::kLoop:
      return kernel;
    case TopkKernel::kAuto:
      break;
  }
  if (forced == TopkKernel::kLoop || !fits) return TopkKernel::kLoop;
  if (forced == TopkKernel::kRegisters || !fused_auto || !sel.work ||
      topk::fused_ctas(kv, sm_count) < 1)
    return TopkKernel::kRegisters;
  return TopkKernel::kFused;
}

}  // namespace

bool topk_kernel_applies(const KvLayerDev& kv, TopkKernel kernel, int sm_count) {
  uint32_t word = 0;
  SelectionDev sel;
  sel.work = &word;  // only its presence is asked
  bool ok = true;
  (void)topk_choice(kv, sel, kernel, true, sm_count, ok);
  return ok;
}

cudaError_t top_blocks(const KvLayerDev& kv, const SelectParams& p, const PassState* st,
                       const SelectionDev& sel, cudaStream_t s, TopkKernel kernel) {
  bool ok = true;
  switch (topk_choice(kv, sel, kernel, false, device_sm_count(), ok)) {
    case TopkKernel::kFused:
      if (!ok) return cudaErrorInvalidValue;
      return topk::fused_launch(kv, nullptr, 1, 0.f, p, st, sel, device_sm_count(), s);
    case TopkKernel::kSorted:
      if (!ok) return cudaErrorInvalidValue;
      return topk::sorted_launch(kv, nullptr, 1, 0.f, p, st, sel, device_sm_count(), s);
    case TopkKernel::kRegisters:
      if (!ok) return cudaErrorInvalidValue;
      return topk::registers_launch(kv, p, st, sel, s);
    case TopkKernel::kLoop:
    case TopkKernel::kAuto:
      break;
  }
  topk_kernel<<<kv.kv_heads, kTopkThreads, 0, s>>>(kv, p, st, sel);
  return cudaGetLastError();
}

cudaError_t select_blocks(const KvLayerDev& kv, const float* q, int n_heads, float scale,
                          const SelectParams& p, const PassState* st, const SelectionDev& sel,
                          int sm_count, cudaStream_t s, TopkKernel kernel) {
  if (kv.kv_heads < 1 || n_heads % kv.kv_heads) return cudaErrorInvalidValue;
  bool ok = true;
  const TopkKernel k = topk_choice(kv, sel, kernel, true, sm_count, ok);
  if (!ok) return cudaErrorInvalidValue;
  if (k == TopkKernel::kFused)
    return topk::fused_launch(kv, q, n_heads / kv.kv_heads, scale, p, st, sel, sm_count, s);
  if (k == TopkKernel::kSorted)
    return topk::sorted_launch(kv, q, n_heads / kv.kv_heads, scale, p, st, sel, sm_count, s);
  const cudaError_t e = block_scores(kv, q, n_heads, scale, st, sel.scores, sm_count, s);
  if (e != cudaSuccess) return e;
  return top_blocks(kv, p, st, sel, s, k);
}

cudaError_t kv_fill_random(const KvLayerDev& kv, int tokens, uint64_t seed, cudaStream_t s) {
  if (tokens <= 0) return cudaSuccess;
  fill_kernel<<<4096, 256, 0, s>>>(kv, tokens, seed);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  return summaries_recompute(kv, 0, (tokens - 1) / kv.block_size, tokens, s);
}

}  // namespace resa::cuda
