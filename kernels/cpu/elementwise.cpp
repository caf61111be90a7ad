#include "kernels/cpu/elementwise.h"

#include <bit>
#include <cmath>
#include <cstring>

namespace resa::cpu {

void rmsnorm(const float* x, const float* w, int n, int d, float eps, float* out) {
#pragma omp parallel for schedule(static) if (n > 1)
  for (int t = 0; t < n; ++t) {
    const float* xr = x + size_t(t) * d;
    float* o = out + size_t(t) * d;
    float ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < d; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / float(d) + eps);
#pragma omp simd
    for (int i = 0; i < d; ++i) o[i] = w[i] * (xr[i] * inv);
  }
}

void rope(float* x, int n, int heads, int head_dim, const int* positions, const float* inv_freq) {
  const int half = head_dim / 2;
#pragma omp parallel for schedule(static) if (n > 1)
  for (int t = 0; t < n; ++t) {
    // float32 angles, as transformers computes them, so logits match its reference.
    float cs[256], sn[256];
    for (int i = 0; i < half; ++i) {
      const float a = float(positions[t]) * inv_freq[i];
      cs[i] = std::cos(a);
      sn[i] = std::sin(a);
    }
    for (int h = 0; h < heads; ++h) {
      float* v = x + (size_t(t) * heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
      }
    }
  }
}

void silu_mul(float* gate, const float* up, int64_t count) {
#pragma omp parallel for simd schedule(static) if (count > 4096)
  for (int64_t i = 0; i < count; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void add_inplace(float* x, const float* y, int64_t count) {
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) x[i] += y[i];
}

void embed_bf16(const uint16_t* table, int d, const int* ids, int n, float* out) {
  for (int t = 0; t < n; ++t) {
    const uint16_t* row = table + size_t(ids[t]) * d;
    for (int i = 0; i < d; ++i)
      out[size_t(t) * d + i] = std::bit_cast<float>(uint32_t{row[i]} << 16);
  }
}

void embed_f32(const float* table, int d, const int* ids, int n, float* out) {
  for (int t = 0; t < n; ++t) std::memcpy(out + size_t(t) * d, table + size_t(ids[t]) * d, d * 4);
}

}  // namespace resa::cpu
