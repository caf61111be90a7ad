#include "app/lib/engine_worker.h"

#include <QDir>
#include <QDirIterator>
#include <QElapsedTimer>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QMetaObject>

#include <unistd.h>
#include <algorithm>
#include <cstdio>
#include <deque>

#include "engine/chat_format.h"
#include "engine/conversation.h"
#include "engine/error.h"
#include "engine/kv_snapshot.h"
#include "engine/model.h"
#include "engine/presets.h"

namespace resa::app {

namespace {

QString qs(const std::string& s) { return QString::fromStdString(s); }
QString qs(std::string_view s) { return QString::fromUtf8(s.data(), qsizetype(s.size())); }

qint64 residentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  long pages = 0, resident = 0;
  const int got = std::fscanf(f, "%ld %ld", &pages, &resident);
  std::fclose(f);
  return got == 2 ? qint64(resident) * sysconf(_SC_PAGESIZE) : 0;
}

std::string identityOf(const ModelSource& s) {
  if (!s.preset.isEmpty())
    return "preset:" + s.preset.toStdString() + ":seed" + std::to_string(s.seed);
  // The folder, and size + time of every weight file: a replaced checkpoint is another model.
  QString id = QFileInfo(s.path).canonicalFilePath();
  QDir dir(s.path);
  const QFileInfoList files =
      dir.entryInfoList({"*.safetensors", "config.json"}, QDir::Files, QDir::Name);
  for (const QFileInfo& f : files)
    id += QStringLiteral("|%1:%2:%3")
              .arg(f.fileName())
              .arg(f.size())
              .arg(f.lastModified().toMSecsSinceEpoch());
  return id.toStdString();
}

// Sparse steps select blocks; dense decode and rectification passes do not count.
void addRectifiedStep(AnswerStats& s, int stepIndex) {
  if (s.rectifiedSteps.isEmpty() || s.rectifiedSteps.last() != stepIndex)
    s.rectifiedSteps.append(stepIndex);
}

}  // namespace

// A part of the rendered context whose text the heat map refers to.
struct Piece {
  QString kind;  // "document" or "message"
  int index = 0;
  size_t byteStart = 0;  // in Segment::rendered
  size_t byteEnd = 0;
};

// One turn of the context as tokens: the first user turn (with the documents), a later user
// turn, or an answer.
struct EngineWorker::Segment {
  char kind = 'U';  // 'U' user turn, 'A' answer
  uint64_t key = 0;
  std::string rendered;
  std::vector<Piece> pieces;
  std::vector<int> tokens;
  bool reused = false;
};

struct EngineWorker::ConvState {
  std::unique_ptr<resa::Conversation> conv;
  std::vector<Segment> segments;  // what conv->tokens() holds, in order
  int blockSize = 0;
  bool snapshotTried = false;
  bool fromSnapshot = false;
  bool dirtySinceSnapshot = false;
};

// The event sink of one request: batches tokens and statistics into signals.
class EngineWorker::Run {
 public:
  Run(EngineWorker* w, qint64 id, int ctxLimit) : w_(w), id_(id), ctxLimit_(ctxLimit) {
    sinceEmit_.start();
    clock_.start();
  }

  void operator()(const resa::Event& e) {
    if (const auto* t = std::get_if<resa::TokenEvent>(&e)) {
      if (!t->text.empty()) pendingText_ += t->text;
      ++live_.generatedTokens;
      if (live_.ttftMs == 0) live_.ttftMs = clock_.nsecsElapsed() / 1e6;
      maybeFlush();
    } else if (const auto* p = std::get_if<resa::PrefillProgressEvent>(&e)) {
      prefillTotal_ = p->total;
      prefillDone_ = p->done;
      if (p->done == 0) prefillStartMs_ = clock_.nsecsElapsed() / 1e6;
      const double ms = clock_.nsecsElapsed() / 1e6 - prefillStartMs_;
      if (ms > 0) live_.prefillTokPerS = p->done / (ms / 1000.0);
      if (p->done == 0 || p->done == p->total || sinceEmit_.elapsed() >= w_->signalIntervalMs_) {
        emit w_->prefillProgress(id_, p->done, p->total);
        if (p->done != p->total) sinceEmit_.restart();
      }
    } else if (const auto* s = std::get_if<resa::StepEvent>(&e)) {
      StepSample x;
      x.index = s->index;
      x.position = s->position;
      x.stepMs = s->step_ms;
      x.kvBytesRead = s->kv_bytes_read;
      x.kvBytesDense = s->kv_bytes_dense;
      x.blocksSelected = s->blocks_selected;
      x.blocksTotal = s->blocks_total;
      x.ctxTokens = s->ctx_tokens;
      x.rectified = s->rectified;
      live_.steps.append(x);
      stepMs.append(s->step_ms);
      if (s->rectified) rectifiedSteps.append(s->index);
      kvRead_ += s->kv_bytes_read;
      kvDense_ += s->kv_bytes_dense;
      ++steps_;
      live_.ctxTokens = s->ctx_tokens;
      const double now = clock_.nsecsElapsed() / 1e6;
      stepTimes_.push_back(now);
      while (!stepTimes_.empty() && stepTimes_.front() < now - 1000.0) stepTimes_.pop_front();
      maybeFlush();
    } else if (const auto* r = std::get_if<resa::RectificationEvent>(&e)) {
      RectificationInfo info{r->first_position, r->count, r->ms, r->folded, steps_};
      pendingRect_.append(info);
      ++live_.rectifications;
    }
  }

