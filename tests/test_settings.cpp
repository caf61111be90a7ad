// Settings: RESA.md defaults, persistence across instances, damaged values read as defaults.
#include <QtTest>

#include <QSignalSpy>
#include <QTemporaryDir>

#include "app/lib/settings.h"

using namespace resa::app;

class TestSettings : public QObject {
  Q_OBJECT

  QTemporaryDir dir_;
  QString ini(const char* name) { return dir_.filePath(QString::fromLatin1(name)); }

 private slots:
  void defaults_are_the_reference_values() {
    Settings s(ini("defaults.ini"));
    const resa::ResaParams p = s.resaParams();
    QCOMPARE(p.block_size, 16);
    QCOMPARE(p.ratio, 0.1);
    QCOMPARE(p.min_blocks, 16);
    QCOMPARE(p.local, 1);
    QCOMPARE(p.sink, true);
    QCOMPARE(p.rectify_every, 32);
    QCOMPARE(s.mode(), resa::DecodeMode::kResa);
    QCOMPARE(s.sampling().temperature, 0.0f);
    QCOMPARE(s.sampling().top_p, 1.0f);
    QCOMPARE(s.lastModelPath(), QString());
    QCOMPARE(s.contextLimit(), 0);
    QCOMPARE(s.maxNewTokens(), Settings::defaultGeneration().maxNewTokens);
    QVERIFY(s.snapshotDirectory().endsWith("/kv-snapshots"));
  }

  void values_persist_across_instances() {
    const QString path = ini("persist.ini");
    {
      Settings s(path);
      s.setLastModelPath("/models/llama");
      s.setMode(resa::DecodeMode::kSparse);
      resa::ResaParams p;
      p.block_size = 32;
      p.ratio = 0.05;
      p.min_blocks = 8;
      p.local = 2;
      p.sink = false;
      p.rectify_every = 64;
      s.setResaParams(p);
      resa::SamplingParams sp;
      sp.temperature = 0.7f;
      sp.top_k = 40;
      sp.top_p = 0.9f;
      sp.min_p = 0.05f;
      sp.repetition_penalty = 1.1f;
      sp.seed = 1234567890123ull;
      s.setSampling(sp);
      s.setMaxNewTokens(300);
      s.setContextLimit(4096);
      s.setSystemPrompt("Be brief.");
      s.setValue("geometry", QByteArray("abc"));
      s.sync();
    }
    Settings s(path);
    QCOMPARE(s.lastModelPath(), QString("/models/llama"));
    QCOMPARE(s.mode(), resa::DecodeMode::kSparse);
    const GenerationSettings g = s.generation();
    QCOMPARE(g.mode, resa::DecodeMode::kSparse);
    QCOMPARE(g.resa.block_size, 32);
    QCOMPARE(g.resa.ratio, 0.05);
    QCOMPARE(g.resa.min_blocks, 8);
    QCOMPARE(g.resa.local, 2);
    QCOMPARE(g.resa.sink, false);
    QCOMPARE(g.resa.rectify_every, 64);
    QCOMPARE(g.sampling.temperature, 0.7f);
    QCOMPARE(g.sampling.top_k, 40);
    QCOMPARE(g.sampling.top_p, 0.9f);
    QCOMPARE(g.sampling.min_p, 0.05f);
    QCOMPARE(g.sampling.repetition_penalty, 1.1f);
    QCOMPARE(g.sampling.seed, 1234567890123ull);
    QCOMPARE(g.maxNewTokens, 300);
    QCOMPARE(g.systemPrompt, QString("Be brief."));
    QCOMPARE(s.contextLimit(), 4096);
    QCOMPARE(s.value("geometry").toByteArray(), QByteArray("abc"));
  }

  void out_of_range_values_read_as_defaults() {
    const QString path = ini("damaged.ini");
    {
      QSettings raw(path, QSettings::IniFormat);
      raw.setValue("resa/block_size", -3);
      raw.setValue("resa/ratio", 5.0);
      raw.setValue("resa/min_blocks", "many");
      raw.setValue("sampling/top_p", 0.0);
      raw.setValue("sampling/temperature", "nan");
      raw.setValue("generation/mode", "turbo");
      raw.setValue("generation/max_new_tokens", 0);
    }
    Settings s(path);
    const resa::ResaParams d;
    QCOMPARE(s.resaParams().block_size, d.block_size);
    QCOMPARE(s.resaParams().ratio, d.ratio);
    QCOMPARE(s.resaParams().min_blocks, d.min_blocks);
    QCOMPARE(s.sampling().top_p, 1.0f);
    QCOMPARE(s.sampling().temperature, 0.0f);
    QCOMPARE(s.mode(), resa::DecodeMode::kResa);
    QCOMPARE(s.maxNewTokens(), Settings::defaultGeneration().maxNewTokens);
    // What it reads is always acceptable to the engine.
    resa::validate(s.resaParams());
    resa::validate(s.sampling());
  }

  void changed_fires_once_per_change() {
    Settings s(ini("signals.ini"));
    QSignalSpy spy(&s, &Settings::changed);
    s.setMode(resa::DecodeMode::kDense);
    QCOMPARE(spy.count(), 1);
    s.setMode(resa::DecodeMode::kDense);  // no change
    QCOMPARE(spy.count(), 1);
    GenerationSettings g = s.generation();
    g.resa.ratio = 0.2;
    g.maxNewTokens = 99;
    s.setGeneration(g);
    QCOMPARE(spy.count(), 2);
    QCOMPARE(s.resaParams().ratio, 0.2);
    s.resetToDefaults();
    QCOMPARE(s.resaParams().ratio, 0.1);
    QCOMPARE(s.mode(), resa::DecodeMode::kResa);
  }
};

QTEST_GUILESS_MAIN(TestSettings)
#include "test_settings.moc"
