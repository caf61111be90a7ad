#include "kernels/cpu/linear.h"

#include <omp.h>

#include <bit>
#include <vector>

namespace resa::cpu {
namespace {

inline float widen(uint16_t h) { return std::bit_cast<float>(uint32_t{h} << 16); }

// Four activation rows against one weight row: each weight element is loaded once.
inline void dot4(const float* w, const float* x0, const float* x1, const float* x2, const float* x3,
                 int k, float out[4]) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
  for (int i = 0; i < k; ++i) {
    s0 += w[i] * x0[i];
    s1 += w[i] * x1[i];
    s2 += w[i] * x2[i];
    s3 += w[i] * x3[i];
  }
  out[0] = s0, out[1] = s1, out[2] = s2, out[3] = s3;
}

inline float dot1(const float* w, const float* x, int k) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < k; ++i) s += w[i] * x[i];
  return s;
}

inline float dot1_bf16(const uint16_t* w, const float* x, int k) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < k; ++i) s += widen(w[i]) * x[i];
  return s;
}

// One weight row (already f32) against all n activation rows.
inline void row_times_all(const float* wrow, const float* x, int n, int k, int m, int j, float bias,
                          float* y) {
  int t = 0;
  for (; t + 4 <= n; t += 4) {
    float r[4];
    const float* xt = x + size_t(t) * k;
    dot4(wrow, xt, xt + k, xt + 2 * size_t(k), xt + 3 * size_t(k), k, r);
    for (int u = 0; u < 4; ++u) y[size_t(t + u) * m + j] = r[u] + bias;
  }
  for (; t < n; ++t) y[size_t(t) * m + j] = dot1(wrow, x + size_t(t) * k, k) + bias;
}

}  // namespace

void matmul_f32(const float* x, int n, int k, const float* w, int m, const float* bias, float* y) {
#pragma omp parallel for schedule(static)
  for (int j = 0; j < m; ++j) {
    row_times_all(w + size_t(j) * k, x, n, k, m, j, bias ? bias[j] : 0.f, y);
  }
}

void matmul_bf16(const float* x, int n, int k, const uint16_t* w, int m, const float* bias,
                 float* y) {
  if (n == 1) {
    // Decode: one pass over the weights, widened in registers.
#pragma omp parallel for schedule(static)
    for (int j = 0; j < m; ++j) y[j] = dot1_bf16(w + size_t(j) * k, x, k) + (bias ? bias[j] : 0.f);
    return;
  }
#pragma omp parallel
  {
    std::vector<float> row(k);
#pragma omp for schedule(static)
    for (int j = 0; j < m; ++j) {
      const uint16_t* src = w + size_t(j) * k;
#pragma omp simd
      for (int i = 0; i < k; ++i) row[i] = widen(src[i]);
      row_times_all(row.data(), x, n, k, m, j, bias ? bias[j] : 0.f, y);
    }
  }
}

}  // namespace resa::cpu
