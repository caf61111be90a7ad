// Tensor-core split-KV decode with the combine fused in, internal to kernels/cuda: attention_decode
// (attention.cu) owns the contract and picks the kernel; this file's launcher owns the launch
// shape. Layouts and the contract: attention.h.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/cuda/attention.h"

namespace resa::cuda::fast {

// head_dim 32, 64 or 128, GQA group 1..8.
bool decode_supported(int head_dim, int group);

// Grid (CTAs per KV head, kv.kv_heads) with CTAs per KV head = min(splits, 128, one wave of
// resident CTAs / kv_heads; half a wave when sparse on the shallow ring); `ring` as in
// attention_decode (DecodeRing). On the device, CTAs past ceil(keys / 256) (the context, or the
// selected blocks' keys) leave at once. One CTA in use per head: writes out [n_heads][head_dim]
// directly. More: each CTA writes its normalised partial and log2-sum-exp into the workspace laid
// out for `splits` (decode_workspace_floats), and the last CTA of each KV head (a counter per KV
// head after the partials, zero between calls: decode_workspace_init) merges them into out.
cudaError_t decode_launch(const KvLayerDev& kv, const float* q, float* out, int n_heads,
                          float scale_log2, const PassState* st, const SelectionDev* sel,
                          int splits, float* workspace, DecodeRing ring, cudaStream_t s);

}  // namespace resa::cuda::fast
