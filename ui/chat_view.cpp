#include "ui/chat_view.h"

#include <QAbstractTextDocumentLayout>
#include <QApplication>
#include <QClipboard>
#include <QElapsedTimer>
#include <QFontDatabase>
#include <QHBoxLayout>
#include <QLabel>
#include <QMouseEvent>
#include <QPushButton>
#include <QResizeEvent>
#include <QScrollBar>
#include <QTextBlock>
#include <QToolButton>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>

#include "ui/theme.h"

namespace resa::ui {

// The shortest wait between two re-renders of a streaming message (MessageWidget::appendText).
constexpr int kRenderIntervalMs = 80;

void renderMarkdown(QTextDocument* doc, const QString& markdown) {
  doc->setMarkdown(markdown, QTextDocument::MarkdownDialectGitHub);
  // Code blocks: a shaded, monospaced box (setMarkdown marks them with the code fence property
  // or as non-breaking lines).
  QTextCursor c(doc);
  c.beginEditBlock();
  const QFont mono = QFontDatabase::systemFont(QFontDatabase::FixedFont);
  for (QTextBlock b = doc->begin(); b.isValid(); b = b.next()) {
    const QTextBlockFormat bf = b.blockFormat();
    if (!bf.hasProperty(QTextFormat::BlockCodeFence) && !bf.nonBreakableLines()) continue;
    QTextBlockFormat f;
    f.setBackground(QColor(0xf3, 0xf4, 0xf6));
    f.setLeftMargin(4);
    f.setRightMargin(4);
    c.setPosition(b.position());
    c.mergeBlockFormat(f);
    c.setPosition(b.position() + b.length() - 1, QTextCursor::KeepAnchor);
    QTextCharFormat cf;
    cf.setFont(mono);
    cf.setFontPointSize(std::max(8.0, QApplication::font().pointSizeF() - 1));
    c.mergeCharFormat(cf);
  }
  c.endEditBlock();
}

QString statsSummary(const app::AnswerStats& s) {
  QStringList parts;
  parts << QObject::tr("%1 tokens").arg(s.generatedTokens);
  if (s.decodeTokPerS > 0) parts << formatRate(s.decodeTokPerS);
  if (s.prefillTokens > 0)
    parts << QObject::tr("prompt %1 tok at %2")
                 .arg(formatCount(s.prefillTokens))
                 .arg(formatRate(s.prefillTokPerS));
  if (s.reusedTokens > 0) parts << QObject::tr("%1 reused").arg(formatCount(s.reusedTokens));
  if (s.ttftMs > 0) parts << QObject::tr("first token %1").arg(formatMs(s.ttftMs));
  if (s.mode != QLatin1String("dense"))
    parts << QObject::tr("%1% KV skipped").arg(100.0 * (1.0 - s.kvReadFraction), 0, 'f', 0);
  if (s.mode == QLatin1String("resa"))
    parts << QObject::tr("%n rectification(s)", nullptr, s.rectifications);
  if (s.stopReason == QLatin1String("cancelled")) parts << QObject::tr("stopped");
  if (s.stopReason == QLatin1String("length")) parts << QObject::tr("token limit reached");
  return parts.join(QStringLiteral("  ·  "));
}

// --- MessageBody -------------------------------------------------------------------------------

MessageBody::MessageBody(QWidget* parent) : QTextBrowser(parent) {
  setFrameShape(QFrame::NoFrame);
  setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  setVerticalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  setOpenExternalLinks(true);
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
  document()->setDocumentMargin(2);
  viewport()->setAutoFillBackground(false);
  setStyleSheet(QStringLiteral("background: transparent;"));
  connect(document()->documentLayout(), &QAbstractTextDocumentLayout::documentSizeChanged, this,
          [this] { fitHeight(); });
}

QSize MessageBody::sizeHint() const {
  return {QTextBrowser::sizeHint().width(), int(document()->size().height()) + 2};
}

QSize MessageBody::minimumSizeHint() const { return {100, sizeHint().height()}; }

void MessageBody::resizeEvent(QResizeEvent* e) {
  QTextBrowser::resizeEvent(e);
  fitHeight();
}

void MessageBody::wheelEvent(QWheelEvent* e) { e->ignore(); }  // the chat scrolls, not us

void MessageBody::showMarkdown(const QString& markdown) {
  // Built in a document without a layout, then swapped in: setMarkdown into the shown document
  // relaid it out after every block it inserted, quadratic in the text's length (40 KB of lists
  // took 1.4 s, against 33 ms detached and 29 ms for the swap's one layout).
  QTextDocument* old = document();
  auto* fresh = new QTextDocument(this);  // a child: the next swap deletes it
  fresh->setDefaultFont(old->defaultFont());
  fresh->setDefaultTextOption(old->defaultTextOption());
  fresh->setDefaultStyleSheet(old->defaultStyleSheet());
  fresh->setDocumentMargin(old->documentMargin());
  fresh->setIndentWidth(old->indentWidth());
  renderMarkdown(fresh, markdown);
  setDocument(fresh);
  connect(document()->documentLayout(), &QAbstractTextDocumentLayout::documentSizeChanged, this,
          [this] { fitHeight(); });
  fitHeight();
}

void MessageBody::fitHeight() {
  const int h = int(std::ceil(document()->size().height())) + 2;
  if (h != height()) setFixedHeight(h);
}

// --- MessageWidget -----------------------------------------------------------------------------

namespace {
// One line that shows the end of a longer text ("…and so the answer is 4"), re-elided to its
// width: the live preview of a collapsed thinking block.
class TailLabel : public QLabel {
 public:
  explicit TailLabel(QWidget* parent) : QLabel(parent) {
    setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Fixed);
  }
  void setFullText(const QString& text) {
    full_ = text;
    elide();
  }

