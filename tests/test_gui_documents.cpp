// ctest-labels: gui
// Documents in the desktop app (issue 3), driven like a user would on the offscreen platform with
// the small committed model (tests/fixtures/models/llama-gqa): a PDF attached through the Attach
// path is listed with the model's exact token count, a damaged one is refused by name; files
// dropped on the window are attached and stored, an image is refused; a turn that would overflow
// a small context asks what to drop instead of cutting silently, and Cancel loses nothing.
#include <QApplication>
#include <QDialogButtonBox>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QElapsedTimer>
#include <QFile>
#include <QImage>
#include <QMimeData>
#include <QPainter>
#include <QPdfWriter>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QRadioButton>
#include <QScrollBar>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>

#include <algorithm>
#include <memory>

#include "app/lib/conversation_store.h"
#include "app/lib/engine_worker.h"
#include "app/lib/settings.h"
#include "engine/tokenizer.h"
#include "tests/support/gui_app.h"
#include "tests/support/test_support.h"
#include "ui/chat_view.h"
#include "ui/composer.h"
#include "ui/document_panel.h"
#include "ui/empty_state.h"
#include "ui/main_window.h"
#include "ui/overflow_dialog.h"
#include "ui/theme.h"

using namespace resa;
using resa::ui::MainWindow;

