// Tensor-core split-KV decode (one query token) with the split combine fused into the last CTA of
// each KV head. Contract and layouts: attention.h (attention_decode); launch shape: decode.h.
//
// Why tensor cores for one query: the CUDA-core kernel (attention.cu, decode_kernel) spends about
// 140 instructions per lane per key (dot products, shuffle reductions, the softmax of every head
// on every lane, unpacking) and is issue-bound on the H200's memory. Here a warp handles 16 keys
// with about 110 instructions per lane, i.e. ~7 per key where the CUDA-core kernel spends ~70.
//
// Work decomposition. Grid (CTAs per head, kv_heads). A CTA takes a contiguous range of its KV
// head's key indices (positions, or the positions of the selected blocks), in steps of 16 keys
// dealt round-robin to its 4 warps. Each warp streams its own steps through a private ring of
// STAGES shared-memory slots with cp.async (its lanes copy, __syncwarp publishes; the loop has no
// CTA barrier), so STAGES - 1 steps are in flight while one is computed.
//
// Per step, mma.sync m16n8k16 (bf16 in, f32 accumulate; fragment layouts: prefill_tc.cu):
//   S = Q K^T     A = [Qh; Ql] (16 rows x 16 dims): rows 0-7 the G query heads (zero rows past G)
//                 scaled by scale * log2 e and rounded to bf16, rows 8-15 their rounding residuals,
//                 so S[g] + S[g + 8] is the score to about 2^-17 relative (the CUDA-core kernel's
//                 f32 precision, not bf16's); B = K^T, ldmatrix of the K rows (as in prefill).
//                 Lane (g, t) gets head g's scores of keys 2t, 2t+1 (n-tile 0) and 8+2t, 9+2t.
//   O^T += V^T P^T  A = V^T (16 dims x 16 keys): ldmatrix.trans of the V rows. B = P^T (16 keys x
//                 8 heads) is the lane's own scores: b0 = P[g][2t, 2t+1], b1 = P[g][2t+8, 2t+9].
//                 P = Ph + Pl (bf16 and its residual): two mmas, same A.
//                 C: o[i] = O^T[dims 16i + g, 16i + g + 8][heads 2t, 2t+1].
// Softmax is online per head in the log2 domain; the running max is replicated over the quad of
// lanes holding the head, the running sum is lane-partial until the end. The output is rescaled
// only when some head's max grew (warp vote), which after the first steps is rare.
//
// End of a CTA: the 4 warps merge through shared memory. One CTA per head writes out; with more,
// each writes its normalised partial and log2-sum-exp, and the last CTA of the head to finish
// (atomic counter per KV head, reset by that CTA) merges every split of its G heads into out.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/decode.h"
#include "kernels/cuda/mma.cuh"

