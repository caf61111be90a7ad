// The conversation history (DESIGN.md "Storage"): one SQLite file in the user's application-data
// folder, WAL, foreign keys, schema version in PRAGMA user_version with forward migrations, one
// connection per thread, every write in a transaction. Conversations, messages (role, text,
// mode, statistics JSON; Regenerate keeps earlier answers as versions), documents, comparison
// runs, full-text search (FTS5) over titles and message text, export to Markdown and JSON.
//
// A file that is locked, read-only, corrupt or from a newer version does not stop the app:
// open() falls back to an in-memory database and warning() says which file, what is wrong and
// what to do. AnswerRecorder writes a streamed answer at least every second, so a crash loses
// at most the last second of text.
#pragma once

#include <QDateTime>
#include <QElapsedTimer>
#include <QJsonObject>
#include <QList>
#include <QMutex>
#include <QObject>
#include <QSet>
#include <QSqlDatabase>
#include <QString>
#include <QTimer>

#include <optional>

namespace resa::app {

struct ConversationRecord {
  qint64 id = 0;
  QString title;
  QDateTime created;
  QDateTime updated;
  int messageCount = 0;
};

struct MessageRecord {
  qint64 id = 0;
  qint64 conversationId = 0;
  QString role;  // "user", "assistant", "system"
  QString text;
  QString mode;          // decoding mode of an answer ("dense", "sparse", "resa"), else ""
  QJsonObject stats;     // AnswerStats::toJson() of an answer
  qint64 parentId = 0;   // an answer: the user message it answers
  int version = 1;       // an answer: 1, 2, ... per Regenerate of the same user message
  int versionCount = 1;  // an answer: how many versions its user message has
  bool current = true;   // the version shown in the conversation
  bool complete = true;  // false while streaming (or after a crash mid-answer)
  QDateTime created;
};

struct DocumentRecord {
  qint64 id = 0;
  qint64 conversationId = 0;
  QString name;
  QString text;
  int tokenCount = 0;
  QDateTime added;
};

struct ComparisonRecord {
  qint64 id = 0;
  qint64 conversationId = 0;  // 0: synthetic contexts
  QString prompt;
  QJsonObject result;  // CompareResult::toJson()
  QDateTime created;
};

struct SearchHit {
  qint64 conversationId = 0;
  qint64 messageId = 0;  // 0: the title matched
  QString title;
  QString snippet;  // matched terms wrapped in [ and ]
};

class ConversationStore {
 public:
  static constexpr int kSchemaVersion = 2;

  // `path` empty: defaultPath(). Nothing happens until open().
  explicit ConversationStore(const QString& path = {});
  ~ConversationStore();
  ConversationStore(const ConversationStore&) = delete;
  ConversationStore& operator=(const ConversationStore&) = delete;

  static QString defaultPath();  // AppDataLocation/conversations.sqlite

  // Opens (creating or migrating) the database. On failure it opens an in-memory database
  // instead, sets warning() and returns false; the store is usable either way.
  bool open();
  bool isPersistent() const { return persistent_; }
  QString warning() const { return warning_; }  // empty when all is well
  QString path() const { return path_; }
  QString lastError() const;  // the last failed operation's message (this thread)
  int schemaVersion() const;
  bool hasFullTextSearch() const { return fts_; }
  void setBusyTimeoutMs(int ms) { busyTimeoutMs_ = ms; }  // before open(); default 2000

  // Conversations, newest first. Functions return 0 / false on failure (see lastError()).
  qint64 createConversation(const QString& title);
  bool renameConversation(qint64 id, const QString& title);
  bool deleteConversation(qint64 id);  // with its messages, documents and comparisons
  std::optional<ConversationRecord> conversation(qint64 id) const;
  QList<ConversationRecord> conversations() const;

  // Messages, oldest first; only the current version of each answer unless allVersions.
  qint64 addMessage(qint64 conversationId, const QString& role, const QString& text,
                    const QString& mode = {}, const QJsonObject& stats = {});
  // An empty, incomplete answer to `userMessageId`. If that message already has answers (a
  // Regenerate), this one becomes the next version and the current one.
  qint64 beginAnswer(qint64 conversationId, qint64 userMessageId, const QString& mode);
  bool updateMessageText(qint64 messageId, const QString& text);  // streaming flush
  bool finishAnswer(qint64 messageId, const QString& text, const QString& mode,
                    const QJsonObject& stats);
  bool setCurrentVersion(qint64 answerId);
  // Deletes the message and every later one (Edit-and-resend of a user message).
  bool deleteMessagesFrom(qint64 messageId);
  std::optional<MessageRecord> message(qint64 id) const;
  QList<MessageRecord> messages(qint64 conversationId, bool allVersions = false) const;
  QList<MessageRecord> versions(qint64 userMessageId) const;  // answers of one user message

  // Documents attached to a conversation.
  qint64 addDocument(qint64 conversationId, const QString& name, const QString& text,
                     int tokenCount);
  bool removeDocument(qint64 documentId);
  // The exact count once the loaded model's tokenizer has measured the text.
  bool setDocumentTokenCount(qint64 documentId, int tokenCount);
  QList<DocumentRecord> documents(qint64 conversationId) const;

  // Compare view runs.
  qint64 addComparison(qint64 conversationId, const QString& prompt, const QJsonObject& result);
  QList<ComparisonRecord> comparisons(qint64 conversationId) const;  // -1: all

  // Full-text search over titles and message text: every word must occur (as a word prefix,
  // case-insensitive); newest conversations first. FTS5 when SQLite has it, else LIKE.
  QList<SearchHit> search(const QString& query, int limit = 50) const;

  QString exportMarkdown(qint64 conversationId) const;
  QJsonObject exportJson(qint64 conversationId) const;

  // Tests: creates a database file at an older schema version (the migrations up to
  // `version`), to check that open() migrates it. Returns an error message or "".
  static QString createAtVersion(const QString& path, int version);

 private:
  QSqlDatabase db() const;  // this thread's connection
  bool openAt(const QString& target, bool memory, QString* error);
  bool setError(const QString& what) const;
  void touch(QSqlDatabase& db, qint64 conversationId) const;

  QString path_;
  QString connectionPrefix_;
  QString target_;  // what connections open: the file, or a shared-cache memory URI
  bool memory_ = false;
  bool persistent_ = false;
  bool fts_ = false;
  int busyTimeoutMs_ = 2000;
  QString warning_;
  mutable QMutex mutex_;
  mutable QSet<QString> connections_;
};

// Records one streamed answer: append() collects the text, and it is written to the store at
// least every `flushIntervalMs` (a timer catches the tail when tokens stop), and in full by
// finish(). Lives on the thread of the store calls (the GUI thread).
class AnswerRecorder : public QObject {
  Q_OBJECT

 public:
  AnswerRecorder(ConversationStore* store, qint64 messageId, int flushIntervalMs = 500,
                 QObject* parent = nullptr);
  ~AnswerRecorder() override;  // flushes

  qint64 messageId() const { return messageId_; }
  const QString& text() const { return text_; }
  void append(const QString& chunk);
  bool flush();
  bool finish(const QString& fullText, const QString& mode, const QJsonObject& stats);

 private:
  ConversationStore* store_;
  qint64 messageId_;
  int intervalMs_;
  QString text_;
  bool dirty_ = false;
  bool finished_ = false;
  QElapsedTimer sinceFlush_;
  QTimer timer_;
};

}  // namespace resa::app
