// Paged KV cache of one conversation: blocks (pages) of B tokens holding every layer's K, V and
// the block's key min/max summaries (RESA.md step 2). Pages are allocated as the context grows,
// up to a capacity checked against free memory when the cache is made.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/model_config.h"
#include "engine/system_memory.h"
#include "kernels/cpu/attention.h"

namespace resa {

// The KV storage of a GPU backend (device memory, its own layout and element type). KvCache
// forwards what it cannot do on the host to it.
class KvDeviceStorage {
 public:
  virtual ~KvDeviceStorage() = default;
  virtual size_t bytes_allocated() const = 0;
  virtual int element_bytes() const = 0;  // of one stored K or V element
  // Recomputes the summaries of blocks [first_block, last_block] of every layer from the keys
  // at positions < tokens.
  virtual void recompute_summaries(int first_block, int last_block, int tokens) = 0;
  // Copies K (value false) or V of one position and KV head to host floats [head_dim].
  virtual void read_row(int layer, int pos, int kv_head, bool value, float* out) const = 0;
  // Copies a block's key min (max false) or max summary to host floats [head_dim].
  virtual void read_summary(int layer, int block, int kv_head, bool max, float* out) const = 0;
  // Fills positions [0, tokens) of every layer with random K/V and exact summaries.
  virtual void fill_random(int tokens, uint64_t seed) = 0;
};

class KvCache {
 public:
  // A host cache (the CPU backend's). Throws resa::Error(kOutOfMemory) when `capacity_tokens`
  // cannot fit in available memory, before allocating anything.
  KvCache(const ModelConfig& config, int block_size, int capacity_tokens);
  // A cache kept by a GPU backend in `device` (Backend::make_kv_cache makes these).
  KvCache(const ModelConfig& config, int block_size, int capacity_tokens,
          std::unique_ptr<KvDeviceStorage> device);
  ~KvCache();

  bool on_device() const { return device_ != nullptr; }
  KvDeviceStorage& device() const { return *device_; }
  // Bytes of one stored K or V element (4 on the host, 2 for bf16 on a GPU).
  int element_bytes() const;
  // Benchmarks: positions [0, tokens) get random K/V (summaries exact), as if prefilled.
  void fill_random(int tokens, uint64_t seed);

  int block_size() const { return block_size_; }
  int capacity() const { return capacity_; }
  int tokens() const { return tokens_; }  // positions 0 .. tokens()-1 hold valid K/V
  int num_blocks() const { return (tokens_ + block_size_ - 1) / block_size_; }
  int num_layers() const { return int(layer_blocks_.size()); }

  // Writes K and V of positions pos0 .. pos0+n-1 of `layer` (k, v: [n][kv_heads][head_dim]) and
  // recomputes the summaries of every block touched, so a rewrite (rectification) leaves them
  // exact. pos0 <= tokens() (no holes).
  void write(int layer, int pos0, int n, const float* k, const float* v);
  // Called once every layer holds positions < n.
  void set_tokens(int n);
  // Forgets positions >= n (regenerate, edit); their pages stay allocated for reuse.
  void truncate(int n);
  // Recomputes every summary of every block (the reference implementation's schedule).
  void rebuild_all_summaries();

  // Host caches only (the CPU kernels' view); throws for a device cache.
  cpu::KvLayerView layer(int l) const;
  // Bytes of K+V of one token over all layers, and of the pages in use.
  size_t kv_bytes_per_token() const;
  size_t bytes_allocated() const;
  size_t summary_bytes_per_block() const;

  // Reads K or V of one position / kv head, for tests: [head_dim]. For a device cache the row
  // is copied to host memory that stays valid for the next three such calls.
  const float* key(int layer, int pos, int kv_head) const;
  const float* value(int layer, int pos, int kv_head) const;
  // A block's key summaries as floats [head_dim] (same validity as key()).
  const float* kmin(int layer, int block, int kv_head) const;
  const float* kmax(int layer, int block, int kv_head) const;

 private:
  void ensure_blocks(int blocks);

  int block_size_;
  int capacity_;
  int kv_heads_;
  int head_dim_;
  int tokens_ = 0;
  size_t page_floats_;                             // one layer's page
  std::vector<std::unique_ptr<float[]>> pages_;    // one allocation per block, all layers
  std::vector<std::vector<float*>> layer_blocks_;  // [layer][block] -> that layer's page
  std::unique_ptr<KvDeviceStorage> device_;
  float* scratch_row() const;
  mutable std::vector<float> scratch_;  // 4 rows of head_dim for device reads
  mutable int scratch_next_ = 0;
};

}  // namespace resa
