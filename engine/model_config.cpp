#include "engine/model_config.h"

#include <climits>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "engine/error.h"

namespace resa {
namespace {

using nlohmann::json;

constexpr const char* kSupportedArchitectures =
    "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM";

struct ArchitectureEntry {
  const char* class_name;  // config.json "architectures"[0]
  const char* model_type;  // config.json "model_type", the fallback when architectures is absent
  Architecture arch;
  int default_max_position_embeddings;  // transformers' default for the model_type
};

constexpr ArchitectureEntry kArchitectures[] = {
    {"LlamaForCausalLM", "llama", Architecture::kLlama, 2048},
    {"MistralForCausalLM", "mistral", Architecture::kMistral, 4096 * 32},
    {"Qwen2ForCausalLM", "qwen2", Architecture::kQwen2, 32768},
};

// Reads typed fields of one JSON object, turning every problem into an Error that names the
// file and the field (with its path, e.g. 'rope_scaling.factor').
class FieldReader {
 public:
  FieldReader(const json& object, const std::string& source, std::string prefix = "")
      : object_(object), source_(source), prefix_(std::move(prefix)) {}

  [[noreturn]] void fail(ErrorKind kind, const std::string& what) const {
    throw Error(kind, source_ + ": " + what);
  }

  std::string field_name(const std::string& key) const { return prefix_ + key; }

