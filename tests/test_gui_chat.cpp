// ctest-labels: gui
// The desktop app driven like a user would, on the offscreen platform, with the small committed
// model (tests/fixtures/models/llama-gqa) or the tiny random preset: typing and Enter stream a
// reply into the chat and the store, the toolbar mode toggle reaches the engine, the Compare
// view draws three series, the event loop answers within 50 ms while an answer streams; the last
// conversation reopens on the next start, Help > About names the version, backend and model, and
// a first run opens the default model ready to chat.
#include <QAbstractItemModelTester>
#include <QAction>
#include <QApplication>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QLineSeries>
#include <QMenuBar>
#include <QMessageBox>
#include <QPushButton>
#include <QScopeGuard>
#include <QSemaphore>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>
#include <QToolButton>

#include <algorithm>
#include <memory>

#include "app/lib/conversation_store.h"
#include "app/lib/engine_worker.h"
#include "app/lib/settings.h"
#include "engine/tokenizer.h"
#include "tests/support/gui_app.h"
#include "tests/support/test_support.h"
#include "ui/chat_view.h"
#include "ui/compare_view.h"
#include "ui/composer.h"
#include "ui/conversation_list.h"
#include "ui/document_panel.h"
#include "ui/empty_state.h"
#include "ui/latency_chart.h"
#include "ui/main_window.h"
#include "ui/screenshot_driver.h"
#include "ui/stats_panel.h"
#include "ui/theme.h"

using namespace resa;
using resa::ui::MainWindow;

namespace {
// How long the calling thread has run on a CPU, and been runnable but waiting for one, in ns
// (Linux schedstat; zeros where unknown): tells our own work from a busy machine in a long gap.
struct SchedTimes {
  qint64 runNs = 0, waitNs = 0;
};
SchedTimes schedTimes() {
  QFile f(QStringLiteral("/proc/thread-self/schedstat"));
  if (!f.open(QIODevice::ReadOnly)) return {};
  const QList<QByteArray> fields = f.readAll().split(' ');
  if (fields.size() < 2) return {};
  return {fields[0].toLongLong(), fields[1].toLongLong()};
}
}  // namespace

class GuiChatTest : public QObject {
  Q_OBJECT

 private:
  resa::test::GuiApp app_;

  // A fresh window, store and settings with `source` loaded.
  void openWindow(const app::ModelSource& source, int maxNewTokens) {
    app_.open(source, [maxNewTokens](app::GenerationSettings& g) {
      g.maxNewTokens = maxNewTokens;
      g.resa.min_blocks = 2;
      g.resa.rectify_every = 8;
    });
  }

  static app::ModelSource fixtureModel() {
    app::ModelSource s;
    s.path = QString::fromStdString(resa::test::fixture("models/llama-gqa").string());
    s.threads = 2;
    return s;
  }

  // Types into the composer with key events and presses Enter; waits for the answer.
  qint64 typeAndSend(const QString& text) {
    ui::ComposerEdit* edit = app_.window->composer()->edit();
    edit->setFocus();
    QTest::keyClicks(edit, text);
    QSignalSpy done(app_.window.get(), &MainWindow::answerFinished);
    QTest::keyClick(edit, Qt::Key_Return);
    if (!done.wait(60000)) return 0;
    return done.first().first().toLongLong();
  }

  void clickMode(DecodeMode m) {
    QAction* a = app_.window->modeAction(m);
    QToolButton* button = nullptr;
    for (QToolButton* b : app_.window->findChildren<QToolButton*>())
      if (b->defaultAction() == a) button = b;
    QVERIFY(button);
    QTest::mouseClick(button, Qt::LeftButton);
    QVERIFY(a->isChecked());
  }

 private slots:
  void initTestCase() { resa::test::GuiApp::prepareApplication(); }

  void cleanup() { app_.close(); }

