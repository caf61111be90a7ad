// Qwen2 against transformers and the chat templates against Jinja, from
// tools/fixtures/make_qwen_oracle.py (transformers 5.17, tokenizers 0.23, jinja2 3.1): a small
// random Qwen2ForCausalLM (bf16, untied, q/k/v biases, rope_theta 1e6) loaded through
// Model::load with its tokenizer.json; logits, greedy continuation, prompt ids; the
// DeepSeek-R1-Distill, Qwen2.5 and Llama-3 templates rendered for 1-2 turns; the R1-Distill
// presets' parameter counts.
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QtTest>

#include <cmath>

#include "engine/bpe_tokenizer.h"
#include "engine/conversation.h"
#include "engine/presets.h"
#include "tests/support/test_support.h"

namespace QTest {
template <>
char* toString(const std::string& s) {
  return QTest::toPrettyCString(s.data(), qsizetype(s.size()));
}
template <>
char* toString(const std::vector<int>& v) {
  QByteArray out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? " " : "") + QByteArray::number(v[i]);
  return qstrdup(out + "]");
}
}  // namespace QTest

using namespace resa;

namespace {

// Both sides compute in float32 from the same stored bf16 weights; summation order differs.
constexpr double kLogitTolerance = 1e-3;

QJsonObject read_json(const std::string& relative) {
  return QJsonDocument::fromJson(
             QByteArray::fromStdString(test::read_text(test::fixture(relative))))
      .object();
}

std::vector<int> ints(const QJsonValue& v) {
  std::vector<int> out;
  for (const QJsonValue& x : v.toArray()) out.push_back(x.toInt());
  return out;
}

struct Oracle {
  std::filesystem::path model_dir;
  std::string prompt_text;
  std::vector<int> prompt_ids, continuation_ids;
  std::vector<float> logits;  // [rows][vocab]
  int rows = 0, vocab = 0;
};

const Oracle& oracle() {
  static const Oracle o = [] {
    Oracle o;
    const QJsonObject j = read_json("qwen2/oracle.json");
    o.model_dir = test::fixtures_dir() / j["model"].toString().toStdString();
    o.prompt_text = j["prompt_text"].toString().toStdString();
    o.prompt_ids = ints(j["prompt_ids"]);
    o.continuation_ids = ints(j["continuation_ids"]);
    o.rows = j["logits_shape"].toArray()[0].toInt();
    o.vocab = j["logits_shape"].toArray()[1].toInt();
    o.logits = test::read_f32(test::fixture("qwen2") / j["logits_file"].toString().toStdString());
    return o;
  }();
  return o;
}

double max_abs_diff(const float* a, const float* b, int n) {
  double m = 0;
  for (int i = 0; i < n; ++i) m = std::max(m, double(std::abs(a[i] - b[i])));
  return m;
}

// The Jinja rendering of one conversation of chat_renders.json.
std::string rendered(const QString& format, const QString& conversation, bool generation_prompt) {
  static const QJsonObject j = read_json("qwen2/chat_renders.json");
  for (const QJsonValue& v : j["renders"].toArray()) {
    const QJsonObject r = v.toObject();
    if (r["format"].toString() == format && r["conversation"].toString() == conversation &&
        r["add_generation_prompt"].toBool() == generation_prompt) {
      return r["text"].toString().toStdString();
    }
  }
  qFatal("no rendering %s/%s in chat_renders.json", qPrintable(format), qPrintable(conversation));
}

std::string template_text(const QString& format) {
  return read_json("qwen2/chat_renders.json")["templates"]
      .toObject()[format]
      .toString()
      .toStdString();
}

const ChatTokens kR1{"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"};
const ChatTokens kQwen{"<|endoftext|>", "<|im_end|>"};
const ChatTokens kLlama3{"<|begin_of_text|>", "<|eot_id|>"};

}  // namespace

class TestQwen2Oracle : public QObject {
  Q_OBJECT

