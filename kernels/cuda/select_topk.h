// Top-k of ReSA block selection with the scores held in shared memory, internal to kernels/cuda:
// attention.cu's top_blocks / select_blocks own the contract (attention.h) and fall back to the
// reference kernel (topk_kernel, 4 radix passes streamed from global memory) where this one does
// not fit.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/cuda/attention.h"

namespace resa::cuda::sel {

// Dynamic shared memory topk_smem_launch needs for a cache of cap_blocks blocks per KV head.
size_t topk_smem_bytes(int cap_blocks);

// True when this device can give topk_smem_launch the shared memory a cache of cap_blocks needs.
bool topk_smem_fits(int cap_blocks);

// One CTA of 1024 threads per KV head. Same result as the reference kernel, bit for bit: the
// count k of RESA.md step 6, the blocks of the k largest keys (sink and local forced, ties to
// the lower index) ascending in sel.blocks, per-block hits counted when sel.hits is set.
cudaError_t topk_smem_launch(const KvLayerDev& kv, const SelectParams& p, const PassState* st,
                             const SelectionDev& sel, cudaStream_t s);

}  // namespace resa::cuda::sel
