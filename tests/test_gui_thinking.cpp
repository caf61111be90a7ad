// ctest-labels: gui
// A reasoning model's thinking in the chat view, on the offscreen platform: answers are streamed
// into the view the way MainWindow::onToken does (ChatView::addMessage, setStreaming,
// appendText, setFinished), with the tags cut across chunks. The thinking stays out of the
// answer, collapses under "Thought for N words" when </think> arrives, and the header's click
// expands it; stored answers reload collapsed and answers without thinking render as before.
// RESA_THINKING_PNG=path writes the screenshot of the last test there.
#include <QApplication>
#include <QClipboard>
#include <QElapsedTimer>
#include <QImage>
#include <QLabel>
#include <QPushButton>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>
#include <QTextBlock>
#include <QTextDocument>
#include <QTimer>
#include <QToolButton>

#include <memory>

#include "app/lib/app_types.h"
#include "app/lib/conversation_store.h"
#include "ui/chat_view.h"
#include "ui/theme.h"

using namespace resa;
using ui::MessageWidget;

namespace {

// DeepSeek-R1-Distill: the prompt ends with "<think>\n", so the answer starts inside the thinking.
const QString kR1Thinking = QStringLiteral(
    "Okay, the user asks what two plus two is.\nTwo plus two makes four, so I "
    "answer that.");
constexpr int kR1ThinkingWords = 18;
// The thinking is Markdown like the answer: its single line break is a soft one.
const QString kR1ThinkingShown = QStringLiteral(
    "Okay, the user asks what two plus two is. Two plus two makes four, so I answer that.");
const QStringList kR1Chunks = {QStringLiteral("Okay, the user asks"),
                               QStringLiteral(" what two plus two is."),
                               QStringLiteral("\nTwo plus two makes four"),
                               QStringLiteral(", so I answer that.\n</thi"),
                               QStringLiteral("nk>\n\n"),
                               QStringLiteral("Two plus two is **4**.")};
const QString kR1Answer = QStringLiteral("Two plus two is **4**.");

// Qwen3 style: the model opens <think> itself.
const QStringList kQwenChunks = {QStringLiteral("<thi"), QStringLiteral("nk>\nThe user says hi"),
                                 QStringLiteral(".\n</"),
                                 QStringLiteral("think>\n\nHello! How can I help?")};

QString joined(const QStringList& chunks) { return chunks.join(QString()); }

app::MessageRecord answerRecord(qint64 id, const QString& text = {}) {
  app::MessageRecord r;
  r.id = id;
  r.conversationId = 1;
  r.role = QStringLiteral("assistant");
  r.text = text;
  r.mode = QStringLiteral("resa");
  return r;
}

// Everything of a message a reader can see: header, preview, expanded thinking, answer.
QString shownText(const MessageWidget* m) {
  QStringList out;
  if (m->thinkingHeader()->isVisible()) out << m->thinkingHeader()->text();
  if (m->thinkingPreview()->isVisible()) out << m->thinkingPreview()->text();
  if (m->thinkingView()->isVisible()) out << m->thinkingView()->toPlainText();
  if (m->answerView()->isVisible()) out << m->answerView()->toPlainText();
  return out.join(u'\n');
}

bool charFormatIsItalicAt(const QTextDocument* doc, const QString& word) {
  const QTextCursor c = doc->find(word);
  return !c.isNull() && c.charFormat().fontItalic();
}

}  // namespace

class GuiThinkingTest : public QObject {
  Q_OBJECT

 private:
  std::unique_ptr<ui::ChatView> view_;

  void openView(bool answersStartInThinking) {
    view_ = std::make_unique<ui::ChatView>();
    view_->resize(760, 900);
    view_->setAnswersStartInThinking(answersStartInThinking);
    view_->show();
    QVERIFY(QTest::qWaitForWindowExposed(view_.get()));
  }

  // MainWindow::reloadMessages: a stored message (shown once the layout has run).
  MessageWidget* addStored(const app::MessageRecord& r) {
    MessageWidget* m = view_->addMessage(r);
    QCoreApplication::processEvents();
    return m;
  }

  // MainWindow::startAnswer and onToken: an empty answer that streams.
  MessageWidget* startAnswer(qint64 id) {
    MessageWidget* m = view_->addMessage(answerRecord(id));
    m->setStreaming(true);
    return m;
  }

