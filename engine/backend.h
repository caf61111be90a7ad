// The seam between the model and the hardware (DESIGN.md "backends"): a backend implements
// ops, not models. The CPU backend is the reference and is always built; the CUDA backend
// implements the same ops on device memory.
//
// A backend owns the memory it computes in: activations (Buffer), the weights as it reads them
// (upload_weights) and the KV cache (make_kv_cache). Every float* an op takes points into
// memory of that backend (host memory for the CPU, device memory for a GPU). One forward pass
// is announced by begin_pass(); the ops then know the pass's tokens and positions, which is
// what lets a GPU backend record a decode step once and replay it (one launch per step).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/model_config.h"
#include "engine/resa.h"
#include "engine/weights.h"

namespace resa {

// Memory of a backend, freed when the last copy goes.
struct Buffer {
  std::shared_ptr<void> mem;
  size_t bytes = 0;
  float* f32() const { return static_cast<float*>(mem.get()); }
  bool empty() const { return !mem; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "CPU (8 threads)", "NVIDIA H100 80GB HBM3"
  virtual bool is_gpu() const = 0;

  // --- memory
  virtual Buffer alloc(size_t bytes) = 0;
  virtual void to_host(const float* src, size_t count, float* dst) = 0;
  virtual void from_host(const float* src, size_t count, float* dst) = 0;
  // Waits for the work issued so far (timing); ops may run asynchronously until a to_host().
  virtual void synchronize() {}
  // Bytes of device memory this process holds (weights, KV, workspace); 0 on the CPU.
  virtual size_t device_memory_bytes() const { return 0; }
  // The weights as the backend reads them. CPU: the same views. CUDA: a device copy (matrices
  // bf16, norms and biases f32) that lives as long as the backend.
  virtual ModelWeights upload_weights(const ModelWeights& host) = 0;
  // A KV cache for `capacity` tokens in this backend's memory. Throws Error(kOutOfMemory) with
  // the largest context that fits, before allocating, when it cannot fit.
  virtual std::unique_ptr<KvCache> make_kv_cache(const ModelConfig& c, int block_size,
                                                 int capacity) = 0;

  // --- one forward pass of tokens[0..n) at positions pos0 .. pos0+n-1, writing into kv.
  virtual void begin_pass(KvCache& kv, const int* tokens, int n, int pos0) = 0;
  // A backend that records decode steps (n == 1) replays the one recorded under `key` and
  // returns true: the whole pass ran. Otherwise returns false and the caller issues the ops
  // between begin_record and end_record, which may record them.
  virtual bool replay(KvCache&, const std::string& /*key*/) { return false; }
  // Appended to a decode step's key: what the backend's kernels for the pass begun last depend
  // on besides the key (a recorded step is replayed while the context grows).
  virtual std::string step_variant(bool /*sparse*/) const { return {}; }
  virtual void begin_record(KvCache&, const std::string& /*key*/) {}
  virtual void end_record(KvCache&) {}

  // --- ops. Rows are the pass's n tokens.
  // out[n][hidden] = embedding rows of the pass's tokens.
  virtual void embed(const WeightView& table, float* out) = 0;
  virtual void rmsnorm(const float* x, const WeightView& w, int n, float eps, float* out) = 0;
  // y[n][w.rows] = x[n][w.cols] . W^T (+ bias[w.rows] when bias is not empty).
  virtual void linear(const float* x, int n, const WeightView& w, const WeightView& bias,
                      float* y) = 0;
  // Several products of the same input (q/k/v, gate/up): a GPU backend streams them in one
  // launch at batch 1.
  struct LinearJob {
    const WeightView* w;
    const WeightView* bias;  // may be null
    float* y;
  };
  virtual void linear_group(const float* x, int n, std::initializer_list<LinearJob> jobs) {
    for (const LinearJob& j : jobs) linear(x, n, *j.w, j.bias ? *j.bias : WeightView{}, j.y);
  }
  // Fused pairs of the block. A GPU backend does each in one launch at batch 1; the defaults
  // are the two ops in sequence, the reference the fused versions are tested against.
  // residual[n][w.rows] += x . W^T (o-proj / down and the residual add; tmp: [n][w.rows]).
  virtual void linear_residual(const float* x, int n, const WeightView& w, float* tmp,
                               float* residual) {
    linear(x, n, w, {}, tmp);
    add(residual, tmp, int64_t(n) * w.rows);
  }
  // gate = silu(x . Wg^T) * (x . Wu^T), [n][w_gate.rows]; up is scratch of the same size.
  virtual void linear_silu_mul(const float* x, int n, const WeightView& w_gate,
                               const WeightView& w_up, float* gate, float* up) {
    linear_group(x, n, {{&w_gate, nullptr, gate}, {&w_up, nullptr, up}});
    silu_mul(gate, up, int64_t(n) * w_gate.rows);
  }
  // The block's norm and its first products: h = rmsnorm(x) ([n][w.cols]), then
  // linear_group(h) / linear_silu_mul(h). A GPU backend normalizes inside the products at batch 1
  // (one launch) and then leaves h unwritten: h is scratch.
  virtual void norm_linear_group(const float* x, const WeightView& norm, float eps, int n, float* h,
                                 std::initializer_list<LinearJob> jobs) {
    rmsnorm(x, norm, n, eps, h);
    linear_group(h, n, jobs);
  }
  virtual void norm_linear_silu_mul(const float* x, const WeightView& norm, float eps, int n,
                                    float* h, const WeightView& w_gate, const WeightView& w_up,
                                    float* gate, float* up) {
    rmsnorm(x, norm, n, eps, h);
    linear_silu_mul(h, n, w_gate, w_up, gate, up);
  }
  // Rotary embedding at the pass's positions. inv_freq: [head_dim / 2] in backend memory.
  virtual void rope(float* x, int n, int heads, int head_dim, const float* inv_freq) = 0;
  // rope() of q [n][heads][head_dim] and k [n][kv_heads][head_dim].
  virtual void rope_qk(float* q, float* k, int n, int heads, int kv_heads, int head_dim,
                       const float* inv_freq) {
    rope(q, n, heads, head_dim, inv_freq);
    rope(k, n, kv_heads, head_dim, inv_freq);
  }
  virtual void silu_mul(float* gate, const float* up, int64_t count) = 0;
  virtual void add(float* x, const float* y, int64_t count) = 0;
  // Writes the pass's K and V ([n][kv_heads][head_dim]) of one layer and recomputes the
  // summaries of the blocks they touch (RESA.md step 2).
  virtual void kv_write(KvCache& kv, int layer, const float* k, const float* v) = 0;
  // rope_qk(q, k) then kv_write(k, v): a GPU backend does a decode step's in one launch.
  virtual void rope_kv_write(KvCache& kv, int layer, float* q, float* k, const float* v, int n,
                             int heads, int kv_heads, int head_dim, const float* inv_freq) {
    rope_qk(q, k, n, heads, kv_heads, head_dim, inv_freq);
    kv_write(kv, layer, k, v);
  }
  // ReSA selection of a decode step (n == 1) for one layer, RESA.md steps 3-6: the group-mean
  // query of each KV head, block scores, the top blocks with sink and local. Kept by the
  // backend for the next sparse attention(). With count_hits, every selected block is counted
  // for collect_block_hits().
  virtual void select_blocks(KvCache& kv, int layer, const float* q, int n_heads, float scale,
                             const ResaParams& p, bool count_hits) = 0;
  // Causal attention of the pass's queries (q, out: [n][n_heads][head_dim]) over the cache;
  // sparse: over the blocks of the last select_blocks() only (RESA.md step 7).
  virtual void attention(KvCache& kv, int layer, const float* q, float* out, int n_heads,
                         float scale, bool sparse) = 0;
  // Adds the selections counted since the last call to hits[block] and clears the counters.
  virtual void collect_block_hits(KvCache& kv, std::vector<uint32_t>& hits) = 0;
};

// threads <= 0: all cores.
std::unique_ptr<Backend> make_cpu_backend(int threads);

}  // namespace resa