namespace {

void writeFile(const QString& path, const QByteArray& bytes) {
  QFile f(path);
  QVERIFY2(f.open(QIODevice::WriteOnly), qPrintable(path));
  QCOMPARE(f.write(bytes), bytes.size());
}

// Sends what a file manager sends when files are dragged onto `target` and let go there.
// Returns whether the drop was taken.
bool dropFiles(QWidget* target, const QStringList& paths) {
  QMimeData mime;
  QList<QUrl> urls;
  for (const QString& p : paths) urls << QUrl::fromLocalFile(p);
  mime.setUrls(urls);
  const QPoint at = target->rect().center();
  QDragEnterEvent enter(at, Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
  QApplication::sendEvent(target, &enter);
  if (!enter.isAccepted()) return false;
  QDropEvent drop(QPointF(at), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
  QApplication::sendEvent(target, &drop);
  return drop.isAccepted();
}

// Prose of about `words` words, different for each `seed`.
QString prose(int words, int seed) {
  static const char* kWords[] = {"the",    "keeper", "counted", "ships", "in",    "harbour",
                                 "light",  "river",  "north",   "cargo", "tides", "stone",
                                 "window", "paper",  "signal",  "storm", "quiet", "bridge"};
  QStringList out;
  for (int i = 0; i < words; ++i) out << QLatin1String(kWords[(i * 7 + seed * 5 + i / 3) % 18]);
  return out.join(QLatin1Char(' ')) + QLatin1Char('.');
}

}  // namespace

class GuiDocumentsTest : public QObject {
  Q_OBJECT

 private:
  resa::test::GuiApp app_;

  static QString fixtureDir() {
    return QString::fromStdString(resa::test::fixture("models/llama-gqa").string());
  }

  // A fresh store and settings; a window over them with the committed model loaded with a
  // context of `ctxLimit` tokens (0: the model's).
  void openWindow(int ctxLimit = 0, int maxNewTokens = 8) {
    app::ModelSource s;
    s.path = fixtureDir();
    s.threads = 2;
    s.ctxLimit = ctxLimit;
    app_.open(s, [maxNewTokens](app::GenerationSettings& g) { g.maxNewTokens = maxNewTokens; });
  }

  static int exactTokens(const QString& text) {
    const auto tok = resa::load_tokenizer(resa::test::fixture("models/llama-gqa"), -1, {});
    return int(tok->encode(text.toStdString()).size());
  }

  // A conversation with `doc` attached and two earlier turns, open in the window, ready for a
  // third message that does not fit a 512-token context.
  qint64 conversationNearTheLimit(const QString& doc) {
    const qint64 conv = app_.store->createConversation(QStringLiteral("Harbour log"));
    app_.store->addDocument(conv, QStringLiteral("log.txt"), doc, exactTokens(doc));
    for (int turn = 0; turn < 2; ++turn) {
      const qint64 user = app_.store->addMessage(conv, QStringLiteral("user"), prose(60, turn));
      const qint64 answer = app_.store->beginAnswer(conv, user, QStringLiteral("resa"));
      app_.store->finishAnswer(answer, prose(60, turn + 10), QStringLiteral("resa"), {});
    }
    app_.window->openConversation(conv);
    return conv;
  }

  // Types `text` into the composer and presses Enter; returns the overflow question once it is
  // on screen (it does not block: the test goes on while it is open).
  ui::OverflowDialog* typeAndSendIntoOverflow(const QString& text) {
    ui::ComposerEdit* edit = app_.window->composer()->edit();
    edit->setFocus();
    QTest::keyClicks(edit, text);
    QTest::keyClick(edit, Qt::Key_Return);
    if (!QTest::qWaitFor([this] { return app_.window->overflowDialog() != nullptr; }, 30000))
      return nullptr;
    return app_.window->overflowDialog();
  }

  static QPushButton* button(QDialog* d, QDialogButtonBox::StandardButton which) {
    auto* box = d->findChild<QDialogButtonBox*>();
    return box ? box->button(which) : nullptr;
  }

 private slots:
  void initTestCase() { resa::test::GuiApp::prepareApplication(); }

  void cleanup() { app_.close(); }

  // A 1 MB document with a heat span on each of its 15,625 KV blocks of 64 characters, its text
  // laid out: the overlay holds the spans around the visible text (adjacent ones of one colour
  // merged) and follows the scroll, and showing the caption no longer relays the text out. One
  // selection per span took 4.1-6.0 s here (3 runs); this takes about 60 ms.
  void heat_map_of_a_long_document_overlays_the_text_on_screen() {
    ui::DocumentPanel panel;
    panel.resize(420, 700);
    panel.show();
    QVERIFY(QTest::qWaitForWindowExposed(&panel));
    QString text;
    while (text.size() < 1'000'000)
      text +=
          QStringLiteral("Long documents make decoding slow; ReSA reads the blocks that matter.\n");
    text.truncate(1'000'000);
    app::DocumentRecord d;
    d.name = QStringLiteral("long.txt");
    d.text = text;
    d.tokenCount = 250'000;
    panel.setDocuments({d}, false);
    QCoreApplication::processEvents();  // the text's layout: not part of showing the heat map
    QList<app::HeatSpan> spans;
    constexpr int kChars = 64;
    for (int b = 0; b * kChars < text.size(); ++b)
      spans.append(app::HeatSpan{QStringLiteral("document"), 0, b * kChars,
                                 int(std::min<qsizetype>((b + 1) * kChars, text.size())),
                                 double((b * 7919) % 97 + 1)});
    QCOMPARE(spans.size(), 15'625);
    const int hot = 9'000;  // the hottest block: the viewer scrolls to it
    spans[hot].hits = 200;
    auto covered = [&](int pos) {
      for (const QTextEdit::ExtraSelection& e : panel.viewer()->extraSelections())
        if (e.cursor.selectionStart() <= pos && pos < e.cursor.selectionEnd()) return true;
      return false;
    };
    QElapsedTimer t;
    t.start();
    panel.setHeat(spans, 200, QStringLiteral("ReSA read these passages"));
    QCoreApplication::processEvents();
    const qint64 ms = t.elapsed();
    QVERIFY2(ms < 250, qPrintable(QStringLiteral("heat map shown in %1 ms").arg(ms)));
    QCOMPARE(panel.heatSpanCount(), spans.size());
    const int n = panel.overlaySelectionCount();
    QVERIFY2(n > 0 && n < spans.size() / 20, qPrintable(QStringLiteral("%1 selections").arg(n)));
    QVERIFY(covered(spans[hot].charStart));
    QVERIFY(!covered(spans.first().charStart));  // far from the screen: not laid out
    QScrollBar* bar = panel.viewer()->verticalScrollBar();
    bar->setValue(bar->maximum());
    QCoreApplication::processEvents();
    QVERIFY(covered(spans.last().charStart));
    QVERIFY(!covered(spans[hot].charStart));
    bar->setValue(0);
    QCoreApplication::processEvents();
    QVERIFY(covered(spans.first().charStart));
    // Clearing the heat map removes the overlay.
    panel.clearHeat();
    QCOMPARE(panel.overlaySelectionCount(), 0);
  }

  void attached_pdf_is_listed_with_its_exact_token_count_and_text() {
    openWindow();
    const QString sentence =
        QStringLiteral("The lighthouse keeper counted forty seven ships in March.");
    const QString path = app_.dir->filePath("harbour report.pdf");
    {
      QPdfWriter pdf(path);
      pdf.setTitle(QStringLiteral("Harbour report"));
      QPainter p(&pdf);
      p.setFont(QFont(QStringLiteral("DejaVu Sans"), 12));
      p.drawText(QRect(0, 0, pdf.width(), pdf.height() / 4), Qt::TextWordWrap, sentence);
    }
    QString error;
    QVERIFY2(app_.window->attachFile(path, &error), qPrintable(error));  // what Attach calls
    const qint64 conv = app_.window->currentConversation();
    QVERIFY(conv != 0);
    const auto docs = app_.store->documents(conv);
    QCOMPARE(docs.size(), 1);
    QCOMPARE(docs[0].name, QStringLiteral("harbour report.pdf"));
    QVERIFY2(docs[0].text.simplified().contains(sentence), qPrintable(docs[0].text));
    // The panel shows the estimate first, then the model tokenizer's exact count.
    const int exact = exactTokens(docs[0].text);
    QVERIFY(exact > 5);
    QTRY_COMPARE(app_.store->documents(conv)[0].tokenCount, exact);
    QTRY_COMPARE(app_.window->documentPanel()->documentLabel(0),
                 QStringLiteral("harbour report.pdf  (%1 tokens)").arg(ui::formatCount(exact)));
    QCOMPARE(app_.window->documentPanel()->documentCount(), 1);
    QVERIFY(app_.window->documentPanel()->viewer()->toPlainText().simplified().contains(sentence));
  }

  void damaged_pdf_is_refused_with_a_message_naming_it() {
    openWindow();
    const QString path = app_.dir->filePath("scan-2024.pdf");
    writeFile(path, QByteArray("%PDF-1.7\n1 0 obj << /Type /Catalog >>\nnot a real pdf\x01\x02"));
    QString error;
    QVERIFY(!app_.window->attachFile(path, &error));
    QVERIFY2(error.contains(QStringLiteral("scan-2024.pdf")), qPrintable(error));
    QVERIFY2(error.contains(QStringLiteral("damaged or not a PDF")), qPrintable(error));
    QVERIFY(app_.window->banner()->isVisible());
    QVERIFY(app_.window->banner()->isError());
    QCOMPARE(app_.window->banner()->text(), error);
    QCOMPARE(app_.window->currentConversation(), 0);  // nothing was attached
    QCOMPARE(app_.window->documentPanel()->documentCount(), 0);
    // The window still works: a good file attaches after the bad one.
    const QString good = app_.dir->filePath("notes.txt");
    writeFile(good, "Notes about the harbour.\n");
    QVERIFY(app_.window->attachFile(good));
    QCOMPARE(app_.window->documentPanel()->documentCount(), 1);
  }

  void dropped_text_and_markdown_files_are_attached_and_stored() {
    openWindow();
    const QString txt = app_.dir->filePath("tides.txt"), md = app_.dir->filePath("plan.md");
    writeFile(txt, "High tide at 06:12 and 18:40.\n");
    writeFile(md, "# Plan\n\n- inspect the lamp\n- log the ships\n");
    QVERIFY(dropFiles(app_.window.get(), {txt, md}));
    const qint64 conv = app_.window->currentConversation();
    QVERIFY(conv != 0);
    const auto docs = app_.store->documents(conv);
    QCOMPARE(docs.size(), 2);
    QCOMPARE(docs[0].name, QStringLiteral("tides.txt"));
    QCOMPARE(docs[0].text, QStringLiteral("High tide at 06:12 and 18:40.\n"));
    QCOMPARE(docs[1].name, QStringLiteral("plan.md"));
    QCOMPARE(docs[1].text, QStringLiteral("# Plan\n\n- inspect the lamp\n- log the ships\n"));
    QCOMPARE(app_.window->documentPanel()->documentCount(), 2);
    QVERIFY(!app_.window->banner()->isVisible());
    // Stored with the conversation: they come back with it.
    app_.window->newConversation();
    QCOMPARE(app_.window->documentPanel()->documentCount(), 0);
    app_.window->openConversation(conv);
    QCOMPARE(app_.window->documentPanel()->documentCount(), 2);
  }

  void dropped_image_is_refused_with_a_message() {
    openWindow();
    const QString png = app_.dir->filePath("chart.png");
    QImage image(16, 16, QImage::Format_RGB32);
    image.fill(Qt::red);
    QVERIFY(image.save(png));
    QVERIFY(dropFiles(app_.window.get(), {png}));  // taken, so that the refusal can say why
    QVERIFY(app_.window->banner()->isVisible());
    QVERIFY(app_.window->banner()->isError());
    const QString message = app_.window->banner()->text();
    QVERIFY2(message.contains(QStringLiteral("chart.png")) &&
                 message.contains(QStringLiteral("image")) &&
                 message.contains(QStringLiteral("PDF")),
             qPrintable(message));
    QCOMPARE(app_.window->currentConversation(), 0);
    QCOMPARE(app_.window->documentPanel()->documentCount(), 0);
  }

  void file_dropped_on_the_message_field_is_attached_not_typed() {
    openWindow();
    const QString txt = app_.dir->filePath("memo.txt");
    writeFile(txt, "Memo.\n");
    QVERIFY(dropFiles(app_.window->composer()->edit()->viewport(), {txt}));
    QCOMPARE(app_.window->composer()->text(), QString());
    QCOMPARE(app_.store->documents(app_.window->currentConversation()).size(), 1);
  }

  void overflow_dialog_keeps_the_document_and_drops_the_oldest_turns() {
    openWindow(512, 8);
    const QString doc = prose(40, 99);
    const qint64 conv = conversationNearTheLimit(doc);
    QSignalSpy overflow(app_.engine->worker(), &app::EngineWorker::contextOverflow);
    QSignalSpy started(app_.engine->worker(), &app::EngineWorker::generationStarted);
    QSignalSpy done(app_.window.get(), &MainWindow::answerFinished);
    ui::OverflowDialog* dialog = typeAndSendIntoOverflow(prose(30, 7));
    QVERIFY(dialog);
    QVERIFY(dialog->isVisible());
    QCOMPARE(QApplication::activeModalWidget(), static_cast<QWidget*>(dialog));
    QCOMPARE(overflow.count(), 1);
    const auto o = overflow.first().first().value<app::ContextOverflow>();
    QVERIFY(o.neededTokens > o.limit);
    QCOMPARE(o.limit, 512);
    QVERIFY(o.fitsWithDocumentPinned);
    // The choices: keep the document (the default here), drop it too if needed, or cancel.
    QVERIFY(dialog->keepDocumentButton()->isEnabled());
    QVERIFY(dialog->keepDocumentButton()->isChecked());
    QVERIFY(dialog->dropDocumentButton()->isEnabled());
    QVERIFY(button(dialog, QDialogButtonBox::Cancel));
    QTest::mouseClick(button(dialog, QDialogButtonBox::Ok), Qt::LeftButton);
    QVERIFY(done.wait(60000));
    QCOMPARE(started.count(), 1);
    const auto s = started.first().first().value<app::GenerationStart>();
    QVERIFY(s.droppedTurns >= 1);
    QVERIFY(!s.droppedDocuments);
    // The document was read: the answer's heat map has spans in it.
    const auto answer = app_.store->message(done.first().first().toLongLong());
    const auto stats = app::AnswerStats::fromJson(answer->stats);
    QVERIFY(std::any_of(stats.heat.cbegin(), stats.heat.cend(), [](const app::HeatSpan& h) {
      return h.kind == QLatin1String("document");
    }));
    QVERIFY(stats.contextTokens <= 512);
    // Left out of the context, not out of the conversation.
    QCOMPARE(app_.store->messages(conv).size(), 6);
    QVERIFY(app_.window->banner()->text().contains(QStringLiteral("left out")));
    QTRY_VERIFY(!app_.window->overflowDialog());  // deleted once closed
  }

  void overflow_dialog_can_drop_a_document_that_alone_does_not_fit() {
    openWindow(512, 8);
    conversationNearTheLimit(prose(320, 98));  // the document alone nearly fills the context
    QSignalSpy started(app_.engine->worker(), &app::EngineWorker::generationStarted);
    QSignalSpy done(app_.window.get(), &MainWindow::answerFinished);
    ui::OverflowDialog* dialog = typeAndSendIntoOverflow(prose(60, 8));
    QVERIFY(dialog);
    QVERIFY(!dialog->keepDocumentButton()->isEnabled());
    QVERIFY(dialog->dropDocumentButton()->isChecked());
    QTest::mouseClick(button(dialog, QDialogButtonBox::Ok), Qt::LeftButton);
    QVERIFY(done.wait(60000));
    QCOMPARE(started.count(), 1);
    QVERIFY(started.first().first().value<app::GenerationStart>().droppedDocuments);
  }

  void overflow_dialog_cancel_sends_nothing_and_keeps_the_message() {
    openWindow(512, 8);
    const qint64 conv = conversationNearTheLimit(prose(40, 99));
    const auto before = app_.store->messages(conv);
    QSignalSpy started(app_.engine->worker(), &app::EngineWorker::generationStarted);
    const QString typed = prose(30, 7);
    ui::OverflowDialog* dialog = typeAndSendIntoOverflow(typed);
    QVERIFY(dialog);
    QTest::mouseClick(button(dialog, QDialogButtonBox::Cancel), Qt::LeftButton);
    QTRY_VERIFY(!app_.window->overflowDialog());
    QCOMPARE(app_.window->composer()->text(), typed);
    QVERIFY(!app_.window->isGenerating());
    QCOMPARE(app_.window->composer()->sendButton()->text(), QStringLiteral("Send"));
    QVERIFY(app_.window->composer()->sendButton()->isEnabled());
    const auto after = app_.store->messages(conv);
    QCOMPARE(after.size(), before.size());
    for (int i = 0; i < after.size(); ++i) {
      QCOMPARE(after[i].id, before[i].id);
      QCOMPARE(after[i].text, before[i].text);
    }
    QCOMPARE(app_.window->chatView()->messages().size(), before.size());
    QCOMPARE(app_.store->documents(conv).size(), 1);
    // Nothing reached the engine: a request queued behind anything the Cancel could have sent
    // is answered with no answer started before it.
    QSignalSpy counted(app_.engine->worker(), &app::EngineWorker::tokensCounted);
    const qint64 probe = app_.engine->nextRequestId();
    app_.engine->countTokens(probe, QStringLiteral("probe"));
    QTRY_VERIFY(std::any_of(counted.cbegin(), counted.cend(),
                            [probe](const QList<QVariant>& a) { return a.first() == probe; }));
    QCOMPARE(started.count(), 0);
  }

  void overflow_cancel_after_edit_puts_the_edited_turn_back() {
    openWindow(512, 8);
    const qint64 conv = conversationNearTheLimit(prose(40, 99));
    const auto before = app_.store->messages(conv);
    const qint64 lastUser = before[2].id;
    app_.window->editMessage(lastUser);
    app_.window->composer()->clear();
    const QString typed = prose(80, 5);
    ui::OverflowDialog* dialog = typeAndSendIntoOverflow(typed);
    QVERIFY(dialog);
    QTest::mouseClick(button(dialog, QDialogButtonBox::Cancel), Qt::LeftButton);
    QTRY_VERIFY(!app_.window->overflowDialog());
    const auto after = app_.store->messages(conv);
    QCOMPARE(after.size(), before.size());
    for (int i = 0; i < after.size(); ++i) {
      QCOMPARE(after[i].role, before[i].role);
      QCOMPARE(after[i].text, before[i].text);
    }
    QCOMPARE(app_.window->composer()->text(), typed);
    QVERIFY(app_.window->composer()->isEditing());  // still editing the turn it was
  }
};

QTEST_MAIN(GuiDocumentsTest)
#include "test_gui_documents.moc"