 private slots:
  void qwen2_checkpoint_loads_with_biases_and_its_tokenizer_json() {
    auto model = Model::load(oracle().model_dir, {});
    const ModelConfig& c = model->config();
    QCOMPARE(c.arch, Architecture::kQwen2);
    QVERIFY(c.attention_bias);
    QVERIFY(!c.tie_word_embeddings);
    QCOMPARE(c.rope_theta, 1e6);
    QCOMPARE(c.vocab_size, 640);
    QCOMPARE(model->tokenizer().vocab_size(), 605);  // below config's vocab_size, as in Qwen2
    QCOMPARE(model->chat_format(), ChatFormat::kQwen25);
    QCOMPARE(model->chat_tokens().eos, std::string("<|im_end|>"));
    const auto& stops = model->tokenizer().stop_ids();
    QVERIFY(std::find(stops.begin(), stops.end(), 602) != stops.end());
  }

  void prompt_ids_equal_tokenizers() {
    const Oracle& o = oracle();
    auto model = Model::load(o.model_dir, {});
    std::vector<int> ids = model->tokenizer().encode_with_specials(o.prompt_text);
    QVERIFY(ids.size() >= o.prompt_ids.size());
    ids.resize(o.prompt_ids.size());
    QCOMPARE(ids, o.prompt_ids);
  }

  // Every position's logits, through the decode path (one token per forward).
  void logits_match_transformers() {
    const Oracle& o = oracle();
    auto model = Model::load(o.model_dir, {});
    QCOMPARE(model->config().vocab_size, o.vocab);
    std::vector<int> seq = o.prompt_ids;
    seq.insert(seq.end(), o.continuation_ids.begin(), o.continuation_ids.end() - 1);
    QCOMPARE(int(seq.size()), o.rows);
    KvCache kv(model->config(), 16, 256);
    std::vector<float> logits(size_t(o.vocab));
    double worst = 0;
    for (int i = 0; i < o.rows; ++i) {
      model->forward(&seq[size_t(i)], 1, i, kv, nullptr, logits.data(), nullptr);
      worst = std::max(worst, max_abs_diff(logits.data(),
                                           o.logits.data() + size_t(i) * size_t(o.vocab), o.vocab));
    }
    qInfo("qwen2: max |logit - transformers| = %.3g", worst);
    QVERIFY(worst < kLogitTolerance);
  }

  void chunked_prefill_logits_match_transformers() {
    const Oracle& o = oracle();
    auto model = Model::load(o.model_dir, {});
    std::vector<float> logits(size_t(o.vocab));
    for (int chunk : {1, 7, 64}) {
      KvCache kv(model->config(), 16, 256);
      const int n = int(o.prompt_ids.size());
      for (int pos = 0; pos < n; pos += chunk) {
        const int m = std::min(chunk, n - pos);
        model->forward(&o.prompt_ids[size_t(pos)], m, pos, kv, nullptr, logits.data(), nullptr);
        const double d = max_abs_diff(
            logits.data(), o.logits.data() + size_t(pos + m - 1) * size_t(o.vocab), o.vocab);
        QVERIFY2(d < kLogitTolerance,
                 qPrintable(QString("chunk %1 at %2: %3").arg(chunk).arg(pos).arg(d)));
      }
    }
  }

  void greedy_continuation_is_identical_data() {
    QTest::addColumn<QString>("mode");
    for (const char* m : {"dense", "sparse", "resa"}) QTest::newRow(m) << m;
  }
  // At 64 + 16 tokens sparse and resa read every block (fewer than min_blocks), so they must
  // continue exactly like transformers.
  void greedy_continuation_is_identical() {
    QFETCH(QString, mode);
    const Oracle& o = oracle();
    auto model = Model::load(o.model_dir, {});
    Conversation conv(*model, 0, 16);
    conv.add_tokens(o.prompt_ids);
    GenerateOptions opt;
    opt.mode = *parse_mode(mode.toStdString());
    opt.prefill_chunk = 24;
    opt.max_new_tokens = 1;  // one at a time: the oracle's loop never stops on a stop token
    std::vector<int> got;
    for (size_t i = 0; i < o.continuation_ids.size(); ++i)
      got.push_back(conv.generate(opt, {}).tokens.at(0));
    QCOMPARE(got, o.continuation_ids);
  }

