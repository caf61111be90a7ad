#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise.h"

namespace resa::cuda {
namespace {

__global__ void embed_kernel(const uint16_t* table, int d, const int* ids, float* out) {
  grid_dependency_wait();
  allow_next_launch();
  const uint16_t* row = table + size_t(ids[blockIdx.x]) * d;
  float* o = out + size_t(blockIdx.x) * d;
  for (int i = threadIdx.x; i < d; i += blockDim.x) o[i] = __uint_as_float(uint32_t(row[i]) << 16);
}

__global__ void rmsnorm_kernel(const float* x, const float* w, int d, float eps, float* out) {
  grid_dependency_wait();
  allow_next_launch();
  const float* xr = x + size_t(blockIdx.x) * d;
  float* o = out + size_t(blockIdx.x) * d;
  float ss = 0;
  for (int i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
  __shared__ float part[32];
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.f;
    v = warp_sum(v);
    if (threadIdx.x == 0) part[0] = v;
  }
  __syncthreads();
  const float inv = 1.0f / sqrtf(part[0] / float(d) + eps);
  for (int i = threadIdx.x; i < d; i += blockDim.x) o[i] = w[i] * (xr[i] * inv);
}

// Rows of two tensors at once (q and k of a pass: one launch); b_heads may be 0.
__global__ void rope_kernel(float* a_x, int a_heads, float* b_x, int b_heads, int head_dim,
                            const PassState* st, const float* inv_freq) {
  grid_dependency_wait();
  allow_next_launch();
  const int t = blockIdx.x, half = head_dim / 2, i = threadIdx.x;
  if (i >= half) return;
  // float32 angles, as transformers (and the CPU twin) compute them.
  const float a = float(st->pos0 + t) * inv_freq[i];
  const float c = cosf(a), sn = sinf(a);
  for (int h = blockIdx.y; h < a_heads + b_heads; h += gridDim.y) {
    float* v = h < a_heads ? a_x + (size_t(t) * a_heads + h) * head_dim
                           : b_x + (size_t(t) * b_heads + h - a_heads) * head_dim;
    const float p = v[i], q = v[i + half];
    v[i] = p * c - q * sn;
    v[i + half] = q * c + p * sn;
  }
}

__global__ void silu_mul_kernel(float* gate, const float* up, int64_t count) {
  grid_dependency_wait();
  allow_next_launch();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    gate[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void add_kernel(float* x, const float* y, int64_t count) {
  grid_dependency_wait();
  allow_next_launch();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

__global__ void add_bias_kernel(float* y, const float* bias, int64_t count, int m) {
  grid_dependency_wait();
  allow_next_launch();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] += bias[i % m];
}

__global__ void to_bf16_kernel(const float* x, int64_t count, uint16_t* out) {
  grid_dependency_wait();
  allow_next_launch();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = f2bf(x[i]);
}

int grid_for(int64_t count) {
  const int64_t g = (count + 255) / 256;
  return int(g < 4096 ? (g > 0 ? g : 1) : 4096);
}

}  // namespace

cudaError_t embed(const uint16_t* table, int d, const int* ids, int n, float* out, cudaStream_t s) {
  return launch(embed_kernel, dim3(n), dim3(256), 0, s, table, d, ids, out);
}
cudaError_t rmsnorm(const float* x, const float* w, int n, int d, float eps, float* out,
                    cudaStream_t s) {
  return launch(rmsnorm_kernel, dim3(n), dim3(512), 0, s, x, w, d, eps, out);
}
cudaError_t rope(float* x, int n, int heads, int head_dim, const PassState* st,
                 const float* inv_freq, cudaStream_t s) {
  return launch(rope_kernel, dim3(n, heads < 8 ? heads : 8), dim3(head_dim / 2), 0, s, x, heads,
                static_cast<float*>(nullptr), 0, head_dim, st, inv_freq);
}
cudaError_t rope_qk(float* q, int q_heads, float* k, int k_heads, int n, int head_dim,
                    const PassState* st, const float* inv_freq, cudaStream_t s) {
  const int heads = q_heads + k_heads;
  return launch(rope_kernel, dim3(n, heads < 16 ? heads : 16), dim3(head_dim / 2), 0, s, q, q_heads,
                k, k_heads, head_dim, st, inv_freq);
}
cudaError_t silu_mul(float* gate, const float* up, int64_t count, cudaStream_t s) {
  return launch(silu_mul_kernel, dim3(grid_for(count)), dim3(256), 0, s, gate, up, count);
}
cudaError_t add(float* x, const float* y, int64_t count, cudaStream_t s) {
  return launch(add_kernel, dim3(grid_for(count)), dim3(256), 0, s, x, y, count);
}
cudaError_t add_bias(float* y, const float* bias, int n, int m, cudaStream_t s) {
  return launch(add_bias_kernel, dim3(grid_for(int64_t(n) * m)), dim3(256), 0, s, y, bias,
                int64_t(n) * m, m);
}
cudaError_t to_bf16(const float* x, int64_t count, uint16_t* out, cudaStream_t s) {
  return launch(to_bf16_kernel, dim3(grid_for(count)), dim3(256), 0, s, x, count, out);
}

}  // namespace resa::cuda
