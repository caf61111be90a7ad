#include "engine/weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "engine/error.h"
#include "engine/safetensors.h"
#include "engine/system_memory.h"

namespace resa {
namespace {

// Below this many elements a conversion is faster on one thread than waking the team.
constexpr int64_t kParallelMinElements = 1 << 16;

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older kernels refuse it and we fault pages in
#endif

// A vector of n elements whose pages are faulted in by one madvise call rather than one fault
// per 4 KiB page as the zero fill walks them. On VMs with lazily backed memory (Firecracker)
// a page fault is a trip to the host: first-touching 2.2 GB (tinyllama's random weights) took
// ~10 s page by page and 0.3-3 s populated, depending on how warm the host was.
template <typename T>
std::vector<T> populated_vector(size_t n, const std::string& what) {
  std::vector<T> v;
  const size_t avail = available_memory_bytes();
  // Refuse before touching pages: where memory is overcommitted, populating more than the
  // machine has ends in the kernel's OOM killer, not in bad_alloc.
  if (avail > 0 && n > avail / sizeof(T)) {
    throw Error(ErrorKind::kOutOfMemory,
                "out of memory allocating " + std::to_string((n >> 20) * sizeof(T)) + " MiB for " +
                    what + ": " + std::to_string(avail >> 20) +
                    " MiB available (close other programs or pick a smaller model)");
  }
  try {
    v.reserve(n);
  } catch (const std::bad_alloc&) {
    throw Error(ErrorKind::kOutOfMemory,
                "out of memory allocating " + std::to_string(n * sizeof(T) >> 20) + " MiB for " +
                    what + " (close other programs or pick a smaller model)");
  }
  const size_t bytes = n * sizeof(T);
  if (bytes >= (size_t(1) << 21)) {
    // madvise works on whole pages: advise only the pages fully inside the allocation.
    const auto page = uintptr_t(sysconf(_SC_PAGESIZE));
    const auto begin = (reinterpret_cast<uintptr_t>(v.data()) + page - 1) & ~(page - 1);
    const auto end = (reinterpret_cast<uintptr_t>(v.data()) + bytes) & ~(page - 1);
    if (end > begin) {
      void* p = reinterpret_cast<void*>(begin);
      (void)madvise(p, end - begin, MADV_HUGEPAGE);  // fewer TLB misses in the matmuls too
      (void)madvise(p, end - begin, MADV_POPULATE_WRITE);
    }
  }
  v.resize(n);
  return v;
}

template <typename F>
void for_each_view(ModelWeights& w, F&& f) {
  f(w.embed);
  for (LayerWeights& l : w.layers) {
    for (WeightView* v : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv,
                          &l.mlp_norm, &l.w_gate, &l.w_up, &l.w_down}) {
      f(*v);
    }
  }
  f(w.final_norm);
  f(w.lm_head);
}

// Reads element i of a 16-bit tensor without assuming the mapping keeps it 2-byte aligned.
inline uint16_t load_u16(const std::byte* p, int64_t i) {
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  return h;
}

void convert_to_f32(const TensorInfo& t, float* out) {
  const int64_t n = t.numel();
  const std::byte* src = t.data;
  switch (t.dtype) {
    case DType::kF32:
      std::memcpy(out, src, size_t(n) * 4);
      break;
    case DType::kBF16:
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load_u16(src, i));
      break;
    case DType::kF16:
#pragma omp parallel for schedule(static) if (n >= kParallelMinElements)
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(load_u16(src, i));
      break;
  }
}

class Loader {
 public:
  Loader(const Checkpoint& checkpoint, ModelWeights& w) : checkpoint_(checkpoint), w_(w) {}

