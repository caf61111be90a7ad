// Tensor-core causal prefill (FlashAttention-2 style), internal to kernels/cuda: attention_prefill
// (attention.cu) owns the contract, picks the key split and runs the combine; this file owns the
// kernel and its launch shape. Layouts and the contract: attention.h.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/cuda/attention.h"

namespace resa::cuda::tc {

// head_dim 64 or 128, GQA group 1..8.
bool prefill_supported(int head_dim, int group);

// How a launch tiles the work. A CTA holds `rows` = 16 * warps (query, head-in-group) rows of
// one KV head: rows / group whole query tokens, all heads of the group for each.
struct PrefillShape {
  int warps = 4;        // 16 rows each
  int rows = 64;        // rows per CTA
  int qtiles = 0;       // CTAs per KV head along the queries
  int ctas_per_sm = 1;  // resident CTAs per multiprocessor (occupancy API)
};
// The shape for n queries with GQA group `group` (prefill_supported must hold).
cudaError_t prefill_shape(int head_dim, int n, int group, PrefillShape* shape);

// Keys per K/V tile: splits are whole tiles.
constexpr int kPrefillKeys = 64;

// Grid (shape.qtiles, kv.kv_heads, splits). splits == 1: writes out [n][n_heads][head_dim].
// splits > 1: writes, per split, the normalised partial output part_o[splits][n][n_heads][head_dim]
// and its log2-sum-exp part_lse[splits][n][n_heads] (-inf where the split saw no key), for
// attention.cu's combine_kernel.
cudaError_t prefill_launch(const KvLayerDev& kv, const float* q, float* out, int n, int n_heads,
                           float scale_log2, const PassState* st, const PrefillShape& shape,
                           int splits, float* part_o, float* part_lse, cudaStream_t s);

}  // namespace resa::cuda::tc
