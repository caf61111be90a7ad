// A loaded Llama-family model: config, weights, tokenizer, chat format and the backend that
// runs it. Its forward pass reads like the paper (STYLE.md 3).
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/chat_format.h"
#include "engine/kv_cache.h"
#include "engine/model_config.h"
#include "engine/resa.h"
#include "engine/tokenizer.h"
#include "engine/weights.h"

namespace resa {

struct LoadOptions {
  std::optional<ChatFormat> chat_format;  // overrides what tokenizer_config.json implies
  int threads = 0;                        // CPU threads; 0: all cores
};

// What one forward pass read, for the step statistics (RESA.md "Decode step").
struct ForwardStats {
  int64_t kv_tokens_read = 0;   // K/V token rows read, summed over layers and KV heads
  int64_t kv_tokens_dense = 0;  // what dense attention would have read
  int64_t blocks_selected = 0;  // summed over layers and KV heads
  int64_t blocks_total = 0;
  int64_t summary_blocks_scored = 0;
};

class Model {
 public:
  // A Hugging Face checkpoint folder. Throws resa::Error naming the file on any problem.
  static std::unique_ptr<Model> load(const std::filesystem::path& dir, const LoadOptions& opt);
  // Synthetic weights of a preset's real shapes with the byte-level tokenizer.
  static std::unique_ptr<Model> random(const ModelConfig& config, const std::string& name,
                                       uint64_t seed, const LoadOptions& opt);

  const ModelConfig& config() const { return config_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  ChatFormat chat_format() const { return chat_format_; }
  void set_chat_format(ChatFormat f) { chat_format_ = f; }
  ChatTokens chat_tokens() const;
  const std::string& name() const { return name_; }
  Backend& backend() { return *backend_; }
  size_t weight_bytes() const { return weight_bytes_; }

  // Runs `n` tokens at positions pos0 .. pos0+n-1, writing their K/V into `kv`. Attention is
  // dense and causal unless `sparse` is given (then n must be 1: a ReSA decode step). When
  // `logits` is not null it receives the last row's logits [vocab]. `block_hits` (optional,
  // one counter per KV block) counts every selection, summed over layers and KV heads.
  void forward(const int* tokens, int n, int pos0, KvCache& kv, const ResaParams* sparse,
               float* logits, ForwardStats* stats, std::vector<uint32_t>* block_hits = nullptr);

 private:
  Model() = default;
  void init_rope();
  void attention_layer(int layer, int n, int pos0, KvCache& kv, const ResaParams* sparse,
                       ForwardStats* stats, std::vector<uint32_t>* block_hits);

  ModelConfig config_;
  ModelWeights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
  ChatFormat chat_format_ = ChatFormat::kRaw;
  std::unique_ptr<Backend> backend_;
  std::string name_;
  size_t weight_bytes_ = 0;
  std::vector<float> inv_freq_;

  // Workspace, reused across calls (a model runs one forward at a time).
  std::vector<float> x_, h_, q_, k_, v_, att_, gate_, up_, tmp_;
  std::vector<int> positions_;
  std::vector<float> scores_, qsel_;
  std::vector<int> sel_storage_, sel_scratch_, n_sel_;
  std::vector<const int*> sel_ptrs_;
};

// Inverse rotary frequencies [head_dim / 2] with the config's rope scaling (linear, llama3),
// computed in float32 as transformers does.
std::vector<float> rope_inv_freq(const ModelConfig& c);

}  // namespace resa
