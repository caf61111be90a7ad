// Drives the main window through a short session (load a model, attach a document, ask in ReSA
// mode, show the heat map, Settings and Compare) and saves what a user sees as PNGs: resa-chat
// --screenshot DIR. Works on the offscreen platform.
#pragma once

#include <QObject>
#include <QString>

#include "app/lib/app_types.h"

namespace resa::ui {

class MainWindow;

struct ScreenshotOptions {
  QString outDir;
  app::ModelSource model;
  int timeoutS = 120;
};

// Returns 0 when every screenshot was written, else prints why and returns 1.
int runScreenshots(MainWindow& window, const ScreenshotOptions& options);

// Spins the event loop until `done` returns true or `timeoutMs` passes; returns done().
bool waitUntil(const std::function<bool()>& done, int timeoutMs);

}  // namespace resa::ui
