// Conversations: KV kept across turns, events in order, cancellation, context limits.
#include <QtTest>

#include <atomic>
#include <chrono>
#include <thread>

#include "engine/conversation.h"
#include "engine/error.h"
#include "engine/presets.h"
#include "tests/support/test_support.h"

using namespace resa;

class TestConversation : public QObject {
  Q_OBJECT

  std::unique_ptr<Model> fixture_;  // llama-gqa: real sentencepiece tokenizer and ChatML
  std::unique_ptr<Model> tiny_;

  static GenerateOptions greedy(DecodeMode mode, int max_new) {
    GenerateOptions o;
    o.mode = mode;
    o.max_new_tokens = max_new;
    return o;
  }

 private slots:
  void initTestCase() {
    fixture_ = Model::load(test::fixture("models/llama-gqa"), {});
    tiny_ = Model::random(*preset_config("tiny"), "tiny", 3, {});
  }

  void chat_format_comes_from_tokenizer_config() {
    QCOMPARE(fixture_->chat_format(), ChatFormat::kChatML);
  }

  // DESIGN.md data flow: a second turn prefills only its own tokens.
  void second_turn_prefills_only_new_tokens() {
    Conversation conv(*fixture_, 0, 16);
    const int first = conv.add_user_turn("What does a long report need?");
    const GenerationResult r1 = conv.generate(greedy(DecodeMode::kDense, 6), {});
    QCOMPARE(r1.stats.prefill_tokens, first);
    QCOMPARE(r1.stats.context_tokens, first);
    const int cached = conv.cached_tokens();
    QCOMPARE(cached, first + r1.stats.generated_tokens - 1);  // the last sampled token is pending
    const int second = conv.add_user_turn("And a short one?");
    const GenerationResult r2 = conv.generate(greedy(DecodeMode::kDense, 6), {});
    QCOMPARE(r2.stats.prefill_tokens, 1 + second);  // the pending answer token + the new turn
    QCOMPARE(r2.stats.context_tokens, cached + 1 + second);

    // The same history prefilled from scratch answers the same.
    Conversation fresh(*fixture_, 0, 16);
    std::vector<int> history(conv.tokens().begin(), conv.tokens().end() - r2.tokens.size());
    fresh.add_tokens(history);
    const GenerationResult r3 = fresh.generate(greedy(DecodeMode::kDense, 6), {});
    QCOMPARE(r3.tokens, r2.tokens);
    QCOMPARE(r3.stats.prefill_tokens, int(history.size()));
  }

  void events_arrive_in_order_with_statistics() {
    Conversation conv(*tiny_, 4096, 16);
    conv.add_tokens(std::vector<int>(700, 65));
    GenerateOptions o = greedy(DecodeMode::kResa, 40);
    o.resa.rectify_every = 16;
    o.resa.min_blocks = 4;
    o.prefill_chunk = 256;
    std::vector<int> progress, token_index;
    int steps = 0, rects = 0, finished = 0;
    bool after_finish = false;
    auto sink = [&](const Event& e) {
      if (finished) after_finish = true;
      if (const auto* p = std::get_if<PrefillProgressEvent>(&e)) {
        QCOMPARE(p->total, 700);
        progress.push_back(p->done);
      } else if (const auto* t = std::get_if<TokenEvent>(&e)) {
        token_index.push_back(t->index);
      } else if (const auto* s = std::get_if<StepEvent>(&e)) {
        QCOMPARE(s->index, steps++);
        QVERIFY(s->step_ms > 0);
        QVERIFY(s->kv_bytes_read > 0);
        QVERIFY(s->kv_bytes_read < s->kv_bytes_dense || s->rectified);
      } else if (const auto* r = std::get_if<RectificationEvent>(&e)) {
        QCOMPARE(r->count, 16);
        ++rects;
      } else if (std::holds_alternative<FinishedEvent>(e)) {
        ++finished;
      }
    };
    const GenerationResult r = conv.generate(o, sink);
    QVERIFY(!after_finish);
    QCOMPARE(finished, 1);
    QCOMPARE(progress, (std::vector<int>{0, 256, 512, 700}));
    QCOMPARE(int(token_index.size()), r.stats.generated_tokens);
    for (int i = 0; i < int(token_index.size()); ++i) QCOMPARE(token_index[i], i);
    QCOMPARE(steps, r.stats.decode_steps);
    QCOMPARE(rects, r.stats.rectifications);
    QCOMPARE(rects, (r.stats.decode_steps) / 16);
    QVERIFY(r.stats.kv_read_fraction() < 1.0);
  }