  // Emits what is pending (at the end of a request, before finished).
  void flush() {
    for (const RectificationInfo& r : std::as_const(pendingRect_)) emit w_->rectification(id_, r);
    pendingRect_.clear();
    if (!pendingText_.empty()) {
      emit w_->tokenChunk(id_, QString::fromStdString(pendingText_));
      pendingText_.clear();
    }
    if (!live_.steps.isEmpty() || live_.generatedTokens != lastEmittedTokens_) {
      live_.ctxLimit = ctxLimit_;
      live_.kvReadFraction = kvDense_ > 0 ? double(kvRead_) / double(kvDense_) : 1.0;
      live_.kvBytesPerToken = steps_ > 0 ? double(kvRead_) / steps_ : 0.0;
      if (stepTimes_.size() >= 2) {
        const double span = stepTimes_.back() - stepTimes_.front();
        live_.decodeTokPerS = span > 0 ? (stepTimes_.size() - 1) / (span / 1000.0) : 0.0;
      }
      live_.memoryBytes = residentBytes();
      live_.deviceMemoryBytes = qint64(w_->model_->backend().device_memory_bytes());
      emit w_->stepStats(id_, live_);
      live_.steps.clear();
      lastEmittedTokens_ = live_.generatedTokens;
    }
    sinceEmit_.restart();
  }

  void setKvCacheBytes(qint64 b) { live_.kvCacheBytes = b; }

  QList<double> stepMs;
  QList<int> rectifiedSteps;

 private:
  void maybeFlush() {
    if (sinceEmit_.elapsed() >= w_->signalIntervalMs_) flush();
  }

  EngineWorker* w_;
  qint64 id_;
  int ctxLimit_;
  QElapsedTimer sinceEmit_, clock_;
  std::string pendingText_;
  QList<RectificationInfo> pendingRect_;
  LiveStats live_;
  int lastEmittedTokens_ = 0;
  int steps_ = 0;
  qint64 kvRead_ = 0, kvDense_ = 0;
  int prefillTotal_ = 0, prefillDone_ = 0;
  double prefillStartMs_ = 0;
  std::deque<double> stepTimes_;
};

EngineWorker::EngineWorker(QObject* parent) : QObject(parent) { registerAppMetaTypes(); }

EngineWorker::~EngineWorker() = default;

void EngineWorker::cancel(qint64 requestId) {
  std::lock_guard lock(cancelMutex_);
  if (currentRequest_.load() == requestId) {
    cancelFlag_ = true;
  } else {
    cancelledEarly_.insert(requestId);
  }
}

void EngineWorker::cancelAll() {
  {
    std::lock_guard lock(cancelMutex_);
    cancelFlag_ = true;
    dropQueued_ = true;
  }
  // Requests queued before this call are dropped; the marker below clears the flag after them.
  QMetaObject::invokeMethod(
      this,
      [this] {
        std::lock_guard lock(cancelMutex_);
        dropQueued_ = false;
      },
      Qt::QueuedConnection);
}

bool EngineWorker::takeCancelled(qint64 requestId) {
  std::lock_guard lock(cancelMutex_);
  if (dropQueued_ || cancelledEarly_.erase(requestId) > 0) return true;
  currentRequest_ = requestId;
  cancelFlag_ = false;
  return false;
}

void EngineWorker::endRequest() {
  std::lock_guard lock(cancelMutex_);
  currentRequest_ = 0;
  cancelFlag_ = false;
}

