#include "app/eval/report.h"

#include <QApplication>
#include <QBarCategoryAxis>
#include <QBarSeries>
#include <QBarSet>
#include <QChart>
#include <QGraphicsScene>
#include <QImage>
#include <QJsonArray>
#include <QLegend>
#include <QLineSeries>
#include <QPainter>
#include <QValueAxis>

#include <algorithm>
#include <cmath>
#include <functional>

namespace resa::eval {
namespace {

QString fmt(double x, int decimals) { return QString::number(x, 'f', decimals); }
QString pct(double x) { return fmt(100.0 * x, 1) + "%"; }

QStringList modes_of(const QJsonObject& r) {
  QStringList m;
  for (const QJsonValue& v : r.value("modes").toArray()) m << v.toString();
  return m;
}

// One colour per mode across all charts.
QColor mode_color(const QString& mode) {
  if (mode == "dense") return QColor(0x33, 0x66, 0xcc);
  if (mode == "sparse") return QColor(0xdc, 0x39, 0x12);
  if (mode == "resa") return QColor(0x10, 0x96, 0x18);
  return QColor(0x99, 0x99, 0x99);
}

QString table_row(const QStringList& cells) { return "| " + cells.join(" | ") + " |\n"; }
QString table_rule(int n) {
  QStringList r;
  for (int i = 0; i < n; ++i) r << "---";
  return table_row(r);
}

QString provenance_md(const QJsonObject& r) {
  const QJsonObject p = r.value("provenance").toObject();
  const QJsonObject rp = r.value("resa").toObject();
  QString md;
  md += "# resa-eval results\n\n";
  md += "- command: `" + p.value("command").toString() + "`\n";
  md += "- model: " + p.value("model").toString() + " (" +
        QString::number(p.value("model_parameters").toDouble() / 1e6, 'f', 2) +
        "M parameters, context " + QString::number(p.value("max_position_embeddings").toInt()) +
        ")\n";
  md += "- backend: " + p.value("backend").toString() + ", " +
        QString::number(p.value("threads").toInt()) + " threads\n";
  md += "- machine: " + p.value("machine").toString() + "\n";
  md += "- commit: " + p.value("commit").toString() + ", " + p.value("date").toString() + "\n";
  md += "- ReSA: block " + QString::number(rp.value("block_size").toInt()) + ", ratio " +
        QString::number(rp.value("ratio").toDouble()) + ", min blocks " +
        QString::number(rp.value("min_blocks").toInt()) + ", local " +
        QString::number(rp.value("local").toInt()) + ", sink " +
        QString::number(rp.value("sink").toBool() ? 1 : 0) + ", rectify every " +
        QString::number(rp.value("rectify_every").toInt()) + "\n\n";
  return md;
}

QString perplexity_md(const QJsonObject& r, const QStringList& modes) {
  const QJsonObject ppl = r.value("perplexity").toObject();
  QString md = "## Perplexity through the decoding path\n\n";
  md += "Every token of `" + ppl.value("document").toString() +
        "` fed as one decode step (sparse errors accumulate as in generation). ppl: over the "
        "first N tokens; window: over the tokens since the previous row; top-1: share of "
        "positions whose most likely next token equals dense's.\n\n";
  QStringList head{"tokens"};
  for (const QString& m : modes) {
    head << m + " ppl" << m + " window";
    if (m != "dense") head << m + " vs dense" << m + " top-1";
  }
  md += table_row(head) + table_rule(head.size());
  const QJsonObject by_mode = ppl.value("modes").toObject();
  const QJsonArray dense_pts = by_mode.value("dense").toObject().value("points").toArray();
  const int rows = by_mode.value(modes.value(0)).toObject().value("points").toArray().size();
  for (int i = 0; i < rows; ++i) {
    QStringList row;
    for (const QString& m : modes) {
      const QJsonObject pt = by_mode.value(m).toObject().value("points").toArray().at(i).toObject();
      if (row.isEmpty()) row << QString::number(pt.value("length").toInt());
      row << fmt(pt.value("ppl").toDouble(), 3) << fmt(pt.value("window_ppl").toDouble(), 3);
      if (m != "dense") {
        const double d = dense_pts.at(i).toObject().value("ppl").toDouble();
        row << (d > 0 ? (pt.value("ppl").toDouble() >= d ? "+" : "") +
                            fmt(100.0 * (pt.value("ppl").toDouble() / d - 1.0), 2) + "%"
                      : QString("n/a"))
            << pct(pt.value("top1_agree").toDouble());
      }
    }
    md += table_row(row);
  }
  md += "\n";
  QStringList extra;
  for (const QString& m : modes) {
    const QJsonObject o = by_mode.value(m).toObject();
    extra << m + ": KV read " + pct(o.value("kv_read_fraction").toDouble()) + ", " +
                 QString::number(o.value("rectifications").toInt()) + " rectifications, " +
                 fmt(o.value("seconds").toDouble(), 1) + " s";
  }
  md += extra.join("; ") + ".\n\n";
  return md;
}

QString retrieval_md(const QJsonObject& r, const QStringList& modes) {
  const QJsonObject ret = r.value("retrieval").toObject();
  const QJsonObject by_mode = ret.value("modes").toObject();
  QString md = "## Pass-key retrieval\n\n";
  md += QString(
            "Greedy answer to \"What is the pass key? The pass key is\" after a filler with the "
            "key at a depth; %1 key(s) per cell. Accuracy per context length (all depths):\n\n")
            .arg(ret.value("trials").toInt());
  QStringList head{"tokens"};
  head << modes;
  md += table_row(head) + table_rule(head.size());
  const QJsonArray lengths = ret.value("lengths").toArray();
  for (int i = 0; i < lengths.size(); ++i) {
    QStringList row{QString::number(lengths.at(i).toInt())};
    for (const QString& m : modes)
      row << pct(by_mode.value(m)
                     .toObject()
                     .value("by_length")
                     .toArray()
                     .at(i)
                     .toObject()
                     .value("accuracy")
                     .toDouble());
    md += table_row(row);
  }
  QStringList all{"all"};
  for (const QString& m : modes)
    all << "**" + pct(by_mode.value(m).toObject().value("accuracy").toDouble()) + "**";
  md += table_row(all) + "\n";
  md += "By length and depth (correct / trials):\n\n";
  QStringList head2{"tokens", "depth"};
  head2 << modes;
  md += table_row(head2) + table_rule(head2.size());
  const QJsonArray cells = by_mode.value(modes.value(0)).toObject().value("cells").toArray();
  for (int i = 0; i < cells.size(); ++i) {
    const QJsonObject c0 = cells.at(i).toObject();
    QStringList row{QString::number(c0.value("length").toInt()),
                    QString::number(int(std::lround(c0.value("depth").toDouble() * 100))) + "%"};
    for (const QString& m : modes) {
      const QJsonObject c = by_mode.value(m).toObject().value("cells").toArray().at(i).toObject();
      row << QString::number(c.value("correct").toInt()) + "/" +
                 QString::number(c.value("trials").toInt());
    }
    md += table_row(row);
  }
  return md + "\n";
}

QString agreement_md(const QJsonObject& r, const QStringList& modes) {
  const QJsonObject ag = r.value("agreement").toObject();
  const QJsonObject by_mode = ag.value("modes").toObject();
  QString md = "## Agreement with dense\n\n";
  md += QString(
            "Greedy generations of %1 tokens after a prompt from the document: share of "
            "tokens identical to dense's at the same index, and the index of the first "
            "difference (-: none).\n\n")
            .arg(ag.value("new_tokens").toInt());
  md += table_row({"prompt tokens", "mode", "generated", "identical", "first divergence"}) +
        table_rule(5);
  for (const QString& m : modes) {
    if (m == "dense") continue;
    for (const QJsonValue& v : by_mode.value(m).toArray()) {
      const QJsonObject o = v.toObject();
      const int fd = o.value("first_divergence").toInt();
      md += table_row({QString::number(o.value("prompt_tokens").toInt()), m,
                       QString::number(o.value("generated").toInt()),
                       pct(o.value("identical_share").toDouble()),
                       fd < 0 ? QString("-") : QString::number(fd)});
    }
  }
  return md + "\n";
}

QString math_md(const QJsonObject& r, const QStringList& modes) {
  const QJsonObject math = r.value("math").toObject();
  const QJsonObject by_mode = math.value("modes").toObject();
  QString md = "## Math (shared/data/math protocol)\n\n";
  md += QString(
            "Temperature %1, top-p %2, at most %3 new tokens, %4 sample(s) per problem, "
            "%5 problem(s) per set; accuracy = share of samples whose last \\boxed{} equals "
            "the gold answer.\n\n")
            .arg(math.value("temperature").toDouble())
            .arg(math.value("top_p").toDouble())
            .arg(math.value("max_new_tokens").toInt())
            .arg(math.value("samples").toInt())
            .arg(math.value("limit").toInt() > 0 ? QString::number(math.value("limit").toInt())
                                                 : QString("all"));
  QStringList head{"set", "samples"};
  head << modes;
  md += table_row(head) + table_rule(head.size());
  for (const QJsonValue& sv : math.value("sets").toArray()) {
    const QString set = sv.toString();
    QStringList row{set};
    for (const QString& m : modes) {
      const QJsonObject o =
          by_mode.value(m).toObject().value("sets").toObject().value(set).toObject();
      if (row.size() == 1) row << QString::number(o.value("total").toInt());
      row << pct(o.value("accuracy").toDouble());
    }
    md += table_row(row);
  }
  QStringList avg{"**average**", ""};
  for (const QString& m : modes)
    avg << "**" + pct(by_mode.value(m).toObject().value("average").toDouble()) + "**";
  md += table_row(avg);
  return md + "\n";
}

// Renders a chart into a PNG without a window: the chart lives in a scene drawn onto an image.
bool save_chart(QChart* chart, const QString& path) {
  const QSizeF size(960, 560);
  QGraphicsScene scene;
  scene.addItem(chart);  // the scene owns the chart from here
  chart->setGeometry(QRectF(QPointF(0, 0), size));
  chart->setAnimationOptions(QChart::NoAnimation);
  chart->legend()->setAlignment(Qt::AlignBottom);
  QApplication::processEvents();
  QImage image((size * 2).toSize(), QImage::Format_ARGB32_Premultiplied);
  image.setDevicePixelRatio(2);
  image.fill(Qt::white);
  QPainter painter(&image);
  painter.setRenderHint(QPainter::Antialiasing);
  scene.render(&painter, QRectF(QPointF(0, 0), size), QRectF(QPointF(0, 0), size));
  painter.end();
  return image.save(path);
}

QChart* new_chart(const QString& title) {
  auto* chart = new QChart;
  chart->setTitle(title);
  chart->setBackgroundBrush(Qt::white);
  return chart;
}

void attach(QChart* chart, QAbstractSeries* s, QAbstractAxis* x, QAbstractAxis* y) {
  chart->addSeries(s);
  s->attachAxis(x);
  s->attachAxis(y);
}

QValueAxis* value_axis(QChart* chart, Qt::Alignment where, const QString& title, double lo,
                       double hi) {
  auto* a = new QValueAxis;
  a->setTitleText(title);
  a->setRange(lo, hi);
  chart->addAxis(a, where);
  return a;
}

// Lines per mode over context lengths. `points(mode)` gives (x, y) pairs.
template <typename Points>
QChart* line_chart(const QString& title, const QStringList& modes, const QString& ytitle,
                   Points points, bool zero_based, double ymax_cap = 0) {
  QChart* chart = new_chart(title);
  double xmax = 1, ymin = 1e300, ymax = -1e300;
  std::vector<QLineSeries*> lines;
  for (const QString& m : modes) {
    auto* line = new QLineSeries;
    line->setName(m);
    QPen pen(mode_color(m));
    pen.setWidth(3);
    if (m == "dense") pen.setStyle(Qt::DashLine);
    line->setPen(pen);
    line->setPointsVisible(true);
    for (const QPointF& p : points(m)) {
      line->append(p);
      xmax = std::max(xmax, p.x());
      ymin = std::min(ymin, p.y());
      ymax = std::max(ymax, p.y());
    }
    lines.push_back(line);
  }
  if (ymin > ymax) ymin = 0, ymax = 1;
  if (zero_based) ymin = 0;
  if (ymax_cap > 0) ymax = ymax_cap;
  const double pad = (ymax - ymin) * 0.08 + 1e-9;
  QValueAxis* x = value_axis(chart, Qt::AlignBottom, "context tokens", 0, xmax * 1.05);
  x->applyNiceNumbers();
  x->setLabelFormat("%d");
  QValueAxis* y = value_axis(chart, Qt::AlignLeft, ytitle, zero_based ? 0 : ymin - pad,
                             ymax_cap > 0 ? ymax : ymax + pad);
  if (ymax_cap <= 0) y->applyNiceNumbers();
  for (QLineSeries* l : lines) attach(chart, l, x, y);
  return chart;
}

QChart* bar_chart(const QString& title, const QStringList& categories, const QStringList& modes,
                  const std::function<double(const QString&, int)>& value, const QString& ytitle,
                  double ymax) {
  QChart* chart = new_chart(title);
  auto* series = new QBarSeries;
  for (const QString& m : modes) {
    auto* set = new QBarSet(m);
    set->setColor(mode_color(m));
    for (int i = 0; i < categories.size(); ++i) *set << value(m, i);
    series->append(set);
  }
  auto* x = new QBarCategoryAxis;
  x->append(categories);
  chart->addAxis(x, Qt::AlignBottom);
  QValueAxis* y = value_axis(chart, Qt::AlignLeft, ytitle, 0, ymax);
  attach(chart, series, x, y);
  return chart;
}

}  // namespace

QString markdown_report(const QJsonObject& r) {
  const QStringList modes = modes_of(r);
  QString md = provenance_md(r);
  if (r.contains("perplexity")) md += perplexity_md(r, modes);
  if (r.contains("retrieval")) md += retrieval_md(r, modes);
  if (r.contains("agreement")) md += agreement_md(r, modes);
  if (r.contains("math")) md += math_md(r, modes);
  const QJsonObject secs = r.value("seconds").toObject();
  QStringList t;
  for (auto it = secs.begin(); it != secs.end(); ++it)
    t << it.key() + " " + fmt(it.value().toDouble(), 1) + " s";
  md += "Run time: " + t.join(", ") + ".\n";
  return md;
}

QStringList write_charts(const QJsonObject& r, const QString& dir) {
  const QStringList modes = modes_of(r);
  const QString model = r.value("provenance").toObject().value("model").toString();
  QStringList written;
  auto save = [&](QChart* chart, const QString& name) {
    if (save_chart(chart, dir + "/" + name)) written << name;
  };
  if (r.contains("perplexity")) {
    const QJsonObject by_mode = r.value("perplexity").toObject().value("modes").toObject();
    save(line_chart(
             "Perplexity through the decoding path (" + model + ")", modes,
             "perplexity (first N tokens)",
             [&](const QString& m) {
               QList<QPointF> pts;
               for (const QJsonValue& v : by_mode.value(m).toObject().value("points").toArray())
                 pts << QPointF(v.toObject().value("length").toInt(),
                                v.toObject().value("ppl").toDouble());
               return pts;
             },
             false),
         "perplexity.png");
    // Drift: mean log-probability gap to dense over windows, against position.
    QStringList others;
    for (const QString& m : modes)
      if (m != "dense") others << m;
    if (!others.isEmpty() && by_mode.contains("dense")) {
      save(line_chart(
               "Drift from dense: mean log-prob gap per window of tokens (" + model + ")", others,
               "dense log p - mode log p (nats/token)",
               [&](const QString& m) {
                 QList<QPointF> pts;
                 for (const QJsonValue& v : by_mode.value(m).toObject().value("drift").toArray())
                   pts << QPointF(v.toObject().value("end").toInt(),
                                  v.toObject().value("gap").toDouble());
                 return pts;
               },
               false),
           "drift.png");
    }
  }
  if (r.contains("retrieval")) {
    const QJsonObject by_mode = r.value("retrieval").toObject().value("modes").toObject();
    save(line_chart(
             "Pass-key retrieval accuracy (" + model + ")", modes, "accuracy (%)",
             [&](const QString& m) {
               QList<QPointF> pts;
               for (const QJsonValue& v : by_mode.value(m).toObject().value("by_length").toArray())
                 pts << QPointF(v.toObject().value("length").toInt(),
                                100.0 * v.toObject().value("accuracy").toDouble());
               return pts;
             },
             true, 105),
         "retrieval.png");
  }
  if (r.contains("agreement")) {
    const QJsonObject ag = r.value("agreement").toObject();
    QStringList cats;
    for (const QJsonValue& v : ag.value("prompt_lengths").toArray())
      cats << QString::number(v.toInt()) + " tokens";
    QStringList others;
    for (const QString& m : modes)
      if (m != "dense") others << m;
    if (!others.isEmpty()) {
      save(bar_chart(
               "Greedy tokens identical to dense (" + model + ", " +
                   QString::number(ag.value("new_tokens").toInt()) + " generated)",
               cats, others,
               [&](const QString& m, int i) {
                 return 100.0 * ag.value("modes")
                                    .toObject()
                                    .value(m)
                                    .toArray()
                                    .at(i)
                                    .toObject()
                                    .value("identical_share")
                                    .toDouble();
               },
               "identical tokens (%)", 100),
           "agreement.png");
    }
  }
  if (r.contains("math")) {
    const QJsonObject math = r.value("math").toObject();
    QStringList cats;
    for (const QJsonValue& v : math.value("sets").toArray()) cats << v.toString();
    cats << "average";
    double ymax = 0;
    auto acc = [&](const QString& m, int i) {
      const QJsonObject o = math.value("modes").toObject().value(m).toObject();
      const double a = i + 1 == cats.size() ? o.value("average").toDouble()
                                            : o.value("sets")
                                                  .toObject()
                                                  .value(cats.at(i))
                                                  .toObject()
                                                  .value("accuracy")
                                                  .toDouble();
      return 100.0 * a;
    };
    for (const QString& m : modes)
      for (int i = 0; i < cats.size(); ++i) ymax = std::max(ymax, acc(m, i));
    save(bar_chart("Math accuracy per set (" + model + ")", cats, modes, acc, "accuracy (%)",
                   std::max(10.0, std::ceil(ymax / 10.0) * 10.0)),
         "math.png");
  }
  return written;
}

}  // namespace resa::eval
