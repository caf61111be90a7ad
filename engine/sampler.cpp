#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <unordered_set>

#include "engine/error.h"

namespace resa {

void validate(const SamplingParams& p) {
  auto bad = [](const std::string& what) { throw Error(ErrorKind::kInvalidArgument, what); };
  if (!(p.temperature >= 0.0f) || p.temperature > 100.0f)
    bad("temperature must be between 0 (greedy) and 100, got " + std::to_string(p.temperature));
  if (p.top_k < 0) bad("top-k must be 0 (off) or positive, got " + std::to_string(p.top_k));
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
    bad("top-p must be in (0, 1], got " + std::to_string(p.top_p));
  if (!(p.min_p >= 0.0f && p.min_p < 1.0f))
    bad("min-p must be in [0, 1), got " + std::to_string(p.min_p));
  if (!(p.repetition_penalty > 0.0f) || p.repetition_penalty > 10.0f)
    bad("repetition penalty must be in (0, 10], got " + std::to_string(p.repetition_penalty));
  if (p.repetition_last_n < 0) bad("repetition window must be >= 0");
}

int argmax(const float* logits, int vocab) {
  int best = 0;
  for (int i = 1; i < vocab; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  validate(params_);
}

int Sampler::sample(float* logits, int vocab, const std::vector<int>& history) {
  if (params_.repetition_penalty != 1.0f && params_.repetition_last_n > 0) {
    const size_t n = std::min(history.size(), size_t(params_.repetition_last_n));
    std::unordered_set<int> seen(history.end() - n, history.end());
    for (int t : seen) {
      if (t < 0 || t >= vocab) continue;
      float& x = logits[t];
      x = x > 0 ? x / params_.repetition_penalty : x * params_.repetition_penalty;
    }
  }
  if (params_.temperature <= 0.0f) return argmax(logits, vocab);

  // Candidates sorted by logit; top-k first since it bounds the rest.
  order_.resize(vocab);
  std::iota(order_.begin(), order_.end(), 0);
  int n = vocab;
  auto by_logit = [&](int a, int b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  if (params_.top_k > 0 && params_.top_k < vocab) {
    n = params_.top_k;
    std::partial_sort(order_.begin(), order_.begin() + n, order_.end(), by_logit);
  } else {
    std::sort(order_.begin(), order_.end(), by_logit);
  }
  probs_.resize(n);
  const float mx = logits[order_[0]];
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    probs_[i] = std::exp((logits[order_[i]] - mx) / params_.temperature);
    sum += probs_[i];
  }
  for (int i = 0; i < n; ++i) probs_[i] = float(probs_[i] / sum);
  if (params_.min_p > 0.0f) {
    const float floor = params_.min_p * probs_[0];
    int keep = 1;
    while (keep < n && probs_[keep] >= floor) ++keep;
    n = keep;
  }
  if (params_.top_p < 1.0f) {
    double cum = 0;
    int keep = 0;
    while (keep < n) {
      cum += probs_[keep++];
      if (cum >= params_.top_p) break;
    }
    n = keep;
  }
  double total = 0;
  for (int i = 0; i < n; ++i) total += probs_[i];
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_), cum = 0;
  for (int i = 0; i < n; ++i) {
    cum += probs_[i];
    if (r < cum) return order_[i];
  }
  return order_[n - 1];
}

}  // namespace resa