  // ---- chat templates against Jinja ----------------------------------------------------------

  void templates_are_detected_by_their_markers() {
    QCOMPARE(detect_chat_format(template_text("deepseek-r1")), ChatFormat::kDeepSeekR1);
    QCOMPARE(detect_chat_format(template_text("qwen2.5")), ChatFormat::kQwen25);
    QCOMPARE(detect_chat_format(template_text("llama3")), ChatFormat::kLlama3);
    for (auto f : {ChatFormat::kQwen25, ChatFormat::kDeepSeekR1}) {
      QCOMPARE(parse_chat_format(chat_format_name(f)), std::optional(f));
    }
    QCOMPARE(chat_format_name(ChatFormat::kDeepSeekR1), std::string_view("deepseek-r1"));
  }

  void deepseek_r1_renders_one_turn_as_its_template() {
    const auto f = ChatFormat::kDeepSeekR1;
    QCOMPARE(render_user_turn(f, kR1, "", "Hi there", true),
             rendered("deepseek-r1", "one_turn", true));
    QCOMPARE(render_user_turn(f, kR1, "Be brief.", "Hi there", true),
             rendered("deepseek-r1", "one_turn_system", true));
    QVERIFY(answer_starts_in_thinking(f));
    QCOMPARE(chat_stop_strings(f, kR1), std::vector<std::string>{"<｜end▁of▁sentence｜>"});
  }

  // The template renders an earlier answer without its thinking and without the "<think>\n"
  // that opened it; our turn-by-turn text keeps both (the KV cache holds what was generated).
  // With an answer that has no thinking, the two agree once "<think>\n" is taken out.
  void deepseek_r1_renders_two_turns_as_its_template() {
    const auto f = ChatFormat::kDeepSeekR1;
    for (const char* system : {"", "Be brief."}) {
      std::string ours = render_user_turn(f, kR1, system, "Hi there", true);
      QVERIFY(ours.ends_with("<think>\n"));
      ours.resize(ours.size() - std::string("<think>\n").size());
      ours += "Hello! How can I help?" + kR1.eos + render_after_answer(f, kR1) +
              render_user_turn(f, kR1, system, "Summarise the report.", false);
      QCOMPARE(ours, rendered("deepseek-r1", *system ? "two_turns_system" : "two_turns", true));
    }
    // An answer closed by us (cut or cancelled) ends as the model would have ended it.
    QCOMPARE(render_answer_end(f, kR1), kR1.eos);
  }

  void deepseek_r1_thinking_splits_from_the_answer() {
    auto s = split_thinking("The user greets me.\n</think>\n\nHello!", true);
    QCOMPARE(s.thinking, std::string("The user greets me."));
    QCOMPARE(s.answer, std::string("Hello!"));
    QVERIFY(s.thinking_done);
    s = split_thinking("Still thinking", true);  // streaming, before </think>
    QCOMPARE(s.thinking, std::string("Still thinking"));
    QVERIFY(s.answer.empty());
    QVERIFY(!s.thinking_done);
    s = split_thinking("<think>\nplan\n</think>\n\nok", false);  // a model that opens it itself
    QCOMPARE(s.thinking, std::string("plan"));
    QCOMPARE(s.answer, std::string("ok"));
    s = split_thinking("plain answer", false);
    QCOMPARE(s.answer, std::string("plain answer"));
    QVERIFY(s.thinking.empty());
  }