namespace resa::cuda {
namespace fast {
namespace {

constexpr int kWarps = 4, kThreads = kWarps * 32;
constexpr int kStepKeys = 16;    // keys per warp step: one k-step of P V, two n-tiles of Q K^T
constexpr int kMaxSplits = 128;  // CTAs per KV head at most
constexpr int kMaxGroup = 8;     // heads per KV head: the mma's n dimension

// Ring slots per warp (DecodeRing, attention.h). Shallow: about 26 KB of K/V per warp, 2 CTAs
// per SM on H100 / H200. Deep: about 205 KB per CTA, one CTA per SM with twice the copies in
// flight per warp and half the CTAs, so half the partials to combine.
template <int D>
constexpr int stages() {
  return D == 128 ? 3 : D == 64 ? 5 : 9;
}
template <int D>
constexpr int deep_stages() {
  return D == 128 ? 6 : D == 64 ? 12 : 22;
}
// bf16 per shared K or V row: 16 bytes of padding put the 8 rows of an ldmatrix 8 x 8 block
// (272, 144 or 80 bytes apart) in distinct 4-bank groups and keep rows 16-byte aligned.
template <int D>
constexpr int row_stride() {
  return D + 8;
}
// bf16 per ring slot: 16 K rows, then 16 V rows.
template <int D>
constexpr int slot_elems() {
  return 2 * kStepKeys * row_stride<D>();
}
template <int D, int S>
constexpr size_t smem_bytes() {
  return size_t(kWarps) * S * slot_elems<D>() * sizeof(uint16_t);
}
// After the key loop the ring holds the merge of the warps: [kWarps][kMaxGroup][D] f32.
template <int D>
constexpr size_t merge_bytes() {
  return size_t(kWarps) * kMaxGroup * D * sizeof(float);
}

// The rounding residuals of a pack_bf16(lo, hi) = p: exact in f32.
__device__ __forceinline__ uint32_t pack_residual(float lo, float hi, uint32_t p) {
  return pack_bf16(lo - bf16_lo(p), hi - bf16_hi(p));
}

// kv.k, kv.v: [kv_heads][capacity][D] bf16; q: [n_heads][D] f32; st->pos0: the query position.
// sel_blocks [kv_heads][cap_blocks] / sel_count [kv_heads], or null (dense). gridDim.x == 1:
// out [n_heads][D]. Else part_o [>= gridDim.x][n_heads][D], part_lse [>= gridDim.x][n_heads]
// and counters [kv_heads] (zero on entry, zero again on exit), then out.
template <int D, int S>
__global__ void __launch_bounds__(kThreads)
    decode_tc_kernel(KvLayerDev kv, const float* __restrict__ q, float* __restrict__ out,
                     int n_heads, float scale_log2, const PassState* st, const int* sel_blocks,
                     const int* sel_count, float* part_o, float* part_lse, unsigned* counters,
                     int min_split_keys) {
  constexpr int KS = row_stride<D>(), SE = slot_elems<D>();
  constexpr int DK = D / 16;  // k-steps of Q K^T, m-tiles of V^T P^T
  static_assert(D % 32 == 0 && merge_bytes<D>() <= smem_bytes<D, S>(), "decode shape");
  // Programmatic dependent launch: a sparse step reads the selection (the previous kernel's
  // output) from the start, so it waits first. A dense step issues its first copies before it
  // waits (below): the keys before the query's position were written by earlier steps.
  const bool sparse = sel_blocks != nullptr;
  if (sparse) {
    grid_dependency_wait();
    allow_next_launch();
  }

  extern __shared__ uint4 dec_smem[];
  __shared__ uint32_t s_mask[kWarps][S];  // per ring slot: bit r = key row r is valid
  __shared__ float s_m[kWarps][kMaxGroup], s_l[kWarps][kMaxGroup];
  __shared__ int s_last;

  const int h = blockIdx.y, split = blockIdx.x;
  const int G = n_heads / kv.kv_heads;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int ctx = st->pos0 + 1, bs = kv.block_size;
  const int* blocks = sparse ? sel_blocks + size_t(h) * kv.cap_blocks : nullptr;
  const int total = sparse ? sel_count[h] * bs : ctx;
  // Splits in use: the grid's, fewer where a split would get under min_split_keys keys (a short
  // context, a sparse step's few blocks): the unused CTAs leave at once and the combine merges
  // fewer partials. The same on every CTA of the head.
  const int splits = max(1, min(int(gridDim.x), (total + min_split_keys - 1) / min_split_keys));
  if (split >= splits) {
    if (!sparse) grid_dependency_wait();  // every CTA waits: this grid ends after the one before
    return;
  }
  // Whole steps per CTA: only the last CTA with keys may end inside a step; later ones get none.
  const int per = ((total + splits - 1) / splits + kStepKeys - 1) / kStepKeys * kStepKeys;
  const int begin = int(min(int64_t(total), int64_t(split) * per));
  const int end = int(min(int64_t(total), int64_t(begin) + per));
  const int steps = (end - begin + kStepKeys - 1) / kStepKeys;
  const int my_steps = warp < steps ? (steps - warp + kWarps - 1) / kWarps : 0;  // warp-uniform

  // Copies: lane l computes the position of row l & 15 of a step (lanes 16-31 repeat 0-15); each
  // copy instruction then moves whole rows, RPI rows of D / 8 16-byte chunks (2 rows of 256 bytes
  // for D = 128), so a warp's request covers whole 128-byte lines. Copying 32 bytes of each of 16
  // rows per instruction instead measured 64% of copy bandwidth at 256K (h200-s10.json).
  constexpr int CPR = D / 8, RPI = 32 / CPR;
  const int row = lane & 15, crow = lane / CPR, chunk = (lane % CPR) * 8;
  const uint16_t* kg = kv.k + size_t(h) * kv.capacity * D;
  const uint16_t* vg = kv.v + size_t(h) * kv.capacity * D;
  uint16_t* const ring = reinterpret_cast<uint16_t*>(dec_smem) + size_t(warp) * S * SE;
  // i / bs as umulhi(i, magic) plus at most one correction (magic = floor((2^32 - 1) / bs)
  // underestimates the quotient by at most 1 for i < 2^31).
  const uint32_t magic = sparse ? 0xffffffffu / uint32_t(bs) : 0u;
  auto key_index = [&](int ws) { return begin + kStepKeys * (warp + kWarps * ws) + row; };
  // The selected block holding this lane's key of warp step ws (sparse; -1 past the range).
  // Loaded one step before its copies are issued, so the indirection's latency is hidden.
  auto block_of = [&](int ws) -> int {
    if (!sparse || ws >= my_steps) return -1;
    const int i = key_index(ws);
    if (i >= end) return -1;
    uint32_t qb = __umulhi(uint32_t(i), magic);
    if (uint32_t(i) - qb * uint32_t(bs) >= uint32_t(bs)) ++qb;
    return blocks[qb];
  };
  // Copies of warp step ws into its ring slot (keys past the range or the context: zero-filled,
  // never read) and the slot's validity mask.
  auto issue = [&](int ws, int blk) {
    if (ws >= my_steps) return;  // warp-uniform
    const int slot = ws % S;
    const int i = key_index(ws);
    int pos = -1;
    if (i < end) {
      if (!sparse) {
        pos = i;
      } else if (blk >= 0) {
        const uint32_t qb = __umulhi(uint32_t(i), magic);
        uint32_t rem = uint32_t(i) - qb * uint32_t(bs);
        if (rem >= uint32_t(bs)) rem -= uint32_t(bs);
        pos = blk * bs + int(rem);
        if (pos >= ctx) pos = -1;
      }
    }
    const bool ok = pos >= 0;
    uint16_t* sk = ring + slot * SE;
    uint16_t* sv = sk + kStepKeys * KS;
#pragma unroll
    for (int j = 0; j < kStepKeys / RPI; ++j) {
      const int r = j * RPI + crow;
      const int pr = __shfl_sync(0xffffffffu, pos, r);
      const size_t src = size_t(pr >= 0 ? pr : 0) * D + chunk;
      cp_async16(smem_u32(sk + r * KS + chunk), kg + src, pr >= 0);
      cp_async16(smem_u32(sv + r * KS + chunk), vg + src, pr >= 0);
    }
    const uint32_t vm = __ballot_sync(0xffffffffu, ok);  // bits r and r + 16: row r
    if (lane == 0) s_mask[warp][slot] = vm & 0xffffu;
  };

  // ldmatrix row addresses of this lane (bf16 offsets in a slot's K or V rows): blocks {keys 0-7
  // dims 0-7, keys 0-7 dims 8-15, keys 8-15 dims 0-7, keys 8-15 dims 8-15}. Without .trans on K:
  // {b0, b1 of n-tile 0, b0, b1 of n-tile 1} of K^T. With .trans on V: {a0, a1, a2, a3} of V^T.
  const int ld_off = ((lane & 7) + ((lane >> 4) << 3)) * KS + ((lane >> 3) & 1) * 8;

  float o[DK][4];
#pragma unroll
  for (int i = 0; i < DK; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_run = -INFINITY;  // head g's running max (log2 domain), the same on the quad
  float l_run = 0.f;        // head g's running sum over this lane's keys

  // The first S - 1 steps' copies, one group per step (possibly empty, so wait<S - 1> below is
  // step ws). Dense: those of steps whose keys all precede the query's position go out before the
  // wait for the previous kernel (which wrote the K/V at that position), so they overlap its tail.
  int p = 0;
  if (!sparse) {
    for (; p < S - 1; ++p) {
      const int last_key = begin + kStepKeys * (warp + kWarps * p) + kStepKeys - 1;
      if (p < my_steps && min(last_key, end - 1) >= ctx - 1) break;  // warp-uniform
      issue(p, -1);
      cp_async_commit();
    }
    grid_dependency_wait();
    allow_next_launch();
  }
  for (; p < S - 1; ++p) {
    issue(p, block_of(p));
    cp_async_commit();
  }
  // Q fragments (file comment): qa[k] = A of dims [16k, 16k + 16), rows g (bf16) and g + 8
  // (residual) of head g; zero for g >= G.
  uint32_t qa[DK][4];
  {
    const float* qr = g < G ? q + size_t(h * G + g) * D : nullptr;
#pragma unroll
    for (int k = 0; k < DK; ++k) {
      const int x = 16 * k + 2 * t;
      const float x0 = qr ? qr[x] * scale_log2 : 0.f, x1 = qr ? qr[x + 1] * scale_log2 : 0.f;
      const float y0 = qr ? qr[x + 8] * scale_log2 : 0.f, y1 = qr ? qr[x + 9] * scale_log2 : 0.f;
      qa[k][0] = pack_bf16(x0, x1);
      qa[k][1] = pack_residual(x0, x1, qa[k][0]);
      qa[k][2] = pack_bf16(y0, y1);
      qa[k][3] = pack_residual(y0, y1, qa[k][2]);
    }
  }

  int next_blk = block_of(S - 1);
  for (int ws = 0; ws < my_steps; ++ws) {
    __syncwarp();  // every lane is done with the slot refilled now (step ws - 1's)
    issue(ws + S - 1, next_blk);
    cp_async_commit();
    next_blk = block_of(ws + S);
    cp_async_wait<S - 1>();
    __syncwarp();  // every lane's copies of step ws are visible to the warp
    const int slot = ws % S;
    const uint32_t sk = smem_u32(ring + slot * SE);
    const uint32_t sv = sk + 2u * kStepKeys * KS;  // bytes
    const uint32_t vm = s_mask[warp][slot];

    // S = Q K^T: s[n] = C of keys [8n, 8n + 8), rows g (bf16 Q) and g + 8 (residual Q).
    float s[2][4] = {};
#pragma unroll
    for (int k = 0; k < DK; ++k) {
      uint32_t b[4];
      ldsm_x4(sk + 2u * (ld_off + 16 * k), b);
      mma_bf16(s[0], qa[k], b[0], b[1]);
      mma_bf16(s[1], qa[k], b[2], b[3]);
    }
    float sc[2][2];
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int key = 8 * n + 2 * t + e;
        sc[n][e] = (vm >> key) & 1u ? s[n][e] + s[n][e + 2] : -INFINITY;
      }

    // Online softmax for head g; O^T columns 2t, 2t+1 take the corrections of heads 2t, 2t+1.
    float mx = fmaxf(fmaxf(sc[0][0], sc[0][1]), fmaxf(sc[1][0], sc[1][1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    mx = fmaxf(mx, m_run);
    if (__any_sync(0xffffffffu, mx > m_run)) {
      const float corr = mx > m_run ? exp2f(m_run - mx) : 1.f;  // 0 when m_run was -inf
      l_run *= corr;
      m_run = mx;
      const float c0 = __shfl_sync(0xffffffffu, corr, 8 * t);
      const float c1 = __shfl_sync(0xffffffffu, corr, 8 * t + 4);
#pragma unroll
      for (int i = 0; i < DK; ++i) o[i][0] *= c0, o[i][1] *= c1, o[i][2] *= c0, o[i][3] *= c1;
    }
    const float base = m_run == -INFINITY ? 0.f : m_run;  // nothing visible yet: keep exp2 finite
    float p[2][2];
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) p[n][e] = exp2f(sc[n][e] - base);
    l_run += (p[0][0] + p[0][1]) + (p[1][0] + p[1][1]);
    const uint32_t ph0 = pack_bf16(p[0][0], p[0][1]), ph1 = pack_bf16(p[1][0], p[1][1]);
    const uint32_t pl0 = pack_residual(p[0][0], p[0][1], ph0);
    const uint32_t pl1 = pack_residual(p[1][0], p[1][1], ph1);

    // O^T += V^T P^T, dims [16i, 16i + 16).
#pragma unroll
    for (int i = 0; i < DK; ++i) {
      uint32_t a[4];
      ldsm_x4_trans(sv + 2u * (ld_off + 16 * i), a);
      mma_bf16(o[i], a, ph0, ph1);
      mma_bf16(o[i], a, pl0, pl1);
    }
  }
  cp_async_wait<0>();  // nothing may land in the ring once it holds the merge (groups are empty)
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 1);
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 2);

  // Merge the 4 warps (all 8 head columns; only g < G are read).
  float* const s_o = reinterpret_cast<float*>(dec_smem);  // [kWarps][kMaxGroup][D]
  __syncthreads();                                        // every warp is done with the ring
#pragma unroll
  for (int i = 0; i < DK; ++i) {
    float* c0 = s_o + size_t(warp * kMaxGroup + 2 * t) * D + 16 * i + g;
    float* c1 = c0 + D;
    c0[0] = o[i][0], c1[0] = o[i][1], c0[8] = o[i][2], c1[8] = o[i][3];
  }
  if (t == 0) s_m[warp][g] = m_run, s_l[warp][g] = l_run;
  __syncthreads();
  for (int e = threadIdx.x; e < G * D; e += kThreads) {
    const int gg = e / D, x = e % D;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, s_m[w][gg]);
    float L = 0.f, acc = 0.f;
    if (M != -INFINITY) {
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        const float wt = exp2f(s_m[w][gg] - M);
        L += wt * s_l[w][gg];
        acc += wt * s_o[size_t(w * kMaxGroup + gg) * D + x];
      }
    }
    const float val = L > 0.f ? acc / L : 0.f;
    const size_t hq = size_t(h) * G + gg;
    if (splits == 1) {
      out[hq * D + x] = val;
    } else {
      part_o[(size_t(split) * n_heads + hq) * D + x] = val;
      if (x == 0) part_lse[size_t(split) * n_heads + hq] = L > 0.f ? M + log2f(L) : -INFINITY;
    }
  }
  if (splits == 1) return;