void EngineWorker::loadModel(const ModelSource& source) {
  conversations_.clear();
  model_.reset();
  info_ = ModelInfo{};
  try {
    resa::LoadOptions lo;
    lo.threads = source.threads;
    if (!source.chatFormat.isEmpty()) {
      lo.chat_format = resa::parse_chat_format(source.chatFormat.toStdString());
      if (!lo.chat_format)
        throw resa::Error(resa::ErrorKind::kInvalidArgument,
                          "unknown chat format '" + source.chatFormat.toStdString() +
                              "' (raw, llama2, mistral, chatml, llama3, zephyr)");
    }
    const auto device = resa::parse_device(source.device.toStdString());
    if (!device)
      throw resa::Error(resa::ErrorKind::kInvalidArgument,
                        "unknown device '" + source.device.toStdString() + "' (auto, cpu, cuda)");
    lo.device = *device;
    if (!source.preset.isEmpty()) {
      const auto cfg = resa::preset_config(source.preset.toStdString());
      if (!cfg) {
        std::string names;
        for (const auto& n : resa::preset_names()) names += (names.empty() ? "" : ", ") + n;
        throw resa::Error(
            resa::ErrorKind::kInvalidArgument,
            "unknown preset '" + source.preset.toStdString() + "' (presets: " + names + ")");
      }
      emit modelLoading(tr("Making random weights for preset %1").arg(source.preset), -1);
      model_ = resa::Model::random(*cfg, source.preset.toStdString(), source.seed, lo);
    } else {
      if (source.path.isEmpty())
        throw resa::Error(resa::ErrorKind::kInvalidArgument, "no model folder given");
      emit modelLoading(tr("Loading %1").arg(source.path), -1);
      model_ = resa::Model::load(source.path.toStdString(), lo);
    }
    source_ = source;
    identity_ = identityOf(source);
    const resa::ModelConfig& c = model_->config();
    ModelInfo info;
    info.name = source.preset.isEmpty() ? QFileInfo(source.path).fileName() : source.preset;
    info.source = source.display();
    info.backend = qs(model_->backend().name());
    info.gpu = model_->backend().is_gpu();
    info.backendNotice = qs(model_->backend_notice());
    info.maxPositions = c.max_position_embeddings;
    info.vocabSize = c.vocab_size;
    info.layers = c.num_layers;
    info.heads = c.num_heads;
    info.kvHeads = c.num_kv_heads;
    info.headDim = c.head_dim;
    info.parameterCount = c.parameter_count();
    info.weightBytes = qint64(model_->weight_bytes());
    info.kvBytesPerToken = 2 * qint64(c.num_kv_heads) * c.head_dim * sizeof(float) * c.num_layers;
    info.chatFormat = qs(resa::chat_format_name(model_->chat_format()));
    info.answerStartsInThinking = resa::answer_starts_in_thinking(model_->chat_format());
    int ctx = source.ctxLimit > 0 ? std::min(source.ctxLimit, c.max_position_embeddings)
                                  : c.max_position_embeddings;
    // Half the free memory for one conversation's KV cache at most (KvCache refuses 85%).
    const size_t avail = resa::available_memory_bytes();
    if (!info.gpu && avail > 0 && info.kvBytesPerToken > 0) {
      const qint64 fit = qint64(avail / 2) / info.kvBytesPerToken;
      ctx = int(std::min<qint64>(ctx, std::max<qint64>(fit, 256)));
    }
    info.ctxLimit = ctx;
    info.fingerprint = qs(resa::model_fingerprint(*model_, identity_).hex());
    info_ = info;
    emit modelLoading(tr("Ready"), 1.0);
    emit modelLoaded(info_);
  } catch (const std::exception& e) {
    model_.reset();
    emit modelLoadFailed(qs(std::string(e.what())));
  }
}

void EngineWorker::countTokens(qint64 requestId, const QString& text) {
  if (!model_) {
    emit tokensCounted(requestId, -1);
    return;
  }
  try {
    emit tokensCounted(requestId, int(model_->tokenizer().encode(text.toStdString()).size()));
  } catch (const std::exception&) {
    emit tokensCounted(requestId, -1);
  }
}

void EngineWorker::unloadModel() {
  conversations_.clear();
  model_.reset();
  info_ = ModelInfo{};
}

bool EngineWorker::ensureModel(qint64 requestId) {
  if (model_) return true;
  emit error(requestId, tr("No model is loaded: open a model folder first."));
  return false;
}

void EngineWorker::handleFailure(qint64 requestId, qint64 conversationId, const std::exception& e) {
  // The conversation may be half-updated: forget it, the next request rebuilds it.
  conversations_.erase(conversationId);
  const auto* re = dynamic_cast<const resa::Error*>(&e);
  QString message = qs(std::string(e.what()));
  if (re && re->kind() == resa::ErrorKind::kDevice) {
    conversations_.clear();
    model_.reset();
    emit engineFailed(tr("The device failed: %1. Load the model again to continue.").arg(message));
  }
  emit error(requestId, message);
}

EngineWorker::ConvState& EngineWorker::stateFor(qint64 conversationId, int blockSize) {
  auto it = conversations_.find(conversationId);
  if (it != conversations_.end() && it->second->blockSize != blockSize) {
    conversations_.erase(it);  // another block size: a new KV layout, so a full re-prefill
    it = conversations_.end();
  }
  if (it == conversations_.end()) {
    auto s = std::make_unique<ConvState>();
    s->conv = std::make_unique<resa::Conversation>(*model_, info_.ctxLimit, blockSize);
    s->blockSize = blockSize;
    it = conversations_.emplace(conversationId, std::move(s)).first;
  }
  return *it->second;
}

QString EngineWorker::snapshotPath(qint64 conversationId) const {
  if (snapshotDir_.isEmpty()) return {};
  return QDir(snapshotDir_).filePath(QStringLiteral("conversation-%1.resakv").arg(conversationId));
}

void EngineWorker::setSnapshotDirectory(const QString& dir) {
  snapshotDir_ = dir;
  if (!dir.isEmpty()) QDir().mkpath(dir);
}

void EngineWorker::setSnapshotMinTokens(int tokens) { snapshotMinTokens_ = std::max(0, tokens); }

