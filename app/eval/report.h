// resa-eval's outputs derived from results.json: the Markdown tables and the PNG charts
// (Qt Charts rendered offscreen into images).
#pragma once

#include <QJsonObject>
#include <QString>
#include <QStringList>

namespace resa::eval {

// results.md: provenance, then one table per task that ran.
QString markdown_report(const QJsonObject& results);

// perplexity.png, retrieval.png, agreement.png, drift.png, math.png (those whose task ran) in
// `dir`; returns the file names written. Needs a QApplication (any platform, offscreen too).
QStringList write_charts(const QJsonObject& results, const QString& dir);

}  // namespace resa::eval
