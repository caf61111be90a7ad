// resa-bench: decode and prefill speed of the dense, sparse and ReSA modes at given context
// lengths, with the bytes each step must read and the achieved bandwidth next to the measured
// device copy bandwidth; --op times single kernels (STYLE.md 4). Prints a table; --json FILE
// writes every figure with the command, device and commit (STYLE.md 13).
//
// Decode at context N starts from a KV cache filled with random K/V (KvCache::fill_random):
// decode time does not depend on the values, and prefilling 256K tokens would dominate the
// run. Prefill is measured separately at --prefill-tokens.
#include <QCommandLineParser>
#include <QCoreApplication>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "app/lib/cli_args.h"
#include "engine/cuda_bench.h"
#include "engine/error.h"
#include "engine/model.h"
#include "engine/presets.h"

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

struct Pct {
  double median = 0, p10 = 0, p90 = 0;
};
Pct percentiles(std::vector<double> v) {
  Pct p;
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  p.median = v[v.size() / 2];
  p.p10 = v[v.size() / 10];
  p.p90 = v[std::min(v.size() - 1, v.size() * 9 / 10)];
  return p;
}

std::vector<int> parse_ints(const QString& s) {
  std::vector<int> out;
  for (const QString& part : s.split(',', Qt::SkipEmptyParts)) {
    QString t = part.trimmed().toLower();
    int mul = 1;
    if (t.endsWith('k')) mul = 1024, t.chop(1);
    bool ok = false;
    const int v = t.toInt(&ok);
    if (!ok || v <= 0)
      throw std::runtime_error("not a positive whole number: '" + part.toStdString() + "'");
    out.push_back(v * mul);
  }
  return out;
}

struct Row {
  int ctx = 0;
  std::string mode;
  Pct step_ms;
  double tok_s = 0, kv_fraction = 1, rect_share = 0, bytes_per_step = 0, weight_bytes = 0;
  double gb_s = 0, rect_ms_total = 0;
  int steps = 0, rectifications = 0;
};

std::string git_commit() {
  QProcess p;
  p.start("git", {"rev-parse", "HEAD"});
  if (!p.waitForFinished(3000)) return "unknown";
  const std::string s = p.readAllStandardOutput().trimmed().toStdString();
  return s.empty() ? "unknown" : s;
}

}  // namespace

