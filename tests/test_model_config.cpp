// config.json parsing: published Llama / Mistral / Qwen2 checkpoints, the transformers 5 form,
// defaults, and an error naming the file and field for every broken or unsupported value.
// ctest-link: resa_model_io
#include <QTemporaryDir>
#include <QTest>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/model_config.h"
#include "tests/support/error_assert.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using resa::Architecture;
using resa::DType;
using resa::ErrorKind;
using resa::ModelConfig;
using resa::RopeScalingKind;

namespace {

const std::string kSource = "/x/config.json";

// A config.json as key -> JSON value text, so tests can drop or replace single fields.
using Fields = std::map<std::string, std::string>;

std::string to_json(const Fields& fields) {
  std::string s = "{";
  for (const auto& [key, value] : fields) {
    if (s.size() > 1) s += ",\n";
    s += "\"" + key + "\": " + value;
  }
  return s + "}";
}

ModelConfig parse(const Fields& fields) {
  return resa::parse_model_config(to_json(fields), kSource);
}

// TinyLlama/TinyLlama-1.1B-Chat-v1.0's config.json.
Fields tinyllama() {
  return {{"architectures", R"(["LlamaForCausalLM"])"},
          {"attention_bias", "false"},
          {"bos_token_id", "1"},
          {"eos_token_id", "2"},
          {"hidden_act", R"("silu")"},
          {"hidden_size", "2048"},
          {"initializer_range", "0.02"},
          {"intermediate_size", "5632"},
          {"max_position_embeddings", "2048"},
          {"model_type", R"("llama")"},
          {"num_attention_heads", "32"},
          {"num_hidden_layers", "22"},
          {"num_key_value_heads", "4"},
          {"pretraining_tp", "1"},
          {"rms_norm_eps", "1e-05"},
          {"rope_scaling", "null"},
          {"rope_theta", "10000.0"},
          {"tie_word_embeddings", "false"},
          {"torch_dtype", R"("bfloat16")"},
          {"transformers_version", R"("4.35.0")"},
          {"use_cache", "true"},
          {"vocab_size", "32000"}};
}

// meta-llama/Llama-3.1-8B-Instruct's config.json.
Fields llama31_8b() {
  return {{"architectures", R"(["LlamaForCausalLM"])"},
          {"attention_bias", "false"},
          {"attention_dropout", "0.0"},
          {"bos_token_id", "128000"},
          {"eos_token_id", "[128001, 128008, 128009]"},
          {"hidden_act", R"("silu")"},
          {"hidden_size", "4096"},
          {"initializer_range", "0.02"},
          {"intermediate_size", "14336"},
          {"max_position_embeddings", "131072"},
          {"mlp_bias", "false"},
          {"model_type", R"("llama")"},
          {"num_attention_heads", "32"},
          {"num_hidden_layers", "32"},
          {"num_key_value_heads", "8"},
          {"pretraining_tp", "1"},
          {"rms_norm_eps", "1e-05"},
          {"rope_scaling", R"({"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 8192, "rope_type": "llama3"})"},
          {"rope_theta", "500000.0"},
          {"tie_word_embeddings", "false"},
          {"torch_dtype", R"("bfloat16")"},
          {"transformers_version", R"("4.42.3")"},
          {"use_cache", "true"},
          {"vocab_size", "128256"}};
}