  // A matrix for the kernels: bf16 / f32 stay in the mapping; f16 (which no kernel reads) is
  // widened to f32 once here.
  WeightView matrix(const std::string& name, int64_t rows, int64_t cols) {
    const TensorInfo& t = checkpoint_.get(name, {rows, cols});
    WeightView v{nullptr, t.dtype, rows, cols};
    const auto address = reinterpret_cast<uintptr_t>(t.data);
    if (t.dtype == DType::kBF16) {
      if (address % alignof(uint16_t) == 0) {
        v.data = t.data;
      } else {
        // A header of odd length leaves the data misaligned; the kernels need aligned rows.
        auto& buf = w_.owned_bf16.emplace_back(populated_vector<uint16_t>(size_t(t.numel()), name));
        std::memcpy(buf.data(), t.data, t.nbytes);
        v.data = buf.data();
      }
    } else if (t.dtype == DType::kF32 && address % alignof(float) == 0) {
      v.data = t.data;
    } else {
      v.dtype = DType::kF32;
      v.data = owned_f32(t);
    }
    return v;
  }

  // Norm weights and biases: small, read on every token, so always f32.
  WeightView vector(const std::string& name, int64_t n) {
    const TensorInfo& t = checkpoint_.get(name, {n});
    return WeightView{owned_f32(t), DType::kF32, 1, n};
  }

 private:
  const float* owned_f32(const TensorInfo& t) {
    auto& buf = w_.owned_f32.emplace_back(populated_vector<float>(size_t(t.numel()), t.name));
    convert_to_f32(t, buf.data());
    return buf.data();
  }

  const Checkpoint& checkpoint_;
  ModelWeights& w_;
};

void check_config(const ModelConfig& c, const char* caller) {
  const std::pair<const char*, int> sizes[] = {{"vocab_size", c.vocab_size},
                                               {"hidden_size", c.hidden_size},
                                               {"intermediate_size", c.intermediate_size},
                                               {"num_layers", c.num_layers},
                                               {"num_heads", c.num_heads},
                                               {"num_kv_heads", c.num_kv_heads},
                                               {"head_dim", c.head_dim}};
  for (const auto& [name, value] : sizes) {
    if (value <= 0) {
      throw Error(ErrorKind::kInvalidArgument, std::string(caller) + ": the model config has " +
                                                   name + " " + std::to_string(value) +
                                                   " (must be positive)");
    }
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    throw Error(ErrorKind::kInvalidArgument,
                std::string(caller) + ": num_heads " + std::to_string(c.num_heads) +
                    " is not a multiple of num_kv_heads " + std::to_string(c.num_kv_heads));
  }
}

// Counter-based generator (splitmix64's finaliser over key + i * golden ratio): element i of a
// tensor depends only on (seed, tensor, i), so any thread count and schedule give the same bits.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;
constexpr float kInitStd = 0.02f;  // transformers' initializer_range for Llama-family models

// Irwin-Hall with four 16-bit uniforms from one hash: mean 0, variance 1, tails cut at
// +-3.46 sigma. Several times cheaper than Box-Muller and plenty for synthetic weights.
inline float standard_normal(uint64_t bits) {
  const int32_t s = int32_t(bits & 0xffff) + int32_t((bits >> 16) & 0xffff) +
                    int32_t((bits >> 32) & 0xffff) + int32_t(bits >> 48);
  return float(s - 2 * 65535) * (1.7320508f / 65536.0f);
}

// Built for AVX-512 and AVX2 as well, picked at load time: 64-bit multiplies only vectorise
// there (0.4 ns per element instead of 2.6 with AVX-512). Integer ops and two float multiplies
// give the same bits on every path.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RESA_SIMD_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RESA_SIMD_CLONES
#endif

RESA_SIMD_CLONES void fill_normal_bf16(uint16_t* out, int64_t n, uint64_t key) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = f32_to_bf16(kInitStd * standard_normal(mix64(key + uint64_t(i) * kGolden)));
  }
}

uint64_t stream_key(uint64_t seed, uint64_t stream) {
  return mix64(mix64(seed ^ 0x5265534143686174ull) + stream * kGolden);
}

}  // namespace

