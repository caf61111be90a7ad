// The seam between the model and the hardware (DESIGN.md "backends"): a backend implements
// ops, not models. The CPU backend is the reference and is always built; the CUDA backend
// implements the same ops on device memory.
#pragma once

#include <memory>
#include <string>

#include "engine/weights.h"
#include "kernels/cpu/attention.h"

namespace resa {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "CPU (8 threads)", "NVIDIA H100 80GB HBM3"
  virtual bool is_gpu() const = 0;

  // out[n][hidden] = embedding rows of ids.
  virtual void embed(const WeightView& table, const int* ids, int n, float* out) = 0;
  virtual void rmsnorm(const float* x, const WeightView& w, int n, float eps, float* out) = 0;
  // y[n][w.rows] = x[n][w.cols] . W^T (+ bias[w.rows] when bias is not empty).
  virtual void linear(const float* x, int n, const WeightView& w, const WeightView& bias,
                      float* y) = 0;
  virtual void rope(float* x, int n, int heads, int head_dim, const int* positions,
                    const float* inv_freq) = 0;
  virtual void silu_mul(float* gate, const float* up, int64_t count) = 0;
  virtual void add(float* x, const float* y, int64_t count) = 0;
  virtual void attention(const cpu::AttentionArgs& args) = 0;
  virtual void block_scores(const cpu::KvLayerView& kv, int kv_head, int num_blocks,
                            const float* q, float* scores) = 0;
};

// threads <= 0: all cores.
std::unique_ptr<Backend> make_cpu_backend(int threads);

}  // namespace resa
