#include "ui/sparkline.h"

#include <QPainter>
#include <QPainterPath>

#include <algorithm>

namespace resa::ui {

Sparkline::Sparkline(QWidget* parent) : QWidget(parent), color_(0x3b, 0x6f, 0xd9) {
  setMinimumHeight(30);
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
}

void Sparkline::setColor(const QColor& c) {
  color_ = c;
  update();
}

void Sparkline::addValue(double v) {
  values_.append(v);
  if (values_.size() > capacity_) values_.remove(0, values_.size() - capacity_);
  update();
}

void Sparkline::clear() {
  values_.clear();
  update();
}

void Sparkline::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.setRenderHint(QPainter::Antialiasing);
  const QRectF r = QRectF(rect()).adjusted(2, 3, -4, -3);
  p.setPen(QPen(QColor(0xe3, 0xe6, 0xea), 1));
  p.drawLine(r.bottomLeft(), r.bottomRight());
  if (values_.size() < 2) return;
  const double vmax = std::max(1e-9, *std::max_element(values_.begin(), values_.end()) * 1.1);
  const double dx = r.width() / std::max(1, capacity_ - 1);
  const double x0 = r.right() - dx * (values_.size() - 1);
  QPainterPath line;
  for (int i = 0; i < values_.size(); ++i) {
    const QPointF pt(x0 + dx * i, r.bottom() - r.height() * values_[i] / vmax);
    if (i == 0)
      line.moveTo(pt);
    else
      line.lineTo(pt);
  }
  QPainterPath area = line;
  area.lineTo(r.right(), r.bottom());
  area.lineTo(x0, r.bottom());
  area.closeSubpath();
  QColor fill = color_;
  fill.setAlpha(40);
  p.fillPath(area, fill);
  p.setPen(QPen(color_, 1.6));
  p.drawPath(line);
  p.setBrush(color_);
  p.setPen(Qt::NoPen);
  p.drawEllipse(line.currentPosition(), 2.6, 2.6);
}

ContextGauge::ContextGauge(QWidget* parent) : QWidget(parent) {
  setMinimumHeight(8);
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
}

void ContextGauge::setValues(int used, int limit) {
  used_ = used;
  limit_ = limit;
  setToolTip(limit > 0 ? tr("%1 of %2 context tokens in use").arg(used).arg(limit) : QString());
  update();
}

void ContextGauge::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.setRenderHint(QPainter::Antialiasing);
  const QRectF r = QRectF(rect()).adjusted(0.5, 0.5, -0.5, -0.5);
  const double radius = r.height() / 2;
  p.setPen(Qt::NoPen);
  p.setBrush(QColor(0xe6, 0xe9, 0xee));
  p.drawRoundedRect(r, radius, radius);
  if (limit_ <= 0 || used_ <= 0) return;
  const double share = std::min(1.0, double(used_) / limit_);
  const QColor c = share > 0.9   ? QColor(0xd6, 0x3a, 0x3a)
                   : share > 0.7 ? QColor(0xe0, 0x9b, 0x1e)
                                 : QColor(0x3b, 0x6f, 0xd9);
  p.setBrush(c);
  QRectF filled = r;
  filled.setWidth(std::max(r.height(), r.width() * share));
  p.drawRoundedRect(filled, radius, radius);
}

}  // namespace resa::ui
