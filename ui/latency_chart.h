// Per-token latency over decode steps (Qt Charts), one line per series, with rectifications
// marked as red dots on the line. The statistics panel shows the current answer; the Compare view
// shows one series per mode.
#pragma once

#include <QChartView>
#include <QColor>
#include <QVector>

class QLineSeries;
class QScatterSeries;
class QValueAxis;

namespace resa::ui {

class LatencyChart : public QChartView {
  Q_OBJECT
 public:
  explicit LatencyChart(QWidget* parent = nullptr);

  void reset();
  // Returns the index of the new series.
  int addSeries(const QString& name, const QColor& color);
  void addPoint(int series, double step, double ms, bool rectified);
  void addMarker(double step, double ms);
  void setCompact(bool compact);  // the side panel's small version: no legend, small fonts

  int seriesCount() const { return int(lines_.size()); }
  QLineSeries* series(int i) const { return lines_.value(i); }
  int rectificationMarkers() const;

 private:
  void growAxes(double x, double y);

  QVector<QLineSeries*> lines_;
  QScatterSeries* markers_ = nullptr;
  QValueAxis* axisX_ = nullptr;
  QValueAxis* axisY_ = nullptr;
  double maxX_ = 0, maxY_ = 0;
};

}  // namespace resa::ui
