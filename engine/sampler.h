// Turning logits into the next token: greedy, or temperature with top-k / top-p / min-p, after
// a repetition penalty; seeded, so a run can be repeated exactly.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace resa {

struct SamplingParams {
  float temperature = 0.0f;         // <= 0: greedy (argmax)
  int top_k = 0;                    // 0: off
  float top_p = 1.0f;               // 1: off
  float min_p = 0.0f;               // 0: off; keep tokens with p >= min_p * p_max
  float repetition_penalty = 1.0f;  // 1: off; CTRL-style on the last `repetition_last_n` tokens
  int repetition_last_n = 64;
  uint64_t seed = 0;
};

// Throws resa::Error(kInvalidArgument) naming the field when a value is out of range.
void validate(const SamplingParams& p);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // `logits` [vocab] is modified (penalty, temperature). `history`: tokens seen so far.
  int sample(float* logits, int vocab, const std::vector<int>& history);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<int> order_;
  std::vector<float> probs_;
};

int argmax(const float* logits, int vocab);

}  // namespace resa