ModelWeights::ModelWeights(const ModelWeights& other)
    : embed(other.embed),
      layers(other.layers),
      final_norm(other.final_norm),
      lm_head(other.lm_head),
      checkpoint(other.checkpoint),
      owned_f32(other.owned_f32),
      owned_bf16(other.owned_bf16) {
  auto rebase = [](WeightView& v, const auto& from, auto& to) {
    const auto p = reinterpret_cast<uintptr_t>(v.data);
    for (size_t i = 0; i < from.size(); ++i) {
      const auto begin = reinterpret_cast<uintptr_t>(from[i].data());
      const auto bytes = from[i].size() * sizeof(from[i][0]);
      if (p >= begin && p < begin + bytes) {
        v.data = reinterpret_cast<const std::byte*>(to[i].data()) + (p - begin);
        return true;
      }
    }
    return false;
  };
  for_each_view(*this, [&](WeightView& v) {
    if (v.empty()) return;
    if (!rebase(v, other.owned_f32, owned_f32)) rebase(v, other.owned_bf16, owned_bf16);
  });
}

ModelWeights& ModelWeights::operator=(const ModelWeights& other) {
  if (this != &other) *this = ModelWeights(other);
  return *this;
}

ModelWeights load_weights(std::shared_ptr<const Checkpoint> checkpoint, const ModelConfig& config) {
  if (!checkpoint) throw Error(ErrorKind::kInvalidArgument, "load_weights: no checkpoint given");
  check_config(config, "load_weights");
  const int64_t hidden = config.hidden_size;
  const int64_t vocab = config.vocab_size;
  const int64_t inter = config.intermediate_size;
  const int64_t q_dim = int64_t(config.num_heads) * config.head_dim;
  const int64_t kv_dim = int64_t(config.num_kv_heads) * config.head_dim;

  ModelWeights w;
  w.checkpoint = checkpoint;
  Loader load(*checkpoint, w);
  w.embed = load.matrix("model.embed_tokens.weight", vocab, hidden);
  w.layers.resize(size_t(config.num_layers));
  for (int i = 0; i < config.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights& l = w.layers[size_t(i)];
    l.attn_norm = load.vector(p + "input_layernorm.weight", hidden);
    l.wq = load.matrix(p + "self_attn.q_proj.weight", q_dim, hidden);
    l.wk = load.matrix(p + "self_attn.k_proj.weight", kv_dim, hidden);
    l.wv = load.matrix(p + "self_attn.v_proj.weight", kv_dim, hidden);
    l.wo = load.matrix(p + "self_attn.o_proj.weight", hidden, q_dim);
    if (config.attention_bias) {
      l.bq = load.vector(p + "self_attn.q_proj.bias", q_dim);
      l.bk = load.vector(p + "self_attn.k_proj.bias", kv_dim);
      l.bv = load.vector(p + "self_attn.v_proj.bias", kv_dim);
    }
    l.mlp_norm = load.vector(p + "post_attention_layernorm.weight", hidden);
    l.w_gate = load.matrix(p + "mlp.gate_proj.weight", inter, hidden);
    l.w_up = load.matrix(p + "mlp.up_proj.weight", inter, hidden);
    l.w_down = load.matrix(p + "mlp.down_proj.weight", hidden, inter);
  }
  w.final_norm = load.vector("model.norm.weight", hidden);

  if (config.tie_word_embeddings) {
    // transformers ignores a saved lm_head.weight when tied; so do we.
    w.lm_head = w.embed;
  } else if (!checkpoint->has("lm_head.weight")) {
    throw Error(ErrorKind::kCorruptFile,
                "tensor 'lm_head.weight' not found in " + checkpoint->source().string() +
                    ", and config.json has tie_word_embeddings false (if the model reuses its "
                    "embedding as the output layer, config.json should say "
                    "\"tie_word_embeddings\": true)");
  } else {
    w.lm_head = load.matrix("lm_head.weight", vocab, hidden);
  }
  return w;
}

