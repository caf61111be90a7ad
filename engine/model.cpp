#include "engine/model.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include <cstdio>

#include "engine/cuda_backend.h"
#include "engine/error.h"
#include "engine/safetensors.h"

namespace resa {

std::string_view device_name(Device d) {
  switch (d) {
    case Device::kCpu:
      return "cpu";
    case Device::kCuda:
      return "cuda";
    case Device::kAuto:
      return "auto";
  }
  return "?";
}

std::optional<Device> parse_device(std::string_view name) {
  if (name == "cpu") return Device::kCpu;
  if (name == "cuda" || name == "gpu") return Device::kCuda;
  if (name == "auto") return Device::kAuto;
  return std::nullopt;
}

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int half = c.head_dim / 2;
  std::vector<float> f(half);
  for (int i = 0; i < half; ++i) {
    f[i] = 1.0f / std::pow(float(c.rope_theta), float(2 * i) / float(c.head_dim));
  }
  const RopeScaling& s = c.rope_scaling;
  if (s.kind == RopeScalingKind::kLinear) {
    for (float& x : f) x /= float(s.factor);
  } else if (s.kind == RopeScalingKind::kLlama3) {
    // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between
    // blended smoothly (transformers' _compute_llama3_parameters).
    const float old_len = float(s.original_max_position_embeddings);
    const float low_wavelen = old_len / float(s.low_freq_factor);
    const float high_wavelen = old_len / float(s.high_freq_factor);
    for (float& x : f) {
      const float wavelen = 2.0f * std::numbers::pi_v<float> / x;
      if (wavelen > low_wavelen) {
        x = x / float(s.factor);
      } else if (wavelen >= high_wavelen) {
        const float smooth = (old_len / wavelen - float(s.low_freq_factor)) /
                             float(s.high_freq_factor - s.low_freq_factor);
        x = (1.0f - smooth) * x / float(s.factor) + smooth * x;
      }
    }
  }
  return f;
}

ChatTokens Model::chat_tokens() const {
  ChatTokens t;
  const std::string bos = tokenizer_->special_text(tokenizer_->bos_id());
  const std::string eos = tokenizer_->special_text(tokenizer_->eos_id());
  if (!bos.empty()) t.bos = bos;
  if (!eos.empty()) t.eos = eos;
  return t;
}

static size_t view_bytes(const WeightView& w) {
  return w.empty() ? 0 : size_t(w.rows) * w.cols * dtype_size(w.dtype);
}

static size_t total_weight_bytes(const ModelWeights& w) {
  size_t b = view_bytes(w.embed) + view_bytes(w.final_norm);
  if (w.lm_head.data != w.embed.data) b += view_bytes(w.lm_head);
  for (const LayerWeights& l : w.layers) {
    for (const WeightView* v : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv,
                                &l.mlp_norm, &l.w_gate, &l.w_up, &l.w_down})
      b += view_bytes(*v);
  }
  return b;
}

std::unique_ptr<Model> Model::load(const std::filesystem::path& dir, const LoadOptions& opt) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir))
    throw Error(ErrorKind::kFileNotFound,
                "model folder " + dir.string() +
                    " does not exist or is not a folder (pass the folder holding config.json)");
  std::unique_ptr<Model> m(new Model());
  m->config_ = load_model_config(dir / "config.json");
  auto checkpoint = std::make_shared<const Checkpoint>(dir);
  m->weights_ = load_weights(checkpoint, m->config_);
  m->tokenizer_ = load_tokenizer(dir, m->config_.bos_token_id, m->config_.eos_token_ids);
  if (m->tokenizer_->vocab_size() > m->config_.vocab_size)
    throw Error(ErrorKind::kCorruptFile, (dir / "tokenizer.model").string() + " has " +
                                             std::to_string(m->tokenizer_->vocab_size()) +
                                             " tokens but config.json's vocab_size is " +
                                             std::to_string(m->config_.vocab_size) +
                                             " (tokenizer of another model?)");
  m->chat_format_ =
      opt.chat_format ? *opt.chat_format : detect_chat_format(read_chat_template(dir));
  m->name_ = fs::absolute(dir).lexically_normal().filename().string();
  if (m->name_.empty()) m->name_ = dir.string();
  m->weight_bytes_ = total_weight_bytes(m->weights_);
  m->init_backend(opt);
  m->init_rope();
  return m;
}

