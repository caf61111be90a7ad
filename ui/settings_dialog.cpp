#include "ui/settings_dialog.h"

#include <QCheckBox>
#include <QDialogButtonBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QTabWidget>
#include <QVBoxLayout>

#include "app/lib/settings.h"

namespace resa::ui {

namespace {
QSpinBox* intBox(int lo, int hi, const QString& tip, const QString& special = {}) {
  auto* b = new QSpinBox;
  b->setRange(lo, hi);
  b->setToolTip(tip);
  if (!special.isEmpty()) b->setSpecialValueText(special);
  b->setMinimumWidth(120);
  return b;
}
QDoubleSpinBox* realBox(double lo, double hi, double step, int decimals, const QString& tip,
                        const QString& special = {}) {
  auto* b = new QDoubleSpinBox;
  b->setRange(lo, hi);
  b->setSingleStep(step);
  b->setDecimals(decimals);
  b->setToolTip(tip);
  if (!special.isEmpty()) b->setSpecialValueText(special);
  b->setMinimumWidth(120);
  return b;
}
QLabel* hint(const QString& text) {
  auto* l = new QLabel(text);
  l->setObjectName(QStringLiteral("StatsFooter"));
  l->setWordWrap(true);
  return l;
}
}  // namespace

SettingsDialog::SettingsDialog(QWidget* parent) : QDialog(parent) {
  setWindowTitle(tr("Settings"));
  auto* l = new QVBoxLayout(this);
  auto* tabs = new QTabWidget(this);
  l->addWidget(tabs);

  // ReSA
  auto* resaPage = new QWidget;
  auto* rl = new QVBoxLayout(resaPage);
  rl->addWidget(
      hint(tr("Block-sparse decoding reads only the KV blocks whose key bounds score "
              "highest for the current query; ReSA re-runs the last f tokens densely "
              "so errors cannot pile up. Mode changes apply from the next answer.")));
  auto* sel = new QGroupBox(tr("Block selection"));
  auto* sf = new QFormLayout(sel);
  blockSize_ = intBox(1, 256, tr("B: tokens per KV block. Changing it re-processes the context."));
  ratio_ = realBox(0.01, 1.0, 0.01, 2, tr("Share of the blocks read per decode step"));
  minBlocks_ = intBox(1, 4096, tr("Least number of blocks read per step"));
  local_ = intBox(1, 64, tr("Newest blocks that are always read"));
  sink_ = new QCheckBox(tr("Always read the first block (attention sink)"));
  sf->addRow(tr("Block size"), blockSize_);
  sf->addRow(tr("Ratio"), ratio_);
  sf->addRow(tr("Min blocks"), minBlocks_);
  sf->addRow(tr("Local blocks"), local_);
  sf->addRow(QString(), sink_);
  rl->addWidget(sel);
  auto* rect = new QGroupBox(tr("Rectification (ReSA mode)"));
  auto* rf = new QFormLayout(rect);
  rectifyEvery_ =
      intBox(0, 4096, tr("f: generated tokens between dense rectifications"), tr("never"));
  fold_ = new QCheckBox(tr("Fold each rectification into a decode step"));
  fold_->setToolTip(tr("Every f-th step is one dense pass over the last f tokens (saves a step)"));
  rf->addRow(tr("Rectify every"), rectifyEvery_);
  rf->addRow(QString(), fold_);
  rl->addWidget(rect);
  rl->addStretch();
  tabs->addTab(resaPage, tr("ReSA"));

  // Sampling
  auto* samplingPage = new QWidget;
  auto* pf = new QFormLayout(samplingPage);
  temperature_ =
      realBox(0.0, 5.0, 0.05, 2, tr("0: greedy, always the most likely token"), tr("0 (greedy)"));
  topK_ = intBox(0, 100000, tr("Keep the k most likely tokens"), tr("off"));
  topP_ = realBox(0.01, 1.0, 0.01, 2, tr("Nucleus: keep the smallest set with this much mass"));
  minP_ = realBox(0.0, 0.99, 0.01, 2, tr("Drop tokens below min-p times the top probability"),
                  tr("off"));
  repetition_ = realBox(0.5, 3.0, 0.05, 2, tr("Penalty on recently seen tokens (1: off)"));
  seed_ = intBox(0, 2147483647, tr("Random seed: the same seed repeats an answer exactly"));
  maxTokens_ = intBox(1, 65536, tr("Most tokens per answer"));
  pf->addRow(tr("Temperature"), temperature_);
  pf->addRow(tr("Top-k"), topK_);
  pf->addRow(tr("Top-p"), topP_);
  pf->addRow(tr("Min-p"), minP_);
  pf->addRow(tr("Repetition penalty"), repetition_);
  pf->addRow(tr("Seed"), seed_);
  pf->addRow(tr("Max tokens"), maxTokens_);
  tabs->addTab(samplingPage, tr("Sampling"));

  // Engine
  auto* enginePage = new QWidget;
  auto* ef = new QFormLayout(enginePage);
  ctxLimit_ = intBox(0, 1 << 22, tr("Tokens a conversation may hold (0: the model's limit)"),
                     tr("model's limit"));
  ctxLimit_->setSingleStep(1024);
  threads_ = intBox(0, 512, tr("CPU threads (0: all cores)"), tr("all cores"));
  system_ = new QPlainTextEdit;
  system_->setPlaceholderText(tr("Optional system prompt, used on the first turn"));
  system_->setMaximumHeight(90);
  ef->addRow(tr("Context limit"), ctxLimit_);
  ef->addRow(tr("CPU threads"), threads_);
  ef->addRow(tr("System prompt"), system_);
  ef->addRow(QString(),
             hint(tr("Context limit and threads apply when the model is loaded again.")));
  tabs->addTab(enginePage, tr("Engine"));

  auto* buttons = new QDialogButtonBox(
      QDialogButtonBox::Ok | QDialogButtonBox::Cancel | QDialogButtonBox::RestoreDefaults, this);
  connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  connect(buttons->button(QDialogButtonBox::RestoreDefaults), &QPushButton::clicked, this,
          &SettingsDialog::restoreDefaults);
  l->addWidget(buttons);
  setValues(app::Settings::defaultGeneration(), 0, 0);
}

void SettingsDialog::setValues(const app::GenerationSettings& g, int contextLimit, int threads) {
  base_ = g;
  blockSize_->setValue(g.resa.block_size);
  ratio_->setValue(g.resa.ratio);
  minBlocks_->setValue(g.resa.min_blocks);
  local_->setValue(g.resa.local);
  sink_->setChecked(g.resa.sink);
  rectifyEvery_->setValue(g.resa.rectify_every);
  fold_->setChecked(g.resa.fold_rectification);
  temperature_->setValue(g.sampling.temperature);
  topK_->setValue(g.sampling.top_k);
  topP_->setValue(g.sampling.top_p);
  minP_->setValue(g.sampling.min_p);
  repetition_->setValue(g.sampling.repetition_penalty);
  seed_->setValue(int(std::min<uint64_t>(g.sampling.seed, 2147483647u)));
  maxTokens_->setValue(g.maxNewTokens);
  system_->setPlainText(g.systemPrompt);
  ctxLimit_->setValue(contextLimit);
  threads_->setValue(threads);
}

app::GenerationSettings SettingsDialog::generation() const {
  app::GenerationSettings g = base_;
  g.resa.block_size = blockSize_->value();
  g.resa.ratio = ratio_->value();
  g.resa.min_blocks = minBlocks_->value();
  g.resa.local = local_->value();
  g.resa.sink = sink_->isChecked();
  g.resa.rectify_every = rectifyEvery_->value();
  g.resa.fold_rectification = fold_->isChecked();
  g.sampling.temperature = float(temperature_->value());
  g.sampling.top_k = topK_->value();
  g.sampling.top_p = float(topP_->value());
  g.sampling.min_p = float(minP_->value());
  g.sampling.repetition_penalty = float(repetition_->value());
  g.sampling.seed = uint64_t(seed_->value());
  g.maxNewTokens = maxTokens_->value();
  g.systemPrompt = system_->toPlainText();
  return g;
}

int SettingsDialog::contextLimit() const { return ctxLimit_->value(); }
int SettingsDialog::threads() const { return threads_->value(); }

void SettingsDialog::restoreDefaults() {
  app::GenerationSettings d = app::Settings::defaultGeneration();
  d.mode = base_.mode;
  setValues(d, 0, 0);
}

}  // namespace resa::ui
