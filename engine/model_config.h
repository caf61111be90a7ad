// A model's shape and hyper-parameters, parsed from a Hugging Face config.json.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "engine/dtype.h"

namespace resa {

enum class RopeScalingKind { kNone, kLinear, kLlama3 };

struct RopeScaling {
  RopeScalingKind kind = RopeScalingKind::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;                 // llama3 only
  double high_freq_factor = 4.0;                // llama3 only
  int original_max_position_embeddings = 8192;  // llama3 only
};

enum class Architecture { kLlama, kMistral, kQwen2 };

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  std::string architecture_name;  // as written in config.json, e.g. "LlamaForCausalLM"
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_position_embeddings = 0;
  // Mistral v0.1's (and Qwen2's, when use_sliding_window) attention window; 0 = none. Kept so
  // callers can warn: this engine attends to the whole context.
  int sliding_window = 0;
  float rms_norm_eps = 1e-5f;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // biases on q/k/v (Qwen2; Llama's attention_bias)
  DType dtype = DType::kBF16;   // torch_dtype / dtype: the checkpoint's storage type
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;

  int group_size() const { return num_heads / num_kv_heads; }
  // Parameters in the weights (embedding counted once when tied).
  long long parameter_count() const;
};

// Parses config.json text. `source` names the file in error messages. Accepts both the form of
// published checkpoints (rope_theta, rope_scaling, torch_dtype) and the one transformers 5
// writes (rope_parameters, dtype). Throws resa::Error naming the file and the field.
ModelConfig parse_model_config(std::string_view json_text, const std::string& source);
ModelConfig load_model_config(const std::filesystem::path& config_json);

}  // namespace resa
