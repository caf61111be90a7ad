#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace resa::cpu {
namespace {

constexpr int kQueryTile = 16;

inline float dot(const float* a, const float* b, int d) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < d; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

void attention(const AttentionArgs& a) {
  const KvLayerView& kv = a.kv;
  const int d = kv.head_dim, bs = kv.block_size;
  const int group = a.n_heads / kv.kv_heads;
  const int tiles = (a.nq + kQueryTile - 1) / kQueryTile;
  const int work = kv.kv_heads * tiles;

#pragma omp parallel
  {
    // Online-softmax state of one tile: rows = query x head-in-group.
    const int rows_max = kQueryTile * group;
    std::vector<float> m(rows_max), l(rows_max), acc(size_t(rows_max) * d);
    std::vector<float> p(size_t(rows_max) * bs);
#pragma omp for schedule(dynamic, 1)
    for (int w = 0; w < work; ++w) {
      const int h = w / tiles, tile = w % tiles;
      const int q0 = tile * kQueryTile, nq = std::min(kQueryTile, a.nq - q0);
      const int rows = nq * group;
      const int last_pos = a.pos0 + q0 + nq - 1;
      std::fill(m.begin(), m.begin() + rows, -std::numeric_limits<float>::infinity());
      std::fill(l.begin(), l.begin() + rows, 0.f);
      std::fill(acc.begin(), acc.begin() + size_t(rows) * d, 0.f);

      const int n_blocks = a.selected ? a.n_selected[h] : last_pos / bs + 1;
      for (int bi = 0; bi < n_blocks; ++bi) {
        const int b = a.selected ? a.selected[h][bi] : bi;
        const int first = b * bs;
        if (first > last_pos) break;
        const int nk = std::min(bs, last_pos - first + 1);
        const float* kb = kv.k(b, h);
        const float* vb = kv.v(b, h);
        for (int i = 0; i < nq; ++i) {
          const int qpos = a.pos0 + q0 + i;
          const int visible = std::min(nk, qpos - first + 1);  // causal mask inside the block
          for (int g = 0; g < group; ++g) {
            const int r = i * group + g;
            const float* q = a.q + (size_t(q0 + i) * a.n_heads + size_t(h) * group + g) * d;
            float* pr = p.data() + size_t(r) * bs;
            if (visible <= 0) continue;
            float bmax = -std::numeric_limits<float>::infinity();
            for (int t = 0; t < visible; ++t) {
              pr[t] = dot(q, kb + size_t(t) * d, d) * a.scale;
              bmax = std::max(bmax, pr[t]);
            }
            const float m_new = std::max(m[r], bmax);
            const float correction = std::exp(m[r] - m_new);
            float* ar = acc.data() + size_t(r) * d;
            float lsum = l[r] * correction;
#pragma omp simd
            for (int x = 0; x < d; ++x) ar[x] *= correction;
            for (int t = 0; t < visible; ++t) {
              const float e = std::exp(pr[t] - m_new);
              lsum += e;
              const float* vr = vb + size_t(t) * d;
#pragma omp simd
              for (int x = 0; x < d; ++x) ar[x] += e * vr[x];
            }
            l[r] = lsum;
            m[r] = m_new;
          }
        }
      }
      for (int i = 0; i < nq; ++i) {
        for (int g = 0; g < group; ++g) {
          const int r = i * group + g;
          float* o = a.out + (size_t(q0 + i) * a.n_heads + size_t(h) * group + g) * d;
          const float inv = l[r] > 0 ? 1.0f / l[r] : 0.f;
          for (int x = 0; x < d; ++x) o[x] = acc[size_t(r) * d + x] * inv;
        }
      }
    }
  }
}

}  // namespace resa::cpu
