// The CUDA backend: the ops of backend.h on device memory, bf16 weights and KV cache, f32
// activations and accumulation. Decode steps (n == 1) are recorded into a CUDA graph once per
// KV cache and mode and then replayed: one launch per step, no host synchronisation per layer.
#include "engine/cuda_backend.h"

#if defined(RESA_HAVE_CUDA)

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <unordered_map>

#include "engine/error.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemv.h"

namespace resa {
namespace {

[[noreturn]] void cuda_fail(cudaError_t e, const char* call, const char* file, int line) {
  throw Error(ErrorKind::kDevice, std::string(file) + ":" + std::to_string(line) + ": " + call +
                                      " failed: " + cudaGetErrorString(e) + " (" +
                                      cudaGetErrorName(e) + ")");
}
#define CUDA_CHECK(call)                                             \
  do {                                                               \
    const cudaError_t e_ = (call);                                   \
    if (e_ != cudaSuccess) cuda_fail(e_, #call, __FILE__, __LINE__); \
  } while (0)
#define CUBLAS_CHECK(call)                                                                     \
  do {                                                                                         \
    const cublasStatus_t s_ = (call);                                                          \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                                           \
      throw Error(ErrorKind::kDevice, std::string(__FILE__) + ":" + std::to_string(__LINE__) + \
                                          ": " #call " failed: " + cublasGetStatusString(s_)); \
  } while (0)

std::string gib(double bytes) {
  std::ostringstream s;
  s.precision(2);
  s << std::fixed << bytes / double(1ull << 30) << " GiB";
  return s.str();
}

// Device memory, counted, freed by its last owner.
class DeviceArena {
 public:
  std::shared_ptr<void> alloc(size_t bytes) {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 16));
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      throw Error(ErrorKind::kOutOfMemory, "cannot allocate " + gib(double(bytes)) +
                                               " of GPU memory (" + cudaGetErrorString(e) + ")");
    }
    in_use_ += bytes;
    std::atomic<size_t>* counter = &in_use_;
    return std::shared_ptr<void>(p, [bytes, counter](void* q) {
      cudaFree(q);
      *counter -= bytes;
    });
  }
  size_t in_use() const { return in_use_; }

 private:
  std::atomic<size_t> in_use_{0};
};

class CudaBackend;

// A conversation's KV cache in device memory (layout in kernels/cuda/attention.h), its
// selection buffers and the decode-step graph recorded for it.
class CudaKvStorage final : public KvDeviceStorage {
 public:
  CudaKvStorage(CudaBackend& be, const ModelConfig& c, int block_size, int capacity);
  ~CudaKvStorage() override { drop_graph(); }
  size_t bytes_allocated() const override { return bytes_; }
  int element_bytes() const override { return 2; }
  void recompute_summaries(int first, int last, int tokens) override;
  void read_row(int layer, int pos, int kv_head, bool value, float* out) const override;
  void read_summary(int layer, int block, int kv_head, bool max, float* out) const override;
  void fill_random(int tokens, uint64_t seed) override;

  cuda::KvLayerDev layer(int l) const {
    cuda::KvLayerDev v = base_;
    const size_t kv_elems = size_t(kv_heads_) * capacity_ * head_dim_;
    const size_t s_elems = size_t(kv_heads_) * cap_blocks_ * 2 * head_dim_;
    v.k += l * kv_elems;
    v.v += l * kv_elems;
    v.summ += l * s_elems;
    return v;
  }
  cuda::SelectionDev selection(bool hits) const {
    cuda::SelectionDev s = sel_;
    if (!hits) s.hits = nullptr;
    return s;
  }
  int cap_blocks() const { return cap_blocks_; }
  int block_size() const { return block_size_; }
  uint32_t* hits() const { return sel_.hits; }
  void drop_graph() {
    if (exec_) cudaGraphExecDestroy(exec_);
    exec_ = nullptr;
    key_.clear();
  }

  cudaGraphExec_t exec_ = nullptr;
  std::string key_;
  uint64_t epoch_ = 0;

