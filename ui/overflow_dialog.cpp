#include "ui/overflow_dialog.h"

#include <QDialogButtonBox>
#include <QGridLayout>
#include <QLabel>
#include <QPushButton>
#include <QRadioButton>
#include <QVBoxLayout>

#include "ui/sparkline.h"
#include "ui/theme.h"

namespace resa::ui {

OverflowDialog::OverflowDialog(const app::ContextOverflow& o, QWidget* parent) : QDialog(parent) {
  setWindowTitle(tr("The conversation no longer fits"));
  auto* l = new QVBoxLayout(this);
  auto* title = new QLabel(tr("<b>This turn needs %1 tokens, the context holds %2.</b>")
                               .arg(formatCount(o.neededTokens), formatCount(o.limit)),
                           this);
  l->addWidget(title);
  auto* gauge = new ContextGauge(this);
  gauge->setValues(o.neededTokens, o.limit);
  l->addWidget(gauge);
  auto* grid = new QGridLayout;
  auto row = [&](int r, const QString& what, int tokens) {
    grid->addWidget(new QLabel(what, this), r, 0);
    auto* n = new QLabel(formatCount(tokens), this);
    n->setAlignment(Qt::AlignRight);
    grid->addWidget(n, r, 1);
  };
  row(0, tr("Attached documents"), o.documentTokens);
  row(1, tr("Earlier turns"), o.historyTokens);
  row(2, tr("Your new message"), o.newTurnTokens);
  row(3, tr("Room kept for the answer"), o.answerReserve);
  l->addLayout(grid);
  auto* what = new QLabel(tr("Nothing is cut silently. How should ReSA Chat make room?"), this);
  what->setWordWrap(true);
  l->addWidget(what);
  pinned_ = new QRadioButton(tr("Drop the oldest turns, keep the document pinned"), this);
  dropAll_ = new QRadioButton(tr("Drop the oldest turns, and the document if needed"), this);
  pinned_->setEnabled(o.fitsWithDocumentPinned);
  dropAll_->setEnabled(o.fitsByDroppingTurns);
  if (!o.fitsWithDocumentPinned)
    pinned_->setToolTip(tr("The document alone plus your message do not fit"));
  if (o.fitsWithDocumentPinned)
    pinned_->setChecked(true);
  else
    dropAll_->setChecked(true);
  l->addWidget(pinned_);
  l->addWidget(dropAll_);
  if (!o.fitsByDroppingTurns && !o.fitsWithDocumentPinned) {
    auto* no = new QLabel(tr("Even dropping every earlier turn is not enough: shorten the "
                             "message, lower Max tokens, or raise the context limit in "
                             "Settings."),
                          this);
    no->setWordWrap(true);
    no->setObjectName(QStringLiteral("StatsFooter"));
    l->addWidget(no);
  }
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
  buttons->button(QDialogButtonBox::Ok)->setText(tr("Continue"));
  buttons->button(QDialogButtonBox::Cancel)
      ->setToolTip(tr("Send nothing: your message goes back into the message box"));
  buttons->button(QDialogButtonBox::Ok)
      ->setEnabled(o.fitsByDroppingTurns || o.fitsWithDocumentPinned);
  connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  l->addWidget(buttons);
}

std::optional<app::OverflowPolicy> OverflowDialog::policy() const {
  if (result() != QDialog::Accepted) return std::nullopt;
  return pinned_->isChecked() ? app::OverflowPolicy::kKeepDocumentPinned
                              : app::OverflowPolicy::kDropOldestTurns;
}

}  // namespace resa::ui
