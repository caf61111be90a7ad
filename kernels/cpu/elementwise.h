// Row-wise ops of the transformer block: RMSNorm, rotary embedding, SwiGLU gate, residual add.
#pragma once

#include <cstddef>
#include <cstdint>

namespace resa::cpu {

// out[n][d] = x[n][d] / sqrt(mean(x^2) + eps) * w[d]. out may alias x.
void rmsnorm(const float* x, const float* w, int n, int d, float eps, float* out);

// Rotary embedding in the Hugging Face "rotate half" layout, in place.
// x: [n][heads][head_dim], positions: [n], inv_freq: [head_dim / 2].
void rope(float* x, int n, int heads, int head_dim, const int* positions, const float* inv_freq);

// gate[i] = silu(gate[i]) * up[i] for i < count.
void silu_mul(float* gate, const float* up, int64_t count);

// x[i] += y[i] for i < count.
void add_inplace(float* x, const float* y, int64_t count);

// out[n][d] = table[ids[i]] widened to f32 (bf16 bits or f32 rows).
void embed_bf16(const uint16_t* table, int d, const int* ids, int n, float* out);
void embed_f32(const float* table, int d, const int* ids, int n, float* out);

}  // namespace resa::cpu