void EngineWorker::trySnapshotRestore(qint64 conversationId, ConvState& state) {
  state.snapshotTried = true;
  const QString path = snapshotPath(conversationId);
  if (path.isEmpty() || !QFileInfo::exists(path)) return;
  try {
    const std::string app = resa::load_kv_snapshot(path.toStdString(), *state.conv,
                                                   resa::model_fingerprint(*model_, identity_));
    const QJsonObject meta = QJsonDocument::fromJson(QByteArray::fromStdString(app)).object();
    std::vector<int> all = state.conv->tokens();
    std::vector<int> pending;
    for (const QJsonValue& v : meta["pending"].toArray()) pending.push_back(v.toInt());
    all.insert(all.end(), pending.begin(), pending.end());
    std::vector<Segment> segs;
    size_t at = 0;
    for (const QJsonValue& v : meta["segments"].toArray()) {
      const QJsonObject o = v.toObject();
      Segment s;
      s.kind = o["kind"].toString() == "A" ? 'A' : 'U';
      s.key = o["key"].toString().toULongLong(nullptr, 16);
      const size_t n = size_t(o["count"].toInt());
      if (at + n > all.size()) throw resa::Error(resa::ErrorKind::kCorruptFile, "segment table");
      s.tokens.assign(all.begin() + long(at), all.begin() + long(at + n));
      at += n;
      segs.push_back(std::move(s));
    }
    if (at != all.size())
      throw resa::Error(resa::ErrorKind::kCorruptFile, "KV snapshot " + path.toStdString() +
                                                           ": its segment table does not "
                                                           "match its tokens");
    state.conv->add_tokens(pending);
    state.segments = std::move(segs);
    state.fromSnapshot = true;
    emit snapshotNotice(conversationId, tr("Loaded the saved KV cache (%1 tokens) from %2.")
                                            .arg(state.conv->cached_tokens())
                                            .arg(path));
  } catch (const std::exception& e) {
    state.conv->truncate(0);
    state.segments.clear();
    const auto* re = dynamic_cast<const resa::Error*>(&e);
    if (re && re->kind() == resa::ErrorKind::kCorruptFile) QFile::remove(path);
    emit snapshotNotice(
        conversationId,
        tr("%1. Re-processing the conversation instead.").arg(qs(std::string(e.what()))));
  }
}

void EngineWorker::writeSnapshot(qint64 conversationId, ConvState& state, bool force) {
  const QString path = snapshotPath(conversationId);
  if (path.isEmpty() || !model_) return;
  const resa::Conversation& c = *state.conv;
  if (!force && (c.cached_tokens() < snapshotMinTokens_ || !state.dirtySinceSnapshot)) return;
  QJsonArray segs;
  for (const Segment& s : state.segments)
    segs.append(QJsonObject{{"kind", QString(QChar(s.kind))},
                            {"key", QString::number(s.key, 16)},
                            {"count", int(s.tokens.size())}});
  QJsonArray pending;
  for (size_t i = size_t(c.cached_tokens()); i < c.tokens().size(); ++i)
    pending.append(c.tokens()[i]);
  const QByteArray meta = QJsonDocument(QJsonObject{{"segments", segs}, {"pending", pending}})
                              .toJson(QJsonDocument::Compact);
  try {
    resa::save_kv_snapshot(path.toStdString(), c, resa::model_fingerprint(*model_, identity_),
                           meta.toStdString());
    state.dirtySinceSnapshot = false;
  } catch (const std::exception& e) {
    emit snapshotNotice(conversationId,
                        tr("Could not save the KV cache: %1").arg(qs(std::string(e.what()))));
  }
}

void EngineWorker::saveSnapshot(qint64 conversationId) {
  auto it = conversations_.find(conversationId);
  if (it != conversations_.end()) writeSnapshot(conversationId, *it->second, true);
}

void EngineWorker::forgetConversation(qint64 conversationId) {
  conversations_.erase(conversationId);
  const QString path = snapshotPath(conversationId);
  if (!path.isEmpty()) QFile::remove(path);
}

std::vector<EngineWorker::Segment> EngineWorker::buildSegments(const GenerateRequest& r,
                                                               ConvState* cached, int droppedTurns,
                                                               bool dropDocuments) const {
  struct Msg {
    char kind;
    int index;
    const QString* text;
  };
  std::vector<Msg> msgs;
  for (int i = 0; i < r.history.size(); ++i) {
    const QString& role = r.history[i].role;
    if (role == QLatin1String("user")) msgs.push_back({'U', i, &r.history[i].text});
    if (role == QLatin1String("assistant")) msgs.push_back({'A', i, &r.history[i].text});
  }
  msgs.push_back({'U', int(r.history.size()), &r.userText});
  // Drop whole turns from the front: start at the (droppedTurns)-th later user message.
  size_t start = 0;
  for (int d = 0; d < droppedTurns; ++d) {
    size_t j = start + 1;
    while (j < msgs.size() && msgs[j].kind != 'U') ++j;
    if (j >= msgs.size()) break;
    start = j;
  }
  while (start < msgs.size() && msgs[start].kind != 'U') ++start;

  const resa::ChatFormat fmt = model_->chat_format();
  const resa::ChatTokens ct = model_->chat_tokens();
  const std::string system = r.settings.systemPrompt.toStdString();
  const std::string endAnswer = resa::render_answer_end(fmt, ct);
  std::vector<Segment> out;
  bool prefixMatches = cached != nullptr;
  for (size_t i = start; i < msgs.size(); ++i) {
    Segment s;
    s.kind = msgs[i].kind;
    const std::string text = msgs[i].text->toStdString();
    if (s.kind == 'U') {
      const bool first = out.empty();
      std::string content;
      std::vector<std::pair<int, size_t>> docOffsets;  // doc index, offset in content
      if (first && !dropDocuments) {
        for (int d = 0; d < r.documents.size(); ++d) {
          content += "Document: " + r.documents[d].name.toStdString() + "\n\n";
          docOffsets.emplace_back(d, content.size());
          content += r.documents[d].text.toStdString() + "\n\n";
        }
      }
      const size_t userAt = content.size();
      content += text;
      s.rendered = resa::render_user_turn(fmt, ct, system, content, first);
      // Locate the content in the rendered turn (formats may trim it).
      size_t base = s.rendered.find(content);
      if (base == std::string::npos) base = s.rendered.find(text);
      if (base != std::string::npos) {
        for (size_t d = 0; d < docOffsets.size(); ++d) {
          const size_t len = size_t(r.documents[docOffsets[d].first].text.toUtf8().size());
          s.pieces.push_back(Piece{"document", docOffsets[d].first, base + docOffsets[d].second,
                                   base + docOffsets[d].second + len});
        }
        const size_t u = s.rendered.find(text, base + (docOffsets.empty() ? 0 : userAt));
        if (u != std::string::npos)
          s.pieces.push_back(Piece{"message", msgs[i].index, u, u + text.size()});
      }
      s.key = resa::xxhash64(s.rendered.data(), s.rendered.size(), 'U');
    } else {
      s.rendered = text + endAnswer;
      s.pieces.push_back(Piece{"message", msgs[i].index, 0, text.size()});
      s.key = resa::xxhash64(text.data(), text.size(), 'A');
    }
    const size_t k = out.size();
    if (prefixMatches && k < cached->segments.size() && cached->segments[k].key == s.key &&
        cached->segments[k].kind == s.kind) {
      s.tokens = cached->segments[k].tokens;  // the tokens the model actually saw or wrote
      s.reused = true;
    } else {
      prefixMatches = false;
      s.tokens = model_->tokenizer().encode_with_specials(s.rendered);
    }
    out.push_back(std::move(s));
  }
  return out;
}