  // Present and not null: transformers writes null for "use the default" (e.g. head_dim).
  const json* find(const std::string& key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  const json& require(const std::string& key) const {
    const json* v = find(key);
    if (v == nullptr) {
      fail(ErrorKind::kCorruptFile,
           "field '" + field_name(key) +
               "' is missing (every Llama-family config.json has it; is this a Hugging Face "
               "model folder?)");
    }
    return *v;
  }

  int as_int(const std::string& key, const json& v) const {
    if (!v.is_number_integer()) {
      fail(ErrorKind::kCorruptFile,
           "field '" + field_name(key) + "' must be an integer, got " + v.dump());
    }
    if (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t(INT_MAX)
                               : (v.get<int64_t>() > INT_MAX || v.get<int64_t>() < INT_MIN)) {
      fail(ErrorKind::kCorruptFile, "field '" + field_name(key) + "' is out of range: " + v.dump());
    }
    return int(v.get<int64_t>());
  }

  int positive_int(const std::string& key, const json& v) const {
    const int i = as_int(key, v);
    if (i <= 0) {
      fail(ErrorKind::kCorruptFile,
           "field '" + field_name(key) + "' must be positive, got " + std::to_string(i));
    }
    return i;
  }

  int required_positive_int(const std::string& key) const {
    return positive_int(key, require(key));
  }

  std::optional<int> optional_positive_int(const std::string& key) const {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    return positive_int(key, *v);
  }

  double positive_number(const std::string& key, const json& v) const {
    if (!v.is_number()) {
      fail(ErrorKind::kCorruptFile,
           "field '" + field_name(key) + "' must be a number, got " + v.dump());
    }
    const double d = v.get<double>();
    if (!(d > 0.0)) {
      fail(ErrorKind::kCorruptFile,
           "field '" + field_name(key) + "' must be positive, got " + v.dump());
    }
    return d;
  }

  double required_positive_number(const std::string& key) const {
    return positive_number(key, require(key));
  }

  double positive_number_or(const std::string& key, double fallback) const {
    const json* v = find(key);
    return v == nullptr ? fallback : positive_number(key, *v);
  }

  bool bool_or(const std::string& key, bool fallback) const {
    const json* v = find(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) {
      fail(ErrorKind::kCorruptFile,
           "field '" + field_name(key) + "' must be true or false, got " + v->dump());
    }
    return v->get<bool>();
  }

  std::optional<std::string> optional_string(const std::string& key) const {
    const json* v = find(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) {
      fail(ErrorKind::kCorruptFile,
           "field '" + field_name(key) + "' must be a string, got " + v->dump());
    }
    return v->get<std::string>();
  }

 private:
  const json& object_;
  const std::string& source_;
  std::string prefix_;
};

const ArchitectureEntry& parse_architecture(const FieldReader& r, std::string& name) {
  if (const json* archs = r.find("architectures")) {
    if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
      r.fail(ErrorKind::kCorruptFile,
             "field 'architectures' must be a non-empty list of class names, got " + archs->dump());
    }
    name = (*archs)[0].get<std::string>();
    for (const auto& a : kArchitectures) {
      if (name == a.class_name) return a;
    }
    r.fail(ErrorKind::kUnsupported, "architecture '" + name + "' is not supported (supported: " +
                                        kSupportedArchitectures + ")");
  }
  // Some hand-made configs only carry model_type; transformers' AutoModel accepts them too.
  if (auto type = r.optional_string("model_type")) {
    for (const auto& a : kArchitectures) {
      if (*type == a.model_type) {
        name = a.class_name;
        return a;
      }
    }
    r.fail(ErrorKind::kUnsupported, "model_type '" + *type + "' is not supported (supported: " +
                                        kSupportedArchitectures + ")");
  }
  r.fail(ErrorKind::kCorruptFile,
         "field 'architectures' is missing (every Llama-family config.json has it; is this a "
         "Hugging Face model folder?)");
}

// rope_scaling (published checkpoints) and rope_parameters (transformers 5) share their keys;
// rope_parameters also carries rope_theta.
void parse_rope(const FieldReader& r, const json& j, const std::string& source, ModelConfig& c) {
  c.rope_theta = r.positive_number_or("rope_theta", 10000.0);

  const char* key = nullptr;
  if (r.find("rope_parameters")) {
    key = "rope_parameters";
  } else if (r.find("rope_scaling")) {
    key = "rope_scaling";
  } else {
    return;
  }
  const json& rope = j.at(key);
  if (!rope.is_object()) {
    r.fail(ErrorKind::kCorruptFile,
           std::string("field '") + key + "' must be an object, got " + rope.dump());
  }
  const FieldReader rr(rope, source, std::string(key) + ".");
  c.rope_theta = rr.positive_number_or("rope_theta", c.rope_theta);

  std::optional<std::string> type = rr.optional_string("rope_type");
  if (!type) type = rr.optional_string("type");  // the pre-4.45 spelling
  if (!type) {
    // transformers 5 fills rope_type "default" itself; a rope_scaling without a type is broken.
    if (std::string(key) == "rope_parameters") return;
    r.fail(ErrorKind::kCorruptFile,
           "field 'rope_scaling' has neither 'rope_type' nor 'type' (expected e.g. "
           "{\"rope_type\": \"llama3\", \"factor\": 8.0, ...})");
  }

  RopeScaling& s = c.rope_scaling;
  if (*type == "default") {
    s = RopeScaling{};
  } else if (*type == "linear") {
    s = RopeScaling{};
    s.kind = RopeScalingKind::kLinear;
    s.factor = rr.required_positive_number("factor");
  } else if (*type == "llama3") {
    s.kind = RopeScalingKind::kLlama3;
    s.factor = rr.required_positive_number("factor");
    s.low_freq_factor = rr.required_positive_number("low_freq_factor");
    s.high_freq_factor = rr.required_positive_number("high_freq_factor");
    s.original_max_position_embeddings = rr.positive_int(
        "original_max_position_embeddings", rr.require("original_max_position_embeddings"));
    // Llama 3's frequency interpolation divides by (high - low).
    if (!(s.high_freq_factor > s.low_freq_factor)) {
      r.fail(ErrorKind::kCorruptFile, std::string("field '") + key +
                                          "': high_freq_factor must be greater than "
                                          "low_freq_factor");
    }
  } else {
    r.fail(ErrorKind::kUnsupported, std::string("field '") + key + ".rope_type' is '" + *type +
                                        "', a rope scaling we do not support (supported: "
                                        "default, linear, llama3)");
  }
}

DType parse_dtype(const FieldReader& r) {
  // transformers 5 writes "dtype"; earlier versions "torch_dtype".
  const char* key = r.find("dtype") ? "dtype" : "torch_dtype";
  auto value = r.optional_string(key);
  if (!value) return DType::kBF16;
  std::string v = *value;
  if (v.rfind("torch.", 0) == 0) v = v.substr(6);
  if (v == "bfloat16") return DType::kBF16;
  if (v == "float16" || v == "half") return DType::kF16;
  if (v == "float32" || v == "float") return DType::kF32;
  r.fail(ErrorKind::kUnsupported, std::string("field '") + key + "' is '" + *value +
                                      "', not a dtype we read (supported: bfloat16, float16, "
                                      "float32)");
}

std::vector<int> parse_eos(const FieldReader& r) {
  const json* v = r.find("eos_token_id");
  if (v == nullptr) return {};
  if (v->is_number_integer()) return {r.as_int("eos_token_id", *v)};
  if (v->is_array()) {
    std::vector<int> ids;
    for (const json& e : *v) {
      if (!e.is_number_integer()) {
        r.fail(ErrorKind::kCorruptFile,
               "field 'eos_token_id' must be an integer or a list of integers, got " + v->dump());
      }
      ids.push_back(r.as_int("eos_token_id", e));
    }
    return ids;
  }
  r.fail(ErrorKind::kCorruptFile,
         "field 'eos_token_id' must be an integer or a list of integers, got " + v->dump());
}

}  // namespace

long long ModelConfig::parameter_count() const {
  const long long h = hidden_size;
  const long long q_dim = (long long)num_heads * head_dim;
  const long long kv_dim = (long long)num_kv_heads * head_dim;
  long long per_layer = h * q_dim + 2 * h * kv_dim + q_dim * h  // q, k, v, o
                        + 3 * h * intermediate_size             // gate, up, down
                        + 2 * h;                                // two norms
  if (attention_bias) per_layer += q_dim + 2 * kv_dim;
  const long long embed = (long long)vocab_size * h;
  return embed + num_layers * per_layer + h + (tie_word_embeddings ? 0 : embed);
}

ModelConfig parse_model_config(std::string_view json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text.begin(), json_text.end());
  } catch (const json::parse_error& e) {
    throw Error(ErrorKind::kCorruptFile,
                source + ": not valid JSON (" + e.what() + "); is the download complete?");
  }
  if (!j.is_object()) {
    throw Error(ErrorKind::kCorruptFile, source + ": not a JSON object (a config.json is {...})");
  }
  const FieldReader r(j, source);

  ModelConfig c;
  const ArchitectureEntry& arch = parse_architecture(r, c.architecture_name);
  c.arch = arch.arch;

  c.vocab_size = r.required_positive_int("vocab_size");
  c.hidden_size = r.required_positive_int("hidden_size");
  c.intermediate_size = r.required_positive_int("intermediate_size");
  c.num_layers = r.required_positive_int("num_hidden_layers");
  c.num_heads = r.required_positive_int("num_attention_heads");
  c.num_kv_heads = r.optional_positive_int("num_key_value_heads").value_or(c.num_heads);
  if (auto hd = r.optional_positive_int("head_dim")) {
    c.head_dim = *hd;
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      r.fail(ErrorKind::kCorruptFile, "hidden_size (" + std::to_string(c.hidden_size) +
                                          ") is not divisible by num_attention_heads (" +
                                          std::to_string(c.num_heads) +
                                          ") and there is no 'head_dim' field to say otherwise");
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    r.fail(ErrorKind::kCorruptFile, "num_attention_heads (" + std::to_string(c.num_heads) +
                                        ") is not a multiple of num_key_value_heads (" +
                                        std::to_string(c.num_kv_heads) + ")");
  }
  if (c.head_dim % 2 != 0) {
    // Rotary embedding rotates pairs of dimensions.
    r.fail(ErrorKind::kUnsupported,
           "head_dim " + std::to_string(c.head_dim) + " is odd; rotary embedding needs it even");
  }
  c.max_position_embeddings = r.optional_positive_int("max_position_embeddings")
                                  .value_or(arch.default_max_position_embeddings);
  c.rms_norm_eps = float(r.positive_number_or("rms_norm_eps", 1e-6));

  if (auto act = r.optional_string("hidden_act"); act && *act != "silu" && *act != "swish") {
    r.fail(ErrorKind::kUnsupported,
           "field 'hidden_act' is '" + *act + "'; only silu (SwiGLU) MLPs are supported");
  }
  if (c.arch == Architecture::kLlama && r.bool_or("mlp_bias", false)) {
    r.fail(ErrorKind::kUnsupported, "field 'mlp_bias' is true; MLP biases are not supported");
  }

  parse_rope(r, j, source, c);

  // transformers' defaults: tie_word_embeddings is false for all three model types.
  c.tie_word_embeddings = r.bool_or("tie_word_embeddings", false);
  // Qwen2 always has q/k/v biases (its attention hard-codes bias=True); Llama reads the field;
  // Mistral's attention has none.
  if (c.arch == Architecture::kQwen2) {
    c.attention_bias = true;
  } else if (c.arch == Architecture::kLlama) {
    c.attention_bias = r.bool_or("attention_bias", false);
  }

  if (c.arch == Architecture::kMistral) {
    c.sliding_window = r.optional_positive_int("sliding_window").value_or(0);
  } else if (c.arch == Architecture::kQwen2 && r.bool_or("use_sliding_window", false)) {
    c.sliding_window = r.optional_positive_int("sliding_window").value_or(0);
  }

  c.dtype = parse_dtype(r);
  if (const json* bos = r.find("bos_token_id")) c.bos_token_id = r.as_int("bos_token_id", *bos);
  c.eos_token_ids = parse_eos(r);
  return c;
}

ModelConfig load_model_config(const std::filesystem::path& config_json) {
  // A model folder is accepted too: users pass the folder more often than the file.
  std::filesystem::path path = config_json;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) path /= "config.json";
  if (!std::filesystem::exists(path, ec)) {
    throw Error(ErrorKind::kFileNotFound,
                path.string() +
                    ": not found (a Hugging Face model folder has config.json next to its "
                    ".safetensors weights; download it with the weights)");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error(ErrorKind::kFileNotFound,
                path.string() + ": cannot be opened (check its permissions)");
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_model_config(text.str(), path.string());
}

}  // namespace resa
