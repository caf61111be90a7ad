// Tensor-core causal prefill: FlashAttention-2 over the bf16 KV cache with mma.sync m16n8k16
// (bf16 in, f32 accumulate), ldmatrix and cp.async double-buffered K/V tiles. Runs on sm_80+.
// Contract and layouts: attention.h (attention_prefill); launch shape: prefill_tc.h.
//
// Work decomposition. Grid (query tiles, KV heads, key splits). A CTA owns ROWS = 16 * WARPS
// rows of one KV head h; row r is the pair (token q0 + r / G, query head h * G + r % G), so one
// K/V tile in shared memory serves every head of the GQA group. Warp w owns rows
// [16w, 16w + 16): one m16 tile of the mma. Keys come in tiles of 64 (kPrefillKeys); split z of
// the grid takes a contiguous range of whole tiles up to the CTA's last position.
//
// mma.sync.m16n8k16 fragments (PTX ISA "Matrix fragments for mma.m16n8k16"), lane = 4 * g + t
// (g = lane / 4 in 0..7, t = lane % 4); each b32 register holds two bf16, the lower column (or
// k index) in the low half:
//   A (16 x 16, row-major)  a[0] = A[g][2t, 2t+1]     a[1] = A[g+8][2t, 2t+1]
//                           a[2] = A[g][2t+8, 2t+9]   a[3] = A[g+8][2t+8, 2t+9]
//   B (16 x 8, "col")       b[0] = B[2t, 2t+1][g]     b[1] = B[2t+8, 2t+9][g]
//   C (16 x 8, f32)         c[0..1] = C[g][2t, 2t+1]  c[2..3] = C[g+8][2t, 2t+1]
// So each lane holds two rows of its warp's tile: r0 = 16w + g and r1 = r0 + 8.
//   S = Q K^T: A = Q (rows x D, from registers), B = K^T. B[k = d][n = key] = K[key][d] is K's
//     row-major tile itself: ldmatrix (no .trans) of an 8 x 8 block [8 keys][8 dims] gives
//     lane (g, t) K[g][2t, 2t+1] = b[0].
//   O += P V: A = P, taken straight from the S accumulators of two adjacent 8-key n-tiles
//     (C's [g][2t, 2t+1] of n-tile 2k and 2k+1 are A's a[0] / a[2] of key step k), B = V
//     (B[k = key][n = d]); ldmatrix.trans of an 8 x 8 block [8 keys][8 dims] gives lane (g, t)
//     V[2t, 2t+1][g] = b[0].
// Softmax is online per row in the log2 domain (Q pre-scaled by scale * log2 e, exp2f); a row's
// max is reduced over the 4 lanes of its quad, its sum stays lane-partial until the end.
#include <cuda_bf16.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/prefill_tc.h"

