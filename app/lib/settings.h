// User settings kept with QSettings: the last model and conversation, the decoding mode, ReSA and
// sampling parameters, answer length, context limit, threads, system prompt. Defaults are RESA.md's
// reference values; a stored value that is out of range reads as its default, so a damaged
// settings file never reaches the engine. changed() fires after every setter that changes
// something.
#pragma once

#include <QObject>
#include <QSettings>
#include <QString>
#include <QVariant>

#include <memory>

#include "app/lib/app_types.h"

namespace resa::app {

class Settings : public QObject {
  Q_OBJECT

 public:
  // The app's QSettings (organisation / application names of QCoreApplication).
  explicit Settings(QObject* parent = nullptr);
  // A given file (tests), in INI format.
  explicit Settings(const QString& iniPath, QObject* parent = nullptr);
  ~Settings() override;

  static GenerationSettings defaultGeneration();

  QString lastModelPath() const;  // "" when none was loaded yet
  void setLastModelPath(const QString& path);
  QString lastPreset() const;  // a preset used instead of a folder, else ""
  void setLastPreset(const QString& preset);
  // The conversation open when the app last ran (reopened on start), 0: none.
  qint64 lastConversation() const;
  void setLastConversation(qint64 id);

  resa::DecodeMode mode() const;
  void setMode(resa::DecodeMode mode);
  resa::ResaParams resaParams() const;
  void setResaParams(const resa::ResaParams& p);
  resa::SamplingParams sampling() const;
  void setSampling(const resa::SamplingParams& p);
  int maxNewTokens() const;
  void setMaxNewTokens(int n);
  QString systemPrompt() const;
  void setSystemPrompt(const QString& text);

  int contextLimit() const;  // 0: the model's
  void setContextLimit(int tokens);
  // CPU threads of the engine; 0: all cores. Unset: defaultThreads().
  int threads() const;
  void setThreads(int n);
  // The usable cores, but one fewer from 4 cores on: there the GUI thread keeps a core while
  // the engine's threads are busy (issue 3: the event loop answers within 50 ms while an answer
  // streams); on 2 or 3 cores decoding speed matters more.
  static int defaultThreads();
  // Where KV snapshots go: a cache (they can always be recomputed), by default
  // CacheLocation/kv-snapshots; "" turns them off.
  QString snapshotDirectory() const;
  void setSnapshotDirectory(const QString& dir);

  // All of the above that shape an answer, and setting them at once.
  GenerationSettings generation() const;
  void setGeneration(const GenerationSettings& g);

  // Free-form values for the views (window geometry, splitter state).
  QVariant value(const QString& key, const QVariant& fallback = {}) const;
  void setValue(const QString& key, const QVariant& value);

  void resetToDefaults();
  void sync();

 signals:
  void changed();

 private:
  void put(const QString& key, const QVariant& value);

  std::unique_ptr<QSettings> s_;
};

}  // namespace resa::app
