#include "ui/stats_panel.h"

#include <QGridLayout>
#include <QLabel>
#include <QProgressBar>
#include <QVBoxLayout>

#include <algorithm>

#include "ui/latency_chart.h"
#include "ui/sparkline.h"
#include "ui/theme.h"

namespace resa::ui {

MetricTile::MetricTile(const QString& caption, const QString& tip, QWidget* parent)
    : QFrame(parent) {
  setObjectName(QStringLiteral("MetricTile"));
  setAccessibleName(caption);
  setToolTip(tip);
  auto* l = new QVBoxLayout(this);
  l->setContentsMargins(10, 7, 10, 7);
  l->setSpacing(1);
  auto* cap = new QLabel(caption.toUpper(), this);
  cap->setObjectName(QStringLiteral("MetricLabel"));
  value_ = new QLabel(QStringLiteral("—"), this);
  value_->setObjectName(QStringLiteral("MetricValue"));
  value_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  detail_ = new QLabel(this);
  detail_->setObjectName(QStringLiteral("MetricLabel"));
  l->addWidget(cap);
  l->addWidget(value_);
  l->addWidget(detail_);
}

void MetricTile::setValue(const QString& value, const QString& detail) {
  value_->setText(value);
  detail_->setText(detail);
}

QString MetricTile::value() const { return value_->text(); }
QString MetricTile::detail() const { return detail_->text(); }

StatsPanel::StatsPanel(QWidget* parent) : QWidget(parent) {
  auto* l = new QVBoxLayout(this);
  l->setContentsMargins(12, 12, 12, 12);
  l->setSpacing(8);

  auto* head = new QHBoxLayout;
  auto* title = new QLabel(tr("LIVE STATISTICS"), this);
  title->setObjectName(QStringLiteral("SectionTitle"));
  modeChip_ = new QLabel(this);
  modeChip_->setObjectName(QStringLiteral("ModeChip"));
  stateLabel_ = new QLabel(tr("idle"), this);
  stateLabel_->setObjectName(QStringLiteral("MetricLabel"));
  head->addWidget(title);
  head->addStretch();
  head->addWidget(stateLabel_);
  head->addWidget(modeChip_);
  l->addLayout(head);

  prefill_ = new QProgressBar(this);
  prefill_->setTextVisible(true);
  prefill_->setFormat(tr("prefill %v / %m tokens"));
  prefill_->setMaximumHeight(16);
  prefill_->setRange(0, 1);
  prefill_->setValue(0);
  prefill_->hide();  // shown while an answer is on its way
  l->addWidget(prefill_);

  auto* grid = new QGridLayout;
  grid->setSpacing(6);
  ttft_ =
      new MetricTile(tr("First token"), tr("Time from sending to the first token of the answer"));
  prefillRate_ = new MetricTile(
      tr("Prompt processing"),
      tr("Prefill speed: tokens of the new turn (and document) processed per second"));
  decodeRate_ = new MetricTile(tr("Generation now"),
                               tr("Decode speed over the last steps, tokens per second"));
  sparsity_ = new MetricTile(
      tr("Sparsity"), tr("Share of the KV cache NOT read by the decode steps (0% in dense mode)"));
  kvPerToken_ = new MetricTile(tr("KV read / token"),
                               tr("Bytes of K/V (and block summaries) read per generated token"));
  rectTile_ = new MetricTile(tr("Rectifications"),
                             tr("Dense passes that rewrote the sparse tokens' K/V (ReSA mode)"));
  memory_ = new MetricTile(tr("Memory"), tr("Weights and KV cache in use"));
  contextTile_ = new MetricTile(tr("Context"), tr("Tokens in the conversation / context limit"));
  grid->addWidget(ttft_, 0, 0);
  grid->addWidget(prefillRate_, 0, 1);
  grid->addWidget(decodeRate_, 1, 0);
  grid->addWidget(sparsity_, 1, 1);
  grid->addWidget(kvPerToken_, 2, 0);
  grid->addWidget(rectTile_, 2, 1);
  grid->addWidget(memory_, 3, 0);
  grid->addWidget(contextTile_, 3, 1);
  l->addLayout(grid);

  spark_ = new Sparkline(this);
  spark_->setToolTip(tr("Tokens per second, step by step"));
  auto* sparkTitle = new QLabel(tr("TOKENS / S"), this);
  sparkTitle->setObjectName(QStringLiteral("SectionTitle"));
  l->addWidget(sparkTitle);
  l->addWidget(spark_);

  auto* ctxTitle = new QLabel(tr("CONTEXT USED"), this);
  ctxTitle->setObjectName(QStringLiteral("SectionTitle"));
  gauge_ = new ContextGauge(this);
  l->addWidget(ctxTitle);
  l->addWidget(gauge_);

  auto* chartTitle = new QLabel(tr("LATENCY PER TOKEN  ·  ● rectification"), this);
  chartTitle->setObjectName(QStringLiteral("SectionTitle"));
  l->addWidget(chartTitle);
  chart_ = new LatencyChart(this);
  chart_->setCompact(true);
  chart_->setMinimumHeight(170);
  l->addWidget(chart_, 1);

  updateMode(DecodeMode::kResa);
  modeChip_->hide();
}

void StatsPanel::updateMode(DecodeMode mode) {
  modeChip_->setText(modeLabel(mode));
  modeChip_->setStyleSheet(QStringLiteral("background: %1;").arg(modeColor(mode).name()));
  modeChip_->show();
  spark_->setColor(modeColor(mode));
}

void StatsPanel::beginAnswer(DecodeMode mode) {
  updateMode(mode);
  stateLabel_->setText(tr("processing prompt…"));
  sinceStart_.start();
  sincePrefill_.start();
  firstToken_ = false;
  rectifications_ = 0;
  stepMs_.clear();
  marked_.clear();
  pendingMarks_.clear();
  prefillTotal_ = 0;
  prefill_->setFormat(tr("prefill %v / %m tokens"));
  prefill_->setRange(0, 1);
  prefill_->setValue(0);
  prefill_->show();
  for (MetricTile* t : {ttft_, prefillRate_, decodeRate_, sparsity_, kvPerToken_})
    t->setValue(QStringLiteral("—"));
  rectTile_->setValue(mode == DecodeMode::kResa ? QStringLiteral("0") : QStringLiteral("—"),
                      mode == DecodeMode::kResa ? QString() : tr("ReSA mode only"));
  spark_->clear();
  chart_->reset();
  series_ = chart_->addSeries(modeLabel(mode), modeColor(mode));
}

void StatsPanel::setPrefillProgress(int done, int total) {
  prefillTotal_ = total;
  prefill_->setRange(0, std::max(1, total));
  prefill_->setValue(done);
  const double s = sincePrefill_.elapsed() / 1000.0;
  if (done > 0 && s > 0)
    prefillRate_->setValue(formatRate(done / s), tr("%1 tokens").arg(formatCount(total)));
}

void StatsPanel::addToken() {
  if (firstToken_) return;
  firstToken_ = true;
  stateLabel_->setText(tr("generating…"));
  ttft_->setValue(formatMs(double(sinceStart_.elapsed())));
  if (prefillTotal_ > 0) prefill_->setValue(prefill_->maximum());
}

void StatsPanel::updateLive(const app::LiveStats& s) {
  if (!firstToken_ && s.generatedTokens > 0) addToken();
  if (s.ttftMs > 0) ttft_->setValue(formatMs(s.ttftMs));
  if (s.prefillTokPerS > 0)
    prefillRate_->setValue(
        formatRate(s.prefillTokPerS),
        prefillTotal_ > 0 ? tr("%1 tokens").arg(formatCount(prefillTotal_)) : tr("prefill"));
  for (const app::StepSample& step : s.steps) addStep(step);
  const QString last =
      stepMs_.isEmpty() ? QString() : tr("%1 ms last token").arg(stepMs_.last(), 0, 'f', 1);
  decodeRate_->setValue(formatRate(s.decodeTokPerS), last);
  sparsity_->setValue(QStringLiteral("%1%").arg(100.0 * (1.0 - s.kvReadFraction), 0, 'f', 1),
                      tr("of the KV cache not read"));
  if (s.kvBytesPerToken > 0)
    kvPerToken_->setValue(formatBytes(s.kvBytesPerToken), tr("read per generated token"));
  if (s.rectifications > rectifications_) {
    rectifications_ = s.rectifications;
    rectTile_->setValue(QString::number(rectifications_), rectTile_->detail());
  }
  if (s.ctxLimit > 0) setContext(s.ctxTokens, s.ctxLimit);
  if (s.memoryBytes > 0 || s.kvCacheBytes > 0) setMemory(s.memoryBytes, s.kvCacheBytes);
}

void StatsPanel::addStep(const app::StepSample& s) {
  stepMs_.append(s.stepMs);
  spark_->addValue(s.stepMs > 0 ? 1000.0 / s.stepMs : 0);
  const bool mark = s.rectified || pendingMarks_.remove(s.index);
  if (mark) marked_.insert(s.index);
  chart_->addPoint(series_, s.index, s.stepMs, mark);
}

void StatsPanel::addRectification(const app::RectificationInfo& r) {
  ++rectifications_;
  rectTile_->setValue(QString::number(rectifications_),
                      tr("last: %1 tokens in %2").arg(r.count).arg(formatMs(r.ms)));
  if (marked_.contains(r.stepIndex)) return;
  if (r.stepIndex < stepMs_.size()) {
    marked_.insert(r.stepIndex);
    chart_->addMarker(r.stepIndex, stepMs_[r.stepIndex]);
  } else {
    pendingMarks_.insert(r.stepIndex);
  }
}

void StatsPanel::finishAnswer(const app::AnswerStats& s) {
  const QString reason = s.stopReason == QLatin1String("cancelled") ? tr("stopped")
                         : s.stopReason == QLatin1String("length")  ? tr("token limit")
                                                                    : tr("done");
  stateLabel_->setText(reason);
  // Steps the live signals did not deliver (the last batch) are in the final statistics.
  for (int i = int(stepMs_.size()); i < s.stepMs.size(); ++i) {
    app::StepSample step;
    step.index = i;
    step.stepMs = s.stepMs[i];
    step.rectified = s.rectifiedSteps.contains(i);
    addStep(step);
  }
  showNumbers(s);
}

void StatsPanel::showAnswer(const app::AnswerStats& s) {
  const auto mode = app::modeFromString(s.mode).value_or(DecodeMode::kDense);
  updateMode(mode);
  stateLabel_->setText(tr("stored answer"));
  chart_->reset();
  spark_->clear();
  stepMs_.clear();
  marked_.clear();
  pendingMarks_.clear();
  series_ = chart_->addSeries(modeLabel(mode), modeColor(mode));
  for (int i = 0; i < s.stepMs.size(); ++i) {
    app::StepSample step;
    step.index = i;
    step.stepMs = s.stepMs[i];
    step.rectified = s.rectifiedSteps.contains(i);
    addStep(step);
  }
  showNumbers(s);
}

void StatsPanel::showNumbers(const app::AnswerStats& s) {
  const auto mode = app::modeFromString(s.mode).value_or(DecodeMode::kDense);
  ttft_->setValue(formatMs(s.ttftMs));
  prefillRate_->setValue(formatRate(s.prefillTokPerS), tr("%1 new of %2 tokens")
                                                           .arg(formatCount(s.prefillTokens))
                                                           .arg(formatCount(s.contextTokens)));
  decodeRate_->setValue(formatRate(s.decodeTokPerS),
                        tr("average of %1 tokens").arg(s.generatedTokens));
  sparsity_->setValue(QStringLiteral("%1%").arg(100.0 * (1.0 - s.kvReadFraction), 0, 'f', 1),
                      tr("of the KV cache not read"));
  if (s.kvBytesPerToken > 0)
    kvPerToken_->setValue(formatBytes(s.kvBytesPerToken), tr("read per generated token"));
  rectifications_ = s.rectifications;
  if (mode == DecodeMode::kResa)
    rectTile_->setValue(QString::number(s.rectifications),
                        tr("%1 in total").arg(formatMs(s.rectifyMs)));
  else
    rectTile_->setValue(QStringLiteral("—"), tr("ReSA mode only"));
  prefill_->setRange(0, 1);
  prefill_->setValue(1);
  prefill_->setFormat(tr("prompt processed"));
  if (s.ctxLimit > 0) setContext(s.contextTokens + s.generatedTokens, s.ctxLimit);
  if (s.memoryBytes > 0 || s.kvCacheBytes > 0) setMemory(s.memoryBytes, s.kvCacheBytes);
}

void StatsPanel::setContext(int used, int limit) {
  gauge_->setValues(used, limit);
  contextTile_->setValue(
      formatCount(used),
      limit > 0 ? tr("of %1 (%2%)").arg(formatCount(limit)).arg(100.0 * used / limit, 0, 'f', 0)
                : QString());
}

void StatsPanel::setMemory(qint64 memoryBytes, qint64 kvCacheBytes) {
  memory_->setValue(formatBytes(double(std::max(memoryBytes, kvCacheBytes))),
                    kvCacheBytes > 0 ? tr("KV cache %1").arg(formatBytes(double(kvCacheBytes)))
                                     : tr("resident, this process"));
}

QString StatsPanel::tileValue(const QString& caption) const {
  for (MetricTile* t : findChildren<MetricTile*>())
    if (t->accessibleName() == caption) return t->value();
  return {};
}

}  // namespace resa::ui
