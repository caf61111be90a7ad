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
  if (!isEnabled()) p.setOpacity(0.45);  // no heat map yet: the colours it will use
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
  // The heat overlay covers the text around what is on screen (overlayVisible): scrolling or a
  // relayout (a resize) moves it along.
  connect(viewer_->verticalScrollBar(), &QScrollBar::valueChanged, this,
          &DocumentPanel::overlayVisible);
  connect(viewer_->verticalScrollBar(), &QScrollBar::rangeChanged, this,
          [this] { overlaidFrom_ = overlaidTo_ = -1, overlayVisible(); });
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
  // The caption and the legend keep their place while a document is shown: showing them with
  // the first heat map resized the viewer, and relaying out a 1 MB text took 180 ms.
  legendRow_->setVisible(any);
  caption_->setVisible(any);
  showHeatCaption(QString());
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
  showHeatCaption(caption);
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
  showHeatCaption(QString());
  applyHeat();
}

void DocumentPanel::showHeatCaption(const QString& caption) {
  caption_->setText(!heat_.isEmpty() ? caption
                                     : tr("After an answer in Sparse or ReSA mode, the passages it "
                                          "read light up here."));
  legend_->setEnabled(!heat_.isEmpty());
}

void DocumentPanel::applyHeat() {
  shown_.clear();
  QTextDocument* doc = viewer_->document();
  const int n = doc->characterCount() - 1;
  int hottest = -1;
  double hottestHits = -1;
  for (const auto& s : heat_) {
    if (s.index != current_ || maxHits_ <= 0) continue;
    const int a = std::clamp(s.charStart, 0, n), b = std::clamp(s.charEnd, a, n);
    if (a == b) continue;
    shown_.append(Shown{a, b, s.hits / maxHits_});
    if (s.hits > hottestHits) {
      hottestHits = s.hits;
      hottest = a;
    }
  }
  std::sort(shown_.begin(), shown_.end(),
            [](const Shown& x, const Shown& y) { return x.start < y.start; });
  shownEnd_.resize(shown_.size());
  int reach = 0;  // the furthest end so far: spans may overlap
  for (qsizetype i = 0; i < shown_.size(); ++i)
    shownEnd_[i] = reach = std::max(reach, shown_[i].end);
  overlaidFrom_ = overlaidTo_ = -1;
  if (hottest >= 0) {
    QTextCursor c(doc);
    c.setPosition(hottest);
    viewer_->setTextCursor(c);
    viewer_->centerCursor();
  }
  overlayVisible();
}

int DocumentPanel::overlaySelectionCount() const { return int(viewer_->extraSelections().size()); }

void DocumentPanel::overlayVisible() {
  if (shown_.isEmpty()) {
    if (!viewer_->extraSelections().isEmpty()) viewer_->setExtraSelections({});
    overlaidFrom_ = overlaidTo_ = -1;
    return;
  }
  // The characters on screen, and as many again on either side: scrolling a little needs no
  // new overlay, and a document's thousands of spans are never all laid out at once.
  const QRect r = viewer_->viewport()->rect();
  const int first = viewer_->cursorForPosition(r.topLeft()).position();
  const int last = viewer_->cursorForPosition(r.bottomRight()).position();
  if (overlaidFrom_ >= 0 && first >= overlaidFrom_ && last <= overlaidTo_) return;
  const int margin = std::max(2000, last - first);
  const int from = std::max(0, first - margin), to = last + margin;
  // First span that reaches past `from` (shownEnd_ does not fall), up to the first past `to`.
  const qsizetype i0 =
      std::upper_bound(shownEnd_.cbegin(), shownEnd_.cend(), from) - shownEnd_.cbegin();
  QList<QTextEdit::ExtraSelection> sel;
  QTextDocument* doc = viewer_->document();
  for (qsizetype i = i0; i < shown_.size() && shown_[i].start < to; ++i) {
    const QColor color = heatColor(shown_[i].heat);
    const int start = shown_[i].start;
    int end = shown_[i].end;
    // Adjacent spans of one colour are one selection.
    while (i + 1 < shown_.size() && shown_[i + 1].start == end && shown_[i + 1].start < to &&
           heatColor(shown_[i + 1].heat) == color)
      end = shown_[++i].end;
    QTextEdit::ExtraSelection e;
    e.cursor = QTextCursor(doc);
    e.cursor.setPosition(start);
    e.cursor.setPosition(end, QTextCursor::KeepAnchor);
    e.format.setBackground(color);
    sel.append(e);
  }
  viewer_->setExtraSelections(sel);
  overlaidFrom_ = from;
  overlaidTo_ = to;
}

}  // namespace resa::ui
