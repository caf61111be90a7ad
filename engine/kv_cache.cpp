#include "engine/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "engine/error.h"
#include "kernels/cpu/block_select.h"

namespace resa {

static std::string gib(double bytes) {
  std::ostringstream s;
  s.precision(2);
  s << std::fixed << bytes / double(1ull << 30) << " GiB";
  return s.str();
}

KvCache::KvCache(const ModelConfig& config, int block_size, int capacity_tokens)
    : block_size_(block_size),
      capacity_(capacity_tokens),
      kv_heads_(config.num_kv_heads),
      head_dim_(config.head_dim),
      page_floats_(
          cpu::KvLayerView::page_floats(config.num_kv_heads, block_size, config.head_dim)) {
  if (block_size < 1 || block_size > 1024)
    throw Error(ErrorKind::kInvalidArgument,
                "block size must be between 1 and 1024 tokens, got " + std::to_string(block_size));
  if (capacity_tokens < 1)
    throw Error(ErrorKind::kInvalidArgument, "context capacity must be at least 1 token");
  const size_t blocks = (size_t(capacity_tokens) + block_size - 1) / block_size;
  const double need = double(blocks) * page_floats_ * sizeof(float) * config.num_layers;
  const size_t avail = available_memory_bytes();
  if (avail > 0 && need > 0.85 * double(avail)) {
    throw Error(ErrorKind::kOutOfMemory,
                "a context of " + std::to_string(capacity_tokens) + " tokens needs " + gib(need) +
                    " of KV cache but only " + gib(double(avail)) +
                    " of memory is available; choose a shorter context (--ctx)");
  }
  layer_blocks_.resize(config.num_layers);
}

KvCache::KvCache(const ModelConfig& config, int block_size, int capacity_tokens,
                 std::unique_ptr<KvDeviceStorage> device)
    : block_size_(block_size),
      capacity_(capacity_tokens),
      kv_heads_(config.num_kv_heads),
      head_dim_(config.head_dim),
      page_floats_(0),
      device_(std::move(device)) {
  layer_blocks_.resize(config.num_layers);
  scratch_.resize(4 * size_t(head_dim_));
}

KvCache::~KvCache() = default;

int KvCache::element_bytes() const { return device_ ? device_->element_bytes() : 4; }

float* KvCache::scratch_row() const {
  float* r = scratch_.data() + size_t(scratch_next_) * head_dim_;
  scratch_next_ = (scratch_next_ + 1) % 4;
  return r;
}

void KvCache::fill_random(int tokens, uint64_t seed) {
  if (tokens < 0 || tokens > capacity_)
    throw Error(ErrorKind::kInvalidArgument, "fill_random: more tokens than the capacity");
  if (device_) {
    device_->fill_random(tokens, seed);
    tokens_ = tokens;
    return;
  }
  ensure_blocks((tokens + block_size_ - 1) / block_size_);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd;
  for (int l = 0; l < num_layers(); ++l) {
    const cpu::KvLayerView view = layer(l);
    for (int b = 0; b * block_size_ < tokens; ++b) {
      const int n = std::min(block_size_, tokens - b * block_size_);
      for (int h = 0; h < kv_heads_; ++h)
        for (int i = 0; i < n * head_dim_; ++i)
          view.k(b, h)[i] = nd(rng), view.v(b, h)[i] = nd(rng);
      cpu::block_summary_recompute(view, b, n);
    }
  }
  tokens_ = tokens;
}

void KvCache::ensure_blocks(int blocks) {
  while (int(pages_.size()) < blocks) {
    const size_t floats = page_floats_ * layer_blocks_.size();
    pages_.emplace_back(new float[floats]());
    float* base = pages_.back().get();
    for (size_t l = 0; l < layer_blocks_.size(); ++l)
      layer_blocks_[l].push_back(base + l * page_floats_);
  }
}

void KvCache::write(int layer, int pos0, int n, const float* k, const float* v) {
  if (device_) throw Error(ErrorKind::kInternal, "KvCache::write on a device cache");
  if (pos0 < 0 || pos0 > tokens_ || pos0 + n > capacity_)
    throw Error(ErrorKind::kInternal, "KV write out of range");
  ensure_blocks((pos0 + n + block_size_ - 1) / block_size_);
  const cpu::KvLayerView view = this->layer(layer);
  const size_t row = size_t(kv_heads_) * head_dim_;
  for (int i = 0; i < n; ++i) {
    const int pos = pos0 + i, b = pos / block_size_, t = pos % block_size_;
    for (int h = 0; h < kv_heads_; ++h) {
      std::memcpy(view.k(b, h) + size_t(t) * head_dim_, k + i * row + size_t(h) * head_dim_,
                  head_dim_ * sizeof(float));
      std::memcpy(view.v(b, h) + size_t(t) * head_dim_, v + i * row + size_t(h) * head_dim_,
                  head_dim_ * sizeof(float));
    }
  }
  // Touched blocks only: O(n) per write, also for a rectification (RESA.md, "recomputing only
  // the touched blocks is equivalent").
  const int end = std::max(tokens_, pos0 + n);
  for (int b = pos0 / block_size_; b <= (pos0 + n - 1) / block_size_; ++b) {
    cpu::block_summary_recompute(view, b, std::min(block_size_, end - b * block_size_));
  }
}

void KvCache::set_tokens(int n) { tokens_ = std::max(tokens_, n); }

void KvCache::truncate(int n) {
  if (n < tokens_) {
    tokens_ = std::max(0, n);
    if (tokens_ % block_size_ != 0 && device_) {
      const int b = tokens_ / block_size_;
      device_->recompute_summaries(b, b, tokens_);
    } else if (tokens_ % block_size_ != 0) {
      const int b = tokens_ / block_size_;
      for (int l = 0; l < num_layers(); ++l)
        cpu::block_summary_recompute(layer(l), b, tokens_ - b * block_size_);
    }
  }
}

void KvCache::rebuild_all_summaries() {
  if (device_) {
    if (tokens_ > 0) device_->recompute_summaries(0, num_blocks() - 1, tokens_);
    return;
  }
  for (int l = 0; l < num_layers(); ++l) {
    const cpu::KvLayerView view = layer(l);
    for (int b = 0; b < num_blocks(); ++b)
      cpu::block_summary_recompute(view, b, std::min(block_size_, tokens_ - b * block_size_));
  }
}

cpu::KvLayerView KvCache::layer(int l) const {
  if (device_) throw Error(ErrorKind::kInternal, "KvCache::layer: the cache is in device memory");
  cpu::KvLayerView v;
  v.blocks = layer_blocks_[l].data();
  v.num_blocks = int(layer_blocks_[l].size());
  v.block_size = block_size_;
  v.head_dim = head_dim_;
  v.kv_heads = kv_heads_;
  return v;
}

size_t KvCache::kv_bytes_per_token() const {
  return 2 * size_t(kv_heads_) * head_dim_ * element_bytes() * layer_blocks_.size();
}

size_t KvCache::bytes_allocated() const {
  if (device_) return device_->bytes_allocated();
  return pages_.size() * page_floats_ * layer_blocks_.size() * sizeof(float);
}

size_t KvCache::summary_bytes_per_block() const {
  return 2 * size_t(kv_heads_) * head_dim_ * element_bytes() * layer_blocks_.size();
}

const float* KvCache::key(int l, int pos, int h) const {
  if (device_) {
    float* r = scratch_row();
    device_->read_row(l, pos, h, false, r);
    return r;
  }
  return layer(l).k(pos / block_size_, h) + size_t(pos % block_size_) * head_dim_;
}

const float* KvCache::value(int l, int pos, int h) const {
  if (device_) {
    float* r = scratch_row();
    device_->read_row(l, pos, h, true, r);
    return r;
  }
  return layer(l).v(pos / block_size_, h) + size_t(pos % block_size_) * head_dim_;
}

const float* KvCache::kmin(int l, int b, int h) const {
  if (device_) {
    float* r = scratch_row();
    device_->read_summary(l, b, h, false, r);
    return r;
  }
  return layer(l).kmin(b, h);
}

const float* KvCache::kmax(int l, int b, int h) const {
  if (device_) {
    float* r = scratch_row();
    device_->read_summary(l, b, h, true, r);
    return r;
  }
  return layer(l).kmax(b, h);
}

}  // namespace resa