void EngineWorker::generate(const GenerateRequest& r) {
  if (takeCancelled(r.requestId)) {
    AnswerStats s;
    s.stopReason = QStringLiteral("cancelled");
    s.mode = modeToString(r.settings.mode);
    emit finished(r.requestId, QString(), s);
    return;
  }
  if (!ensureModel(r.requestId)) {
    endRequest();
    return;
  }
  try {
    const int blockSize = r.settings.resa.block_size;
    resa::validate(r.settings.resa);
    resa::validate(r.settings.sampling);
    const bool known = conversations_.count(r.conversationId) > 0;
    ConvState& state = stateFor(r.conversationId, blockSize);
    if (!known && !state.snapshotTried) trySnapshotRestore(r.conversationId, state);

    auto count = [](const std::vector<Segment>& segs) {
      size_t n = 0;
      for (const Segment& s : segs) n += s.tokens.size();
      return int(n);
    };
    const int limit = state.conv->ctx_limit();
    const int reserve = std::max(1, std::min(r.settings.maxNewTokens, limit / 4));
    std::vector<Segment> segs = buildSegments(r, &state, 0, false);
    int dropped = 0;
    bool droppedDocs = false;
    if (count(segs) + reserve > limit) {
      int turns = 0;
      for (const ChatTurn& t : r.history) turns += t.role == QLatin1String("user") ? 1 : 0;
      ContextOverflow o;
      o.requestId = r.requestId;
      o.conversationId = r.conversationId;
      o.neededTokens = count(segs) + reserve;
      o.limit = limit;
      o.answerReserve = reserve;
      o.newTurnTokens = int(segs.back().tokens.size());
      if (!r.documents.isEmpty()) {
        const std::vector<Segment> noDocs = buildSegments(r, nullptr, 0, true);
        o.documentTokens = count(segs) - count(noDocs);
      }
      o.historyTokens = count(segs) - o.newTurnTokens - o.documentTokens;
      // The fewest dropped turns that fit (the size falls as turns go: a binary search, each
      // probe tokenizes the context once), keeping the documents and then without them.
      auto leastDrop = [&](int from, bool noDocs) {
        auto fits = [&](int d) {
          return count(buildSegments(r, nullptr, d, noDocs)) + reserve <= limit;
        };
        if (from > turns || !fits(turns)) return -1;
        int lo = from, hi = turns;
        while (lo < hi) {
          const int mid = (lo + hi) / 2;
          if (fits(mid)) {
            hi = mid;
          } else {
            lo = mid + 1;
          }
        }
        return lo;
      };
      const int pinnedDrop = leastDrop(1, false);
      int anyDrop = pinnedDrop;
      bool anyDropsDocs = false;
      if (anyDrop < 0 && !r.documents.isEmpty()) {
        anyDrop = leastDrop(0, true);
        anyDropsDocs = anyDrop >= 0;
      }
      o.fitsWithDocumentPinned = pinnedDrop >= 0;
      o.fitsByDroppingTurns = anyDrop >= 0;
      if (r.overflow == OverflowPolicy::kAsk) {
        emit contextOverflow(o);
        endRequest();
        return;
      }
      const bool pinned = r.overflow == OverflowPolicy::kKeepDocumentPinned;
      if (pinned ? pinnedDrop < 0 : anyDrop < 0) {
        emit error(r.requestId,
                   tr("The turn needs %1 tokens (prompt and room for the answer) but the context "
                      "holds %2, and %3 does not make it fit. Shorten the message or the "
                      "document, start a new conversation, or load the model with a longer "
                      "context.")
                       .arg(o.neededTokens)
                       .arg(limit)
                       .arg(pinned ? tr("dropping earlier turns while keeping the documents")
                                   : tr("dropping earlier turns and the documents")));
        endRequest();
        return;
      }
      dropped = pinned ? pinnedDrop : anyDrop;
      droppedDocs = !pinned && anyDropsDocs;
      segs = buildSegments(r, &state, dropped, droppedDocs);
    }

    // Reuse the longest common prefix of the cached tokens and the target.
    std::vector<int> target;
    for (const Segment& s : segs) target.insert(target.end(), s.tokens.begin(), s.tokens.end());
    resa::Conversation& conv = *state.conv;
    const std::vector<int>& have = conv.tokens();
    size_t common = 0;
    while (common < have.size() && common < target.size() && have[common] == target[common])
      ++common;
    conv.truncate(int(common));
    conv.add_tokens(std::vector<int>(target.begin() + long(common), target.end()));
    state.segments = segs;
    state.dirtySinceSnapshot = true;

    GenerationStart start;
    start.requestId = r.requestId;
    start.conversationId = r.conversationId;
    start.contextTokens = int(target.size());
    start.reusedTokens = std::min(int(common), conv.cached_tokens());
    start.droppedTurns = dropped;
    start.droppedDocuments = droppedDocs;
    start.fromSnapshot = state.fromSnapshot;
    state.fromSnapshot = false;
    emit generationStarted(start);

    resa::GenerateOptions opt;
    opt.mode = r.settings.mode;
    opt.resa = r.settings.resa;
    opt.sampling = r.settings.sampling;
    opt.max_new_tokens = std::max(1, r.settings.maxNewTokens);
    opt.prefill_chunk = std::max(1, r.settings.prefillChunk);
    opt.collect_block_hits = true;
    Run run(this, r.requestId, limit);
    run.setKvCacheBytes(qint64(conv.kv().bytes_allocated()));
    const resa::GenerationResult result = conv.generate(
        opt, [&run](const resa::Event& e) { run(e); }, &cancelFlag_);
    run.flush();

    // The answer joins the context; its end marker is added now and prefilled next turn.
    if (!result.tokens.empty()) {
      Segment answer;
      answer.kind = 'A';
      answer.key = resa::xxhash64(result.text.data(), result.text.size(), 'A');
      answer.tokens = result.tokens;
      const bool stopped = result.stats.stop_reason == resa::StopReason::kStopToken;
      const std::string tail =
          stopped ? resa::render_after_answer(model_->chat_format(), model_->chat_tokens())
                  : resa::render_answer_end(model_->chat_format(), model_->chat_tokens());
      if (!tail.empty()) {
        const std::vector<int> ids = model_->tokenizer().encode_with_specials(tail);
        conv.add_tokens(ids);
        answer.tokens.insert(answer.tokens.end(), ids.begin(), ids.end());
      }
      state.segments.push_back(std::move(answer));
    }

    const resa::GenerationStats& g = result.stats;
    AnswerStats s;
    s.mode = modeToString(g.mode);
    s.model = info_.name;
    s.backend = info_.backend;
    s.stopReason = qs(resa::stop_reason_name(g.stop_reason));
    s.contextTokens = g.context_tokens;
    s.reusedTokens = start.reusedTokens;
    s.prefillTokens = g.prefill_tokens;
    s.generatedTokens = g.generated_tokens;
    s.decodeSteps = g.decode_steps;
    s.ctxLimit = limit;
    s.blockSize = blockSize;
    s.ttftMs = g.first_token_ms;
    s.prefillMs = g.prefill_ms;
    s.prefillTokPerS = g.prefill_tokens_per_s();
    s.decodeMs = g.decode_ms;
    s.decodeTokPerS = g.decode_tokens_per_s();
    s.kvReadFraction = g.kv_read_fraction();
    s.kvBytesRead = g.kv_bytes_read;
    s.kvBytesDense = g.kv_bytes_dense;
    s.kvBytesPerToken = g.decode_steps > 0 ? double(g.kv_bytes_read) / g.decode_steps : 0.0;
    s.kvCacheBytes = qint64(g.kv_cache_bytes);
    s.memoryBytes = residentBytes();
    s.deviceMemoryBytes = qint64(g.device_memory_bytes);
    s.blocksSelected = g.blocks_selected;
    s.rectifications = g.rectifications;
    s.rectifyMs = g.rectify_ms;
    s.stepMs = run.stepMs;
    for (int i : std::as_const(run.rectifiedSteps)) addRectifiedStep(s, i);
    const int usedBlocks = (conv.cached_tokens() + blockSize - 1) / blockSize;
    for (int b = 0; b < std::min<int>(usedBlocks, int(result.block_hits.size())); ++b)
      s.blockHits.append(result.block_hits[size_t(b)]);
    s.heat = heatSpans(segs, s.blockHits, blockSize);
    emit finished(r.requestId, QString::fromStdString(result.text), s);
    writeSnapshot(r.conversationId, state, false);
  } catch (const std::exception& e) {
    handleFailure(r.requestId, r.conversationId, e);
  } catch (...) {
    handleFailure(r.requestId, r.conversationId,
                  resa::Error(resa::ErrorKind::kInternal, "unexpected failure in the engine"));
  }
  endRequest();
}