  void cancel_from_another_thread_stops_within_a_step() {
    Conversation conv(*tiny_, 8192, 16);
    conv.add_tokens(std::vector<int>(300, 66));
    std::atomic<bool> cancel{false};
    std::atomic<int> tokens_seen{0};
    auto sink = [&](const Event& e) {
      if (std::holds_alternative<TokenEvent>(e)) ++tokens_seen;
    };
    GenerationResult r;
    std::thread worker([&] { r = conv.generate(greedy(DecodeMode::kDense, 7000), sink, &cancel); });
    while (tokens_seen < 5) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    cancel = true;
    const int at_cancel = tokens_seen;
    worker.join();
    QCOMPARE(r.stats.stop_reason, StopReason::kCancelled);
    QVERIFY2(r.stats.generated_tokens <= at_cancel + 1, "more than one step after cancel");
  }

  void cancel_during_prefill_stops_between_chunks() {
    Conversation conv(*tiny_, 8192, 16);
    conv.add_tokens(std::vector<int>(4000, 67));
    std::atomic<bool> cancel{false};
    int events = 0;
    auto sink = [&](const Event& e) {
      if (std::holds_alternative<PrefillProgressEvent>(e) && ++events == 2) cancel = true;
    };
    GenerateOptions o = greedy(DecodeMode::kDense, 5);
    o.prefill_chunk = 128;
    const GenerationResult r = conv.generate(o, sink, &cancel);
    QCOMPARE(r.stats.stop_reason, StopReason::kCancelled);
    QCOMPARE(r.stats.generated_tokens, 0);
    QCOMPARE(conv.cached_tokens(), 128);
  }

