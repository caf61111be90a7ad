// A conversation with a model: its token history, its KV cache (kept across turns so a new turn
// prefills only its own tokens), and generation in the three modes with events.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/resa.h"
#include "engine/sampler.h"

namespace resa {

struct GenerateOptions {
  DecodeMode mode = DecodeMode::kDense;
  ResaParams resa;  // resa.block_size must equal the conversation's KV block size
  SamplingParams sampling;
  int max_new_tokens = 256;
  std::vector<int> extra_stop_ids;
  int prefill_chunk = 256;  // tokens per prefill pass (one progress event each)
  bool collect_block_hits = true;
};

enum class StopReason { kStopToken, kMaxTokens, kContextFull, kCancelled };
std::string_view stop_reason_name(StopReason r);

struct GenerationStats {
  DecodeMode mode = DecodeMode::kDense;
  int context_tokens = 0;    // tokens in the conversation before the answer
  int prefill_tokens = 0;    // of those, how many this call processed
  int generated_tokens = 0;  // sampled tokens, stop token included
  int decode_steps = 0;      // forward passes of one token
  double prefill_ms = 0;
  double decode_ms = 0;  // all decode steps, rectifications included
  double rectify_ms = 0;
  double first_token_ms = 0;  // from the call to the first sampled token
  int rectifications = 0;
  int64_t kv_tokens_read = 0;  // decode steps only, summed over layers and KV heads
  int64_t kv_tokens_dense = 0;
  int64_t blocks_selected = 0;  // sparse steps only
  int64_t kv_bytes_read = 0;    // K/V rows read plus the block summaries scored
  int64_t kv_bytes_dense = 0;
  size_t kv_cache_bytes = 0;       // memory held by the KV cache
  size_t device_memory_bytes = 0;  // GPU memory held by the process (0 on the CPU backend)
  StopReason stop_reason = StopReason::kStopToken;

  double prefill_tokens_per_s() const;
  double decode_tokens_per_s() const;
  double kv_read_fraction() const;  // kv_tokens_read / kv_tokens_dense (1 for dense)
};

struct TokenEvent {
  int token = 0;
  std::string text;  // whole UTF-8 characters, possibly empty
  int index = 0;     // 0-based within the answer
  bool is_stop = false;
};
struct PrefillProgressEvent {
  int done = 0;
  int total = 0;
};
struct StepEvent {
  int index = 0;     // decode step, 0-based
  int position = 0;  // of the token fed
  double step_ms = 0;
  int64_t kv_bytes_read = 0;
  int64_t kv_bytes_dense = 0;
  int64_t blocks_selected = 0;
  int64_t blocks_total = 0;
  int ctx_tokens = 0;
  bool rectified = false;
};
struct RectificationEvent {
  int first_position = 0;
  int count = 0;
  double ms = 0;
  bool folded = false;  // done in the same dense pass as a decode step
};
struct FinishedEvent {
  GenerationStats stats;
};
struct ErrorEvent {
  std::string message;
};
using Event = std::variant<TokenEvent, PrefillProgressEvent, StepEvent, RectificationEvent,
                           FinishedEvent, ErrorEvent>;
using EventSink = std::function<void(const Event&)>;

struct GenerationResult {
  std::string text;
  std::vector<int> tokens;
  GenerationStats stats;
  std::vector<uint32_t> block_hits;  // selections per KV block (sparse / resa steps)
};

class Conversation {
 public:
  // ctx_limit 0: the model's max_position_embeddings. Throws kOutOfMemory when the KV cache of
  // ctx_limit tokens cannot fit.
  Conversation(Model& model, int ctx_limit, int block_size);

  // Appends a user turn in the model's chat format (the system prompt counts on the first
  // turn only) and returns how many tokens it added. Nothing runs until generate().
  int add_user_turn(std::string_view text, std::string_view system = {});
  // Appends text as is (special-token strings become their ids).
  int add_text(std::string_view text);
  void add_tokens(const std::vector<int>& ids);

  // Prefills what is pending and generates an answer. Throws resa::Error (after an ErrorEvent)
  // for a context overflow before any work, or a backend failure.
  GenerationResult generate(const GenerateOptions& opt, const EventSink& sink,
                            const std::atomic<bool>* cancel = nullptr);
  // Only the prefill of pending tokens (no answer).
  void prefill(const GenerateOptions& opt, const EventSink& sink,
               const std::atomic<bool>* cancel = nullptr);

  // Forgets tokens >= n and their K/V (regenerate, edit-and-resend).
  void truncate(int n);
  // Takes `tokens` as the history after their K/V were written into kv() (a KV snapshot being
  // loaded): kv().tokens() must equal tokens.size(); positions below `rectified_upto` hold
  // K/V of dense passes. Throws resa::Error(kInvalidArgument) otherwise.
  void restore(std::vector<int> tokens, int rectified_upto);

  const std::vector<int>& tokens() const { return tokens_; }
  int cached_tokens() const { return kv_->tokens(); }
  int pending_tokens() const { return int(tokens_.size()) - kv_->tokens(); }
  int ctx_limit() const { return ctx_limit_; }
  int rectified_upto() const { return rectified_upto_; }
  KvCache& kv() { return *kv_; }
  const KvCache& kv() const { return *kv_; }
  Model& model() { return model_; }
  const Model& model() const { return model_; }

 private:
  int prefill_range(int start, const GenerateOptions& opt, const EventSink& sink,
                    const std::atomic<bool>* cancel, float* logits, GenerationStats* stats);
  void check_fits(int extra) const;

  Model& model_;
  int ctx_limit_;
  std::unique_ptr<KvCache> kv_;
  std::vector<int> tokens_;
  int rectified_upto_ = 0;  // positions below were written by dense passes (RESA.md invariant)
  std::vector<float> logits_;
};

}  // namespace resa