  void enter_sends_and_streams_a_reply_into_chat_and_store() {
    openWindow(fixtureModel(), 48);
    QSignalSpy chunks(app_.engine->worker(), &app::EngineWorker::tokenChunk);
    const qint64 answerId = typeAndSend(QStringLiteral("Hello, who are you?"));
    QVERIFY(answerId != 0);
    QVERIFY2(chunks.count() >= 1, "no token chunk arrived");
    QVERIFY(app_.window->composer()->text().isEmpty());

    const auto widgets = app_.window->chatView()->messages();
    QCOMPARE(widgets.size(), 2);
    QCOMPARE(widgets[0]->role(), QStringLiteral("user"));
    QCOMPARE(widgets[0]->text(), QStringLiteral("Hello, who are you?"));
    ui::MessageWidget* answer = widgets[1];
    QCOMPARE(answer->messageId(), answerId);
    QVERIFY(!answer->isStreaming());
    QVERIFY(!answer->text().isEmpty());
    // What streamed in equals the final text, and the statistics footer is on the message.
    QString streamed;
    for (const auto& c : chunks) streamed += c.at(1).toString();
    QCOMPARE(streamed, answer->text());
    QVERIFY(answer->statsText().contains(QStringLiteral("tok/s")));

    const auto stored = app_.store->messages(app_.window->currentConversation());
    QCOMPARE(stored.size(), 2);
    QCOMPARE(stored[0].text, QStringLiteral("Hello, who are you?"));
    QCOMPARE(stored[1].role, QStringLiteral("assistant"));
    QCOMPARE(stored[1].text, answer->text());
    QVERIFY(stored[1].complete);
    QVERIFY(!stored[1].stats.isEmpty());
    // The conversation is listed under the first message's words.
    QCOMPARE(app_.window->conversationList()->model()->rowCount(), 1);
  }

  void shift_enter_inserts_a_new_line_without_sending() {
    openWindow(fixtureModel(), 8);
    ui::ComposerEdit* edit = app_.window->composer()->edit();
    edit->setFocus();
    QTest::keyClicks(edit, QStringLiteral("line one"));
    QTest::keyClick(edit, Qt::Key_Return, Qt::ShiftModifier);
    QTest::keyClicks(edit, QStringLiteral("line two"));
    QCOMPARE(app_.window->composer()->text(), QStringLiteral("line one\nline two"));
    QVERIFY(!app_.window->isGenerating());
    QVERIFY(app_.window->chatView()->messages().isEmpty());
  }

  void toolbar_mode_toggle_changes_the_mode_used() {
    openWindow(fixtureModel(), 16);
    for (DecodeMode m : {DecodeMode::kDense, DecodeMode::kSparse, DecodeMode::kResa}) {
      clickMode(m);
      QCOMPARE(app_.settings->mode(), m);
      const qint64 id = typeAndSend(QStringLiteral("Tell me more."));
      QVERIFY(id != 0);
      QCOMPARE(app_.window->lastRequestMode(), m);
      const auto msg = app_.store->message(id);
      QVERIFY(msg.has_value());
      // The engine's own statistics say which mode ran.
      QCOMPARE(app::AnswerStats::fromJson(msg->stats).mode, app::modeToString(m));
      QCOMPARE(msg->mode, app::modeToString(m));
    }
  }

  void mode_switch_during_an_answer_applies_to_the_next_one() {
    app::ModelSource tiny;
    tiny.preset = QStringLiteral("tiny");
    tiny.threads = 2;
    openWindow(tiny, 200);
    clickMode(DecodeMode::kDense);
    QSignalSpy done(app_.window.get(), &MainWindow::answerFinished);
    app_.window->sendMessage(QStringLiteral("A question long enough to take a moment."));
    QVERIFY(app_.window->isGenerating());
    clickMode(DecodeMode::kSparse);  // while the dense answer streams
    QVERIFY(done.wait(60000));
    const auto first = app_.store->message(done.first().first().toLongLong());
    QCOMPARE(first->mode, QStringLiteral("dense"));
    app_.window->sendMessage(QStringLiteral("And now?"));
    QVERIFY(done.wait(60000));
    QCOMPARE(app_.store->message(done.last().first().toLongLong())->mode, QStringLiteral("sparse"));
  }