int main(int argc, char** argv) {
  QCoreApplication app(argc, argv);
  QCoreApplication::setApplicationName("resa-bench");
  QCoreApplication::setApplicationVersion(RESA_VERSION);
  QCommandLineParser p;
  p.setApplicationDescription(
      "Decode / prefill speed of dense, sparse and ReSA modes, or one kernel (--op).");
  p.addHelpOption();
  p.addVersionOption();
  auto opt = [&](const char* name, const char* help, const char* value = nullptr,
                 const char* def = nullptr) { resa::app::add_flag(p, name, help, value, def); };
  opt("model", "Hugging Face model folder.", "dir");
  opt("random-weights",
      "Synthetic weights of a preset: tiny, tinyllama-1.1b, llama-3.1-8b, mistral-7b, "
      "r1-distill-qwen-1.5b, r1-distill-qwen-7b.",
      "preset");
  opt("device", "auto, cpu or cuda.", "d", "auto");
  opt("contexts", "Context lengths for decode, e.g. 4096,32768,131072,262144 (k suffix ok).",
      "list", "4096,32768");
  opt("modes", "Decode modes: dense,sparse,resa.", "list", "dense,sparse,resa");
  opt("warmup",
      "Untimed decode steps first (the graph is recorded here; resa rows: at least one "
      "rectification period).",
      "n", "5");
  opt("repeats", "Timed decode steps per context and mode.", "n", "64");
  opt("prefill-tokens", "Prompt lengths for the prefill measurement (0: none).", "list", "4096");
  opt("prefill-chunk", "Tokens per prefill pass.", "n", "2048");
  opt("block-size", "ReSA block size.", "n", "16");
  opt("ratio", "ReSA share of blocks read.", "r", "0.1");
  opt("min-blocks", "ReSA least blocks read.", "n", "16");
  opt("rectify-every", "ReSA rectification period f.", "n", "32");
  opt("fold-rectification", "Fold each rectification into a decode step (1) or not (0).", "0|1",
      "1");
  opt("op", "Time single kernels instead: copy, gemv, attention, all.", "name");
  opt("op-heads", "--op attention shape: query heads / KV heads / head_dim.", "h/kv/d", "32/8/128");
  opt("json", "Write all figures to this JSON file.", "file");
  opt("label", "Free text stored in the JSON (e.g. the command line).", "text");
  p.process(app);

  try {
    QJsonObject meta;
    meta["command"] = QCoreApplication::arguments().join(' ');
    meta["commit"] = QString::fromStdString(git_commit());
    meta["label"] = p.value("label");
    const int repeats = std::max(1, p.value("repeats").toInt());
    const int warmup = std::max(0, p.value("warmup").toInt());
    QJsonObject root;

    if (p.isSet("op")) {
      const QStringList hs = p.value("op-heads").split('/');
      if (hs.size() != 3) throw std::runtime_error("--op-heads must look like 32/8/128");
      const auto rows = resa::cuda_op_bench(
          p.value("op").toStdString(), parse_ints(p.value("contexts")), hs[0].toInt(),
          hs[1].toInt(), hs[2].toInt(), p.value("block-size").toInt(), p.value("ratio").toDouble(),
          p.value("min-blocks").toInt(), repeats);
      const double copy = resa::cuda_copy_bandwidth_gbs(size_t(1) << 30, 20);
      std::printf("%-12s %-34s %10s %10s %10s %9s %7s\n", "op", "shape", "median_us", "p10_us",
                  "p90_us", "GB/s", "%copy");
      QJsonArray arr;
      for (const auto& r : rows) {
        std::printf("%-12s %-34s %10.2f %10.2f %10.2f %9.1f %6.1f%%\n", r.op.c_str(),
                    r.shape.c_str(), r.us_median, r.us_p10, r.us_p90, r.gb_per_s,
                    100.0 * r.gb_per_s / copy);
        QJsonObject j;
        j["op"] = QString::fromStdString(r.op);
        j["shape"] = QString::fromStdString(r.shape);
        j["us_median"] = r.us_median;
        j["us_p10"] = r.us_p10;
        j["us_p90"] = r.us_p90;
        j["bytes"] = r.bytes;
        j["gb_per_s"] = r.gb_per_s;
        j["fraction_of_copy"] = r.gb_per_s / copy;
        arr.append(j);
      }
      std::printf("device copy bandwidth (1 GiB, read+write): %.1f GB/s\n", copy);
      meta["copy_gb_per_s"] = copy;
      root["meta"] = meta;
      root["ops"] = arr;
    } else {
      const bool has_model = p.isSet("model"), has_random = p.isSet("random-weights");
      if (has_model == has_random)
        throw std::runtime_error("give exactly one of --model DIR or --random-weights PRESET");
      resa::LoadOptions lo;
      const auto dev = resa::parse_device(p.value("device").toStdString());
      if (!dev) throw std::runtime_error("--device must be auto, cpu or cuda");
      lo.device = *dev;
      std::unique_ptr<resa::Model> model;
      const auto t_load = Clock::now();
      if (has_model) {
        model = resa::Model::load(p.value("model").toStdString(), lo);
      } else {
        const auto cfg = resa::preset_config(p.value("random-weights").toStdString());
        if (!cfg)
          throw std::runtime_error("unknown preset " + p.value("random-weights").toStdString());
        model = resa::Model::random(*cfg, p.value("random-weights").toStdString(), 1, lo);
      }
      const resa::ModelConfig& c = model->config();
      std::fprintf(stderr, "resa-bench: %s on %s, loaded in %.1f s\n", model->name().c_str(),
                   model->backend().name().c_str(), ms_since(t_load) / 1000.0);
      const double copy =
          model->backend().is_gpu() ? resa::cuda_copy_bandwidth_gbs(size_t(1) << 30, 20) : 0.0;
      meta["device"] = QString::fromStdString(model->backend().name());
      meta["model"] = QString::fromStdString(model->name());
      meta["copy_gb_per_s"] = copy;
      resa::ResaParams rp;
      rp.block_size = p.value("block-size").toInt();
      rp.ratio = p.value("ratio").toDouble();
      rp.min_blocks = p.value("min-blocks").toInt();
      rp.rectify_every = p.value("rectify-every").toInt();
      const QString fold = p.value("fold-rectification");
      if (fold != "0" && fold != "1")
        throw std::runtime_error("--fold-rectification must be 0 or 1");
      rp.fold_rectification = fold == "1";
      resa::validate(rp);
      meta["block_size"] = rp.block_size;
      meta["ratio"] = rp.ratio;
      meta["min_blocks"] = rp.min_blocks;
      meta["rectify_every"] = rp.rectify_every;
      meta["fold_rectification"] = rp.fold_rectification;
      // Weight bytes a decode step streams: every matrix once (the embedding row is negligible;
      // a tied head is the embedding read once).
      const double hd = c.hidden_size, qd = double(c.num_heads) * c.head_dim,
                   kvd = double(c.num_kv_heads) * c.head_dim, id = c.intermediate_size;
      const double weight_bytes =
          2.0 * (c.num_layers * (hd * (qd + 2 * kvd) + qd * hd + 3 * hd * id) +
                 double(c.vocab_size) * hd);
      const int eb = model->backend().is_gpu() ? 2 : 4;
      std::mt19937_64 rng(3);
      std::uniform_int_distribution<int> tok(3, c.vocab_size - 1);
      std::vector<float> logits(c.vocab_size);

      // Prefill.
      QJsonArray prefill_rows;
      for (int n : parse_ints(p.value("prefill-tokens") == "0" ? "" : p.value("prefill-tokens"))) {
        auto kv = model->make_kv_cache(rp.block_size, n + 1);
        std::vector<int> toks(n);
        for (int& t : toks) t = tok(rng);
        const int chunk = std::max(1, p.value("prefill-chunk").toInt());
        model->forward(toks.data(), std::min(chunk, n), 0, *kv, nullptr, logits.data(),
                       nullptr);  // warm-up
        kv->truncate(0);
        const auto t0 = Clock::now();
        for (int pos = 0; pos < n; pos += chunk) {
          const int m = std::min(chunk, n - pos);
          model->forward(toks.data() + pos, m, pos, *kv, nullptr,
                         pos + m == n ? logits.data() : nullptr, nullptr);
        }
        const double ms = ms_since(t0);
        std::printf("prefill %7d tokens: %9.1f ms  %9.1f tok/s (chunks of %d)\n", n, ms,
                    n / (ms / 1000), chunk);
        QJsonObject j;
        j["tokens"] = n;
        j["ms"] = ms;
        j["tokens_per_s"] = n / (ms / 1000);
        j["chunk"] = chunk;
        prefill_rows.append(j);
      }

      // Decode.
      std::vector<Row> rows;
      const QStringList modes = p.value("modes").split(',', Qt::SkipEmptyParts);
      for (int ctx : parse_ints(p.value("contexts"))) {
        // ReSA rows warm up through one whole rectification, so that its one-time costs
        // (library heuristics, first launches) are not timed in the few that follow.
        const int max_warmup = std::max(warmup, rp.rectify_every);
        const int max_steps = max_warmup + repeats;
        std::unique_ptr<resa::KvCache> kv;
        try {
          kv = model->make_kv_cache(rp.block_size, ctx + max_steps + 64);
        } catch (const resa::Error& e) {
          std::printf("ctx %d: skipped: %s\n", ctx, e.what());
          continue;
        }
        kv->fill_random(ctx, 7);
        std::vector<int> toks(ctx + max_steps + 1);
        for (int& t : toks) t = tok(rng);
        for (const QString& ms : modes) {
          const auto mode = resa::parse_mode(ms.trimmed().toStdString());
          if (!mode) throw std::runtime_error("unknown mode " + ms.toStdString());
          kv->truncate(ctx);
          Row r;
          r.ctx = ctx;
          r.mode = std::string(resa::mode_name(*mode));
          const int warm = *mode == resa::DecodeMode::kResa && rp.rectify_every > 0
                               ? std::max(warmup, rp.rectify_every)
                               : warmup;
          const int steps = warm + repeats;
          std::vector<double> step_ms;
          double total_ms = 0;
          int rectified = ctx;  // the filled cache counts as dense
          resa::ForwardStats fs_total;
          for (int i = 0; i < steps; ++i) {
            const int pos = ctx + i;
            resa::ForwardStats fs;
            const auto t0 = Clock::now();
            const bool sparse = *mode != resa::DecodeMode::kDense;
            const bool resa_mode = *mode == resa::DecodeMode::kResa && rp.rectify_every > 0;
            double rect = 0;
            if (resa_mode && rp.fold_rectification && pos + 1 - rectified >= rp.rectify_every) {
              model->forward(&toks[rectified], pos + 1 - rectified, rectified, *kv, nullptr,
                             logits.data(), nullptr);
              fs.kv_tokens_read = fs.kv_tokens_dense =
                  int64_t(c.num_layers) * c.num_kv_heads * (pos + 1);
              rectified = pos + 1;
              rect = ms_since(t0);
              if (i >= warm) ++r.rectifications;
            } else {
              model->forward(&toks[pos], 1, pos, *kv, sparse ? &rp : nullptr, logits.data(), &fs);
              if (!sparse) rectified = pos + 1;
              if (resa_mode && pos + 1 - rectified >= rp.rectify_every) {
                const auto tr = Clock::now();
                model->forward(&toks[rectified], pos + 1 - rectified, rectified, *kv, nullptr,
                               nullptr, nullptr);
                model->backend()
                    .synchronize();  // the rectification's own time, not the next step's
                rectified = pos + 1;
                rect = ms_since(tr);
                if (i >= warm) ++r.rectifications;
              }
            }
            const double ms_step = ms_since(t0);
            if (i >= warm) {
              step_ms.push_back(ms_step);
              total_ms += ms_step;
              r.rect_ms_total += rect;
              fs_total.kv_tokens_read += fs.kv_tokens_read;
              fs_total.kv_tokens_dense += fs.kv_tokens_dense;
              fs_total.summary_blocks_scored += fs.summary_blocks_scored;
            }
          }
          r.steps = repeats;
          r.step_ms = percentiles(step_ms);
          r.tok_s = repeats / (total_ms / 1000.0);
          r.kv_fraction = fs_total.kv_tokens_dense > 0
                              ? double(fs_total.kv_tokens_read) / fs_total.kv_tokens_dense
                              : 1;
          r.rect_share = total_ms > 0 ? r.rect_ms_total / total_ms : 0;
          const double kv_bytes =
              (double(fs_total.kv_tokens_read) + double(fs_total.summary_blocks_scored)) * 2.0 *
              c.head_dim * eb / repeats;
          r.weight_bytes = weight_bytes;
          r.bytes_per_step = weight_bytes + kv_bytes;
          r.gb_s = r.bytes_per_step / (total_ms / repeats * 1e6);
          rows.push_back(r);
          std::fprintf(stderr, "ctx %d %s: %.3f ms/step\n", ctx, r.mode.c_str(), r.step_ms.median);
        }
      }
      std::printf(
          "\n%s on %s; copy bandwidth %.0f GB/s; block %d, ratio %.2f, min_blocks %d, f %d%s\n",
          model->name().c_str(), model->backend().name().c_str(), copy, rp.block_size, rp.ratio,
          rp.min_blocks, rp.rectify_every, rp.fold_rectification ? " (folded)" : "");
      std::printf(
          "| ctx | mode | step ms (p10-p90) | tok/s | KV read | rect share | MB/step | GB/s | %% "
          "copy | x dense (tok/s) |\n");
      std::printf("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
      QJsonArray arr;
      for (const Row& r : rows) {
        double dense_ms = 0, dense_tok_s = 0;
        for (const Row& d : rows)
          if (d.ctx == r.ctx && d.mode == "dense")
            dense_ms = d.step_ms.median, dense_tok_s = d.tok_s;
        // End to end: tok/s counts rectification time, which the median step time leaves out.
        const double speedup = dense_tok_s > 0 ? r.tok_s / dense_tok_s : 0;
        const double step_speedup = dense_ms > 0 ? dense_ms / r.step_ms.median : 0;
        std::printf(
            "| %d | %s | %.3f (%.3f-%.3f) | %.1f | %.1f%% | %.1f%% | %.1f | %.0f | %.1f%% | %.2f "
            "|\n",
            r.ctx, r.mode.c_str(), r.step_ms.median, r.step_ms.p10, r.step_ms.p90, r.tok_s,
            100 * r.kv_fraction, 100 * r.rect_share, r.bytes_per_step / 1e6, r.gb_s,
            copy > 0 ? 100 * r.gb_s / copy : 0.0, speedup);
        QJsonObject j;
        j["context"] = r.ctx;
        j["mode"] = QString::fromStdString(r.mode);
        j["step_ms_median"] = r.step_ms.median;
        j["step_ms_p10"] = r.step_ms.p10;
        j["step_ms_p90"] = r.step_ms.p90;
        j["decode_tokens_per_s"] = r.tok_s;
        j["kv_read_fraction"] = r.kv_fraction;
        j["rectification_time_share"] = r.rect_share;
        j["rectifications"] = r.rectifications;
        j["bytes_per_step"] = r.bytes_per_step;
        j["weight_bytes_per_step"] = r.weight_bytes;
        j["achieved_gb_per_s"] = r.gb_s;
        j["fraction_of_copy_bandwidth"] = copy > 0 ? r.gb_s / copy : 0.0;
        j["speedup_vs_dense"] = speedup;
        j["step_speedup_vs_dense"] = step_speedup;
        j["steps"] = r.steps;
        arr.append(j);
      }
      meta["device_memory_bytes"] = double(model->backend().device_memory_bytes());
      root["meta"] = meta;
      root["prefill"] = prefill_rows;
      root["decode"] = arr;
    }
    if (p.isSet("json")) {
      QFile f(p.value("json"));
      if (!f.open(QIODevice::WriteOnly))
        throw std::runtime_error("cannot write " + p.value("json").toStdString());
      f.write(QJsonDocument(root).toJson());
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "resa-bench: error: " << e.what() << std::endl;
    return 1;
  }
}
