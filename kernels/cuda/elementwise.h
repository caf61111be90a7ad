// Row-wise ops of the transformer block on the GPU (twins of kernels/cpu/elementwise.h).
// Activations are f32 in device memory; tables and weights bf16. Each launcher enqueues on
// `stream` and returns the launch status.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace resa::cuda {

// Per-pass values kept in device memory, so a recorded decode step can be replayed at the next
// position: the pass covers positions pos0 .. pos0+n-1; the cache holds ctx_end positions after it.
struct PassState {
  int pos0;
  int n;
  int ctx_end;
  int pad;
};

// out[n][d] = table[ids[i]] (bf16 -> f32). ids: [n] device.
cudaError_t embed(const uint16_t* table, int d, const int* ids, int n, float* out, cudaStream_t s);
// out[n][d] = x / sqrt(mean(x^2) + eps) * w.  x, out: [n][d] f32 (may alias), w: [d] f32.
cudaError_t rmsnorm(const float* x, const float* w, int n, int d, float eps, float* out,
                    cudaStream_t s);
// Rotary embedding ("rotate half"), in place. x: [n][heads][head_dim]; row i at position
// st->pos0 + i; inv_freq: [head_dim / 2].
cudaError_t rope(float* x, int n, int heads, int head_dim, const PassState* st,
                 const float* inv_freq, cudaStream_t s);
// rope() of q [n][q_heads][head_dim] and k [n][k_heads][head_dim] in one launch.
cudaError_t rope_qk(float* q, int q_heads, float* k, int k_heads, int n, int head_dim,
                    const PassState* st, const float* inv_freq, cudaStream_t s);
// gate[i] = silu(gate[i]) * up[i].
cudaError_t silu_mul(float* gate, const float* up, int64_t count, cudaStream_t s);
// x[i] += y[i].
cudaError_t add(float* x, const float* y, int64_t count, cudaStream_t s);
// y[n][m] += bias[m].
cudaError_t add_bias(float* y, const float* bias, int n, int m, cudaStream_t s);
// out[i] = bf16(x[i]) (round to nearest even).
cudaError_t to_bf16(const float* x, int64_t count, uint16_t* out, cudaStream_t s);

}  // namespace resa::cuda
