#include "app/eval/tasks.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>

#include "app/eval/grader.h"
#include "engine/conversation.h"
#include "engine/error.h"
#include "engine/sampler.h"

namespace resa::eval {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string mode_str(DecodeMode m) { return std::string(mode_name(m)); }

// The engine calls that bypass Conversation, kept here so a change of Model::forward touches
// one place. A decode step of one token at `pos` (sparse when `sparse` is given), and a dense
// pass over [pos0, pos0 + n) that rewrites their K/V (a ReSA rectification).
void decode_step(Model& model, const int* token, int pos, KvCache& kv, const ResaParams* sparse,
                 float* logits, ForwardStats* stats) {
  model.forward(token, 1, pos, kv, sparse, logits, stats);
}
void dense_pass(Model& model, const int* tokens, int n, int pos0, KvCache& kv) {
  model.forward(tokens, n, pos0, kv, nullptr, nullptr, nullptr);
}

// Dense first: the other modes are compared with it.
std::vector<DecodeMode> dense_first(const std::vector<DecodeMode>& modes) {
  std::vector<DecodeMode> order{DecodeMode::kDense};
  for (DecodeMode m : modes)
    if (m != DecodeMode::kDense) order.push_back(m);
  return order;
}

bool wanted(const std::vector<DecodeMode>& modes, DecodeMode m) {
  return std::find(modes.begin(), modes.end(), m) != modes.end();
}

GenerateOptions greedy_options(DecodeMode mode, const EvalSetup& setup, int max_new_tokens) {
  GenerateOptions go;
  go.mode = mode;
  go.resa = setup.resa;
  go.max_new_tokens = max_new_tokens;
  go.collect_block_hits = false;
  go.prefill_chunk = 512;
  return go;
}

std::vector<int> with_bos(const Model& model, std::vector<int> ids) {
  if (model.tokenizer().bos_id() >= 0) ids.insert(ids.begin(), model.tokenizer().bos_id());
  return ids;
}

const char kClassicFiller[] =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";
const char kPasskeyIntro[] =
    "There is an important piece of information hidden inside a lot of irrelevant text. Find it "
    "and memorize it. I will quiz you about the important information there.\n";

std::string repeat(const std::string& s, int n) {
  std::string out;
  out.reserve(s.size() * std::max(0, n));
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

}  // namespace

std::string first_number(const std::string& text) {
  size_t b = 0;
  while (b < text.size() && !std::isdigit(static_cast<unsigned char>(text[b]))) ++b;
  size_t e = b;
  while (e < text.size() && std::isdigit(static_cast<unsigned char>(text[e]))) ++e;
  return text.substr(b, e - b);
}

std::vector<PerplexityRun> run_perplexity(Model& model, const std::vector<int>& doc,
                                          const std::vector<int>& lengths, const EvalSetup& setup,
                                          const Progress& progress) {
  int total = 0;
  for (int l : lengths) total = std::max(total, l);
  total = std::min<int>(total, int(doc.size()));
  if (total < 2) throw Error(ErrorKind::kInvalidArgument, "perplexity: the document is too short");
  const int vocab = model.config().vocab_size;
  std::vector<float> logits(vocab);
  std::vector<int> dense_argmax;
  std::vector<PerplexityRun> runs;
  for (DecodeMode mode : dense_first(setup.modes)) {
    const auto t0 = Clock::now();
    PerplexityRun run;
    run.mode = mode;
    run.logprob.resize(total - 1);
    std::vector<int> argmaxes(total - 1);
    std::unique_ptr<KvCache> kv = model.make_kv_cache(setup.resa.block_size, total);
    const ResaParams* sparse = mode == DecodeMode::kDense ? nullptr : &setup.resa;
    const bool rectify = mode == DecodeMode::kResa && setup.resa.rectify_every > 0;
    int rectified_upto = 0;
    int64_t read = 0, dense_read = 0;
    for (int p = 0; p + 1 < total; ++p) {
      ForwardStats fs;
      decode_step(model, &doc[p], p, *kv, sparse, logits.data(), &fs);
      read += fs.kv_tokens_read;
      dense_read += fs.kv_tokens_dense;
      // RESA.md "Rectification": after every f sparse steps, redo those f tokens densely.
      if (rectify && p + 1 - rectified_upto >= setup.resa.rectify_every) {
        dense_pass(model, &doc[rectified_upto], p + 1 - rectified_upto, rectified_upto, *kv);
        rectified_upto = p + 1;
        ++run.rectifications;
      }
      float mx = logits[0];
      int am = 0;
      for (int v = 1; v < vocab; ++v) {
        if (logits[v] > mx) {
          mx = logits[v];
          am = v;
        }
      }
      double sum = 0;
      for (int v = 0; v < vocab; ++v) sum += std::exp(double(logits[v] - mx));
      run.logprob[p] = float(double(logits[doc[p + 1]] - mx) - std::log(sum));
      argmaxes[p] = am;
      if (progress && (p + 2) % 1024 == 0)
        progress("perplexity " + mode_str(mode) + ": " + std::to_string(p + 2) + "/" +
                 std::to_string(total) + " tokens");
    }
    if (mode == DecodeMode::kDense) dense_argmax = argmaxes;
    run.kv_read_fraction = dense_read > 0 ? double(read) / double(dense_read) : 1.0;
    int prev = 1;
    for (int l : lengths) {
      l = std::min(l, total);
      if (l < 2) continue;
      PerplexityPoint pt;
      pt.length = l;
      double nll = 0, window = 0;
      int agree = 0;
      for (int i = 1; i < l; ++i) {
        nll -= run.logprob[i - 1];
        if (i >= prev) window -= run.logprob[i - 1];
        agree += argmaxes[i - 1] == dense_argmax[i - 1] ? 1 : 0;
      }
      pt.ppl = std::exp(nll / (l - 1));
      pt.window_ppl = std::exp(window / std::max(1, l - prev));
      pt.top1_agree = double(agree) / (l - 1);
      prev = l;
      run.points.push_back(pt);
    }
    run.seconds = seconds_since(t0);
    if (progress) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "perplexity %s: %d tokens in %.1f s, ppl %.3f",
                    mode_str(mode).c_str(), total, run.seconds,
                    run.points.empty() ? 0.0 : run.points.back().ppl);
      progress(buf);
    }
    if (wanted(setup.modes, mode)) runs.push_back(std::move(run));
  }
  // Report in the order asked.
  std::vector<PerplexityRun> ordered;
  for (DecodeMode m : setup.modes)
    for (PerplexityRun& r : runs)
      if (r.mode == m) ordered.push_back(std::move(r));
  return ordered;
}

