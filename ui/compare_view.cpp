#include "ui/compare_view.h"

#include <QChart>
#include <QChartView>
#include <QComboBox>
#include <QFile>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLegend>
#include <QLineEdit>
#include <QLineSeries>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QRegularExpression>
#include <QSpinBox>
#include <QSplitter>
#include <QTableWidget>
#include <QTextStream>
#include <QVBoxLayout>
#include <QValueAxis>

#include <algorithm>
#include <cmath>
#include <map>

#include "ui/latency_chart.h"
#include "ui/theme.h"

namespace resa::ui {

namespace {
const DecodeMode kModes[] = {DecodeMode::kDense, DecodeMode::kSparse, DecodeMode::kResa};

int modeIndex(const QString& name) {
  const auto m = app::modeFromString(name);
  return m ? int(*m) : 0;
}

double niceCeil(double v) {
  if (v <= 0) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (v <= m * p) return m * p;
  return 10 * p;
}
}  // namespace

CompareView::CompareView(QWidget* parent) : QDialog(parent) {
  setWindowTitle(tr("Compare modes"));
  setObjectName(QStringLiteral("CompareView"));
  resize(1100, 720);
  auto* l = new QVBoxLayout(this);
  l->setSpacing(10);

  auto* intro = new QLabel(
      tr("Runs one prompt in <b style='color:%1'>Dense</b>, <b style='color:%2'>Sparse</b> and "
         "<b style='color:%3'>ReSA</b> one after another over the same context, and draws how "
         "fast each decodes. ReSA's gain grows with the context: at a few thousand tokens the "
         "modes are close.")
          .arg(modeColor(DecodeMode::kDense).name(), modeColor(DecodeMode::kSparse).name(),
               modeColor(DecodeMode::kResa).name()),
      this);
  intro->setWordWrap(true);
  l->addWidget(intro);

  auto* controls = new QHBoxLayout;
  auto* form = new QFormLayout;
  source_ = new QComboBox(this);
  source_->addItem(tr("Synthetic contexts of these lengths"));
  source_->addItem(tr("The current conversation"));
  lengths_ = new QLineEdit(QStringLiteral("512, 1024, 2048, 4096"), this);
  lengths_->setToolTip(tr("Context lengths in tokens, separated by commas"));
  auto* srcRow = new QHBoxLayout;
  srcRow->addWidget(source_);
  srcRow->addWidget(lengths_, 1);
  form->addRow(tr("Context"), srcRow);
  prompt_ = new QLineEdit(tr("Summarise the key points of the text above."), this);
  form->addRow(tr("Prompt"), prompt_);
  tokens_ = new QSpinBox(this);
  tokens_->setRange(4, 4096);
  tokens_->setValue(64);
  tokens_->setSuffix(tr(" tokens per run"));
  form->addRow(tr("Generate"), tokens_);
  controls->addLayout(form, 1);
  auto* buttons = new QVBoxLayout;
  run_ = new QPushButton(icon(QStringLiteral("play-white")), tr("Run comparison"), this);
  run_->setObjectName(QStringLiteral("PrimaryButton"));
  stop_ = new QPushButton(icon(QStringLiteral("stop")), tr("Stop"), this);
  buttons->addWidget(run_);
  buttons->addWidget(stop_);
  buttons->addStretch();
  controls->addLayout(buttons);
  l->addLayout(controls);

  auto* progressRow = new QHBoxLayout;
  progress_ = new QProgressBar(this);
  progress_->setMaximumHeight(14);
  progress_->setTextVisible(false);
  status_ = new QLabel(tr("Not run yet."), this);
  status_->setObjectName(QStringLiteral("StatsFooter"));
  progressRow->addWidget(status_, 1);
  progressRow->addWidget(progress_, 1);
  l->addLayout(progressRow);

  // Charts: tokens/s vs context length | per-token latency.
  charts_ = new QWidget(this);
  charts_->setObjectName(QStringLiteral("CompareCharts"));
  charts_->setStyleSheet(QStringLiteral("#CompareCharts { background: white; }"));
  auto* ch = new QHBoxLayout(charts_);
  ch->setContentsMargins(0, 0, 0, 0);
  auto* chart = new QChart;
  chart->setTitle(tr("Decode speed vs context length"));
  chart->setAnimationOptions(QChart::NoAnimation);
  chart->setBackgroundRoundness(0);
  ctxAxis_ = new QValueAxis;
  ctxAxis_->setTitleText(tr("context tokens"));
  ctxAxis_->setLabelFormat(QStringLiteral("%d"));
  rateAxis_ = new QValueAxis;
  rateAxis_->setTitleText(tr("tokens / s"));
  rateAxis_->setLabelFormat(QStringLiteral("%.4g"));
  for (QValueAxis* a : {ctxAxis_, rateAxis_}) {
    a->setGridLineColor(QColor(0xee, 0xf0, 0xf3));
    a->setLabelsColor(mutedTextColor());
    a->setTitleBrush(mutedTextColor());
  }
  chart->addAxis(ctxAxis_, Qt::AlignBottom);
  chart->addAxis(rateAxis_, Qt::AlignLeft);
  for (DecodeMode m : kModes) {
    auto* s = new QLineSeries;
    s->setName(modeLabel(m));
    QPen pen(modeColor(m));
    pen.setWidthF(2.2);
    s->setPen(pen);
    s->setPointsVisible(true);
    s->setMarkerSize(7);
    chart->addSeries(s);
    s->attachAxis(ctxAxis_);
    s->attachAxis(rateAxis_);
    throughput_.append(s);
  }
  chart->legend()->setAlignment(Qt::AlignBottom);
  throughputView_ = new QChartView(chart, charts_);
  throughputView_->setRenderHint(QPainter::Antialiasing);
  throughputView_->setMinimumSize(380, 300);
  ch->addWidget(throughputView_, 1);

  auto* right = new QWidget(charts_);
  auto* rl = new QVBoxLayout(right);
  rl->setContentsMargins(0, 0, 0, 0);
  auto* latHead = new QHBoxLayout;
  auto* latTitle = new QLabel(tr("<b>Latency per token</b> · ● rectification"), right);
  latencyCtx_ = new QComboBox(right);
  latencyCtx_->setToolTip(tr("Context length whose runs are drawn"));
  latencyCtx_->setSizeAdjustPolicy(QComboBox::AdjustToContents);
  latencyCtx_->setMinimumContentsLength(12);
  latHead->addWidget(latTitle);
  latHead->addStretch();
  latHead->addWidget(latencyCtx_);
  rl->addLayout(latHead);
  latency_ = new LatencyChart(right);
  latency_->setCompact(false);
  latency_->setMinimumSize(380, 280);
  rl->addWidget(latency_, 1);
  ch->addWidget(right, 1);
  l->addWidget(charts_, 5);

  table_ = new QTableWidget(0, 7, this);
  table_->setHorizontalHeaderLabels({tr("Mode"), tr("Context"), tr("Prompt tok/s"),
                                     tr("Decode tok/s"), tr("vs dense"), tr("KV read"),
                                     tr("Rectifications")});
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
  table_->verticalHeader()->hide();
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionMode(QAbstractItemView::NoSelection);
  table_->setMinimumHeight(150);
  table_->verticalHeader()->setDefaultSectionSize(24);
  l->addWidget(table_, 2);

  auto* bottom = new QHBoxLayout;
  png_ = new QPushButton(icon(QStringLiteral("image")), tr("Export PNG…"), this);
  csvButton_ = new QPushButton(icon(QStringLiteral("table")), tr("Export CSV…"), this);
  auto* close = new QPushButton(tr("Close"), this);
  bottom->addWidget(png_);
  bottom->addWidget(csvButton_);
  bottom->addStretch();
  bottom->addWidget(close);
  l->addLayout(bottom);

  connect(run_, &QPushButton::clicked, this, &CompareView::runRequested);
  connect(stop_, &QPushButton::clicked, this, &CompareView::stopRequested);
  connect(close, &QPushButton::clicked, this, &QDialog::close);
  connect(source_, &QComboBox::currentIndexChanged, this, [this] {
    lengths_->setEnabled(!useConversation());
    updateButtons();
  });
  connect(lengths_, &QLineEdit::textChanged, this, &CompareView::updateButtons);
  connect(latencyCtx_, &QComboBox::currentIndexChanged, this,
          [this] { showLatencyFor(latencyCtx_->currentData().toInt()); });
  connect(png_, &QPushButton::clicked, this, [this] {
    const QString p = QFileDialog::getSaveFileName(
        this, tr("Export PNG"), QStringLiteral("resa-compare.png"), tr("PNG image (*.png)"));
    if (!p.isEmpty() && !exportPng(p))
      QMessageBox::warning(this, tr("Export PNG"), tr("Could not write %1.").arg(p));
  });
  connect(csvButton_, &QPushButton::clicked, this, [this] {
    const QString p = QFileDialog::getSaveFileName(
        this, tr("Export CSV"), QStringLiteral("resa-compare.csv"), tr("CSV (*.csv)"));
    if (!p.isEmpty() && !exportCsv(p))
      QMessageBox::warning(this, tr("Export CSV"), tr("Could not write %1.").arg(p));
  });
  clearCharts();
  updateButtons();
}

bool CompareView::useConversation() const { return source_->currentIndex() == 1; }

QList<int> CompareView::syntheticLengths() const {
  QList<int> out;
  for (const QString& part :
       lengths_->text().split(QRegularExpression(QStringLiteral("[,;\\s]+")), Qt::SkipEmptyParts)) {
    bool ok = false;
    const int n = part.toInt(&ok);
    if (!ok || n < 16) return {};
    out.append(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

QString CompareView::prompt() const { return prompt_->text(); }
int CompareView::newTokens() const { return tokens_->value(); }
void CompareView::setPrompt(const QString& p) { prompt_->setText(p); }
void CompareView::setSyntheticLengths(const QList<int>& lengths) {
  QStringList s;
  for (int n : lengths) s << QString::number(n);
  lengths_->setText(s.join(QStringLiteral(", ")));
}

void CompareView::setConversationAvailable(bool available, int contextTokens) {
  conversationAvailable_ = available;
  source_->setItemText(
      1, available ? tr("The current conversation (~%1 tokens)").arg(formatCount(contextTokens))
                   : tr("The current conversation (empty)"));
  if (!available && useConversation()) source_->setCurrentIndex(0);
  updateButtons();
}

void CompareView::updateButtons() {
  const bool valid = useConversation() ? conversationAvailable_ : !syntheticLengths().isEmpty();
  run_->setEnabled(!running_ && valid);
  stop_->setEnabled(running_);
  png_->setEnabled(!result_.runs.isEmpty());
  csvButton_->setEnabled(!result_.runs.isEmpty());
}

void CompareView::clearCharts() {
  for (QLineSeries* s : throughput_) s->clear();
  ctxAxis_->setRange(0, 1024);
  rateAxis_->setRange(0, 10);
  latency_->reset();
  latencyCtx_->blockSignals(true);
  latencyCtx_->clear();
  latencyCtx_->blockSignals(false);
  table_->setRowCount(0);
}

void CompareView::beginRuns(qint64 requestId, int total) {
  requestId_ = requestId;
  running_ = true;
  result_ = {};
  clearCharts();
  progress_->setRange(0, std::max(1, total));
  progress_->setValue(0);
  status_->setText(tr("Running… (the model decodes each mode in turn)"));
  updateButtons();
}

void CompareView::addRun(const app::CompareRun& run, int done, int total) {
  result_.runs.append(run);
  progress_->setRange(0, std::max(1, total));
  progress_->setValue(done);
  status_->setText(tr("%1 of %2 runs: %3 at %4 tokens, %5")
                       .arg(done)
                       .arg(total)
                       .arg(modeLabel(kModes[modeIndex(run.mode)]))
                       .arg(formatCount(run.contextTokens))
                       .arg(formatRate(run.decodeTokPerS)));
  rebuild();
}

void CompareView::finish(const app::CompareResult& result) {
  running_ = false;
  result_ = result;
  progress_->setValue(progress_->maximum());
  status_->setText(tr("Done: %n run(s) on %1 (%2).", nullptr, int(result.runs.size()))
                       .arg(result.model, result.backend));
  rebuild();
  updateButtons();
}

void CompareView::fail(const QString& message) {
  running_ = false;
  status_->setText(tr("Stopped: %1").arg(message));
  updateButtons();
}

void CompareView::setResult(const app::CompareResult& result) {
  result_ = result;
  running_ = false;
  clearCharts();
  if (!result.prompt.isEmpty()) prompt_->setText(result.prompt);
  status_->setText(tr("Stored comparison on %1 (%2).").arg(result.model, result.backend));
  rebuild();
  updateButtons();
}

void CompareView::rebuild() {
  for (QLineSeries* s : throughput_) s->clear();
  double maxCtx = 0, maxRate = 0;
  std::map<int, double> denseRate;  // context -> dense tok/s
  QList<int> contexts;
  for (const auto& r : result_.runs) {
    throughput_[modeIndex(r.mode)]->append(r.contextTokens, r.decodeTokPerS);
    maxCtx = std::max(maxCtx, double(r.contextTokens));
    maxRate = std::max(maxRate, r.decodeTokPerS);
    if (modeIndex(r.mode) == 0) denseRate[r.contextTokens] = r.decodeTokPerS;
    if (!contexts.contains(r.contextTokens)) contexts.append(r.contextTokens);
  }
  ctxAxis_->setRange(0, niceCeil(maxCtx * 1.05));
  ctxAxis_->applyNiceNumbers();
  rateAxis_->setRange(0, niceCeil(maxRate * 1.15));
  rateAxis_->applyNiceNumbers();
  rateAxis_->setLabelFormat(rateAxis_->max() >= 20 ? QStringLiteral("%.0f")
                                                   : QStringLiteral("%.1f"));

  table_->setRowCount(int(result_.runs.size()));
  for (int i = 0; i < result_.runs.size(); ++i) {
    const auto& r = result_.runs[i];
    const DecodeMode m = kModes[modeIndex(r.mode)];
    auto* modeItem = new QTableWidgetItem(modeLabel(m));
    modeItem->setForeground(modeColor(m));
    QFont f = modeItem->font();
    f.setBold(true);
    modeItem->setFont(f);
    const auto dense = denseRate.find(r.contextTokens);
    const QString speedup =
        dense != denseRate.end() && dense->second > 0
            ? QStringLiteral("%1×").arg(r.decodeTokPerS / dense->second, 0, 'f', 2)
            : QStringLiteral("—");
    const QStringList cells = {formatCount(r.contextTokens),
                               formatRate(r.prefillTokPerS),
                               formatRate(r.decodeTokPerS),
                               speedup,
                               QStringLiteral("%1%").arg(100.0 * r.kvReadFraction, 0, 'f', 1),
                               QString::number(r.rectifiedSteps.size())};
    table_->setItem(i, 0, modeItem);
    for (int c = 0; c < cells.size(); ++c) {
      auto* item = new QTableWidgetItem(cells[c]);
      item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
      table_->setItem(i, c + 1, item);
    }
  }

  const int shown = latencyCtx_->currentData().toInt();
  latencyCtx_->blockSignals(true);
  latencyCtx_->clear();
  for (int c : contexts) latencyCtx_->addItem(tr("%1 tokens").arg(formatCount(c)), c);
  const int pick = contexts.contains(shown) && !running_ ? shown
                   : contexts.isEmpty()                  ? 0
                                                         : contexts.last();
  latencyCtx_->setCurrentIndex(std::max(0, int(contexts.indexOf(pick))));
  latencyCtx_->blockSignals(false);
  showLatencyFor(pick);
}

void CompareView::showLatencyFor(int contextTokens) {
  latency_->reset();
  for (const auto& r : result_.runs) {
    if (r.contextTokens != contextTokens) continue;
    const DecodeMode m = kModes[modeIndex(r.mode)];
    const int s = latency_->addSeries(modeLabel(m), modeColor(m));
    for (int i = 0; i < r.stepMs.size(); ++i)
      latency_->addPoint(s, i, r.stepMs[i], r.rectifiedSteps.contains(i));
  }
}

int CompareView::throughputSeriesCount() const {
  int n = 0;
  for (QLineSeries* s : throughput_)
    if (s->count() > 0) ++n;
  return n;
}

QLineSeries* CompareView::throughputSeries(int i) const { return throughput_.value(i); }

bool CompareView::exportPng(const QString& path) const { return charts_->grab().save(path, "PNG"); }

QString CompareView::csv() const {
  // Long format: one row per decode step, the run's figures repeated (easy to pivot).
  QString out;
  QTextStream s(&out);
  s << "model,backend,mode,context_tokens,generated_tokens,prefill_tok_per_s,decode_tok_per_s,"
       "ttft_ms,kv_read_fraction,step,latency_ms,rectified\n";
  auto quote = [](QString v) {
    v.replace(QLatin1Char('"'), QStringLiteral("\"\""));
    return QStringLiteral("\"%1\"").arg(v);
  };
  for (const auto& r : result_.runs) {
    for (int i = 0; i < std::max<qsizetype>(1, r.stepMs.size()); ++i) {
      s << quote(result_.model) << ',' << quote(result_.backend) << ',' << r.mode << ','
        << r.contextTokens << ',' << r.generatedTokens << ',' << r.prefillTokPerS << ','
        << r.decodeTokPerS << ',' << r.ttftMs << ',' << r.kvReadFraction << ',';
      if (i < r.stepMs.size())
        s << i << ',' << r.stepMs[i] << ',' << (r.rectifiedSteps.contains(i) ? 1 : 0);
      else
        s << ",,";
      s << '\n';
    }
  }
  return out;
}

bool CompareView::exportCsv(const QString& path) const {
  QFile f(path);
  if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate | QIODevice::Text)) return false;
  return f.write(csv().toUtf8()) >= 0;
}

}  // namespace resa::ui
