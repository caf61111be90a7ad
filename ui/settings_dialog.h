// Settings: ReSA (block size, ratio, min blocks, local, sink, rectify-every), sampling
// (temperature, top-k, top-p, min-p, repetition penalty, seed, max tokens) and the engine
// (context limit, threads, system prompt). Edits plain values; the caller persists them.
#pragma once

#include <QDialog>

#include "app/lib/app_types.h"

class QCheckBox;
class QDoubleSpinBox;
class QPlainTextEdit;
class QSpinBox;

namespace resa::ui {

class SettingsDialog : public QDialog {
  Q_OBJECT
 public:
  explicit SettingsDialog(QWidget* parent = nullptr);

  void setValues(const app::GenerationSettings& g, int contextLimit, int threads);
  app::GenerationSettings generation() const;
  int contextLimit() const;
  int threads() const;

 private:
  void restoreDefaults();

  QSpinBox* blockSize_;
  QDoubleSpinBox* ratio_;
  QSpinBox* minBlocks_;
  QSpinBox* local_;
  QCheckBox* sink_;
  QSpinBox* rectifyEvery_;
  QCheckBox* fold_;
  QDoubleSpinBox* temperature_;
  QSpinBox* topK_;
  QDoubleSpinBox* topP_;
  QDoubleSpinBox* minP_;
  QDoubleSpinBox* repetition_;
  QSpinBox* seed_;
  QSpinBox* maxTokens_;
  QSpinBox* ctxLimit_;
  QSpinBox* threads_;
  QPlainTextEdit* system_;
  app::GenerationSettings base_;
};

}  // namespace resa::ui