 protected:
  void resizeEvent(QResizeEvent* e) override {
    QLabel::resizeEvent(e);
    elide();
  }

 private:
  void elide() { setText(fontMetrics().elidedText(full_, Qt::ElideLeft, std::max(0, width()))); }
  QString full_;
};

QString wordsText(int n) {
  return n == 1 ? QObject::tr("1 word") : QObject::tr("%1 words").arg(formatCount(n));
}

// The last line of a text with something on it, its white space collapsed.
QString lastLine(const QString& text) {
  qsizetype end = text.size();
  while (end > 0) {
    const qsizetype start = text.lastIndexOf(u'\n', end - 1) + 1;
    const QString line = text.mid(start, end - start).simplified();
    if (!line.isEmpty()) return line;
    end = start - 1;
  }
  return {};
}

QToolButton* smallButton(const QString& iconName, const QString& tip, QWidget* parent) {
  auto* b = new QToolButton(parent);
  b->setIcon(icon(iconName));
  b->setIconSize(QSize(15, 15));
  b->setToolTip(tip);
  b->setAccessibleName(tip);
  b->setAutoRaise(true);
  b->setCursor(Qt::PointingHandCursor);
  return b;
}
}  // namespace

MessageWidget::MessageWidget(const app::MessageRecord& record, QWidget* parent)
    : QFrame(parent), record_(record), text_(record.text) {
  const bool user = record.role == QLatin1String("user");
  setObjectName(user ? QStringLiteral("UserMessage") : QStringLiteral("AssistantMessage"));
  setStyleSheet(user ? QStringLiteral("#UserMessage { background: #f1f4fa; border-radius: 10px; }")
                     : QStringLiteral("#AssistantMessage { border-radius: 10px; }"));
  auto* l = new QVBoxLayout(this);
  l->setContentsMargins(14, 8, 14, 10);
  l->setSpacing(4);

  auto* head = new QHBoxLayout;
  head->setSpacing(6);
  role_ = new QLabel(user ? tr("You") : tr("Assistant"), this);
  role_->setObjectName(QStringLiteral("RoleLabel"));
  modeChip_ = new QLabel(this);
  modeChip_->setObjectName(QStringLiteral("ModeChip"));
  modeChip_->hide();
  prevVersion_ = smallButton(QStringLiteral("chevron-left"), tr("Previous version"), this);
  versionLabel_ = new QLabel(this);
  versionLabel_->setObjectName(QStringLiteral("StatsFooter"));
  nextVersion_ = smallButton(QStringLiteral("chevron-right"), tr("Next version"), this);
  copy_ = smallButton(QStringLiteral("copy"), tr("Copy text"), this);
  edit_ = smallButton(QStringLiteral("edit"), tr("Edit and resend"), this);
  regenerate_ = smallButton(QStringLiteral("regenerate"), tr("Regenerate"), this);
  head->addWidget(role_);
  head->addWidget(modeChip_);
  head->addStretch();
  head->addWidget(prevVersion_);
  head->addWidget(versionLabel_);
  head->addWidget(nextVersion_);
  head->addWidget(copy_);
  head->addWidget(edit_);
  head->addWidget(regenerate_);
  l->addLayout(head);

  thinkingBlock_ = new QFrame(this);
  thinkingBlock_->setObjectName(QStringLiteral("ThinkingBlock"));
  thinkingBlock_->setStyleSheet(
      QStringLiteral("#ThinkingBlock { border: 0; border-left: 2px solid #dfe3e8; }"));
  auto* tl = new QVBoxLayout(thinkingBlock_);
  tl->setContentsMargins(8, 0, 0, 0);
  tl->setSpacing(0);
  // A flat push button: its text starts at its left edge (a tool button centres it), in line
  // with the thinking below; it takes the keyboard focus, and Space toggles it.
  thinkingHeader_ = new QPushButton(thinkingBlock_);
  thinkingHeader_->setObjectName(QStringLiteral("ThinkingHeader"));
  thinkingHeader_->setFlat(true);
  thinkingHeader_->setCursor(Qt::PointingHandCursor);
  thinkingHeader_->setStyleSheet(
      QStringLiteral("QPushButton { border: 0; padding: 1px 2px; text-align: left; color: %1; }"
                     " QPushButton:hover { color: #1f2328; }")
          .arg(mutedTextColor().name()));
  thinkingPreview_ = new TailLabel(thinkingBlock_);
  thinkingPreview_->setObjectName(QStringLiteral("ThinkingPreview"));
  thinkingPreview_->setStyleSheet(QStringLiteral("color: #9097a1;"));
  thinkingPreview_->setContentsMargins(2, 0, 0, 0);  // MessageBody's document margin
  QFont italic = thinkingPreview_->font();
  italic.setItalic(true);
  thinkingPreview_->setFont(italic);
  thinkingBody_ = new MessageBody(thinkingBlock_);
  thinkingBody_->setObjectName(QStringLiteral("ThinkingBody"));
  thinkingBody_->viewport()->installEventFilter(this);
  tl->addWidget(thinkingHeader_, 0, Qt::AlignLeft);
  tl->addWidget(thinkingPreview_);
  tl->addWidget(thinkingBody_);
  thinkingBlock_->hide();
  l->addWidget(thinkingBlock_);

  body_ = new MessageBody(this);
  body_->viewport()->installEventFilter(this);
  l->addWidget(body_);
  notice_ = new QLabel(this);
  notice_->setObjectName(QStringLiteral("StatsFooter"));
  notice_->setWordWrap(true);
  notice_->hide();
  l->addWidget(notice_);
  footer_ = new QLabel(this);
  footer_->setObjectName(QStringLiteral("StatsFooter"));
  footer_->setWordWrap(true);
  footer_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  l->addWidget(footer_);

  connect(copy_, &QToolButton::clicked, this,
          [this] { QApplication::clipboard()->setText(copyText()); });
  connect(thinkingHeader_, &QPushButton::clicked, this,
          [this] { setThinkingExpanded(!thinkingExpanded_); });
  connect(edit_, &QToolButton::clicked, this, [this] { emit editRequested(record_.id); });
  connect(regenerate_, &QToolButton::clicked, this,
          [this] { emit regenerateRequested(record_.id); });
  connect(prevVersion_, &QToolButton::clicked, this,
          [this] { emit versionRequested(record_.id, -1); });
  connect(nextVersion_, &QToolButton::clicked, this,
          [this] { emit versionRequested(record_.id, +1); });

  renderTimer_.setSingleShot(true);
  renderTimer_.setInterval(kRenderIntervalMs);
  connect(&renderTimer_, &QTimer::timeout, this, &MessageWidget::render);
  setActions(false, false);
  updateHeader();
  render();
}