QList<HeatSpan> EngineWorker::heatSpans(const std::vector<Segment>& segs,
                                        const QList<quint32>& hits, int blockSize) const {
  QList<HeatSpan> out;
  const resa::Tokenizer& tok = model_->tokenizer();
  size_t segStart = 0;
  for (const Segment& s : segs) {
    const size_t n = s.tokens.size();
    const size_t firstBlock = segStart / size_t(blockSize);
    const size_t lastBlock = (segStart + n + size_t(blockSize) - 1) / size_t(blockSize);
    bool any = false;
    for (size_t b = firstBlock; b < lastBlock && b < size_t(hits.size()); ++b)
      any |= hits[qsizetype(b)] > 0;
    if (!any || s.pieces.empty()) {
      segStart += n;
      continue;
    }
    // Byte offset of every token in the rendered text (dummy-prefix spaces skipped).
    std::vector<size_t> at(n + 1, 0);
    size_t cursor = 0;
    for (size_t i = 0; i < n; ++i) {
      at[i] = std::min(cursor, s.rendered.size());
      std::string bytes = tok.special_text(s.tokens[i]);
      if (bytes.empty()) bytes = tok.token_bytes(s.tokens[i]);
      size_t len = bytes.size();
      if (len > 0 && bytes[0] == ' ' && (cursor >= s.rendered.size() || s.rendered[cursor] != ' '))
        --len;
      cursor += len;
    }
    at[n] = std::min(cursor, s.rendered.size());
    for (const Piece& p : s.pieces) {
      const QByteArray utf8 = QByteArray::fromStdString(
          s.rendered.substr(p.byteStart, p.byteEnd - std::min(p.byteEnd, p.byteStart)));
      // Character offsets from one pass over the piece: decoding the prefix for every span was
      // quadratic in the document's length.
      const std::vector<int> chars = utf16Offsets(utf8);
      auto charAt = [&](size_t byte) {
        const size_t rel = std::clamp(byte, p.byteStart, p.byteEnd) - p.byteStart;
        return chars[std::min(rel, chars.size() - 1)];
      };
      for (size_t b = firstBlock; b < lastBlock && b < size_t(hits.size()); ++b) {
        if (hits[qsizetype(b)] == 0) continue;
        const size_t t0 = std::max(b * size_t(blockSize), segStart) - segStart;
        const size_t t1 = std::min((b + 1) * size_t(blockSize), segStart + n) - segStart;
        const size_t b0 = std::max(at[t0], p.byteStart), b1 = std::min(at[t1], p.byteEnd);
        if (b0 >= b1) continue;
        out.append(HeatSpan{p.kind, p.index, charAt(b0), charAt(b1), double(hits[qsizetype(b)])});
      }
    }
    segStart += n;
  }
  return out;
}