  // One token chunk, then the (coalesced, 80 ms) re-render it starts.
  static bool feed(MessageWidget* m, const QString& chunk) {
    QSignalSpy rendered(m, &MessageWidget::rendered);
    m->appendText(chunk);
    return rendered.wait(5000);
  }

  // MainWindow::onFinished: the final text, then the stored record.
  static void finish(MessageWidget* m) {
    m->setFinished(m->text(), QStringLiteral("resa"), {});
    app::MessageRecord r = m->record();
    r.stats = QJsonObject{{"generated_tokens", 40}, {"mode", "resa"}};
    m->setRecord(r);
  }

 private slots:
  void initTestCase() { ui::applyTheme(*qApp); }
  void cleanup() { view_.reset(); }

  void every_prefix_of_a_streamed_answer_keeps_tags_out_of_both_parts() {
    for (const bool startsIn : {true, false}) {
      const QString full = startsIn ? joined(kR1Chunks) : joined(kQwenChunks);
      for (qsizetype n = 1; n <= full.size(); ++n) {
        const app::AnswerParts p = app::splitThinkingForDisplay(full.left(n), startsIn, true);
        const QString where = QStringLiteral("prefix %1 of %2").arg(n).arg(full);
        QVERIFY2(p.hasThinking, qPrintable(where));
        QVERIFY2(!p.thinking.contains(u'<'), qPrintable(where + " thinking: " + p.thinking));
        QVERIFY2(!p.answer.contains(u'<') && !p.answer.contains(QStringLiteral("user")),
                 qPrintable(where + " answer: " + p.answer));
      }
    }
    const app::AnswerParts r1 = app::splitThinkingForDisplay(joined(kR1Chunks), true, false);
    QCOMPARE(r1.thinking, kR1Thinking);
    QCOMPARE(r1.answer, kR1Answer);
    QVERIFY(r1.thinkingDone);
    QCOMPARE(app::thinkingWordCount(r1.thinking), kR1ThinkingWords);
    // A finished text keeps what only looks like the start of a tag.
    QCOMPARE(app::splitThinkingForDisplay(QStringLiteral("<"), false, false).answer,
             QStringLiteral("<"));
    // Han characters count one word each; "你好" with "world" makes three.
    QCOMPARE(app::thinkingWordCount(QStringLiteral("你好 world")), 3);
  }

  void deepseek_thinking_streams_into_the_block_not_the_answer() {
    openView(true);
    MessageWidget* m = startAnswer(2);
    QVERIFY(m->hasThinking());
    QCOMPARE(m->thinkingHeader()->text(), QStringLiteral("Thinking… ▸"));

    QVERIFY(feed(m, kR1Chunks[0]));
    QCOMPARE(m->thinkingHeader()->text(), QStringLiteral("Thinking… (4 words) ▸"));
    QVERIFY(m->thinkingPreview()->isVisible());  // collapsed, with the newest words
    QVERIFY(!m->thinkingView()->isVisible());
    QVERIFY(!m->answerView()->isVisible());
    QVERIFY(!m->answerView()->toPlainText().contains(QStringLiteral("user")));

    QVERIFY(feed(m, kR1Chunks[1]));
    QVERIFY(feed(m, kR1Chunks[2]));
    QVERIFY(feed(m, kR1Chunks[3]));  // ends with "</thi"
    QCOMPARE(m->thinkingHeader()->text(),
             QStringLiteral("Thinking… (%1 words) ▸").arg(kR1ThinkingWords));
    QVERIFY(!shownText(m).contains(QStringLiteral("</")));
    QVERIFY(!m->answerView()->isVisible());

    QVERIFY(feed(m, kR1Chunks[4]));  // "nk>": the thinking ends, no answer yet
    QCOMPARE(m->thinkingHeader()->text(),
             QStringLiteral("Thought for %1 words ▸").arg(kR1ThinkingWords));
    QVERIFY(!m->thinkingPreview()->isVisible());
    QVERIFY(!m->thinkingView()->isVisible());
    QVERIFY(!m->isThinkingExpanded());

    QVERIFY(feed(m, kR1Chunks[5]));
    QVERIFY(m->answerView()->isVisible());
    QCOMPARE(m->answerView()->toPlainText(), QStringLiteral("Two plus two is 4."));
    QCOMPARE(m->answerView()->document()->find(QStringLiteral("4")).charFormat().fontWeight(),
             int(QFont::Bold));  // the answer is still Markdown
    const QString shown = shownText(m);
    QVERIFY2(!shown.contains(QStringLiteral("user asks")) && !shown.contains(u'<'),
             qPrintable(shown));
    QVERIFY(shown.contains(QStringLiteral("Thought for 18 words")));

    finish(m);
    QVERIFY(!m->isThinkingExpanded());
    QCOMPARE(shownText(m), QStringLiteral("Thought for 18 words ▸\nTwo plus two is 4."));
    QCOMPARE(m->text(), joined(kR1Chunks));  // the raw text, as stored, is unchanged
  }

