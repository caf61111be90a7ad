// The CUDA backend (bf16 weights, KV cache and GEMM operands, fp32 accumulation; see
// kernels/cuda/). Built when the CUDA toolkit is found (RESA_HAVE_CUDA).
#pragma once

#include <memory>
#include <string>

#include "engine/backend.h"

namespace resa {

// The backend on CUDA device `gpu`, or null with the reason in *why_not (no toolkit at build
// time, no driver, no device, a device too old) when none is usable.
std::unique_ptr<Backend> make_cuda_backend(int gpu, std::string* why_not);

// True when make_cuda_backend(gpu) would succeed; *why_not says why not.
bool cuda_usable(int gpu, std::string* why_not);

}  // namespace resa