std::string passkey_prompt(const std::string& key, int filler_before, int filler_after,
                           const std::string& filler) {
  const std::string f = filler.empty() ? std::string(kClassicFiller) : filler;
  return std::string(kPasskeyIntro) + repeat(f, filler_before) + "The pass key is " + key +
         ". Remember it. " + key + " is the pass key. " + repeat(f, filler_after) +
         "\nWhat is the pass key? The pass key is";
}

std::vector<RetrievalTrial> run_retrieval(Model& model, const RetrievalOptions& opt,
                                          const EvalSetup& setup, const Progress& progress) {
  const Tokenizer& tok = model.tokenizer();
  const std::string filler = opt.filler.empty() ? std::string(kClassicFiller) : opt.filler;
  const double per_unit = double(tok.encode(repeat(filler, 16)).size()) / 16.0;
  const int overhead = int(tok.encode(passkey_prompt("12345", 0, 0, filler)).size()) + 1;
  std::mt19937_64 rng(opt.seed);
  std::uniform_int_distribution<int> digits(10000, 99999);
  std::vector<RetrievalTrial> trials;
  const int cells = int(opt.lengths.size() * opt.depths.size()) * opt.trials;
  int done = 0;
  for (int length : opt.lengths) {
    const int budget = length - opt.max_new_tokens - 1;
    if (budget < overhead)
      throw Error(ErrorKind::kInvalidArgument,
                  "retrieval length " + std::to_string(length) +
                      " cannot hold the pass-key prompt: it takes " + std::to_string(overhead) +
                      " tokens without filler plus " + std::to_string(opt.max_new_tokens + 1) +
                      " for the answer (give longer --retrieval-lengths)");
    for (double depth : opt.depths) {
      for (int t = 0; t < opt.trials; ++t) {
        RetrievalTrial trial;
        trial.target_length = length;
        trial.depth = depth;
        trial.key = std::to_string(digits(rng));
        int units = std::max(0, int((budget - overhead) / per_unit));
        std::vector<int> ids;
        for (;;) {
          const int before = int(std::lround(units * depth));
          ids = with_bos(model,
                         tok.encode(passkey_prompt(trial.key, before, units - before, filler)));
          if (int(ids.size()) <= budget || units == 0) break;
          units -= std::max(1, int((int(ids.size()) - budget) / per_unit));
          units = std::max(units, 0);
        }
        trial.prompt_tokens = int(ids.size());
        Conversation conv(model, trial.prompt_tokens + opt.max_new_tokens + 2,
                          setup.resa.block_size);
        conv.add_tokens(ids);
        conv.prefill(greedy_options(DecodeMode::kDense, setup, 1), nullptr);
        for (DecodeMode mode : setup.modes) {
          const GenerationResult r =
              conv.generate(greedy_options(mode, setup, opt.max_new_tokens), nullptr);
          trial.answers[mode] = r.text;
          trial.correct[mode] = first_number(r.text) == trial.key;
          conv.truncate(trial.prompt_tokens);
        }
        ++done;
        if (progress) {
          std::string line = "retrieval " + std::to_string(done) + "/" + std::to_string(cells) +
                             ": " + std::to_string(trial.prompt_tokens) + " tokens, depth " +
                             std::to_string(int(std::lround(depth * 100))) + "%, key " + trial.key +
                             ":";
          for (DecodeMode m : setup.modes)
            line.append(" ").append(mode_name(m)).append(trial.correct[m] ? " ok" : " wrong");
          progress(line);
        }
        trials.push_back(std::move(trial));
      }
    }
  }
  return trials;
}