void MessageWidget::updateHeader() {
  const auto mode = app::modeFromString(record_.mode);
  if (mode && record_.role == QLatin1String("assistant")) {
    modeChip_->setText(modeLabel(*mode));
    modeChip_->setStyleSheet(QStringLiteral("background: %1;").arg(modeColor(*mode).name()));
    modeChip_->show();
  } else {
    modeChip_->hide();
  }
  const bool versions = record_.role == QLatin1String("assistant") && record_.versionCount > 1;
  prevVersion_->setVisible(versions);
  nextVersion_->setVisible(versions);
  versionLabel_->setVisible(versions);
  if (versions) {
    versionLabel_->setText(tr("%1 / %2").arg(record_.version).arg(record_.versionCount));
    prevVersion_->setEnabled(record_.version > 1);
    nextVersion_->setEnabled(record_.version < record_.versionCount);
  }
  if (!record_.stats.isEmpty()) {
    footer_->setText(statsSummary(app::AnswerStats::fromJson(record_.stats)));
    footer_->show();
  } else {
    footer_->setVisible(!footer_->text().isEmpty());
  }
  if (!record_.complete && !streaming_ && record_.role == QLatin1String("assistant"))
    setNotice(tr("This answer was interrupted before it finished."));
}

QString MessageWidget::statsText() const { return footer_->text(); }