namespace resa::cuda::tc {
namespace {

constexpr int kKeys = kPrefillKeys;

// Shared memory: [2 stages][K, V][kKeys][D + 8] bf16. The 16 bytes of padding per row make the
// 8 row addresses of every ldmatrix 8 x 8 block (rows 272 or 144 bytes apart) fall in distinct
// 4-bank groups, and keep rows 16-byte aligned for cp.async and ldmatrix.
template <int D>
constexpr int smem_stride() {
  return D + 8;
}
template <int D>
constexpr size_t smem_bytes() {
  return size_t(2) * 2 * kKeys * smem_stride<D>() * sizeof(uint16_t);
}

// kv.k, kv.v: [kv_heads][capacity][D] bf16;  q: [n][n_heads][D] f32;  st: the pass (st->pos0).
// splits == 1 (gridDim.z): out [n][n_heads][D] f32. splits > 1: part_o [splits][n][n_heads][D]
// (normalised over the split's keys, 0 where it saw none) and part_lse [splits][n][n_heads]
// (log2-sum-exp of the scaled scores, -inf where it saw none).
template <int D, int WARPS>
__global__ void __launch_bounds__(WARPS * 32)
    prefill_tc_kernel(KvLayerDev kv, const float* __restrict__ q, float* __restrict__ out, int n,
                      int n_heads, float scale_log2, const PassState* st,
                      float* __restrict__ part_o, float* __restrict__ part_lse) {
  constexpr int ROWS = WARPS * 16, THREADS = WARPS * 32;
  constexpr int KS = smem_stride<D>();  // bf16 per shared row
  constexpr int TILE = kKeys * KS;      // bf16 per K (or V) tile
  constexpr int DK = D / 16;            // k-steps of S = Q K^T (over dims)
  constexpr int NS = kKeys / 8;         // n-tiles of S (8 keys each)
  constexpr int KK = kKeys / 16;        // k-steps of O += P V (over keys)
  constexpr int NO = D / 8;             // n-tiles of O (8 dims each)
  constexpr int CH = D / 8;             // 16-byte chunks per K/V row
  static_assert(D % 16 == 0 && (kKeys * CH) % THREADS == 0, "tile shape");

  extern __shared__ uint4 tc_smem[];  // [2 stages][K, V][kKeys][KS] bf16
  uint16_t* const smem = reinterpret_cast<uint16_t*>(tc_smem);

  const int G = n_heads / kv.kv_heads, h = blockIdx.y;
  const int qt = gridDim.x - 1 - blockIdx.x;  // latest queries (most keys) first
  const int QT = ROWS / G, q0 = qt * QT;      // whole tokens per CTA
  const int nq = min(QT, n - q0), rows = nq * G;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int pos0 = st->pos0;
  const int last_pos = pos0 + q0 + nq - 1;  // no row of the CTA sees a later key

  // This lane's two rows and their positions; the warp's smallest and largest position.
  const int r0 = warp * 16 + g, r1 = r0 + 8;
  const int rpos0 = pos0 + q0 + r0 / G, rpos1 = pos0 + q0 + r1 / G;
  const bool warp_active = warp * 16 < rows;  // warp-uniform
  const int wpos_min = pos0 + q0 + (warp * 16) / G;
  const int wpos_max = pos0 + q0 + (min(rows, warp * 16 + 16) - 1) / G;

  // Q fragments for the whole key loop: qa[k][.] = A fragment of dims [16k, 16k + 16), scaled by
  // scale * log2 e, rounded to bf16. Rows past `rows` are zero.
  uint32_t qa[DK][4];
  {
    const float* qr0 =
        r0 < rows ? q + (size_t(q0 + r0 / G) * n_heads + h * G + r0 % G) * D : nullptr;
    const float* qr1 =
        r1 < rows ? q + (size_t(q0 + r1 / G) * n_heads + h * G + r1 % G) * D : nullptr;
    auto ld2 = [&](const float* r, int x) {
      return r ? *reinterpret_cast<const float2*>(r + x) : make_float2(0.f, 0.f);
    };
#pragma unroll
    for (int k = 0; k < DK; ++k) {
      const float2 a0 = ld2(qr0, 16 * k + 2 * t), a1 = ld2(qr1, 16 * k + 2 * t);
      const float2 a2 = ld2(qr0, 16 * k + 8 + 2 * t), a3 = ld2(qr1, 16 * k + 8 + 2 * t);
      qa[k][0] = pack_bf16(a0.x * scale_log2, a0.y * scale_log2);
      qa[k][1] = pack_bf16(a1.x * scale_log2, a1.y * scale_log2);
      qa[k][2] = pack_bf16(a2.x * scale_log2, a2.y * scale_log2);
      qa[k][3] = pack_bf16(a3.x * scale_log2, a3.y * scale_log2);
    }
  }

  // This split's key tiles [t_begin, t_end) out of the CTA's tiles [0, last_pos / kKeys].
  const int splits = gridDim.z, split = blockIdx.z;
  const int tiles = last_pos / kKeys + 1, per = (tiles + splits - 1) / splits;
  const int t_begin = min(tiles, split * per), t_end = min(tiles, t_begin + per);

  // K/V of head h: [capacity][D] bf16 each.
  const uint16_t* kg = kv.k + size_t(h) * kv.capacity * D;
  const uint16_t* vg = kv.v + size_t(h) * kv.capacity * D;
  // Tile `tile` into stage `stage`: K rows at smem[stage][0], V rows at smem[stage][1]. Keys
  // past last_pos are zero-filled, never read (the cache may end inside the tile).
  auto load_tile = [&](int tile, int stage) {
    uint16_t* sk = smem + stage * 2 * TILE;
    uint16_t* sv = sk + TILE;
    const int k0 = tile * kKeys;
#pragma unroll
    for (int i = 0; i < kKeys * CH / THREADS; ++i) {
      const int c = threadIdx.x + i * THREADS, r = c / CH, x = (c % CH) * 8;
      const bool ok = k0 + r <= last_pos;
      const size_t src = size_t(ok ? k0 + r : 0) * D + x;
      cp_async16(smem_u32(sk + r * KS + x), kg + src, ok);
      cp_async16(smem_u32(sv + r * KS + x), vg + src, ok);
    }
  };

  // ldmatrix row addresses of this lane (bf16 offsets inside a tile), see the file comment.
  // K, no .trans, blocks {keys 0-7 dims 0-7, keys 0-7 dims 8-15, keys 8-15 dims 0-7,
  // keys 8-15 dims 8-15} = {b0, b1 of n-tile 2j; b0, b1 of n-tile 2j+1}.
  const int k_off = ((lane & 7) + ((lane >> 4) << 3)) * KS + ((lane >> 3) & 1) * 8;
  // V, .trans, blocks {keys 0-7 dims 0-7, keys 8-15 dims 0-7, keys 0-7 dims 8-15,
  // keys 8-15 dims 8-15} = {b0, b1 of dim n-tile 2j; b0, b1 of dim n-tile 2j+1}.
  const int v_off = ((lane & 7) + (((lane >> 3) & 1) << 3)) * KS + (lane >> 4) * 8;

  float o[NO][4];  // O accumulators: o[j] = C fragment of dims [8j, 8j + 8)
#pragma unroll
  for (int j = 0; j < NO; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY};  // running max of rows r0, r1 (log2 domain)
  float l[2] = {0.f, 0.f};              // running sum, partial over this lane's columns

  if (t_begin < t_end) load_tile(t_begin, 0);
  cp_async_commit();
  for (int it = t_begin; it < t_end; ++it) {
    const int stage = (it - t_begin) & 1;
    if (it + 1 < t_end) load_tile(it + 1, stage ^ 1);
    cp_async_commit();  // one group per iteration, possibly empty, so wait<1> is tile `it`
    cp_async_wait<1>();
    __syncthreads();
    const int k0 = it * kKeys;
    if (warp_active && k0 <= wpos_max) {  // warp-uniform: some row of the warp sees the tile
      const uint32_t sk = smem_u32(smem + stage * 2 * TILE);
      const uint32_t sv = sk + 2u * TILE;  // addresses in bytes, 2 per bf16

      // S = Q K^T for 16 rows x 64 keys: s[j] = C fragment of keys [k0 + 8j, k0 + 8j + 8).
      float s[NS][4];
#pragma unroll
      for (int j = 0; j < NS; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
      for (int k = 0; k < DK; ++k)
#pragma unroll
        for (int j = 0; j < NS / 2; ++j) {
          uint32_t b[4];
          ldsm_x4(sk + 2u * (k_off + j * 16 * KS + k * 16), b);
          mma_bf16(s[2 * j], qa[k], b[0], b[1]);
          mma_bf16(s[2 * j + 1], qa[k], b[2], b[3]);
        }

      // Causal mask, only where the tile reaches past the warp's first row position.
      if (k0 + kKeys - 1 > wpos_min) {
#pragma unroll
        for (int j = 0; j < NS; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = k0 + 8 * j + 2 * t + (e & 1);
            if (key > (e < 2 ? rpos0 : rpos1)) s[j][e] = -INFINITY;
          }
      }

      // Online softmax: new row max over the quad, rescale of the running sum and output.
      float mx[2] = {m[0], m[1]};
#pragma unroll
      for (int j = 0; j < NS; ++j) {
        mx[0] = fmaxf(mx[0], fmaxf(s[j][0], s[j][1]));
        mx[1] = fmaxf(mx[1], fmaxf(s[j][2], s[j][3]));
      }
      float base[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
        base[i] = mx[i] == -INFINITY ? 0.f : mx[i];  // nothing visible yet: keep exp2 finite
        const float corr = exp2f(m[i] - base[i]);    // 0 when m was -inf
        l[i] *= corr;
#pragma unroll
        for (int j = 0; j < NO; ++j) o[j][2 * i] *= corr, o[j][2 * i + 1] *= corr;
        m[i] = mx[i];
      }

      // P = exp2(S - max) in bf16 as A fragments: pa[k] covers keys [k0 + 16k, k0 + 16k + 16).
      // The sum takes the rounded values, the same weights the P V product uses.
      uint32_t pa[KK][4];
#pragma unroll
      for (int j = 0; j < NS; ++j) {
        const uint32_t top = pack_bf16(exp2f(s[j][0] - base[0]), exp2f(s[j][1] - base[0]));
        const uint32_t bot = pack_bf16(exp2f(s[j][2] - base[1]), exp2f(s[j][3] - base[1]));
        pa[j / 2][(j & 1) * 2] = top;
        pa[j / 2][(j & 1) * 2 + 1] = bot;
        l[0] += bf16_lo(top) + bf16_hi(top);
        l[1] += bf16_lo(bot) + bf16_hi(bot);
      }

      // O += P V.
#pragma unroll
      for (int k = 0; k < KK; ++k)
#pragma unroll
        for (int j = 0; j < NO / 2; ++j) {
          uint32_t b[4];
          ldsm_x4_trans(sv + 2u * (v_off + k * 16 * KS + j * 16), b);
          mma_bf16(o[2 * j], pa[k], b[0], b[1]);
          mma_bf16(o[2 * j + 1], pa[k], b[2], b[3]);
        }
    }
    __syncthreads();  // every warp is done with `stage` before iteration it + 1 refills it
  }
  cp_async_wait<0>();  // nothing may be in flight when the CTA exits (all groups are empty here)

  // Row sums over the quad, then the normalised output (and log2-sum-exp when split).
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = i ? r1 : r0;
    if (r >= rows) continue;
    const float inv = l[i] > 0.f ? 1.0f / l[i] : 0.f;
    const size_t row = size_t(q0 + r / G) * n_heads + h * G + r % G;
    float* dst = splits == 1 ? out + row * D : part_o + (size_t(split) * n * n_heads + row) * D;
#pragma unroll
    for (int j = 0; j < NO; ++j)
      *reinterpret_cast<float2*>(dst + 8 * j + 2 * t) =
          make_float2(o[j][2 * i] * inv, o[j][2 * i + 1] * inv);
    if (splits > 1 && t == 0)
      part_lse[size_t(split) * n * n_heads + row] = l[i] > 0.f ? m[i] + log2f(l[i]) : -INFINITY;
  }
}

template <int D, int WARPS>
cudaError_t set_smem_limit() {
  return cudaFuncSetAttribute(prefill_tc_kernel<D, WARPS>,
                              cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem_bytes<D>()));
}

// f(integral_constant<D>, integral_constant<WARPS>) for the supported pairs.
template <typename F>
cudaError_t dispatch(int d, int warps, F&& f) {
  using std::integral_constant;
  if (d == 128 && warps == 4) return f(integral_constant<int, 128>{}, integral_constant<int, 4>{});
  if (d == 128 && warps == 8) return f(integral_constant<int, 128>{}, integral_constant<int, 8>{});
  if (d == 64 && warps == 4) return f(integral_constant<int, 64>{}, integral_constant<int, 4>{});
  if (d == 64 && warps == 8) return f(integral_constant<int, 64>{}, integral_constant<int, 8>{});
  return cudaErrorInvalidValue;
}

}  // namespace