  void qwen_style_tags_split_across_chunks_render_the_same() {
    openView(false);
    MessageWidget* m = startAnswer(3);
    QVERIFY(feed(m, kQwenChunks[0]));  // "<thi"
    QVERIFY2(!shownText(m).contains(QStringLiteral("<thi")), qPrintable(shownText(m)));
    QCOMPARE(m->thinkingHeader()->text(), QStringLiteral("Thinking… ▸"));
    QVERIFY(feed(m, kQwenChunks[1]));
    QCOMPARE(m->thinkingHeader()->text(), QStringLiteral("Thinking… (4 words) ▸"));
    QCOMPARE(m->thinkingPreview()->text(), QStringLiteral("The user says hi"));
    QVERIFY(!m->answerView()->isVisible());
    QVERIFY(feed(m, kQwenChunks[2]));  // ".\n</"
    QCOMPARE(m->thinkingPreview()->text(), QStringLiteral("The user says hi."));
    QVERIFY(feed(m, kQwenChunks[3]));
    QCOMPARE(shownText(m), QStringLiteral("Thought for 4 words ▸\nHello! How can I help?"));
  }

  void clicking_the_header_expands_and_collapses_the_thinking() {
    openView(true);
    MessageWidget* m = startAnswer(4);
    for (const QString& c : kR1Chunks) QVERIFY(feed(m, c));
    finish(m);
    QVERIFY(m->thinkingView()->document()->isEmpty());

    QTest::mouseClick(m->thinkingHeader(), Qt::LeftButton);
    QVERIFY(m->isThinkingExpanded());
    QVERIFY(m->thinkingView()->isVisible());
    QCOMPARE(m->thinkingView()->toPlainText(), kR1ThinkingShown);
    QVERIFY(charFormatIsItalicAt(m->thinkingView()->document(), QStringLiteral("four")));
    QCOMPARE(m->thinkingHeader()->text(), QStringLiteral("Thought for 18 words ▾"));
    QVERIFY(shownText(m).contains(QStringLiteral("Okay, the user asks")));
    QCOMPARE(m->answerView()->toPlainText(), QStringLiteral("Two plus two is 4."));

    QTest::mouseClick(m->thinkingHeader(), Qt::LeftButton);
    QVERIFY(!m->isThinkingExpanded());
    QVERIFY(!m->thinkingView()->isVisible());
    QVERIFY(!shownText(m).contains(QStringLiteral("Okay, the user asks")));
    QCOMPARE(m->thinkingHeader()->text(), QStringLiteral("Thought for 18 words ▸"));
  }

  void expanding_while_streaming_survives_later_tokens() {
    openView(true);
    MessageWidget* other = addStored(answerRecord(5, joined(kR1Chunks)));
    MessageWidget* m = startAnswer(6);
    QVERIFY(feed(m, kR1Chunks[0]));
    QVERIFY(feed(m, kR1Chunks[1]));
    QTest::mouseClick(m->thinkingHeader(), Qt::LeftButton);
    QVERIFY(m->thinkingView()->isVisible());
    QVERIFY(!m->thinkingPreview()->isVisible());  // the full thinking replaces the preview
    QCOMPARE(m->thinkingView()->toPlainText(),
             QStringLiteral("Okay, the user asks what two plus two is."));
    QCOMPARE(m->thinkingHeader()->text(), QStringLiteral("Thinking… (9 words) ▾"));
    for (qsizetype i = 2; i < kR1Chunks.size(); ++i) QVERIFY(feed(m, kR1Chunks[i]));
    finish(m);
    QVERIFY(m->isThinkingExpanded());
    QCOMPARE(m->thinkingView()->toPlainText(), kR1ThinkingShown);
    QCOMPARE(m->thinkingHeader()->text(), QStringLiteral("Thought for 18 words ▾"));
    // The state is per message: the earlier answer stayed collapsed.
    QVERIFY(!other->isThinkingExpanded());
    QVERIFY(!other->thinkingView()->isVisible());
  }

