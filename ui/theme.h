// Colours, fonts and number formatting shared by the views, so a mode has one colour everywhere
// (toolbar, message chips, charts) and numbers read the same in every panel.
#pragma once

#include <QColor>
#include <QIcon>
#include <QString>

#include "engine/resa.h"

class QApplication;

namespace resa::ui {

QColor modeColor(DecodeMode mode);
QString modeLabel(DecodeMode mode);  // "Dense", "Sparse", "ReSA"
QColor rectificationColor();
QColor accentColor();
QColor mutedTextColor();

// Heat map colour for a share 0..1 of the most-read block (transparent at 0).
QColor heatColor(double heat);

// Fusion style, a calm light palette and the few style sheet rules the custom widgets use.
void applyTheme(QApplication& app);

// An icon from resources/icons/<name>.svg.
QIcon icon(const QString& name);

QString formatBytes(double bytes);      // "1.2 MiB"
QString formatRate(double tokensPerS);  // "18.4 tok/s", "—" when 0
QString formatMs(double ms);            // "830 ms", "2.4 s"
QString formatCount(qint64 n);          // "12,345"

}  // namespace resa::ui
