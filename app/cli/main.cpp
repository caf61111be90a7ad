// resa-cli: run a model from the terminal in dense, sparse or ReSA mode.
#include <QCommandLineParser>
#include <QCoreApplication>
#include <QFile>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTextStream>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include <unistd.h>

#include "app/lib/cli_args.h"
#include "engine/conversation.h"
#include "engine/error.h"
#include "engine/model.h"
#include "engine/presets.h"

namespace {

std::atomic<bool> g_cancel{false};

void on_sigint(int) {
  if (g_cancel.exchange(true)) std::_Exit(130);  // second Ctrl-C: leave now
}

using resa::app::usage_error;
using resa::app::UsageError;

int to_int(const QCommandLineParser& p, const char* name, int lo, int hi) {
  return resa::app::flag_int(p, name, lo, hi);
}
double to_double(const QCommandLineParser& p, const char* name, double lo, double hi,
                 bool lo_open = false) {
  return resa::app::flag_double(p, name, lo, hi, lo_open);
}

std::string read_document(const QString& path) {
  QFile f(path);
  if (!f.exists()) usage_error("--file " + path.toStdString() + ": no such file");
  if (!f.open(QIODevice::ReadOnly))
    usage_error("--file " + path.toStdString() + ": cannot read it (" +
                f.errorString().toStdString() + ")");
  const QByteArray bytes = f.readAll();
  return bytes.toStdString();
}

// A progress bar for long prefills, redrawn in place on stderr.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled) {}
  void update(int done, int total) {
    if (!enabled_ || total < 512) return;
    const int width = 40, filled = total ? int(int64_t(done) * width / total) : width;
    std::fprintf(stderr, "\rprefill [%s%s] %d/%d tokens", std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(), done, total);
    if (done >= total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  bool enabled_;
};

std::string stats_line(const resa::GenerationStats& s) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "[%s] prompt %d tok (prefilled %d) at %.1f tok/s | generated %d tok at %.2f tok/s "
                "| KV read %.1f%% | rectifications %d | first token %.0f ms",
                std::string(resa::mode_name(s.mode)).c_str(), s.context_tokens, s.prefill_tokens,
                s.prefill_tokens_per_s(), s.generated_tokens, s.decode_tokens_per_s(),
                100.0 * s.kv_read_fraction(), s.rectifications, s.first_token_ms);
  return buf;
}

QJsonObject stats_json(const resa::GenerationResult& r, const resa::Model& m,
                       const resa::GenerateOptions& o) {
  const resa::GenerationStats& s = r.stats;
  QJsonObject j;
  j["text"] = QString::fromStdString(r.text);
  j["mode"] = QString::fromUtf8(resa::mode_name(s.mode).data());
  j["model"] = QString::fromStdString(m.name());
  j["backend"] = QString::fromStdString(const_cast<resa::Model&>(m).backend().name());
  j["prompt_tokens"] = s.context_tokens;
  j["prefill_tokens"] = s.prefill_tokens;
  j["generated_tokens"] = s.generated_tokens;
  j["decode_steps"] = s.decode_steps;
  j["prefill_tokens_per_s"] = s.prefill_tokens_per_s();
  j["decode_tokens_per_s"] = s.decode_tokens_per_s();
  j["prefill_ms"] = s.prefill_ms;
  j["decode_ms"] = s.decode_ms;
  j["first_token_ms"] = s.first_token_ms;
  j["kv_read_fraction"] = s.kv_read_fraction();
  j["kv_bytes_read"] = double(s.kv_bytes_read);
  j["kv_bytes_dense"] = double(s.kv_bytes_dense);
  j["rectifications"] = s.rectifications;
  j["rectify_ms"] = s.rectify_ms;
  j["stop_reason"] = QString::fromUtf8(resa::stop_reason_name(s.stop_reason).data());
  j["block_size"] = o.resa.block_size;
  j["ratio"] = o.resa.ratio;
  j["min_blocks"] = o.resa.min_blocks;
  j["local"] = o.resa.local;
  j["sink"] = o.resa.sink;
  j["rectify_every"] = o.resa.rectify_every;
  j["kv_cache_bytes"] = double(s.kv_cache_bytes);
  return j;
}