 private:
  CudaBackend& be_;
  int layers_, kv_heads_, head_dim_, block_size_, capacity_, cap_blocks_;
  size_t bytes_ = 0;
  std::shared_ptr<void> kv_mem_, sel_mem_;
  cuda::KvLayerDev base_;
  cuda::SelectionDev sel_;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int gpu) : gpu_(gpu) {
    CUDA_CHECK(cudaSetDevice(gpu));
    CUDA_CHECK(cudaGetDeviceProperties(&prop_, gpu));
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&cublas_));
    CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&pinned_state_), sizeof(cuda::PassState)));
    state_mem_ = arena_.alloc(sizeof(cuda::PassState));
    ensure_ids(4096);
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    if (pinned_ids_) cudaFreeHost(pinned_ids_);
    if (pinned_out_) cudaFreeHost(pinned_out_);
    cudaFreeHost(pinned_state_);
    cublasDestroy(cublas_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return prop_.name; }
  bool is_gpu() const override { return true; }
  cudaStream_t stream() const { return stream_; }
  int sm_count() const { return prop_.multiProcessorCount; }
  DeviceArena& arena() { return arena_; }
  uint64_t epoch() const { return epoch_; }

  Buffer alloc(size_t bytes) override {
    Buffer b;
    b.mem = arena_.alloc(bytes);
    b.bytes = bytes;
    CUDA_CHECK(cudaMemsetAsync(b.mem.get(), 0, bytes, stream_));
    return b;
  }
  void to_host(const float* src, size_t count, float* dst) override {
    const size_t bytes = count * sizeof(float);
    if (bytes > pinned_out_bytes_) {
      if (pinned_out_) CUDA_CHECK(cudaFreeHost(pinned_out_));
      pinned_out_ = nullptr;
      CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&pinned_out_), bytes));
      pinned_out_bytes_ = bytes;
    }
    CUDA_CHECK(cudaMemcpyAsync(pinned_out_, src, bytes, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::memcpy(dst, pinned_out_, bytes);
  }
  void from_host(const float* src, size_t count, float* dst) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, count * sizeof(float), cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  size_t device_memory_bytes() const override { return arena_.in_use(); }

  ModelWeights upload_weights(const ModelWeights& host) override {
    ModelWeights dev;
    dev.layers.resize(host.layers.size());
    std::unordered_map<const void*, const void*> done;  // tied embeddings: one copy
    std::vector<uint16_t> staging;
    auto up = [&](const WeightView& h, WeightView& d) {
      if (h.empty()) return;
      d = h;
      if (auto it = done.find(h.data); it != done.end()) {
        d.data = it->second;
        d.dtype = (h.rows == 1 && h.dtype == DType::kF32) ? DType::kF32 : DType::kBF16;
        return;
      }
      const size_t n = size_t(h.rows) * h.cols;
      std::shared_ptr<void> mem;
      if (h.rows == 1 && h.dtype == DType::kF32) {  // norms and biases stay f32
        mem = arena_.alloc(n * 4);
        CUDA_CHECK(cudaMemcpy(mem.get(), h.data, n * 4, cudaMemcpyHostToDevice));
        d.dtype = DType::kF32;
      } else {
        mem = arena_.alloc(n * 2);
        const void* src = h.data;
        if (h.dtype != DType::kBF16) {
          staging.resize(n);
          const float* f = static_cast<const float*>(h.data);
          if (h.dtype != DType::kF32)
            throw Error(ErrorKind::kInternal, "CUDA upload: f16 matrices must be widened at load");
#pragma omp parallel for schedule(static)
          for (int64_t i = 0; i < int64_t(n); ++i) staging[i] = f32_to_bf16(f[i]);
          src = staging.data();
        }
        CUDA_CHECK(cudaMemcpy(mem.get(), src, n * 2, cudaMemcpyHostToDevice));
        d.dtype = DType::kBF16;
      }
      d.data = mem.get();
      done[h.data] = mem.get();
      weights_mem_.push_back(std::move(mem));
    };
    up(host.embed, dev.embed);
    for (size_t i = 0; i < host.layers.size(); ++i) {
      const LayerWeights& h = host.layers[i];
      LayerWeights& d = dev.layers[i];
      for (auto [hv, dv] : {std::pair{&h.attn_norm, &d.attn_norm},
                            {&h.wq, &d.wq},
                            {&h.wk, &d.wk},
                            {&h.wv, &d.wv},
                            {&h.wo, &d.wo},
                            {&h.bq, &d.bq},
                            {&h.bk, &d.bk},
                            {&h.bv, &d.bv},
                            {&h.mlp_norm, &d.mlp_norm},
                            {&h.w_gate, &d.w_gate},
                            {&h.w_up, &d.w_up},
                            {&h.w_down, &d.w_down}})
        up(*hv, *dv);
    }
    up(host.final_norm, dev.final_norm);
    up(host.lm_head, dev.lm_head);
    return dev;
  }

  std::unique_ptr<KvCache> make_kv_cache(const ModelConfig& c, int block_size,
                                         int capacity) override {
    if (!cuda::attention_supported(c.head_dim, c.group_size()))
      throw Error(
          ErrorKind::kUnsupported,
          "the CUDA backend runs head_dim 16, 32, 64 or 128 with GQA groups of 1 to 8; this "
          "model has head_dim " +
              std::to_string(c.head_dim) + " and groups of " + std::to_string(c.group_size()) +
              " (use the CPU backend)");
    if (block_size < 1 || block_size > 1024)
      throw Error(
          ErrorKind::kInvalidArgument,
          "block size must be between 1 and 1024 tokens, got " + std::to_string(block_size));
    if (capacity < 1)
      throw Error(ErrorKind::kInvalidArgument, "context capacity must be at least 1 token");
    // Capacity planned from free device memory, keeping room for prefill workspace and cuBLAS.
    const size_t need = kv_bytes(c, block_size, capacity);
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const size_t reserve = size_t(768) << 20;
    if (need + reserve > free_b) {
      const size_t per_token = kv_bytes(c, block_size, 1 << 20) >> 20;
      const int64_t fits =
          free_b > reserve ? int64_t((free_b - reserve) / std::max<size_t>(per_token, 1)) : 0;
      throw Error(ErrorKind::kOutOfMemory,
                  "a context of " + std::to_string(capacity) + " tokens needs " +
                      gib(double(need)) + " of KV cache on the " + name() + " but only " +
                      gib(double(free_b)) + " of its memory is free (weights and workspace hold " +
                      gib(double(arena_.in_use())) + "); at most about " + std::to_string(fits) +
                      " tokens fit: choose a shorter context");
    }
    // Split-KV workspace sized for this model; growing it invalidates recorded steps.
    const int splits = cuda::decode_splits(c.num_kv_heads, sm_count());
    const size_t ws = cuda::decode_workspace_floats(c.num_heads, c.head_dim, splits);
    if (ws > decode_ws_floats_) {
      decode_ws_ = arena_.alloc(ws * sizeof(float));
      decode_ws_floats_ = ws;
      ++epoch_;
    }
    // One-time kernel set-up (shared-memory limits, occupancy) before any graph capture.
    (void)cuda::decode_supported(c.head_dim, c.num_heads / std::max(c.num_kv_heads, 1));
    // The split counters of this shape start at zero (the kernel leaves them zero after use).
    check(cuda::decode_workspace_init(static_cast<float*>(decode_ws_.get()), c.num_heads,
                                      c.head_dim, splits, stream_),
          "decode_workspace_init");
    splits_ = splits;
    auto storage = std::make_unique<CudaKvStorage>(*this, c, block_size, capacity);
    return std::make_unique<KvCache>(c, block_size, capacity, std::move(storage));
  }

  static size_t kv_bytes(const ModelConfig& c, int block_size, int capacity) {
    const size_t cap_blocks = (size_t(capacity) + block_size - 1) / block_size;
    const size_t kv = size_t(c.num_layers) * c.num_kv_heads * c.head_dim *
                      (2 * size_t(capacity) + 2 * cap_blocks) * 2;
    const size_t sel = cap_blocks * (size_t(c.num_kv_heads) * 8 + 4) + 64;
    return kv + sel;
  }

  // --- passes
  void begin_pass(KvCache& kv, const int* tokens, int n, int pos0) override {
    if (!kv.on_device())
      throw Error(ErrorKind::kInternal, "the CUDA backend was given a KV cache in host memory");
    kv_ = static_cast<CudaKvStorage*>(&kv.device());
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // the pinned staging is free again
    if (n > ids_cap_) ensure_ids(n);
    std::memcpy(pinned_ids_, tokens, size_t(n) * sizeof(int));
    pinned_state_->pos0 = pos0;
    pinned_state_->n = n;
    pinned_state_->ctx_end = std::max(kv.tokens(), pos0 + n);
    pinned_state_->pad = 0;
    CUDA_CHECK(cudaMemcpyAsync(ids_mem_.get(), pinned_ids_, size_t(n) * sizeof(int),
                               cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaMemcpyAsync(state(), pinned_state_, sizeof(cuda::PassState),
                               cudaMemcpyHostToDevice, stream_));
    n_ = n;
    ctx_end_ = pinned_state_->ctx_end;
  }

  void synchronize() override { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  bool replay(KvCache& kv, const std::string& key) override {
    auto& s = static_cast<CudaKvStorage&>(kv.device());
    if (!s.exec_ || s.key_ != key || s.epoch_ != epoch_) return false;
    CUDA_CHECK(cudaGraphLaunch(s.exec_, stream_));
    return true;
  }
  void begin_record(KvCache& kv, const std::string& key) override {
    auto& s = static_cast<CudaKvStorage&>(kv.device());
    s.drop_graph();
    record_key_ = key;
    CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    recording_ = true;
  }
  void end_record(KvCache& kv) override {
    auto& s = static_cast<CudaKvStorage&>(kv.device());
    cudaGraph_t graph = nullptr;
    recording_ = false;
    CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    const cudaError_t e = cudaGraphInstantiate(&s.exec_, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) cuda_fail(e, "cudaGraphInstantiate", __FILE__, __LINE__);
    s.key_ = record_key_;
    s.epoch_ = epoch_;
    CUDA_CHECK(cudaGraphLaunch(s.exec_, stream_));
  }

  // --- ops
  void embed(const WeightView& t, float* out) override {
    check(cuda::embed(bf16(t), int(t.cols), ids(), n_, out, stream_), "embed");
  }
  void rmsnorm(const float* x, const WeightView& w, int n, float eps, float* out) override {
    check(cuda::rmsnorm(x, f32(w), n, int(w.cols), eps, out, stream_), "rmsnorm");
  }
  void linear(const float* x, int n, const WeightView& w, const WeightView& bias,
              float* y) override {
    const WeightView* ws[1] = {&w};
    const WeightView* bs[1] = {&bias};
    float* ys[1] = {y};
    linear_many(x, n, 1, ws, bs, ys);
  }
  void linear_group(const float* x, int n, std::initializer_list<LinearJob> jobs) override {
    if (jobs.size() > 4) return Backend::linear_group(x, n, jobs);
    const Group g(jobs);
    linear_many(x, n, g.count, g.w, g.bias, g.y);
  }
  // Batch 1: the norm inside the GEMV (each CTA keeps w * x in shared memory, scales by 1/rms).
  void norm_linear_group(const float* x, const WeightView& norm, float eps, int n, float* h,
                         std::initializer_list<LinearJob> jobs) override {
    if (n != 1 || !step_fusion() || norm.cols > cuda::kGemvNormMaxK || jobs.size() > 4)
      return Backend::norm_linear_group(x, norm, eps, n, h, jobs);
    const Group g(jobs);
    linear_many(x, n, g.count, g.w, g.bias, g.y, {f32(norm), eps});
  }
  void norm_linear_silu_mul(const float* x, const WeightView& norm, float eps, int n, float* h,
                            const WeightView& w_gate, const WeightView& w_up, float* gate,
                            float* up) override {
    if (n != 1 || !step_fusion() || norm.cols > cuda::kGemvNormMaxK || w_gate.rows != w_up.rows ||
        w_gate.cols != w_up.cols)
      return Backend::norm_linear_silu_mul(x, norm, eps, n, h, w_gate, w_up, gate, up);
    const cuda::GemvSegment seg[2] = {{bf16(w_gate), nullptr, gate, int(w_gate.rows)},
                                      {bf16(w_up), nullptr, up, int(w_up.rows)}};
    check(cuda::gemv_bf16(x, int(w_gate.cols), seg, 2, stream_, cuda::GemvOut::kSiluMul,
                          {f32(norm), eps}),
          "gemv_bf16 (rmsnorm, silu * up)");
  }
  void rope(float* x, int n, int heads, int head_dim, const float* inv_freq) override {
    check(cuda::rope(x, n, heads, head_dim, state(), inv_freq, stream_), "rope");
  }
  void rope_qk(float* q, float* k, int n, int heads, int kv_heads, int head_dim,
               const float* inv_freq) override {
    check(cuda::rope_qk(q, heads, k, kv_heads, n, head_dim, state(), inv_freq, stream_), "rope_qk");
  }
  // Batch 1: the residual add and SiLU * up happen in the GEMV's epilogue (one launch each).
  void linear_residual(const float* x, int n, const WeightView& w, float* tmp,
                       float* residual) override {
    if (n != 1) return Backend::linear_residual(x, n, w, tmp, residual);
    const cuda::GemvSegment seg{bf16(w), nullptr, residual, int(w.rows)};
    check(cuda::gemv_bf16(x, int(w.cols), &seg, 1, stream_, cuda::GemvOut::kAccumulate),
          "gemv_bf16 (residual)");
  }
  void linear_silu_mul(const float* x, int n, const WeightView& w_gate, const WeightView& w_up,
                       float* gate, float* up) override {
    if (n != 1 || w_gate.rows != w_up.rows || w_gate.cols != w_up.cols)
      return Backend::linear_silu_mul(x, n, w_gate, w_up, gate, up);
    const cuda::GemvSegment seg[2] = {{bf16(w_gate), nullptr, gate, int(w_gate.rows)},
                                      {bf16(w_up), nullptr, up, int(w_up.rows)}};
    check(cuda::gemv_bf16(x, int(w_gate.cols), seg, 2, stream_, cuda::GemvOut::kSiluMul),
          "gemv_bf16 (silu * up)");
  }
  void silu_mul(float* gate, const float* up, int64_t count) override {
    check(cuda::silu_mul(gate, up, count, stream_), "silu_mul");
  }
  void add(float* x, const float* y, int64_t count) override {
    check(cuda::add(x, y, count, stream_), "add");
  }
  void kv_write(KvCache&, int layer, const float* k, const float* v) override {
    check(cuda::kv_write(kv_->layer(layer), k, v, n_, state(), stream_), "kv_write");
  }
  void rope_kv_write(KvCache& kv, int layer, float* q, float* k, const float* v, int n, int heads,
                     int kv_heads, int head_dim, const float* inv_freq) override {
    if (n != 1 || n_ != 1 || !step_fusion())
      return Backend::rope_kv_write(kv, layer, q, k, v, n, heads, kv_heads, head_dim, inv_freq);
    check(cuda::rope_kv_write_one(kv_->layer(layer), q, heads, k, v, state(), inv_freq, stream_),
          "rope_kv_write");
  }
  void select_blocks(KvCache&, int layer, const float* q, int n_heads, float scale,
                     const ResaParams& p, bool count_hits) override {
    cuda::SelectParams sp;
    sp.ratio = p.ratio;
    sp.min_blocks = p.min_blocks;
    sp.local = p.local;
    sp.sink = p.sink;
    sel_ = kv_->selection(count_hits);
    check(cuda::select_blocks(
              kv_->layer(layer), q, n_heads, scale, sp, state(), sel_, sm_count(), stream_,
              fused_select() ? cuda::TopkKernel::kAuto : cuda::TopkKernel::kRegisters),
          "select_blocks");
  }
  std::string step_variant(bool sparse) const override {
    if (sparse) return fused_select() ? " fused-select" : "";
    return decode_ring(false) == cuda::DecodeRing::kDeep ? " deep-ring" : "";
  }
  void attention(KvCache&, int layer, const float* q, float* out, int n_heads, float scale,
                 bool sparse) override {
    const cuda::KvLayerDev L = kv_->layer(layer);
    if (n_ == 1) {
      check(cuda::attention_decode(L, q, out, n_heads, scale, state(), sparse ? &sel_ : nullptr,
                                   splits_, static_cast<float*>(decode_ws_.get()), stream_,
                                   cuda::DecodeKernel::kAuto, decode_ring(sparse)),
            "attention_decode");
    } else {
      if (!prefill_ws_) prefill_ws_ = arena_.alloc(kPrefillWsFloats * sizeof(float));
      check(cuda::attention_prefill(L, q, out, n_, n_heads, scale, state(), ctx_end_, sm_count(),
                                    static_cast<float*>(prefill_ws_.get()), kPrefillWsFloats,
                                    stream_),
            "attention_prefill");
    }
  }
  void collect_block_hits(KvCache& kv, std::vector<uint32_t>& hits) override {
    auto& s = static_cast<CudaKvStorage&>(kv.device());
    const int nb = std::min<int>(s.cap_blocks(), int(hits.size()));
    std::vector<uint32_t> h(size_t(std::max(nb, 0)));
    if (nb > 0) {
      CUDA_CHECK(cudaMemcpyAsync(h.data(), s.hits(), nb * sizeof(uint32_t), cudaMemcpyDeviceToHost,
                                 stream_));
      CUDA_CHECK(cudaMemsetAsync(s.hits(), 0, s.cap_blocks() * sizeof(uint32_t), stream_));
      CUDA_CHECK(cudaStreamSynchronize(stream_));
      for (int b = 0; b < nb; ++b) hits[b] += h[b];
    }
  }

  void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
      if (recording_) {
        cudaGraph_t g = nullptr;
        cudaStreamEndCapture(stream_, &g);
        if (g) cudaGraphDestroy(g);
        recording_ = false;
      }
      cuda_fail(e, what, __FILE__, __LINE__);
    }
  }

 private:
  static const uint16_t* bf16(const WeightView& w) {
    if (w.dtype != DType::kBF16) throw Error(ErrorKind::kInternal, "CUDA: expected bf16 weights");
    return static_cast<const uint16_t*>(w.data);
  }
  static const float* f32(const WeightView& w) {
    if (w.dtype != DType::kF32) throw Error(ErrorKind::kInternal, "CUDA: expected f32 vector");
    return static_cast<const float*>(w.data);
  }
  cuda::PassState* state() const { return static_cast<cuda::PassState*>(state_mem_.get()); }
  const int* ids() const { return static_cast<const int*>(ids_mem_.get()); }

  void ensure_ids(int n) {
    n = std::max(n, 4096);
    if (pinned_ids_) CUDA_CHECK(cudaFreeHost(pinned_ids_));
    pinned_ids_ = nullptr;
    CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&pinned_ids_), size_t(n) * sizeof(int)));
    ids_mem_ = arena_.alloc(size_t(n) * sizeof(int));
    ids_cap_ = n;
    ++epoch_;  // recorded steps read the old ids buffer
  }

  // The jobs of a linear_group (at most 4) as linear_many's arrays.
  struct Group {
    const WeightView* w[4] = {};
    const WeightView* bias[4] = {};
    float* y[4] = {};
    int count = 0;
    explicit Group(std::initializer_list<LinearJob> jobs) {
      for (const LinearJob& j : jobs)
        if (count < 4) w[count] = j.w, bias[count] = j.bias, y[count] = j.y, ++count;
    }
  };

  // Batch 1: one GEMV launch streams every matrix of the group. Otherwise cuBLAS on bf16
  // operands (the activations rounded to bf16) with f32 output and accumulation.
  // norm (batch 1 only): the products take rmsnorm(x), fused.
  void linear_many(const float* x, int n, int count, const WeightView* const* w,
                   const WeightView* const* bias, float* const* y, cuda::GemvNorm norm = {}) {
    const int k = int(w[0]->cols);
    if (n == 1) {
      cuda::GemvSegment seg[4];
      for (int i = 0; i < count; ++i) {
        seg[i].w = bf16(*w[i]);
        seg[i].bias = bias[i] && !bias[i]->empty() ? f32(*bias[i]) : nullptr;
        seg[i].y = y[i];
        seg[i].rows = int(w[i]->rows);
      }
      check(cuda::gemv_bf16(x, k, seg, count, stream_, cuda::GemvOut::kStore, norm), "gemv_bf16");
      return;
    }
    const size_t need = size_t(n) * k * 2;
    if (need > xb_bytes_) {
      xb_ = arena_.alloc(need);
      xb_bytes_ = need;
    }
    uint16_t* xb = static_cast<uint16_t*>(xb_.get());
    check(cuda::to_bf16(x, int64_t(n) * k, xb, stream_), "to_bf16");
    const float alpha = 1.f, beta = 0.f;
    for (int i = 0; i < count; ++i) {
      const int m = int(w[i]->rows);
      // Row-major y[n][m] = x[n][k] W[m][k]^T is column-major y^T = W^T-as-stored . x^T.
      CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, bf16(*w[i]),
                                CUDA_R_16BF, k, xb, CUDA_R_16BF, k, &beta, y[i], CUDA_R_32F, m,
                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      if (bias[i] && !bias[i]->empty())
        check(cuda::add_bias(y[i], f32(*bias[i]), n, m, stream_), "add_bias");
    }
  }

  int gpu_;
  cudaDeviceProp prop_{};
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  // Whether this pass's selection takes the fused kernel (cuda::TopkKernel::kFused): from about
  // 11,000 blocks of context on. On an H200 it selected 16,384 blocks per KV head (8 heads) in
  // 35.1 us against 42.0 for the scores kernel and the register top-k, 8,192 in 26.9 against
  // 26.8, and 2,048 in 19.7 against 14.5: below that its barriers cost more than the one-SM top-k
  // (docs/benchmarks/h200-s12.json). RESA_FUSED_SELECT_MIN_BLOCKS overrides it (read once per
  // process; 0: always).
  bool fused_select() const {
    static const int min_blocks = [] {
      const char* e = std::getenv("RESA_FUSED_SELECT_MIN_BLOCKS");
      return e && *e ? std::atoi(e) : 11000;
    }();
    return kv_ && (ctx_end_ + kv_->block_size() - 1) / kv_->block_size() >= min_blocks;
  }

  // The decode attention's ring for this pass (cuda::decode_ring_for, by the context's length).
  cuda::DecodeRing decode_ring(bool sparse) const {
    return cuda::decode_ring_for(ctx_end_, sparse);
  }

  // Whether a decode step fuses each RMSNorm into the GEMV after it and rope into kv_write (on
  // unless RESA_STEP_FUSION=0, read once per process, which measures the unfused step): 97 fewer
  // launches in a llama-3.1-8b step, 4.59 against 4.96 ms at 4K on an H200
  // (docs/benchmarks/h200-s13.json).
  static bool step_fusion() {
    static const bool on = [] {
      const char* e = std::getenv("RESA_STEP_FUSION");
      return !(e && std::strcmp(e, "0") == 0);
    }();
    return on;
  }

  DeviceArena arena_;
  std::vector<std::shared_ptr<void>> weights_mem_;
  std::shared_ptr<void> state_mem_, ids_mem_, xb_, decode_ws_;
  size_t xb_bytes_ = 0, decode_ws_floats_ = 0;
  cuda::PassState* pinned_state_ = nullptr;
  int* pinned_ids_ = nullptr;
  int ids_cap_ = 0;
  float* pinned_out_ = nullptr;
  size_t pinned_out_bytes_ = 0;
  static constexpr size_t kPrefillWsFloats = size_t(16) << 20;  // 64 MiB of split partials
  std::shared_ptr<void> prefill_ws_;
  int n_ = 0, ctx_end_ = 0;
  int splits_ = 1;
  uint64_t epoch_ = 1;
  bool recording_ = false;
  std::string record_key_;
  CudaKvStorage* kv_ = nullptr;
  cuda::SelectionDev sel_;
};