QString MessageWidget::copyText() const {
  if (!parts_.hasThinking) return text_;
  return parts_.answer.isEmpty() ? parts_.thinking : parts_.answer;
}

QTextBrowser* MessageWidget::thinkingView() const { return thinkingBody_; }
QTextBrowser* MessageWidget::answerView() const { return body_; }

void MessageWidget::setThinkingExpanded(bool on) {
  thinkingExpanded_ = on;
  render();
}

void MessageWidget::setRecord(const app::MessageRecord& r) {
  if (r.id != record_.id) {  // another message (a version switch): its own thinking state
    thinkingExpanded_ = false;
    streamedHere_ = false;
  }
  record_ = r;
  text_ = r.text;
  updateHeader();
  render();
}

void MessageWidget::setStreaming(bool on) {
  streaming_ = on;
  if (on) {
    streamedHere_ = true;
    footer_->setText(tr("generating…"));
    footer_->show();
  }
  render();
}

void MessageWidget::appendText(const QString& chunk) {
  text_ += chunk;
  if (!renderTimer_.isActive()) renderTimer_.start();
}

void MessageWidget::setText(const QString& text) {
  text_ = text;
  render();
}

void MessageWidget::setFinished(const QString& text, const QString& mode,
                                const QJsonObject& stats) {
  streaming_ = false;
  renderTimer_.stop();
  text_ = text;
  record_.text = text;
  record_.mode = mode;
  record_.stats = stats;
  record_.complete = true;
  updateHeader();
  render();
}

void MessageWidget::setActions(bool canEdit, bool canRegenerate) {
  edit_->setVisible(canEdit);
  regenerate_->setVisible(canRegenerate);
}

void MessageWidget::setSelected(bool on) {
  const bool user = record_.role == QLatin1String("user");
  const QString name = objectName();
  QString css = user ? QStringLiteral("#%1 { background: #f1f4fa; border-radius: 10px; %2 }")
                     : QStringLiteral("#%1 { border-radius: 10px; %2 }");
  setStyleSheet(css.arg(name, on ? QStringLiteral("border: 1px solid #c4d5f7;")
                                 : QStringLiteral("border: 1px solid transparent;")));
}

void MessageWidget::setNotice(const QString& text) {
  notice_->setText(text);
  notice_->setVisible(!text.isEmpty());
}

void MessageWidget::setHeat(const QVector<QPair<QPair<int, int>, double>>& spans) {
  heat_ = spans;
  render();
}

