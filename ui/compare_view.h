// The Compare view (issue 3 item 7): one prompt over the current conversation's context (or
// synthetic contexts of chosen lengths) in dense, sparse and ReSA one after another; tokens/s per
// mode against context length, per-token latency over time with rectifications marked, a table,
// and export to PNG and CSV.
#pragma once

#include <QDialog>
#include <QList>

#include "app/lib/app_types.h"

class QChartView;
class QComboBox;
class QLabel;
class QLineEdit;
class QLineSeries;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;
class QValueAxis;

namespace resa::ui {

class LatencyChart;

class CompareView : public QDialog {
  Q_OBJECT
 public:
  explicit CompareView(QWidget* parent = nullptr);

  // What the Run button asks for (documents and history are filled in by the caller).
  bool useConversation() const;
  QList<int> syntheticLengths() const;  // empty when the text does not parse
  QString prompt() const;
  int newTokens() const;
  void setConversationAvailable(bool available, int contextTokens);
  void setPrompt(const QString& p);
  void setSyntheticLengths(const QList<int>& lengths);

  void beginRuns(qint64 requestId, int total);
  void addRun(const app::CompareRun& run, int done, int total);
  void finish(const app::CompareResult& result);
  void fail(const QString& message);
  void setResult(const app::CompareResult& result);  // a stored comparison
  app::CompareResult result() const { return result_; }
  qint64 requestId() const { return requestId_; }
  bool isRunning() const { return running_; }

  int throughputSeriesCount() const;
  QLineSeries* throughputSeries(int i) const;
  LatencyChart* latencyChart() const { return latency_; }

  bool exportPng(const QString& path) const;
  bool exportCsv(const QString& path) const;
  QString csv() const;

 signals:
  void runRequested();
  void stopRequested();

 private:
  void clearCharts();
  void rebuild();
  void showLatencyFor(int contextTokens);
  void updateButtons();

  QComboBox* source_;
  QLineEdit* lengths_;
  QLineEdit* prompt_;
  QSpinBox* tokens_;
  QPushButton* run_;
  QPushButton* stop_;
  QPushButton* png_;
  QPushButton* csvButton_;
  QProgressBar* progress_;
  QLabel* status_;
  QChartView* throughputView_;
  QList<QLineSeries*> throughput_;  // dense, sparse, resa
  QValueAxis* ctxAxis_ = nullptr;
  QValueAxis* rateAxis_ = nullptr;
  LatencyChart* latency_;
  QComboBox* latencyCtx_;
  QTableWidget* table_;
  QWidget* charts_;
  app::CompareResult result_;
  qint64 requestId_ = 0;
  bool running_ = false;
  bool conversationAvailable_ = false;
};

}  // namespace resa::ui
