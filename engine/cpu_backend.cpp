#include <omp.h>

#include "engine/backend.h"
#include "engine/error.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/block_select.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/linear.h"

namespace resa {
namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) {
    if (threads > 0) omp_set_num_threads(threads);
    threads_ = omp_get_max_threads();
  }
  std::string name() const override { return "CPU (" + std::to_string(threads_) + " threads)"; }
  bool is_gpu() const override { return false; }

  void embed(const WeightView& t, const int* ids, int n, float* out) override {
    if (t.dtype == DType::kBF16)
      cpu::embed_bf16(static_cast<const uint16_t*>(t.data), int(t.cols), ids, n, out);
    else
      cpu::embed_f32(static_cast<const float*>(t.data), int(t.cols), ids, n, out);
  }
  void rmsnorm(const float* x, const WeightView& w, int n, float eps, float* out) override {
    cpu::rmsnorm(x, static_cast<const float*>(w.data), n, int(w.cols), eps, out);
  }
  void linear(const float* x, int n, const WeightView& w, const WeightView& bias,
              float* y) override {
    const float* b = bias.empty() ? nullptr : static_cast<const float*>(bias.data);
    if (w.dtype == DType::kBF16)
      cpu::matmul_bf16(x, n, int(w.cols), static_cast<const uint16_t*>(w.data), int(w.rows), b, y);
    else if (w.dtype == DType::kF32)
      cpu::matmul_f32(x, n, int(w.cols), static_cast<const float*>(w.data), int(w.rows), b, y);
    else
      throw Error(ErrorKind::kInternal, "CPU linear: f16 weights must be widened at load");
  }
  void rope(float* x, int n, int heads, int head_dim, const int* positions,
            const float* inv_freq) override {
    cpu::rope(x, n, heads, head_dim, positions, inv_freq);
  }
  void silu_mul(float* gate, const float* up, int64_t count) override {
    cpu::silu_mul(gate, up, count);
  }
  void add(float* x, const float* y, int64_t count) override { cpu::add_inplace(x, y, count); }
  void attention(const cpu::AttentionArgs& args) override { cpu::attention(args); }
  void block_scores(const cpu::KvLayerView& kv, int h, int num_blocks, const float* q,
                    float* scores) override {
    cpu::block_scores(kv, h, num_blocks, q, scores);
  }

 private:
  int threads_ = 1;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace resa
