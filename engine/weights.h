// The tensors of a Llama-family model, as views the kernels read (bf16 / f32 in place).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "engine/dtype.h"
#include "engine/model_config.h"

namespace resa {

class Checkpoint;

// A row-major matrix [rows, cols] (a vector when rows == 1). Not owning.
struct WeightView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  bool empty() const { return data == nullptr; }
};

struct LayerWeights {
  WeightView attn_norm;       // [1, hidden], f32
  WeightView wq, wk, wv, wo;  // [heads*hd, hidden], [kv*hd, hidden] x2, [hidden, heads*hd]
  WeightView bq, bk, bv;      // [1, heads*hd] / [1, kv*hd], f32; empty unless attention_bias
  WeightView mlp_norm;        // [1, hidden], f32
  WeightView w_gate, w_up;    // [inter, hidden]
  WeightView w_down;          // [hidden, inter]
};

struct ModelWeights {
  WeightView embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  WeightView final_norm;  // [1, hidden], f32
  WeightView lm_head;     // [vocab, hidden]; the embedding when tied

  // What keeps the views alive: the mmapped checkpoint and any converted copies.
  std::shared_ptr<const Checkpoint> checkpoint;
  std::vector<std::vector<float>> owned_f32;
  std::vector<std::vector<uint16_t>> owned_bf16;

  ModelWeights() = default;
  // A copy's views point into the copy's own buffers (not the source's), so it stays valid
  // when the source is destroyed. Copying synthetic or converted weights copies gigabytes:
  // prefer moving.
  ModelWeights(const ModelWeights& other);
  ModelWeights& operator=(const ModelWeights& other);
  ModelWeights(ModelWeights&&) noexcept = default;
  ModelWeights& operator=(ModelWeights&&) noexcept = default;
};

// Matrices stay in the checkpoint's bf16 / f32 (read from the mmap, no copy); f16 matrices are
// converted to f32 once; norms and biases are always converted to f32. Throws resa::Error
// naming the file and tensor when one is missing or has the wrong shape.
ModelWeights load_weights(std::shared_ptr<const Checkpoint> checkpoint, const ModelConfig& config);

// Synthetic bf16 weights of the config's shapes (normal, std 0.02; norms 1), deterministic for
// a seed. Used by the random-weight presets.
ModelWeights random_weights(const ModelConfig& config, uint64_t seed);

}  // namespace resa