void EngineWorker::compare(const CompareRequest& r) {
  CompareResult result;
  result.prompt = r.prompt;
  if (takeCancelled(r.requestId)) {
    emit compareFinished(r.requestId, result);
    return;
  }
  if (!ensureModel(r.requestId)) {
    endRequest();
    return;
  }
  result.model = info_.name;
  result.backend = info_.backend;
  try {
    resa::validate(r.settings.resa);
    const int blockSize = r.settings.resa.block_size;
    const int newTokens = std::max(1, r.newTokens);
    const resa::Tokenizer& tok = model_->tokenizer();
    const resa::ChatFormat fmt = model_->chat_format();
    const resa::ChatTokens ct = model_->chat_tokens();

    // The contexts: token sequences ending with the prompt's user turn.
    std::vector<std::vector<int>> contexts;
    if (r.syntheticLengths.isEmpty()) {
      GenerateRequest g;
      g.documents = r.documents;
      g.history = r.history;
      g.userText = r.prompt;
      g.settings = r.settings;
      std::vector<int> ids;
      for (const Segment& s : buildSegments(g, nullptr, 0, false))
        ids.insert(ids.end(), s.tokens.begin(), s.tokens.end());
      contexts.push_back(std::move(ids));
    } else {
      // Synthetic documents: an ordinary paragraph repeated, so the model sees real text.
      const std::vector<int> para = tok.encode(
          "The committee met again on Tuesday to review the survey of the northern valley. "
          "Its members compared the river levels of the past decade with the new readings, "
          "discussed the cost of the proposed bridge, and asked the engineers for a second "
          "estimate before the autumn session. ");
      const std::vector<int> turn = tok.encode_with_specials(
          resa::render_user_turn(fmt, ct, {}, r.prompt.toStdString(), false));
      for (int len : r.syntheticLengths) {
        std::vector<int> ids;
        if (tok.bos_id() >= 0) ids.push_back(tok.bos_id());
        while (int(ids.size()) < len) ids.push_back(para[ids.size() % para.size()]);
        ids.resize(size_t(std::max(1, len)));
        ids.insert(ids.end(), turn.begin(), turn.end());
        contexts.push_back(std::move(ids));
      }
    }
    const int total = int(contexts.size()) * int(r.modes.size());
    int done = 0;
    for (const std::vector<int>& ctx : contexts) {
      const int need = int(ctx.size()) + newTokens + 1;
      if (need > info_.ctxLimit)
        throw resa::Error(resa::ErrorKind::kContextFull,
                          "a context of " + std::to_string(ctx.size()) + " tokens plus " +
                              std::to_string(newTokens) + " new ones exceeds the context limit " +
                              std::to_string(info_.ctxLimit) + "; choose shorter lengths");
      resa::Conversation conv(*model_, need + blockSize, blockSize);
      conv.add_tokens(ctx);
      resa::GenerateOptions opt;
      opt.resa = r.settings.resa;
      opt.sampling = r.settings.sampling;
      opt.prefill_chunk = std::max(1, r.settings.prefillChunk);
      opt.collect_block_hits = false;
      QElapsedTimer prefillClock;
      prefillClock.start();
      conv.prefill(
          opt,
          [this, &r](const resa::Event& e) {
            if (const auto* p = std::get_if<resa::PrefillProgressEvent>(&e))
              emit prefillProgress(r.requestId, p->done, p->total);
          },
          &cancelFlag_);
      const double prefillMs = prefillClock.nsecsElapsed() / 1e6;
      if (cancelFlag_) break;
      for (resa::DecodeMode mode : r.modes) {
        conv.truncate(int(ctx.size()));
        CompareRun run;
        run.mode = modeToString(mode);
        run.contextTokens = int(ctx.size());
        run.prefillTokPerS = prefillMs > 0 ? ctx.size() / (prefillMs / 1000.0) : 0.0;
        opt.mode = mode;
        int64_t kvRead = 0, kvDense = 0;
        double decodeMs = 0;
        int steps = 0;
        // Stop tokens do not end a run: every mode decodes the same number of tokens.
        while (run.generatedTokens < newTokens && !cancelFlag_) {
          opt.max_new_tokens = newTokens - run.generatedTokens;
          const int stepBase = run.stepMs.size();
          const resa::GenerationResult g = conv.generate(
              opt,
              [&run, stepBase](const resa::Event& e) {
                if (const auto* s = std::get_if<resa::StepEvent>(&e)) {
                  run.stepMs.append(s->step_ms);
                  if (s->rectified) run.rectifiedSteps.append(stepBase + s->index);
                }
              },
              &cancelFlag_);
          if (run.generatedTokens == 0) run.ttftMs = g.stats.first_token_ms;
          run.generatedTokens += g.stats.generated_tokens;
          kvRead += g.stats.kv_tokens_read;
          kvDense += g.stats.kv_tokens_dense;
          decodeMs += g.stats.decode_ms;
          steps += g.stats.decode_steps;
          if (g.stats.stop_reason == resa::StopReason::kContextFull ||
              g.stats.generated_tokens == 0)
            break;
        }
        run.decodeTokPerS = decodeMs > 0 ? steps / (decodeMs / 1000.0) : 0.0;
        run.kvReadFraction = kvDense > 0 ? double(kvRead) / double(kvDense) : 1.0;
        result.runs.append(run);
        emit compareProgress(r.requestId, run, ++done, total);
        if (cancelFlag_) break;
      }
      if (cancelFlag_) break;
    }
    emit compareFinished(r.requestId, result);
  } catch (const std::exception& e) {
    handleFailure(r.requestId, 0, e);
  } catch (...) {
    handleFailure(r.requestId, 0,
                  resa::Error(resa::ErrorKind::kInternal, "unexpected failure in the engine"));
  }
  endRequest();
}

