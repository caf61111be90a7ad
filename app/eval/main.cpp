// resa-eval: the quality side of ReSA, measured per decoding mode (dense, sparse, resa):
// perplexity through the decoding path, pass-key retrieval, agreement with dense and the math
// protocol; writes results.json, results.md and PNG charts.
#include <QApplication>
#include <QCommandLineParser>
#include <QDateTime>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QSysInfo>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "app/eval/math_sets.h"
#include "app/eval/report.h"
#include "app/eval/tasks.h"
#include "app/lib/cli_args.h"
#include "engine/error.h"
#include "engine/model.h"
#include "engine/presets.h"

namespace fs = std::filesystem;
using resa::DecodeMode;

namespace {

using resa::app::usage_error;
using resa::app::UsageError;

int to_int(const QCommandLineParser& p, const char* name, int lo, int hi) {
  return resa::app::flag_int(p, name, lo, hi);
}
double to_double(const QCommandLineParser& p, const char* name, double lo, double hi) {
  return resa::app::flag_double(p, name, lo, hi);
}

std::vector<int> int_list(const QCommandLineParser& p, const char* name, int lo, int hi) {
  std::vector<int> out;
  for (const QString& s : p.value(name).split(',', Qt::SkipEmptyParts)) {
    bool ok = false;
    const int x = s.trimmed().toInt(&ok);
    if (!ok || x < lo || x > hi)
      usage_error("--" + std::string(name) + ": '" + s.toStdString() +
                  "' is not a whole number from " + std::to_string(lo) + " to " +
                  std::to_string(hi));
    out.push_back(x);
  }
  if (out.empty()) usage_error("--" + std::string(name) + " needs at least one value");
  return out;
}

std::vector<double> double_list(const QCommandLineParser& p, const char* name) {
  std::vector<double> out;
  for (const QString& s : p.value(name).split(',', Qt::SkipEmptyParts)) {
    bool ok = false;
    const double x = s.trimmed().toDouble(&ok);
    if (!ok || x < 0 || x > 1)
      usage_error("--" + std::string(name) + ": '" + s.toStdString() +
                  "' is not a number from 0 to 1");
    out.push_back(x);
  }
  if (out.empty()) usage_error("--" + std::string(name) + " needs at least one value");
  return out;
}

std::string read_file(const fs::path& path, const char* flag) {
  std::ifstream f(path, std::ios::binary);
  if (!f) usage_error(std::string(flag) + " " + path.string() + ": cannot read it");
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// The source tree: this file's folder when built here, else two levels above the executable
// (build-dir/app/resa-eval), else the working directory.
fs::path source_dir() {
  const fs::path from_build = fs::path(__FILE__).parent_path().parent_path().parent_path();
  if (fs::exists(from_build / "engine" / "model.h")) return from_build;
  const fs::path from_exe =
      fs::path(QCoreApplication::applicationDirPath().toStdString()).parent_path().parent_path();
  if (fs::exists(from_exe / "engine" / "model.h")) return from_exe;
  return fs::current_path();
}

QString run_git(const fs::path& dir, const QStringList& args) {
  QProcess git;
  git.start("git", QStringList{"-C", QString::fromStdString(dir.string())} + args);
  if (!git.waitForFinished(5000) || git.exitCode() != 0) return {};
  return QString::fromUtf8(git.readAllStandardOutput()).trimmed();
}

QString cpu_model() {
  QFile f("/proc/cpuinfo");
  if (f.open(QIODevice::ReadOnly)) {
    for (const QByteArray& line : f.readAll().split('\n')) {
      if (line.startsWith("model name"))
        return QString::fromUtf8(line.mid(line.indexOf(':') + 1)).trimmed();
    }
  }
  return QSysInfo::currentCpuArchitecture();
}

// The default long document: Debian's license texts (every Debian system has them), one after
// another: natural English of about 30,000 tokens that is not in the demo model's corpus.
std::pair<std::string, std::string> default_document() {
  std::string text, names;
  for (const char* name : {"GPL-3", "Apache-2.0", "GPL-2", "LGPL-2.1", "MPL-2.0", "Artistic"}) {
    const fs::path p = fs::path("/usr/share/common-licenses") / name;
    std::ifstream f(p, std::ios::binary);
    if (!f) continue;
    text +=
        std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()) + "\n\n";
    if (!names.empty()) names += '+';
    names += name;
  }
  if (text.empty())
    usage_error(
        "no default document (/usr/share/common-licenses is missing): pass --document FILE");
  names.insert(0, "/usr/share/common-licenses/");
  return {text, names};
}

QJsonArray to_json(const std::vector<int>& v) {
  QJsonArray a;
  for (int x : v) a.append(x);
  return a;
}

QString mode_q(DecodeMode m) { return QString::fromUtf8(resa::mode_name(m).data()); }

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int run(QApplication& app) {
  QCommandLineParser p;
  p.setApplicationDescription(
      "Measure the quality of dense, sparse and ReSA decoding: perplexity through the decoding "
      "path, pass-key retrieval, agreement with dense and math reasoning. Writes results.json, "
      "results.md and PNG charts to --out.");
  p.addHelpOption();
  p.addVersionOption();
  auto opt = [&](const char* name, const char* help, const char* value = nullptr,
                 const char* def = nullptr) { resa::app::add_flag(p, name, help, value, def); };
  opt("model",
      "Hugging Face model folder (config.json, *.safetensors, tokenizer.model); default: the "
      "bundled demo model.",
      "dir");
  opt("random-weights", "Synthetic weights of a preset's shapes (tiny, tinyllama-1.1b, ...).",
      "preset");
  opt("weights-seed", "Seed of the random weights.", "n", "0");
  opt("device", "cpu, cuda or auto.", "device", "cpu");
  opt("threads", "CPU threads (0: all cores).", "n", "0");
  opt("out", "Folder for results.json, results.md and the charts.", "dir", "resa-eval-out");
  opt("quick", "A small grid that finishes in about a minute on a 2-core CPU.");
  opt("tasks", "Comma-separated: perplexity, retrieval, agreement, math.", "list",
      "perplexity,retrieval,agreement,math");
  opt("modes", "Comma-separated decoding modes to compare.", "list", "dense,sparse,resa");
  opt("block-size", "ReSA block size B in tokens.", "n", "16");
  opt("ratio", "Share of KV blocks read per sparse step.", "r", "0.1");
  opt("min-blocks", "Least number of blocks read per step.", "n", "16");
  opt("local", "Newest blocks always read.", "n", "1");
  opt("sink", "Always read the first block (1) or not (0).", "0|1", "1");
  opt("rectify-every", "Tokens between rectifications (0: never).", "f", "32");
  opt("fold-rectification", "Fold each rectification into a decode step (1) or not (0).", "0|1",
      "1");
  opt("ctx", "Largest context to test (default: the model's limit).", "n", "0");
  opt("document",
      "Long document for perplexity and agreement (default: Debian's license "
      "texts).",
      "file");
  opt("ppl-lengths", "Context lengths for perplexity (default: 1/8, 1/4, 1/2 and all of --ctx).",
      "list");
  opt("retrieval-lengths", "Context lengths of the pass-key grid (default: 1/8 .. all of --ctx).",
      "list");
  opt("depths", "Depths of the pass key, 0 = start, 1 = end.", "list", "0,0.25,0.5,0.75,1");
  opt("trials", "Keys per (length, depth) cell.", "n", "2");
  opt("filler",
      "Filler text file for the pass-key prompts (default: the classic grass / sky / "
      "sun sentences).",
      "file");
  opt("agreement-lengths", "Prompt lengths for agreement (default: 1/4 and 3/4 of --ctx).", "list");
  opt("agreement-tokens", "Tokens generated per agreement run.", "n", "512");
  opt("math-data",
      "Folder of the five math .jsonl files (default: ../shared/data/math of the "
      "source tree).",
      "dir");
  opt("math-sets", "Comma-separated math sets.", "list",
      "aime24,amc23,gaokao2023en,minerva_math,olympiadbench");
  opt("limit", "Problems per math set (0: all).", "n", "0");
  opt("samples", "Samples per math problem.", "n", "1");
  opt("max-new-tokens", "Most tokens per math answer.", "n", "16384");
  opt("temperature", "Math sampling temperature.", "t", "0.6");
  opt("top-p", "Math nucleus sampling mass.", "p", "0.9");
  opt("seed", "Seed of pass keys and math sampling.", "n", "1");
  opt("quiet", "No progress lines on stderr.");
  p.process(app);

  if (!p.positionalArguments().isEmpty())
    usage_error("unexpected argument '" + p.positionalArguments().first().toStdString() + "'");
  const bool has_random = p.isSet("random-weights");
  const QString model_dir = resa::app::flag_model_dir(p);  // the demo model without flags
  const bool quick = p.isSet("quick");

  resa::eval::EvalSetup setup;
  for (const QString& m : p.value("modes").split(',', Qt::SkipEmptyParts)) {
    const auto mode = resa::parse_mode(m.trimmed().toStdString());
    if (!mode) usage_error("--modes: '" + m.toStdString() + "' is not dense, sparse or resa");
    setup.modes.push_back(*mode);
  }
  if (setup.modes.empty()) usage_error("--modes needs at least one mode");
  setup.resa.block_size = to_int(p, "block-size", 1, 1024);
  setup.resa.ratio = to_double(p, "ratio", 1e-6, 1.0);
  setup.resa.min_blocks = to_int(p, "min-blocks", 1, 1 << 24);
  setup.resa.local = to_int(p, "local", 1, 1 << 24);
  setup.resa.sink = to_int(p, "sink", 0, 1) == 1;
  setup.resa.rectify_every = to_int(p, "rectify-every", 0, 1 << 24);
  setup.resa.fold_rectification = to_int(p, "fold-rectification", 0, 1) == 1;
  resa::validate(setup.resa);

  QStringList tasks;
  for (const QString& t : p.value("tasks").split(',', Qt::SkipEmptyParts)) {
    const QString name = t.trimmed();
    if (name != "perplexity" && name != "retrieval" && name != "agreement" && name != "math")
      usage_error("--tasks: '" + name.toStdString() +
                  "' is not perplexity, retrieval, agreement or math");
    tasks << name;
  }

  resa::LoadOptions lo;
  lo.threads = to_int(p, "threads", 0, 4096);
  const auto device = resa::parse_device(p.value("device").toStdString());
  if (!device) usage_error("--device must be cpu, cuda or auto");
  lo.device = *device;
  std::unique_ptr<resa::Model> model;
  QString model_name;
  if (!has_random) {
    model = resa::Model::load(model_dir.toStdString(), lo);
    model_name = QFileInfo(QDir::cleanPath(model_dir)).fileName();
  } else {
    const std::string preset = p.value("random-weights").toStdString();
    const auto cfg = resa::preset_config(preset);
    if (!cfg) usage_error("unknown preset '" + preset + "'");
    model =
        resa::Model::random(*cfg, preset, uint64_t(to_int(p, "weights-seed", 0, 2147483647)), lo);
    model_name = QString::fromStdString(preset) + " (random weights)";
  }
  const bool verbose = !p.isSet("quiet");
  const auto progress = [&](const std::string& line) {
    if (verbose) std::fprintf(stderr, "resa-eval: %s\n", line.c_str());
  };
  if (!model->backend_notice().empty()) progress(model->backend_notice());

  // Context grid, from the model's limit (or --ctx) down.
  const int model_ctx = model->config().max_position_embeddings;
  int ctx = to_int(p, "ctx", 0, 1 << 24);
  if (ctx == 0 || ctx > model_ctx) ctx = model_ctx;
  if (quick) ctx = std::min(ctx, 2048);
  auto fractions = [&](std::vector<double> fs) {
    std::vector<int> v;
    for (double f : fs) v.push_back(std::max(64, int(ctx * f)));
    return v;
  };
  const std::vector<int> ppl_lengths = p.isSet("ppl-lengths") ? int_list(p, "ppl-lengths", 2, ctx)
                                       : quick                ? fractions({0.25, 0.5, 1.0})
                                                              : fractions({0.125, 0.25, 0.5, 1.0});
  std::vector<int> ret_lengths = p.isSet("retrieval-lengths")
                                     ? int_list(p, "retrieval-lengths", 64, ctx)
                                 : quick ? fractions({0.25, 0.5, 1.0})
                                         : fractions({0.125, 0.25, 0.5, 0.75, 1.0});
  const std::vector<int> agree_lengths = p.isSet("agreement-lengths")
                                             ? int_list(p, "agreement-lengths", 2, ctx)
                                         : quick ? fractions({0.5})
                                                 : fractions({0.25, 0.75});
  const int agree_tokens =
      quick && !p.isSet("agreement-tokens") ? 64 : to_int(p, "agreement-tokens", 1, 1 << 20);
  const std::vector<double> depths =
      quick && !p.isSet("depths") ? std::vector<double>{0.1, 0.5, 0.9} : double_list(p, "depths");
  const int trials = quick && !p.isSet("trials") ? 1 : to_int(p, "trials", 1, 1000);

  std::string doc_text, doc_name;
  if (p.isSet("document")) {
    doc_text = read_file(p.value("document").toStdString(), "--document");
    doc_name = p.value("document").toStdString();
  } else {
    std::tie(doc_text, doc_name) = default_document();
  }
  std::vector<int> doc = model->tokenizer().encode(doc_text);
  if (model->tokenizer().bos_id() >= 0) doc.insert(doc.begin(), model->tokenizer().bos_id());

  const QString out_dir = p.value("out");
  if (!QDir().mkpath(out_dir)) usage_error("--out " + out_dir.toStdString() + ": cannot create it");

  // Provenance (STYLE.md 13): command, commit, machine next to every number.
  const fs::path src = source_dir();
  QString commit = run_git(src, {"rev-parse", "--short=12", "HEAD"});
  if (commit.isEmpty())
    commit = "unknown";
  else if (!run_git(src, {"status", "--porcelain", "--untracked-files=no"}).isEmpty())
    commit += "+dirty";
  QJsonObject prov;
  prov["command"] = QCoreApplication::arguments().join(' ');
  prov["commit"] = commit;
  prov["date"] = QDateTime::currentDateTimeUtc().toString(Qt::ISODate);
  prov["machine"] = QSysInfo::machineHostName() + ": " + cpu_model() + ", " +
                    QString::number(std::thread::hardware_concurrency()) + " cores, " +
                    QSysInfo::prettyProductName();
  prov["backend"] = QString::fromStdString(model->backend().name());
  prov["threads"] = lo.threads > 0 ? lo.threads : int(std::thread::hardware_concurrency());
  prov["model"] = model_name;
  prov["model_parameters"] = double(model->config().parameter_count());
  prov["max_position_embeddings"] = model_ctx;
  prov["chat_format"] = QString::fromUtf8(resa::chat_format_name(model->chat_format()).data());

  QJsonObject results;
  results["tool"] = "resa-eval";
  results["version"] = RESA_VERSION;
  results["quick"] = quick;
  results["provenance"] = prov;
  QJsonArray modes_json;
  for (DecodeMode m : setup.modes) modes_json.append(mode_q(m));
  results["modes"] = modes_json;
  QJsonObject rp;
  rp["block_size"] = setup.resa.block_size;
  rp["ratio"] = setup.resa.ratio;
  rp["min_blocks"] = setup.resa.min_blocks;
  rp["local"] = setup.resa.local;
  rp["sink"] = setup.resa.sink;
  rp["rectify_every"] = setup.resa.rectify_every;
  rp["fold_rectification"] = setup.resa.fold_rectification;
  results["resa"] = rp;
  QJsonObject seconds;

  if (tasks.contains("perplexity")) {
    const auto t0 = Clock::now();
    const auto runs = resa::eval::run_perplexity(*model, doc, ppl_lengths, setup, progress);
    QJsonObject section, by_mode;
    section["document"] = QString::fromStdString(doc_name);
    section["document_tokens"] = int(doc.size());
    section["lengths"] = to_json(ppl_lengths);
    const std::vector<float>* dense_lp = nullptr;
    for (const auto& r : runs)
      if (r.mode == DecodeMode::kDense) dense_lp = &r.logprob;
    for (const auto& r : runs) {
      QJsonObject o;
      QJsonArray pts;
      for (const auto& pt : r.points) {
        QJsonObject j;
        j["length"] = pt.length;
        j["ppl"] = pt.ppl;
        j["window_ppl"] = pt.window_ppl;
        j["top1_agree"] = pt.top1_agree;
        pts.append(j);
      }
      o["points"] = pts;
      o["rectifications"] = r.rectifications;
      o["kv_read_fraction"] = r.kv_read_fraction;
      o["seconds"] = r.seconds;
      if (dense_lp && r.mode != DecodeMode::kDense) {
        // Drift: mean (dense log p - mode log p) per window, the accumulation sparse errors show.
        const int n = int(r.logprob.size());
        const int window = std::max(32, n / 32);
        QJsonArray drift;
        for (int b = 0; b < n; b += window) {
          const int e = std::min(n, b + window);
          double gap = 0;
          for (int i = b; i < e; ++i) gap += (*dense_lp)[i] - r.logprob[i];
          QJsonObject w;
          w["end"] = e + 1;
          w["gap"] = gap / (e - b);
          drift.append(w);
        }
        o["drift"] = drift;
      }
      by_mode[mode_q(r.mode)] = o;
    }
    section["modes"] = by_mode;
    results["perplexity"] = section;
    seconds["perplexity"] = seconds_since(t0);
  }

  if (tasks.contains("retrieval")) {
    const auto t0 = Clock::now();
    resa::eval::RetrievalOptions ro;
    ro.lengths = ret_lengths;
    ro.depths = depths;
    ro.trials = trials;
    ro.seed = uint64_t(to_int(p, "seed", 0, 2147483647));
    if (p.isSet("filler")) ro.filler = read_file(p.value("filler").toStdString(), "--filler");
    const auto trials_out = resa::eval::run_retrieval(*model, ro, setup, progress);
    QJsonObject section, by_mode;
    section["lengths"] = to_json(ro.lengths);
    QJsonArray depths_json;
    for (double d : ro.depths) depths_json.append(d);
    section["depths"] = depths_json;
    section["trials"] = ro.trials;
    section["filler"] = p.isSet("filler") ? p.value("filler") : QString("classic");
    for (DecodeMode m : setup.modes) {
      QJsonObject o;
      QJsonArray cells, by_length;
      int all_ok = 0, all_n = 0;
      for (int len : ro.lengths) {
        int len_ok = 0, len_n = 0;
        for (double d : ro.depths) {
          int ok = 0, n = 0;
          for (const auto& t : trials_out) {
            if (t.target_length != len || t.depth != d) continue;
            ++n;
            ok += t.correct.at(m) ? 1 : 0;
          }
          QJsonObject c;
          c["length"] = len;
          c["depth"] = d;
          c["correct"] = ok;
          c["trials"] = n;
          c["accuracy"] = n ? double(ok) / n : 0.0;
          cells.append(c);
          len_ok += ok;
          len_n += n;
        }
        QJsonObject l;
        l["length"] = len;
        l["accuracy"] = len_n ? double(len_ok) / len_n : 0.0;
        by_length.append(l);
        all_ok += len_ok;
        all_n += len_n;
      }
      o["cells"] = cells;
      o["by_length"] = by_length;
      o["accuracy"] = all_n ? double(all_ok) / all_n : 0.0;
      by_mode[mode_q(m)] = o;
    }
    section["modes"] = by_mode;
    QJsonArray samples;
    for (const auto& t : trials_out) {
      QJsonObject s, answers, correct;
      s["length"] = t.target_length;
      s["prompt_tokens"] = t.prompt_tokens;
      s["depth"] = t.depth;
      s["key"] = QString::fromStdString(t.key);
      for (const auto& [m, a] : t.answers) answers[mode_q(m)] = QString::fromStdString(a);
      for (const auto& [m, c] : t.correct) correct[mode_q(m)] = c;
      s["answers"] = answers;
      s["correct"] = correct;
      samples.append(s);
    }
    section["samples"] = samples;
    results["retrieval"] = section;
    seconds["retrieval"] = seconds_since(t0);
  }

  if (tasks.contains("agreement")) {
    const auto t0 = Clock::now();
    const auto runs =
        resa::eval::run_agreement(*model, doc, agree_lengths, agree_tokens, setup, progress);
    QJsonObject section, by_mode;
    section["new_tokens"] = agree_tokens;
    section["prompt_lengths"] = to_json(agree_lengths);
    section["document"] = QString::fromStdString(doc_name);
    for (DecodeMode m : setup.modes) {
      QJsonArray arr;
      for (const auto& r : runs) {
        if (r.mode != m) continue;
        QJsonObject o;
        o["prompt_tokens"] = r.prompt_tokens;
        o["generated"] = r.generated;
        o["identical_share"] = r.identical_share;
        o["first_divergence"] = r.first_divergence;
        arr.append(o);
      }
      by_mode[mode_q(m)] = arr;
    }
    section["modes"] = by_mode;
    results["agreement"] = section;
    seconds["agreement"] = seconds_since(t0);
  }

  if (tasks.contains("math")) {
    const auto t0 = Clock::now();
    const fs::path data = p.isSet("math-data") ? fs::path(p.value("math-data").toStdString())
                                               : src / ".." / "shared" / "data" / "math";
    resa::eval::MathOptions mo;
    for (const QString& s : p.value("math-sets").split(',', Qt::SkipEmptyParts))
      mo.sets.push_back(s.trimmed().toStdString());
    mo.limit = quick && !p.isSet("limit") ? 1 : to_int(p, "limit", 0, 1 << 20);
    mo.samples = to_int(p, "samples", 1, 4096);
    mo.max_new_tokens =
        quick && !p.isSet("max-new-tokens") ? 24 : to_int(p, "max-new-tokens", 1, 1 << 20);
    mo.temperature = float(to_double(p, "temperature", 0.0, 100.0));
    mo.top_p = float(to_double(p, "top-p", 1e-6, 1.0));
    mo.seed = uint64_t(to_int(p, "seed", 0, 2147483647));
    std::vector<resa::eval::MathProblem> problems;
    for (const std::string& set : mo.sets) {
      std::vector<resa::eval::MathProblem> ps;
      try {
        ps = resa::eval::load_math_set(data, set);
      } catch (const std::runtime_error& e) {
        usage_error(e.what());
      }
      if (mo.limit > 0 && int(ps.size()) > mo.limit) ps.resize(mo.limit);
      problems.insert(problems.end(), ps.begin(), ps.end());
    }
    const auto samples = resa::eval::run_math(*model, problems, mo, setup, progress);
    QJsonObject section, by_mode;
    QJsonArray sets_json;
    for (const std::string& s : mo.sets) sets_json.append(QString::fromStdString(s));
    section["sets"] = sets_json;
    section["data"] = QString::fromStdString(fs::weakly_canonical(data).string());
    section["limit"] = mo.limit;
    section["samples"] = mo.samples;
    section["max_new_tokens"] = mo.max_new_tokens;
    section["temperature"] = mo.temperature;
    section["top_p"] = mo.top_p;
    for (DecodeMode m : setup.modes) {
      QJsonObject sets;
      double sum = 0;
      for (const std::string& set : mo.sets) {
        int ok = 0, n = 0;
        for (const auto& s : samples) {
          if (s.mode != m || s.set != set) continue;
          ++n;
          ok += s.correct ? 1 : 0;
        }
        QJsonObject o;
        o["correct"] = ok;
        o["total"] = n;
        o["accuracy"] = n ? double(ok) / n : 0.0;
        sets[QString::fromStdString(set)] = o;
        sum += n ? double(ok) / n : 0.0;
      }
      QJsonObject o;
      o["sets"] = sets;
      o["average"] =
          mo.sets.empty() ? 0.0 : sum / double(mo.sets.size());  // of the sets, as the paper
      by_mode[mode_q(m)] = o;
    }
    section["modes"] = by_mode;
    QJsonArray sj;
    for (const auto& s : samples) {
      QJsonObject o;
      o["set"] = QString::fromStdString(s.set);
      o["problem"] = s.problem;
      o["sample"] = s.sample;
      o["mode"] = mode_q(s.mode);
      o["boxed"] = QString::fromStdString(s.boxed);
      o["correct"] = s.correct;
      o["generated_tokens"] = s.generated_tokens;
      sj.append(o);
    }
    section["results"] = sj;
    results["math"] = section;
    seconds["math"] = seconds_since(t0);
  }
  results["seconds"] = seconds;

  const QString json_path = out_dir + "/results.json";
  QFile jf(json_path);
  if (!jf.open(QIODevice::WriteOnly | QIODevice::Truncate))
    throw resa::Error(
        resa::ErrorKind::kInvalidArgument,
        json_path.toStdString() + ": cannot write it (" + jf.errorString().toStdString() + ")");
  jf.write(QJsonDocument(results).toJson(QJsonDocument::Indented));
  jf.close();
  QFile mf(out_dir + "/results.md");
  if (mf.open(QIODevice::WriteOnly | QIODevice::Truncate))
    mf.write(resa::eval::markdown_report(results).toUtf8());
  mf.close();
  const QStringList charts = resa::eval::write_charts(results, out_dir);
  progress("wrote " + json_path.toStdString() + ", results.md and " +
           std::to_string(charts.size()) + " charts (" + charts.join(", ").toStdString() + ")");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Charts are rendered offscreen: no display is needed.
  if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM") && qEnvironmentVariableIsEmpty("DISPLAY") &&
      qEnvironmentVariableIsEmpty("WAYLAND_DISPLAY"))
    qputenv("QT_QPA_PLATFORM", "offscreen");
  QApplication app(argc, argv);
  QCoreApplication::setApplicationName("resa-eval");
  QCoreApplication::setApplicationVersion(RESA_VERSION);
  return resa::app::run_program("resa-eval", [&] { return run(app); });
}
