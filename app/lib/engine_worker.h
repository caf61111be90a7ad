// The engine thread (DESIGN.md "Layers", STYLE.md 5): EngineWorker owns the resa::Model and one
// resa::Conversation per conversation id and lives on its own QThread. Everything else talks
// to it through queued calls and signals carrying plain values (app_types.h) and a request id;
// engine exceptions become error signals at this boundary. EngineThread owns the QThread and
// the worker and offers non-blocking calls for the GUI thread.
//
// Every generate request ends with exactly one of: finished, error, or contextOverflow (policy
// kAsk; with another policy that cannot make the turn fit, error). A conversation's KV cache is
// kept across turns: the worker compares the request's documents + history with what the cache
// holds and prefills only what differs (Regenerate and Edit-and-resend reuse everything before the
// changed turn). Changing the block size, or dropping turns to fit the context, re-creates the
// cache. With a snapshot folder set, the KV cache of a conversation is saved after each answer
// (from snapshotMinTokens tokens on) and reloaded on the next request after a restart; a snapshot
// that does not match the model or settings, or is damaged, is refused (snapshotNotice) and the
// context is re-processed.
#pragma once

#include <QObject>
#include <QString>
#include <QThread>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "app/lib/app_types.h"

namespace resa {
class Model;
}

namespace resa::app {

class EngineWorker : public QObject {
  Q_OBJECT

 public:
  explicit EngineWorker(QObject* parent = nullptr);
  ~EngineWorker() override;

  // Thread-safe, callable from any thread while the worker is busy: stops the request within
  // one engine step (prefill chunk or decode step), or drops it if it has not started. The
  // request then finishes normally with stopReason "cancelled" and the text so far.
  void cancel(qint64 requestId);
  void cancelAll();

  // Token chunks and live statistics are batched: at most one of each per this interval.
  void setSignalIntervalMs(int ms) { signalIntervalMs_ = ms; }  // thread-safe

 public slots:
  void loadModel(const resa::app::ModelSource& source);
  void unloadModel();
  void generate(const resa::app::GenerateRequest& request);
  void compare(const resa::app::CompareRequest& request);
  // Tokens of `text` with the loaded model's tokenizer (a document's size); answered by
  // tokensCounted, -1 without a model. Queued behind a running answer.
  void countTokens(qint64 requestId, const QString& text);
  // Forgets a conversation's KV cache and its snapshot file (conversation deleted).
  void forgetConversation(qint64 conversationId);
  // Where KV snapshots go (one file per conversation); empty disables them.
  void setSnapshotDirectory(const QString& dir);
  void setSnapshotMinTokens(int tokens);
  // Writes the snapshot of one conversation now (e.g. before quitting).
  void saveSnapshot(qint64 conversationId);

 signals:
  void modelLoading(const QString& what, double fraction);  // fraction < 0: unknown
  void modelLoaded(const resa::app::ModelInfo& info);
  void modelLoadFailed(const QString& message);
  // A device fault: the engine is unusable until a model is loaded again.
  void engineFailed(const QString& message);

  void generationStarted(const resa::app::GenerationStart& start);
  void prefillProgress(qint64 requestId, int done, int total);
  void tokenChunk(qint64 requestId, const QString& text);
  void stepStats(qint64 requestId, const resa::app::LiveStats& stats);
  void rectification(qint64 requestId, const resa::app::RectificationInfo& info);
  void contextOverflow(const resa::app::ContextOverflow& overflow);
  void finished(qint64 requestId, const QString& text, const resa::app::AnswerStats& stats);
  void error(qint64 requestId, const QString& message);
  void tokensCounted(qint64 requestId, int tokens);

  void compareProgress(qint64 requestId, const resa::app::CompareRun& run, int done, int total);
  void compareFinished(qint64 requestId, const resa::app::CompareResult& result);

  // Snapshot saved / loaded / refused (with the reason and "re-processing the context").
  void snapshotNotice(qint64 conversationId, const QString& message);

 private:
  struct ConvState;
  struct Segment;
  class Run;

  bool takeCancelled(qint64 requestId);  // else marks it the current request
  void endRequest();
  bool ensureModel(qint64 requestId);
  void handleFailure(qint64 requestId, qint64 conversationId, const std::exception& e);
  ConvState& stateFor(qint64 conversationId, int blockSize);
  QString snapshotPath(qint64 conversationId) const;
  void trySnapshotRestore(qint64 conversationId, ConvState& state);
  void writeSnapshot(qint64 conversationId, ConvState& state, bool force);
  std::vector<Segment> buildSegments(const GenerateRequest& r, ConvState* cached, int droppedTurns,
                                     bool dropDocuments) const;
  QList<HeatSpan> heatSpans(const std::vector<Segment>& segs, const QList<quint32>& hits,
                            int blockSize) const;

  std::unique_ptr<resa::Model> model_;
  ModelInfo info_;
  ModelSource source_;
  std::string identity_;
  std::map<qint64, std::unique_ptr<ConvState>> conversations_;
  QString snapshotDir_;
  int snapshotMinTokens_ = 512;
  std::atomic<int> signalIntervalMs_{33};

  std::atomic<bool> cancelFlag_{false};
  std::atomic<qint64> currentRequest_{0};
  std::mutex cancelMutex_;
  std::set<qint64> cancelledEarly_;
  bool dropQueued_ = false;  // cancelAll(): drop the requests queued before it
};

// Owns the engine thread. Calls return at once; results arrive as worker() signals on the
// caller's thread (queued). Destroying it cancels what runs and joins the thread.
class EngineThread : public QObject {
  Q_OBJECT

 public:
  explicit EngineThread(QObject* parent = nullptr);
  ~EngineThread() override;

  EngineWorker* worker() const { return worker_; }
  qint64 nextRequestId() { return ++lastRequestId_; }

  void loadModel(const ModelSource& source);
  void generate(const GenerateRequest& request);
  void compare(const CompareRequest& request);
  void countTokens(qint64 requestId, const QString& text);
  void cancel(qint64 requestId) { worker_->cancel(requestId); }
  void forgetConversation(qint64 conversationId);
  void setSnapshotDirectory(const QString& dir);
  void saveSnapshot(qint64 conversationId);

 private:
  QThread thread_;
  EngineWorker* worker_ = nullptr;
  std::atomic<qint64> lastRequestId_{0};
};

}  // namespace resa::app
