// Attached documents with their token counts, and the text of one with the heat map overlay
// (issue 3 item 5): how often the answer's sparse steps selected the KV blocks of each passage,
// from the worker's AnswerStats::heat spans (character ranges of the document).
#pragma once

#include <QList>
#include <QWidget>

#include "app/lib/app_types.h"
#include "app/lib/conversation_store.h"

class QComboBox;
class QLabel;
class QPlainTextEdit;

namespace resa::ui {

// Joins hard-wrapped lines of prose for display, keeping every character offset.
QString reflowForDisplay(const QString& text);

class HeatLegend : public QWidget {
  Q_OBJECT
 public:
  using QWidget::QWidget;
  QSize sizeHint() const override { return {160, 14}; }

 protected:
  void paintEvent(QPaintEvent* e) override;
};

class DocumentPanel : public QWidget {
  Q_OBJECT
 public:
  explicit DocumentPanel(QWidget* parent = nullptr);

  void setDocuments(const QList<app::DocumentRecord>& docs, bool estimatedCounts);
  // Spans of kind "document" (index into the documents), hits normalised by `maxHits`.
  void setHeat(const QList<app::HeatSpan>& spans, double maxHits, const QString& caption);
  void clearHeat();
  void showDocument(int index);
  int documentCount() const { return int(docs_.size()); }
  // What the list shows for a document: its name and token count ("≈" while estimated).
  QString documentLabel(int index) const;
  int heatSpanCount() const { return int(heat_.size()); }
  // The overlay's selections now: spans around the visible text, adjacent ones of one colour
  // merged.
  int overlaySelectionCount() const;
  QPlainTextEdit* viewer() const { return viewer_; }

 private:
  void applyHeat();
  void overlayVisible();
  // The caption above the text: the answer's, or (no heat map) what the colours will show.
  void showHeatCaption(const QString& caption);

  // The current document's heat spans, clamped to its text and ordered by start; shownEnd_[i]:
  // the furthest end among spans 0..i.
  struct Shown {
    int start = 0, end = 0;
    double heat = 0;  // hits / maxHits_
  };

  QList<app::DocumentRecord> docs_;
  QList<app::HeatSpan> heat_;
  QList<Shown> shown_;
  QList<int> shownEnd_;
  int overlaidFrom_ = -1, overlaidTo_ = -1;  // the character range the overlay covers
  double maxHits_ = 0;
  QComboBox* picker_;
  QLabel* caption_;
  QLabel* empty_;
  QPlainTextEdit* viewer_;
  HeatLegend* legend_;
  QWidget* legendRow_;
  int current_ = -1;
};

}  // namespace resa::ui
