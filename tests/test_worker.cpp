// The engine thread (app/lib/engine_worker.h) with the committed small model: tokens arrive as
// queued signals in order, cancel stops within one step, the mode reaches the engine, resa mode
// reports statistics and rectifications, block-selection counts add up, the KV cache is reused
// across turns and restored from a snapshot after a restart, overflow asks before dropping.
#include <QtTest>

#include <QElapsedTimer>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>

#include <atomic>
#include <numeric>

#include "app/lib/engine_worker.h"
#include "tests/support/test_support.h"

using namespace resa::app;

namespace {

const QString kStory = QStringLiteral(
    "The lighthouse keeper wrote in his log every evening: the wind, the sea, the ships that "
    "passed and the ones that did not. In the winter of the long storm he counted forty days "
    "without a single sail, and he began to write down what he remembered instead. ");

// Everything one request produced, in arrival order.
struct Outcome {
  QStringList chunks;
  QString text;
  AnswerStats stats;
  GenerationStart start;
  QList<RectificationInfo> rectifications;
  QList<LiveStats> live;
  QList<int> prefill;
  QString error;
  std::optional<ContextOverflow> overflow;
  bool done = false;
  bool finishedAfterChunks = true;
};

GenerationSettings settings(resa::DecodeMode mode, int maxNew) {
  GenerationSettings s;
  s.mode = mode;
  s.maxNewTokens = maxNew;
  s.resa.min_blocks = 2;  // short test contexts still skip blocks
  s.resa.rectify_every = 4;
  return s;
}

}  // namespace

class TestWorker : public QObject {
  Q_OBJECT

  std::unique_ptr<EngineThread> engine_;
  QTemporaryDir dir_;
  QMap<qint64, Outcome> outcomes_;
  QList<QString> notices_;

  static ModelSource fixtureModel(int ctx = 0) {
    ModelSource s;
    s.path = QString::fromStdString(resa::test::fixture("models/llama-gqa").string());
    s.threads = 1;  // a tiny model: threads only add synchronisation
    s.device = "cpu";
    s.ctxLimit = ctx;
    return s;
  }

  void startEngine(const ModelSource& source, const QString& snapshots = {}) {
    engine_ = std::make_unique<EngineThread>();
    EngineWorker* w = engine_->worker();
    connect(w, &EngineWorker::generationStarted, this,
            [this](const GenerationStart& s) { outcomes_[s.requestId].start = s; });
    connect(w, &EngineWorker::tokenChunk, this, [this](qint64 id, const QString& t) {
      if (outcomes_[id].done) outcomes_[id].finishedAfterChunks = false;
      outcomes_[id].chunks << t;
    });
    connect(w, &EngineWorker::prefillProgress, this,
            [this](qint64 id, int done, int) { outcomes_[id].prefill << done; });
    connect(w, &EngineWorker::stepStats, this,
            [this](qint64 id, const LiveStats& s) { outcomes_[id].live << s; });
    connect(w, &EngineWorker::rectification, this,
            [this](qint64 id, const RectificationInfo& r) { outcomes_[id].rectifications << r; });
    connect(w, &EngineWorker::finished, this,
            [this](qint64 id, const QString& text, const AnswerStats& s) {
              Outcome& o = outcomes_[id];
              o.text = text;
              o.stats = s;
              o.done = true;
            });
    connect(w, &EngineWorker::error, this, [this](qint64 id, const QString& m) {
      outcomes_[id].error = m;
      outcomes_[id].done = true;
    });
    connect(w, &EngineWorker::contextOverflow, this, [this](const ContextOverflow& o) {
      outcomes_[o.requestId].overflow = o;
      outcomes_[o.requestId].done = true;
    });
    connect(w, &EngineWorker::snapshotNotice, this,
            [this](qint64, const QString& m) { notices_ << m; });
    if (!snapshots.isEmpty()) engine_->setSnapshotDirectory(snapshots);
    QSignalSpy loaded(w, &EngineWorker::modelLoaded);
    QSignalSpy failed(w, &EngineWorker::modelLoadFailed);
    engine_->loadModel(source);
    QTRY_VERIFY_WITH_TIMEOUT(loaded.count() + failed.count() == 1, 20000);
    QVERIFY2(failed.isEmpty(), failed.isEmpty() ? "" : qPrintable(failed[0][0].toString()));
    const ModelInfo info = loaded[0][0].value<ModelInfo>();
    QVERIFY(info.backend.startsWith("CPU"));
    if (source.preset.isEmpty()) QCOMPARE(info.layers, 3);
    QVERIFY(info.ctxLimit > 0);
  }

