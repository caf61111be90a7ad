// resa-chat: the desktop app. Options: --model DIR / --preset NAME to load instead of the last
// model, --data DIR for the database, settings and KV snapshots (default: the user's
// application-data folder), --screenshot DIR to save screenshots of a scripted session.
#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QStandardPaths>
#include <QTemporaryDir>

#include <cstdio>
#include <cstdlib>
#include <memory>

#ifdef __linux__
#include <sched.h>
#include <unistd.h>
#endif

#include "app/lib/app_types.h"
#include "app/lib/conversation_store.h"
#include "app/lib/default_model.h"
#include "app/lib/engine_worker.h"
#include "app/lib/settings.h"
#include "ui/main_window.h"
#include "ui/screenshot_driver.h"
#include "ui/theme.h"

namespace {

// CPUs this process may run on (a container's share, not the host's cores).
int usableCpus() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1, QThread::idealThreadCount());
}

}  // namespace

int main(int argc, char** argv) {
  // The engine's OpenMP threads must not spin while they wait: spinning threads take the cores
  // the GUI thread needs (measured: 10-15x slower decoding and stalls of the event loop on a
  // 2-core machine). libgomp reads the policy when it loads, before main(), so set it and
  // start again once.
#ifdef __linux__
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: then go on as we are
  }
#endif
  QApplication app(argc, argv);
  QApplication::setOrganizationName(QStringLiteral("ReSA"));
  QApplication::setApplicationName(QStringLiteral("ReSA Chat"));
  QApplication::setApplicationVersion(QStringLiteral(RESA_VERSION));
  QApplication::setDesktopFileName(QStringLiteral("resa-chat"));

  QCommandLineParser p;
  p.setApplicationDescription(QStringLiteral(
      "Chat with a local LLM about long documents, in dense, sparse or ReSA decoding."));
  p.addHelpOption();
  p.addVersionOption();
  const QCommandLineOption modelOpt(QStringLiteral("model"),
                                    QStringLiteral("Load this Hugging Face model folder."),
                                    QStringLiteral("dir"));
  const QCommandLineOption presetOpt(
      QStringLiteral("preset"), QStringLiteral("Load a preset with random weights (tiny, ...)."),
      QStringLiteral("name"));
  const QCommandLineOption dataOpt(
      QStringLiteral("data"),
      QStringLiteral("Folder for the database, settings and KV snapshots (default: the "
                     "application-data folder)."),
      QStringLiteral("dir"));
  const QCommandLineOption shotOpt(
      QStringLiteral("screenshot"),
      QStringLiteral("Run a scripted session offscreen and save PNG screenshots into dir."),
      QStringLiteral("dir"));
  p.addOptions({modelOpt, presetOpt, dataOpt, shotOpt});
  p.process(app);

  resa::app::registerAppMetaTypes();
  resa::ui::applyTheme(app);

  const bool screenshots = p.isSet(shotOpt);
  QTemporaryDir scratch;  // screenshots run on a fresh database and settings
  QString dataDir = p.value(dataOpt);
  if (screenshots && dataDir.isEmpty()) dataDir = scratch.path();

  std::unique_ptr<resa::app::ConversationStore> store;
  std::unique_ptr<resa::app::Settings> settings;
  QString snapshots;
  if (dataDir.isEmpty()) {
    store = std::make_unique<resa::app::ConversationStore>();
    settings = std::make_unique<resa::app::Settings>();
    snapshots = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) +
                QStringLiteral("/kv-snapshots");
  } else {
    QDir().mkpath(dataDir);
    store = std::make_unique<resa::app::ConversationStore>(dataDir +
                                                           QStringLiteral("/conversations.sqlite"));
    settings = std::make_unique<resa::app::Settings>(dataDir + QStringLiteral("/settings.ini"));
    snapshots = dataDir + QStringLiteral("/kv-snapshots");
  }
  store->open();  // falls back to memory with a warning the window shows
  if (settings->threads() == 0) settings->setThreads(usableCpus());

  resa::app::EngineThread engine;
  engine.setSnapshotDirectory(snapshots);
  resa::ui::MainWindow window(store.get(), settings.get(), &engine);

  resa::app::ModelSource source;
  source.threads = settings->threads();
  source.ctxLimit = settings->contextLimit();
  if (p.isSet(modelOpt)) source.path = QDir(p.value(modelOpt)).absolutePath();
  if (p.isSet(presetOpt)) source.preset = p.value(presetOpt);

  if (screenshots) {
    if (source.path.isEmpty() && source.preset.isEmpty()) {
      // The bundled demo model (or, in a checkout without it, the small committed one).
      source.path = resa::app::defaultModelDir();
      if (source.path.isEmpty()) source.preset = QStringLiteral("tiny");
    }
    resa::app::GenerationSettings g = settings->generation();
    g.maxNewTokens = 320;
    g.sampling.temperature = 0.0f;  // greedy, as the demo model's generation_config.json says
    g.resa.min_blocks = 4;          // a ~1,000-token context: let the ratio (10%) decide
    g.resa.rectify_every = 16;
    settings->setGeneration(g);
    resa::ui::ScreenshotOptions o;
    o.outDir = QDir(p.value(shotOpt)).absolutePath();
    o.model = source;
    return resa::ui::runScreenshots(window, o);
  }

  const QByteArray geometry = settings->value(QStringLiteral("window/geometry")).toByteArray();
  if (!geometry.isEmpty()) window.restoreGeometry(geometry);
  window.show();
  if (!source.path.isEmpty() || !source.preset.isEmpty())
    window.loadModel(source);
  else
    window.start();
  return app.exec();
}