  void compare_view_produces_three_series() {
    openWindow(fixtureModel(), 16);
    ui::CompareView* cv = app_.window->showCompare();
    cv->setSyntheticLengths({128, 320});
    QSignalSpy finished(app_.window.get(), &MainWindow::comparisonFinished);
    QPushButton* run = nullptr;
    for (QPushButton* b : cv->findChildren<QPushButton*>())
      if (b->text() == QStringLiteral("Run comparison")) run = b;
    QVERIFY(run && run->isEnabled());
    QTest::mouseClick(run, Qt::LeftButton);
    QVERIFY(finished.wait(60000));
    QCOMPARE(cv->throughputSeriesCount(), 3);
    for (int i = 0; i < 3; ++i) {
      QCOMPARE(cv->throughputSeries(i)->count(), 2);  // one point per context length
      QVERIFY(cv->throughputSeries(i)->at(1).x() > cv->throughputSeries(i)->at(0).x());
      QVERIFY(cv->throughputSeries(i)->at(0).y() > 0);
    }
    QCOMPARE(cv->latencyChart()->seriesCount(), 3);  // latency over time, one line per mode
    QCOMPARE(cv->result().runs.size(), 6);
    // Exports: a PNG, and a CSV with a row per decode step of every run.
    const QString png = app_.dir->filePath("compare.png"), csv = app_.dir->filePath("compare.csv");
    QVERIFY(cv->exportPng(png));
    QVERIFY(QImage(png).width() > 300);
    QVERIFY(cv->exportCsv(csv));
    QFile f(csv);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QList<QByteArray> lines = f.readAll().trimmed().split('\n');
    QVERIFY(lines.first().startsWith("model,backend,mode,context_tokens"));
    int steps = 0;
    for (const auto& r : cv->result().runs) steps += int(r.stepMs.size());
    QCOMPARE(lines.size() - 1, steps);
    // The comparison is stored.
    QCOMPARE(app_.store->comparisons(-1).size(), 1);
  }