  GenerateRequest request(qint64 conv, const QString& text, const GenerationSettings& s,
                          const QList<ChatTurn>& history = {},
                          const QList<DocumentText>& docs = {}) {
    GenerateRequest r;
    r.requestId = engine_->nextRequestId();
    r.conversationId = conv;
    r.userText = text;
    r.settings = s;
    r.history = history;
    r.documents = docs;
    return r;
  }

  Outcome run(const GenerateRequest& r) {
    engine_->generate(r);
    if (!QTest::qWaitFor([&] { return outcomes_[r.requestId].done; }, 30000)) return {};
    return outcomes_.take(r.requestId);
  }

 private slots:
  void initTestCase() {
    QVERIFY(dir_.isValid());
    startEngine(fixtureModel());
  }

  void tokens_arrive_as_signals_in_order() {
    const Outcome o =
        run(request(1, "Tell me about the sea.", settings(resa::DecodeMode::kDense, 40)));
    QVERIFY2(o.error.isEmpty(), qPrintable(o.error));
    QVERIFY(o.stats.generatedTokens > 0);
    QVERIFY(!o.chunks.isEmpty());
    QCOMPARE(o.chunks.join(QString()), o.text);  // in order, nothing lost or repeated
    QVERIFY(o.finishedAfterChunks);
    // Batched: never more signals than tokens, and a finished answer has its statistics.
    QVERIFY(o.chunks.size() <= o.stats.generatedTokens);
    QCOMPARE(o.stats.mode, QString("dense"));
    QCOMPARE(o.stats.stepMs.size(), o.stats.decodeSteps);
    QVERIFY(o.stats.ttftMs > 0);
    QVERIFY(o.stats.prefillTokPerS > 0);
    QVERIFY(o.stats.memoryBytes > 0);
    QVERIFY(!o.live.isEmpty());
    QCOMPARE(o.prefill.last(), o.stats.prefillTokens);
  }

  void cancel_stops_within_one_step() {
    // Decode: cancel from the worker thread at the first statistics signal, then count steps.
    std::atomic<int> seenAtCancel{-1};
    GenerateRequest r = request(2, "Write a very long story about ships.",
                                settings(resa::DecodeMode::kSparse, 2000));
    EngineWorker* w = engine_->worker();
    auto c = connect(
        w, &EngineWorker::stepStats, w,
        [&, id = r.requestId](qint64 rid, const LiveStats& s) {
          if (rid == id && seenAtCancel < 0) {
            seenAtCancel = s.generatedTokens;
            w->cancel(id);
          }
        },
        Qt::DirectConnection);
    const Outcome o = run(r);
    disconnect(c);
    QVERIFY2(o.error.isEmpty(), qPrintable(o.error));
    QCOMPARE(o.stats.stopReason, QString("cancelled"));
    QVERIFY(seenAtCancel > 0);
    QVERIFY2(o.stats.generatedTokens <= seenAtCancel + 1,
             qPrintable(QStringLiteral("%1 tokens after cancel at %2")
                            .arg(o.stats.generatedTokens)
                            .arg(int(seenAtCancel))));
    QCOMPARE(o.chunks.join(QString()), o.text);

    // Prefill: a long document in chunks of 8 tokens, cancelled at the first progress signal.
    GenerationSettings s = settings(resa::DecodeMode::kDense, 10);
    s.prefillChunk = 8;
    GenerateRequest p = request(3, "Summarise.", s, {}, {{"story.txt", kStory.repeated(6)}});
    auto c2 = connect(
        w, &EngineWorker::prefillProgress, w,
        [w, id = p.requestId](qint64 rid, int, int) {
          if (rid == id) w->cancel(id);
        },
        Qt::DirectConnection);
    const Outcome po = run(p);
    disconnect(c2);
    QCOMPARE(po.stats.stopReason, QString("cancelled"));
    QCOMPARE(po.stats.generatedTokens, 0);
    QCOMPARE(po.stats.prefillTokens, 0);  // cancelled at the first progress signal (0 done)

    // Before it starts: a queued request cancelled from this thread never runs.
    GenerateRequest q = request(4, "Never mind.", settings(resa::DecodeMode::kDense, 10));
    engine_->cancel(q.requestId);
    const Outcome qo = run(q);
    QCOMPARE(qo.stats.stopReason, QString("cancelled"));
    QCOMPARE(qo.stats.generatedTokens, 0);

    // The conversation cancelled in its prefill answers normally afterwards.
    const Outcome again = run(request(3, "Summarise.", settings(resa::DecodeMode::kDense, 5), {},
                                      {{"story.txt", kStory.repeated(6)}}));
    QVERIFY2(again.error.isEmpty(), qPrintable(again.error));
    QVERIFY(again.stats.generatedTokens > 0);
  }

