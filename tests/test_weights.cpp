// Loading a Llama-family checkpoint into WeightViews (in place for bf16/f32, converted for f16,
// norms and biases as f32) and synthetic random weights.
// ctest-link: resa_model_io
#include <QTemporaryDir>
#include <QTest>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "engine/error.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"
#include "engine/weights.h"
#include "tests/support/error_assert.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using resa::DType;
using resa::ErrorKind;
using resa::ModelConfig;
using resa::ModelWeights;
using resa::WeightView;

namespace {

// hidden 8, 2 heads of 4 with one KV head (q_dim 8, kv_dim 4), inter 12, vocab 16.
ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab_size = 16;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_layers = 2;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 4;
  c.max_position_embeddings = 64;
  return c;
}

// The HF tensors of a config with their shapes.
std::map<std::string, std::vector<int64_t>> hf_shapes(const ModelConfig& c, bool with_lm_head) {
  const int64_t h = c.hidden_size, v = c.vocab_size, i = c.intermediate_size;
  const int64_t q = int64_t(c.num_heads) * c.head_dim, kv = int64_t(c.num_kv_heads) * c.head_dim;
  std::map<std::string, std::vector<int64_t>> s;
  s["model.embed_tokens.weight"] = {v, h};
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    s[p + "input_layernorm.weight"] = {h};
    s[p + "self_attn.q_proj.weight"] = {q, h};
    s[p + "self_attn.k_proj.weight"] = {kv, h};
    s[p + "self_attn.v_proj.weight"] = {kv, h};
    s[p + "self_attn.o_proj.weight"] = {h, q};
    if (c.attention_bias) {
      s[p + "self_attn.q_proj.bias"] = {q};
      s[p + "self_attn.k_proj.bias"] = {kv};
      s[p + "self_attn.v_proj.bias"] = {kv};
    }
    s[p + "post_attention_layernorm.weight"] = {h};
    s[p + "mlp.gate_proj.weight"] = {i, h};
    s[p + "mlp.up_proj.weight"] = {i, h};
    s[p + "mlp.down_proj.weight"] = {h, i};
  }
  s["model.norm.weight"] = {h};
  if (with_lm_head) s["lm_head.weight"] = {v, h};
  return s;
}

// Values exact in bf16 and f16 (k/8 for |k| <= 16), different per tensor and element.
float value_of(const std::string& name, int64_t i) {
  const int64_t salt = int64_t(std::hash<std::string>{}(name) % 13);
  return float((salt * 5 + i * 3) % 33 - 16) / 8.0f;
}

struct Written {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
};

std::vector<char> encode(const Written& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  std::vector<char> b;
  for (int64_t i = 0; i < n; ++i) {
    const float f = value_of(t.name, i);
    if (t.dtype == "F32") {
      char raw[4];
      std::memcpy(raw, &f, 4);
      b.insert(b.end(), raw, raw + 4);
    } else {
      const uint16_t h = t.dtype == "F16" ? resa::f32_to_f16(f) : resa::f32_to_bf16(f);
      b.push_back(char(h & 0xff));
      b.push_back(char(h >> 8));
    }
  }
  return b;
}

