// A small line of the last N values (tokens/s now) with the newest value emphasised.
#pragma once

#include <QColor>
#include <QVector>
#include <QWidget>

namespace resa::ui {

class Sparkline : public QWidget {
  Q_OBJECT
 public:
  explicit Sparkline(QWidget* parent = nullptr);

  void setCapacity(int n) { capacity_ = n; }
  void setColor(const QColor& c);
  void addValue(double v);
  void clear();
  const QVector<double>& values() const { return values_; }

  QSize sizeHint() const override { return {160, 36}; }

 protected:
  void paintEvent(QPaintEvent* e) override;

 private:
  QVector<double> values_;
  int capacity_ = 120;
  QColor color_;
};

// Used / limit as a bar that turns amber then red as the context fills.
class ContextGauge : public QWidget {
  Q_OBJECT
 public:
  explicit ContextGauge(QWidget* parent = nullptr);
  void setValues(int used, int limit);
  int used() const { return used_; }
  int limit() const { return limit_; }
  QSize sizeHint() const override { return {160, 10}; }

 protected:
  void paintEvent(QPaintEvent* e) override;

 private:
  int used_ = 0, limit_ = 0;
};

}  // namespace resa::ui