  void prompt_longer_than_context_is_refused_before_any_work() {
    Conversation conv(*tiny_, 256, 16);
    conv.add_tokens(std::vector<int>(300, 68));
    int progress = 0;
    QString message;
    auto sink = [&](const Event& e) {
      if (std::holds_alternative<PrefillProgressEvent>(e)) ++progress;
      if (const auto* err = std::get_if<ErrorEvent>(&e))
        message = QString::fromStdString(err->message);
    };
    try {
      conv.generate(greedy(DecodeMode::kDense, 4), sink);
      QFAIL("expected a context-full error");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::kContextFull);
      QVERIFY(QString(e.what()).contains("300 tokens"));
      QVERIFY(QString(e.what()).contains("context limit is 256"));
    }
    QCOMPARE(progress, 0);
    QVERIFY(message.contains("context limit"));
    QCOMPARE(conv.cached_tokens(), 0);
  }

  void answer_stops_at_the_context_limit() {
    Conversation conv(*tiny_, 64, 16);
    conv.add_tokens(std::vector<int>(60, 69));
    const GenerationResult r = conv.generate(greedy(DecodeMode::kDense, 100), {});
    QCOMPARE(r.stats.stop_reason, StopReason::kContextFull);
    QCOMPARE(int(conv.tokens().size()), 64);
  }

  void kv_cache_that_cannot_fit_in_memory_is_refused() {
    ModelConfig big = *preset_config("llama-3.1-8b");
    // 131072 tokens * 32 layers * 8 heads * 128 * 2 * 4 bytes = 32 GiB of f32 KV: more than
    // this machine (24 GiB) has; the check runs before any allocation.
    try {
      KvCache kv(big, 16, 131072);
      QSKIP("this machine has more than 38 GiB available");
    } catch (const Error& e) {
      QCOMPARE(e.kind(), ErrorKind::kOutOfMemory);
      QVERIFY(QString(e.what()).contains("--ctx"));
    }
  }

  void truncate_then_regenerate_gives_the_same_greedy_answer() {
    Conversation conv(*fixture_, 0, 16);
    conv.add_user_turn("Summarise the notes.");
    const int before = int(conv.tokens().size());
    const GenerationResult a = conv.generate(greedy(DecodeMode::kDense, 8), {});
    conv.truncate(before);
    const GenerationResult b = conv.generate(greedy(DecodeMode::kDense, 8), {});
    QCOMPARE(b.tokens, a.tokens);
    QCOMPARE(b.stats.prefill_tokens, 1);  // only the last prompt token is recomputed
  }

  void seeded_sampling_repeats_exactly() {
    GenerateOptions o = greedy(DecodeMode::kDense, 12);
    o.sampling.temperature = 1.0f;
    o.sampling.top_k = 40;
    o.sampling.seed = 42;
    std::vector<int> runs[2];
    for (auto& out : runs) {
      Conversation conv(*fixture_, 0, 16);
      conv.add_user_turn("Tell me a story.");
      out = conv.generate(o, {}).tokens;
    }
    QCOMPARE(runs[0], runs[1]);
  }

  void chat_format_can_be_overridden() {
    LoadOptions lo;
    lo.chat_format = ChatFormat::kLlama2;
    auto m = Model::load(test::fixture("models/llama-gqa"), lo);
    QCOMPARE(m->chat_format(), ChatFormat::kLlama2);
    Conversation conv(*m, 0, 16);
    conv.add_user_turn("hi");
    // Llama-2's turn starts with BOS then "[INST]"; ChatML's would start with <|im_start|>.
    QCOMPARE(conv.tokens().front(), m->tokenizer().bos_id());
    QVERIFY(conv.tokens()[1] != m->tokenizer().special_tokens().at("<|im_start|>"));
  }

  void a_stop_token_ends_the_answer() {
    Conversation probe(*fixture_, 0, 16);
    probe.add_user_turn("Read the notes.");
    const std::vector<int> free_run = probe.generate(greedy(DecodeMode::kDense, 6), {}).tokens;
    QCOMPARE(int(free_run.size()), 6);
    // Declaring the third greedy token a stop token ends the same answer right there.
    Conversation conv(*fixture_, 0, 16);
    conv.add_user_turn("Read the notes.");
    GenerateOptions o = greedy(DecodeMode::kDense, 6);
    o.extra_stop_ids = {free_run[2]};
    const GenerationResult r = conv.generate(o, {});
    QCOMPARE(r.stats.stop_reason, StopReason::kStopToken);
    QCOMPARE(r.tokens, std::vector<int>(free_run.begin(), free_run.begin() + 3));
  }

  void presets_have_the_real_models_shapes() {
    // Parameter counts of the published checkpoints (embeddings untied).
    QVERIFY(std::abs(preset_config("tinyllama-1.1b")->parameter_count() - 1100048384LL) < 1000000);
    QVERIFY(std::abs(preset_config("llama-3.1-8b")->parameter_count() - 8030261248LL) < 1000000);
    QVERIFY(std::abs(preset_config("mistral-7b")->parameter_count() - 7241732096LL) < 1000000);
    const ModelConfig tiny = *preset_config("tiny");
    QVERIFY(tiny.parameter_count() > 2000000 && tiny.parameter_count() < 10000000);
    QCOMPARE(tiny.max_position_embeddings, 8192);
  }

  void block_size_mismatch_is_a_clear_error() {
    Conversation conv(*tiny_, 512, 16);
    conv.add_tokens({5, 6, 7});
    GenerateOptions o = greedy(DecodeMode::kResa, 2);
    o.resa.block_size = 32;
    QVERIFY_THROWS_EXCEPTION(Error, conv.generate(o, {}));
  }
};

QTEST_APPLESS_MAIN(TestConversation)
#include "test_conversation.moc"
