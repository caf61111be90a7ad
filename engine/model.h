// A loaded Llama-family model: config, weights, tokenizer, chat format and the backend that
// runs it. Its forward pass reads like the paper (STYLE.md 3).
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/backend.h"
#include "engine/chat_format.h"
#include "engine/kv_cache.h"
#include "engine/model_config.h"
#include "engine/resa.h"
#include "engine/tokenizer.h"
#include "engine/weights.h"

namespace resa {

// Where a model runs. kAuto: the CUDA backend when a GPU is usable, else the CPU with a notice
// on stderr. kCuda fails with Error(kDevice) when no GPU is usable.
enum class Device { kCpu, kCuda, kAuto };
std::string_view device_name(Device d);  // "cpu", "cuda", "auto"
std::optional<Device> parse_device(std::string_view name);

struct LoadOptions {
  std::optional<ChatFormat> chat_format;  // overrides what tokenizer_config.json implies
  int threads = 0;                        // CPU threads; 0: all cores
  Device device = Device::kCpu;           // the CPU stays the default reference
  int gpu = 0;                            // CUDA device ordinal
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
  // Why the model runs where it does when that is not what was asked ("no CUDA device: ..."),
  // empty otherwise.
  const std::string& backend_notice() const { return backend_notice_; }
  // A KV cache for this model's backend (device memory on a GPU).
  std::unique_ptr<KvCache> make_kv_cache(int block_size, int capacity) {
    return backend_->make_kv_cache(config_, block_size, capacity);
  }

  // Runs `n` tokens at positions pos0 .. pos0+n-1, writing their K/V into `kv`. Attention is
  // dense and causal unless `sparse` is given (then n must be 1: a ReSA decode step). When
  // `logits` is not null it receives the last row's logits [vocab]. `block_hits` (optional,
  // one counter per KV block) counts every selection, summed over layers and KV heads.
  void forward(const int* tokens, int n, int pos0, KvCache& kv, const ResaParams* sparse,
               float* logits, ForwardStats* stats, std::vector<uint32_t>* block_hits = nullptr);

 private:
  Model() = default;
  void init_backend(const LoadOptions& opt);
  void init_rope();
  void ensure_workspace(int n);
  void layers_and_logits(int n, KvCache& kv, const ResaParams* sparse, bool count_hits,
                         bool logits);
  void attention_layer(int layer, int n, KvCache& kv, const ResaParams* sparse, bool count_hits);

  ModelConfig config_;
  ModelWeights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
  ChatFormat chat_format_ = ChatFormat::kRaw;
  std::unique_ptr<Backend> backend_;
  ModelWeights device_weights_;        // the backend's copy; empty when it reads weights_ directly
  const ModelWeights* w_ = &weights_;  // what the ops read
  std::string name_;
  std::string backend_notice_;
  size_t weight_bytes_ = 0;
  std::vector<float> inv_freq_;

  // Workspace in the backend's memory, reused across calls (one forward at a time). A decode
  // step recorded by the backend refers to these buffers: growing them changes the record key.
  int ws_rows_ = 0;
  int ws_generation_ = 0;
  Buffer x_, h_, q_, k_, v_, att_, gate_, up_, tmp_, logits_, inv_freq_buf_;
};

// Inverse rotary frequencies [head_dim / 2] with the config's rope scaling (linear, llama3),
// computed in float32 as transformers does.
std::vector<float> rope_inv_freq(const ModelConfig& c);

}  // namespace resa
