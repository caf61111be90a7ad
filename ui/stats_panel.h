// Live statistics of the answer being generated (issue 3 item 4): time to first token, prompt
// processing apart from generation speed, tokens/s now with a sparkline, prefill progress,
// sparsity, KV bytes per token, context gauge, rectifications (counter and chart markers),
// memory in use.
#pragma once

#include <QElapsedTimer>
#include <QFrame>

#include <QSet>
#include <QVector>

#include "app/lib/app_types.h"

class QLabel;
class QProgressBar;

namespace resa::ui {

class ContextGauge;
class LatencyChart;
class Sparkline;

class MetricTile : public QFrame {
  Q_OBJECT
 public:
  MetricTile(const QString& caption, const QString& tip, QWidget* parent = nullptr);
  void setValue(const QString& value, const QString& detail = QString());
  QString value() const;
  QString detail() const;

 private:
  QLabel* value_;
  QLabel* detail_;
};

class StatsPanel : public QWidget {
  Q_OBJECT
 public:
  explicit StatsPanel(QWidget* parent = nullptr);

  void beginAnswer(DecodeMode mode);
  void setPrefillProgress(int done, int total);
  void addToken();  // a token arrived (the first one fixes the time to first token)
  void updateLive(const app::LiveStats& s);
  void addRectification(const app::RectificationInfo& r);
  void finishAnswer(const app::AnswerStats& s);
  // A stored answer's numbers, with its latency chart redrawn from stepMs.
  void showAnswer(const app::AnswerStats& s);
  void setContext(int used, int limit);
  void setMemory(qint64 memoryBytes, qint64 kvCacheBytes);

  int rectifications() const { return rectifications_; }
  LatencyChart* latencyChart() const { return chart_; }
  Sparkline* sparkline() const { return spark_; }
  QString tileValue(const QString& caption) const;

 private:
  void updateMode(DecodeMode mode);
  void addStep(const app::StepSample& s);
  void showNumbers(const app::AnswerStats& s);

  QLabel* modeChip_;
  QLabel* stateLabel_;
  MetricTile* ttft_;
  MetricTile* prefillRate_;
  MetricTile* decodeRate_;
  MetricTile* sparsity_;
  MetricTile* kvPerToken_;
  MetricTile* rectTile_;
  MetricTile* memory_;
  MetricTile* contextTile_;
  Sparkline* spark_;
  QProgressBar* prefill_;
  ContextGauge* gauge_;
  LatencyChart* chart_;
  int series_ = -1;

  QElapsedTimer sinceStart_;
  QElapsedTimer sincePrefill_;
  bool firstToken_ = false;
  int prefillTotal_ = 0;
  int rectifications_ = 0;
  QVector<double> stepMs_;
  QSet<int> marked_;        // steps that carry a rectification marker
  QSet<int> pendingMarks_;  // rectifications announced before their step arrived
};

}  // namespace resa::ui
