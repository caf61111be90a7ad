// The conversation as a column of message widgets. Each message renders its own Markdown
// (QTextDocument::setMarkdown) with shaded code blocks; a streaming answer re-renders only
// itself, at most every 80 ms, so a long chat costs nothing per token. Finished answers show
// their mode and statistics; the heat map overlay colours the passages an answer read. A
// reasoning model's thinking (<think>...</think>) shows in a block above the answer: collapsed,
// under a header with its word count that expands it on click.
#pragma once

#include <QFrame>
#include <QPointer>
#include <QScrollArea>
#include <QTextBrowser>
#include <QTimer>
#include <QVector>

#include "app/lib/app_types.h"
#include "app/lib/conversation_store.h"

class QLabel;
class QPushButton;
class QToolButton;
class QVBoxLayout;

namespace resa::ui {

// A read-only text view as tall as its content (no scroll bar of its own).
class MessageBody : public QTextBrowser {
  Q_OBJECT
 public:
  explicit MessageBody(QWidget* parent = nullptr);
  QSize sizeHint() const override;
  QSize minimumSizeHint() const override;
  // A new document from Markdown (GitHub dialect; code blocks shaded and monospaced): pointers to
  // the previous document() are invalid after it.
  void showMarkdown(const QString& markdown);

 protected:
  void resizeEvent(QResizeEvent* e) override;
  void wheelEvent(QWheelEvent* e) override;

 private:
  void fitHeight();
};

class MessageWidget : public QFrame {
  Q_OBJECT
 public:
  MessageWidget(const app::MessageRecord& record, QWidget* parent = nullptr);

  qint64 messageId() const { return record_.id; }
  const app::MessageRecord& record() const { return record_; }
  QString role() const { return record_.role; }
  QString text() const { return text_; }
  bool isStreaming() const { return streaming_; }
  QString statsText() const;
  // What Copy puts on the clipboard: the answer without its thinking (the thinking while there is
  // no answer yet). text() stays the raw generated text, as stored.
  QString copyText() const;

  // The thinking block. It is collapsed until the user expands it, also while the thinking
  // streams: a long reasoning would otherwise push the chat down by pages and collapse under
  // the reader's eyes when </think> arrives; the header counts the words and a one-line preview
  // shows the newest ones instead. The choice is kept per message while later tokens arrive.
  bool hasThinking() const { return parts_.hasThinking; }
  QString thinkingText() const { return parts_.thinking; }
  bool isThinkingExpanded() const { return thinkingExpanded_; }
  void setThinkingExpanded(bool on);
  QPushButton* thinkingHeader() const { return thinkingHeader_; }
  QLabel* thinkingPreview() const { return thinkingPreview_; }
  QTextBrowser* thinkingView() const;
  QTextBrowser* answerView() const;
  // The model's chat format opens answers inside <think> (ModelInfo::answerStartsInThinking).
  // Applies to the answer this widget streams; a stored answer is recognised by its </think>.
  void setStartsInThinking(bool on) { startsInThinking_ = on; }

  void setStreaming(bool on);
  // Streamed chunks are coalesced: the message re-renders at most once per renderInterval(),
  // which is 80 ms, or four times the last re-render's time when that is longer (at most 1 s),
  // so a long answer's Markdown takes at most about a fifth of the GUI thread.
  void appendText(const QString& chunk);
  int renderInterval() const { return renderTimer_.interval(); }
  int lastRenderMs() const { return lastRenderMs_; }
  void setText(const QString& text);
  void setFinished(const QString& text, const QString& mode, const QJsonObject& stats);
  void setRecord(const app::MessageRecord& r);
  void setActions(bool canEdit, bool canRegenerate);
  void setSelected(bool on);
  void setNotice(const QString& text);  // e.g. "stopped" or an error under the answer
  // Heat spans in character offsets of text(); values 0..1. Empty clears the overlay.
  void setHeat(const QVector<QPair<QPair<int, int>, double>>& spans);

 signals:
  void activated(qint64 messageId);
  void editRequested(qint64 messageId);
  void regenerateRequested(qint64 messageId);
  void versionRequested(qint64 messageId, int delta);
  void rendered();  // after every (coalesced) re-render of the message

 protected:
  void mousePressEvent(QMouseEvent* e) override;
  bool eventFilter(QObject* o, QEvent* e) override;

 private:
  void render();
  void renderThinking();
  void updateHeader();

  app::MessageRecord record_;
  QString text_;
  bool streaming_ = false;
  app::AnswerParts parts_;  // text_ split for display (all answer for a user message)
  bool startsInThinking_ = false;
  bool streamedHere_ = false;  // setStreaming(true) was called: startsInThinking_ applies
  bool thinkingExpanded_ = false;
  QLabel* role_;
  QLabel* modeChip_;
  QLabel* versionLabel_;
  QToolButton* prevVersion_;
  QToolButton* nextVersion_;
  QToolButton* copy_;
  QToolButton* edit_;
  QToolButton* regenerate_;
  QFrame* thinkingBlock_;
  QPushButton* thinkingHeader_;
  QLabel* thinkingPreview_;
  MessageBody* thinkingBody_;
  MessageBody* body_;
  QLabel* footer_;
  QLabel* notice_;
  QTimer renderTimer_;
  int lastRenderMs_ = 0;
  QVector<QPair<QPair<int, int>, double>> heat_;
};

class ChatView : public QScrollArea {
  Q_OBJECT
 public:
  explicit ChatView(QWidget* parent = nullptr);

  void clear();
  MessageWidget* addMessage(const app::MessageRecord& r);
  void removeFrom(qint64 messageId);  // that message and every later one
  MessageWidget* message(qint64 id) const;
  MessageWidget* lastMessage(const QString& role = {}) const;
  QVector<MessageWidget*> messages() const;
  void updateActions(bool busy);  // Edit on the last user message, Regenerate on the last answer
  void scrollToBottom();
  void setSelectedMessage(qint64 id);
  void clearHeat();
  // Answers added from now on come from a model whose chat format opens them inside <think>
  // (ModelInfo::answerStartsInThinking, e.g. DeepSeek-R1-Distill).
  void setAnswersStartInThinking(bool on) { answersStartInThinking_ = on; }

 signals:
  void activated(qint64 messageId);
  void editRequested(qint64 messageId);
  void regenerateRequested(qint64 messageId);
  void versionRequested(qint64 messageId, int delta);

 private:
  void followIfAtBottom();

  QWidget* column_;
  QVBoxLayout* layout_;
  QVector<MessageWidget*> messages_;
  bool stickToBottom_ = true;
  bool answersStartInThinking_ = false;
};

// Markdown with shaded code blocks.
void renderMarkdown(QTextDocument* doc, const QString& markdown);
QString statsSummary(const app::AnswerStats& s);

}  // namespace resa::ui