std::string shape_json(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// `misalign` extra header bytes shift the data section off its 8-byte alignment.
void write_safetensors(const fs::path& p, const std::vector<Written>& tensors, int misalign = 0) {
  std::string header = "{";
  std::vector<char> data;
  for (const Written& t : tensors) {
    const std::vector<char> bytes = encode(t);
    const size_t begin = data.size();
    data.insert(data.end(), bytes.begin(), bytes.end());
    if (header.size() > 1) header += ',';
    header += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" + shape_json(t.shape) +
              ",\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(data.size()) +
              "]}";
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';
  header.append(size_t(misalign), ' ');
  std::vector<char> out(8 + header.size() + data.size());
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
  resa::test::write_bytes(p, out);
}

using DTypeOf = std::function<std::string(const std::string& name)>;

// model.safetensors holding every tensor of `c` (lm_head optional) in the dtype `dtype_of` picks;
// `edit` may change the list (drop a tensor, change a shape) before writing.
std::shared_ptr<const resa::Checkpoint> write_checkpoint(
    const QTemporaryDir& dir, const ModelConfig& c, const DTypeOf& dtype_of, bool with_lm_head,
    const std::function<void(std::vector<Written>&)>& edit = {}) {
  std::vector<Written> tensors;
  for (const auto& [name, shape] : hf_shapes(c, with_lm_head)) {
    tensors.push_back({name, dtype_of(name), shape});
  }
  if (edit) edit(tensors);
  const fs::path root = dir.path().toStdString();
  write_safetensors(root / "model.safetensors", tensors);
  return std::make_shared<const resa::Checkpoint>(root);
}

DTypeOf all(const std::string& dtype) {
  return [dtype](const std::string&) { return dtype; };
}

float element(const WeightView& v, int64_t i) {
  uint16_t h;
  switch (v.dtype) {
    case DType::kF32:
      return static_cast<const float*>(v.data)[i];
    case DType::kBF16:
      std::memcpy(&h, static_cast<const std::byte*>(v.data) + 2 * i, 2);
      return resa::bf16_to_f32(h);
    case DType::kF16:
      std::memcpy(&h, static_cast<const std::byte*>(v.data) + 2 * i, 2);
      return resa::f16_to_f32(h);
  }
  return NAN;
}

// Every element of the view equals what the test wrote for `name`.
bool holds_values_of(const WeightView& v, const std::string& name) {
  for (int64_t i = 0; i < v.rows * v.cols; ++i) {
    if (element(v, i) != value_of(name, i)) return false;
  }
  return true;
}

bool points_into(const WeightView& v, const resa::TensorInfo& t) { return v.data == t.data; }

bool inside(const void* p, const std::vector<std::vector<float>>& buffers) {
  for (const auto& b : buffers) {
    if (p >= static_cast<const void*>(b.data()) &&
        p < static_cast<const void*>(b.data() + b.size())) {
      return true;
    }
  }
  return false;
}

}  // namespace

class TestWeights : public QObject {
  Q_OBJECT

 private slots:
  void bf16_matrices_point_into_the_mapping() {
    QTemporaryDir dir;
    const ModelConfig c = tiny_config();
    auto ckpt = write_checkpoint(dir, c, all("BF16"), true);
    const ModelWeights w = resa::load_weights(ckpt, c);

    QCOMPARE(int(w.layers.size()), 2);
    const resa::LayerWeights& l1 = w.layers[1];
    QVERIFY(points_into(l1.wq, ckpt->get("model.layers.1.self_attn.q_proj.weight", {8, 8})));
    QVERIFY(points_into(w.embed, ckpt->get("model.embed_tokens.weight", {16, 8})));
    QVERIFY(points_into(w.lm_head, ckpt->get("lm_head.weight", {16, 8})));
    QVERIFY(l1.wq.dtype == DType::kBF16);
    QCOMPARE(l1.wk.rows, int64_t(4));
    QCOMPARE(l1.wk.cols, int64_t(8));
    QCOMPARE(l1.wo.rows, int64_t(8));
    QCOMPARE(l1.w_down.rows, int64_t(8));
    QCOMPARE(l1.w_down.cols, int64_t(12));
    QCOMPARE(l1.w_gate.rows, int64_t(12));
    QVERIFY(holds_values_of(l1.w_up, "model.layers.1.mlp.up_proj.weight"));
    QVERIFY(w.owned_bf16.empty());
    QCOMPARE(int(w.owned_f32.size()), 2 * 2 + 1);  // the norms only
    QVERIFY(l1.bq.empty() && l1.bk.empty() && l1.bv.empty());
    QVERIFY(w.checkpoint == ckpt);
  }

  void f32_matrices_point_into_the_mapping() {
    QTemporaryDir dir;
    const ModelConfig c = tiny_config();
    auto ckpt = write_checkpoint(dir, c, all("F32"), true);
    const ModelWeights w = resa::load_weights(ckpt, c);
    QVERIFY(w.layers[0].wv.dtype == DType::kF32);
    QVERIFY(
        points_into(w.layers[0].wv, ckpt->get("model.layers.0.self_attn.v_proj.weight", {4, 8})));
    QVERIFY(holds_values_of(w.layers[0].wv, "model.layers.0.self_attn.v_proj.weight"));
    QCOMPARE(int(w.owned_f32.size()), 5);
  }

  void f16_matrices_are_converted_to_f32_once() {
    QTemporaryDir dir;
    const ModelConfig c = tiny_config();
    auto ckpt = write_checkpoint(dir, c, all("F16"), true);
    const ModelWeights w = resa::load_weights(ckpt, c);
    const WeightView& wo = w.layers[1].wo;
    QVERIFY(wo.dtype == DType::kF32);
    QCOMPARE(wo.rows, int64_t(8));
    QVERIFY(inside(wo.data, w.owned_f32));
    QVERIFY(holds_values_of(wo, "model.layers.1.self_attn.o_proj.weight"));
    QVERIFY(holds_values_of(w.embed, "model.embed_tokens.weight"));
    QVERIFY(w.embed.dtype == DType::kF32);
    // 2 layers x 7 matrices + embed + lm_head converted, plus 5 norms.
    QCOMPARE(int(w.owned_f32.size()), 2 * 7 + 2 + 5);
  }

  void misaligned_matrices_are_copied_to_aligned_buffers() {
    QTemporaryDir dir;
    const ModelConfig c = tiny_config();
    std::vector<Written> tensors;
    for (const auto& [name, shape] : hf_shapes(c, true)) {
      tensors.push_back({name, name.find("mlp") != std::string::npos ? "F32" : "BF16", shape});
    }
    const fs::path root = dir.path().toStdString();
    write_safetensors(root / "model.safetensors", tensors, 1);
    auto ckpt = std::make_shared<const resa::Checkpoint>(root);
    const auto& q = ckpt->get("model.layers.0.self_attn.q_proj.weight", {8, 8});
    QVERIFY(reinterpret_cast<uintptr_t>(q.data) % 2 == 1);
    const ModelWeights w = resa::load_weights(ckpt, c);
    QVERIFY(w.layers[0].wq.dtype == DType::kBF16);
    QVERIFY(reinterpret_cast<uintptr_t>(w.layers[0].wq.data) % 2 == 0);
    QVERIFY(holds_values_of(w.layers[0].wq, "model.layers.0.self_attn.q_proj.weight"));
    QVERIFY(w.layers[0].w_up.dtype == DType::kF32);
    QVERIFY(reinterpret_cast<uintptr_t>(w.layers[0].w_up.data) % 4 == 0);
    QVERIFY(holds_values_of(w.layers[0].w_up, "model.layers.0.mlp.up_proj.weight"));
    QCOMPARE(int(w.owned_bf16.size()), 2 * 4 + 2);  // q, k, v, o per layer, embed, lm_head
  }

  void mixed_dtypes_keep_each_views_dtype() {
    QTemporaryDir dir;
    const ModelConfig c = tiny_config();
    auto ckpt = write_checkpoint(
        dir, c,
        [](const std::string& name) -> std::string {
          if (name.find("q_proj") != std::string::npos) return "F32";
          if (name.find("mlp") != std::string::npos) return "F16";
          return "BF16";
        },
        true);
    const ModelWeights w = resa::load_weights(ckpt, c);
    QVERIFY(w.layers[0].wq.dtype == DType::kF32);
    QVERIFY(w.layers[0].wk.dtype == DType::kBF16);
    QVERIFY(w.layers[0].w_up.dtype == DType::kF32);  // converted from F16
    QVERIFY(w.embed.dtype == DType::kBF16);
    QVERIFY(holds_values_of(w.layers[0].wq, "model.layers.0.self_attn.q_proj.weight"));
    QVERIFY(holds_values_of(w.layers[0].wk, "model.layers.0.self_attn.k_proj.weight"));
    QVERIFY(holds_values_of(w.layers[0].w_up, "model.layers.0.mlp.up_proj.weight"));
  }

  void norms_are_f32_whatever_the_file_dtype_data() {
    QTest::addColumn<QString>("dtype");
    QTest::newRow("BF16") << "BF16";
    QTest::newRow("F16") << "F16";
    QTest::newRow("F32") << "F32";
  }
  void norms_are_f32_whatever_the_file_dtype() {
    QFETCH(QString, dtype);
    QTemporaryDir dir;
    const ModelConfig c = tiny_config();
    auto ckpt = write_checkpoint(dir, c, all(dtype.toStdString()), true);
    const ModelWeights w = resa::load_weights(ckpt, c);
    for (const WeightView* v : {&w.layers[0].attn_norm, &w.layers[1].mlp_norm, &w.final_norm}) {
      QVERIFY(v->dtype == DType::kF32);
      QCOMPARE(v->rows, int64_t(1));
      QCOMPARE(v->cols, int64_t(8));
      QVERIFY(inside(v->data, w.owned_f32));
    }
    QVERIFY(holds_values_of(w.layers[0].attn_norm, "model.layers.0.input_layernorm.weight"));
    QVERIFY(
        holds_values_of(w.layers[1].mlp_norm, "model.layers.1.post_attention_layernorm.weight"));
    QVERIFY(holds_values_of(w.final_norm, "model.norm.weight"));
  }

  void attention_bias_loads_qkv_biases_as_f32() {
    QTemporaryDir dir;
    ModelConfig c = tiny_config();
    c.attention_bias = true;
    auto ckpt = write_checkpoint(dir, c, all("BF16"), true);
    const ModelWeights w = resa::load_weights(ckpt, c);
    const resa::LayerWeights& l = w.layers[1];
    QVERIFY(l.bq.dtype == DType::kF32 && l.bk.dtype == DType::kF32 && l.bv.dtype == DType::kF32);
    QCOMPARE(l.bq.cols, int64_t(8));
    QCOMPARE(l.bk.cols, int64_t(4));
    QCOMPARE(l.bv.rows, int64_t(1));
    QVERIFY(holds_values_of(l.bq, "model.layers.1.self_attn.q_proj.bias"));
    QVERIFY(holds_values_of(l.bv, "model.layers.1.self_attn.v_proj.bias"));
  }

  void attention_bias_missing_names_tensor() {
    QTemporaryDir dir;
    ModelConfig c = tiny_config();
    auto ckpt = write_checkpoint(dir, c, all("BF16"), true);  // written without biases
    c.attention_bias = true;
    QVERIFY_RESA_ERROR(resa::load_weights(ckpt, c), ErrorKind::kCorruptFile,
                       "tensor 'model.layers.0.self_attn.q_proj.bias' not found in");
  }

  void tied_embeddings_reuse_embed_and_ignore_lm_head() {
    QTemporaryDir dir;
    ModelConfig c = tiny_config();
    c.tie_word_embeddings = true;
    // An lm_head of a wrong shape proves it is not even looked at.
    auto ckpt = write_checkpoint(dir, c, all("BF16"), true, [](std::vector<Written>& t) {
      for (Written& x : t) {
        if (x.name == "lm_head.weight") x.shape = {3, 3};
      }
    });
    const ModelWeights w = resa::load_weights(ckpt, c);
    QCOMPARE(w.lm_head.data, w.embed.data);
    QCOMPARE(w.lm_head.rows, int64_t(16));
    QVERIFY(w.lm_head.dtype == DType::kBF16);
  }

  void tied_embeddings_without_lm_head_load() {
    QTemporaryDir dir;
    ModelConfig c = tiny_config();
    c.tie_word_embeddings = true;
    auto ckpt = write_checkpoint(dir, c, all("F16"), false);
    const ModelWeights w = resa::load_weights(ckpt, c);
    QCOMPARE(w.lm_head.data, w.embed.data);
    QVERIFY(holds_values_of(w.lm_head, "model.embed_tokens.weight"));
  }

  void untied_without_lm_head_says_so() {
    QTemporaryDir dir;
    const ModelConfig c = tiny_config();
    auto ckpt = write_checkpoint(dir, c, all("BF16"), false);
    QVERIFY_RESA_ERROR(resa::load_weights(ckpt, c), ErrorKind::kCorruptFile,
                       "tensor 'lm_head.weight' not found in " + ckpt->source().string(),
                       "tie_word_embeddings false", "\"tie_word_embeddings\": true");
  }

  void missing_layer_tensor_names_tensor_and_file() {
    QTemporaryDir dir;
    const ModelConfig c = tiny_config();
    auto ckpt = write_checkpoint(dir, c, all("BF16"), true, [](std::vector<Written>& t) {
      std::erase_if(t,
                    [](const Written& x) { return x.name == "model.layers.1.mlp.up_proj.weight"; });
    });
    QVERIFY_RESA_ERROR(
        resa::load_weights(ckpt, c), ErrorKind::kCorruptFile,
        "tensor 'model.layers.1.mlp.up_proj.weight' not found in " + ckpt->source().string());
  }

  void wrong_shape_names_tensor_expected_and_actual() {
    QTemporaryDir dir;
    const ModelConfig c = tiny_config();
    auto ckpt = write_checkpoint(dir, c, all("BF16"), true, [](std::vector<Written>& t) {
      for (Written& x : t) {
        if (x.name == "model.layers.0.self_attn.k_proj.weight") x.shape = {8, 4};
      }
    });
    QVERIFY_RESA_ERROR(resa::load_weights(ckpt, c), ErrorKind::kShapeMismatch,
                       "tensor 'model.layers.0.self_attn.k_proj.weight' in " +
                           ckpt->source().string() + " has shape [8, 4], expected [4, 8]");
  }

  void config_of_another_model_is_a_shape_mismatch() {
    QTemporaryDir dir;
    ModelConfig c = tiny_config();
    auto ckpt = write_checkpoint(dir, c, all("BF16"), true);
    c.intermediate_size = 16;
    QVERIFY_RESA_ERROR(resa::load_weights(ckpt, c), ErrorKind::kShapeMismatch,
                       "mlp.gate_proj.weight", "has shape [12, 8], expected [16, 8]");
  }

  void null_checkpoint_is_invalid_argument() {
    QVERIFY_RESA_ERROR(resa::load_weights(nullptr, tiny_config()), ErrorKind::kInvalidArgument,
                       "no checkpoint");
  }

  void loads_from_sharded_checkpoint() {
    QTemporaryDir dir;
    const ModelConfig c = tiny_config();
    const fs::path root = dir.path().toStdString();
    std::vector<Written> first, second;
    std::string weight_map;
    for (const auto& [name, shape] : hf_shapes(c, true)) {
      const bool in_second =
          name.find("layers.1.") != std::string::npos || name == "lm_head.weight";
      (in_second ? second : first).push_back({name, "BF16", shape});
      weight_map += std::string(weight_map.empty() ? "" : ",") + "\"" + name + "\": \"" +
                    (in_second ? "model-2.safetensors" : "model-1.safetensors") + "\"";
    }
    write_safetensors(root / "model-1.safetensors", first);
    write_safetensors(root / "model-2.safetensors", second);
    resa::test::write_text(root / "model.safetensors.index.json",
                           "{\"weight_map\": {" + weight_map + "}}");
    auto ckpt = std::make_shared<const resa::Checkpoint>(root);
    const ModelWeights w = resa::load_weights(ckpt, c);
    QVERIFY(holds_values_of(w.layers[0].wq, "model.layers.0.self_attn.q_proj.weight"));
    QVERIFY(holds_values_of(w.layers[1].wq, "model.layers.1.self_attn.q_proj.weight"));
    QVERIFY(holds_values_of(w.lm_head, "lm_head.weight"));
  }

  void views_outlive_the_callers_checkpoint_pointer() {
    QTemporaryDir dir;
    const ModelConfig c = tiny_config();
    auto ckpt = write_checkpoint(dir, c, all("BF16"), true);
    const ModelWeights w = resa::load_weights(ckpt, c);
    ckpt.reset();  // the weights hold the mapping alive
    QVERIFY(holds_values_of(w.layers[1].w_down, "model.layers.1.mlp.down_proj.weight"));
  }

  void copy_points_into_its_own_buffers() {
    QTemporaryDir dir;
    const ModelConfig c = tiny_config();
    auto ckpt = write_checkpoint(
        dir, c,
        [](const std::string& name) -> std::string {
          return name.find("mlp") != std::string::npos ? "F16" : "BF16";
        },
        true);
    std::optional<ModelWeights> original = resa::load_weights(ckpt, c);
    ckpt.reset();
    ModelWeights copy = *original;
    QVERIFY(copy.final_norm.data != original->final_norm.data);
    QVERIFY(copy.layers[0].w_up.data != original->layers[0].w_up.data);  // converted: own copy
    QCOMPARE(copy.layers[0].wq.data, original->layers[0].wq.data);       // mapped: shared
    original.reset();
    QVERIFY(inside(copy.final_norm.data, copy.owned_f32));
    QVERIFY(holds_values_of(copy.final_norm, "model.norm.weight"));
    QVERIFY(holds_values_of(copy.layers[1].w_up, "model.layers.1.mlp.up_proj.weight"));
    QVERIFY(holds_values_of(copy.layers[1].wq, "model.layers.1.self_attn.q_proj.weight"));

    ModelWeights assigned;
    assigned = copy;
    QVERIFY(assigned.layers[1].attn_norm.data != copy.layers[1].attn_norm.data);
    QVERIFY(holds_values_of(assigned.layers[1].attn_norm, "model.layers.1.input_layernorm.weight"));
  }

  // --- random weights --------------------------------------------------------------------

  void random_weights_have_config_shapes_and_unit_norms() {
    ModelConfig c = tiny_config();
    c.attention_bias = true;
    const ModelWeights w = resa::random_weights(c, 1);
    QVERIFY(w.checkpoint == nullptr);
    QCOMPARE(int(w.layers.size()), 2);
    QVERIFY(w.embed.dtype == DType::kBF16);
    QCOMPARE(w.embed.rows, int64_t(16));
    QCOMPARE(w.embed.cols, int64_t(8));
    const resa::LayerWeights& l = w.layers[1];
    for (const WeightView* v : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      QVERIFY(v->dtype == DType::kBF16 && !v->empty());
    }
    QCOMPARE(l.wk.rows, int64_t(4));
    QCOMPARE(l.wo.cols, int64_t(8));
    QCOMPARE(l.w_down.cols, int64_t(12));
    QVERIFY(l.bq.dtype == DType::kF32 && l.bq.cols == 8 && l.bk.cols == 4 && l.bv.cols == 4);
    for (const WeightView* v : {&l.attn_norm, &l.mlp_norm, &w.final_norm}) {
      QVERIFY(v->dtype == DType::kF32);
      QCOMPARE(v->cols, int64_t(8));
      for (int64_t i = 0; i < 8; ++i) QCOMPARE(element(*v, i), 1.0f);
    }
    QVERIFY(w.lm_head.data != w.embed.data);  // untied: its own matrix
    QCOMPARE(w.lm_head.rows, int64_t(16));
  }

  void random_weights_tied_share_the_embedding() {
    ModelConfig c = tiny_config();
    c.tie_word_embeddings = true;
    const ModelWeights w = resa::random_weights(c, 1);
    QCOMPARE(w.lm_head.data, w.embed.data);
  }

  void random_weights_are_normal_with_std_0_02() {
    ModelConfig c = tiny_config();
    c.hidden_size = 256;
    c.intermediate_size = 1024;
    c.head_dim = 128;
    c.num_layers = 1;
    const ModelWeights w = resa::random_weights(c, 7);
    const WeightView& v = w.layers[0].w_up;  // 262144 values
    double sum = 0, sum_sq = 0, max_abs = 0;
    const int64_t n = v.rows * v.cols;
    for (int64_t i = 0; i < n; ++i) {
      const double x = element(v, i);
      sum += x;
      sum_sq += x * x;
      max_abs = std::max(max_abs, std::abs(x));
    }
    const double mean = sum / double(n);
    const double std = std::sqrt(sum_sq / double(n) - mean * mean);
    QVERIFY2(std::abs(mean) < 2e-4, qPrintable(QString::number(mean)));
    QVERIFY2(std::abs(std - 0.02) < 0.0004, qPrintable(QString::number(std)));
    QVERIFY2(max_abs > 0.05 && max_abs < 0.075, qPrintable(QString::number(max_abs)));
  }

  void random_weights_are_deterministic_per_seed() {
    const ModelConfig c = tiny_config();
    const ModelWeights a = resa::random_weights(c, 42);
    const ModelWeights b = resa::random_weights(c, 42);
    const ModelWeights other = resa::random_weights(c, 43);
    QCOMPARE(a.owned_bf16, b.owned_bf16);
    QVERIFY(a.owned_bf16 != other.owned_bf16);
    // Different tensors of one model are not copies of each other.
    QVERIFY(std::memcmp(a.layers[0].wk.data, a.layers[0].wv.data, 4 * 8 * 2) != 0);
    QVERIFY(std::memcmp(a.layers[0].wq.data, a.layers[1].wq.data, 8 * 8 * 2) != 0);
  }

  void random_weights_do_not_depend_on_thread_count() {
    ModelConfig c = tiny_config();
    c.hidden_size = 128;
    c.intermediate_size = 384;
    c.head_dim = 64;
    c.num_layers = 3;
    c.attention_bias = true;
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const ModelWeights one = resa::random_weights(c, 5);
    omp_set_num_threads(3);
    const ModelWeights three = resa::random_weights(c, 5);
    omp_set_num_threads(threads);
    QCOMPARE(one.owned_bf16, three.owned_bf16);
    QCOMPARE(one.owned_f32, three.owned_f32);
    QVERIFY(std::memcmp(one.layers[2].w_down.data, three.layers[2].w_down.data, 128 * 384 * 2) ==
            0);
  }

  void random_weights_out_of_memory_is_an_error() {
    ModelConfig c = tiny_config();
    c.hidden_size = c.intermediate_size = c.vocab_size = 1 << 20;  // every matrix 2 TiB
    c.head_dim = 1 << 19;
    QVERIFY_RESA_ERROR(resa::random_weights(c, 1), ErrorKind::kOutOfMemory,
                       "out of memory allocating", "random weights");
  }

  void random_weights_reject_an_empty_config() {
    ModelConfig c = tiny_config();
    c.num_kv_heads = 0;
    QVERIFY_RESA_ERROR(resa::random_weights(c, 1), ErrorKind::kInvalidArgument, "num_kv_heads 0");
  }
};

QTEST_APPLESS_MAIN(TestWeights)
#include "test_weights.moc"
