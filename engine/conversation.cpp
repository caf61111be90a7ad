#include "engine/conversation.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "engine/error.h"

namespace resa {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

}  // namespace

std::string_view stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::kStopToken:
      return "stop";
    case StopReason::kMaxTokens:
      return "length";
    case StopReason::kContextFull:
      return "context_full";
    case StopReason::kCancelled:
      return "cancelled";
  }
  return "?";
}

double GenerationStats::prefill_tokens_per_s() const {
  return prefill_ms > 0 ? prefill_tokens / (prefill_ms / 1000.0) : 0.0;
}
double GenerationStats::decode_tokens_per_s() const {
  return decode_ms > 0 ? decode_steps / (decode_ms / 1000.0) : 0.0;
}
double GenerationStats::kv_read_fraction() const {
  return kv_tokens_dense > 0 ? double(kv_tokens_read) / double(kv_tokens_dense) : 1.0;
}

Conversation::Conversation(Model& model, int ctx_limit, int block_size) : model_(model) {
  const int model_max = model.config().max_position_embeddings;
  ctx_limit_ = ctx_limit > 0 ? ctx_limit : model_max;
  if (ctx_limit_ < 2)
    throw Error(ErrorKind::kInvalidArgument,
                "context limit must be at least 2 tokens, got " + std::to_string(ctx_limit_));
  kv_ = model.make_kv_cache(block_size, ctx_limit_);
}

int Conversation::add_user_turn(std::string_view text, std::string_view system) {
  const std::string rendered =
      render_user_turn(model_.chat_format(), model_.chat_tokens(), system, text, tokens_.empty());
  return add_text(rendered);
}

int Conversation::add_text(std::string_view text) {
  const std::vector<int> ids = model_.tokenizer().encode_with_specials(text);
  add_tokens(ids);
  return int(ids.size());
}

void Conversation::add_tokens(const std::vector<int>& ids) {
  for (int id : ids) {
    if (id < 0 || id >= model_.config().vocab_size)
      throw Error(ErrorKind::kInvalidArgument, "token id " + std::to_string(id) +
                                                   " is outside the model's vocabulary of " +
                                                   std::to_string(model_.config().vocab_size));
  }
  tokens_.insert(tokens_.end(), ids.begin(), ids.end());
}

void Conversation::truncate(int n) {
  n = std::clamp(n, 0, int(tokens_.size()));
  tokens_.resize(n);
  kv_->truncate(n);
  rectified_upto_ = std::min(rectified_upto_, n);
}

void Conversation::restore(std::vector<int> tokens, int rectified_upto) {
  if (int(tokens.size()) != kv_->tokens() || rectified_upto < 0 ||
      rectified_upto > int(tokens.size()))
    throw Error(ErrorKind::kInvalidArgument, "restore: " + std::to_string(tokens.size()) +
                                                 " tokens, " + std::to_string(kv_->tokens()) +
                                                 " in the KV cache, rectified up to " +
                                                 std::to_string(rectified_upto));
  tokens_ = std::move(tokens);
  rectified_upto_ = rectified_upto;
}

void Conversation::check_fits(int extra) const {
  const int n = int(tokens_.size()) + extra;
  if (n >= ctx_limit_) {
    throw Error(ErrorKind::kContextFull,
                "the conversation needs " + std::to_string(n) +
                    " tokens but the context limit is " + std::to_string(ctx_limit_) +
                    " (leave room for the answer: shorten the document or the prompt, drop "
                    "earlier turns, or raise the context limit)");
  }
}

int Conversation::prefill_range(int start, const GenerateOptions& opt, const EventSink& sink,
                                const std::atomic<bool>* cancel, float* logits,
                                GenerationStats* stats) {
  const int end = int(tokens_.size());
  if (start < kv_->tokens()) kv_->truncate(start);
  const int chunk = std::max(1, opt.prefill_chunk);
  const auto t0 = Clock::now();
  int pos = start;
  if (sink) sink(PrefillProgressEvent{0, end - start});
  while (pos < end) {
    if (cancel && cancel->load()) break;
    const int n = std::min(chunk, end - pos);
    const bool last = pos + n == end;
    model_.forward(tokens_.data() + pos, n, pos, *kv_, nullptr, last ? logits : nullptr, nullptr);
    // A dense pass that starts at or before the rectified frontier extends it.
    if (pos <= rectified_upto_) rectified_upto_ = pos + n;
    pos += n;
    if (sink) sink(PrefillProgressEvent{pos - start, end - start});
  }
  if (stats) {
    stats->prefill_tokens += pos - start;
    stats->prefill_ms += ms_since(t0);
  }
  return pos;
}