std::vector<AgreementRun> run_agreement(Model& model, const std::vector<int>& doc,
                                        const std::vector<int>& prompt_lengths, int new_tokens,
                                        const EvalSetup& setup, const Progress& progress) {
  std::vector<AgreementRun> runs;
  for (int n : prompt_lengths) {
    n = std::min<int>(n, int(doc.size()));
    Conversation conv(model, n + new_tokens + 2, setup.resa.block_size);
    conv.add_tokens(std::vector<int>(doc.begin(), doc.begin() + n));
    conv.prefill(greedy_options(DecodeMode::kDense, setup, 1), nullptr);
    std::vector<int> dense;
    for (DecodeMode mode : dense_first(setup.modes)) {
      const auto t0 = Clock::now();
      const GenerationResult r = conv.generate(greedy_options(mode, setup, new_tokens), nullptr);
      conv.truncate(n);
      if (mode == DecodeMode::kDense) dense = r.tokens;
      AgreementRun run;
      run.prompt_tokens = n;
      run.mode = mode;
      run.generated = int(r.tokens.size());
      run.tokens = r.tokens;
      const size_t len = std::max(dense.size(), r.tokens.size());
      size_t same = 0;
      for (size_t i = 0; i < len; ++i) {
        const bool eq = i < dense.size() && i < r.tokens.size() && dense[i] == r.tokens[i];
        same += eq ? 1 : 0;
        if (!eq && run.first_divergence < 0) run.first_divergence = int(i);
      }
      run.identical_share = len ? double(same) / double(len) : 1.0;
      if (progress) {
        char buf[200];
        std::snprintf(buf, sizeof buf,
                      "agreement %s: prompt %d, %d tokens in %.1f s, %.1f%% identical, first "
                      "divergence %d",
                      mode_str(mode).c_str(), n, run.generated, seconds_since(t0),
                      100 * run.identical_share, run.first_divergence);
        progress(buf);
      }
      if (wanted(setup.modes, mode)) runs.push_back(std::move(run));
    }
  }
  return runs;
}

std::vector<MathSample> run_math(Model& model, const std::vector<MathProblem>& problems,
                                 const MathOptions& opt, const EvalSetup& setup,
                                 const Progress& progress) {
  std::vector<MathSample> samples;
  const int model_ctx = model.config().max_position_embeddings;
  const ChatFormat format = model.chat_format();
  int done = 0;
  for (const MathProblem& p : problems) {
    // data/math/README.md: the prompt, two newlines, "<think>" and a newline; no system
    // prompt. In a chat format the thinking tag opens the assistant's answer (DeepSeek-R1's
    // template writes it itself).
    std::vector<int> ids;
    const std::string user = math_user_prompt(p.question);
    if (format == ChatFormat::kRaw) {
      ids = with_bos(model, model.tokenizer().encode_with_specials(user + "\n\n<think>\n"));
    } else {
      std::string text = render_user_turn(format, model.chat_tokens(), {}, user, true);
      if (format != ChatFormat::kDeepSeekR1) text += "<think>\n";
      ids = model.tokenizer().encode_with_specials(text);
    }
    const int prompt = int(ids.size());
    const int max_new = std::min(opt.max_new_tokens, model_ctx - prompt - 1);
    if (max_new < 1) {
      if (progress)
        progress("math " + p.set + "#" + std::to_string(p.index) + ": prompt of " +
                 std::to_string(prompt) + " tokens does not fit; skipped");
      continue;
    }
    Conversation conv(model, prompt + max_new + 1, setup.resa.block_size);
    conv.add_tokens(ids);
    conv.prefill(greedy_options(DecodeMode::kDense, setup, 1), nullptr);
    for (int s = 0; s < opt.samples; ++s) {
      for (DecodeMode mode : setup.modes) {
        GenerateOptions go = greedy_options(mode, setup, max_new);
        go.sampling.temperature = opt.temperature;
        go.sampling.top_p = opt.top_p;
        // The same seed in every mode: the modes differ only by their attention.
        go.sampling.seed = opt.seed + uint64_t(s) * 100003u + uint64_t(p.index);
        const GenerationResult r = conv.generate(go, nullptr);
        conv.truncate(prompt);
        MathSample m;
        m.set = p.set;
        m.problem = p.index;
        m.sample = s;
        m.mode = mode;
        m.boxed = last_boxed(r.text).value_or("");
        m.correct = grade_response(r.text, p.gold);
        m.generated_tokens = int(r.tokens.size());
        samples.push_back(m);
      }
    }
    ++done;
    if (progress) {
      std::string line = "math " + p.set + "#" + std::to_string(p.index) + " (" +
                         std::to_string(done) + "/" + std::to_string(problems.size()) + ")";
      for (size_t i = samples.size() - setup.modes.size() * opt.samples; i < samples.size(); ++i)
        line.append(" ")
            .append(mode_name(samples[i].mode))
            .append(samples[i].correct ? " ok" : " wrong");
      progress(line);
    }
  }
  return samples;
}

}  // namespace resa::eval