CudaKvStorage::CudaKvStorage(CudaBackend& be, const ModelConfig& c, int block_size, int capacity)
    : be_(be),
      layers_(c.num_layers),
      kv_heads_(c.num_kv_heads),
      head_dim_(c.head_dim),
      block_size_(block_size),
      capacity_(capacity),
      cap_blocks_((capacity + block_size - 1) / block_size) {
  const size_t kv_elems = size_t(layers_) * kv_heads_ * capacity_ * head_dim_;
  const size_t s_elems = size_t(layers_) * kv_heads_ * cap_blocks_ * 2 * head_dim_;
  const size_t kv_bytes = (2 * kv_elems + s_elems) * 2;
  kv_mem_ = be.arena().alloc(kv_bytes);
  auto* base = static_cast<uint16_t*>(kv_mem_.get());
  base_.k = base;
  base_.v = base + kv_elems;
  base_.summ = base + 2 * kv_elems;
  base_.kv_heads = kv_heads_;
  base_.head_dim = head_dim_;
  base_.block_size = block_size_;
  base_.capacity = capacity_;
  base_.cap_blocks = cap_blocks_;
  const size_t per_head = size_t(cap_blocks_);
  // scores, blocks [kv_heads][cap_blocks]; the fused selection's workspace (16-byte aligned);
  // hits [cap_blocks]; count [kv_heads].
  const size_t work_bytes = cuda::select_work_words(kv_heads_, cap_blocks_) * 4;
  const size_t work_at = (per_head * kv_heads_ * 8 + 15) / 16 * 16;
  const size_t sel_bytes = work_at + work_bytes + per_head * 4 + size_t(kv_heads_) * 4 + 64;
  sel_mem_ = be.arena().alloc(sel_bytes);
  char* p = static_cast<char*>(sel_mem_.get());
  sel_.scores = reinterpret_cast<float*>(p);
  sel_.blocks = reinterpret_cast<int*>(p + per_head * kv_heads_ * 4);
  sel_.work = reinterpret_cast<uint32_t*>(p + work_at);
  sel_.hits = reinterpret_cast<uint32_t*>(p + work_at + work_bytes);
  sel_.count = reinterpret_cast<int*>(p + work_at + work_bytes + per_head * 4);
  CUDA_CHECK(cudaMemsetAsync(sel_mem_.get(), 0, sel_bytes, be.stream()));
  bytes_ = kv_bytes + sel_bytes;
  CUDA_CHECK(cudaStreamSynchronize(be.stream()));
}