// meta-llama/Llama-3.2-1B as transformers 5 saves it: rope_parameters (with rope_theta) and
// dtype instead of rope_scaling / rope_theta / torch_dtype.
Fields llama32_1b_transformers5() {
  return {{"architectures", R"(["LlamaForCausalLM"])"},
          {"attention_bias", "false"},
          {"bos_token_id", "128000"},
          {"dtype", R"("bfloat16")"},
          {"eos_token_id", "128001"},
          {"head_dim", "64"},
          {"hidden_act", R"("silu")"},
          {"hidden_size", "2048"},
          {"intermediate_size", "8192"},
          {"max_position_embeddings", "131072"},
          {"mlp_bias", "false"},
          {"model_type", R"("llama")"},
          {"num_attention_heads", "32"},
          {"num_hidden_layers", "16"},
          {"num_key_value_heads", "8"},
          {"rms_norm_eps", "1e-05"},
          {"rope_parameters", R"({"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                  "original_max_position_embeddings": 8192,
                                  "rope_theta": 500000.0, "rope_type": "llama3"})"},
          {"tie_word_embeddings", "true"},
          {"transformers_version", R"("5.0.0")"},
          {"vocab_size", "128256"}};
}

// mistralai/Mistral-7B-v0.1's config.json.
Fields mistral_7b_v01() {
  return {{"architectures", R"(["MistralForCausalLM"])"},
          {"bos_token_id", "1"},
          {"eos_token_id", "2"},
          {"hidden_act", R"("silu")"},
          {"hidden_size", "4096"},
          {"initializer_range", "0.02"},
          {"intermediate_size", "14336"},
          {"max_position_embeddings", "32768"},
          {"model_type", R"("mistral")"},
          {"num_attention_heads", "32"},
          {"num_hidden_layers", "32"},
          {"num_key_value_heads", "8"},
          {"rms_norm_eps", "1e-05"},
          {"rope_theta", "10000.0"},
          {"sliding_window", "4096"},
          {"tie_word_embeddings", "false"},
          {"torch_dtype", R"("bfloat16")"},
          {"vocab_size", "32000"}};
}

// Qwen/Qwen2-0.5B-Instruct's config.json.
Fields qwen2_05b() {
  return {{"architectures", R"(["Qwen2ForCausalLM"])"},
          {"attention_dropout", "0.0"},
          {"bos_token_id", "151643"},
          {"eos_token_id", "151645"},
          {"hidden_act", R"("silu")"},
          {"hidden_size", "896"},
          {"initializer_range", "0.02"},
          {"intermediate_size", "4864"},
          {"max_position_embeddings", "32768"},
          {"max_window_layers", "24"},
          {"model_type", R"("qwen2")"},
          {"num_attention_heads", "14"},
          {"num_hidden_layers", "24"},
          {"num_key_value_heads", "2"},
          {"rms_norm_eps", "1e-06"},
          {"rope_theta", "1000000.0"},
          {"sliding_window", "32768"},
          {"tie_word_embeddings", "true"},
          {"torch_dtype", R"("bfloat16")"},
          {"use_sliding_window", "false"},
          {"vocab_size", "151936"}};
}

// Only what every config must have.
Fields minimal() {
  return {{"architectures", R"(["LlamaForCausalLM"])"},
          {"hidden_size", "64"},
          {"intermediate_size", "128"},
          {"num_attention_heads", "4"},
          {"num_hidden_layers", "2"},
          {"vocab_size", "100"}};
}

Fields with(Fields f, const std::string& key, const std::string& value) {
  f[key] = value;
  return f;
}

Fields without(Fields f, const std::string& key) {
  f.erase(key);
  return f;
}

}  // namespace

class TestModelConfig : public QObject {
  Q_OBJECT

 private slots:
  void parses_tinyllama_published_config() {
    const ModelConfig c = parse(tinyllama());
    QVERIFY(c.arch == Architecture::kLlama);
    QCOMPARE(c.architecture_name, std::string("LlamaForCausalLM"));
    QCOMPARE(c.vocab_size, 32000);
    QCOMPARE(c.hidden_size, 2048);
    QCOMPARE(c.intermediate_size, 5632);
    QCOMPARE(c.num_layers, 22);
    QCOMPARE(c.num_heads, 32);
    QCOMPARE(c.num_kv_heads, 4);
    QCOMPARE(c.head_dim, 64);
    QCOMPARE(c.group_size(), 8);
    QCOMPARE(c.max_position_embeddings, 2048);
    QCOMPARE(c.rms_norm_eps, 1e-5f);
    QCOMPARE(c.rope_theta, 10000.0);
    QVERIFY(c.rope_scaling.kind == RopeScalingKind::kNone);
    QCOMPARE(c.rope_scaling.factor, 1.0);
    QCOMPARE(c.tie_word_embeddings, false);
    QCOMPARE(c.attention_bias, false);
    QVERIFY(c.dtype == DType::kBF16);
    QCOMPARE(c.bos_token_id, 1);
    QCOMPARE(c.eos_token_ids, std::vector<int>{2});
    QCOMPARE(c.sliding_window, 0);
    QCOMPARE(c.parameter_count(), 1100048384LL);  // TinyLlama's published count
  }