ModelWeights random_weights(const ModelConfig& config, uint64_t seed) {
  check_config(config, "random_weights");
  const int64_t hidden = config.hidden_size;
  const int64_t vocab = config.vocab_size;
  const int64_t inter = config.intermediate_size;
  const int64_t q_dim = int64_t(config.num_heads) * config.head_dim;
  const int64_t kv_dim = int64_t(config.num_kv_heads) * config.head_dim;

  ModelWeights w;
  w.layers.resize(size_t(config.num_layers));

  // Every random tensor with its own stream number, fixed by its role (not by fill order).
  struct Job {
    WeightView* view;
    int64_t rows, cols;
    uint64_t stream;
    bool bf16;      // matrices in bf16; biases in f32 like a loaded model's
    size_t buffer;  // index into owned_bf16 / owned_f32, fixed before the parallel loop
  };
  std::vector<Job> jobs;
  jobs.push_back({&w.embed, vocab, hidden, 0, true, 0});
  if (!config.tie_word_embeddings) jobs.push_back({&w.lm_head, vocab, hidden, 1, true, 0});
  for (int i = 0; i < config.num_layers; ++i) {
    LayerWeights& l = w.layers[size_t(i)];
    const uint64_t base = 16 + uint64_t(i) * 16;
    jobs.push_back({&l.wq, q_dim, hidden, base + 0, true, 0});
    jobs.push_back({&l.wk, kv_dim, hidden, base + 1, true, 0});
    jobs.push_back({&l.wv, kv_dim, hidden, base + 2, true, 0});
    jobs.push_back({&l.wo, hidden, q_dim, base + 3, true, 0});
    jobs.push_back({&l.w_gate, inter, hidden, base + 4, true, 0});
    jobs.push_back({&l.w_up, inter, hidden, base + 5, true, 0});
    jobs.push_back({&l.w_down, hidden, inter, base + 6, true, 0});
    if (config.attention_bias) {
      jobs.push_back({&l.bq, 1, q_dim, base + 7, false, 0});
      jobs.push_back({&l.bk, 1, kv_dim, base + 8, false, 0});
      jobs.push_back({&l.bv, 1, kv_dim, base + 9, false, 0});
    }
  }

  size_t n_bf16 = 0, n_f32 = 0;
  for (Job& j : jobs) j.buffer = j.bf16 ? n_bf16++ : n_f32++;
  w.owned_bf16.resize(n_bf16);
  w.owned_f32.resize(n_f32);

  // One tensor per iteration, dynamically scheduled: allocation and page population run in
  // parallel too, and the largest tensors (embedding, lm_head) come first.
  // An exception must not leave an OpenMP region: the first one is kept and rethrown after.
  const int64_t n_jobs = int64_t(jobs.size());
  std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t k = 0; k < n_jobs; ++k) {
    const Job& job = jobs[size_t(k)];
    const int64_t n = job.rows * job.cols;
    const uint64_t key = stream_key(seed, job.stream);
    try {
      const std::string what = "random weights";
      if (job.bf16) {
        std::vector<uint16_t>& buf = w.owned_bf16[job.buffer];
        buf = populated_vector<uint16_t>(size_t(n), what);
        fill_normal_bf16(buf.data(), n, key);
        *job.view = WeightView{buf.data(), DType::kBF16, job.rows, job.cols};
      } else {
        std::vector<float>& buf = w.owned_f32[job.buffer];
        buf = populated_vector<float>(size_t(n), what);
        for (int64_t i = 0; i < n; ++i) {
          buf[size_t(i)] = kInitStd * standard_normal(mix64(key + uint64_t(i) * kGolden));
        }
        *job.view = WeightView{buf.data(), DType::kF32, job.rows, job.cols};
      }
    } catch (...) {
#pragma omp critical(resa_random_weights_failure)
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);

  // Norms are 1, as transformers initialises RMSNorm.
  auto ones = [&](WeightView& v) {
    auto& buf = w.owned_f32.emplace_back(size_t(hidden), 1.0f);
    v = WeightView{buf.data(), DType::kF32, 1, hidden};
  };
  for (LayerWeights& l : w.layers) {
    ones(l.attn_norm);
    ones(l.mlp_norm);
  }
  ones(w.final_norm);
  if (config.tie_word_embeddings) w.lm_head = w.embed;
  return w;
}

}  // namespace resa