void MessageWidget::render() {
  QElapsedTimer took;
  took.start();
  const bool plain = record_.role == QLatin1String("user");
  if (plain) {
    parts_ = app::AnswerParts{{}, text_, true, false};
    body_->setPlainText(text_);
  } else {
    parts_ = app::splitThinkingForDisplay(text_, startsInThinking_ && streamedHere_, streaming_);
    const bool noAnswer = parts_.answer.isEmpty();
    // While it thinks (or when it stopped thinking without answering) the block is all there is.
    body_->setVisible(!(parts_.hasThinking && noAnswer && (!parts_.thinkingDone || !streaming_)));
    body_->showMarkdown(noAnswer && streaming_ ? QStringLiteral("…") : parts_.answer);
  }
  renderThinking();
  QTextDocument* doc = body_->document();  // after showMarkdown(), which replaces it
  QList<QTextEdit::ExtraSelection> sel;
  if (!heat_.isEmpty() && !parts_.answer.isEmpty()) {
    // Offsets are in the raw text, of which the answer is the end; plain text maps 1:1,
    // rendered Markdown proportionally.
    const int docChars = std::max(1, doc->characterCount() - 1);
    const int answerStart = int(text_.size() - parts_.answer.size());
    const double scale = plain ? 1.0 : double(docChars) / parts_.answer.size();
    for (const auto& h : heat_) {
      QTextEdit::ExtraSelection s;
      s.cursor = QTextCursor(doc);
      const int a = std::clamp(int((h.first.first - answerStart) * scale), 0, docChars);
      const int b = std::clamp(int((h.first.second - answerStart) * scale), a, docChars);
      if (a == b) continue;
      s.cursor.setPosition(a);
      s.cursor.setPosition(b, QTextCursor::KeepAnchor);
      s.format.setBackground(heatColor(h.second));
      sel.append(s);
    }
  }
  body_->setExtraSelections(sel);
  lastRenderMs_ = int(took.elapsed());
  renderTimer_.setInterval(std::clamp(4 * lastRenderMs_, kRenderIntervalMs, 1000));
  emit rendered();
}

void MessageWidget::renderThinking() {
  const bool live = streaming_ && !parts_.thinkingDone;
  const bool show = parts_.hasThinking && (live || !parts_.thinking.isEmpty());
  thinkingBlock_->setVisible(show);
  if (!show) {
    if (!thinkingBody_->document()->isEmpty()) thinkingBody_->clear();
    return;
  }
  const int words = app::thinkingWordCount(parts_.thinking);
  QString title;
  if (live)
    title = words == 0 ? tr("Thinking…") : tr("Thinking… (%1)").arg(wordsText(words));
  else if (!parts_.thinkingDone)  // cut by the token limit, stopped, or an error
    title = tr("Stopped thinking after %1").arg(wordsText(words));
  else
    title = tr("Thought for %1").arg(wordsText(words));
  title += thinkingExpanded_ ? QStringLiteral(" ▾") : QStringLiteral(" ▸");
  thinkingHeader_->setText(title);
  thinkingHeader_->setAccessibleName(title);
  thinkingHeader_->setToolTip(thinkingExpanded_ ? tr("Hide the model's reasoning")
                                                : tr("Show the model's reasoning"));

  const QString preview = live && !thinkingExpanded_ ? lastLine(parts_.thinking) : QString();
  static_cast<TailLabel*>(thinkingPreview_)->setFullText(preview);
  thinkingPreview_->setVisible(!preview.isEmpty());

  thinkingBody_->setVisible(thinkingExpanded_);
  if (!thinkingExpanded_) {
    // Rendered only while shown: a collapsed block costs nothing per token.
    if (!thinkingBody_->document()->isEmpty()) thinkingBody_->clear();
    return;
  }
  thinkingBody_->showMarkdown(parts_.thinking);
  QTextDocument* doc = thinkingBody_->document();
  QTextCursor c(doc);
  c.select(QTextCursor::Document);
  QTextCharFormat dim;
  dim.setFontItalic(true);
  dim.setForeground(mutedTextColor());
  c.mergeCharFormat(dim);
}

