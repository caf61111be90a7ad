#include "engine/presets.h"

namespace resa {
namespace {

ModelConfig llama_like(const char* arch, int vocab, int hidden, int inter, int layers, int heads,
                       int kv_heads, int max_pos, double theta) {
  ModelConfig c;
  c.arch = Architecture::kLlama;
  c.architecture_name = arch;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.max_position_embeddings = max_pos;
  c.rope_theta = theta;
  c.rms_norm_eps = 1e-5f;
  c.dtype = DType::kBF16;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

// DeepSeek-R1-Distill-Qwen's config.json: Qwen2 (q/k/v biases), untied embeddings, rope_theta
// 10000, 131072 positions, the model's own bos/eos (<｜begin▁of▁sentence｜>,
// <｜end▁of▁sentence｜>).
ModelConfig r1_distill_qwen(int vocab, int hidden, int inter, int heads, int kv_heads) {
  ModelConfig c =
      llama_like("Qwen2ForCausalLM", vocab, hidden, inter, 28, heads, kv_heads, 131072, 10000.0);
  c.arch = Architecture::kQwen2;
  c.attention_bias = true;
  c.tie_word_embeddings = false;
  c.rms_norm_eps = 1e-6f;
  c.bos_token_id = 151646;
  c.eos_token_ids = {151643};
  return c;
}

}  // namespace

std::vector<std::string> preset_names() {
  return {"tiny",       "tinyllama-1.1b",       "llama-3.1-8b",
          "mistral-7b", "r1-distill-qwen-1.5b", "r1-distill-qwen-7b"};
}

std::optional<ModelConfig> preset_config(std::string_view name) {
  if (name == "tiny") {
    // ~3.8M parameters; GQA 4; long enough a context for ReSA to matter.
    return llama_like("LlamaForCausalLM", 2048, 256, 688, 4, 8, 2, 8192, 10000.0);
  }
  if (name == "tinyllama-1.1b") {
    return llama_like("LlamaForCausalLM", 32000, 2048, 5632, 22, 32, 4, 2048, 10000.0);
  }
  if (name == "llama-3.1-8b") {
    ModelConfig c =
        llama_like("LlamaForCausalLM", 128256, 4096, 14336, 32, 32, 8, 131072, 500000.0);
    c.rope_scaling.kind = RopeScalingKind::kLlama3;
    c.rope_scaling.factor = 8.0;
    c.rope_scaling.low_freq_factor = 1.0;
    c.rope_scaling.high_freq_factor = 4.0;
    c.rope_scaling.original_max_position_embeddings = 8192;
    c.bos_token_id = 128000;
    c.eos_token_ids = {128001, 128008, 128009};
    return c;
  }
  if (name == "r1-distill-qwen-1.5b") return r1_distill_qwen(151936, 1536, 8960, 12, 2);
  if (name == "r1-distill-qwen-7b") return r1_distill_qwen(152064, 3584, 18944, 28, 4);
  if (name == "mistral-7b") {
    ModelConfig c = llama_like("MistralForCausalLM", 32000, 4096, 14336, 32, 32, 8, 32768, 1e6);
    c.arch = Architecture::kMistral;
    return c;
  }
  return std::nullopt;
}

}  // namespace resa