  void mode_switch_reaches_the_engine() {
    const QList<DocumentText> docs{{"story.txt", kStory.repeated(3)}};
    const Outcome dense =
        run(request(5, "What did he count?", settings(resa::DecodeMode::kDense, 8), {}, docs));
    QCOMPARE(dense.stats.mode, QString("dense"));
    QCOMPARE(dense.stats.kvReadFraction, 1.0);
    QCOMPARE(dense.stats.blocksSelected, 0);
    const QList<ChatTurn> history{{"user", "What did he count?"}, {"assistant", dense.text}};
    const Outcome sparse =
        run(request(5, "And then?", settings(resa::DecodeMode::kSparse, 8), history, docs));
    QCOMPARE(sparse.stats.mode, QString("sparse"));
    QVERIFY2(sparse.stats.kvReadFraction < 0.9,
             qPrintable(QString::number(sparse.stats.kvReadFraction)));
    QVERIFY(sparse.stats.blocksSelected > 0);
    QCOMPARE(sparse.stats.rectifications, 0);
    // Switching the mode keeps the KV cache: the document was not read again.
    QVERIFY(sparse.start.reusedTokens >= dense.stats.contextTokens);
  }

  void resa_mode_reports_statistics_and_rectifications() {
    const QList<DocumentText> docs{{"story.txt", kStory.repeated(3)}};
    const Outcome o =
        run(request(6, "Tell me everything.", settings(resa::DecodeMode::kResa, 30), {}, docs));
    QVERIFY2(o.error.isEmpty(), qPrintable(o.error));
    QCOMPARE(o.stats.mode, QString("resa"));
    QVERIFY2(o.stats.decodeSteps >= 8, "the answer is too short to rectify");
    QVERIFY(o.stats.rectifications >= 2);
    QCOMPARE(o.rectifications.size(), o.stats.rectifications);
    QCOMPARE(o.stats.rectifiedSteps.size(), o.stats.rectifications);
    for (const RectificationInfo& r : o.rectifications) {
      QCOMPARE(r.count, 4);
      QVERIFY(r.ms >= 0);
    }
    QVERIFY(o.rectifications[1].firstPosition > o.rectifications[0].firstPosition);
    QVERIFY(!o.live.isEmpty());
    int steps = 0;
    for (const LiveStats& l : o.live) steps += l.steps.size();
    QCOMPARE(steps, o.stats.decodeSteps);
    const LiveStats& last = o.live.last();
    QCOMPARE(last.rectifications, o.stats.rectifications);
    QVERIFY(last.kvReadFraction < 1.0);
    QVERIFY(last.kvBytesPerToken > 0);
    QVERIFY(last.ctxTokens > o.stats.contextTokens);
    QCOMPARE(last.ctxLimit, o.stats.ctxLimit);
    QVERIFY(o.stats.kvBytesPerToken > 0);
    QVERIFY(o.stats.kvCacheBytes > 0);
  }

