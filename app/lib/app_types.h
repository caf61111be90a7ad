// Plain values that cross the engine thread's boundary (DESIGN.md "Layers"): what the GUI asks
// the EngineWorker for (a model to load, an answer to generate, a comparison to run) and what
// comes back (model info, live step statistics, an answer's statistics, comparison runs).
// Everything here is copyable, owns its data and is registered with QMetaType, so it travels
// through queued signals. AnswerStats and CompareResult also convert to JSON for the store.
#pragma once

#include <QByteArray>
#include <QJsonObject>
#include <QList>
#include <QMetaType>
#include <QString>
#include <QVariantMap>

#include <optional>
#include <vector>

#include "engine/resa.h"
#include "engine/sampler.h"

namespace resa::app {

// "dense", "sparse", "resa" and back; unknown names give std::nullopt.
QString modeToString(resa::DecodeMode mode);
std::optional<resa::DecodeMode> modeFromString(const QString& name);

// Everything that shapes one answer. Defaults are RESA.md's reference values.
struct GenerationSettings {
  resa::DecodeMode mode = resa::DecodeMode::kResa;
  resa::ResaParams resa;          // block_size is a property of the KV cache: changing it
                                  // re-creates the conversation's cache (a full re-prefill)
  resa::SamplingParams sampling;  // temperature 0: greedy
  int maxNewTokens = 512;
  int prefillChunk = 256;  // tokens per prefill pass (one progress signal each)
  QString systemPrompt;    // used on the first turn only
};

// Which model to load: a Hugging Face folder, or a preset's shapes with random weights.
struct ModelSource {
  QString path;        // model folder; empty when `preset` is set
  QString preset;      // "tiny", "tinyllama-1.1b", ... (engine/presets.h)
  quint64 seed = 0;    // random weights' seed (preset only)
  int threads = 0;     // CPU threads, 0: all cores
  int ctxLimit = 0;    // 0: the model's max_position_embeddings, capped to fit in memory
  QString chatFormat;  // "" : from the model; else raw, llama2, mistral, chatml, llama3, zephyr
  QString device = QStringLiteral("auto");  // "auto" (GPU when usable), "cpu", "cuda"
  QString display() const;                  // the folder or "preset tiny (seed 0)"
};

struct ModelInfo {
  QString name;     // folder name or preset name
  QString source;   // ModelSource::display()
  QString backend;  // "CPU (8 threads)" or the GPU's name
  bool gpu = false;
  QString backendNotice;  // why it runs where it does when that is not what was asked
  int ctxLimit = 0;       // tokens a conversation may hold (after the memory cap)
  int maxPositions = 0;   // the model's max_position_embeddings
  int vocabSize = 0;
  int layers = 0;
  int heads = 0;
  int kvHeads = 0;
  int headDim = 0;
  qint64 parameterCount = 0;
  qint64 weightBytes = 0;
  qint64 kvBytesPerToken = 0;  // K+V of one token over all layers
  QString chatFormat;
  bool answerStartsInThinking = false;  // a reasoning model: see splitThinking()
  QString fingerprint;                  // hex; KV snapshots are only valid for the same fingerprint
};

// One earlier message of a conversation, as the store keeps it.
struct ChatTurn {
  QString role;  // "user" or "assistant" (anything else is ignored)
  QString text;
};

struct DocumentText {
  QString name;
  QString text;
};

// What the worker does when a turn would not fit in the context.
enum class OverflowPolicy {
  kAsk,                // emit contextOverflow and stop; the GUI asks and re-sends with a choice
  kDropOldestTurns,    // drop the oldest user/assistant pairs, then the documents if needed
  kKeepDocumentPinned  // drop the oldest pairs but never the documents; error if that is not
                       // enough
};

struct GenerateRequest {
  qint64 requestId = 0;
  qint64 conversationId = 0;
  QList<DocumentText> documents;  // pinned before the first user message
  QList<ChatTurn> history;        // earlier turns, oldest first (for Regenerate: without the
                                  // answer being replaced and without its user message)
  QString userText;               // the new user message
  GenerationSettings settings;
  OverflowPolicy overflow = OverflowPolicy::kAsk;
};

// Sent instead of an answer when a turn would overflow (policy kAsk), or with an error when no
// policy can make it fit.
struct ContextOverflow {
  qint64 requestId = 0;
  qint64 conversationId = 0;
  int neededTokens = 0;                 // prompt tokens + room for the answer
  int limit = 0;                        // the context limit
  int documentTokens = 0;               // of the prompt, the documents
  int historyTokens = 0;                // of the prompt, the earlier turns
  int newTurnTokens = 0;                // of the prompt, the new user message
  int answerReserve = 0;                // room kept for the answer: min(maxNewTokens, limit / 4)
  bool fitsByDroppingTurns = false;     // kDropOldestTurns would make it fit
  bool fitsWithDocumentPinned = false;  // kKeepDocumentPinned would make it fit
};

// Sent when the worker starts an answer: how much of the context it could reuse.
struct GenerationStart {
  qint64 requestId = 0;
  qint64 conversationId = 0;
  int contextTokens = 0;  // prompt tokens, the new turn included
  int reusedTokens = 0;   // already in the KV cache (earlier turns, a snapshot)
  int droppedTurns = 0;   // by the overflow policy
  bool droppedDocuments = false;
  bool fromSnapshot = false;  // the KV came from a snapshot file this time
};

// One decode step (engine StepEvent).
struct StepSample {
  int index = 0;
  int position = 0;
  double stepMs = 0;
  qint64 kvBytesRead = 0;
  qint64 kvBytesDense = 0;
  qint64 blocksSelected = 0;
  qint64 blocksTotal = 0;
  int ctxTokens = 0;
  bool rectified = false;
};

// Live statistics, sent with the token chunks (at most ~30 per second).
struct LiveStats {
  int generatedTokens = 0;
  double ttftMs = 0;  // 0 until the first token
  double prefillTokPerS = 0;
  double decodeTokPerS = 0;    // over the last second
  double kvReadFraction = 1;   // so far in this answer; sparsity = 1 - this
  double kvBytesPerToken = 0;  // KV bytes read per decode step so far
  int ctxTokens = 0;
  int ctxLimit = 0;
  int rectifications = 0;
  qint64 kvCacheBytes = 0;
  qint64 memoryBytes = 0;        // resident memory of the process
  qint64 deviceMemoryBytes = 0;  // GPU memory held (0 on the CPU backend)
  QList<StepSample> steps;       // the steps since the previous stepStats
};

struct RectificationInfo {
  int firstPosition = 0;
  int count = 0;
  double ms = 0;
  bool folded = false;
  int stepIndex = 0;  // the decode step after which it ran
};

// A passage the answer looked at: a character range of a document or an earlier message and
// how often its KV blocks were selected (summed over layers, KV heads and steps).
struct HeatSpan {
  QString kind;   // "document" or "message"
  int index = 0;  // into GenerateRequest::documents, or into history (history.size(): the
                  // new user message)
  int charStart = 0;
  int charEnd = 0;
  double hits = 0;  // selections of the KV block holding the span (layers x heads x steps)
};

// offsets[i] = the UTF-16 index (QString position) of byte offset i of valid UTF-8 text, for i in
// 0..size: the QString length of the text's first i bytes, where a byte inside a character counts
// as past it. One pass, so that mapping many byte offsets of a long document stays linear (heat
// spans: one per KV block of up to a million bytes).
std::vector<int> utf16Offsets(const QByteArray& utf8);

// Statistics of one finished answer; stored with the message as JSON (toJson / fromJson).
struct AnswerStats {
  QString mode;
  QString model;
  QString backend;
  QString stopReason;  // "stop", "length", "context_full", "cancelled"
  int contextTokens = 0;
  int reusedTokens = 0;
  int prefillTokens = 0;
  int generatedTokens = 0;
  int decodeSteps = 0;
  int ctxLimit = 0;
  int blockSize = 0;
  double ttftMs = 0;
  double prefillMs = 0;
  double prefillTokPerS = 0;
  double decodeMs = 0;
  double decodeTokPerS = 0;
  double kvReadFraction = 1;
  double kvBytesPerToken = 0;  // KV bytes read per decode step
  qint64 kvBytesRead = 0;
  qint64 kvBytesDense = 0;
  qint64 kvCacheBytes = 0;
  qint64 memoryBytes = 0;        // resident memory of the process
  qint64 deviceMemoryBytes = 0;  // GPU memory held (0 on the CPU backend)
  qint64 blocksSelected = 0;     // equals the sum of blockHits
  int rectifications = 0;
  double rectifyMs = 0;
  QList<double> stepMs;       // per-token latency, one per decode step
  QList<int> rectifiedSteps;  // indices into stepMs of steps followed by a rectification
  QList<quint32> blockHits;   // per KV block of the context
  QList<HeatSpan> heat;       // blockHits mapped onto documents and messages

