#include "ui/theme.h"

#include <algorithm>

#include <QApplication>
#include <QFont>
#include <QLocale>
#include <QPalette>
#include <QStyleFactory>

// resa_ui is a static library: its resources must be registered explicitly (outside any
// namespace, as Q_INIT_RESOURCE requires).
static void initResaResources() { Q_INIT_RESOURCE(resources); }

namespace resa::ui {

QColor modeColor(DecodeMode mode) {
  switch (mode) {
    case DecodeMode::kDense:
      return QColor(0x3b, 0x6f, 0xd9);
    case DecodeMode::kSparse:
      return QColor(0xe0, 0x82, 0x1e);
    case DecodeMode::kResa:
      return QColor(0x1f, 0x9d, 0x63);
  }
  return Qt::gray;
}

QString modeLabel(DecodeMode mode) {
  switch (mode) {
    case DecodeMode::kDense:
      return QStringLiteral("Dense");
    case DecodeMode::kSparse:
      return QStringLiteral("Sparse");
    case DecodeMode::kResa:
      return QStringLiteral("ReSA");
  }
  return {};
}

QColor rectificationColor() { return QColor(0xd6, 0x3a, 0x3a); }
QColor accentColor() { return QColor(0x3b, 0x6f, 0xd9); }
QColor mutedTextColor() { return QColor(0x6b, 0x72, 0x80); }

QColor heatColor(double heat) {
  heat = std::clamp(heat, 0.0, 1.0);
  if (heat <= 0) return Qt::transparent;
  // Pale yellow to deep orange, alpha rising with the heat so cold text stays readable.
  const QColor lo(0xff, 0xe8, 0x7a), hi(0xf0, 0x5a, 0x28);
  const double a = 0.25 + 0.6 * heat;
  return QColor(int(lo.red() + (hi.red() - lo.red()) * heat),
                int(lo.green() + (hi.green() - lo.green()) * heat),
                int(lo.blue() + (hi.blue() - lo.blue()) * heat), int(255 * a));
}

void applyTheme(QApplication& app) {
  initResaResources();
  app.setStyle(QStyleFactory::create(QStringLiteral("Fusion")));
  QPalette p;
  p.setColor(QPalette::Window, QColor(0xf6, 0xf7, 0xf9));
  p.setColor(QPalette::WindowText, QColor(0x1f, 0x23, 0x28));
  p.setColor(QPalette::Base, Qt::white);
  p.setColor(QPalette::AlternateBase, QColor(0xf3, 0xf4, 0xf6));
  p.setColor(QPalette::Text, QColor(0x1f, 0x23, 0x28));
  p.setColor(QPalette::Button, QColor(0xfb, 0xfb, 0xfc));
  p.setColor(QPalette::ButtonText, QColor(0x1f, 0x23, 0x28));
  p.setColor(QPalette::Highlight, accentColor());
  p.setColor(QPalette::HighlightedText, Qt::white);
  p.setColor(QPalette::ToolTipBase, QColor(0x1f, 0x23, 0x28));
  p.setColor(QPalette::ToolTipText, Qt::white);
  p.setColor(QPalette::PlaceholderText, QColor(0x9a, 0xa0, 0xa6));
  p.setColor(QPalette::Link, accentColor());
  p.setColor(QPalette::Mid, QColor(0xd0, 0xd4, 0xda));
  p.setColor(QPalette::Disabled, QPalette::Text, QColor(0xa0, 0xa4, 0xaa));
  p.setColor(QPalette::Disabled, QPalette::ButtonText, QColor(0xa0, 0xa4, 0xaa));
  p.setColor(QPalette::Disabled, QPalette::WindowText, QColor(0xa0, 0xa4, 0xaa));
  app.setPalette(p);
  QFont f = app.font();
  if (f.pointSizeF() < 10) f.setPointSizeF(10);
  app.setFont(f);
  app.setStyleSheet(QStringLiteral(R"(
    QToolTip { border: 0; padding: 4px 6px; }
    #Sidebar { background: #eef0f3; border-right: 1px solid #dde0e5; }
    #Sidebar QListView { background: transparent; border: 0; }
    #Sidebar QListView::item { padding: 6px 8px; border-radius: 6px; }
    #Sidebar QListView::item:selected { background: #dbe5fa; color: #1f2328; }
    #Sidebar QListView::item:hover:!selected { background: #e4e7ec; }
    #SidePanel { background: #f6f7f9; border-left: 1px solid #dde0e5; }
    #ChatArea, #ChatScroll, #ChatScroll > QWidget > QWidget { background: white; }
    #Composer { background: white; border: 1px solid #d0d4da; border-radius: 10px; }
    #ComposerEdit { border: 0; background: transparent; }
    #MetricTile { background: white; border: 1px solid #e3e6ea; border-radius: 8px; }
    #MetricValue { font-size: 15pt; font-weight: 600; }
    #MetricLabel { color: #6b7280; font-size: 8.5pt; }
    #SectionTitle { color: #6b7280; font-size: 8.5pt; font-weight: 600; }
    #ErrorBanner { background: #fdecec; border: 1px solid #f3b4b4; border-radius: 8px; }
    #InfoBanner { background: #eef3fd; border: 1px solid #c4d5f7; border-radius: 8px; }
    #AttachmentChip { background: #f1f3f6; border: 1px solid #dde0e5; border-radius: 12px; }
    #StatsFooter { color: #6b7280; font-size: 8.5pt; }
    #ModeChip { border-radius: 8px; padding: 1px 7px; color: white; font-size: 8pt;
                font-weight: 600; }
    #RoleLabel { font-weight: 600; }
    #EmptyTitle { font-size: 18pt; font-weight: 600; }
    QPushButton#PrimaryButton { background: #3b6fd9; color: white; border: 0;
                                border-radius: 6px; padding: 6px 14px; font-weight: 600; }
    QPushButton#PrimaryButton:hover { background: #335fbd; }
    QPushButton#PrimaryButton:disabled { background: #a9bde8; }
    QPushButton#StopButton { background: #d63a3a; color: white; border: 0;
                             border-radius: 6px; padding: 6px 14px; font-weight: 600; }
    QToolButton#ModeButton { padding: 4px 12px; border: 1px solid #d0d4da; background: white; }
    QToolButton#ModeButton:checked { color: white; font-weight: 600; }
  )"));
}

QIcon icon(const QString& name) { return QIcon(QStringLiteral(":/icons/%1.svg").arg(name)); }

QString formatBytes(double bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  const int decimals = (u == 0 || bytes >= 100) ? 0 : 1;
  return QStringLiteral("%1 %2").arg(bytes, 0, 'f', decimals).arg(QLatin1String(units[u]));
}

QString formatRate(double tokensPerS) {
  if (tokensPerS <= 0) return QStringLiteral("—");
  const int decimals = tokensPerS >= 100 ? 0 : 1;
  return QStringLiteral("%1 tok/s").arg(tokensPerS, 0, 'f', decimals);
}

QString formatMs(double ms) {
  if (ms <= 0) return QStringLiteral("—");
  if (ms < 10) return QStringLiteral("%1 ms").arg(ms, 0, 'f', 1);
  if (ms < 1000) return QStringLiteral("%1 ms").arg(qRound(ms));
  return QStringLiteral("%1 s").arg(ms / 1000.0, 0, 'f', ms < 10000 ? 2 : 1);
}

QString formatCount(qint64 n) { return QLocale::system().toString(n); }

}  // namespace resa::ui