void Conversation::prefill(const GenerateOptions& opt, const EventSink& sink,
                           const std::atomic<bool>* cancel) {
  if (int(tokens_.size()) > ctx_limit_) check_fits(0);
  prefill_range(kv_->tokens(), opt, sink, cancel, nullptr, nullptr);
}

GenerationResult Conversation::generate(const GenerateOptions& opt, const EventSink& sink,
                                        const std::atomic<bool>* cancel) {
  const auto t_call = Clock::now();
  GenerationResult result;
  GenerationStats& st = result.stats;
  st.mode = opt.mode;
  try {
    validate(opt.resa);
    if (opt.max_new_tokens < 1)
      throw Error(ErrorKind::kInvalidArgument,
                  "max new tokens must be at least 1, got " + std::to_string(opt.max_new_tokens));
    if (opt.resa.block_size != kv_->block_size())
      throw Error(ErrorKind::kInvalidArgument, "block size " + std::to_string(opt.resa.block_size) +
                                                   " differs from this conversation's KV cache (" +
                                                   std::to_string(kv_->block_size()) +
                                                   "); start a new conversation");
    if (tokens_.empty())
      throw Error(ErrorKind::kInvalidArgument, "nothing to answer: the conversation is empty");
    check_fits(0);
  } catch (const Error& e) {
    if (sink) sink(ErrorEvent{e.what()});
    throw;
  }
  Sampler sampler(opt.sampling);
  const ModelConfig& cfg = model_.config();
  const Tokenizer& tok = model_.tokenizer();
  std::vector<int> stops = tok.stop_ids();
  stops.insert(stops.end(), opt.extra_stop_ids.begin(), opt.extra_stop_ids.end());
  stops.insert(stops.end(), cfg.eos_token_ids.begin(), cfg.eos_token_ids.end());
  auto is_stop = [&](int t) { return std::find(stops.begin(), stops.end(), t) != stops.end(); };

  const int n0 = int(tokens_.size());
  st.context_tokens = n0;
  int start = kv_->tokens();
  // ReSA: positions decoded sparsely since the last rectification are redone densely with the
  // new turn, so the cache holds only dense K/V before the new tokens.
  if (opt.mode == DecodeMode::kResa) start = std::min(start, rectified_upto_);
  if (start >= n0) start = n0 - 1;  // nothing pending: recompute the last logits
  logits_.resize(cfg.vocab_size);
  const int reached = prefill_range(start, opt, sink, cancel, logits_.data(), &st);
  if (reached < n0) {
    st.stop_reason = StopReason::kCancelled;
    st.kv_cache_bytes = kv_->bytes_allocated();
    st.device_memory_bytes = model_.backend().device_memory_bytes();
    if (sink) sink(FinishedEvent{st});
    return result;
  }

  const int d = cfg.head_dim;
  const int64_t eb = kv_->element_bytes();
  const int64_t row_bytes = 2 * int64_t(d) * eb;      // K + V of one token, one head
  const int64_t summary_bytes = 2 * int64_t(d) * eb;  // min + max of one block
  if (opt.collect_block_hits)
    result.block_hits.assign((ctx_limit_ + kv_->block_size() - 1) / kv_->block_size(), 0);
  std::vector<uint32_t>* hits = opt.collect_block_hits ? &result.block_hits : nullptr;

  Utf8Stream utf8;
  const bool strip_space = tok.adds_dummy_prefix();
  const ResaParams& rp = opt.resa;
  const auto t_decode = Clock::now();
  bool first = true;
  for (;;) {
    const int next = sampler.sample(logits_.data(), cfg.vocab_size, tokens_);
    if (first) st.first_token_ms = ms_since(t_call);
    tokens_.push_back(next);
    result.tokens.push_back(next);
    ++st.generated_tokens;
    TokenEvent te;
    te.token = next;
    te.index = st.generated_tokens - 1;
    te.is_stop = is_stop(next);
    if (!te.is_stop) {
      std::string bytes = tok.token_bytes(next);
      if (first && strip_space && !bytes.empty() && bytes[0] == ' ') bytes.erase(0, 1);
      te.text = utf8.push(bytes);
      result.text += te.text;
    }
    first = false;
    if (sink) sink(te);
    if (te.is_stop) {
      st.stop_reason = StopReason::kStopToken;
      break;
    }
    if (st.generated_tokens >= opt.max_new_tokens) {
      st.stop_reason = StopReason::kMaxTokens;
      break;
    }
    if (int(tokens_.size()) >= ctx_limit_) {
      st.stop_reason = StopReason::kContextFull;
      break;
    }
    if (cancel && cancel->load()) {
      st.stop_reason = StopReason::kCancelled;
      break;
    }

    // One decode step for the token just sampled, at position p.
    const int p = int(tokens_.size()) - 1;
    const auto t_step = Clock::now();
    ForwardStats fs;
    StepEvent ev;
    const int due = p - rectified_upto_;  // tokens fed since the last dense pass
    const bool resa = opt.mode == DecodeMode::kResa && rp.rectify_every > 0;
    if (opt.mode == DecodeMode::kDense) {
      model_.forward(&tokens_[p], 1, p, *kv_, nullptr, logits_.data(), &fs);
      if (rectified_upto_ == p) rectified_upto_ = p + 1;
    } else if (resa && rp.fold_rectification && due + 1 >= rp.rectify_every) {
      // Rectification folded into the step that completes f tokens: one dense pass over them
      // (the f - 1 pending and the new one) rewrites their K/V and yields the new token's
      // logits. Every f tokens, f tokens, as in the reference schedule (a pass of f + 1 tokens
      // would also cost a third query tile of the GPU's prefill attention at f = 32).
      const int r0 = rectified_upto_;
      model_.forward(&tokens_[r0], p + 1 - r0, r0, *kv_, nullptr, logits_.data(), nullptr);
      fs.kv_tokens_read = fs.kv_tokens_dense = int64_t(cfg.num_layers) * cfg.num_kv_heads * (p + 1);
      if (rp.rebuild_all_summaries) kv_->rebuild_all_summaries();
      rectified_upto_ = p + 1;
      const double ms = ms_since(t_step);
      ++st.rectifications;
      st.rectify_ms += ms;
      ev.rectified = true;
      if (sink) sink(RectificationEvent{r0, p + 1 - r0, ms, true});
    } else {
      model_.forward(&tokens_[p], 1, p, *kv_, &rp, logits_.data(), &fs, hits);
      if (resa && p + 1 - rectified_upto_ >= rp.rectify_every) {
        // RESA.md "Rectification": re-run the last f tokens densely, rewriting their K/V.
        const auto t_rect = Clock::now();
        const int r0 = rectified_upto_;
        model_.forward(&tokens_[r0], p + 1 - r0, r0, *kv_, nullptr, nullptr, nullptr);
        if (rp.rebuild_all_summaries) kv_->rebuild_all_summaries();
        rectified_upto_ = p + 1;
        const double ms = ms_since(t_rect);
        ++st.rectifications;
        st.rectify_ms += ms;
        ev.rectified = true;
        if (sink) sink(RectificationEvent{r0, p + 1 - r0, ms, false});
      }
    }
    ev.index = st.decode_steps++;
    ev.position = p;
    ev.step_ms = ms_since(t_step);
    ev.kv_bytes_read = fs.kv_tokens_read * row_bytes + fs.summary_blocks_scored * summary_bytes;
    ev.kv_bytes_dense = fs.kv_tokens_dense * row_bytes;
    ev.blocks_selected = fs.blocks_selected;
    ev.blocks_total = fs.blocks_total;
    ev.ctx_tokens = p + 1;
    st.kv_tokens_read += fs.kv_tokens_read;
    st.kv_tokens_dense += fs.kv_tokens_dense;
    st.blocks_selected += fs.blocks_selected;
    st.kv_bytes_read += ev.kv_bytes_read;
    st.kv_bytes_dense += ev.kv_bytes_dense;
    if (sink) sink(ev);
  }
  st.decode_ms = st.decode_steps > 0 ? ms_since(t_decode) : 0.0;
  const std::string tail = utf8.flush();
  result.text += tail;
  if (!tail.empty() && sink) {
    TokenEvent te;
    te.token = -1;
    te.text = tail;
    te.index = st.generated_tokens;
    sink(te);
  }
  st.kv_cache_bytes = kv_->bytes_allocated();
  st.device_memory_bytes = model_.backend().device_memory_bytes();
  if (sink) sink(FinishedEvent{st});
  return result;
}

}  // namespace resa
