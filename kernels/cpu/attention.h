// Attention over a paged KV cache: dense causal (prefill chunks, rectification, dense decode) and
// block-sparse (ReSA decode) share one kernel; sparse reads only the listed blocks.
#pragma once

#include <cstddef>
#include <cstdint>

namespace resa::cpu {

// One layer's KV cache as the kernels see it. Each block (page) of this layer holds, in floats:
//   K [kv_heads][block_size][head_dim], V [kv_heads][block_size][head_dim],
//   kmin [kv_heads][head_dim], kmax [kv_heads][head_dim]   (block summaries, RESA.md step 2)
struct KvLayerView {
  float* const* blocks = nullptr;  // [num_blocks] page base pointers of this layer
  int num_blocks = 0;
  int block_size = 0;
  int head_dim = 0;
  int kv_heads = 0;

  size_t kv_floats() const { return size_t(kv_heads) * block_size * head_dim; }
  float* k(int b, int h) const { return blocks[b] + size_t(h) * block_size * head_dim; }
  float* v(int b, int h) const {
    return blocks[b] + kv_floats() + size_t(h) * block_size * head_dim;
  }
  float* kmin(int b, int h) const { return blocks[b] + 2 * kv_floats() + size_t(h) * head_dim; }
  float* kmax(int b, int h) const {
    return blocks[b] + 2 * kv_floats() + size_t(kv_heads + h) * head_dim;
  }
  static size_t page_floats(int kv_heads, int block_size, int head_dim) {
    return size_t(kv_heads) * head_dim * (2 * size_t(block_size) + 2);
  }
};

struct AttentionArgs {
  const float* q = nullptr;  // [nq][n_heads][head_dim], post-RoPE
  float* out = nullptr;      // [nq][n_heads][head_dim]
  int nq = 0;                // query tokens, at positions pos0 .. pos0 + nq - 1
  int pos0 = 0;
  int n_heads = 0;  // query heads; n_heads / kv.kv_heads share one KV head (GQA)
  KvLayerView kv;
  // Sparse: per KV head, the blocks to read (ascending). Null: every block up to the query.
  const int* const* selected = nullptr;  // [kv_heads] -> [n_selected[h]]
  const int* n_selected = nullptr;       // [kv_heads]
  float scale = 1.0f;                    // 1 / sqrt(head_dim)
};

// Exact softmax attention of each query over the keys at positions <= its own, restricted to
// the selected blocks when given. Each K/V element is read once per KV head for all the query
// heads of its group.
void attention(const AttentionArgs& a);

}  // namespace resa::cpu