  // Fused combine: the last CTA of KV head h to get here merges the splits of its G heads.
  __threadfence();  // this thread's partial is visible device-wide before the count says so
  __syncthreads();
  if (threadIdx.x == 0) s_last = atomicAdd(&counters[h], 1u) == unsigned(splits - 1);
  __syncthreads();
  if (!s_last) return;
  __threadfence();  // the other CTAs' partials are read after their count
  // One pass over the splits: thread i merges 4 adjacent outputs (a float4 of the G heads' G * D)
  // with online weights 2^(lse - running max), U splits' loads in flight at a time (this tail is
  // latency-bound: a read of the lses first, then of the partials, took two rounds more).
  constexpr int U = 16;
  const int GD4 = G * D / 4;
  const size_t stride4 = size_t(n_heads) * D / 4;  // float4s from one split's partial to the next
  const float* lse_h = part_lse + size_t(h) * G;
  const float4* src4 = reinterpret_cast<const float4*>(part_o + size_t(h) * G * D);
  float4* out4 = reinterpret_cast<float4*>(out + size_t(h) * G * D);
  for (int e4 = threadIdx.x; e4 < GD4; e4 += kThreads) {
    const int gg = e4 / (D / 4);
    float m = -INFINITY, wsum = 0.f;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int sp0 = 0; sp0 < splits; sp0 += U) {
      float x[U];
      float4 v[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const bool in = sp0 + u < splits;
        x[u] = in ? __ldcg(lse_h + size_t(sp0 + u) * n_heads + gg) : -INFINITY;
        v[u] = in ? __ldcg(src4 + size_t(sp0 + u) * stride4 + e4) : make_float4(0.f, 0.f, 0.f, 0.f);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (x[u] == -INFINITY) continue;  // a split that saw no key (its partial is 0)
        if (x[u] > m) {
          const float c = exp2f(m - x[u]);  // 0 on the first finite one
          wsum *= c, acc.x *= c, acc.y *= c, acc.z *= c, acc.w *= c;
          m = x[u];
        }
        const float w = exp2f(x[u] - m);
        wsum += w;
        acc.x += w * v[u].x, acc.y += w * v[u].y, acc.z += w * v[u].z, acc.w += w * v[u].w;
      }
    }
    const float inv = wsum > 0.f ? 1.0f / wsum : 0.f;
    out4[e4] = make_float4(acc.x * inv, acc.y * inv, acc.z * inv, acc.w * inv);
  }
  if (threadIdx.x == 0) counters[h] = 0u;  // every CTA of the head has counted: ready for reuse
}

