// The desktop app as the gui suites drive it: a main window over a fresh conversation store and
// settings in a temporary folder, with a model loaded on its engine thread.
#pragma once

#include <QApplication>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>

#include <functional>
#include <memory>

#include "app/lib/app_types.h"
#include "app/lib/conversation_store.h"
#include "app/lib/engine_worker.h"
#include "app/lib/settings.h"
#include "ui/empty_state.h"
#include "ui/main_window.h"
#include "ui/theme.h"

namespace resa::test {

struct GuiApp {
  // Once per suite (initTestCase): the meta types queued signals carry, and the app's theme.
  static void prepareApplication() {
    app::registerAppMetaTypes();
    ui::applyTheme(*qApp);
  }

  std::unique_ptr<QTemporaryDir> dir;
  std::unique_ptr<app::ConversationStore> store;
  std::unique_ptr<app::Settings> settings;
  std::unique_ptr<app::EngineThread> engine;
  std::unique_ptr<ui::MainWindow> window;

  // Replaces everything: new folder, store and settings (`tune` adjusts the generation settings
  // first), a shown window, `source` loaded. A failure fails the calling test (QVERIFY).
  void open(const app::ModelSource& source,
            const std::function<void(app::GenerationSettings&)>& tune) {
    window.reset();
    engine.reset();
    dir = std::make_unique<QTemporaryDir>();
    store = std::make_unique<app::ConversationStore>(dir->filePath("chat.sqlite"));
    QVERIFY(store->open());
    settings = std::make_unique<app::Settings>(dir->filePath("settings.ini"));
    app::GenerationSettings g = settings->generation();
    tune(g);
    settings->setGeneration(g);
    engine = std::make_unique<app::EngineThread>();
    window = std::make_unique<ui::MainWindow>(store.get(), settings.get(), engine.get());
    window->show();
    QSignalSpy ready(window.get(), &ui::MainWindow::modelReady);
    window->loadModel(source);
    QVERIFY2(ready.wait(60000), qPrintable(window->banner()->text()));
  }

  // After each test: the window, then the engine thread.
  void close() {
    window.reset();
    engine.reset();
  }
};

}  // namespace resa::test