  void event_loop_answers_within_50_ms_while_an_answer_streams() {
    // Issue 3: "while generating, the event loop keeps answering within 50 ms". The engine runs
    // with the desktop app's default thread count, which leaves a core to the GUI thread.
    app::ModelSource tiny;
    tiny.preset = QStringLiteral("tiny");
    tiny.threads = app::Settings::defaultThreads();
    openWindow(tiny, 400);
    QCOMPARE(app_.settings->threads(), tiny.threads);  // what a fresh install uses
    app::GenerationSettings g = app_.settings->generation();
    g.sampling.temperature = 0.8f;  // random weights under greedy decoding may repeat one
    g.sampling.seed = 3;            // control token, which streams no text
    app_.settings->setGeneration(g);
    // A document makes the prefill take a while as well (byte tokenizer: 1 token per byte).
    const QString doc = app_.dir->filePath("doc.txt");
    {
      QFile f(doc);
      QVERIFY(f.open(QIODevice::WriteOnly));
      for (int i = 0; i < 30; ++i)
        f.write("Sparse attention reads a few blocks of the cache for every new token.\n");
    }
    QVERIFY(app_.window->attachFile(doc));
    clickMode(DecodeMode::kResa);

    // A 10 ms timer on the GUI thread; the largest interval between two of its ticks is the
    // longest the event loop went without answering. Bound: 50 ms plus one timer period.
    constexpr qint64 kTimerMs = 10, kBoundMs = 50 + kTimerMs;
    QElapsedTimer clock;
    qint64 last = -1;
    SchedTimes lastSched = schedTimes();
    struct Gap {
      qint64 ms, endMs, runMs, waitMs;  // run: on a CPU; wait: runnable, waiting for a CPU
    };
    QList<Gap> gaps;
    QTimer timer;
    timer.setTimerType(Qt::PreciseTimer);
    timer.setInterval(int(kTimerMs));
    connect(&timer, &QTimer::timeout, &timer, [&] {
      const qint64 now = clock.elapsed();
      const SchedTimes sched = schedTimes();
      if (last >= 0)
        gaps.append({now - last, now, (sched.runNs - lastSched.runNs) / 1000000,
                     (sched.waitNs - lastSched.waitNs) / 1000000});
      last = now;
      lastSched = sched;
    });
    // What the GUI thread handled, to name the culprit of a long gap.
    QList<QPair<qint64, QString>> events;
    QObject scope;  // the connections end with the test
    app::EngineWorker* w = app_.engine->worker();
    connect(w, &app::EngineWorker::tokenChunk, &scope, [&] {
      events.append({clock.elapsed(), QStringLiteral("token chunk")});
    });
    connect(w, &app::EngineWorker::stepStats, &scope, [&] {
      events.append({clock.elapsed(), QStringLiteral("step stats")});
    });
    connect(w, &app::EngineWorker::prefillProgress, &scope, [&] {
      events.append({clock.elapsed(), QStringLiteral("prefill progress")});
    });
    connect(w, &app::EngineWorker::rectification, &scope, [&] {
      events.append({clock.elapsed(), QStringLiteral("rectification")});
    });
    QSignalSpy chunks(w, &app::EngineWorker::tokenChunk);
    QSignalSpy done(app_.window.get(), &MainWindow::answerFinished);
    clock.start();
    timer.start();
    // Sent from the event loop, as a click would be: sending counts as well.
    QTimer::singleShot(3 * kTimerMs, app_.window.get(), [this] {
      app_.window->sendMessage(QStringLiteral("Summarise the document."));
    });
    QVERIFY(done.wait(60000));
    timer.stop();
    const qint64 finishedAt = clock.elapsed();

    const auto answer = app_.store->message(done.first().first().toLongLong());
    const int tokens = app::AnswerStats::fromJson(answer->stats).generatedTokens;
    std::sort(gaps.begin(), gaps.end(), [](const Gap& a, const Gap& b) { return a.ms > b.ms; });
    QStringList worst;
    for (int i = 0; i < std::min<int>(3, int(gaps.size())); ++i) {
      QStringList during;
      for (const auto& [at, what] : events)
        if (at > gaps[i].endMs - gaps[i].ms && at <= gaps[i].endMs) during << what;
      worst << QStringLiteral(
                   "%1 ms ending at %2 ms: GUI thread ran %3 ms, waited %4 ms for a "
                   "CPU (%5)")
                   .arg(gaps[i].ms)
                   .arg(gaps[i].endMs)
                   .arg(gaps[i].runMs)
                   .arg(gaps[i].waitMs)
                   .arg(during.isEmpty() ? QStringLiteral("-") : during.join(QStringLiteral(", ")));
    }
    const QString report = QStringLiteral(
                               "%1 tokens in %2 ms, %3 chunks, %4 ticks, %5 engine threads; "
                               "longest gaps: %6")
                               .arg(tokens)
                               .arg(finishedAt)
                               .arg(chunks.count())
                               .arg(gaps.size())
                               .arg(tiny.threads)
                               .arg(worst.join(QStringLiteral("; ")));
    qInfo("%s", qPrintable(report));
    QVERIFY2(tokens >= 100, qPrintable(report));
    QVERIFY2(chunks.count() >= 5, "the answer should stream in several chunks");
    QVERIFY(!gaps.isEmpty());
    QVERIFY2(gaps.first().ms < kBoundMs, qPrintable(report));
    // Live statistics reached the panel: rectifications counted and marked on the chart.
    QVERIFY(app_.window->statsPanel()->rectifications() > 0);
    QVERIFY(app_.window->statsPanel()->latencyChart()->rectificationMarkers() > 0);
  }