  void message_without_thinking_renders_unchanged() {
    openView(true);  // the flag is for answers that stream: this stored one has no thinking
    const QString text = QStringLiteral("Here is **bold** and `code`.\n\n```\nx = 1\n```\n\nDone.");
    MessageWidget* stored = addStored(answerRecord(7, text));
    QTextDocument reference;
    ui::renderMarkdown(&reference, text);
    QVERIFY(!stored->hasThinking());
    QVERIFY(!stored->thinkingHeader()->isVisible());
    QVERIFY(stored->answerView()->isVisible());
    QCOMPARE(stored->answerView()->document()->toMarkdown(), reference.toMarkdown());
    QCOMPARE(stored->copyText(), text);
    view_->setAnswersStartInThinking(false);
    MessageWidget* streamed = startAnswer(8);
    QVERIFY(feed(streamed, text.left(20)));
    QVERIFY(!streamed->thinkingHeader()->isVisible());
    QVERIFY(feed(streamed, text.mid(20)));
    finish(streamed);
    QVERIFY(!streamed->hasThinking());
    QCOMPARE(streamed->answerView()->document()->toMarkdown(), reference.toMarkdown());
    // A user message is plain text, tags and all.
    app::MessageRecord user;
    user.id = 9;
    user.role = QStringLiteral("user");
    user.text = QStringLiteral("What does </think> do?");
    MessageWidget* u = addStored(user);
    QVERIFY(!u->hasThinking());
    QCOMPARE(u->answerView()->toPlainText(), user.text);
  }

  // A long answer (40 KB of Markdown lists and code) streamed over about 3 s. Each re-render
  // builds its document detached and swaps it in (setMarkdown into the shown document relaid it
  // out per block: 1.4 s for 40 KB here), and the re-renders back off to four times the last
  // one's time, so they take a small share of the GUI thread while the answer grows.
  void long_streamed_answer_renders_in_a_small_share_of_the_gui_thread() {
    openView(false);
    MessageWidget* m = startAnswer(1);
    QString md;
    for (int i = 0; md.size() < 40000; ++i) {
      md += QStringLiteral("- item %1 with **bold**, *italic* and `code`; a link [here](x).\n")
                .arg(i);
      if (i % 40 == 39)
        md += QStringLiteral("\n```cpp\nint f(int x) { return x * %1; }\n```\n\n").arg(i);
    }
    qint64 renderMs = 0;
    int renders = 0, longest = 0;
    connect(m, &MessageWidget::rendered, this, [&] {
      renderMs += m->lastRenderMs();
      longest = std::max(longest, m->lastRenderMs());
      ++renders;
    });
    qsizetype pos = 0;
    QTimer feeder;
    feeder.setInterval(10);
    connect(&feeder, &QTimer::timeout, this, [&] {
      m->appendText(md.mid(pos, 140));  // about 35 tokens per tick, 14 KB/s
      pos += 140;
      if (pos >= md.size()) feeder.stop();
    });
    QElapsedTimer wall;
    wall.start();
    feeder.start();
    QVERIFY(QTest::qWaitFor([&] { return !feeder.isActive(); }, 60000));
    const qint64 streamedMs = wall.elapsed();
    const double share = double(renderMs) / double(std::max<qint64>(1, streamedMs));
    const QString report =
        QStringLiteral("%1 renders in %2 ms of streaming: %3 ms rendering (%4%), longest %5 ms")
            .arg(renders)
            .arg(streamedMs)
            .arg(renderMs)
            .arg(100.0 * share, 0, 'f', 1)
            .arg(longest);
    qInfo("%s", qPrintable(report));
    QVERIFY2(renders >= 5, qPrintable(report));
    QVERIFY2(longest < 500, qPrintable(report));
    QVERIFY2(share < 0.35, qPrintable(report));
    // The whole answer is shown once it is finished.
    m->setFinished(md, QStringLiteral("resa"), {});
    QVERIFY(m->answerView()->toPlainText().contains(QStringLiteral("item 0 with bold")));
  }

