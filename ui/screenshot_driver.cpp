#include "ui/screenshot_driver.h"

#include <QApplication>
#include <QDeadlineTimer>
#include <QDir>
#include <QFile>
#include <QPointer>
#include <QTemporaryDir>
#include <QThread>

#include <cstdio>

#include "ui/chat_view.h"
#include "ui/compare_view.h"
#include "ui/composer.h"
#include "ui/empty_state.h"
#include "ui/main_window.h"
#include "ui/settings_dialog.h"

namespace resa::ui {

namespace {

// Our own words about the method, long enough (~1,000 tokens) that sparse steps read a tenth.
const char* kSampleDocument = R"(# Rectified Sparse Attention: notes for the reading group

## Why long contexts are slow
Decoding one token with a long context is memory-bound. Every new token reads the whole
key-value cache, so at 100,000 tokens the cache, not the weights, decides the speed. Doubling
the document doubles the time per token.

## Block-sparse decoding
The cache is cut into blocks of sixteen tokens. For every block and key head the engine keeps
the element-wise minimum and maximum of the keys. A query scores a block by the largest dot
product any key inside it could reach, then reads only the best tenth of the blocks, plus the
first block (the attention sink) and the newest one. Reading a tenth of the cache makes each
step several times cheaper when the context is long.

## The catch: errors pile up
Sparse attention is an approximation. Its small errors enter the cache entries of every token it
generates, later tokens attend to those entries, and the output drifts away from what dense
attention would have written. Over a few hundred tokens the drift becomes visible: answers
repeat themselves or lose track of the question.

## Practical matters
The reading group meets in the room behind the red door. The code of the red door is 5093.

## Rectification
ReSA bounds the drift. Every f generated tokens (f = 32 by default) it runs one dense forward pass
over those f tokens, in parallel like a small prefill, and overwrites their keys and values in
every layer. After a rectification the cache is exactly what dense decoding would have produced;
only the newest tokens were written under sparse attention. The cost is about one dense step,
shared by f tokens.

## What to measure
- Time to first token, and prompt processing speed apart from generation speed.
- Tokens per second now, and how it changes as the context grows.
- Sparsity: the share of the cache that a step does not read.
- Rectifications: how often, and how long each one takes.
- Quality: whether the answer matches the dense answer.

## Results reported by the authors
On math reasoning the sparse model loses about three points against dense; ReSA recovers most of
them. At 256K tokens of context, decoding is more than twice as fast end to end. At a few
thousand tokens the gain is small: the cache is still cheap to read.
)";

bool save(QWidget* w, const QString& path) {
  w->repaint();
  QApplication::processEvents();
  const bool ok = w->grab().save(path, "PNG");
  std::fprintf(stderr, "resa-chat: %s %s\n", ok ? "wrote" : "could not write",
               qPrintable(QDir::toNativeSeparators(path)));
  return ok;
}

}  // namespace

bool waitUntil(const std::function<bool()>& done, int timeoutMs) {
  QDeadlineTimer deadline(timeoutMs);
  while (!done() && !deadline.hasExpired()) {
    QApplication::processEvents(QEventLoop::AllEvents, 20);
    QThread::msleep(2);
  }
  return done();
}

int runScreenshots(MainWindow& w, const ScreenshotOptions& o) {
  const int timeoutMs = o.timeoutS * 1000;
  QDir().mkpath(o.outDir);
  QTemporaryDir tmp;
  w.resize(1440, 900);
  w.show();
  waitUntil([] { return false; }, 200);
  if (!save(&w, o.outDir + QStringLiteral("/first-run.png"))) return 1;

  bool ready = false;
  QObject::connect(&w, &MainWindow::modelReady, &w, [&] { ready = true; });
  w.loadModel(o.model);
  if (!waitUntil([&] { return ready; }, timeoutMs)) {
    std::fprintf(stderr, "resa-chat: the model did not load: %s\n", qPrintable(w.banner()->text()));
    return 1;
  }

  const QString docPath = tmp.filePath(QStringLiteral("resa-notes.md"));
  {
    QFile f(docPath);
    if (!f.open(QIODevice::WriteOnly)) return 1;
    f.write(kSampleDocument);
  }
  if (!w.attachFile(docPath)) return 1;
  w.setMode(DecodeMode::kResa);

  bool finished = false, grabbed = false;
  QObject::connect(&w, &MainWindow::answerFinished, &w, [&] { finished = true; });
  // The bundled demo model finds facts in a document (tools/train/README.md): ask for one, so
  // the heat map shows which passage the answer read. Mid-answer: grabbed at the first
  // re-render that shows answer text while the message still streams (the demo model answers
  // in about 15 tokens, so on a fast machine the grab may come only after the answer).
  const QString question = QStringLiteral("What is the code of the red door?");
  w.composer()->setText(question);
  w.sendMessage(question);
  if (MessageWidget* streaming = w.chatView()->lastMessage(QStringLiteral("assistant"))) {
    QObject::connect(streaming, &MessageWidget::rendered, &w, [&, streaming] {
      if (!grabbed && !finished && streaming->isStreaming() && streaming->text().size() > 4)
        grabbed = save(&w, o.outDir + QStringLiteral("/main-window.png"));
    });
  }
  if (!waitUntil([&] { return finished; }, timeoutMs)) return 1;
  if (!grabbed && !save(&w, o.outDir + QStringLiteral("/main-window.png"))) return 1;
  w.setHeatMapVisible(true);
  waitUntil([] { return false; }, 300);
  if (!save(&w, o.outDir + QStringLiteral("/heat-map.png"))) return 1;
  w.setHeatMapVisible(false);

  SettingsDialog* d = w.settingsDialog();
  d->show();
  waitUntil([] { return false; }, 200);
  const bool settingsOk = save(d, o.outDir + QStringLiteral("/settings.png"));
  d->hide();
  if (!settingsOk) return 1;

  bool compared = false;
  QObject::connect(&w, &MainWindow::comparisonFinished, &w, [&] { compared = true; });
  CompareView* cv = w.showCompare();
  cv->resize(1200, 820);
  const int limit = w.modelInfo().ctxLimit > 0 ? w.modelInfo().ctxLimit : 2048;
  QList<int> lengths;
  for (int n : {256, 512, 1024, 1536, 3072, 6144})
    if (n + 128 <= limit) lengths << n;
  cv->setSyntheticLengths(lengths);
  emit cv->runRequested();
  if (!waitUntil([&] { return compared; }, timeoutMs)) {
    std::fprintf(stderr, "resa-chat: the comparison did not finish\n");
    return 1;
  }
  waitUntil([] { return false; }, 300);
  if (!save(cv, o.outDir + QStringLiteral("/compare.png"))) return 1;
  cv->close();
  return 0;
}

}  // namespace resa::ui