int run(QCoreApplication& app) {
  QCommandLineParser p;
  p.setApplicationDescription(
      "Run a Llama-family or Qwen2 model on the GPU or the CPU with dense, sparse or ReSA "
      "(rectified sparse "
      "attention) decoding.");
  p.addHelpOption();
  p.addVersionOption();
  auto opt = [&](const char* name, const char* help, const char* value = nullptr,
                 const char* def = nullptr) { resa::app::add_flag(p, name, help, value, def); };
  opt("model",
      "Hugging Face model folder (config.json, *.safetensors, tokenizer.model); default: the "
      "bundled demo model.",
      "dir");
  opt("random-weights",
      "Synthetic weights of a preset's shapes: tiny, tinyllama-1.1b, "
      "llama-3.1-8b, mistral-7b, r1-distill-qwen-1.5b, r1-distill-qwen-7b.",
      "preset");
  opt("prompt", "The user's message.", "text");
  opt("file", "A document put before the prompt.", "path");
  opt("system", "System prompt (first turn).", "text");
  opt("chat", "Interactive multi-turn chat on stdin (/exit to quit).");
  opt("raw", "Feed the prompt as is, without the chat format.");
  opt("chat-format", "raw, llama2, mistral, chatml, llama3, zephyr (default: from the model).",
      "name");
  opt("mode", "dense, sparse or resa.", "mode", "resa");
  opt("block-size", "ReSA block size B in tokens.", "n", "16");
  opt("ratio", "Share of KV blocks read per sparse step.", "r", "0.1");
  opt("min-blocks", "Least number of blocks read per step.", "n", "16");
  opt("local", "Newest blocks always read.", "n", "1");
  opt("sink", "Always read the first block (1) or not (0).", "0|1", "1");
  opt("rectify-every", "Tokens between rectifications (0: never).", "f", "32");
  opt("fold-rectification", "Fold each rectification into a decode step (1) or not (0).", "0|1",
      "1");
  opt("temperature", "Sampling temperature (0: greedy).", "t", "0");
  opt("top-k", "Keep the k most likely tokens (0: off).", "k", "0");
  opt("top-p", "Nucleus sampling mass (1: off).", "p", "1");
  opt("min-p", "Drop tokens below min-p times the top probability (0: off).", "p", "0");
  opt("repeat-penalty", "Repetition penalty (1: off).", "x", "1");
  opt("repeat-last-n", "Tokens the repetition penalty looks back on.", "n", "64");
  opt("seed", "Random seed for sampling.", "n", "0");
  opt("weights-seed", "Seed of the random weights.", "n", "0");
  opt("max-new-tokens", "Most tokens to generate per answer.", "n", "128");
  opt("ctx", "Context limit in tokens (default: the model's).", "n", "0");
  opt("threads", "CPU threads (0: all cores).", "n", "0");
  opt("device", "Where to run: auto (the GPU when one is usable, else the CPU), cuda or cpu.",
      "name", "auto");
  opt("prefill-chunk", "Tokens per prefill pass.", "n", "256");
  opt("json", "Print one JSON object with the text and statistics instead of streaming.");
  opt("quiet", "No progress bar.");
  p.process(app);

  if (!p.positionalArguments().isEmpty())
    usage_error("unexpected argument '" + p.positionalArguments().first().toStdString() +
                "' (did you mean --prompt?)");
  const bool has_random = p.isSet("random-weights");
  const QString model_dir = resa::app::flag_model_dir(p);  // the demo model without flags
  if (!p.isSet("chat") && !p.isSet("prompt") && !p.isSet("file"))
    usage_error("nothing to do: give --prompt TEXT, --file PATH or --chat");

  resa::GenerateOptions go;
  const auto mode = resa::parse_mode(p.value("mode").toStdString());
  if (!mode)
    usage_error("--mode must be dense, sparse or resa, got '" + p.value("mode").toStdString() +
                "'");
  go.mode = *mode;
  go.resa.block_size = to_int(p, "block-size", 1, 1024);
  go.resa.ratio = to_double(p, "ratio", 0.0, 1.0, true);
  go.resa.min_blocks = to_int(p, "min-blocks", 1, 1 << 24);
  go.resa.local = to_int(p, "local", 1, 1 << 24);
  go.resa.sink = to_int(p, "sink", 0, 1) == 1;
  go.resa.rectify_every = to_int(p, "rectify-every", 0, 1 << 24);
  go.resa.fold_rectification = to_int(p, "fold-rectification", 0, 1) == 1;
  go.sampling.temperature = float(to_double(p, "temperature", 0.0, 100.0));
  go.sampling.top_k = to_int(p, "top-k", 0, 1 << 24);
  go.sampling.top_p = float(to_double(p, "top-p", 0.0, 1.0, true));
  go.sampling.min_p = float(to_double(p, "min-p", 0.0, 0.999));
  go.sampling.repetition_penalty = float(to_double(p, "repeat-penalty", 0.0, 10.0, true));
  go.sampling.repetition_last_n = to_int(p, "repeat-last-n", 0, 1 << 24);
  go.sampling.seed = uint64_t(to_int(p, "seed", 0, 2147483647));
  go.max_new_tokens = to_int(p, "max-new-tokens", 1, 1 << 24);
  go.prefill_chunk = to_int(p, "prefill-chunk", 1, 65536);
  const int ctx = to_int(p, "ctx", 0, 1 << 24);
  resa::LoadOptions lo;
  lo.threads = to_int(p, "threads", 0, 4096);
  const auto device = resa::parse_device(p.value("device").toStdString());
  if (!device)
    usage_error("--device must be auto, cuda or cpu, got '" + p.value("device").toStdString() +
                "'");
  lo.device = *device;
  if (p.isSet("chat-format")) {
    lo.chat_format = resa::parse_chat_format(p.value("chat-format").toStdString());
    if (!lo.chat_format)
      usage_error("--chat-format must be raw, llama2, mistral, chatml, llama3 or zephyr, got '" +
                  p.value("chat-format").toStdString() + "'");
  }
  std::string document;
  if (p.isSet("file")) document = read_document(p.value("file"));

  std::unique_ptr<resa::Model> model;
  if (!has_random) {
    model = resa::Model::load(model_dir.toStdString(), lo);
  } else {
    const std::string preset = p.value("random-weights").toStdString();
    const auto cfg = resa::preset_config(preset);
    if (!cfg) {
      std::string names;
      for (const auto& n : resa::preset_names()) names += (names.empty() ? "" : ", ") + n;
      usage_error("unknown preset '" + preset + "' (presets: " + names + ")");
    }
    model =
        resa::Model::random(*cfg, preset, uint64_t(to_int(p, "weights-seed", 0, 2147483647)), lo);
  }
  if (ctx > 0 && ctx > model->config().max_position_embeddings)
    std::fprintf(stderr,
                 "resa-cli: note: --ctx %d exceeds the model's max_position_embeddings %d\n", ctx,
                 model->config().max_position_embeddings);
  resa::Conversation conv(*model, ctx, go.resa.block_size);

  const bool json = p.isSet("json");
  ProgressBar bar(!p.isSet("quiet"));
  auto sink = [&](const resa::Event& e) {
    if (const auto* t = std::get_if<resa::TokenEvent>(&e)) {
      if (!json && !t->text.empty()) {
        std::fwrite(t->text.data(), 1, t->text.size(), stdout);
        std::fflush(stdout);
      }
    } else if (const auto* pr = std::get_if<resa::PrefillProgressEvent>(&e)) {
      bar.update(pr->done, pr->total);
    }
  };
  auto turn = [&](const std::string& user) -> resa::GenerationResult {
    if (p.isSet("raw")) {
      if (conv.tokens().empty() && model->tokenizer().bos_id() >= 0)
        conv.add_tokens({model->tokenizer().bos_id()});
      conv.add_text(user);
    } else {
      conv.add_user_turn(user, p.value("system").toStdString());
    }
    g_cancel = false;
    resa::GenerationResult r = conv.generate(go, sink, &g_cancel);
    // Keep the stop token's follow-up (ChatML's newline) so the next turn fits the template.
    if (!p.isSet("raw") && r.stats.stop_reason == resa::StopReason::kStopToken)
      conv.add_text(resa::render_after_answer(model->chat_format(), model->chat_tokens()));
    return r;
  };

  std::signal(SIGINT, on_sigint);
  if (!p.isSet("chat")) {
    std::string user = document;
    if (p.isSet("prompt")) user += (user.empty() ? "" : "\n\n") + p.value("prompt").toStdString();
    const resa::GenerationResult r = turn(user);
    if (json) {
      std::cout
          << QJsonDocument(stats_json(r, *model, go)).toJson(QJsonDocument::Compact).toStdString()
          << std::endl;
    } else {
      std::cout << std::endl;
      std::cerr << stats_line(r.stats) << std::endl;
    }
    return 0;
  }
  // Interactive chat: the document (if any) rides with the first message.
  std::string line;
  bool first = true;
  if (isatty(STDIN_FILENO))
    std::cerr << "resa-cli chat: type a message, /exit to quit" << std::endl;
  for (;;) {
    if (isatty(STDIN_FILENO)) std::cerr << "> " << std::flush;
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line.empty()) continue;
    std::string user = line;
    if (first && !document.empty()) user = document + "\n\n" + line;
    first = false;
    const resa::GenerationResult r = turn(user);
    if (json) {
      std::cout
          << QJsonDocument(stats_json(r, *model, go)).toJson(QJsonDocument::Compact).toStdString()
          << std::endl;
    } else {
      std::cout << std::endl;
      std::cerr << stats_line(r.stats) << std::endl;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  QCoreApplication app(argc, argv);
  QCoreApplication::setApplicationName("resa-cli");
  QCoreApplication::setApplicationVersion(RESA_VERSION);
  return resa::app::run_program("resa-cli", [&] { return run(app); });
}
