// ctest-labels: slow
// `resa-eval --quick` end to end: it finishes, writes results.json of the documented shape,
// results.md and the charts, and (with the trained demo model) dense decoding retrieves the pass
// key at short contexts. Random weights cannot retrieve anything: that check is skipped then.
#include <QCoreApplication>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>

namespace {

QString find_resa_eval() {
  QStringList candidates;
#ifdef RESA_CLI_PATH
  candidates << QFileInfo(QString(RESA_CLI_PATH)).dir().filePath("resa-eval");
#endif
  candidates << QCoreApplication::applicationDirPath() + "/../app/resa-eval";
  for (const QString& c : candidates)
    if (QFileInfo(c).isExecutable()) return QFileInfo(c).canonicalFilePath();
  return {};
}

QString demo_model_dir() {
  const QString dir = QString(RESA_SOURCE_DIR) + "/resources/models/demo";
  return QFileInfo(dir + "/config.json").exists() ? dir : QString();
}

QString math_data_dir() {
  const QString dir = QString(RESA_SOURCE_DIR) + "/../shared/data/math";
  return QFileInfo(dir + "/aime24.jsonl").exists() ? QDir(dir).canonicalPath() : QString();
}

const QStringList kModes{"dense", "sparse", "resa"};

}  // namespace

class TestSlowEvalQuick : public QObject {
  Q_OBJECT

 private:
  QTemporaryDir out_;
  QJsonObject results_;
  bool with_demo_ = false;
  bool with_math_ = false;

 private slots:
  void initTestCase() {
    const QString exe = find_resa_eval();
    if (exe.isEmpty()) QSKIP("resa-eval is not built (it needs Qt Widgets and Charts)");
    QVERIFY(out_.isValid());
    QStringList args{"--quick", "--out", out_.path(), "--threads", "2"};
    const QString demo = demo_model_dir();
    with_demo_ = !demo.isEmpty();
    if (with_demo_)
      args << "--model" << demo;
    else
      args << "--random-weights"
           << "tiny";
    const QString math = math_data_dir();
    with_math_ = !math.isEmpty();
    if (with_math_)
      args << "--math-data" << math;
    else
      args << "--tasks"
           << "perplexity,retrieval,agreement";
    QProcess p;
    p.setProcessChannelMode(QProcess::ForwardedErrorChannel);
    QElapsedTimer timer;
    timer.start();
    p.start(exe, args);
    QVERIFY2(p.waitForStarted(), qPrintable(exe + ": " + p.errorString()));
    if (!p.waitForFinished(600000)) {
      p.kill();
      p.waitForFinished();
      QFAIL("resa-eval --quick ran for more than 10 minutes");
    }
    const double secs = timer.elapsed() / 1000.0;
    std::printf("resa-eval --quick (%s) took %.1f s\n",
                with_demo_ ? "demo model" : "tiny random weights", secs);
    if (secs > 120) qWarning("resa-eval --quick took %.0f s, over its 2-minute budget", secs);
    QCOMPARE(p.exitStatus(), QProcess::NormalExit);
    QCOMPARE(p.exitCode(), 0);
    QFile f(out_.filePath("results.json"));
    QVERIFY(f.open(QIODevice::ReadOnly));
    QJsonParseError err;
    const QJsonDocument doc = QJsonDocument::fromJson(f.readAll(), &err);
    QVERIFY2(doc.isObject(), qPrintable(err.errorString()));
    results_ = doc.object();
  }

  void results_carry_provenance_and_settings() {
    QCOMPARE(results_.value("tool").toString(), QString("resa-eval"));
    QCOMPARE(results_.value("quick").toBool(), true);
    const QJsonObject prov = results_.value("provenance").toObject();
    for (const char* key : {"command", "commit", "date", "machine", "backend", "model"})
      QVERIFY2(!prov.value(key).toString().isEmpty(), key);
    QVERIFY(prov.value("model_parameters").toDouble() > 0);
    QStringList modes;
    for (const QJsonValue& v : results_.value("modes").toArray()) modes << v.toString();
    QCOMPARE(modes, kModes);
    const QJsonObject resa = results_.value("resa").toObject();
    QCOMPARE(resa.value("block_size").toInt(), 16);
    QCOMPARE(resa.value("rectify_every").toInt(), 32);
  }

  void perplexity_has_points_per_mode() {
    const QJsonObject ppl = results_.value("perplexity").toObject();
    QVERIFY(!ppl.isEmpty());
    const QJsonArray lengths = ppl.value("lengths").toArray();
    QVERIFY(!lengths.isEmpty());
    const QJsonObject modes = ppl.value("modes").toObject();
    for (const QString& m : kModes) {
      const QJsonObject o = modes.value(m).toObject();
      const QJsonArray pts = o.value("points").toArray();
      QCOMPARE(pts.size(), lengths.size());
      for (const QJsonValue& v : pts) {
        const double x = v.toObject().value("ppl").toDouble();
        QVERIFY2(std::isfinite(x) && x >= 1.0, qPrintable(m + " ppl " + QString::number(x)));
        const double agree = v.toObject().value("top1_agree").toDouble();
        QVERIFY(agree >= 0 && agree <= 1);
      }
      if (m == "dense") {
        QCOMPARE(pts.last().toObject().value("top1_agree").toDouble(), 1.0);
        QCOMPARE(o.value("rectifications").toInt(), 0);
      } else {
        QVERIFY(o.value("drift").toArray().size() > 0);
        QVERIFY(o.value("kv_read_fraction").toDouble() < 1.0);  // sparse steps read less
      }
    }
    QVERIFY(modes.value("resa").toObject().value("rectifications").toInt() > 0);
    QCOMPARE(modes.value("sparse").toObject().value("rectifications").toInt(), 0);
  }