// Resident CTAs per SM of the D instance (0: it cannot run on this device, e.g. too little shared
// memory per block), asked once per process after raising its dynamic shared memory limit and
// asking for the largest shared-memory carveout (its K/V bypass L1 anyway).
template <int D, int S>
int ctas_per_sm() {
  static const int n = [] {
    int b = 0;
    if (cudaFuncSetAttribute(decode_tc_kernel<D, S>, cudaFuncAttributePreferredSharedMemoryCarveout,
                             int(cudaSharedmemCarveoutMaxShared)) != cudaSuccess)
      (void)cudaGetLastError();  // a preference only
    if (cudaFuncSetAttribute(decode_tc_kernel<D, S>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             int(smem_bytes<D, S>())) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, decode_tc_kernel<D, S>, kThreads,
                                                      smem_bytes<D, S>()) != cudaSuccess) {
      (void)cudaGetLastError();  // not a launch's error
      b = 0;
    }
    return b;
  }();
  return n;
}

// The ring a launch asked for with `ring` takes: RESA_DECODE_RING=shallow or =deep in the
// environment (read once per process) overrides it; kAuto is the shallow ring.
bool deep_ring(DecodeRing ring) {
  static const DecodeRing forced = [] {
    const char* e = std::getenv("RESA_DECODE_RING");
    if (e && std::strcmp(e, "shallow") == 0) return DecodeRing::kShallow;
    if (e && std::strcmp(e, "deep") == 0) return DecodeRing::kDeep;
    return DecodeRing::kAuto;
  }();
  return (forced != DecodeRing::kAuto ? forced : ring) == DecodeRing::kDeep;
}

