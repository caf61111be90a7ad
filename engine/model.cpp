#include "engine/model.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "engine/error.h"
#include "engine/safetensors.h"
#include "kernels/cpu/block_select.h"

namespace resa {

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
    throw Error(ErrorKind::kCorruptFile,
                (dir / "tokenizer.model").string() + " has " +
                    std::to_string(m->tokenizer_->vocab_size()) +
                    " tokens but config.json's vocab_size is " +
                    std::to_string(m->config_.vocab_size) + " (tokenizer of another model?)");
  m->chat_format_ = opt.chat_format ? *opt.chat_format
                                    : detect_chat_format(read_chat_template(dir));
  m->backend_ = make_cpu_backend(opt.threads);
  m->name_ = fs::absolute(dir).lexically_normal().filename().string();
  if (m->name_.empty()) m->name_ = dir.string();
  m->weight_bytes_ = total_weight_bytes(m->weights_);
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
  m->backend_ = make_cpu_backend(opt.threads);
  m->name_ = name;
  m->weight_bytes_ = total_weight_bytes(m->weights_);
  m->init_rope();
  return m;
}

void Model::init_rope() {
  if (config_.head_dim % 2 != 0 || config_.head_dim > 512)
    throw Error(ErrorKind::kUnsupported, "head_dim " + std::to_string(config_.head_dim) +
                                             " is not supported (even, at most 512)");
  inv_freq_ = rope_inv_freq(config_);
}

void Model::forward(const int* tokens, int n, int pos0, KvCache& kv, const ResaParams* sparse,
                    float* logits, ForwardStats* stats, std::vector<uint32_t>* block_hits) {
  const ModelConfig& c = config_;
  if (sparse && n != 1) throw Error(ErrorKind::kInternal, "sparse attention decodes one token");
  for (int i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= c.vocab_size)
      throw Error(ErrorKind::kInvalidArgument,
                  "token id " + std::to_string(tokens[i]) + " is outside the vocabulary");
  }
  const size_t hd = size_t(c.hidden_size), qd = size_t(c.num_heads) * c.head_dim,
               kvd = size_t(c.num_kv_heads) * c.head_dim, id = size_t(c.intermediate_size);
  x_.resize(n * hd), h_.resize(n * hd), tmp_.resize(n * hd);
  q_.resize(n * qd), att_.resize(n * qd), k_.resize(n * kvd), v_.resize(n * kvd);
  gate_.resize(n * id), up_.resize(n * id);
  positions_.resize(n);
  for (int i = 0; i < n; ++i) positions_[i] = pos0 + i;
  Backend& b = *backend_;

  b.embed(weights_.embed, tokens, n, x_.data());
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& w = weights_.layers[l];
    // Attention block: norm, q/k/v, rope, attention(mode), o-proj, residual.
    b.rmsnorm(x_.data(), w.attn_norm, n, c.rms_norm_eps, h_.data());
    b.linear(h_.data(), n, w.wq, w.bq, q_.data());
    b.linear(h_.data(), n, w.wk, w.bk, k_.data());
    b.linear(h_.data(), n, w.wv, w.bv, v_.data());
    b.rope(q_.data(), n, c.num_heads, c.head_dim, positions_.data(), inv_freq_.data());
    b.rope(k_.data(), n, c.num_kv_heads, c.head_dim, positions_.data(), inv_freq_.data());
    kv.write(l, pos0, n, k_.data(), v_.data());
    attention_layer(l, n, pos0, kv, sparse, stats, block_hits);
    b.linear(att_.data(), n, w.wo, {}, tmp_.data());
    b.add(x_.data(), tmp_.data(), int64_t(n * hd));
    // MLP block: norm, gate/up, SiLU * up, down, residual.
    b.rmsnorm(x_.data(), w.mlp_norm, n, c.rms_norm_eps, h_.data());
    b.linear(h_.data(), n, w.w_gate, {}, gate_.data());
    b.linear(h_.data(), n, w.w_up, {}, up_.data());
    b.silu_mul(gate_.data(), up_.data(), int64_t(n * id));
    b.linear(gate_.data(), n, w.w_down, {}, tmp_.data());
    b.add(x_.data(), tmp_.data(), int64_t(n * hd));
  }
  kv.set_tokens(pos0 + n);
  if (logits) {
    const float* last = x_.data() + (n - 1) * hd;
    b.rmsnorm(last, weights_.final_norm, 1, c.rms_norm_eps, h_.data());
    b.linear(h_.data(), 1, weights_.lm_head, {}, logits);
  }
}

void Model::attention_layer(int l, int n, int pos0, KvCache& kv, const ResaParams* sparse,
                            ForwardStats* stats, std::vector<uint32_t>* block_hits) {
  const ModelConfig& c = config_;
  const int ctx = pos0 + n;  // keys visible to the last query
  cpu::AttentionArgs a;
  a.q = q_.data();
  a.out = att_.data();
  a.nq = n;
  a.pos0 = pos0;
  a.n_heads = c.num_heads;
  a.kv = kv.layer(l);
  a.scale = 1.0f / std::sqrt(float(c.head_dim));
  if (!sparse) {
    backend_->attention(a);
    if (stats) {
      const int64_t t = int64_t(c.num_kv_heads) * ctx;
      stats->kv_tokens_read += t;
      stats->kv_tokens_dense += t;
    }
    return;
  }
  // ReSA decode step (RESA.md steps 3-7), one selection per KV head shared by its group.
  const int bs = kv.block_size(), nb = (ctx + bs - 1) / bs, g = c.group_size(), d = c.head_dim;
  const int budget = resa_budget(nb, *sparse);
  scores_.resize(nb);
  qsel_.resize(d);
  sel_storage_.resize(size_t(c.num_kv_heads) * nb);
  sel_scratch_.resize(nb);
  n_sel_.resize(c.num_kv_heads);
  sel_ptrs_.resize(c.num_kv_heads);
  for (int h = 0; h < c.num_kv_heads; ++h) {
    std::fill(qsel_.begin(), qsel_.end(), 0.f);
    for (int j = 0; j < g; ++j) {
      const float* q = q_.data() + size_t(h * g + j) * d;
      for (int x = 0; x < d; ++x) qsel_[x] += q[x];
    }
    for (float& x : qsel_) x *= a.scale / float(g);
    backend_->block_scores(a.kv, h, nb, qsel_.data(), scores_.data());
    int* out = sel_storage_.data() + size_t(h) * nb;
    n_sel_[h] = cpu::select_top_blocks(scores_.data(), nb, budget, sparse->sink, sparse->local,
                                       out, sel_scratch_.data());
    sel_ptrs_[h] = out;
    if (stats || block_hits) {
      for (int i = 0; i < n_sel_[h]; ++i) {
        const int blk = out[i];
        if (stats) stats->kv_tokens_read += std::min(bs, ctx - blk * bs);
        if (block_hits && blk < int(block_hits->size())) ++(*block_hits)[blk];
      }
    }
  }
  if (stats) {
    stats->kv_tokens_dense += int64_t(c.num_kv_heads) * ctx;
    for (int h = 0; h < c.num_kv_heads; ++h) stats->blocks_selected += n_sel_[h];
    stats->blocks_total += int64_t(c.num_kv_heads) * nb;
    stats->summary_blocks_scored += int64_t(c.num_kv_heads) * nb;
  }
  a.selected = sel_ptrs_.data();
  a.n_selected = n_sel_.data();
  backend_->attention(a);
}

}  // namespace resa