  void retrieval_grid_is_complete() {
    const QJsonObject ret = results_.value("retrieval").toObject();
    const int lengths = ret.value("lengths").toArray().size();
    const int depths = ret.value("depths").toArray().size();
    const int trials = ret.value("trials").toInt();
    QVERIFY(lengths > 0 && depths > 0 && trials > 0);
    QCOMPARE(ret.value("samples").toArray().size(), lengths * depths * trials);
    for (const QString& m : kModes) {
      const QJsonObject o = ret.value("modes").toObject().value(m).toObject();
      QCOMPARE(o.value("cells").toArray().size(), lengths * depths);
      QCOMPARE(o.value("by_length").toArray().size(), lengths);
      const double acc = o.value("accuracy").toDouble(-1);
      QVERIFY(acc >= 0 && acc <= 1);
    }
    for (const QJsonValue& v : ret.value("samples").toArray()) {
      const QJsonObject s = v.toObject();
      QCOMPARE(s.value("key").toString().size(), 5);
      QVERIFY(s.value("prompt_tokens").toInt() <= s.value("length").toInt());
      for (const QString& m : kModes) QVERIFY(s.value("answers").toObject().contains(m));
    }
  }

  void agreement_compares_with_dense() {
    const QJsonObject modes = results_.value("agreement").toObject().value("modes").toObject();
    for (const QString& m : kModes) {
      const QJsonArray runs = modes.value(m).toArray();
      QVERIFY(!runs.isEmpty());
      for (const QJsonValue& v : runs) {
        const double share = v.toObject().value("identical_share").toDouble(-1);
        QVERIFY(share >= 0 && share <= 1);
        if (m == "dense") {
          QCOMPARE(share, 1.0);
          QCOMPARE(v.toObject().value("first_divergence").toInt(), -1);
        }
      }
    }
  }

  void math_reports_every_set() {
    if (!with_math_) QSKIP("no shared/data/math beside the source tree");
    const QJsonObject math = results_.value("math").toObject();
    QCOMPARE(math.value("sets").toArray().size(), 5);
    for (const QString& m : kModes) {
      const QJsonObject o = math.value("modes").toObject().value(m).toObject();
      const QJsonObject sets = o.value("sets").toObject();
      QCOMPARE(sets.size(), 5);
      for (const QJsonValue& s : sets) QCOMPARE(s.toObject().value("total").toInt(), 1);
      const double avg = o.value("average").toDouble(-1);
      QVERIFY(avg >= 0 && avg <= 1);
    }
    QCOMPARE(math.value("results").toArray().size(), 5 * 3);
  }

  void markdown_and_charts_are_written() {
    QFile md(out_.filePath("results.md"));
    QVERIFY(md.open(QIODevice::ReadOnly));
    const QString text = QString::fromUtf8(md.readAll());
    QVERIFY(text.contains("## Perplexity through the decoding path"));
    QVERIFY(text.contains("## Pass-key retrieval"));
    QVERIFY(text.contains("| tokens | dense | sparse | resa |"));
    QStringList charts{"perplexity.png", "drift.png", "retrieval.png", "agreement.png"};
    if (with_math_) charts << "math.png";
    for (const QString& c : charts) {
      QFile png(out_.filePath(c));
      QVERIFY2(png.open(QIODevice::ReadOnly), qPrintable(c));
      QVERIFY2(png.size() > 10000, qPrintable(c + " is too small to hold a chart"));
      QCOMPARE(png.read(8), QByteArray("\x89PNG\r\n\x1a\n", 8));
    }
  }

  void dense_retrieves_the_pass_key_at_short_contexts() {
    if (!with_demo_)
      QSKIP(
          "resources/models/demo is not there: with random weights (the tiny preset) no mode "
          "can retrieve; the shape checks above ran");
    const QJsonObject dense =
        results_.value("retrieval").toObject().value("modes").toObject().value("dense").toObject();
    const QJsonObject shortest = dense.value("by_length").toArray().first().toObject();
    QVERIFY2(shortest.value("accuracy").toDouble() >= 1.0,
             qPrintable(QString("dense retrieval at %1 tokens: %2")
                            .arg(shortest.value("length").toInt())
                            .arg(shortest.value("accuracy").toDouble())));
  }
};

QTEST_GUILESS_MAIN(TestSlowEvalQuick)
#include "test_slow_eval_quick.moc"