  QJsonObject toJson() const;
  static AnswerStats fromJson(const QJsonObject& json);
  QVariantMap toVariantMap() const;
};

// The Compare view: one prompt over a context, in several modes one after another.
struct CompareRequest {
  qint64 requestId = 0;
  QList<DocumentText> documents;  // the context from a conversation ...
  QList<ChatTurn> history;
  QList<int> syntheticLengths;  // ... or, when not empty, synthetic contexts of these lengths
  QString prompt;
  GenerationSettings settings;  // mode ignored
  int newTokens = 64;           // tokens generated per run (stop tokens do not end a run)
  QList<resa::DecodeMode> modes = {resa::DecodeMode::kDense, resa::DecodeMode::kSparse,
                                   resa::DecodeMode::kResa};
};

struct CompareRun {
  QString mode;
  int contextTokens = 0;
  int generatedTokens = 0;
  double prefillTokPerS = 0;
  double decodeTokPerS = 0;
  double ttftMs = 0;
  double kvReadFraction = 1;
  QList<double> stepMs;
  QList<int> rectifiedSteps;
  QJsonObject toJson() const;
  static CompareRun fromJson(const QJsonObject& json);
};

struct CompareResult {
  QString model;
  QString backend;
  QString prompt;
  QList<CompareRun> runs;  // mode-major within each context length
  QJsonObject toJson() const;
  static CompareResult fromJson(const QJsonObject& json);
};

// A reasoning model's answer (possibly partial, while streaming) split into its thinking
// (between <think> and </think>) and the answer that follows.
struct AnswerParts {
  QString thinking;
  QString answer;
  bool thinkingDone = false;  // </think> was seen
  bool hasThinking = false;   // the text has a thinking part (possibly empty so far)
};
AnswerParts splitThinking(const QString& generated, bool startsInThinking);
// splitThinking for showing a message (the stored text stays as it is). Also takes as started in
// thinking a text that closes </think> without opening it (a DeepSeek-R1 answer reloaded from the
// store, whose "<think>\n" was in the prompt) and drops a "<think>" the model wrote again. While
// `streaming`, a tag written only in part so far ("<thi", "</th") is held back, so it never
// flashes into the answer or the thinking.
AnswerParts splitThinkingForDisplay(const QString& text, bool startsInThinking, bool streaming);
// Words of a thinking text for "Thought for N words": runs of non-space characters, each Han,
// kana or Hangul character counting as one (those scripts put no spaces between words).
int thinkingWordCount(const QString& text);

void registerAppMetaTypes();  // idempotent; EngineWorker calls it

}  // namespace resa::app

Q_DECLARE_METATYPE(resa::app::GenerationSettings)
Q_DECLARE_METATYPE(resa::app::ModelSource)
Q_DECLARE_METATYPE(resa::app::ModelInfo)
Q_DECLARE_METATYPE(resa::app::GenerateRequest)
Q_DECLARE_METATYPE(resa::app::ContextOverflow)
Q_DECLARE_METATYPE(resa::app::GenerationStart)
Q_DECLARE_METATYPE(resa::app::LiveStats)
Q_DECLARE_METATYPE(resa::app::RectificationInfo)
Q_DECLARE_METATYPE(resa::app::AnswerStats)
Q_DECLARE_METATYPE(resa::app::CompareRequest)
Q_DECLARE_METATYPE(resa::app::CompareRun)
Q_DECLARE_METATYPE(resa::app::CompareResult)
