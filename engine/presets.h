// Real model shapes for synthetic-weight runs (benchmarks, tests), by name.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/model_config.h"

namespace resa {

// "tiny" (a few million parameters, 8,192-token context, for tests), "tinyllama-1.1b",
// "llama-3.1-8b", "mistral-7b", and the ReSA paper's models "r1-distill-qwen-1.5b" and
// "r1-distill-qwen-7b" (Qwen2 shapes with q/k/v biases).
std::optional<ModelConfig> preset_config(std::string_view name);
std::vector<std::string> preset_names();

}  // namespace resa
