// resa-cli end to end: JSON output, streaming, and one test per bad input of the engine issue
// (item 6): each must exit non-zero with a message naming the file / flag and what is wrong,
// without crashing or hanging.
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <functional>

#include "tests/support/test_support.h"

namespace fs = std::filesystem;

namespace {

struct Run {
  int code = -1;
  QString out, err;
};

Run cli(const QStringList& args, const QByteArray& stdin_data = {},
        const QProcessEnvironment& env = QProcessEnvironment::systemEnvironment()) {
  QProcess p;
  p.setProcessEnvironment(env);
  p.start(RESA_CLI_PATH, args);
  if (!stdin_data.isEmpty()) p.write(stdin_data);
  p.closeWriteChannel();
  if (!p.waitForFinished(120000)) {
    p.kill();
    p.waitForFinished();
    return {-2, {}, "timed out"};
  }
  Run r;
  r.code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;  // -1: crashed
  r.out = QString::fromUtf8(p.readAllStandardOutput());
  r.err = QString::fromUtf8(p.readAllStandardError());
  return r;
}

// Safetensors header as JSON, editable, written back with a correct length prefix.
struct Safetensors {
  QJsonObject header;
  QByteArray data;
  static Safetensors read(const fs::path& p) {
    const std::vector<char> b = resa::test::read_bytes(p);
    uint64_t n = 0;
    memcpy(&n, b.data(), 8);
    Safetensors s;
    s.header = QJsonDocument::fromJson(QByteArray(b.data() + 8, int(n))).object();
    s.data = QByteArray(b.data() + 8 + n, int(b.size() - 8 - n));
    return s;
  }
  void write(const fs::path& p) const {
    const QByteArray h = QJsonDocument(header).toJson(QJsonDocument::Compact);
    const uint64_t n = uint64_t(h.size());
    QByteArray out(reinterpret_cast<const char*>(&n), 8);
    out += h + data;
    resa::test::write_bytes(p, std::vector<char>(out.begin(), out.end()));
  }
};

}  // namespace

class TestCli : public QObject {
  Q_OBJECT

  QTemporaryDir tmp_;
  int n_ = 0;

  // A copy of the f32 fixture model (single model.safetensors), changed by `mutate`.
  QString broken_model(const std::function<void(const fs::path&)>& mutate) {
    std::string name = "m";
    name += std::to_string(n_++);  // not "m" + to_string(): GCC 12 warns (-Wrestrict) wrongly
    const fs::path dir = fs::path(tmp_.path().toStdString()) / name;
    fs::copy(resa::test::fixture("models/llama-mha-tied"), dir, fs::copy_options::recursive);
    mutate(dir);
    return QString::fromStdString(dir.string());
  }

  void expect_failure(const QStringList& args, int code, const QStringList& needles) {
    const Run r = cli(args);
    QVERIFY2(r.code == code, qPrintable(QString("exit %1, stderr: %2").arg(r.code).arg(r.err)));
    for (const QString& n : needles)
      QVERIFY2(r.err.contains(n), qPrintable("stderr lacks '" + n + "': " + r.err));
  }

  void expect_model_error(const std::function<void(const fs::path&)>& mutate,
                          const QStringList& needles) {
    const QString dir = broken_model(mutate);
    expect_failure({"--model", dir, "--prompt", "hi", "--max-new-tokens", "2"}, 1, needles);
  }

  static void edit_config(const fs::path& dir, const std::function<void(QJsonObject&)>& f) {
    QJsonObject c = QJsonDocument::fromJson(
                        QByteArray::fromStdString(resa::test::read_text(dir / "config.json")))
                        .object();
    f(c);
    resa::test::write_text(dir / "config.json", QJsonDocument(c).toJson().toStdString());
  }

  static void edit_tensors(const fs::path& dir, const std::function<void(Safetensors&)>& f) {
    Safetensors s = Safetensors::read(dir / "model.safetensors");
    f(s);
    s.write(dir / "model.safetensors");
  }

  static void set_field(Safetensors& s, const char* tensor, const char* key, const QJsonValue& v) {
    QJsonObject t = s.header[tensor].toObject();
    t[key] = v;
    s.header[tensor] = t;
  }

 private slots:
  void initTestCase() { QVERIFY(tmp_.isValid()); }