// --- EngineThread ------------------------------------------------------------------------------

EngineThread::EngineThread(QObject* parent) : QObject(parent) {
  registerAppMetaTypes();
  worker_ = new EngineWorker;
  worker_->moveToThread(&thread_);
  connect(&thread_, &QThread::finished, worker_, &QObject::deleteLater);
  thread_.setObjectName(QStringLiteral("resa-engine"));
  thread_.start();
}

EngineThread::~EngineThread() {
  worker_->cancelAll();
  thread_.quit();
  thread_.wait();
}

void EngineThread::loadModel(const ModelSource& source) {
  QMetaObject::invokeMethod(
      worker_, [w = worker_, source] { w->loadModel(source); }, Qt::QueuedConnection);
}

void EngineThread::generate(const GenerateRequest& request) {
  QMetaObject::invokeMethod(
      worker_, [w = worker_, request] { w->generate(request); }, Qt::QueuedConnection);
}

void EngineThread::compare(const CompareRequest& request) {
  QMetaObject::invokeMethod(
      worker_, [w = worker_, request] { w->compare(request); }, Qt::QueuedConnection);
}

void EngineThread::countTokens(qint64 requestId, const QString& text) {
  QMetaObject::invokeMethod(
      worker_, [w = worker_, requestId, text] { w->countTokens(requestId, text); },
      Qt::QueuedConnection);
}

void EngineThread::forgetConversation(qint64 conversationId) {
  QMetaObject::invokeMethod(
      worker_, [w = worker_, conversationId] { w->forgetConversation(conversationId); },
      Qt::QueuedConnection);
}

void EngineThread::setSnapshotDirectory(const QString& dir) {
  QMetaObject::invokeMethod(
      worker_, [w = worker_, dir] { w->setSnapshotDirectory(dir); }, Qt::QueuedConnection);
}

void EngineThread::saveSnapshot(qint64 conversationId) {
  QMetaObject::invokeMethod(
      worker_, [w = worker_, conversationId] { w->saveSnapshot(conversationId); },
      Qt::QueuedConnection);
}

}  // namespace resa::app