std::unique_ptr<Model> Model::random(const ModelConfig& config, const std::string& name,
                                     uint64_t seed, const LoadOptions& opt) {
  std::unique_ptr<Model> m(new Model());
  m->config_ = config;
  m->tokenizer_ = make_byte_tokenizer(config.vocab_size);
  m->config_.bos_token_id = m->tokenizer_->bos_id();
  m->config_.eos_token_ids = {m->tokenizer_->eos_id()};
  m->weights_ = random_weights(m->config_, seed);
  m->chat_format_ = opt.chat_format ? *opt.chat_format : ChatFormat::kChatML;
  m->name_ = name;
  m->weight_bytes_ = total_weight_bytes(m->weights_);
  m->init_backend(opt);
  m->init_rope();
  return m;
}

void Model::init_backend(const LoadOptions& opt) {
  if (opt.device != Device::kCpu) {
    std::string why;
    backend_ = make_cuda_backend(opt.gpu, &why);
    if (!backend_) {
      if (opt.device == Device::kCuda)
        throw Error(ErrorKind::kDevice, "cannot run on the GPU: " + why +
                                            " (choose the CPU backend to run without one)");
      backend_notice_ = "running on the CPU: " + why;
      std::fprintf(stderr, "resa: note: %s\n", backend_notice_.c_str());
    }
  }
  if (!backend_) backend_ = make_cpu_backend(opt.threads);
  device_weights_ = backend_->upload_weights(weights_);
  w_ = device_weights_.layers.empty() ? &weights_ : &device_weights_;
}

void Model::init_rope() {
  if (config_.head_dim % 2 != 0 || config_.head_dim > 512)
    throw Error(ErrorKind::kUnsupported, "head_dim " + std::to_string(config_.head_dim) +
                                             " is not supported (even, at most 512)");
  inv_freq_ = rope_inv_freq(config_);
  inv_freq_buf_ = backend_->alloc(inv_freq_.size() * sizeof(float));
  backend_->from_host(inv_freq_.data(), inv_freq_.size(), inv_freq_buf_.f32());
}

void Model::ensure_workspace(int n) {
  if (n <= ws_rows_) return;
  const ModelConfig& c = config_;
  const size_t rows = size_t(std::max(n, 1)), f = sizeof(float);
  const size_t hd = size_t(c.hidden_size), qd = size_t(c.num_heads) * c.head_dim,
               kvd = size_t(c.num_kv_heads) * c.head_dim, id = size_t(c.intermediate_size);
  Backend& b = *backend_;
  x_ = b.alloc(rows * hd * f), h_ = b.alloc(rows * hd * f), tmp_ = b.alloc(rows * hd * f);
  q_ = b.alloc(rows * qd * f), att_ = b.alloc(rows * qd * f);
  k_ = b.alloc(rows * kvd * f), v_ = b.alloc(rows * kvd * f);
  gate_ = b.alloc(rows * id * f), up_ = b.alloc(rows * id * f);
  if (logits_.empty()) logits_ = b.alloc(size_t(c.vocab_size) * f);
  ws_rows_ = int(rows);
  ++ws_generation_;
}