  void block_selection_counts_sum_to_what_was_read() {
    const QList<DocumentText> docs{{"story.txt", kStory.repeated(3)}};
    for (resa::DecodeMode mode : {resa::DecodeMode::kSparse, resa::DecodeMode::kResa}) {
      const Outcome o = run(request(7 + int(mode), "Which days?", settings(mode, 12), {}, docs));
      QVERIFY(o.stats.blocksSelected > 0);
      const qint64 sum =
          std::accumulate(o.stats.blockHits.begin(), o.stats.blockHits.end(), qint64(0));
      QCOMPARE(sum, o.stats.blocksSelected);
      QCOMPARE(o.stats.blockHits.size(), (o.stats.contextTokens + o.stats.decodeSteps + 15) / 16);
      // The sink block is read at every sparse step of every layer and KV head: every decode
      // step but the folded rectifications (dense passes).
      qint64 folded = 0;
      for (const RectificationInfo& r : o.rectifications) folded += r.folded ? 1 : 0;
      QVERIFY(mode != resa::DecodeMode::kResa || folded > 0);
      QCOMPARE(qint64(o.stats.blockHits[0]), qint64(3 * 2) * (o.stats.decodeSteps - folded));
      // The heat map points into the document.
      bool onDocument = false;
      for (const HeatSpan& h : o.stats.heat) {
        QVERIFY(h.charEnd > h.charStart && h.hits > 0);
        if (h.kind == "document") {
          onDocument = true;
          QCOMPARE(h.index, 0);
          QVERIFY(h.charEnd <= docs[0].text.size());
        }
      }
      QVERIFY(onDocument);
    }
  }

  // Heat spans map KV blocks (byte ranges of the rendered text) to QString positions: every
  // character width, positions inside a character, and one pass for a long document (the
  // worker used to decode each span's prefix: about 5 s for a 1 MB document's 15,625 spans).
  void heat_span_offsets_are_utf16_positions_in_one_pass() {
    const QByteArray text = QString::fromUtf8(
                                "a\xc3\xa9"
                                "b\xe2\x82\xac"
                                "c\xf0\x9f\x98\x80"
                                "d")
                                .toUtf8();
    const std::vector<int> off = utf16Offsets(text);
    QCOMPARE(off.size(), size_t(text.size()) + 1);
    const std::vector<int> starts{0, 1, 3, 4, 7, 8, 12, 13};  // the characters' first bytes
    for (int i : starts) QCOMPARE(off[size_t(i)], int(QString::fromUtf8(text.left(i)).size()));
    QCOMPARE(off.back(), int(QString::fromUtf8(text).size()));
    QCOMPARE(off[2], 2);  // inside é: past it
    QCOMPARE(off[5], 4);  // inside €
    QCOMPARE(off[6], 4);
    QCOMPARE(off[9], 7);  // inside the emoji: past its surrogate pair
    QCOMPARE(off[11], 7);
    QByteArray big;
    while (big.size() < 4'000'000)
      big += "Long documents make decoding slow; caf\xc3\xa9 \xe2\x82\xac 1. ";
    QElapsedTimer t;
    t.start();
    const std::vector<int> bigOff = utf16Offsets(big);
    const qint64 ms = t.elapsed();
    QCOMPARE(bigOff.back(), int(QString::fromUtf8(big).size()));
    QVERIFY2(ms < 500, qPrintable(QStringLiteral("%1 ms for 4 MB").arg(ms)));
  }

