// Split-KV decode with cp.async-pipelined K/V tiles, internal to kernels/cuda: attention_decode
// (attention.cu) owns the contract (attention.h), picks this kernel or the reference
// decode_kernel, and runs the combine.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/cuda/attention.h"

namespace resa::cuda::pipe {

// Grid (splits, kv_heads), 128 threads. Same outputs as decode_kernel: per split the normalised
// partial output part_o[splits][n_heads][head_dim] and its log2-sum-exp part_lse[splits][n_heads]
// (-inf where the split saw no key). sel_blocks / sel_count null: dense over positions <= pos0;
// else the selected blocks' positions (< pos0 + 1) of each KV head. head_dim 16..128, group 1..8
// (attention_supported).
cudaError_t decode_launch(const KvLayerDev& kv, const float* q, float scale_log2,
                          const PassState* st, const int* sel_blocks, const int* sel_count,
                          int n_heads, int splits, float* part_o, float* part_lse, cudaStream_t s);

}  // namespace resa::cuda::pipe