// Keys a split keeps at least (the kernel uses fewer splits below it): 4 steps of each warp by
// default; RESA_DECODE_MIN_SPLIT_KEYS in the environment (read once per process) overrides it.
int min_split_keys() {
  static const int n = [] {
    const char* e = std::getenv("RESA_DECODE_MIN_SPLIT_KEYS");
    const int v = e ? std::atoi(e) : 0;
    return v > 0 ? v : 4 * kWarps * kStepKeys;
  }();
  return n;
}

}  // namespace

bool decode_supported(int head_dim, int group) {
  if (group < 1 || group > kMaxGroup) return false;
  const cudaError_t e = dispatch_dim<128, 64, 32>(head_dim, [](auto dc) {
    constexpr int D = decltype(dc)::value;
    return ctas_per_sm<D, stages<D>()>() > 0 ? cudaSuccess : cudaErrorInvalidValue;
  });
  return e == cudaSuccess;
}

cudaError_t decode_launch(const KvLayerDev& kv, const float* q, float* out, int n_heads,
                          float scale_log2, const PassState* st, const SelectionDev* sel,
                          int splits, float* workspace, DecodeRing ring, cudaStream_t s) {
  if (kv.kv_heads < 1 || n_heads % kv.kv_heads ||
      !decode_supported(kv.head_dim, n_heads / kv.kv_heads) || splits < 1 ||
      (splits > 1 && !workspace))
    return cudaErrorInvalidValue;
  const size_t partials = size_t(splits) * n_heads * kv.head_dim;
  float* part_o = workspace;
  float* part_lse = workspace ? workspace + partials : nullptr;
  unsigned* counters =
      workspace ? reinterpret_cast<unsigned*>(workspace + partials + size_t(splits) * n_heads)
                : nullptr;
  return dispatch_dim<128, 64, 32>(kv.head_dim, [&](auto dc) {
    constexpr int D = decltype(dc)::value;
    // One wave of resident CTAs: with equal work per CTA a second wave only adds a ramp. A
    // sparse step reads a tenth of the keys: on the shallow ring, half a wave, one CTA per SM
    // and half the partials to combine (36.9 against 39.7 us with two at 256K x 8 KV heads,
    // docs/benchmarks/h200-s11.json, ab_calls.call2).
    const bool deep = deep_ring(ring) && ctas_per_sm<D, deep_stages<D>()>() > 0;
    auto go = [&](auto kernel, int per_sm, size_t smem, bool half) {
      const int wave = std::max(1, per_sm * device_sm_count() / kv.kv_heads);
      const int ctas = std::min({splits, kMaxSplits, half ? std::max(1, wave / 2) : wave});
      return launch(kernel, dim3(ctas, kv.kv_heads), dim3(kThreads), smem, s, kv, q, out, n_heads,
                    scale_log2, st, sel ? sel->blocks : nullptr, sel ? sel->count : nullptr, part_o,
                    part_lse, counters, min_split_keys());
    };
    if (deep) {
      constexpr int S = deep_stages<D>();
      return go(decode_tc_kernel<D, S>, ctas_per_sm<D, S>(), smem_bytes<D, S>(), false);
    }
    constexpr int S = stages<D>();
    return go(decode_tc_kernel<D, S>, ctas_per_sm<D, S>(), smem_bytes<D, S>(), sel != nullptr);
  });
}

}  // namespace fast

bool decode_supported(int head_dim, int group, DecodeKernel kernel) {
  switch (kernel) {
    case DecodeKernel::kFast:
      return fast::decode_supported(head_dim, group);
    case DecodeKernel::kSimt:
    case DecodeKernel::kAuto:
      break;
  }
  return attention_supported(head_dim, group);  // kAuto: the fast kernel's shapes are a subset
}

cudaError_t decode_workspace_init(float* workspace, int n_heads, int head_dim, int splits,
                                  cudaStream_t s) {
  if (!workspace || n_heads < 1 || splits < 1) return cudaErrorInvalidValue;
  const size_t partials = size_t(splits) * n_heads * (size_t(head_dim) + 1);
  return cudaMemsetAsync(workspace + partials, 0, size_t(n_heads) * sizeof(unsigned), s);
}

}  // namespace resa::cuda