void CudaKvStorage::recompute_summaries(int first, int last, int tokens) {
  for (int l = 0; l < layers_; ++l)
    be_.check(cuda::summaries_recompute(layer(l), first, last, tokens, be_.stream()),
              "summaries_recompute");
  CUDA_CHECK(cudaStreamSynchronize(be_.stream()));
}

void CudaKvStorage::read_row(int l, int pos, int h, bool value, float* out) const {
  std::vector<uint16_t> tmp(head_dim_);
  const cuda::KvLayerDev L = layer(l);
  const uint16_t* src = (value ? L.v : L.k) + (size_t(h) * capacity_ + pos) * head_dim_;
  CUDA_CHECK(cudaMemcpyAsync(tmp.data(), src, head_dim_ * 2, cudaMemcpyDeviceToHost, be_.stream()));
  CUDA_CHECK(cudaStreamSynchronize(be_.stream()));
  for (int x = 0; x < head_dim_; ++x) out[x] = bf16_to_f32(tmp[x]);
}

void CudaKvStorage::read_summary(int l, int b, int h, bool max, float* out) const {
  std::vector<uint16_t> tmp(head_dim_);
  const cuda::KvLayerDev L = layer(l);
  const uint16_t* src = L.summ + ((size_t(h) * cap_blocks_ + b) * 2 + (max ? 1 : 0)) * head_dim_;
  CUDA_CHECK(cudaMemcpyAsync(tmp.data(), src, head_dim_ * 2, cudaMemcpyDeviceToHost, be_.stream()));
  CUDA_CHECK(cudaStreamSynchronize(be_.stream()));
  for (int x = 0; x < head_dim_; ++x) out[x] = bf16_to_f32(tmp[x]);
}

