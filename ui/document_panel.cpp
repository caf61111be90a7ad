#include "ui/document_panel.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLinearGradient>
#include <QPainter>
#include <QPlainTextEdit>
#include <QScrollBar>
#include <QTextBlock>
#include <QVBoxLayout>

#include <algorithm>

#include "ui/theme.h"

namespace resa::ui {

void HeatLegend::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.setRenderHint(QPainter::Antialiasing);
  const QRectF r = QRectF(rect()).adjusted(0.5, 2.5, -0.5, -2.5);
  QLinearGradient g(r.topLeft(), r.topRight());
  for (int i = 0; i <= 10; ++i) {
    QColor c = heatColor(i / 10.0);
    if (i == 0) c = QColor(255, 255, 255);
    g.setColorAt(i / 10.0, c);
  }
  p.setPen(QPen(QColor(0xdd, 0xe0, 0xe5), 1));
  p.setBrush(g);
  p.drawRoundedRect(r, 3, 3);
}

QString reflowForDisplay(const QString& text) {
  // Hard-wrapped prose (a newline inside a paragraph) re-wraps badly in a narrow panel. Turning
  // such a newline into a space keeps every character offset, so heat spans still line up.
  QString out = text;
  const auto structural = [](QChar c) {
    return c == QLatin1Char('#') || c == QLatin1Char('-') || c == QLatin1Char('*') ||
           c == QLatin1Char('>') || c == QLatin1Char('|') || c == QLatin1Char('`') || c.isDigit() ||
           c.isSpace();
  };
  for (qsizetype i = 1; i + 1 < out.size(); ++i) {
    if (out[i] != QLatin1Char('\n')) continue;
    const QChar prev = out[i - 1], next = out[i + 1];
    if (prev == QLatin1Char('\n') || prev.isSpace() || structural(next)) continue;
    // The line must itself be prose, not a heading or list item.
    qsizetype start = out.lastIndexOf(QLatin1Char('\n'), i - 1) + 1;
    if (start < i && structural(out[start])) continue;
    out[i] = QLatin1Char(' ');
  }
  return out;
}

DocumentPanel::DocumentPanel(QWidget* parent) : QWidget(parent) {
  auto* l = new QVBoxLayout(this);
  l->setContentsMargins(12, 12, 12, 12);
  l->setSpacing(8);
  auto* title = new QLabel(tr("WHAT THE ANSWER READ"), this);
  title->setObjectName(QStringLiteral("SectionTitle"));
  l->addWidget(title);
  picker_ = new QComboBox(this);
  l->addWidget(picker_);
  caption_ = new QLabel(this);
  caption_->setObjectName(QStringLiteral("StatsFooter"));
  caption_->setWordWrap(true);
  l->addWidget(caption_);
  legendRow_ = new QWidget(this);
  auto* lr = new QHBoxLayout(legendRow_);
  lr->setContentsMargins(0, 0, 0, 0);
  auto* lo = new QLabel(tr("not read"), legendRow_);
  lo->setObjectName(QStringLiteral("StatsFooter"));
  legend_ = new HeatLegend(legendRow_);
  auto* hi = new QLabel(tr("read most"), legendRow_);
  hi->setObjectName(QStringLiteral("StatsFooter"));
  lr->addWidget(lo);
  lr->addWidget(legend_, 1);
  lr->addWidget(hi);
  l->addWidget(legendRow_);
  viewer_ = new QPlainTextEdit(this);
  viewer_->setReadOnly(true);
  viewer_->setLineWrapMode(QPlainTextEdit::WidgetWidth);
  viewer_->setFrameShape(QFrame::StyledPanel);
  QFont f = viewer_->font();
  f.setPointSizeF(std::max(8.0, f.pointSizeF() - 0.5));
  viewer_->setFont(f);
  l->addWidget(viewer_, 1);
  empty_ = new QLabel(tr("No document attached.\n\nAttach a .txt, .md, source file or PDF with "
                         "the paper clip, or drop it on the window. After an answer in Sparse "
                         "or ReSA mode, the passages it read light up here."),
                      this);
  empty_->setWordWrap(true);
  empty_->setAlignment(Qt::AlignCenter);
  empty_->setObjectName(QStringLiteral("StatsFooter"));
  l->addWidget(empty_, 1);
  connect(picker_, &QComboBox::currentIndexChanged, this, &DocumentPanel::showDocument);
  setDocuments({}, false);
}

void DocumentPanel::setDocuments(const QList<app::DocumentRecord>& docs, bool estimated) {
  docs_ = docs;
  heat_.clear();
  picker_->blockSignals(true);
  picker_->clear();
  for (const auto& d : docs)
    picker_->addItem(
        icon(QStringLiteral("document")),
        tr("%1  (%2%3 tokens)")
            .arg(d.name, estimated ? QStringLiteral("≈") : QString(), formatCount(d.tokenCount)));
  picker_->blockSignals(false);
  const bool any = !docs.isEmpty();
  picker_->setVisible(any);
  viewer_->setVisible(any);
  empty_->setVisible(!any);
  legendRow_->setVisible(false);
  caption_->setVisible(false);
  current_ = -1;
  if (any) showDocument(0);
}

QString DocumentPanel::documentLabel(int index) const { return picker_->itemText(index); }

void DocumentPanel::showDocument(int index) {
  if (index < 0 || index >= docs_.size()) return;
  if (picker_->currentIndex() != index) picker_->setCurrentIndex(index);
  if (index != current_) {
    current_ = index;
    viewer_->setPlainText(reflowForDisplay(docs_[index].text));
  }
  applyHeat();
}

void DocumentPanel::setHeat(const QList<app::HeatSpan>& spans, double maxHits,
                            const QString& caption) {
  heat_.clear();
  for (const auto& s : spans)
    if (s.kind == QLatin1String("document")) heat_.append(s);
  maxHits_ = maxHits;
  caption_->setText(caption);
  caption_->setVisible(!caption.isEmpty());
  legendRow_->setVisible(!heat_.isEmpty());
  // Show the document the answer read most.
  int best = current_;
  double bestHits = -1;
  for (const auto& s : heat_)
    if (s.hits > bestHits) {
      bestHits = s.hits;
      best = s.index;
    }
  if (best >= 0 && best < docs_.size()) {
    if (best != current_) {
      showDocument(best);
      return;
    }
  }
  applyHeat();
}

void DocumentPanel::clearHeat() {
  heat_.clear();
  legendRow_->setVisible(false);
  caption_->setVisible(false);
  applyHeat();
}

void DocumentPanel::applyHeat() {
  QList<QTextEdit::ExtraSelection> sel;
  QTextDocument* doc = viewer_->document();
  const int n = doc->characterCount() - 1;
  int hottest = -1;
  double hottestHits = -1;
  for (const auto& s : heat_) {
    if (s.index != current_ || maxHits_ <= 0) continue;
    const int a = std::clamp(s.charStart, 0, n), b = std::clamp(s.charEnd, a, n);
    if (a == b) continue;
    QTextEdit::ExtraSelection e;
    e.cursor = QTextCursor(doc);
    e.cursor.setPosition(a);
    e.cursor.setPosition(b, QTextCursor::KeepAnchor);
    e.format.setBackground(heatColor(s.hits / maxHits_));
    sel.append(e);
    if (s.hits > hottestHits) {
      hottestHits = s.hits;
      hottest = a;
    }
  }
  viewer_->setExtraSelections(sel);
  if (hottest >= 0) {
    QTextCursor c(doc);
    c.setPosition(hottest);
    viewer_->setTextCursor(c);
    viewer_->centerCursor();
  }
}

}  // namespace resa::ui