  void stop_ends_the_answer_and_keeps_the_partial_text() {
    app::ModelSource tiny;
    tiny.preset = QStringLiteral("tiny");
    tiny.threads = 2;
    openWindow(tiny, 4000);
    QSignalSpy chunks(app_.engine->worker(), &app::EngineWorker::tokenChunk);
    QSignalSpy done(app_.window.get(), &MainWindow::answerFinished);
    app_.window->sendMessage(QStringLiteral("Write a very long story."));
    QVERIFY(chunks.wait(30000));
    QCOMPARE(app_.window->composer()->sendButton()->text(), QStringLiteral("Stop"));
    QTest::mouseClick(app_.window->composer()->sendButton(), Qt::LeftButton);
    QVERIFY(done.wait(30000));
    const auto msg = app_.store->message(done.first().first().toLongLong());
    QCOMPARE(app::AnswerStats::fromJson(msg->stats).stopReason, QStringLiteral("cancelled"));
    QVERIFY(app::AnswerStats::fromJson(msg->stats).generatedTokens < 4000);
    QCOMPARE(app_.window->composer()->sendButton()->text(), QStringLiteral("Send"));
  }

  // Stop before the first token: an empty answer is nothing to keep, so the send is undone. The
  // message is back in the box and no empty answer is stored; a chat that the send had started is
  // gone again, an existing one keeps its earlier turns.
  void stop_before_the_first_token_puts_the_message_back() {
    openWindow(fixtureModel(), 8);
    // The engine's thread is held, so the request is still queued when Stop is pressed.
    auto sendAndStopAtOnce = [this](const QString& text) {
      QSemaphore hold;
      QMetaObject::invokeMethod(
          app_.engine->worker(), [&hold] { hold.acquire(); }, Qt::QueuedConnection);
      auto release = qScopeGuard([&hold] { hold.release(); });
      app_.window->sendMessage(text);
      QCOMPARE(app_.window->composer()->sendButton()->text(), QStringLiteral("Stop"));
      QTest::mouseClick(app_.window->composer()->sendButton(), Qt::LeftButton);
      release.dismiss();
      hold.release();
      QTRY_COMPARE_WITH_TIMEOUT(app_.window->composer()->sendButton()->text(),
                                QStringLiteral("Send"), 30000);
    };
    const auto chatsBefore = app_.store->conversations().size();
    sendAndStopAtOnce(QStringLiteral("A question stopped at once"));
    if (QTest::currentTestFailed()) return;
    QCOMPARE(app_.window->composer()->text(), QStringLiteral("A question stopped at once"));
    QCOMPARE(app_.window->currentConversation(), qint64(0));
    QCOMPARE(app_.store->conversations().size(), chatsBefore);
    QVERIFY(app_.window->chatView()->messages().isEmpty());

    app_.window->composer()->clear();
    QVERIFY(typeAndSend(QStringLiteral("Name three colours.")) != 0);
    const qint64 conv = app_.window->currentConversation();
    QVERIFY(conv != 0);
    app_.window->composer()->clear();
    sendAndStopAtOnce(QStringLiteral("Another question"));
    if (QTest::currentTestFailed()) return;
    QCOMPARE(app_.window->composer()->text(), QStringLiteral("Another question"));
    QCOMPARE(app_.window->currentConversation(), conv);
    const auto msgs = app_.store->messages(conv);
    QCOMPARE(msgs.size(), 2);
    QCOMPARE(msgs[0].text, QStringLiteral("Name three colours."));
    QVERIFY(!msgs[1].text.isEmpty());
    QCOMPARE(app_.window->chatView()->messages().size(), 2);
  }

  void regenerate_keeps_the_earlier_answer_as_a_version() {
    openWindow(fixtureModel(), 12);
    const qint64 first = typeAndSend(QStringLiteral("Name three colours."));
    QVERIFY(first != 0);
    QSignalSpy done(app_.window.get(), &MainWindow::answerFinished);
    app_.window->regenerate(first);
    QVERIFY(done.wait(60000));
    const qint64 second = done.first().first().toLongLong();
    QVERIFY(second != first);
    const auto msgs = app_.store->messages(app_.window->currentConversation());
    QCOMPARE(msgs.size(), 2);  // the current version only
    QCOMPARE(msgs[1].id, second);
    QCOMPARE(app_.store->versions(msgs[0].id).size(), 2);
    QCOMPARE(app_.window->chatView()->messages().size(), 2);
  }