  // An answer's heat spans survive its record: grouped by passage as numbers, a 1 MB document's
  // 15,625 spans take a fraction of their size as objects; records written as objects still read.
  void answer_heat_round_trips_compactly_and_old_records_still_read() {
    AnswerStats a;
    a.mode = QStringLiteral("resa");
    QJsonArray legacy;
    auto add = [&](const QString& kind, int index, int start, int end, double hits) {
      a.heat.append(HeatSpan{kind, index, start, end, hits});
      legacy.append(QJsonObject{
          {"kind", kind}, {"index", index}, {"start", start}, {"end", end}, {"hits", hits}});
    };
    for (int b = 0; b < 15'625; ++b)
      add(QStringLiteral("document"), 0, b * 64, b * 64 + 64, double(b % 97 + 1));
    add(QStringLiteral("message"), 2, 0, 40, 3);
    add(QStringLiteral("message"), 2, 40, 75, 1.5);
    add(QStringLiteral("document"), 1, 10, 20, 7);
    const QJsonObject j = a.toJson();
    const AnswerStats b = AnswerStats::fromJson(j);
    QCOMPARE(b.heat.size(), a.heat.size());
    for (qsizetype i = 0; i < a.heat.size(); ++i) {
      QCOMPARE(b.heat[i].kind, a.heat[i].kind);
      QCOMPARE(b.heat[i].index, a.heat[i].index);
      QCOMPARE(b.heat[i].charStart, a.heat[i].charStart);
      QCOMPARE(b.heat[i].charEnd, a.heat[i].charEnd);
      QCOMPARE(b.heat[i].hits, a.heat[i].hits);
    }
    QJsonObject old = j;
    old.remove(QStringLiteral("heat_spans"));
    old[QStringLiteral("heat")] = legacy;
    const qsizetype compact = QJsonDocument(j).toJson(QJsonDocument::Compact).size();
    const qsizetype objects = QJsonDocument(old).toJson(QJsonDocument::Compact).size();
    qInfo("heat of 15,628 spans: %lld bytes of JSON, %lld as objects", qint64(compact),
          qint64(objects));
    QVERIFY2(compact * 3 < objects,
             qPrintable(QStringLiteral("%1 against %2 bytes").arg(compact).arg(objects)));
    const AnswerStats c = AnswerStats::fromJson(old);
    QCOMPARE(c.heat.size(), a.heat.size());
    QCOMPARE(c.heat.last().kind, QStringLiteral("document"));
    QCOMPARE(c.heat.last().index, 1);
    QCOMPARE(c.heat[15'626].hits, 1.5);
  }

  void continuing_a_chat_prefills_only_the_new_turn() {
    const QList<DocumentText> docs{{"story.txt", kStory.repeated(3)}};
    const GenerationSettings s = settings(resa::DecodeMode::kDense, 6);
    const Outcome first = run(request(10, "Who wrote the log?", s, {}, docs));
    QCOMPARE(first.start.reusedTokens, 0);
    QList<ChatTurn> history{{"user", "Who wrote the log?"}, {"assistant", first.text}};
    const Outcome second = run(request(10, "When?", s, history, docs));
    const int reused = second.start.reusedTokens;
    QVERIFY(reused >= first.stats.contextTokens);
    QCOMPARE(second.stats.prefillTokens, second.stats.contextTokens - reused);
    QVERIFY2(second.stats.prefillTokens < first.stats.contextTokens / 4,
             qPrintable(QStringLiteral("%1 of %2")
                            .arg(second.stats.prefillTokens)
                            .arg(second.stats.contextTokens)));

    // Regenerate: the same history without the answer reuses everything before it.
    const Outcome again = run(request(10, "When?", s, history, docs));
    QCOMPARE(again.text, second.text);  // greedy
    QVERIFY(again.start.reusedTokens >= reused - 1);

    // Another block size is another KV layout: everything is processed again.
    GenerationSettings b32 = s;
    b32.resa.block_size = 32;
    const Outcome rebuilt = run(request(10, "When?", b32, history, docs));
    QCOMPARE(rebuilt.start.reusedTokens, 0);
    QCOMPARE(rebuilt.stats.prefillTokens, rebuilt.stats.contextTokens);
    QCOMPARE(rebuilt.stats.blockSize, 32);
  }

  void overflow_asks_first_and_then_follows_the_policy() {
    // A fresh engine with a 320-token context.
    const QList<DocumentText> docs{{"story.txt", kStory}};
    auto saved = std::move(engine_);
    startEngine(fixtureModel(320));
    const GenerationSettings s = settings(resa::DecodeMode::kDense, 40);
    QList<ChatTurn> history;
    for (int i = 0; i < 6; ++i)
      history << ChatTurn{"user",
                          QStringLiteral("Question %1 about the keeper and his log?").arg(i)}
              << ChatTurn{"assistant", QStringLiteral("Answer %1: he wrote about the sea.").arg(i)};
    const Outcome asked = run(request(11, "And the ships?", s, history, docs));
    QVERIFY(asked.overflow.has_value());
    QVERIFY(asked.text.isEmpty() && asked.error.isEmpty());
    const ContextOverflow& o = *asked.overflow;
    QCOMPARE(o.limit, 320);
    QVERIFY(o.neededTokens > o.limit);
    QVERIFY(o.documentTokens > 0 && o.historyTokens > 0 && o.newTurnTokens > 0);
    QCOMPARE(o.answerReserve, 40);
    QVERIFY(o.fitsWithDocumentPinned);

    GenerateRequest pinned = request(11, "And the ships?", s, history, docs);
    pinned.overflow = OverflowPolicy::kKeepDocumentPinned;
    const Outcome answered = run(pinned);
    QVERIFY2(answered.error.isEmpty(), qPrintable(answered.error));
    QVERIFY(answered.start.droppedTurns > 0);
    QVERIFY(!answered.start.droppedDocuments);
    QVERIFY(answered.stats.contextTokens + 40 <= 320);

    // A document that cannot fit with it pinned is an error naming the numbers, not a cut.
    GenerateRequest huge = request(12, "Summarise.", s, {}, {{"big.txt", kStory.repeated(8)}});
    huge.overflow = OverflowPolicy::kKeepDocumentPinned;
    const Outcome refused = run(huge);
    QVERIFY(refused.error.contains("320"));
    QVERIFY(refused.stats.generatedTokens == 0);
    // Allowed to drop the document too, it answers without it and says so.
    huge.requestId = engine_->nextRequestId();
    huge.overflow = OverflowPolicy::kDropOldestTurns;
    const Outcome withoutDoc = run(huge);
    QVERIFY2(withoutDoc.error.isEmpty(), qPrintable(withoutDoc.error));
    QVERIFY(withoutDoc.start.droppedDocuments);
    QVERIFY(withoutDoc.stats.generatedTokens > 0);
    engine_ = std::move(saved);
  }

  void engine_errors_arrive_as_error_signals() {
    GenerationSettings bad = settings(resa::DecodeMode::kSparse, 5);
    bad.resa.ratio = 0.0;
    const Outcome o = run(request(13, "Hi", bad));
    QVERIFY(!o.error.isEmpty());
    QVERIFY2(o.error.contains("ratio"), qPrintable(o.error));
    // The worker goes on serving.
    const Outcome ok = run(request(13, "Hi", settings(resa::DecodeMode::kDense, 3)));
    QVERIFY2(ok.error.isEmpty(), qPrintable(ok.error));

    auto saved = std::move(engine_);
    engine_ = std::make_unique<EngineThread>();
    connect(engine_->worker(), &EngineWorker::error, this, [this](qint64 id, const QString& m) {
      outcomes_[id].error = m;
      outcomes_[id].done = true;
    });
    QSignalSpy failed(engine_->worker(), &EngineWorker::modelLoadFailed);
    ModelSource missing;
    missing.path = dir_.filePath("no-such-model");
    engine_->loadModel(missing);
    QTRY_COMPARE_WITH_TIMEOUT(failed.count(), 1, 10000);
    QVERIFY2(failed[0][0].toString().contains("no-such-model"),
             qPrintable(failed[0][0].toString()));
    const Outcome none = run(request(14, "Hi", settings(resa::DecodeMode::kDense, 3)));
    QVERIFY(none.error.contains("No model"));
    engine_ = std::move(saved);
  }

  void gui_thread_stays_responsive_while_generating() {
    GenerateRequest r =
        request(15, "A long answer, please.", settings(resa::DecodeMode::kResa, 400));
    r.documents = {{"story.txt", kStory.repeated(4)}};
    QElapsedTimer gap;
    qint64 worst = 0;
    QTimer tick;
    tick.setInterval(5);
    connect(&tick, &QTimer::timeout, this, [&] { worst = std::max(worst, gap.restart()); });
    gap.start();
    tick.start();
    const Outcome o = run(r);
    tick.stop();
    QVERIFY(o.stats.generatedTokens > 0);
    QVERIFY2(worst < 50, qPrintable(QStringLiteral("event loop blocked for %1 ms").arg(worst)));
  }

  void snapshot_restores_the_context_after_a_restart() {
    const QString snapshots = dir_.filePath("snapshots");
    const QList<DocumentText> docs{{"story.txt", kStory.repeated(3)}};
    const GenerationSettings s = settings(resa::DecodeMode::kResa, 10);
    auto saved = std::move(engine_);
    startEngine(fixtureModel(), snapshots);
    QMetaObject::invokeMethod(engine_->worker(),
                              [w = engine_->worker()] { w->setSnapshotMinTokens(0); });
    const Outcome first = run(request(20, "Who kept the log?", s, {}, docs));
    QVERIFY(QTest::qWaitFor([&] { return QFile::exists(snapshots + "/conversation-20.resakv"); },
                            5000));
    const QList<ChatTurn> history{{"user", "Who kept the log?"}, {"assistant", first.text}};

    // "Restart": a new engine finds the snapshot and reads only the new turn.
    startEngine(fixtureModel(), snapshots);
    const Outcome restored = run(request(20, "Why?", s, history, docs));
    QVERIFY2(restored.start.fromSnapshot, qPrintable(notices_.join('\n')));
    QVERIFY(restored.start.reusedTokens >= first.stats.contextTokens);
    QVERIFY2(restored.stats.prefillTokens < first.stats.contextTokens / 4,
             qPrintable(QStringLiteral("%1 of %2")
                            .arg(restored.stats.prefillTokens)
                            .arg(restored.stats.contextTokens)));

    // The answer equals the one of a conversation that never left memory.
    startEngine(fixtureModel());
    const Outcome firstAgain = run(request(21, "Who kept the log?", s, {}, docs));
    QCOMPARE(firstAgain.text, first.text);
    const Outcome inMemory = run(request(21, "Why?", s, history, docs));
    QCOMPARE(inMemory.start.reusedTokens, restored.start.reusedTokens);
    QCOMPARE(restored.text, inMemory.text);
    QCOMPARE(restored.stats.rectifications, inMemory.stats.rectifications);
    QCOMPARE(restored.stats.blockHits, inMemory.stats.blockHits);

    // Another model refuses the snapshot with a reason and re-processes.
    ModelSource tiny;
    tiny.preset = "tiny";
    tiny.threads = 1;
    tiny.device = "cpu";
    tiny.ctxLimit = 2048;
    notices_.clear();
    startEngine(tiny, snapshots);
    const Outcome other = run(request(20, "Why?", s, history, docs));
    QVERIFY2(other.error.isEmpty(), qPrintable(other.error));
    QVERIFY(!other.start.fromSnapshot);
    QCOMPARE(other.start.reusedTokens, 0);
    QVERIFY2(notices_.size() == 1 && notices_[0].contains("another model") &&
                 notices_[0].contains("Re-processing"),
             qPrintable(notices_.join('\n')));
    engine_ = std::move(saved);
  }

  void compare_runs_every_mode_per_context_length() {
    CompareRequest r;
    r.requestId = engine_->nextRequestId();
    r.syntheticLengths = {96, 192};
    r.prompt = "Continue.";
    r.settings = settings(resa::DecodeMode::kResa, 0);
    r.newTokens = 12;
    QSignalSpy progress(engine_->worker(), &EngineWorker::compareProgress);
    QSignalSpy done(engine_->worker(), &EngineWorker::compareFinished);
    engine_->compare(r);
    QTRY_COMPARE_WITH_TIMEOUT(done.count(), 1, 30000);
    QCOMPARE(progress.count(), 6);
    const CompareResult result = done[0][1].value<CompareResult>();
    QCOMPARE(result.runs.size(), 6);
    const QStringList modes{"dense", "sparse", "resa"};
    for (int i = 0; i < 6; ++i) {
      const CompareRun& run = result.runs[i];
      QCOMPARE(run.mode, modes[i % 3]);
      QCOMPARE(run.generatedTokens, 12);  // stop tokens do not shorten a run
      QVERIFY(run.stepMs.size() >= 1 && run.stepMs.size() < 12);
      QVERIFY(run.decodeTokPerS > 0);
      QVERIFY(run.contextTokens >= (i < 3 ? 96 : 192));
    }
    QCOMPARE(result.runs[0].kvReadFraction, 1.0);
    QVERIFY(result.runs[4].kvReadFraction < 1.0);
    QVERIFY(!result.runs[2].rectifiedSteps.isEmpty());
    // JSON round trip for the store.
    QCOMPARE(CompareResult::fromJson(result.toJson()).runs[5].stepMs, result.runs[5].stepMs);
  }

  void cleanupTestCase() { engine_.reset(); }
};

QTEST_GUILESS_MAIN(TestWorker)
#include "test_worker.moc"