  void json_output_has_the_documented_fields() {
    const Run r = cli({"--random-weights", "tiny", "--prompt", "Hello", "--mode", "resa",
                       "--max-new-tokens", "6", "--json"});
    QCOMPARE(r.code, 0);
    const QJsonObject j = QJsonDocument::fromJson(r.out.toUtf8()).object();
    for (const char* k : {"text", "prompt_tokens", "generated_tokens", "prefill_tokens_per_s",
                          "decode_tokens_per_s", "kv_read_fraction", "rectifications", "mode"})
      QVERIFY2(j.contains(k), k);
    QCOMPARE(j["mode"].toString(), QString("resa"));
    QCOMPARE(j["generated_tokens"].toInt(), 6);
    QVERIFY(j["prompt_tokens"].toInt() > 5);
    QVERIFY(j["decode_tokens_per_s"].toDouble() > 0);
  }

  void without_model_flag_the_bundled_demo_model_runs() {
    // RESA_DEMO_MODEL comes first among the places the default model is looked for.
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert("RESA_DEMO_MODEL",
               QString::fromStdString(resa::test::fixture("models/llama-mha-tied").string()));
    const Run r = cli({"--prompt", "Hello", "--max-new-tokens", "2", "--json"}, {}, env);
    QCOMPARE(r.code, 0);
    const QJsonObject j = QJsonDocument::fromJson(r.out.toUtf8()).object();
    QCOMPARE(j["model"].toString(), QString("llama-mha-tied"));
    QCOMPARE(j["generated_tokens"].toInt(), 2);
  }

  void streams_text_and_ends_with_a_statistics_line() {
    const Run r =
        cli({"--model", QString::fromStdString(resa::test::fixture("models/llama-gqa").string()),
             "--prompt", "Read the notes.", "--max-new-tokens", "8", "--mode", "dense"});
    QCOMPARE(r.code, 0);
    QVERIFY(!r.out.trimmed().isEmpty());
    const QStringList lines = r.err.trimmed().split('\n');
    QVERIFY(lines.last().contains("tok/s"));
    QVERIFY(lines.last().contains("KV read 100.0%"));
    QVERIFY(lines.last().contains("rectifications 0"));
  }

  void long_prefill_shows_a_progress_bar() {
    const fs::path doc = fs::path(tmp_.path().toStdString()) / "doc.txt";
    std::string text;
    for (int i = 0; i < 150; ++i)
      text += "The report continues on page " + std::to_string(i) + ". ";
    resa::test::write_text(doc, text);
    const Run r =
        cli({"--random-weights", "tiny", "--file", QString::fromStdString(doc.string()), "--prompt",
             "Summarise.", "--max-new-tokens", "2", "--prefill-chunk", "512"});
    QCOMPARE(r.code, 0);
    QVERIFY(r.err.contains("prefill ["));
    QVERIFY(r.err.contains("#"));
  }

  void chat_mode_answers_each_line_and_keeps_the_kv() {
    const Run r =
        cli({"--random-weights", "tiny", "--chat", "--max-new-tokens", "3", "--mode", "dense"},
            "first question\nsecond question\n/exit\n");
    QCOMPARE(r.code, 0);
    const QStringList stats = r.err.split('\n').filter("tok/s");
    QCOMPARE(stats.size(), 2);
    // The second turn prefilled only its own tokens (+ the pending answer token), not the first.
    QRegularExpression re("prompt (\\d+) tok \\(prefilled (\\d+)\\)");
    const auto m1 = re.match(stats[0]), m2 = re.match(stats[1]);
    QVERIFY(m1.hasMatch() && m2.hasMatch());
    QVERIFY(m2.captured(2).toInt() < m2.captured(1).toInt() - m1.captured(1).toInt() + 5);
  }

