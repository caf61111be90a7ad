#include "ui/composer.h"

#include <QHBoxLayout>
#include <QKeyEvent>
#include <QLabel>
#include <QPushButton>
#include <QStyle>
#include <QTextBlock>
#include <QTextLayout>
#include <QToolButton>
#include <QVBoxLayout>

#include <algorithm>

#include "ui/theme.h"

namespace resa::ui {

ComposerEdit::ComposerEdit(QWidget* parent) : QPlainTextEdit(parent) {
  setObjectName(QStringLiteral("ComposerEdit"));
  setFrameShape(QFrame::NoFrame);
  setTabChangesFocus(true);
  setPlaceholderText(tr("Ask about your document…  (Enter sends, Shift+Enter: new line)"));
  setVerticalScrollBarPolicy(Qt::ScrollBarAsNeeded);
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
  connect(this, &QPlainTextEdit::textChanged, this, &ComposerEdit::fitHeight);
  fitHeight();
}

QSize ComposerEdit::sizeHint() const { return {400, height()}; }

void ComposerEdit::keyPressEvent(QKeyEvent* e) {
  const bool enter = e->key() == Qt::Key_Return || e->key() == Qt::Key_Enter;
  if (enter && !(e->modifiers() & (Qt::ShiftModifier | Qt::AltModifier))) {
    emit submit();
    return;
  }
  if (enter) {  // Shift+Enter: a new line, never a send
    insertPlainText(QStringLiteral("\n"));
    return;
  }
  QPlainTextEdit::keyPressEvent(e);
}

void ComposerEdit::fitHeight() {
  // 1 to 8 lines, counting wrapped lines.
  int lines = 0;
  for (QTextBlock b = document()->begin(); b.isValid(); b = b.next())
    lines += std::max(1, b.layout() ? b.layout()->lineCount() : 1);
  lines = std::clamp(lines, 1, 8);
  const int h = fontMetrics().lineSpacing() * lines + 2 * int(document()->documentMargin()) + 4;
  if (h != height()) setFixedHeight(h);
}

Composer::Composer(QWidget* parent) : QFrame(parent) {
  auto* outer = new QVBoxLayout(this);
  outer->setContentsMargins(0, 0, 0, 0);
  outer->setSpacing(6);

  auto* editRow = new QHBoxLayout;
  editBanner_ =
      new QLabel(tr("Editing your last message: sending replaces it and its answer."), this);
  editBanner_->setObjectName(QStringLiteral("StatsFooter"));
  cancelEdit_ = new QToolButton(this);
  cancelEdit_->setText(tr("Cancel edit"));
  cancelEdit_->setAutoRaise(true);
  editRow->addWidget(editBanner_);
  editRow->addStretch();
  editRow->addWidget(cancelEdit_);
  outer->addLayout(editRow);
  editBanner_->hide();
  cancelEdit_->hide();

  chips_ = new QWidget(this);
  chipLayout_ = new QHBoxLayout(chips_);
  chipLayout_->setContentsMargins(0, 0, 0, 0);
  chipLayout_->setSpacing(6);
  chipLayout_->addStretch();
  chips_->hide();
  outer->addWidget(chips_);

  auto* box = new QFrame(this);
  box->setObjectName(QStringLiteral("Composer"));
  auto* row = new QHBoxLayout(box);
  row->setContentsMargins(8, 6, 6, 6);
  row->setSpacing(6);
  attach_ = new QToolButton(box);
  attach_->setIcon(icon(QStringLiteral("attach")));
  attach_->setIconSize(QSize(18, 18));
  attach_->setAutoRaise(true);
  attach_->setToolTip(tr("Attach a document (.txt, .md, source code, PDF) — or drop it here"));
  attach_->setAccessibleName(tr("Attach document"));
  edit_ = new ComposerEdit(box);
  send_ = new QPushButton(box);
  send_->setObjectName(QStringLiteral("PrimaryButton"));
  send_->setIconSize(QSize(14, 14));
  row->addWidget(attach_, 0, Qt::AlignBottom);
  row->addWidget(edit_, 1);
  row->addWidget(send_, 0, Qt::AlignBottom);
  outer->addWidget(box);

  connect(edit_, &ComposerEdit::submit, this, &Composer::trySend);
  connect(edit_, &QPlainTextEdit::textChanged, this, &Composer::updateButtons);
  connect(send_, &QPushButton::clicked, this, [this] {
    if (busy_)
      emit stopRequested();
    else
      trySend();
  });
  connect(attach_, &QToolButton::clicked, this, &Composer::attachRequested);
  connect(cancelEdit_, &QToolButton::clicked, this, [this] {
    setEditing(false);
    clear();
    emit editCancelled();
  });
  updateButtons();
}

QString Composer::text() const { return edit_->toPlainText(); }
void Composer::setText(const QString& text) {
  edit_->setPlainText(text);
  edit_->moveCursor(QTextCursor::End);
}
void Composer::clear() { edit_->clear(); }

void Composer::trySend() {
  if (busy_ || !ready_) return;
  const QString t = text().trimmed();
  if (t.isEmpty()) return;
  emit sendRequested(t);
}

void Composer::setBusy(bool busy) {
  busy_ = busy;
  updateButtons();
}

void Composer::setReady(bool ready, const QString& why) {
  ready_ = ready;
  edit_->setPlaceholderText(
      ready ? tr("Ask about your document…  (Enter sends, Shift+Enter: new line)") : why);
  updateButtons();
}

void Composer::setEditing(bool editing) {
  editing_ = editing;
  editBanner_->setVisible(editing);
  cancelEdit_->setVisible(editing);
}

void Composer::updateButtons() {
  if (busy_) {
    send_->setObjectName(QStringLiteral("StopButton"));
    send_->setText(tr("Stop"));
    send_->setIcon(icon(QStringLiteral("stop-white")));
    send_->setToolTip(tr("Stop generating (Esc)"));
    send_->setEnabled(true);
  } else {
    send_->setObjectName(QStringLiteral("PrimaryButton"));
    send_->setText(tr("Send"));
    send_->setIcon(icon(QStringLiteral("send-white")));
    send_->setToolTip(tr("Send (Enter)"));
    send_->setEnabled(ready_ && !text().trimmed().isEmpty());
  }
  send_->style()->unpolish(send_);
  send_->style()->polish(send_);
}

void Composer::setAttachments(const QList<QPair<QString, int>>& docs, bool estimated) {
  while (chipLayout_->count() > 1) {
    QLayoutItem* it = chipLayout_->takeAt(0);
    delete it->widget();
    delete it;
  }
  for (int i = 0; i < docs.size(); ++i) {
    auto* chip = new QFrame(chips_);
    chip->setObjectName(QStringLiteral("AttachmentChip"));
    auto* l = new QHBoxLayout(chip);
    l->setContentsMargins(8, 2, 2, 2);
    l->setSpacing(4);
    auto* ic = new QLabel(chip);
    ic->setPixmap(icon(QStringLiteral("document")).pixmap(14, 14));
    auto* name = new QLabel(tr("%1  ·  %2%3 tokens")
                                .arg(docs[i].first, estimated ? QStringLiteral("≈") : QString(),
                                     formatCount(docs[i].second)),
                            chip);
    auto* remove = new QToolButton(chip);
    remove->setIcon(icon(QStringLiteral("close")));
    remove->setIconSize(QSize(10, 10));
    remove->setAutoRaise(true);
    remove->setToolTip(tr("Remove %1 from this conversation").arg(docs[i].first));
    connect(remove, &QToolButton::clicked, this, [this, i] { emit removeAttachmentRequested(i); });
    l->addWidget(ic);
    l->addWidget(name);
    l->addWidget(remove);
    chipLayout_->insertWidget(chipLayout_->count() - 1, chip);
  }
  chips_->setVisible(!docs.isEmpty());
}

}  // namespace resa::ui