  void parses_llama31_llama3_rope_scaling_and_eos_list() {
    const ModelConfig c = parse(llama31_8b());
    QCOMPARE(c.rope_theta, 500000.0);
    QVERIFY(c.rope_scaling.kind == RopeScalingKind::kLlama3);
    QCOMPARE(c.rope_scaling.factor, 8.0);
    QCOMPARE(c.rope_scaling.low_freq_factor, 1.0);
    QCOMPARE(c.rope_scaling.high_freq_factor, 4.0);
    QCOMPARE(c.rope_scaling.original_max_position_embeddings, 8192);
    QCOMPARE(c.max_position_embeddings, 131072);
    QCOMPARE(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
    QCOMPARE(c.bos_token_id, 128000);
    QCOMPARE(c.head_dim, 128);
    QCOMPARE(c.group_size(), 4);
    QCOMPARE(c.parameter_count(), 8030261248LL);
  }

  void parses_transformers5_rope_parameters_and_dtype() {
    const ModelConfig c = parse(llama32_1b_transformers5());
    QCOMPARE(c.rope_theta, 500000.0);
    QVERIFY(c.rope_scaling.kind == RopeScalingKind::kLlama3);
    QCOMPARE(c.rope_scaling.factor, 32.0);
    QCOMPARE(c.rope_scaling.low_freq_factor, 1.0);
    QCOMPARE(c.rope_scaling.high_freq_factor, 4.0);
    QCOMPARE(c.rope_scaling.original_max_position_embeddings, 8192);
    QCOMPARE(c.tie_word_embeddings, true);
    QVERIFY(c.dtype == DType::kBF16);
    QCOMPARE(c.eos_token_ids, std::vector<int>{128001});
    QCOMPARE(c.parameter_count(), 1235814400LL);  // embedding counted once when tied
  }

  void rope_parameters_theta_wins_over_top_level() {
    Fields f = with(minimal(), "rope_theta", "10000.0");
    f["rope_parameters"] = R"({"rope_type": "default", "rope_theta": 1000000.0})";
    const ModelConfig c = parse(f);
    QCOMPARE(c.rope_theta, 1000000.0);
    QVERIFY(c.rope_scaling.kind == RopeScalingKind::kNone);
  }

  void rope_parameters_without_type_is_default() {
    const ModelConfig c = parse(with(minimal(), "rope_parameters", R"({"rope_theta": 5e5})"));
    QCOMPARE(c.rope_theta, 500000.0);
    QVERIFY(c.rope_scaling.kind == RopeScalingKind::kNone);
  }

  void parses_linear_rope_scaling_with_legacy_type_key() {
    const ModelConfig c =
        parse(with(tinyllama(), "rope_scaling", R"({"type": "linear", "factor": 4.0})"));
    QVERIFY(c.rope_scaling.kind == RopeScalingKind::kLinear);
    QCOMPARE(c.rope_scaling.factor, 4.0);
    QCOMPARE(c.rope_theta, 10000.0);
  }

  void parses_linear_rope_parameters() {
    const ModelConfig c =
        parse(with(minimal(), "rope_parameters",
                   R"({"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4})"));
    QVERIFY(c.rope_scaling.kind == RopeScalingKind::kLinear);
    QCOMPARE(c.rope_scaling.factor, 2.0);
  }

  void rope_scaling_default_type_means_no_scaling() {
    const ModelConfig c =
        parse(with(tinyllama(), "rope_scaling", R"({"rope_type": "default", "factor": 3.0})"));
    QVERIFY(c.rope_scaling.kind == RopeScalingKind::kNone);
    QCOMPARE(c.rope_scaling.factor, 1.0);
  }

  void parses_mistral_with_sliding_window() {
    const ModelConfig c = parse(mistral_7b_v01());
    QVERIFY(c.arch == Architecture::kMistral);
    QCOMPARE(c.architecture_name, std::string("MistralForCausalLM"));
    QCOMPARE(c.head_dim, 128);
    QCOMPARE(c.num_kv_heads, 8);
    QCOMPARE(c.sliding_window, 4096);
    QCOMPARE(c.max_position_embeddings, 32768);
    QCOMPARE(c.attention_bias, false);
    QCOMPARE(c.parameter_count(), 7241732096LL);
  }

  void mistral_explicit_head_dim_overrides_hidden_over_heads() {
    // Mistral-Nemo: hidden 5120 with 32 heads of 128 (q_dim 4096 != hidden).
    Fields f = mistral_7b_v01();
    f["hidden_size"] = "5120";
    f["head_dim"] = "128";
    f["sliding_window"] = "null";
    const ModelConfig c = parse(f);
    QCOMPARE(c.head_dim, 128);
    QCOMPARE(c.hidden_size, 5120);
    QCOMPARE(c.sliding_window, 0);
  }

  void parses_qwen2_with_biases_and_tied_embeddings() {
    const ModelConfig c = parse(qwen2_05b());
    QVERIFY(c.arch == Architecture::kQwen2);
    QCOMPARE(c.attention_bias, true);  // Qwen2 always has q/k/v biases
    QCOMPARE(c.tie_word_embeddings, true);
    QCOMPARE(c.head_dim, 64);
    QCOMPARE(c.rms_norm_eps, 1e-6f);
    QCOMPARE(c.rope_theta, 1000000.0);
    QCOMPARE(c.sliding_window, 0);  // use_sliding_window is false
    QCOMPARE(c.eos_token_ids, std::vector<int>{151645});
    QCOMPARE(c.parameter_count(), 494032768LL);
  }

  void qwen2_sliding_window_only_when_used() {
    const ModelConfig c = parse(with(qwen2_05b(), "use_sliding_window", "true"));
    QCOMPARE(c.sliding_window, 32768);
  }

  void qwen2_without_tie_field_is_untied() {
    QCOMPARE(parse(without(qwen2_05b(), "tie_word_embeddings")).tie_word_embeddings, false);
  }

  void llama_attention_bias_field_is_read() {
    const ModelConfig c = parse(with(tinyllama(), "attention_bias", "true"));
    QCOMPARE(c.attention_bias, true);
    QCOMPARE(c.parameter_count(), 1100048384LL + 22LL * (2048 + 2 * 256));
  }

  void defaults_when_optional_fields_absent() {
    const ModelConfig c = parse(minimal());
    QCOMPARE(c.head_dim, 16);     // hidden_size / num_attention_heads
    QCOMPARE(c.num_kv_heads, 4);  // num_attention_heads
    QCOMPARE(c.tie_word_embeddings, false);
    QCOMPARE(c.attention_bias, false);
    QCOMPARE(c.rope_theta, 10000.0);
    QVERIFY(c.rope_scaling.kind == RopeScalingKind::kNone);
    QCOMPARE(c.rms_norm_eps, 1e-6f);            // transformers' LlamaConfig default
    QCOMPARE(c.max_position_embeddings, 2048);  // likewise
    QVERIFY(c.dtype == DType::kBF16);
    QCOMPARE(c.bos_token_id, -1);
    QVERIFY(c.eos_token_ids.empty());
  }

  void null_optional_fields_take_defaults() {
    Fields f = minimal();
    for (const char* key : {"head_dim", "num_key_value_heads", "rope_scaling", "eos_token_id",
                            "bos_token_id", "torch_dtype", "tie_word_embeddings", "rope_theta"}) {
      f[key] = "null";
    }
    const ModelConfig c = parse(f);
    QCOMPARE(c.head_dim, 16);
    QCOMPARE(c.num_kv_heads, 4);
    QCOMPARE(c.rope_theta, 10000.0);
    QCOMPARE(c.bos_token_id, -1);
    QVERIFY(c.eos_token_ids.empty());
  }

  void model_type_alone_selects_architecture_data() {
    QTest::addColumn<QString>("model_type");
    QTest::addColumn<QString>("name");
    QTest::newRow("llama") << "llama"
                           << "LlamaForCausalLM";
    QTest::newRow("mistral") << "mistral"
                             << "MistralForCausalLM";
    QTest::newRow("qwen2") << "qwen2"
                           << "Qwen2ForCausalLM";
  }
  void model_type_alone_selects_architecture() {
    QFETCH(QString, model_type);
    QFETCH(QString, name);
    Fields f = without(minimal(), "architectures");
    f["model_type"] = "\"" + model_type.toStdString() + "\"";
    QCOMPARE(QString::fromStdString(parse(f).architecture_name), name);
  }

  void dtype_spellings_data() {
    QTest::addColumn<QString>("key");
    QTest::addColumn<QString>("value");
    QTest::addColumn<int>("dtype");
    QTest::newRow("bfloat16") << "torch_dtype"
                              << "bfloat16" << int(DType::kBF16);
    QTest::newRow("float16") << "torch_dtype"
                             << "float16" << int(DType::kF16);
    QTest::newRow("float32") << "torch_dtype"
                             << "float32" << int(DType::kF32);
    QTest::newRow("torch.float16") << "torch_dtype"
                                   << "torch.float16" << int(DType::kF16);
    QTest::newRow("dtype float32") << "dtype"
                                   << "float32" << int(DType::kF32);
  }
  void dtype_spellings() {
    QFETCH(QString, key);
    QFETCH(QString, value);
    QFETCH(int, dtype);
    const ModelConfig c =
        parse(with(minimal(), key.toStdString(), "\"" + value.toStdString() + "\""));
    QCOMPARE(int(c.dtype), dtype);
  }

  void dtype_wins_over_torch_dtype() {
    Fields f = with(minimal(), "dtype", R"("float16")");
    f["torch_dtype"] = R"("float32")";
    QVERIFY(parse(f).dtype == DType::kF16);
  }

  void unknown_dtype_names_field_and_value() {
    QVERIFY_RESA_ERROR(parse(with(minimal(), "torch_dtype", R"("int8")")), ErrorKind::kUnsupported,
                       kSource, "field 'torch_dtype' is 'int8'", "bfloat16, float16, float32");
    QVERIFY_RESA_ERROR(parse(with(minimal(), "dtype", R"("float8_e4m3fn")")),
                       ErrorKind::kUnsupported, "field 'dtype' is 'float8_e4m3fn'");
  }

  void missing_required_field_names_file_and_field_data() {
    QTest::addColumn<QString>("field");
    for (const char* f : {"hidden_size", "vocab_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads"}) {
      QTest::newRow(f) << QString(f);
    }
  }
  void missing_required_field_names_file_and_field() {
    QFETCH(QString, field);
    const std::string name = field.toStdString();
    QVERIFY_RESA_ERROR(parse(without(tinyllama(), name)), ErrorKind::kCorruptFile,
                       "/x/config.json: field '" + name +
                           "' is missing (every Llama-family config.json has it; is this a "
                           "Hugging Face model folder?)");
  }

  void null_required_field_is_missing() {
    QVERIFY_RESA_ERROR(parse(with(tinyllama(), "hidden_size", "null")), ErrorKind::kCorruptFile,
                       kSource, "field 'hidden_size' is missing");
  }

  void non_integer_size_names_field_data() {
    QTest::addColumn<QString>("value");
    QTest::newRow("string") << R"("2048")";
    QTest::newRow("fraction") << "2048.5";
    QTest::newRow("float") << "2048.0";
    QTest::newRow("list") << "[2048]";
    QTest::newRow("bool") << "true";
  }
  void non_integer_size_names_field() {
    QFETCH(QString, value);
    QVERIFY_RESA_ERROR(parse(with(tinyllama(), "hidden_size", value.toStdString())),
                       ErrorKind::kCorruptFile, kSource, "field 'hidden_size' must be an integer");
  }

  void out_of_range_size_names_field() {
    QVERIFY_RESA_ERROR(parse(with(tinyllama(), "vocab_size", "4294967296")),
                       ErrorKind::kCorruptFile, kSource, "field 'vocab_size' is out of range");
  }

  void non_positive_size_names_field_data() {
    QTest::addColumn<QString>("field");
    QTest::addColumn<QString>("value");
    QTest::newRow("hidden_size 0") << "hidden_size"
                                   << "0";
    QTest::newRow("vocab_size -1") << "vocab_size"
                                   << "-1";
    QTest::newRow("num_attention_heads -4") << "num_attention_heads"
                                            << "-4";
    QTest::newRow("num_key_value_heads 0") << "num_key_value_heads"
                                           << "0";
    QTest::newRow("head_dim 0") << "head_dim"
                                << "0";
    QTest::newRow("num_hidden_layers 0") << "num_hidden_layers"
                                         << "0";
    QTest::newRow("intermediate_size 0") << "intermediate_size"
                                         << "0";
    QTest::newRow("max_position_embeddings 0") << "max_position_embeddings"
                                               << "0";
  }
  void non_positive_size_names_field() {
    QFETCH(QString, field);
    QFETCH(QString, value);
    QVERIFY_RESA_ERROR(
        parse(with(tinyllama(), field.toStdString(), value.toStdString())), ErrorKind::kCorruptFile,
        kSource,
        "field '" + field.toStdString() + "' must be positive, got " + value.toStdString());
  }

  void non_positive_float_names_field() {
    QVERIFY_RESA_ERROR(parse(with(tinyllama(), "rope_theta", "0")), ErrorKind::kCorruptFile,
                       kSource, "field 'rope_theta' must be positive");
    QVERIFY_RESA_ERROR(parse(with(tinyllama(), "rms_norm_eps", "-1e-5")), ErrorKind::kCorruptFile,
                       kSource, "field 'rms_norm_eps' must be positive");
  }

  void hidden_not_divisible_by_heads_without_head_dim_is_corrupt() {
    QVERIFY_RESA_ERROR(parse(with(minimal(), "num_attention_heads", "6")), ErrorKind::kCorruptFile,
                       kSource, "hidden_size (64) is not divisible by num_attention_heads (6)",
                       "'head_dim'");
  }

  void hidden_not_divisible_by_heads_is_fine_with_head_dim() {
    Fields f = with(minimal(), "num_attention_heads", "6");
    f["head_dim"] = "8";
    const ModelConfig c = parse(f);
    QCOMPARE(c.head_dim, 8);
    QCOMPARE(c.num_heads, 6);
  }

  void heads_not_multiple_of_kv_heads_is_corrupt() {
    QVERIFY_RESA_ERROR(parse(with(tinyllama(), "num_key_value_heads", "5")),
                       ErrorKind::kCorruptFile, kSource,
                       "num_attention_heads (32) is not a multiple of num_key_value_heads (5)");
    QVERIFY_RESA_ERROR(parse(with(tinyllama(), "num_key_value_heads", "64")),
                       ErrorKind::kCorruptFile, kSource, "num_key_value_heads (64)");
  }

  void odd_head_dim_is_unsupported() {
    QVERIFY_RESA_ERROR(parse(with(minimal(), "head_dim", "7")), ErrorKind::kUnsupported, kSource,
                       "head_dim 7 is odd");
  }

  void unknown_rope_type_is_unsupported_data() {
    QTest::addColumn<QString>("key");
    QTest::addColumn<QString>("type");
    QTest::newRow("yarn") << "rope_scaling"
                          << "yarn";
    QTest::newRow("dynamic") << "rope_scaling"
                             << "dynamic";
    QTest::newRow("longrope") << "rope_parameters"
                              << "longrope";
  }
  void unknown_rope_type_is_unsupported() {
    QFETCH(QString, key);
    QFETCH(QString, type);
    const std::string k = key.toStdString();
    const std::string t = type.toStdString();
    QVERIFY_RESA_ERROR(parse(with(tinyllama(), k, "{\"rope_type\": \"" + t + "\", \"factor\": 4}")),
                       ErrorKind::kUnsupported, kSource,
                       "field '" + k + ".rope_type' is '" + t + "'", "default, linear, llama3");
  }

  void llama3_rope_missing_field_names_it_data() {
    QTest::addColumn<QString>("field");
    for (const char* f :
         {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
      QTest::newRow(f) << QString(f);
    }
  }
  void llama3_rope_missing_field_names_it() {
    QFETCH(QString, field);
    std::map<std::string, std::string> rope = {{"factor", "8.0"},
                                               {"low_freq_factor", "1.0"},
                                               {"high_freq_factor", "4.0"},
                                               {"original_max_position_embeddings", "8192"},
                                               {"rope_type", R"("llama3")"}};
    rope.erase(field.toStdString());
    QVERIFY_RESA_ERROR(parse(with(llama31_8b(), "rope_scaling", to_json(rope))),
                       ErrorKind::kCorruptFile, kSource,
                       "field 'rope_scaling." + field.toStdString() + "' is missing");
  }

  void llama3_high_freq_not_above_low_is_corrupt() {
    QVERIFY_RESA_ERROR(parse(with(llama31_8b(), "rope_scaling",
                                  R"({"rope_type": "llama3", "factor": 8, "low_freq_factor": 4,
                       "high_freq_factor": 4, "original_max_position_embeddings": 8192})")),
                       ErrorKind::kCorruptFile, kSource,
                       "high_freq_factor must be greater than low_freq_factor");
  }

  void linear_rope_without_factor_names_it() {
    QVERIFY_RESA_ERROR(parse(with(tinyllama(), "rope_scaling", R"({"type": "linear"})")),
                       ErrorKind::kCorruptFile, kSource, "field 'rope_scaling.factor' is missing");
  }

  void rope_scaling_without_type_is_corrupt() {
    QVERIFY_RESA_ERROR(parse(with(tinyllama(), "rope_scaling", R"({"factor": 2.0})")),
                       ErrorKind::kCorruptFile, kSource,
                       "field 'rope_scaling' has neither 'rope_type' nor 'type'");
  }

  void rope_scaling_not_object_is_corrupt() {
    QVERIFY_RESA_ERROR(parse(with(tinyllama(), "rope_scaling", "2.0")), ErrorKind::kCorruptFile,
                       kSource, "field 'rope_scaling' must be an object");
  }

  void unsupported_architecture_lists_supported() {
    QVERIFY_RESA_ERROR(parse(with(tinyllama(), "architectures", R"(["GPT2LMHeadModel"])")),
                       ErrorKind::kUnsupported, kSource,
                       "architecture 'GPT2LMHeadModel' is not supported",
                       "supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM");
  }

  void unsupported_model_type_lists_supported() {
    Fields f = without(minimal(), "architectures");
    f["model_type"] = R"("gemma")";
    QVERIFY_RESA_ERROR(parse(f), ErrorKind::kUnsupported, kSource,
                       "model_type 'gemma' is not supported", "LlamaForCausalLM");
  }

  void missing_architectures_and_model_type_is_corrupt() {
    QVERIFY_RESA_ERROR(parse(without(minimal(), "architectures")), ErrorKind::kCorruptFile, kSource,
                       "field 'architectures' is missing");
  }

  void malformed_architectures_is_corrupt() {
    QVERIFY_RESA_ERROR(parse(with(minimal(), "architectures", "[]")), ErrorKind::kCorruptFile,
                       kSource, "field 'architectures' must be a non-empty list");
  }

  void non_silu_activation_is_unsupported() {
    QVERIFY_RESA_ERROR(parse(with(tinyllama(), "hidden_act", R"("gelu")")), ErrorKind::kUnsupported,
                       kSource, "field 'hidden_act' is 'gelu'");
  }

  void llama_mlp_bias_is_unsupported() {
    QVERIFY_RESA_ERROR(parse(with(llama31_8b(), "mlp_bias", "true")), ErrorKind::kUnsupported,
                       kSource, "field 'mlp_bias' is true");
  }

  void eos_token_id_of_wrong_type_is_corrupt_data() {
    QTest::addColumn<QString>("value");
    QTest::newRow("string") << R"("2")";
    QTest::newRow("list with string") << R"([1, "x"])";
    QTest::newRow("object") << R"({"id": 2})";
  }
  void eos_token_id_of_wrong_type_is_corrupt() {
    QFETCH(QString, value);
    QVERIFY_RESA_ERROR(parse(with(tinyllama(), "eos_token_id", value.toStdString())),
                       ErrorKind::kCorruptFile, kSource,
                       "field 'eos_token_id' must be an integer or a list of integers");
  }

  void bool_field_of_wrong_type_is_corrupt() {
    QVERIFY_RESA_ERROR(parse(with(tinyllama(), "tie_word_embeddings", R"("yes")")),
                       ErrorKind::kCorruptFile, kSource,
                       "field 'tie_word_embeddings' must be true or false");
  }

  void invalid_json_names_file() {
    QVERIFY_RESA_ERROR(resa::parse_model_config("{\"hidden_size\": 64,", kSource),
                       ErrorKind::kCorruptFile, kSource, "not valid JSON");
    QVERIFY_RESA_ERROR(resa::parse_model_config("", kSource), ErrorKind::kCorruptFile, kSource,
                       "not valid JSON");
  }

  void non_object_json_names_file() {
    QVERIFY_RESA_ERROR(resa::parse_model_config("[1, 2]", kSource), ErrorKind::kCorruptFile,
                       kSource, "not a JSON object");
  }

  void load_model_config_reads_file_and_folder() {
    QTemporaryDir dir;
    const fs::path root = dir.path().toStdString();
    resa::test::write_text(root / "config.json", to_json(qwen2_05b()));
    QCOMPARE(resa::load_model_config(root / "config.json").hidden_size, 896);
    QCOMPARE(resa::load_model_config(root).vocab_size, 151936);
  }

  void load_model_config_errors_name_the_real_path() {
    QTemporaryDir dir;
    const fs::path root = dir.path().toStdString();
    resa::test::write_text(root / "config.json", to_json(without(tinyllama(), "hidden_size")));
    QVERIFY_RESA_ERROR(resa::load_model_config(root), ErrorKind::kCorruptFile,
                       (root / "config.json").string() + ": field 'hidden_size' is missing");
  }

  void load_model_config_missing_file_is_file_not_found() {
    QTemporaryDir dir;
    const fs::path root = dir.path().toStdString();
    QVERIFY_RESA_ERROR(resa::load_model_config(root), ErrorKind::kFileNotFound,
                       (root / "config.json").string() + ": not found",
                       "Hugging Face model folder has config.json");
  }
};

QTEST_APPLESS_MAIN(TestModelConfig)
#include "test_model_config.moc"