void CudaKvStorage::fill_random(int tokens, uint64_t seed) {
  for (int l = 0; l < layers_; ++l)
    be_.check(cuda::kv_fill_random(layer(l), tokens, seed * 1000003ull + l, be_.stream()),
              "kv_fill_random");
  CUDA_CHECK(cudaStreamSynchronize(be_.stream()));
}

}  // namespace

bool cuda_usable(int gpu, std::string* why_not) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    if (why_not)
      *why_not = std::string("no usable CUDA driver or device (") + cudaGetErrorString(e) + ")";
    return false;
  }
  if (count == 0 || gpu < 0 || gpu >= count) {
    if (why_not)
      *why_not = count == 0 ? "no CUDA device found"
                            : "CUDA device " + std::to_string(gpu) + " does not exist (" +
                                  std::to_string(count) + " found)";
    return false;
  }
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, gpu) != cudaSuccess || p.major < 8) {
    if (why_not)
      *why_not = std::string(p.name) + " is compute capability " + std::to_string(p.major) + "." +
                 std::to_string(p.minor) + "; the CUDA backend needs 8.0 (Ampere) or newer";
    return false;
  }
  return true;
}

std::unique_ptr<Backend> make_cuda_backend(int gpu, std::string* why_not) {
  if (!cuda_usable(gpu, why_not)) return nullptr;
  return std::make_unique<CudaBackend>(gpu);
}

}  // namespace resa

#else  // no CUDA toolkit at build time: Model falls back to the CPU

namespace resa {

bool cuda_usable(int, std::string* why_not) {
  if (why_not) *why_not = "this build has no CUDA backend (the CUDA toolkit was not found)";
  return false;
}

std::unique_ptr<Backend> make_cuda_backend(int gpu, std::string* why_not) {
  cuda_usable(gpu, why_not);
  return nullptr;
}

}  // namespace resa

#endif  // RESA_HAVE_CUDA
