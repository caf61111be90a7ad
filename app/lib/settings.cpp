#include "app/lib/settings.h"

#include <QStandardPaths>
#include <QThread>

#include <algorithm>
#include <cmath>

#ifdef __linux__
#include <sched.h>
#endif

namespace resa::app {

namespace {

int intIn(const QSettings& s, const char* key, int fallback, int lo, int hi) {
  bool ok = false;
  const int v = s.value(QLatin1String(key), fallback).toInt(&ok);
  return ok && v >= lo && v <= hi ? v : fallback;
}

double doubleIn(const QSettings& s, const char* key, double fallback, double lo, double hi,
                bool loOpen = false) {
  bool ok = false;
  const double v = s.value(QLatin1String(key), fallback).toDouble(&ok);
  if (!ok || !std::isfinite(v) || v < lo || v > hi || (loOpen && v == lo)) return fallback;
  return v;
}

}  // namespace

Settings::Settings(QObject* parent) : QObject(parent), s_(std::make_unique<QSettings>()) {}

Settings::Settings(const QString& iniPath, QObject* parent)
    : QObject(parent), s_(std::make_unique<QSettings>(iniPath, QSettings::IniFormat)) {}

Settings::~Settings() = default;

GenerationSettings Settings::defaultGeneration() { return GenerationSettings{}; }

void Settings::put(const QString& key, const QVariant& value) {
  if (s_->contains(key) && s_->value(key) == value) return;
  s_->setValue(key, value);
  emit changed();
}

QString Settings::lastModelPath() const { return s_->value("model/path").toString(); }
void Settings::setLastModelPath(const QString& path) { put("model/path", path); }
QString Settings::lastPreset() const { return s_->value("model/preset").toString(); }
void Settings::setLastPreset(const QString& preset) { put("model/preset", preset); }

qint64 Settings::lastConversation() const {
  bool ok = false;
  const qint64 id = s_->value("session/last_conversation").toLongLong(&ok);
  return ok && id > 0 ? id : 0;
}
void Settings::setLastConversation(qint64 id) { put("session/last_conversation", id); }

resa::DecodeMode Settings::mode() const {
  return modeFromString(s_->value("generation/mode").toString()).value_or(defaultGeneration().mode);
}
void Settings::setMode(resa::DecodeMode mode) { put("generation/mode", modeToString(mode)); }

resa::ResaParams Settings::resaParams() const {
  const resa::ResaParams d;
  resa::ResaParams p;
  p.block_size = intIn(*s_, "resa/block_size", d.block_size, 1, 1024);
  p.ratio = doubleIn(*s_, "resa/ratio", d.ratio, 0.0, 1.0, true);
  p.min_blocks = intIn(*s_, "resa/min_blocks", d.min_blocks, 1, 1 << 24);
  p.local = intIn(*s_, "resa/local", d.local, 1, 1 << 24);
  p.sink = s_->value("resa/sink", d.sink).toBool();
  p.rectify_every = intIn(*s_, "resa/rectify_every", d.rectify_every, 0, 1 << 24);
  p.fold_rectification = s_->value("resa/fold_rectification", d.fold_rectification).toBool();
  return p;
}

void Settings::setResaParams(const resa::ResaParams& p) {
  put("resa/block_size", p.block_size);
  put("resa/ratio", p.ratio);
  put("resa/min_blocks", p.min_blocks);
  put("resa/local", p.local);
  put("resa/sink", p.sink);
  put("resa/rectify_every", p.rectify_every);
  put("resa/fold_rectification", p.fold_rectification);
}

resa::SamplingParams Settings::sampling() const {
  const resa::SamplingParams d;
  resa::SamplingParams p;
  p.temperature = float(doubleIn(*s_, "sampling/temperature", d.temperature, 0.0, 100.0));
  p.top_k = intIn(*s_, "sampling/top_k", d.top_k, 0, 1 << 24);
  p.top_p = float(doubleIn(*s_, "sampling/top_p", d.top_p, 0.0, 1.0, true));
  p.min_p = float(doubleIn(*s_, "sampling/min_p", d.min_p, 0.0, 0.999));
  p.repetition_penalty =
      float(doubleIn(*s_, "sampling/repetition_penalty", d.repetition_penalty, 0.0, 10.0, true));
  p.repetition_last_n = intIn(*s_, "sampling/repetition_last_n", d.repetition_last_n, 0, 1 << 24);
  bool ok = false;
  const qulonglong seed = s_->value("sampling/seed", qulonglong(d.seed)).toULongLong(&ok);
  p.seed = ok ? seed : d.seed;
  return p;
}

void Settings::setSampling(const resa::SamplingParams& p) {
  put("sampling/temperature", double(p.temperature));
  put("sampling/top_k", p.top_k);
  put("sampling/top_p", double(p.top_p));
  put("sampling/min_p", double(p.min_p));
  put("sampling/repetition_penalty", double(p.repetition_penalty));
  put("sampling/repetition_last_n", p.repetition_last_n);
  put("sampling/seed", qulonglong(p.seed));
}

int Settings::maxNewTokens() const {
  return intIn(*s_, "generation/max_new_tokens", defaultGeneration().maxNewTokens, 1, 1 << 20);
}
void Settings::setMaxNewTokens(int n) { put("generation/max_new_tokens", n); }
QString Settings::systemPrompt() const { return s_->value("generation/system_prompt").toString(); }
void Settings::setSystemPrompt(const QString& text) { put("generation/system_prompt", text); }

int Settings::contextLimit() const { return intIn(*s_, "model/context_limit", 0, 0, 1 << 24); }
void Settings::setContextLimit(int tokens) { put("model/context_limit", tokens); }
int Settings::threads() const { return intIn(*s_, "model/threads", defaultThreads(), 0, 4096); }

int Settings::defaultThreads() {
  int cpus = QThread::idealThreadCount();
#ifdef __linux__
  cpu_set_t set;  // the CPUs this process may run on (a container's share, not the host's)
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
#endif
  // From 4 CPUs on, one is left to the GUI thread (the event loop must answer within 50 ms);
  // on 2 or 3 the engine takes them all: halving decode speed costs more than it saves (with
  // OpenMP waiting passively the GUI still gets a CPU between steps).
  return cpus >= 4 ? cpus - 1 : std::max(1, cpus);
}
void Settings::setThreads(int n) { put("model/threads", n); }

QString Settings::snapshotDirectory() const {
  return s_
      ->value("model/snapshot_dir",
              QStandardPaths::writableLocation(QStandardPaths::CacheLocation) +
                  QStringLiteral("/kv-snapshots"))
      .toString();
}
void Settings::setSnapshotDirectory(const QString& dir) { put("model/snapshot_dir", dir); }

GenerationSettings Settings::generation() const {
  GenerationSettings g;
  g.mode = mode();
  g.resa = resaParams();
  g.sampling = sampling();
  g.maxNewTokens = maxNewTokens();
  g.systemPrompt = systemPrompt();
  return g;
}

void Settings::setGeneration(const GenerationSettings& g) {
  {
    const QSignalBlocker block(this);  // one changed() for the whole set
    setMode(g.mode);
    setResaParams(g.resa);
    setSampling(g.sampling);
    setMaxNewTokens(g.maxNewTokens);
    setSystemPrompt(g.systemPrompt);
  }
  emit changed();
}

QVariant Settings::value(const QString& key, const QVariant& fallback) const {
  return s_->value("ui/" + key, fallback);
}
void Settings::setValue(const QString& key, const QVariant& value) {
  s_->setValue("ui/" + key, value);
}

void Settings::resetToDefaults() {
  for (const char* group : {"generation", "resa", "sampling"}) s_->remove(QLatin1String(group));
  emit changed();
}

void Settings::sync() { s_->sync(); }

}  // namespace resa::app
