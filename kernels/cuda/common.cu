// Host side of the helpers in common.cuh.
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/common.cuh"

namespace resa::cuda {

bool pdl_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("RESA_PDL");
    if (e && std::strcmp(e, "0") == 0) return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return major >= 9;
  }();
  return on;
}

int device_sm_count() {
  static const int n = [] {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return 1;
    }
    return sms > 0 ? sms : 1;
  }();
  return n;
}

}  // namespace resa::cuda