  // --- bad input (engine issue item 6) --------------------------------------------------
  void missing_model_folder_is_named() {
    expect_failure({"--model", "/nonexistent/model", "--prompt", "x"}, 1,
                   {"/nonexistent/model", "does not exist"});
  }
  void missing_config_json_is_named() {
    expect_model_error([](const fs::path& d) { fs::remove(d / "config.json"); }, {"config.json"});
  }
  void missing_tokenizer_model_is_named() {
    expect_model_error([](const fs::path& d) { fs::remove(d / "tokenizer.model"); },
                       {"tokenizer.model"});
  }
  void missing_weights_are_named() {
    expect_model_error([](const fs::path& d) { fs::remove(d / "model.safetensors"); },
                       {"model.safetensors"});
  }
  void truncated_safetensors_is_reported() {
    expect_model_error([](const fs::path& d) { fs::resize_file(d / "model.safetensors", 5000); },
                       {"model.safetensors"});
  }
  void header_length_past_the_end_is_reported() {
    expect_model_error(
        [](const fs::path& d) {
          std::vector<char> b = resa::test::read_bytes(d / "model.safetensors");
          const uint64_t n = 1ull << 40;
          memcpy(b.data(), &n, 8);
          resa::test::write_bytes(d / "model.safetensors", b);
        },
        {"model.safetensors", "header"});
  }
  void header_with_bad_json_is_reported() {
    expect_model_error(
        [](const fs::path& d) {
          std::vector<char> b = resa::test::read_bytes(d / "model.safetensors");
          b[8] = '[';
          b[9] = '}';
          resa::test::write_bytes(d / "model.safetensors", b);
        },
        {"model.safetensors", "JSON"});
  }
  void offsets_out_of_range_are_reported() {
    expect_model_error(
        [](const fs::path& d) {
          edit_tensors(d, [](Safetensors& s) {
            set_field(s, "model.norm.weight", "data_offsets", QJsonArray{460000, 460256});
          });
        },
        {"model.safetensors", "model.norm.weight"});
  }
  void overlapping_tensors_are_reported() {
    expect_model_error(
        [](const fs::path& d) {
          edit_tensors(d, [](Safetensors& s) {
            set_field(s, "model.layers.0.input_layernorm.weight", "data_offsets",
                      QJsonArray{0, 256});
          });
        },
        {"model.safetensors", "overlap"});
  }
  void unknown_dtype_is_reported() {
    expect_model_error(
        [](const fs::path& d) {
          edit_tensors(
              d, [](Safetensors& s) { set_field(s, "model.norm.weight", "dtype", "F8_E4M3"); });
        },
        {"model.safetensors", "model.norm.weight", "F8_E4M3"});
  }
  void byte_count_not_matching_shape_is_reported() {
    expect_model_error(
        [](const fs::path& d) {
          edit_tensors(d, [](Safetensors& s) {
            set_field(s, "model.norm.weight", "shape", QJsonArray{65});
          });
        },
        {"model.safetensors", "model.norm.weight"});
  }
  void config_missing_field_is_named() {
    expect_model_error(
        [](const fs::path& d) { edit_config(d, [](QJsonObject& c) { c.remove("hidden_size"); }); },
        {"config.json", "hidden_size"});
  }
  void inconsistent_config_is_reported() {
    expect_model_error(
        [](const fs::path& d) {
          edit_config(d, [](QJsonObject& c) { c["num_key_value_heads"] = 3; });
        },
        {"config.json", "num_key_value_heads"});
  }
  void unsupported_architecture_is_named() {
    expect_model_error(
        [](const fs::path& d) {
          edit_config(d,
                      [](QJsonObject& c) { c["architectures"] = QJsonArray{"GPT2LMHeadModel"}; });
        },
        {"config.json", "GPT2LMHeadModel"});
  }
  void missing_tensor_is_named() {
    expect_model_error(
        [](const fs::path& d) {
          edit_tensors(
              d, [](Safetensors& s) { s.header.remove("model.layers.1.mlp.up_proj.weight"); });
        },
        {"model.safetensors", "model.layers.1.mlp.up_proj.weight"});
  }
  void tensor_of_wrong_shape_is_named() {
    // A config that promises a larger MLP than the weights hold.
    expect_model_error(
        [](const fs::path& d) {
          edit_config(d, [](QJsonObject& c) { c["intermediate_size"] = 256; });
        },
        {"model.layers.0.mlp", "shape"});
  }
  void prompt_longer_than_context_is_refused() {
    expect_failure({"--random-weights", "tiny", "--ctx", "32", "--prompt",
                    "this prompt is certainly longer than thirty-two bytes of context"},
                   1, {"context limit is 32"});
  }
  void invalid_flag_values_are_named() {
    expect_failure({"--random-weights", "tiny", "--prompt", "x", "--ratio", "2"}, 2, {"--ratio"});
    expect_failure({"--random-weights", "tiny", "--prompt", "x", "--mode", "fast"}, 2, {"--mode"});
    expect_failure({"--random-weights", "tiny", "--prompt", "x", "--block-size", "0"}, 2,
                   {"--block-size"});
    expect_failure({"--random-weights", "tiny", "--prompt", "x", "--top-p", "abc"}, 2, {"--top-p"});
    expect_failure({"--random-weights", "tiny", "--prompt", "x", "--rectify-every", "-1"}, 2,
                   {"--rectify-every"});
    expect_failure({"--random-weights", "nope", "--prompt", "x"}, 2, {"nope", "tiny"});
    expect_failure({"--random-weights", "tiny", "--model", "/m", "--prompt", "x"}, 2,
                   {"--model", "not both"});
    expect_failure({"--random-weights", "tiny", "--file", "/nonexistent.txt"}, 2,
                   {"/nonexistent.txt"});
  }
};

QTEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
