// Decoding modes and ReSA hyper-parameters (RESA.md "Hyper-parameters and their defaults").
#pragma once

#include <optional>
#include <string_view>

namespace resa {

enum class DecodeMode { kDense, kSparse, kResa };

std::string_view mode_name(DecodeMode m);  // "dense", "sparse", "resa"
std::optional<DecodeMode> parse_mode(std::string_view name);

struct ResaParams {
  int block_size = 16;     // B: tokens per KV block (a property of the KV cache)
  double ratio = 0.1;      // share of blocks read per step
  int min_blocks = 16;     // lower bound on blocks read
  int local = 1;           // newest blocks always read
  bool sink = true;        // first block always read (our addition)
  int rectify_every = 32;  // f: tokens between rectifications; 0 disables
  // Our improvements, each switchable so the reference schedule can be measured too:
  bool fold_rectification = true;      // each f-th step: one dense pass over the f tokens
  bool rebuild_all_summaries = false;  // reference: rebuild every summary after rectifying
};

// Throws resa::Error(kInvalidArgument) naming the parameter when one is out of range.
void validate(const ResaParams& p);

// RESA.md step 6: selected = max(ceil(num_blocks * ratio), min(num_blocks, min_blocks)),
// raised to the forced blocks (sink + local) and capped at num_blocks.
int resa_budget(int num_blocks, const ResaParams& p);

}  // namespace resa