bool prefill_supported(int head_dim, int group) {
  return (head_dim == 64 || head_dim == 128) && group >= 1 && group <= 8;
}

cudaError_t prefill_shape(int head_dim, int n, int group, PrefillShape* shape) {
  if (!prefill_supported(head_dim, group) || n < 1) return cudaErrorInvalidValue;
  PrefillShape sh;
  // 128-row CTAs halve the K/V traffic from L2 on long prefill chunks; 64-row CTAs give small
  // passes finer pieces to spread over the SMs. RESA_PREFILL_ROWS=64 or 128 in the environment
  // (read once per process) sets the rows where a pass has at least that many.
  static const int forced_rows = [] {
    const char* e = std::getenv("RESA_PREFILL_ROWS");
    const int v = e ? std::atoi(e) : 0;
    return v == 64 || v == 128 ? v : 0;
  }();
  const int64_t rows = int64_t(n) * group;
  sh.warps = forced_rows && rows >= forced_rows ? forced_rows / 16 : rows >= 512 ? 8 : 4;
  sh.rows = 16 * sh.warps;
  const int qt = sh.rows / group;
  sh.qtiles = (n + qt - 1) / qt;
  // Resident CTAs per SM, asked once per kernel (a host-side query; 1 if it fails).
  const cudaError_t e = dispatch(head_dim, sh.warps, [&](auto dc, auto wc) {
    constexpr int D = decltype(dc)::value, W = decltype(wc)::value;
    static const int per_sm = [] {
      int b = 0;
      if (set_smem_limit<D, W>() != cudaSuccess ||
          cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, prefill_tc_kernel<D, W>, W * 32,
                                                        smem_bytes<D>()) != cudaSuccess) {
        (void)cudaGetLastError();  // not the launch's error
        b = 1;
      }
      return b > 0 ? b : 1;
    }();
    sh.ctas_per_sm = per_sm;
    return cudaSuccess;
  });
  if (e != cudaSuccess) return e;
  *shape = sh;
  return cudaSuccess;
}

cudaError_t prefill_launch(const KvLayerDev& kv, const float* q, float* out, int n, int n_heads,
                           float scale_log2, const PassState* st, const PrefillShape& shape,
                           int splits, float* part_o, float* part_lse, cudaStream_t s) {
  const int group = n_heads / kv.kv_heads;
  if (!prefill_supported(kv.head_dim, group) || n_heads % kv.kv_heads || splits < 1 ||
      (splits > 1 && (!part_o || !part_lse)))
    return cudaErrorInvalidValue;
  return dispatch(kv.head_dim, shape.warps, [&](auto dc, auto wc) {
    constexpr int D = decltype(dc)::value, W = decltype(wc)::value;
    const cudaError_t a = set_smem_limit<D, W>();
    if (a != cudaSuccess) return a;
    prefill_tc_kernel<D, W>
        <<<dim3(shape.qtiles, kv.kv_heads, splits), W * 32, smem_bytes<D>(), s>>>(
            kv, q, out, n, n_heads, scale_log2, st, part_o, part_lse);
    return cudaGetLastError();
  });
}

}  // namespace resa::cuda::tc
