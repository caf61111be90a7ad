#include <omp.h>

#include <cmath>
#include <cstring>

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

  Buffer alloc(size_t bytes) override {
    Buffer b;
    b.mem = std::shared_ptr<void>(new float[(bytes + 3) / 4](),
                                  [](void* p) { delete[] static_cast<float*>(p); });
    b.bytes = bytes;
    return b;
  }
  void to_host(const float* src, size_t count, float* dst) override {
    if (src != dst) std::memcpy(dst, src, count * sizeof(float));
  }
  void from_host(const float* src, size_t count, float* dst) override {
    if (src != dst) std::memcpy(dst, src, count * sizeof(float));
  }
  ModelWeights upload_weights(const ModelWeights&) override {
    return {};  // the host views are what the CPU kernels read
  }
  std::unique_ptr<KvCache> make_kv_cache(const ModelConfig& c, int block_size,
                                         int capacity) override {
    return std::make_unique<KvCache>(c, block_size, capacity);
  }

  void begin_pass(KvCache& kv, const int* tokens, int n, int pos0) override {
    if (kv.on_device())
      throw Error(ErrorKind::kInternal, "the CPU backend was given a KV cache in device memory");
    tokens_ = tokens;
    n_ = n;
    pos0_ = pos0;
    positions_.resize(n);
    for (int i = 0; i < n; ++i) positions_[i] = pos0 + i;
  }

  void embed(const WeightView& t, float* out) override {
    if (t.dtype == DType::kBF16)
      cpu::embed_bf16(static_cast<const uint16_t*>(t.data), int(t.cols), tokens_, n_, out);
    else
      cpu::embed_f32(static_cast<const float*>(t.data), int(t.cols), tokens_, n_, out);
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
  void rope(float* x, int n, int heads, int head_dim, const float* inv_freq) override {
    cpu::rope(x, n, heads, head_dim, positions_.data(), inv_freq);
  }
  void silu_mul(float* gate, const float* up, int64_t count) override {
    cpu::silu_mul(gate, up, count);
  }
  void add(float* x, const float* y, int64_t count) override { cpu::add_inplace(x, y, count); }

  void kv_write(KvCache& kv, int layer, const float* k, const float* v) override {
    kv.write(layer, pos0_, n_, k, v);
  }

  void select_blocks(KvCache& kv, int layer, const float* q, int n_heads, float scale,
                     const ResaParams& p, bool count_hits) override {
    const cpu::KvLayerView view = kv.layer(layer);
    const int ctx = pos0_ + n_, bs = view.block_size, nb = (ctx + bs - 1) / bs;
    const int kvh = view.kv_heads, g = n_heads / kvh, d = view.head_dim;
    const int budget = resa_budget(nb, p);
    scores_.resize(nb);
    qsel_.resize(d);
    sel_storage_.resize(size_t(kvh) * nb);
    sel_scratch_.resize(nb);
    n_sel_.resize(kvh);
    sel_ptrs_.resize(kvh);
    if (count_hits && int(hits_.size()) < nb) hits_.resize(nb, 0);
    for (int h = 0; h < kvh; ++h) {
      // RESA.md step 3: the group's mean query, scaled by 1/sqrt(head_dim).
      std::fill(qsel_.begin(), qsel_.end(), 0.f);
      for (int j = 0; j < g; ++j) {
        const float* qh = q + size_t(h * g + j) * d;
        for (int x = 0; x < d; ++x) qsel_[x] += qh[x];
      }
      for (float& x : qsel_) x *= scale / float(g);
      cpu::block_scores(view, h, nb, qsel_.data(), scores_.data());
      int* out = sel_storage_.data() + size_t(h) * nb;
      n_sel_[h] = cpu::select_top_blocks(scores_.data(), nb, budget, p.sink, p.local, out,
                                         sel_scratch_.data());
      sel_ptrs_[h] = out;
      if (count_hits)
        for (int i = 0; i < n_sel_[h]; ++i) ++hits_[out[i]];
    }
  }

  void attention(KvCache& kv, int layer, const float* q, float* out, int n_heads, float scale,
                 bool sparse) override {
    cpu::AttentionArgs a;
    a.q = q;
    a.out = out;
    a.nq = n_;
    a.pos0 = pos0_;
    a.n_heads = n_heads;
    a.kv = kv.layer(layer);
    a.scale = scale;
    if (sparse) {
      a.selected = sel_ptrs_.data();
      a.n_selected = n_sel_.data();
    }
    cpu::attention(a);
  }

  void collect_block_hits(KvCache&, std::vector<uint32_t>& hits) override {
    for (size_t b = 0; b < hits_.size() && b < hits.size(); ++b) hits[b] += hits_[b];
    std::fill(hits_.begin(), hits_.end(), 0);
  }

 private:
  int threads_ = 1;
  const int* tokens_ = nullptr;
  int n_ = 0, pos0_ = 0;
  std::vector<int> positions_;
  std::vector<float> scores_, qsel_;
  std::vector<int> sel_storage_, sel_scratch_, n_sel_;
  std::vector<const int*> sel_ptrs_;
  std::vector<uint32_t> hits_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace resa