  void edit_and_resend_replaces_the_last_turn() {
    openWindow(fixtureModel(), 8);
    QVERIFY(typeAndSend(QStringLiteral("First question")) != 0);
    const qint64 userId = app_.window->chatView()->messages().first()->messageId();
    app_.window->editMessage(userId);
    QVERIFY(app_.window->composer()->isEditing());
    QCOMPARE(app_.window->composer()->text(), QStringLiteral("First question"));
    app_.window->composer()->clear();
    QVERIFY(typeAndSend(QStringLiteral("Better question")) != 0);
    const auto msgs = app_.store->messages(app_.window->currentConversation());
    QCOMPARE(msgs.size(), 2);
    QCOMPARE(msgs[0].text, QStringLiteral("Better question"));
  }

  void attached_document_shows_token_count_and_resa_heat_map() {
    openWindow(fixtureModel(), 24);
    const QString path = app_.dir->filePath("notes.md");
    {
      QFile f(path);
      QVERIFY(f.open(QIODevice::WriteOnly));
      for (int i = 0; i < 40; ++i)
        f.write(QStringLiteral("Paragraph %1: the cache is cut into blocks of sixteen tokens.\n\n")
                    .arg(i)
                    .toUtf8());
    }
    QVERIFY(app_.window->attachFile(path));
    QCOMPARE(app_.window->documentPanel()->documentCount(), 1);
    const auto docs = app_.store->documents(app_.window->currentConversation());
    QCOMPARE(docs.size(), 1);
    QVERIFY(docs[0].tokenCount > 100);
    // The first count is an estimate; the model's tokenizer then replaces it with the exact one.
    QFile f(path);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const auto tok = resa::load_tokenizer(resa::test::fixture("models/llama-gqa"), -1, {});
    const int exact = int(tok->encode(f.readAll().toStdString()).size());
    QTRY_COMPARE(app_.store->documents(app_.window->currentConversation())[0].tokenCount, exact);
    clickMode(DecodeMode::kResa);
    QVERIFY(typeAndSend(QStringLiteral("Which paragraph mentions blocks?")) != 0);
    app_.window->setHeatMapVisible(true);
    QVERIFY(app_.window->documentPanel()->heatSpanCount() > 0);
    QVERIFY(!app_.window->documentPanel()->viewer()->extraSelections().isEmpty());
    // The finished answer's request (with the document's text) is not kept in memory; the heat
    // map above still found its messages.
    QCOMPARE(app_.window->retainedRequestChars(), qsizetype(0));
    // A binary file is refused with a message in the window.
    const QString bin = app_.dir->filePath("blob.bin");
    {
      QFile f(bin);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(QByteArray("\x00\x01\x02garbage", 10));
    }
    QString error;
    QVERIFY(!app_.window->attachFile(bin, &error));
    QVERIFY(error.contains(QStringLiteral("binary")));
    QVERIFY(app_.window->banner()->isVisible());
  }

  void last_open_conversation_is_reopened_on_the_next_start() {
    openWindow(fixtureModel(), 8);
    QVERIFY(typeAndSend(QStringLiteral("Where is the lighthouse?")) != 0);
    const qint64 first = app_.window->currentConversation();
    app_.window->newConversation();
    QVERIFY(typeAndSend(QStringLiteral("A second chat")) != 0);
    QVERIFY(app_.window->currentConversation() != first);
    app_.window->openConversation(first);
    QVERIFY(app_.window->close());
    // A restart: new store, settings and window over the same files.
    app_.window.reset();
    app_.store = std::make_unique<app::ConversationStore>(app_.dir->filePath("chat.sqlite"));
    QVERIFY(app_.store->open());
    app_.settings = std::make_unique<app::Settings>(app_.dir->filePath("settings.ini"));
    app_.window =
        std::make_unique<MainWindow>(app_.store.get(), app_.settings.get(), app_.engine.get());
    QCOMPARE(app_.window->currentConversation(), first);
    QCOMPARE(app_.window->conversationList()->current(), first);
    QVERIFY(!app_.window->isShowingEmptyState());
    const auto shown = app_.window->chatView()->messages();
    QCOMPARE(shown.size(), 2);
    QCOMPARE(shown[0]->text(), QStringLiteral("Where is the lighthouse?"));
    QCOMPARE(shown[1]->messageId(), app_.store->messages(first)[1].id);
    // After New Chat the next start opens on the empty state again.
    app_.window->newConversation();
    QVERIFY(app_.window->close());
    app_.window.reset();
    app_.settings = std::make_unique<app::Settings>(app_.dir->filePath("settings.ini"));
    app_.window =
        std::make_unique<MainWindow>(app_.store.get(), app_.settings.get(), app_.engine.get());
    QCOMPARE(app_.window->currentConversation(), 0);
    QVERIFY(app_.window->isShowingEmptyState());
  }

