// Helpers shared by the CUDA kernels: bf16 vectors, warp reductions, non-caching loads.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>
#include <utility>

namespace resa::cuda {

constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// 16 bytes that are read once (weights, KV): bypass L1 so the stream does not evict reused data.
__device__ __forceinline__ uint4 ld_stream(const void* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

// The 8 bf16 of a 16-byte vector, widened.
__device__ __forceinline__ void unpack8(const uint4& v, float f[8]) {
  f[0] = bf16_lo(v.x), f[1] = bf16_hi(v.x), f[2] = bf16_lo(v.y), f[3] = bf16_hi(v.y);
  f[4] = bf16_lo(v.z), f[5] = bf16_hi(v.z), f[6] = bf16_lo(v.w), f[7] = bf16_hi(v.w);
}

__device__ __forceinline__ uint16_t f2bf(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

// ---------------------------------------------------------------- programmatic dependent launch
//
// A decode step is hundreds of short kernels in one CUDA graph; between two of them the GPU
// idles while the next grid launches. With programmatic dependent launch (sm_90+) the next
// kernel's CTAs are scheduled while the previous kernel drains. The contract, kept by every
// kernel started through launch():
//   - it calls grid_dependency_wait() before it reads or writes anything a kernel of the step
//     writes: only the GEMVs load weights before it (weights are written by no kernel of a
//     step), so their first loads overlap the previous kernel's tail; every CTA reaches the wait
//     (so a kernel that finished implies the one before it finished too);
//   - it may then call allow_next_launch() to let the following kernel's CTAs be scheduled (they
//     wait at their own grid_dependency_wait()).
// Both are no-ops for a kernel launched the ordinary way and on GPUs before sm_90.
__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void allow_next_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether launch() asks for programmatic serialization: on sm_90 and newer unless RESA_PDL=0 is in
// the environment (read once per process). On an H200, side by side (docs/benchmarks/
// h200-s13.json): a llama-3.1-8b decode step at 4K took 4.59 ms with it and 4.86 without, the
// GEMVs of a whole step 3.91 ms against 4.05. It gains only with the GEMVs' common carveout
// (gemv.cu): without it, 4.90 against 4.77 ms. Before the GEMVs loaded weights ahead of their
// wait it gained nothing (5.63 against 5.45 ms, h200-s10.json).
bool pdl_enabled();

// f(std::integral_constant<int, d>{}) when d is one of Ds (the head dims a kernel is instantiated
// for), else cudaErrorInvalidValue.
template <int... Ds, typename F>
cudaError_t dispatch_dim(int d, F&& f) {
  cudaError_t r = cudaErrorInvalidValue;
  (void)((d == Ds ? (r = f(std::integral_constant<int, Ds>{}), true) : false) || ...);
  return r;
}

// Multiprocessors of the current device (read once per process; 1 if it cannot be read).
int device_sm_count();

// kernel<<<grid, block, smem, s>>>(args...), with programmatic dependent launch where enabled.
template <typename... Params, typename... Args>
cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                   Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace resa::cuda
