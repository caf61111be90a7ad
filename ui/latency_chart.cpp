#include "ui/latency_chart.h"

#include <QChart>
#include <QLegendMarker>
#include <QLineSeries>
#include <QScatterSeries>
#include <QValueAxis>

#include <algorithm>
#include <cmath>

#include "ui/theme.h"

namespace resa::ui {

namespace {
double niceCeil(double v) {
  if (v <= 0) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0})
    if (v <= m * p) return m * p;
  return 10 * p;
}
}  // namespace

LatencyChart::LatencyChart(QWidget* parent) : QChartView(parent) {
  auto* chart = new QChart;
  chart->setBackgroundRoundness(0);
  chart->setMargins(QMargins(4, 4, 4, 4));
  chart->setAnimationOptions(QChart::NoAnimation);
  setChart(chart);
  setRenderHint(QPainter::Antialiasing);
  axisX_ = new QValueAxis;
  axisX_->setTitleText(tr("token"));
  axisX_->setLabelFormat(QStringLiteral("%d"));
  axisY_ = new QValueAxis;
  axisY_->setTitleText(tr("ms / token"));
  axisY_->setLabelFormat(QStringLiteral("%.3g"));
  for (QValueAxis* a : {axisX_, axisY_}) {
    a->setGridLineColor(QColor(0xee, 0xf0, 0xf3));
    a->setLabelsColor(mutedTextColor());
    a->setTitleBrush(mutedTextColor());
  }
  chart->addAxis(axisX_, Qt::AlignBottom);
  chart->addAxis(axisY_, Qt::AlignLeft);
  reset();
}

void LatencyChart::setCompact(bool compact) {
  QFont f = font();
  f.setPointSizeF(compact ? 7.5 : 9);
  for (QValueAxis* a : {axisX_, axisY_}) {
    a->setLabelsFont(f);
    a->setTitleFont(f);
  }
  chart()->legend()->setVisible(!compact);
  chart()->legend()->setFont(f);
  chart()->setMargins(compact ? QMargins(0, 2, 2, 0) : QMargins(6, 6, 6, 6));
}

void LatencyChart::reset() {
  chart()->removeAllSeries();
  lines_.clear();
  markers_ = new QScatterSeries;
  markers_->setName(tr("rectification"));
  markers_->setColor(rectificationColor());
  markers_->setBorderColor(Qt::white);
  markers_->setMarkerSize(8);
  chart()->addSeries(markers_);
  markers_->attachAxis(axisX_);
  markers_->attachAxis(axisY_);
  maxX_ = maxY_ = 0;
  axisX_->setRange(0, 32);
  axisY_->setRange(0, 1);
}

int LatencyChart::addSeries(const QString& name, const QColor& color) {
  auto* s = new QLineSeries;
  s->setName(name);
  QPen pen(color);
  pen.setWidthF(1.6);
  s->setPen(pen);
  // Insert below the markers so the red dots stay on top.
  chart()->removeSeries(markers_);
  chart()->addSeries(s);
  chart()->addSeries(markers_);
  for (QAbstractSeries* x :
       {static_cast<QAbstractSeries*>(s), static_cast<QAbstractSeries*>(markers_)}) {
    x->attachAxis(axisX_);
    x->attachAxis(axisY_);
  }
  lines_.append(s);
  return int(lines_.size()) - 1;
}

void LatencyChart::addPoint(int series, double step, double ms, bool rectified) {
  if (series < 0 || series >= lines_.size()) return;
  lines_[series]->append(step, ms);
  if (rectified) markers_->append(step, ms);
  growAxes(step, ms);
}

void LatencyChart::addMarker(double step, double ms) { markers_->append(step, ms); }

int LatencyChart::rectificationMarkers() const { return markers_ ? markers_->count() : 0; }

void LatencyChart::growAxes(double x, double y) {
  if (x > maxX_) {
    maxX_ = x;
    if (x > axisX_->max()) {
      axisX_->setRange(0, niceCeil(x * 1.25));
      axisX_->applyNiceNumbers();
    }
  }
  if (y > maxY_) {
    maxY_ = y;
    if (y > axisY_->max() * 0.95) {
      axisY_->setRange(0, niceCeil(y * 1.2));
      axisY_->applyNiceNumbers();
      axisY_->setLabelFormat(axisY_->max() >= 20 ? QStringLiteral("%.0f") : QStringLiteral("%.1f"));
    }
  }
}

}  // namespace resa::ui