  void about_shows_the_version_backend_and_model() {
    {
      QTemporaryDir d;
      app::ConversationStore store(d.filePath("s.sqlite"));
      QVERIFY(store.open());
      app::Settings settings(d.filePath("settings.ini"));
      app::EngineThread engine;
      MainWindow w(&store, &settings, &engine);
      QVERIFY(w.aboutText().contains(QStringLiteral("Model: none loaded")));
    }
    openWindow(fixtureModel(), 8);
    const QString text = app_.window->aboutText();
    QVERIFY2(text.contains(QStringLiteral("ReSA Chat " RESA_VERSION)), qPrintable(text));
    // The backend as the status bar names it: "CPU (n threads)", or the GPU's name.
    const app::ModelInfo& info = app_.window->modelInfo();
    QVERIFY(info.gpu || info.backend.startsWith(QStringLiteral("CPU")));
    QVERIFY2(text.contains(QStringLiteral("Backend: ") +
                           (info.gpu ? QStringLiteral("GPU: ") : QString()) + info.backend),
             qPrintable(text));
    QVERIFY2(text.contains(QStringLiteral("Model: llama-gqa")), qPrintable(text));
    // Help > About opens it, without blocking, and Close closes it.
    QMenu* help = nullptr;
    for (QAction* a : app_.window->menuBar()->actions())
      if (a->text() == QStringLiteral("&Help")) help = a->menu();
    QVERIFY(help);
    QAction* about = nullptr;
    for (QAction* a : help->actions())
      if (a->text() == QStringLiteral("About ReSA Chat")) about = a;
    QVERIFY(about);
    about->trigger();
    QPointer<QMessageBox> box;
    for (QWidget* w : QApplication::topLevelWidgets())
      if (w->objectName() == QStringLiteral("AboutDialog") && w->isVisible())
        box = qobject_cast<QMessageBox*>(w);
    QVERIFY(box);
    QCOMPARE(box->text(), text);
    QTest::mouseClick(box->button(QMessageBox::Close), Qt::LeftButton);
    QTRY_VERIFY(!box);  // closed and deleted
  }