void MessageWidget::mousePressEvent(QMouseEvent* e) {
  emit activated(record_.id);
  QFrame::mousePressEvent(e);
}

bool MessageWidget::eventFilter(QObject* o, QEvent* e) {
  if ((o == body_->viewport() || o == thinkingBody_->viewport()) &&
      e->type() == QEvent::MouseButtonPress)
    emit activated(record_.id);
  return QFrame::eventFilter(o, e);
}

// --- ChatView ----------------------------------------------------------------------------------

ChatView::ChatView(QWidget* parent) : QScrollArea(parent) {
  setObjectName(QStringLiteral("ChatScroll"));
  setWidgetResizable(true);
  setFrameShape(QFrame::NoFrame);
  setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  auto* outer = new QWidget;
  auto* h = new QHBoxLayout(outer);
  h->setContentsMargins(16, 16, 16, 16);
  column_ = new QWidget(outer);
  column_->setMaximumWidth(880);
  layout_ = new QVBoxLayout(column_);
  layout_->setContentsMargins(0, 0, 0, 0);
  layout_->setSpacing(10);
  layout_->addStretch(1);
  h->addStretch(0);
  h->addWidget(column_, 1);
  h->addStretch(0);
  setWidget(outer);
  connect(verticalScrollBar(), &QScrollBar::valueChanged, this,
          [this](int v) { stickToBottom_ = v >= verticalScrollBar()->maximum() - 40; });
  connect(verticalScrollBar(), &QScrollBar::rangeChanged, this, [this](int, int max) {
    if (stickToBottom_) verticalScrollBar()->setValue(max);
  });
}

void ChatView::clear() {
  for (MessageWidget* m : messages_) m->deleteLater();
  messages_.clear();
  stickToBottom_ = true;
}

MessageWidget* ChatView::addMessage(const app::MessageRecord& r) {
  auto* m = new MessageWidget(r, column_);
  m->setStartsInThinking(answersStartInThinking_);
  layout_->insertWidget(layout_->count() - 1, m);
  messages_.append(m);
  connect(m, &MessageWidget::activated, this, &ChatView::activated);
  connect(m, &MessageWidget::editRequested, this, &ChatView::editRequested);
  connect(m, &MessageWidget::regenerateRequested, this, &ChatView::regenerateRequested);
  connect(m, &MessageWidget::versionRequested, this, &ChatView::versionRequested);
  return m;
}

void ChatView::removeFrom(qint64 messageId) {
  int i = 0;
  while (i < messages_.size() && messages_[i]->messageId() != messageId) ++i;
  while (messages_.size() > i) messages_.takeLast()->deleteLater();
}

MessageWidget* ChatView::message(qint64 id) const {
  for (MessageWidget* m : messages_)
    if (m->messageId() == id) return m;
  return nullptr;
}

MessageWidget* ChatView::lastMessage(const QString& role) const {
  for (auto it = messages_.rbegin(); it != messages_.rend(); ++it)
    if (role.isEmpty() || (*it)->role() == role) return *it;
  return nullptr;
}

QVector<MessageWidget*> ChatView::messages() const { return messages_; }

void ChatView::updateActions(bool busy) {
  MessageWidget* lastUser = lastMessage(QStringLiteral("user"));
  MessageWidget* last = lastMessage();
  for (MessageWidget* m : messages_) {
    const bool isLastUser = m == lastUser;
    const bool isLastAnswer = m == last && m->role() == QLatin1String("assistant");
    m->setActions(!busy && isLastUser, !busy && isLastAnswer);
  }
}

void ChatView::scrollToBottom() {
  stickToBottom_ = true;
  verticalScrollBar()->setValue(verticalScrollBar()->maximum());
}

void ChatView::setSelectedMessage(qint64 id) {
  for (MessageWidget* m : messages_) m->setSelected(m->messageId() == id);
}

void ChatView::clearHeat() {
  for (MessageWidget* m : messages_) m->setHeat({});
}

}  // namespace resa::ui
