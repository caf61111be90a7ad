// Top-k block selection with the keys in registers, internal to kernels/cuda: top_blocks
// (attention.cu) owns the contract and picks the kernel; this file owns the fast kernel and the
// budget rule both kernels share. Device code: include from .cu files only.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/cuda/attention.h"

namespace resa::cuda::topk {

// Blocks one 1024-thread CTA holds in registers (32 per thread); larger caches take the loop
// kernel.
constexpr int kThreads = 1024;
constexpr int kMaxBlocks = 32 * kThreads;

// How many blocks a head selects out of nb: RESA.md step 6 (resa_budget), raised to the forced
// count of select_top_blocks (sink and local blocks count inside the budget), as on the host.
__device__ __forceinline__ int selection_size(int nb, const SelectParams& p) {
  const int by_ratio = int(ceil(double(nb) * p.ratio - 1e-9));
  const int chosen = max(by_ratio, min(nb, p.min_blocks));
  const int forced_n = min(nb, p.local + (p.sink && nb > p.local ? 1 : 0));
  const int budget = min(nb, max(chosen, forced_n));
  const int forced_count = min(nb, p.local) + (p.sink && nb - p.local > 0 ? 1 : 0);
  return max(budget, min(forced_count, nb));
}

// Whether the register kernel takes a cache of cap_blocks blocks per head.
inline bool registers_fit(int cap_blocks) { return cap_blocks <= kMaxBlocks; }

// The register kernel, one CTA per KV head (registers_fit(kv.cap_blocks) must hold); launched
// with programmatic dependent launch where enabled. Same contract as top_blocks.
cudaError_t registers_launch(const KvLayerDev& kv, const SelectParams& p, const PassState* st,
                             const SelectionDev& sel, cudaStream_t s);

// CTAs per KV head of the fused selection (topk.cu, select_coop_kernel) for this cache on a
// device of sm_count SMs; 0: it does not apply.
int fused_ctas(const KvLayerDev& kv, int sm_count);

// The fused selection: with q, the block scores of select_blocks and then the top-k; with q null,
// the top-k of the scores in sel.scores (top_blocks). fused_ctas(kv, sm_count) > 0 and sel.work
// must hold.
cudaError_t fused_launch(const KvLayerDev& kv, const float* q, int group, float scale,
                         const SelectParams& p, const PassState* st, const SelectionDev& sel,
                         int sm_count, cudaStream_t s);

// CTAs per KV head of the sorted-runs selection (select_sorted_kernel): those of the fused one,
// where the head's runs fit in shared memory; 0: it does not apply.
int sorted_ctas(const KvLayerDev& kv, int sm_count);

// The sorted-runs selection, the same contract as fused_launch (sel.work holds
// select_work_words(kv.kv_heads, kv.cap_blocks) words).
cudaError_t sorted_launch(const KvLayerDev& kv, const float* q, int group, float scale,
                          const SelectParams& p, const PassState* st, const SelectionDev& sel,
                          int sm_count, cudaStream_t s);

}  // namespace resa::cuda::topk
