// resa-eval's four measurements, per decoding mode, on the engine's public API (Qt-free):
//   perplexity of a long document fed token by token as decode steps (sparse errors accumulate
//   as in generation), pass-key retrieval over a grid of context lengths and depths, agreement
//   of greedy generations with dense, and the math protocol of shared/data/math/README.md.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "app/eval/math_sets.h"
#include "engine/model.h"
#include "engine/resa.h"

namespace resa::eval {

using Progress = std::function<void(const std::string&)>;

struct EvalSetup {
  std::vector<DecodeMode> modes;  // in the order reported
  ResaParams resa;                // block size, budget and rectification of sparse / resa
};

// ---- (a) perplexity through the decoding path -------------------------------------------------
struct PerplexityPoint {
  int length = 0;         // tokens of the document scored: positions 1 .. length-1
  double ppl = 0;         // exp(mean NLL) over positions 1 .. length-1
  double window_ppl = 0;  // over the positions since the previous length only
  double top1_agree = 0;  // share of positions whose argmax equals dense's (1 for dense)
};
struct PerplexityRun {
  DecodeMode mode = DecodeMode::kDense;
  std::vector<PerplexityPoint> points;
  std::vector<float> logprob;  // log p(token at position i) for i >= 1 (index i-1)
  int rectifications = 0;
  double kv_read_fraction = 1;  // K/V rows read by the decode steps / dense
  double seconds = 0;
};
// Every token of `doc` (its first max(lengths) tokens) is fed as one decode step in each mode;
// resa mode rectifies every f steps exactly as Conversation::generate does.
std::vector<PerplexityRun> run_perplexity(Model& model, const std::vector<int>& doc,
                                          const std::vector<int>& lengths, const EvalSetup& setup,
                                          const Progress& progress);

// ---- (b) pass-key retrieval -------------------------------------------------------------------
struct RetrievalTrial {
  int target_length = 0;
  int prompt_tokens = 0;  // what the prompt really took
  double depth = 0;       // where the key sits, 0 = start of the filler, 1 = its end
  std::string key;
  std::map<DecodeMode, std::string> answers;  // generated text per mode
  std::map<DecodeMode, bool> correct;
};
struct RetrievalOptions {
  std::vector<int> lengths;
  std::vector<double> depths;
  int trials = 1;  // keys per (length, depth)
  int max_new_tokens = 12;
  uint64_t seed = 1;
  std::string filler;  // "" = the classic grass / sky / sun filler
};
// The prompt: an instruction, filler with "The pass key is NNNNN. Remember it. NNNNN is the pass
// key." at `depth`, then "What is the pass key? The pass key is"; greedy; correct when the first
// number in the answer is the key. The prompt is prefilled once (dense, as in every mode) and
// each mode decodes from the same cache.
std::vector<RetrievalTrial> run_retrieval(Model& model, const RetrievalOptions& opt,
                                          const EvalSetup& setup, const Progress& progress);
// The prompt text of one trial (exposed for the demo model's training recipe and tests).
std::string passkey_prompt(const std::string& key, int filler_before, int filler_after,
                           const std::string& filler);

// ---- (c) agreement with dense -----------------------------------------------------------------
struct AgreementRun {
  int prompt_tokens = 0;
  DecodeMode mode = DecodeMode::kDense;
  int generated = 0;
  double identical_share = 1;  // positions where the mode's greedy token equals dense's
  int first_divergence = -1;   // first index that differs, -1 when none
  std::vector<int> tokens;
};
std::vector<AgreementRun> run_agreement(Model& model, const std::vector<int>& doc,
                                        const std::vector<int>& prompt_lengths, int new_tokens,
                                        const EvalSetup& setup, const Progress& progress);

// ---- (d) math ----------------------------------------------------------------------------------
struct MathOptions {
  std::vector<std::string> sets;
  int limit = 0;    // problems per set, 0 = all
  int samples = 1;  // samples per problem
  int max_new_tokens = 16384;
  float temperature = 0.6f;  // the protocol's sampling
  float top_p = 0.9f;
  uint64_t seed = 0;
};
struct MathSample {
  std::string set;
  int problem = 0;
  int sample = 0;
  DecodeMode mode = DecodeMode::kDense;
  std::string boxed;  // the last \boxed{} ("" when none)
  bool correct = false;
  int generated_tokens = 0;
};
std::vector<MathSample> run_math(Model& model, const std::vector<MathProblem>& problems,
                                 const MathOptions& opt, const EvalSetup& setup,
                                 const Progress& progress);

// A greedy continuation's first run of digits ("" when none).
std::string first_number(const std::string& text);

}  // namespace resa::eval
