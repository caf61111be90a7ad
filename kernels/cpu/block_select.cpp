#include "kernels/cpu/block_select.h"

#include <algorithm>
#include <limits>

namespace resa::cpu {

void block_summary_recompute(const KvLayerView& kv, int b, int tokens) {
  const int d = kv.head_dim;
  for (int h = 0; h < kv.kv_heads; ++h) {
    float* lo = kv.kmin(b, h);
    float* hi = kv.kmax(b, h);
    const float* k = kv.k(b, h);
    std::fill(lo, lo + d, std::numeric_limits<float>::infinity());
    std::fill(hi, hi + d, -std::numeric_limits<float>::infinity());
    for (int t = 0; t < tokens; ++t) {
      const float* kr = k + size_t(t) * d;
      for (int x = 0; x < d; ++x) {
        lo[x] = std::min(lo[x], kr[x]);
        hi[x] = std::max(hi[x], kr[x]);
      }
    }
  }
}

void block_scores(const KvLayerView& kv, int h, int num_blocks, const float* q, float* scores) {
  const int d = kv.head_dim;
  for (int b = 0; b < num_blocks; ++b) {
    const float* lo = kv.kmin(b, h);
    const float* hi = kv.kmax(b, h);
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int x = 0; x < d; ++x) s += std::max(q[x] * hi[x], q[x] * lo[x]);
    scores[b] = s;
  }
}

int select_top_blocks(const float* scores, int num_blocks, int budget, bool sink, int local,
                      int* out, int* scratch) {
  budget = std::clamp(budget, 0, num_blocks);
  auto forced = [&](int b) { return (sink && b == 0) || b >= num_blocks - local; };
  int n = 0;
  for (int b = 0; b < num_blocks; ++b) scratch[n++] = b;
  auto better = [&](int x, int y) {
    const bool fx = forced(x), fy = forced(y);
    if (fx != fy) return fx;
    if (scores[x] != scores[y]) return scores[x] > scores[y];
    return x < y;
  };
  int forced_count = 0;
  for (int b = 0; b < num_blocks; ++b) forced_count += forced(b);
  const int k = std::max(budget, std::min(forced_count, num_blocks));
  if (k < num_blocks) std::nth_element(scratch, scratch + k, scratch + num_blocks, better);
  std::copy(scratch, scratch + k, out);
  std::sort(out, out + k);
  return k;
}

}  // namespace resa::cpu