  void stored_answers_reload_collapsed() {
    openView(false);  // e.g. another model is loaded now
    MessageWidget* r1 = addStored(answerRecord(10, joined(kR1Chunks)));
    MessageWidget* qwen = addStored(answerRecord(11, joined(kQwenChunks)));
    QCOMPARE(shownText(r1), QStringLiteral("Thought for 18 words ▸\nTwo plus two is 4."));
    QCOMPARE(shownText(qwen), QStringLiteral("Thought for 4 words ▸\nHello! How can I help?"));
    QCOMPARE(r1->text(), joined(kR1Chunks));
    QTest::mouseClick(r1->thinkingHeader(), Qt::LeftButton);
    QCOMPARE(r1->thinkingView()->toPlainText(), kR1ThinkingShown);
    // An answer cut off while thinking says so.
    app::MessageRecord cut = answerRecord(12, QStringLiteral("<think>\nLet me count the"));
    cut.complete = false;
    MessageWidget* c = addStored(cut);
    QCOMPARE(c->thinkingHeader()->text(), QStringLiteral("Stopped thinking after 4 words ▸"));
    QVERIFY(!c->answerView()->isVisible());
  }

  void copy_button_copies_the_answer_without_the_thinking() {
    openView(false);
    MessageWidget* m = addStored(answerRecord(13, joined(kR1Chunks)));
    QToolButton* copy = nullptr;
    for (QToolButton* b : m->findChildren<QToolButton*>())
      if (b->accessibleName() == QStringLiteral("Copy text")) copy = b;
    QVERIFY(copy);
    QApplication::clipboard()->clear();
    QTest::mouseClick(copy, Qt::LeftButton);
    QCOMPARE(QApplication::clipboard()->text(), kR1Answer);
  }

  void screenshot_shows_collapsed_expanded_and_live_thinking() {
    openView(true);
    view_->resize(760, 1000);
    app::MessageRecord q;
    q.role = QStringLiteral("user");
    q.id = 20;
    q.text = QStringLiteral("What is two plus two?");
    view_->addMessage(q);
    MessageWidget* collapsed = addStored(answerRecord(21, joined(kR1Chunks)));
    q.id = 22;
    q.text = QStringLiteral("Say hi.");
    view_->addMessage(q);
    MessageWidget* expanded = addStored(answerRecord(23, joined(kQwenChunks)));
    QTest::mouseClick(expanded->thinkingHeader(), Qt::LeftButton);
    q.id = 24;
    q.text = QStringLiteral("And three plus three?");
    view_->addMessage(q);
    MessageWidget* live = startAnswer(25);
    QVERIFY(feed(live, QStringLiteral("Three plus three: I count three more from three, which "
                                      "gives six. Let me double-check by doubling three, and "
                                      "doubling three is the same as adding it to itself")));
    QApplication::processEvents();
    QVERIFY(expanded->isThinkingExpanded() && !collapsed->isThinkingExpanded());
    QVERIFY(expanded->thinkingView()->height() > 10);
    QVERIFY(live->thinkingPreview()->isVisible());
    // Too long for one line: the newest words stay, the start is elided.
    QVERIFY(live->thinkingPreview()->text().startsWith(QChar(0x2026)));
    QVERIFY(live->thinkingPreview()->text().endsWith(QStringLiteral("adding it to itself")));

    QTemporaryDir dir;
    const QString path = qEnvironmentVariableIsSet("RESA_THINKING_PNG")
                             ? qEnvironmentVariable("RESA_THINKING_PNG")
                             : dir.filePath(QStringLiteral("thinking.png"));
    const QImage shot = view_->grab().toImage();
    QVERIFY(shot.save(path));
    QCOMPARE(QImage(path).size(), shot.size());
  }
};

QTEST_MAIN(GuiThinkingTest)
#include "test_gui_thinking.moc"
