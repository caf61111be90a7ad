#include "engine/resa.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/error.h"

namespace resa {

std::string_view mode_name(DecodeMode m) {
  switch (m) {
    case DecodeMode::kDense:
      return "dense";
    case DecodeMode::kSparse:
      return "sparse";
    case DecodeMode::kResa:
      return "resa";
  }
  return "?";
}

std::optional<DecodeMode> parse_mode(std::string_view name) {
  if (name == "dense") return DecodeMode::kDense;
  if (name == "sparse") return DecodeMode::kSparse;
  if (name == "resa") return DecodeMode::kResa;
  return std::nullopt;
}

void validate(const ResaParams& p) {
  auto bad = [](const std::string& s) { throw Error(ErrorKind::kInvalidArgument, s); };
  if (p.block_size < 1 || p.block_size > 1024)
    bad("block size must be between 1 and 1024 tokens, got " + std::to_string(p.block_size));
  if (!(p.ratio > 0.0 && p.ratio <= 1.0))
    bad("ratio must be in (0, 1], got " + std::to_string(p.ratio));
  if (p.min_blocks < 1) bad("min blocks must be at least 1, got " + std::to_string(p.min_blocks));
  if (p.local < 1)
    bad("local must be at least 1 (the block being filled), got " + std::to_string(p.local));
  if (p.rectify_every < 0)
    bad("rectify-every must be 0 (off) or positive, got " + std::to_string(p.rectify_every));
}

int resa_budget(int num_blocks, const ResaParams& p) {
  // The small epsilon keeps ceil(30 * 0.1) at 3, not 4, despite 0.1's binary rounding.
  const int by_ratio = int(std::ceil(num_blocks * p.ratio - 1e-9));
  int selected = std::max(by_ratio, std::min(num_blocks, p.min_blocks));
  const int forced = std::min(num_blocks, p.local + (p.sink && num_blocks > p.local ? 1 : 0));
  return std::min(num_blocks, std::max(selected, forced));
}

}  // namespace resa