void Model::forward(const int* tokens, int n, int pos0, KvCache& kv, const ResaParams* sparse,
                    float* logits, ForwardStats* stats, std::vector<uint32_t>* block_hits) {
  const ModelConfig& c = config_;
  if (sparse && n != 1) throw Error(ErrorKind::kInternal, "sparse attention decodes one token");
  if (n < 1) throw Error(ErrorKind::kInternal, "forward of no tokens");
  for (int i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= c.vocab_size)
      throw Error(ErrorKind::kInvalidArgument,
                  "token id " + std::to_string(tokens[i]) + " is outside the vocabulary");
  }
  if (pos0 < 0 || pos0 > kv.tokens() || pos0 + n > kv.capacity())
    throw Error(ErrorKind::kInternal, "forward outside the KV cache's range");
  // Pages are rounded to rows of 16 so a growing prefill chunk reallocates rarely.
  ensure_workspace((n + 15) / 16 * 16);
  Backend& b = *backend_;
  const bool count_hits = block_hits != nullptr && sparse != nullptr;
  b.begin_pass(kv, tokens, n, pos0);
  std::string key;
  if (n == 1) {
    key = "ws" + std::to_string(ws_generation_) + (logits ? " logits" : "") +
          (count_hits ? " hits" : "");
    if (sparse) {
      const ResaParams& p = *sparse;
      key += " sparse " + std::to_string(p.ratio) + " " + std::to_string(p.min_blocks) + " " +
             std::to_string(p.local) + " " + std::to_string(int(p.sink));
    }
    key += b.step_variant(sparse != nullptr);
  }
  if (key.empty() || !b.replay(kv, key)) {
    if (!key.empty()) b.begin_record(kv, key);
    layers_and_logits(n, kv, sparse, count_hits, logits != nullptr);
    if (!key.empty()) b.end_record(kv);
  }
  kv.set_tokens(pos0 + n);
  if (logits) b.to_host(logits_.f32(), size_t(c.vocab_size), logits);
  if (count_hits) b.collect_block_hits(kv, *block_hits);

  // What attention read (RESA.md "Decode step"): the selection is on the backend, but its size
  // follows from the budget rule: `budget` blocks per KV head, the partial last one among them.
  if (stats) {
    const int ctx = pos0 + n;
    const int64_t lh = int64_t(c.num_layers) * c.num_kv_heads;
    stats->kv_tokens_dense += lh * ctx;
    if (!sparse) {
      stats->kv_tokens_read += lh * ctx;
    } else {
      const int bs = kv.block_size(), nb = (ctx + bs - 1) / bs;
      const int budget = resa_budget(nb, *sparse);
      stats->kv_tokens_read += lh * (int64_t(budget - 1) * bs + (ctx - (nb - 1) * bs));
      stats->blocks_selected += lh * budget;
      stats->blocks_total += lh * nb;
      stats->summary_blocks_scored += lh * nb;
    }
  }
}

void Model::layers_and_logits(int n, KvCache& kv, const ResaParams* sparse, bool count_hits,
                              bool logits) {
  const ModelConfig& c = config_;
  const ModelWeights& W = *w_;
  const int64_t hd = c.hidden_size;
  Backend& b = *backend_;
  float *x = x_.f32(), *h = h_.f32(), *q = q_.f32(), *k = k_.f32(), *v = v_.f32();
  float *att = att_.f32(), *gate = gate_.f32(), *up = up_.f32(), *tmp = tmp_.f32();

  b.embed(W.embed, x);
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& w = W.layers[l];
    // Attention block: norm, q/k/v, rope, attention(mode), o-proj, residual.
    b.norm_linear_group(x, w.attn_norm, c.rms_norm_eps, n, h,
                        {{&w.wq, &w.bq, q}, {&w.wk, &w.bk, k}, {&w.wv, &w.bv, v}});
    b.rope_kv_write(kv, l, q, k, v, n, c.num_heads, c.num_kv_heads, c.head_dim,
                    inv_freq_buf_.f32());
    attention_layer(l, n, kv, sparse, count_hits);
    b.linear_residual(att, n, w.wo, tmp, x);
    // MLP block: norm, gate/up, SiLU * up, down, residual.
    b.norm_linear_silu_mul(x, w.mlp_norm, c.rms_norm_eps, n, h, w.w_gate, w.w_up, gate, up);
    b.linear_residual(gate, n, w.w_down, tmp, x);
  }
  if (logits) {
    const float* last = x + (n - 1) * hd;
    b.norm_linear_group(last, W.final_norm, c.rms_norm_eps, 1, h,
                        {{&W.lm_head, nullptr, logits_.f32()}});
  }
}

void Model::attention_layer(int l, int n, KvCache& kv, const ResaParams* sparse, bool count_hits) {
  (void)n;
  const ModelConfig& c = config_;
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  // ReSA decode step (RESA.md steps 3-7): one selection per KV head shared by its group.
  if (sparse) backend_->select_blocks(kv, l, q_.f32(), c.num_heads, scale, *sparse, count_hits);
  backend_->attention(kv, l, q_.f32(), att_.f32(), c.num_heads, scale, sparse != nullptr);
}

}  // namespace resa
