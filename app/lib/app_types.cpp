#include "app/lib/app_types.h"

#include <QJsonArray>

#include <algorithm>
#include <mutex>

#include "engine/chat_format.h"

namespace resa::app {

namespace {

constexpr const char* kThinkOpen = "<think>";
constexpr const char* kThinkClose = "</think>";

// What split_thinking looks at for an opening "<think>": the text after leading spaces and
// newlines.
QStringView withoutLeadingBlanks(const QString& text) {
  qsizetype lead = 0;
  while (lead < text.size() && (text[lead] == u' ' || text[lead] == u'\n')) ++lead;
  return QStringView(text).mid(lead);
}

template <class T>
QJsonArray toArray(const QList<T>& list) {
  QJsonArray a;
  for (const T& v : list) a.append(double(v));
  return a;
}
QList<double> doubles(const QJsonValue& v) {
  QList<double> out;
  for (const QJsonValue& x : v.toArray()) out.append(x.toDouble());
  return out;
}
QList<int> ints(const QJsonValue& v) {
  QList<int> out;
  for (const QJsonValue& x : v.toArray()) out.append(x.toInt());
  return out;
}

}  // namespace

QString modeToString(resa::DecodeMode mode) {
  const std::string_view n = resa::mode_name(mode);
  return QString::fromUtf8(n.data(), qsizetype(n.size()));
}

std::optional<resa::DecodeMode> modeFromString(const QString& name) {
  return resa::parse_mode(name.trimmed().toLower().toStdString());
}

QString ModelSource::display() const {
  if (!preset.isEmpty()) return QStringLiteral("preset %1 (seed %2)").arg(preset).arg(seed);
  return path;
}

QJsonObject AnswerStats::toJson() const {
  QJsonObject j;
  j["mode"] = mode;
  j["model"] = model;
  j["backend"] = backend;
  j["stop_reason"] = stopReason;
  j["context_tokens"] = contextTokens;
  j["reused_tokens"] = reusedTokens;
  j["prefill_tokens"] = prefillTokens;
  j["generated_tokens"] = generatedTokens;
  j["decode_steps"] = decodeSteps;
  j["ctx_limit"] = ctxLimit;
  j["block_size"] = blockSize;
  j["ttft_ms"] = ttftMs;
  j["prefill_ms"] = prefillMs;
  j["prefill_tok_s"] = prefillTokPerS;
  j["decode_ms"] = decodeMs;
  j["decode_tok_s"] = decodeTokPerS;
  j["kv_read_fraction"] = kvReadFraction;
  j["kv_bytes_per_token"] = kvBytesPerToken;
  j["kv_bytes_read"] = double(kvBytesRead);
  j["kv_bytes_dense"] = double(kvBytesDense);
  j["kv_cache_bytes"] = double(kvCacheBytes);
  j["memory_bytes"] = double(memoryBytes);
  j["device_memory_bytes"] = double(deviceMemoryBytes);
  j["blocks_selected"] = double(blocksSelected);
  j["rectifications"] = rectifications;
  j["rectify_ms"] = rectifyMs;
  j["step_ms"] = toArray(stepMs);
  j["rectified_steps"] = toArray(rectifiedSteps);
  j["block_hits"] = toArray(blockHits);
  // Heat spans grouped by passage, each span three numbers (start, end, hits): a 1 MB document's
  // 15,625 spans as objects took 1.1 MB of JSON in every answer's record.
  QJsonArray groups;
  for (qsizetype i = 0; i < heat.size();) {
    const HeatSpan& g = heat[i];
    QJsonArray runs;
    for (; i < heat.size() && heat[i].kind == g.kind && heat[i].index == g.index; ++i) {
      runs.append(heat[i].charStart);
      runs.append(heat[i].charEnd);
      runs.append(heat[i].hits);
    }
    groups.append(QJsonObject{{"kind", g.kind}, {"index", g.index}, {"spans", runs}});
  }
  j["heat_spans"] = groups;
  return j;
}

AnswerStats AnswerStats::fromJson(const QJsonObject& j) {
  AnswerStats s;
  s.mode = j["mode"].toString();
  s.model = j["model"].toString();
  s.backend = j["backend"].toString();
  s.stopReason = j["stop_reason"].toString();
  s.contextTokens = j["context_tokens"].toInt();
  s.reusedTokens = j["reused_tokens"].toInt();
  s.prefillTokens = j["prefill_tokens"].toInt();
  s.generatedTokens = j["generated_tokens"].toInt();
  s.decodeSteps = j["decode_steps"].toInt();
  s.ctxLimit = j["ctx_limit"].toInt();
  s.blockSize = j["block_size"].toInt();
  s.ttftMs = j["ttft_ms"].toDouble();
  s.prefillMs = j["prefill_ms"].toDouble();
  s.prefillTokPerS = j["prefill_tok_s"].toDouble();
  s.decodeMs = j["decode_ms"].toDouble();
  s.decodeTokPerS = j["decode_tok_s"].toDouble();
  s.kvReadFraction = j["kv_read_fraction"].toDouble(1.0);
  s.kvBytesPerToken = j["kv_bytes_per_token"].toDouble();
  s.kvBytesRead = qint64(j["kv_bytes_read"].toDouble());
  s.kvBytesDense = qint64(j["kv_bytes_dense"].toDouble());
  s.kvCacheBytes = qint64(j["kv_cache_bytes"].toDouble());
  s.memoryBytes = qint64(j["memory_bytes"].toDouble());
  s.deviceMemoryBytes = qint64(j["device_memory_bytes"].toDouble());
  s.blocksSelected = qint64(j["blocks_selected"].toDouble());
  s.rectifications = j["rectifications"].toInt();
  s.rectifyMs = j["rectify_ms"].toDouble();
  s.stepMs = doubles(j["step_ms"]);
  s.rectifiedSteps = ints(j["rectified_steps"]);
  for (const QJsonValue& v : j["block_hits"].toArray()) s.blockHits.append(quint32(v.toDouble()));
  for (const QJsonValue& v : j["heat_spans"].toArray()) {
    const QJsonObject g = v.toObject();
    const QString kind = g["kind"].toString();
    const int index = g["index"].toInt();
    const QJsonArray runs = g["spans"].toArray();
    for (qsizetype k = 0; k + 2 < runs.size(); k += 3)
      s.heat.append(
          HeatSpan{kind, index, runs[k].toInt(), runs[k + 1].toInt(), runs[k + 2].toDouble()});
  }
  for (const QJsonValue& v : j["heat"].toArray()) {  // records written before heat_spans
    const QJsonObject o = v.toObject();
    s.heat.append(HeatSpan{o["kind"].toString(), o["index"].toInt(), o["start"].toInt(),
                           o["end"].toInt(), o["hits"].toDouble()});
  }
  return s;
}

QVariantMap AnswerStats::toVariantMap() const { return toJson().toVariantMap(); }

QJsonObject CompareRun::toJson() const {
  return QJsonObject{{"mode", mode},
                     {"context_tokens", contextTokens},
                     {"generated_tokens", generatedTokens},
                     {"prefill_tok_s", prefillTokPerS},
                     {"decode_tok_s", decodeTokPerS},
                     {"ttft_ms", ttftMs},
                     {"kv_read_fraction", kvReadFraction},
                     {"step_ms", toArray(stepMs)},
                     {"rectified_steps", toArray(rectifiedSteps)}};
}

CompareRun CompareRun::fromJson(const QJsonObject& j) {
  CompareRun r;
  r.mode = j["mode"].toString();
  r.contextTokens = j["context_tokens"].toInt();
  r.generatedTokens = j["generated_tokens"].toInt();
  r.prefillTokPerS = j["prefill_tok_s"].toDouble();
  r.decodeTokPerS = j["decode_tok_s"].toDouble();
  r.ttftMs = j["ttft_ms"].toDouble();
  r.kvReadFraction = j["kv_read_fraction"].toDouble(1.0);
  r.stepMs = doubles(j["step_ms"]);
  r.rectifiedSteps = ints(j["rectified_steps"]);
  return r;
}

QJsonObject CompareResult::toJson() const {
  QJsonArray a;
  for (const CompareRun& r : runs) a.append(r.toJson());
  return QJsonObject{{"model", model}, {"backend", backend}, {"prompt", prompt}, {"runs", a}};
}

CompareResult CompareResult::fromJson(const QJsonObject& j) {
  CompareResult r;
  r.model = j["model"].toString();
  r.backend = j["backend"].toString();
  r.prompt = j["prompt"].toString();
  for (const QJsonValue& v : j["runs"].toArray()) r.runs.append(CompareRun::fromJson(v.toObject()));
  return r;
}

AnswerParts splitThinking(const QString& generated, bool startsInThinking) {
  const resa::ThinkingSplit s = resa::split_thinking(generated.toStdString(), startsInThinking);
  const bool opened = withoutLeadingBlanks(generated).startsWith(QLatin1String(kThinkOpen));
  return AnswerParts{QString::fromStdString(s.thinking), QString::fromStdString(s.answer),
                     s.thinking_done, startsInThinking || opened};
}

AnswerParts splitThinkingForDisplay(const QString& text, bool startsInThinking, bool streaming) {
  const QLatin1String open(kThinkOpen), close(kThinkClose);
  const QStringView rest = withoutLeadingBlanks(text);
  const bool reopened = rest.startsWith(open);
  const qsizetype closeAt = text.indexOf(close);
  const bool startsIn = startsInThinking || (closeAt >= 0 && !reopened);
  if (streaming && !rest.isEmpty() && rest.size() < open.size() && open.startsWith(rest))
    return AnswerParts{{}, {}, false, true};  // "<thi": the tag is still being written
  AnswerParts p =
      splitThinking(startsIn && reopened ? rest.mid(open.size()).toString() : text, startsIn);
  if (streaming && !p.thinkingDone) {
    for (qsizetype n = std::min(p.thinking.size(), close.size() - 1); n > 0; --n) {
      if (close.startsWith(QStringView(p.thinking).right(n))) {
        p.thinking.chop(n);
        break;
      }
    }
  }
  return p;
}

int thinkingWordCount(const QString& text) {
  int words = 0;
  bool inWord = false;
  for (const QChar c : text) {
    const QChar::Script script = c.script();
    if (script == QChar::Script_Han || script == QChar::Script_Hiragana ||
        script == QChar::Script_Katakana || script == QChar::Script_Hangul) {
      ++words;
      inWord = false;
    } else if (c.isSpace()) {
      inWord = false;
    } else if (!inWord) {
      ++words;
      inWord = true;
    }
  }
  return words;
}

void registerAppMetaTypes() {
  static std::once_flag once;
  std::call_once(once, [] {
    qRegisterMetaType<GenerationSettings>();
    qRegisterMetaType<ModelSource>();
    qRegisterMetaType<ModelInfo>();
    qRegisterMetaType<GenerateRequest>();
    qRegisterMetaType<ContextOverflow>();
    qRegisterMetaType<GenerationStart>();
    qRegisterMetaType<LiveStats>();
    qRegisterMetaType<RectificationInfo>();
    qRegisterMetaType<AnswerStats>();
    qRegisterMetaType<CompareRequest>();
    qRegisterMetaType<CompareRun>();
    qRegisterMetaType<CompareResult>();
  });
}

std::vector<int> utf16Offsets(const QByteArray& utf8) {
  std::vector<int> out(size_t(utf8.size()) + 1, 0);
  int units = 0;
  qsizetype i = 0;
  while (i < utf8.size()) {
    const auto lead = uchar(utf8[i]);
    const qsizetype len = lead < 0x80    ? 1
                          : lead >= 0xf0 ? 4
                          : lead >= 0xe0 ? 3
                          : lead >= 0xc0 ? 2
                                         : 1;
    units += len == 4 ? 2 : 1;  // 4-byte characters are surrogate pairs
    for (qsizetype j = 1; j <= len && i + j <= utf8.size(); ++j) out[size_t(i + j)] = units;
    out[size_t(i)] = units - (len == 4 ? 2 : 1);
    i += len;
  }
  return out;
}

}  // namespace resa::app