  void first_run_opens_the_default_model_ready_to_chat() {
    // Issue 6: empty settings in a temporary folder, no GPU. The default model is the committed
    // one, named by RESA_DEMO_MODEL: the first place start() looks (the others are relative to
    // the program, and a test binary is not where resa-chat is).
    qputenv("RESA_DEMO_MODEL", fixtureModel().path.toUtf8());
    const auto unset = qScopeGuard([] { qunsetenv("RESA_DEMO_MODEL"); });
    app_.dir = std::make_unique<QTemporaryDir>();
    app_.store = std::make_unique<app::ConversationStore>(app_.dir->filePath("chat.sqlite"));
    QVERIFY(app_.store->open());
    app_.settings = std::make_unique<app::Settings>(app_.dir->filePath("settings.ini"));
    QVERIFY(app_.settings->lastModelPath().isEmpty() && app_.settings->lastPreset().isEmpty());
    app_.engine = std::make_unique<app::EngineThread>();
    app_.window =
        std::make_unique<MainWindow>(app_.store.get(), app_.settings.get(), app_.engine.get());
    app_.window->show();
    QSignalSpy ready(app_.window.get(), &MainWindow::modelReady);
    app_.window->start();
    app_.window->composer()->setText(QStringLiteral("Hello"));
    QVERIFY(!app_.window->composer()->sendButton()->isEnabled());  // not before the model is loaded
    QVERIFY2(ready.wait(60000), qPrintable(app_.window->banner()->text()));
    QVERIFY(app_.window->isModelLoaded());
    QCOMPARE(app_.window->modelInfo().name, QStringLiteral("llama-gqa"));
    // Without a GPU it runs on the CPU (a GPU host would pick its GPU here).
    QVERIFY(app_.window->modelInfo().gpu ||
            app_.window->modelInfo().backend.startsWith(QStringLiteral("CPU")));
    QVERIFY(app_.window->composer()->sendButton()->isEnabled());
    QCOMPARE(app_.settings->lastModelPath(), QDir(fixtureModel().path).canonicalPath());
    // The empty state says how to open another model and how to attach a document.
    QVERIFY(app_.window->isShowingEmptyState());
    QVERIFY(app_.window->emptyState()->isVisible());
    const QString how = app_.window->emptyState()->text();
    QVERIFY2(how.contains(QStringLiteral("Model ready: llama-gqa")), qPrintable(how));
    QVERIFY2(how.contains(QStringLiteral("To open another model: Model ▸ Open Model… (Ctrl+O)")),
             qPrintable(how));
    QVERIFY2(how.contains(QStringLiteral("Attach a document")) &&
                 how.contains(QStringLiteral("File ▸ Attach Document…, Ctrl+D")) &&
                 how.contains(QStringLiteral("drop it anywhere on the window")),
             qPrintable(how));
    // Ready to chat: Enter sends and an answer comes back.
    QSignalSpy done(app_.window.get(), &MainWindow::answerFinished);
    QTest::keyClick(app_.window->composer()->edit(), Qt::Key_Return);
    QVERIFY(done.wait(60000));
    QVERIFY(!app_.window->isShowingEmptyState());
  }

  void model_folder_validation_names_what_is_missing() {
    QTemporaryDir d;
    QVERIFY(MainWindow::validateModelFolder(d.path()).contains(QStringLiteral("config.json")));
    QFile c(d.filePath("config.json"));
    QVERIFY(c.open(QIODevice::WriteOnly));
    c.close();
    QVERIFY(MainWindow::validateModelFolder(d.path()).contains(QStringLiteral("safetensors")));
    QVERIFY(MainWindow::validateModelFolder(
                QString::fromStdString(resa::test::fixture("models/llama-gqa").string()))
                .isEmpty());
  }

  void conversation_list_renames_deletes_and_searches() {
    QTemporaryDir d;
    app::ConversationStore store(d.filePath("s.sqlite"));
    QVERIFY(store.open());
    const qint64 a = store.createConversation(QStringLiteral("Quarterly report"));
    const qint64 b = store.createConversation(QStringLiteral("Holiday plans"));
    store.addMessage(b, QStringLiteral("user"), QStringLiteral("Where is the lighthouse?"));
    ui::ConversationList list(&store);
    QAbstractItemModelTester tester(list.model(),
                                    QAbstractItemModelTester::FailureReportingMode::QtTest);
    QCOMPARE(list.model()->rowCount(), 2);
    QVERIFY(list.renameConversation(a, QStringLiteral("Q3 report")));
    QCOMPARE(store.conversation(a)->title, QStringLiteral("Q3 report"));
    list.setSearch(QStringLiteral("lighthouse"));  // message text, through FTS5
    QCOMPARE(list.model()->rowCount(), 1);
    QCOMPARE(list.model()->row(0).id, b);
    list.setSearch(QStringLiteral("q3"));  // title
    QCOMPARE(list.model()->rowCount(), 1);
    QCOMPARE(list.model()->row(0).id, a);
    list.setSearch(QString());
    QSignalSpy deleted(&list, &ui::ConversationList::conversationDeleted);
    QVERIFY(list.deleteConversation(a, /*confirmed=*/true));
    QCOMPARE(deleted.count(), 1);
    QCOMPARE(list.model()->rowCount(), 1);
    QVERIFY(!store.conversation(a).has_value());
  }
};

QTEST_MAIN(GuiChatTest)
#include "test_gui_chat.moc"
