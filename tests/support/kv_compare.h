// Comparing the K/V of two caches position by position (rectification and GPU tests).
#pragma once

#include <algorithm>
#include <cmath>

#include "engine/kv_cache.h"
#include "engine/model_config.h"

namespace resa::test {

// max |a - b| / max |b| over n values.
inline double max_rel_diff(const float* a, const float* b, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; ++i) {
    num = std::max(num, double(std::abs(a[i] - b[i])));
    den = std::max(den, double(std::abs(b[i])));
  }
  return den > 0 ? num / den : num;
}

// Largest relative difference of K and V over positions [0, n) of every layer and KV head.
inline double kv_diff(const KvCache& a, const KvCache& b, int n, const ModelConfig& c) {
  double worst = 0;
  for (int l = 0; l < c.num_layers; ++l)
    for (int p = 0; p < n; ++p)
      for (int h = 0; h < c.num_kv_heads; ++h) {
        worst = std::max(worst, max_rel_diff(a.key(l, p, h), b.key(l, p, h), c.head_dim));
        worst = std::max(worst, max_rel_diff(a.value(l, p, h), b.value(l, p, h), c.head_dim));
      }
  return worst;
}

}  // namespace resa::test
