// Single-kernel timings for resa-bench --op (STYLE.md 4): each CUDA kernel alone at given
// shapes, with the bytes it must move and the achieved bandwidth. Empty without CUDA.
#pragma once

#include <string>
#include <vector>

namespace resa {

struct OpTiming {
  std::string
      op;  // "copy", "gemv", "attn_dense", "select", "scores", "topk", "attn_sparse", "sparse_step"
  std::string shape;  // e.g. "ctx=262144 heads=32/8 d=128"
  double us_median = 0, us_p10 = 0, us_p90 = 0;
  double bytes = 0;  // fewest bytes the op must move
  double gb_per_s = 0;
};

// Device-to-device copy of `bytes` (read + write counted), median of repeats, in GB/s.
double cuda_copy_bandwidth_gbs(size_t bytes, int repeats);

// Times `op` ("gemv", "attention", "selection", "all") at the given contexts for a decode-shaped
// layer (heads / kv_heads / head_dim, ReSA block size and ratio). Throws resa::Error without
// a usable GPU.
std::vector<OpTiming> cuda_op_bench(const std::string& op, const std::vector<int>& contexts,
                                    int heads, int kv_heads, int head_dim, int block_size,
                                    double ratio, int min_blocks, int repeats);

}  // namespace resa