  void qwen25_adds_its_default_system_prompt_as_its_template() {
    const auto f = ChatFormat::kQwen25;
    QCOMPARE(render_user_turn(f, kQwen, "", "Hi there", true),
             rendered("qwen2.5", "one_turn", true));
    QCOMPARE(render_user_turn(f, kQwen, "Be brief.", "Hi there", true),
             rendered("qwen2.5", "one_turn_system", true));
    for (const char* system : {"", "Be brief."}) {
      const std::string ours = render_user_turn(f, kQwen, system, "Hi there", true) +
                               "Hello! How can I help?<|im_end|>" + render_after_answer(f, kQwen) +
                               render_user_turn(f, kQwen, system, "Summarise the report.", false);
      QCOMPARE(ours, rendered("qwen2.5", *system ? "two_turns_system" : "two_turns", true));
    }
    QCOMPARE(render_answer_end(f, kQwen), std::string("<|im_end|>\n"));
    // Plain ChatML has no default system prompt.
    QCOMPARE(render_user_turn(ChatFormat::kChatML, kQwen, "", "Hi", true),
             std::string("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
  }

  void llama3_renders_as_its_template() {
    const auto f = ChatFormat::kLlama3;
    QCOMPARE(render_user_turn(f, kLlama3, "", "Hi there", true),
             rendered("llama3", "one_turn", true));
    QCOMPARE(render_user_turn(f, kLlama3, "Be brief.", "Hi there", true),
             rendered("llama3", "one_turn_system", true));
    for (const char* system : {"", "Be brief."}) {
      const std::string ours = render_user_turn(f, kLlama3, system, "Hi there", true) +
                               "Hello! How can I help?<|eot_id|>" +
                               render_after_answer(f, kLlama3) +
                               render_user_turn(f, kLlama3, system, "Summarise the report.", false);
      QCOMPARE(ours, rendered("llama3", *system ? "two_turns_system" : "two_turns", true));
    }
  }

  // A DeepSeek-R1 turn through the Qwen2 tokenizer.json: <think> is one (non-special) token.
  void deepseek_r1_turn_tokenizes_think_as_one_token() {
    const auto tok = BpeTokenizer::from_file(oracle().model_dir / "tokenizer.json");
    const std::string turn = render_user_turn(ChatFormat::kDeepSeekR1, kR1, "", "Hi", false);
    const auto ids = tok->encode_with_specials(turn);
    QVERIFY(ids.size() >= 3);
    QCOMPARE(ids[ids.size() - 2], tok->token_id("<think>"));
    QCOMPARE(tok->decode(ids), turn);
  }

  // ---- presets -------------------------------------------------------------------------------

  void r1_distill_presets_have_the_papers_parameter_counts_data() {
    QTest::addColumn<QString>("name");
    QTest::addColumn<double>("params");
    // Untied embeddings counted twice: 1.777e9 and 7.616e9 (HF lists the models as 1.78B, 7.62B).
    QTest::newRow("1.5b") << "r1-distill-qwen-1.5b" << 1.777e9;
    QTest::newRow("7b") << "r1-distill-qwen-7b" << 7.616e9;
  }
  void r1_distill_presets_have_the_papers_parameter_counts() {
    QFETCH(QString, name);
    QFETCH(double, params);
    const auto c = preset_config(name.toStdString());
    QVERIFY(c.has_value());
    const auto names = preset_names();
    QVERIFY(std::find(names.begin(), names.end(), name.toStdString()) != names.end());
    QCOMPARE(c->arch, Architecture::kQwen2);
    QVERIFY(c->attention_bias);
    QVERIFY(!c->tie_word_embeddings);
    QCOMPARE(c->rope_theta, 10000.0);
    QCOMPARE(c->max_position_embeddings, 131072);
    QCOMPARE(c->num_layers, 28);
    QCOMPARE(c->head_dim, 128);
    const double n = double(c->parameter_count());
    qInfo("%s: %.4g parameters", qPrintable(name), n);
    QVERIFY2(std::abs(n - params) / params < 0.02, qPrintable(QString::number(n)));
  }
};

QTEST_APPLESS_MAIN(TestQwen2Oracle)
#include "test_qwen2_oracle.moc"
