#include "app/lib/conversation_store.h"

#include "app/lib/app_types.h"

#include <QDir>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QRegularExpression>
#include <QSqlError>
#include <QSqlQuery>
#include <QStandardPaths>
#include <QThread>
#include <QUuid>
#include <QVariant>

#include <atomic>

namespace resa::app {

namespace {

// Schema history. Each entry moves the database from version i to i + 1; a released entry is
// never edited (a new one is appended), so every earlier file can be migrated forward.
const QList<QStringList>& migrations() {
  static const QList<QStringList> m = {
      // v1: conversations, messages, documents.
      {"CREATE TABLE conversations(id INTEGER PRIMARY KEY, title TEXT NOT NULL, "
       "created TEXT NOT NULL, updated TEXT NOT NULL)",
       "CREATE TABLE messages(id INTEGER PRIMARY KEY, conversation_id INTEGER NOT NULL "
       "REFERENCES conversations(id) ON DELETE CASCADE, role TEXT NOT NULL, text TEXT NOT NULL, "
       "mode TEXT NOT NULL DEFAULT '', stats TEXT NOT NULL DEFAULT '{}', created TEXT NOT NULL)",
       "CREATE INDEX messages_by_conversation ON messages(conversation_id, id)",
       "CREATE TABLE documents(id INTEGER PRIMARY KEY, conversation_id INTEGER NOT NULL "
       "REFERENCES conversations(id) ON DELETE CASCADE, name TEXT NOT NULL, text TEXT NOT NULL, "
       "token_count INTEGER NOT NULL DEFAULT 0, created TEXT NOT NULL)"},
      // v2: answer versions (Regenerate), streaming state, comparison runs.
      {"ALTER TABLE messages ADD COLUMN parent_id INTEGER REFERENCES messages(id) "
       "ON DELETE CASCADE",
       "ALTER TABLE messages ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
       "ALTER TABLE messages ADD COLUMN current INTEGER NOT NULL DEFAULT 1",
       "ALTER TABLE messages ADD COLUMN complete INTEGER NOT NULL DEFAULT 1",
       // v1 answers answer the user message before them.
       "UPDATE messages SET parent_id = (SELECT max(u.id) FROM messages u WHERE "
       "u.conversation_id = messages.conversation_id AND u.role = 'user' AND u.id < messages.id) "
       "WHERE role = 'assistant'",
       "CREATE INDEX messages_by_parent ON messages(parent_id)",
       "CREATE TABLE comparison_runs(id INTEGER PRIMARY KEY, conversation_id INTEGER "
       "REFERENCES conversations(id) ON DELETE CASCADE, prompt TEXT NOT NULL, "
       "result TEXT NOT NULL, created TEXT NOT NULL)"},
  };
  return m;
}

// Full-text search tables, kept in sync by triggers; created when SQLite has FTS5 (also on a
// database migrated by a build without it).
const QStringList kFtsSchema = {
    "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(text, content='messages', "
    "content_rowid='id')",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_ins AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_del AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER IF NOT EXISTS messages_fts_upd AFTER UPDATE OF text ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE VIRTUAL TABLE IF NOT EXISTS conversations_fts USING fts5(title, "
    "content='conversations', content_rowid='id')",
    "CREATE TRIGGER IF NOT EXISTS conversations_fts_ins AFTER INSERT ON conversations BEGIN "
    "INSERT INTO conversations_fts(rowid, title) VALUES (new.id, new.title); END",
    "CREATE TRIGGER IF NOT EXISTS conversations_fts_del AFTER DELETE ON conversations BEGIN "
    "INSERT INTO conversations_fts(conversations_fts, rowid, title) "
    "VALUES ('delete', old.id, old.title); END",
    "CREATE TRIGGER IF NOT EXISTS conversations_fts_upd AFTER UPDATE OF title ON conversations "
    "BEGIN INSERT INTO conversations_fts(conversations_fts, rowid, title) "
    "VALUES ('delete', old.id, old.title); "
    "INSERT INTO conversations_fts(rowid, title) VALUES (new.id, new.title); END",
};

std::atomic<quint64> g_threadCounter{0};
std::atomic<quint64> g_storeCounter{0};
thread_local quint64 t_threadId = 0;

QString threadTag() {
  if (t_threadId == 0) t_threadId = ++g_threadCounter;
  return QString::number(t_threadId);
}

QString now() { return QDateTime::currentDateTimeUtc().toString(Qt::ISODateWithMs); }
QDateTime parseTime(const QVariant& v) {
  return QDateTime::fromString(v.toString(), Qt::ISODateWithMs);
}

thread_local QString t_lastError;

// A null QString binds as SQL NULL; the text columns are NOT NULL.
QString notNull(const QString& s) { return s.isNull() ? QStringLiteral("") : s; }

// One transaction; rolls back unless commit() succeeded.
class Transaction {
 public:
  explicit Transaction(QSqlDatabase& db) : db_(db), ok_(db.transaction()) {}
  ~Transaction() {
    if (ok_ && !done_) db_.rollback();
  }
  bool ok() const { return ok_; }
  bool commit() {
    done_ = db_.commit();
    return done_;
  }

 private:
  QSqlDatabase& db_;
  bool ok_;
  bool done_ = false;
};

bool exec(QSqlDatabase& db, const QString& sql, QString* error) {
  QSqlQuery q(db);
  if (!q.exec(sql)) {
    if (error) *error = q.lastError().text();
    return false;
  }
  return true;
}

int userVersion(QSqlDatabase& db, QSqlError* err) {
  QSqlQuery q(db);
  if (!q.exec("PRAGMA user_version") || !q.next()) {
    if (err) *err = q.lastError();
    return -1;
  }
  return q.value(0).toInt();
}

bool migrate(QSqlDatabase& db, int from, int to, QString* error) {
  for (int v = from; v < to; ++v) {
    Transaction t(db);
    if (!t.ok()) {
      *error = db.lastError().text();
      return false;
    }
    for (const QString& sql : migrations()[v]) {
      if (!exec(db, sql, error)) {
        *error = QStringLiteral("migration to schema version %1 failed: %2").arg(v + 1).arg(*error);
        return false;
      }
    }
    if (!exec(db, QStringLiteral("PRAGMA user_version = %1").arg(v + 1), error) || !t.commit()) {
      if (error->isEmpty()) *error = db.lastError().text();
      return false;
    }
  }
  return true;
}

bool hasFts5(QSqlDatabase& db) {
  QSqlQuery q(db);
  return q.exec("SELECT sqlite_compileoption_used('ENABLE_FTS5')") && q.next() &&
         q.value(0).toInt() == 1;
}

bool ensureFts(QSqlDatabase& db, QString* error) {
  QSqlQuery q(db);
  const bool existed =
      q.exec("SELECT 1 FROM sqlite_master WHERE name = 'messages_fts'") && q.next();
  Transaction t(db);
  for (const QString& sql : kFtsSchema) {
    if (!exec(db, sql, error)) return false;
  }
  if (!existed) {
    // Index what earlier versions (or an FTS-less build) stored.
    if (!exec(db, "INSERT INTO messages_fts(messages_fts) VALUES('rebuild')", error) ||
        !exec(db, "INSERT INTO conversations_fts(conversations_fts) VALUES('rebuild')", error))
      return false;
  }
  return t.commit();
}

// FTS5 query from plain words: each becomes a quoted prefix term, so punctuation is literal.
QString ftsQuery(const QString& text) {
  QStringList terms;
  for (QString w : text.split(QRegularExpression("\\s+"), Qt::SkipEmptyParts)) {
    w.replace('"', "\"\"");
    terms << '"' + w + "\"*";
  }
  return terms.join(' ');
}

QString describe(const QString& file, const QSqlError& e, bool* locked = nullptr) {
  const QString code = e.nativeErrorCode();
  const QString sqlite = e.databaseText().isEmpty() ? e.text() : e.databaseText();
  const QString memoryOnly = QStringLiteral(
      "This session keeps conversations in memory only; they are lost when you quit.");
  if (code == "5" || code == "6" || sqlite.contains("locked")) {
    if (locked) *locked = true;
    return QStringLiteral(
               "The history database %1 is locked by another program (is another "
               "ReSA Chat running?). %2 Close the other program and restart.")
        .arg(file, memoryOnly);
  }
  if (code == "8" || sqlite.contains("readonly") || sqlite.contains("read-only")) {
    return QStringLiteral(
               "The history database %1 is read-only (SQLite: %2). %3 Make the file "
               "and its folder writable (chmod u+w) and restart.")
        .arg(file, sqlite, memoryOnly);
  }
  if (code == "11" || code == "26" || sqlite.contains("not a database") ||
      sqlite.contains("malformed")) {
    return QStringLiteral(
               "The history database %1 is damaged (SQLite: %2). %3 Move the file "
               "aside (keep it for recovery) or restore a backup, then restart to "
               "begin a new history.")
        .arg(file, sqlite, memoryOnly);
  }
  return QStringLiteral(
             "The history database %1 cannot be used (SQLite: %2). %3 Check the file "
             "and its folder, then restart.")
      .arg(file, sqlite, memoryOnly);
}

MessageRecord readMessage(const QSqlQuery& q) {
  MessageRecord m;
  m.id = q.value(0).toLongLong();
  m.conversationId = q.value(1).toLongLong();
  m.role = q.value(2).toString();
  m.text = q.value(3).toString();
  m.mode = q.value(4).toString();
  m.stats = QJsonDocument::fromJson(q.value(5).toString().toUtf8()).object();
  m.parentId = q.value(6).toLongLong();
  m.version = q.value(7).toInt();
  m.current = q.value(8).toInt() != 0;
  m.complete = q.value(9).toInt() != 0;
  m.created = parseTime(q.value(10));
  m.versionCount = std::max(1, q.value(11).toInt());
  return m;
}

const char* kMessageColumns =
    "m.id, m.conversation_id, m.role, m.text, m.mode, m.stats, m.parent_id, m.version, "
    "m.current, m.complete, m.created, "
    "(SELECT count(*) FROM messages v WHERE m.parent_id IS NOT NULL AND v.parent_id = "
    "m.parent_id AND v.role = 'assistant')";

}  // namespace

ConversationStore::ConversationStore(const QString& path)
    : path_(path.isEmpty() ? defaultPath() : path),
      connectionPrefix_(QStringLiteral("resa_store_%1").arg(++g_storeCounter)) {}

ConversationStore::~ConversationStore() {
  QMutexLocker lock(&mutex_);
  for (const QString& name : std::as_const(connections_)) QSqlDatabase::removeDatabase(name);
}

QString ConversationStore::defaultPath() {
  return QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) +
         QStringLiteral("/conversations.sqlite");
}

QString ConversationStore::lastError() const { return t_lastError; }

bool ConversationStore::setError(const QString& what) const {
  t_lastError = what;
  return false;
}

QSqlDatabase ConversationStore::db() const {
  const QString name = connectionPrefix_ + "_" + threadTag();
  if (QSqlDatabase::contains(name)) return QSqlDatabase::database(name, false);
  QSqlDatabase db = QSqlDatabase::addDatabase("QSQLITE", name);
  db.setDatabaseName(target_);
  QString options = QStringLiteral("QSQLITE_BUSY_TIMEOUT=%1").arg(busyTimeoutMs_);
  if (memory_) options += ";QSQLITE_OPEN_URI";
  db.setConnectOptions(options);
  if (db.open()) {
    QSqlQuery q(db);
    q.exec("PRAGMA foreign_keys = ON");
  }
  QMutexLocker lock(&mutex_);
  connections_.insert(name);
  return db;
}

bool ConversationStore::openAt(const QString& target, bool memory, QString* error) {
  target_ = target;
  memory_ = memory;
  QSqlDatabase d = db();
  if (!d.isOpen()) {
    *error = describe(path_, d.lastError());
    return false;
  }
  QSqlError e;
  int version = userVersion(d, &e);
  if (version < 0) {
    *error = describe(path_, e);
    return false;
  }
  if (version > kSchemaVersion) {
    *error = QStringLiteral(
                 "The history database %1 was written by a newer ReSA Chat (schema "
                 "version %2; this one knows up to %3). This session keeps "
                 "conversations in memory only. Use the newer ReSA Chat, or move the "
                 "file aside to begin a new history.")
                 .arg(path_)
                 .arg(version)
                 .arg(kSchemaVersion);
    return false;
  }
  if (!memory) {
    QSqlQuery q(d);
    if (!q.exec("PRAGMA journal_mode = WAL") || !q.next()) {
      *error = describe(path_, q.lastError());
      return false;
    }
    if (q.value(0).toString().compare("wal", Qt::CaseInsensitive) != 0) {
      // SQLite keeps the old mode when it cannot write the -wal file next to the database.
      QSqlError ro(QString(), "attempt to write a readonly database", QSqlError::StatementError,
                   "8");
      *error = describe(path_, ro);
      return false;
    }
    q.exec("PRAGMA synchronous = NORMAL");  // WAL: durable at checkpoints, never corrupt
    if (!q.exec("PRAGMA quick_check") || !q.next() || q.value(0).toString() != "ok") {
      QSqlError bad(QString(),
                    q.lastError().isValid() ? q.lastError().databaseText()
                                            : "integrity check: " + q.value(0).toString(),
                    QSqlError::StatementError, "11");
      *error = describe(path_, bad);
      return false;
    }
  }
  QString why;
  if (!migrate(d, version, kSchemaVersion, &why)) {
    QSqlError m(QString(), why, QSqlError::StatementError, d.lastError().nativeErrorCode());
    *error = describe(path_, m);
    return false;
  }
  fts_ = hasFts5(d) && ensureFts(d, &why);
  return true;
}

bool ConversationStore::open() {
  QString error;
  const QFileInfo info(path_);
  bool ok = false;
  if (!QDir().mkpath(info.absolutePath())) {
    error = QStringLiteral(
                "Cannot create the folder %1 for the history database. This session "
                "keeps conversations in memory only. Check the folder's permissions "
                "and restart.")
                .arg(info.absolutePath());
  } else if (info.exists() && !info.isWritable()) {
    QSqlError ro(QString(), "the file is not writable", QSqlError::ConnectionError, "8");
    error = describe(path_, ro);
  } else if (!QFileInfo(info.absolutePath()).isWritable()) {
    QSqlError ro(QString(), "its folder is not writable", QSqlError::ConnectionError, "8");
    error = describe(path_, ro);
  } else {
    ok = openAt(path_, false, &error);
  }
  if (ok) {
    persistent_ = true;
    warning_.clear();
    return true;
  }
  // Drop this thread's connection to the file and fall back to a shared in-memory database.
  {
    const QString name = connectionPrefix_ + "_" + threadTag();
    QMutexLocker lock(&mutex_);
    if (connections_.remove(name)) QSqlDatabase::removeDatabase(name);
  }
  persistent_ = false;
  warning_ = error;
  QString memError;
  const QString uri = QStringLiteral("file:%1?mode=memory&cache=shared")
                          .arg(connectionPrefix_ + QUuid::createUuid().toString(QUuid::Id128));
  if (!openAt(uri, true, &memError))
    warning_ += " (The in-memory fallback failed too: " + memError + ")";
  return false;
}

int ConversationStore::schemaVersion() const {
  QSqlDatabase d = db();
  return userVersion(d, nullptr);
}

void ConversationStore::touch(QSqlDatabase& d, qint64 conversationId) const {
  QSqlQuery q(d);
  q.prepare("UPDATE conversations SET updated = ? WHERE id = ?");
  q.addBindValue(now());
  q.addBindValue(conversationId);
  q.exec();
}

qint64 ConversationStore::createConversation(const QString& title) {
  QSqlDatabase d = db();
  Transaction t(d);
  QSqlQuery q(d);
  q.prepare("INSERT INTO conversations(title, created, updated) VALUES (?, ?, ?)");
  const QString ts = now();
  q.addBindValue(notNull(title));
  q.addBindValue(ts);
  q.addBindValue(ts);
  if (!q.exec()) return setError(q.lastError().text()), 0;
  const qint64 id = q.lastInsertId().toLongLong();
  if (!t.commit()) return setError(d.lastError().text()), 0;
  return id;
}

bool ConversationStore::renameConversation(qint64 id, const QString& title) {
  QSqlDatabase d = db();
  Transaction t(d);
  QSqlQuery q(d);
  q.prepare("UPDATE conversations SET title = ?, updated = ? WHERE id = ?");
  q.addBindValue(notNull(title));
  q.addBindValue(now());
  q.addBindValue(id);
  if (!q.exec()) return setError(q.lastError().text());
  if (q.numRowsAffected() != 1) return setError(QStringLiteral("no conversation %1").arg(id));
  return t.commit() || setError(d.lastError().text());
}

bool ConversationStore::deleteConversation(qint64 id) {
  QSqlDatabase d = db();
  Transaction t(d);
  QSqlQuery q(d);
  // Answers reference user messages of the same conversation: drop the links first so the
  // cascade does not depend on deletion order.
  q.prepare("UPDATE messages SET parent_id = NULL WHERE conversation_id = ?");
  q.addBindValue(id);
  if (!q.exec()) return setError(q.lastError().text());
  q.prepare("DELETE FROM conversations WHERE id = ?");
  q.addBindValue(id);
  if (!q.exec()) return setError(q.lastError().text());
  if (q.numRowsAffected() != 1) return setError(QStringLiteral("no conversation %1").arg(id));
  return t.commit() || setError(d.lastError().text());
}

std::optional<ConversationRecord> ConversationStore::conversation(qint64 id) const {
  QSqlDatabase d = db();
  QSqlQuery q(d);
  q.prepare(
      "SELECT id, title, created, updated, (SELECT count(*) FROM messages m WHERE "
      "m.conversation_id = c.id AND m.current = 1) FROM conversations c WHERE id = ?");
  q.addBindValue(id);
  if (!q.exec() || !q.next()) return std::nullopt;
  return ConversationRecord{q.value(0).toLongLong(), q.value(1).toString(), parseTime(q.value(2)),
                            parseTime(q.value(3)), q.value(4).toInt()};
}

QList<ConversationRecord> ConversationStore::conversations() const {
  QSqlDatabase d = db();
  QSqlQuery q(d);
  QList<ConversationRecord> out;
  if (!q.exec("SELECT id, title, created, updated, (SELECT count(*) FROM messages m WHERE "
              "m.conversation_id = c.id AND m.current = 1) FROM conversations c "
              "ORDER BY updated DESC, (SELECT max(m.id) FROM messages m WHERE m.conversation_id = "
              "c.id) DESC, id DESC")) {
    setError(q.lastError().text());
    return out;
  }
  while (q.next())
    out.append(ConversationRecord{q.value(0).toLongLong(), q.value(1).toString(),
                                  parseTime(q.value(2)), parseTime(q.value(3)),
                                  q.value(4).toInt()});
  return out;
}

qint64 ConversationStore::addMessage(qint64 conversationId, const QString& role,
                                     const QString& text, const QString& mode,
                                     const QJsonObject& stats) {
  QSqlDatabase d = db();
  Transaction t(d);
  QSqlQuery q(d);
  qint64 parent = 0;
  if (role == "assistant") {
    // An answer added in one piece answers the last user message.
    q.prepare("SELECT max(id) FROM messages WHERE conversation_id = ? AND role = 'user'");
    q.addBindValue(conversationId);
    if (q.exec() && q.next()) parent = q.value(0).toLongLong();
  }
  q.prepare(
      "INSERT INTO messages(conversation_id, role, text, mode, stats, created, parent_id) "
      "VALUES (?, ?, ?, ?, ?, ?, ?)");
  q.addBindValue(conversationId);
  q.addBindValue(notNull(role));
  q.addBindValue(notNull(text));
  q.addBindValue(notNull(mode));
  q.addBindValue(QString::fromUtf8(QJsonDocument(stats).toJson(QJsonDocument::Compact)));
  q.addBindValue(now());
  q.addBindValue(parent > 0 ? QVariant(parent) : QVariant(QMetaType(QMetaType::LongLong)));
  if (!q.exec()) return setError(q.lastError().text()), 0;
  const qint64 id = q.lastInsertId().toLongLong();
  touch(d, conversationId);
  if (!t.commit()) return setError(d.lastError().text()), 0;
  return id;
}

qint64 ConversationStore::beginAnswer(qint64 conversationId, qint64 userMessageId,
                                      const QString& mode) {
  QSqlDatabase d = db();
  Transaction t(d);
  QSqlQuery q(d);
  q.prepare("SELECT coalesce(max(version), 0) FROM messages WHERE parent_id = ?");
  q.addBindValue(userMessageId);
  if (!q.exec() || !q.next()) return setError(q.lastError().text()), 0;
  const int version = q.value(0).toInt() + 1;
  q.prepare("UPDATE messages SET current = 0 WHERE parent_id = ?");
  q.addBindValue(userMessageId);
  if (!q.exec()) return setError(q.lastError().text()), 0;
  q.prepare(
      "INSERT INTO messages(conversation_id, role, text, mode, stats, created, parent_id, "
      "version, current, complete) VALUES (?, 'assistant', '', ?, '{}', ?, ?, ?, 1, 0)");
  q.addBindValue(conversationId);
  q.addBindValue(notNull(mode));
  q.addBindValue(now());
  q.addBindValue(userMessageId > 0 ? QVariant(userMessageId)
                                   : QVariant(QMetaType(QMetaType::LongLong)));
  q.addBindValue(version);
  if (!q.exec()) return setError(q.lastError().text()), 0;
  const qint64 id = q.lastInsertId().toLongLong();
  touch(d, conversationId);
  if (!t.commit()) return setError(d.lastError().text()), 0;
  return id;
}

bool ConversationStore::updateMessageText(qint64 messageId, const QString& text) {
  QSqlDatabase d = db();
  Transaction t(d);
  QSqlQuery q(d);
  q.prepare("UPDATE messages SET text = ? WHERE id = ?");
  q.addBindValue(notNull(text));
  q.addBindValue(messageId);
  if (!q.exec()) return setError(q.lastError().text());
  if (q.numRowsAffected() != 1) return setError(QStringLiteral("no message %1").arg(messageId));
  return t.commit() || setError(d.lastError().text());
}

bool ConversationStore::finishAnswer(qint64 messageId, const QString& text, const QString& mode,
                                     const QJsonObject& stats) {
  QSqlDatabase d = db();
  Transaction t(d);
  QSqlQuery q(d);
  q.prepare("UPDATE messages SET text = ?, mode = ?, stats = ?, complete = 1 WHERE id = ?");
  q.addBindValue(notNull(text));
  q.addBindValue(notNull(mode));
  q.addBindValue(QString::fromUtf8(QJsonDocument(stats).toJson(QJsonDocument::Compact)));
  q.addBindValue(messageId);
  if (!q.exec()) return setError(q.lastError().text());
  if (q.numRowsAffected() != 1) return setError(QStringLiteral("no message %1").arg(messageId));
  q.prepare(
      "UPDATE conversations SET updated = ? WHERE id = (SELECT conversation_id FROM "
      "messages WHERE id = ?)");
  q.addBindValue(now());
  q.addBindValue(messageId);
  q.exec();
  return t.commit() || setError(d.lastError().text());
}

bool ConversationStore::setCurrentVersion(qint64 answerId) {
  QSqlDatabase d = db();
  Transaction t(d);
  QSqlQuery q(d);
  q.prepare(
      "UPDATE messages SET current = (id = ?) WHERE parent_id = (SELECT parent_id FROM "
      "messages WHERE id = ?)");
  q.addBindValue(answerId);
  q.addBindValue(answerId);
  if (!q.exec()) return setError(q.lastError().text());
  if (q.numRowsAffected() < 1) return setError(QStringLiteral("no answer %1").arg(answerId));
  return t.commit() || setError(d.lastError().text());
}

bool ConversationStore::deleteMessagesFrom(qint64 messageId) {
  QSqlDatabase d = db();
  Transaction t(d);
  QSqlQuery q(d);
  q.prepare(
      "DELETE FROM messages WHERE conversation_id = (SELECT conversation_id FROM messages "
      "WHERE id = ?) AND id >= ?");
  q.addBindValue(messageId);
  q.addBindValue(messageId);
  if (!q.exec()) return setError(q.lastError().text());
  return t.commit() || setError(d.lastError().text());
}

std::optional<MessageRecord> ConversationStore::message(qint64 id) const {
  QSqlDatabase d = db();
  QSqlQuery q(d);
  q.prepare(QStringLiteral("SELECT %1 FROM messages m WHERE m.id = ?").arg(kMessageColumns));
  q.addBindValue(id);
  if (!q.exec() || !q.next()) return std::nullopt;
  return readMessage(q);
}

QList<MessageRecord> ConversationStore::messages(qint64 conversationId, bool allVersions) const {
  QSqlDatabase d = db();
  QSqlQuery q(d);
  q.prepare(QStringLiteral("SELECT %1 FROM messages m WHERE m.conversation_id = ? %2 "
                           "ORDER BY m.id")
                .arg(kMessageColumns, allVersions ? "" : "AND m.current = 1"));
  q.addBindValue(conversationId);
  QList<MessageRecord> out;
  if (!q.exec()) {
    setError(q.lastError().text());
    return out;
  }
  while (q.next()) out.append(readMessage(q));
  return out;
}

QList<MessageRecord> ConversationStore::versions(qint64 userMessageId) const {
  QSqlDatabase d = db();
  QSqlQuery q(d);
  q.prepare(QStringLiteral("SELECT %1 FROM messages m WHERE m.parent_id = ? ORDER BY m.version")
                .arg(kMessageColumns));
  q.addBindValue(userMessageId);
  QList<MessageRecord> out;
  if (!q.exec()) {
    setError(q.lastError().text());
    return out;
  }
  while (q.next()) out.append(readMessage(q));
  return out;
}

qint64 ConversationStore::addDocument(qint64 conversationId, const QString& name,
                                      const QString& text, int tokenCount) {
  QSqlDatabase d = db();
  Transaction t(d);
  QSqlQuery q(d);
  q.prepare(
      "INSERT INTO documents(conversation_id, name, text, token_count, created) "
      "VALUES (?, ?, ?, ?, ?)");
  q.addBindValue(conversationId);
  q.addBindValue(notNull(name));
  q.addBindValue(notNull(text));
  q.addBindValue(tokenCount);
  q.addBindValue(now());
  if (!q.exec()) return setError(q.lastError().text()), 0;
  const qint64 id = q.lastInsertId().toLongLong();
  touch(d, conversationId);
  if (!t.commit()) return setError(d.lastError().text()), 0;
  return id;
}

bool ConversationStore::removeDocument(qint64 documentId) {
  QSqlDatabase d = db();
  Transaction t(d);
  QSqlQuery q(d);
  q.prepare("DELETE FROM documents WHERE id = ?");
  q.addBindValue(documentId);
  if (!q.exec()) return setError(q.lastError().text());
  if (q.numRowsAffected() != 1) return setError(QStringLiteral("no document %1").arg(documentId));
  return t.commit() || setError(d.lastError().text());
}

bool ConversationStore::setDocumentTokenCount(qint64 documentId, int tokenCount) {
  QSqlDatabase d = db();
  Transaction t(d);
  QSqlQuery q(d);
  q.prepare("UPDATE documents SET token_count = ? WHERE id = ?");
  q.addBindValue(tokenCount);
  q.addBindValue(documentId);
  if (!q.exec()) return setError(q.lastError().text());
  if (q.numRowsAffected() != 1) return setError(QStringLiteral("no document %1").arg(documentId));
  return t.commit() || setError(d.lastError().text());
}

QList<DocumentRecord> ConversationStore::documents(qint64 conversationId) const {
  QSqlDatabase d = db();
  QSqlQuery q(d);
  q.prepare(
      "SELECT id, conversation_id, name, text, token_count, created FROM documents "
      "WHERE conversation_id = ? ORDER BY id");
  q.addBindValue(conversationId);
  QList<DocumentRecord> out;
  if (!q.exec()) {
    setError(q.lastError().text());
    return out;
  }
  while (q.next())
    out.append(DocumentRecord{q.value(0).toLongLong(), q.value(1).toLongLong(),
                              q.value(2).toString(), q.value(3).toString(), q.value(4).toInt(),
                              parseTime(q.value(5))});
  return out;
}

qint64 ConversationStore::addComparison(qint64 conversationId, const QString& prompt,
                                        const QJsonObject& result) {
  QSqlDatabase d = db();
  Transaction t(d);
  QSqlQuery q(d);
  q.prepare(
      "INSERT INTO comparison_runs(conversation_id, prompt, result, created) "
      "VALUES (?, ?, ?, ?)");
  q.addBindValue(conversationId > 0 ? QVariant(conversationId)
                                    : QVariant(QMetaType(QMetaType::LongLong)));
  q.addBindValue(notNull(prompt));
  q.addBindValue(QString::fromUtf8(QJsonDocument(result).toJson(QJsonDocument::Compact)));
  q.addBindValue(now());
  if (!q.exec()) return setError(q.lastError().text()), 0;
  const qint64 id = q.lastInsertId().toLongLong();
  if (!t.commit()) return setError(d.lastError().text()), 0;
  return id;
}

QList<ComparisonRecord> ConversationStore::comparisons(qint64 conversationId) const {
  QSqlDatabase d = db();
  QSqlQuery q(d);
  if (conversationId < 0) {
    q.prepare(
        "SELECT id, conversation_id, prompt, result, created FROM comparison_runs "
        "ORDER BY id");
  } else {
    q.prepare(
        "SELECT id, conversation_id, prompt, result, created FROM comparison_runs "
        "WHERE coalesce(conversation_id, 0) = ? ORDER BY id");
    q.addBindValue(conversationId);
  }
  QList<ComparisonRecord> out;
  if (!q.exec()) {
    setError(q.lastError().text());
    return out;
  }
  while (q.next())
    out.append(ComparisonRecord{
        q.value(0).toLongLong(), q.value(1).toLongLong(), q.value(2).toString(),
        QJsonDocument::fromJson(q.value(3).toString().toUtf8()).object(), parseTime(q.value(4))});
  return out;
}

QList<SearchHit> ConversationStore::search(const QString& query, int limit) const {
  QList<SearchHit> out;
  const QStringList words = query.split(QRegularExpression("\\s+"), Qt::SkipEmptyParts);
  if (words.isEmpty()) return out;
  QSqlDatabase d = db();
  QSqlQuery q(d);
  if (fts_) {
    const QString match = ftsQuery(query);
    q.prepare(
        "SELECT c.id, 0, c.title, highlight(conversations_fts, 0, '[', ']') "
        "FROM conversations_fts JOIN conversations c ON c.id = conversations_fts.rowid "
        "WHERE conversations_fts MATCH ? ORDER BY c.updated DESC LIMIT ?");
    q.addBindValue(match);
    q.addBindValue(limit);
    if (q.exec()) {
      while (q.next())
        out.append(
            SearchHit{q.value(0).toLongLong(), 0, q.value(2).toString(), q.value(3).toString()});
    }
    q.prepare(
        "SELECT m.conversation_id, m.id, c.title, "
        "snippet(messages_fts, 0, '[', ']', '…', 12) FROM messages_fts "
        "JOIN messages m ON m.id = messages_fts.rowid "
        "JOIN conversations c ON c.id = m.conversation_id "
        "WHERE messages_fts MATCH ? AND m.current = 1 "
        "ORDER BY c.updated DESC, m.id LIMIT ?");
    q.addBindValue(match);
    q.addBindValue(limit);
  } else {
    QStringList conds;
    for (int i = 0; i < words.size(); ++i) conds << "m.text LIKE ? ESCAPE '\\'";
    q.prepare(QStringLiteral("SELECT m.conversation_id, m.id, c.title, substr(m.text, 1, 120) "
                             "FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                             "WHERE %1 AND m.current = 1 ORDER BY c.updated DESC, m.id LIMIT ?")
                  .arg(conds.join(" AND ")));
    for (QString w : words) {
      w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_");
      q.addBindValue('%' + w + '%');
    }
    q.addBindValue(limit);
    // Titles, the same way.
    QSqlQuery t(d);
    QStringList tconds;
    for (int i = 0; i < words.size(); ++i) tconds << "title LIKE ? ESCAPE '\\'";
    t.prepare(QStringLiteral("SELECT id, title FROM conversations WHERE %1 ORDER BY updated DESC")
                  .arg(tconds.join(" AND ")));
    for (QString w : words) {
      w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_");
      t.addBindValue('%' + w + '%');
    }
    if (t.exec()) {
      while (t.next())
        out.append(
            SearchHit{t.value(0).toLongLong(), 0, t.value(1).toString(), t.value(1).toString()});
    }
  }
  if (!q.exec()) {
    setError(q.lastError().text());
    return out;
  }
  while (q.next())
    out.append(SearchHit{q.value(0).toLongLong(), q.value(1).toLongLong(), q.value(2).toString(),
                         q.value(3).toString()});
  return out;
}

namespace {

// A reasoning model's answer for Markdown: its thinking (the text up to </think>, tags and all)
// folded into a <details> block that renderers show collapsed, then the answer.
QString assistantMarkdown(const QString& text) {
  const AnswerParts p = splitThinkingForDisplay(text, false, false);
  if (!p.hasThinking) return text;
  const QString summary =
      p.thinkingDone
          ? QStringLiteral("Thinking (%1 words)").arg(thinkingWordCount(p.thinking))
          : QStringLiteral("Thinking (unfinished, %1 words)").arg(thinkingWordCount(p.thinking));
  QString out =
      "<details><summary>" + summary + "</summary>\n\n" + p.thinking.trimmed() + "\n\n</details>";
  const QString answer = p.answer.trimmed();
  if (!answer.isEmpty()) out += "\n\n" + answer;
  return out;
}

}  // namespace

QString ConversationStore::exportMarkdown(qint64 conversationId) const {
  const auto conv = conversation(conversationId);
  if (!conv) return {};
  QString md = QStringLiteral("# %1\n\n*Exported from ReSA Chat on %2.*\n\n")
                   .arg(conv->title, QDateTime::currentDateTime().toString(Qt::ISODate));
  const QList<DocumentRecord> docs = documents(conversationId);
  if (!docs.isEmpty()) {
    md += "## Documents\n\n";
    for (const DocumentRecord& doc : docs)
      md += QStringLiteral("- %1 (%2 tokens)\n").arg(doc.name).arg(doc.tokenCount);
    md += "\n";
  }
  for (const MessageRecord& m : messages(conversationId)) {
    if (m.role == "assistant") {
      QString line = "### Assistant";
      QStringList facts;
      if (!m.mode.isEmpty()) facts << m.mode;
      if (m.stats.contains("decode_tok_s"))
        facts << QStringLiteral("%1 tok/s").arg(m.stats["decode_tok_s"].toDouble(), 0, 'f', 1);
      if (m.stats.contains("kv_read_fraction") && m.mode != "dense")
        facts << QStringLiteral("%1% of KV read")
                     .arg(100.0 * m.stats["kv_read_fraction"].toDouble(), 0, 'f', 0);
      if (m.versionCount > 1)
        facts << QStringLiteral("version %1 of %2").arg(m.version).arg(m.versionCount);
      if (!m.complete) facts << "incomplete";
      if (!facts.isEmpty()) line += " (" + facts.join(", ") + ")";
      md += line + "\n\n" + assistantMarkdown(m.text) + "\n\n";
    } else {
      md += (m.role == "user" ? "### User\n\n" : "### " + m.role + "\n\n") + m.text + "\n\n";
    }
  }
  return md;
}

QJsonObject ConversationStore::exportJson(qint64 conversationId) const {
  const auto conv = conversation(conversationId);
  if (!conv) return {};
  QJsonArray docs;
  for (const DocumentRecord& doc : documents(conversationId))
    docs.append(QJsonObject{{"name", doc.name},
                            {"token_count", doc.tokenCount},
                            {"text", doc.text},
                            {"added", doc.added.toString(Qt::ISODateWithMs)}});
  QJsonArray msgs;
  for (const MessageRecord& m : messages(conversationId, true)) {
    QJsonObject o{{"id", m.id},
                  {"role", m.role},
                  {"text", m.text},
                  {"created", m.created.toString(Qt::ISODateWithMs)}};
    if (m.role == "assistant") {
      o["mode"] = m.mode;
      o["stats"] = m.stats;
      o["version"] = m.version;
      o["current"] = m.current;
      o["complete"] = m.complete;
      if (m.parentId) o["answers"] = m.parentId;
    }
    msgs.append(o);
  }
  return QJsonObject{{"format", "resa-chat-conversation"},
                     {"format_version", 1},
                     {"title", conv->title},
                     {"created", conv->created.toString(Qt::ISODateWithMs)},
                     {"updated", conv->updated.toString(Qt::ISODateWithMs)},
                     {"documents", docs},
                     {"messages", msgs}};
}

QString ConversationStore::createAtVersion(const QString& path, int version) {
  const QString name = QStringLiteral("resa_store_create_%1").arg(++g_storeCounter);
  QString error;
  {
    QSqlDatabase d = QSqlDatabase::addDatabase("QSQLITE", name);
    d.setDatabaseName(path);
    if (!d.open()) {
      error = d.lastError().text();
    } else {
      exec(d, "PRAGMA foreign_keys = ON", nullptr);
      const int from = std::max(0, userVersion(d, nullptr));
      if (!migrate(d, from, std::clamp(version, 0, kSchemaVersion), &error) && error.isEmpty())
        error = "migration failed";
      d.close();
    }
  }
  QSqlDatabase::removeDatabase(name);
  return error;
}

// --- AnswerRecorder ----------------------------------------------------------------------------

AnswerRecorder::AnswerRecorder(ConversationStore* store, qint64 messageId, int flushIntervalMs,
                               QObject* parent)
    : QObject(parent), store_(store), messageId_(messageId), intervalMs_(flushIntervalMs) {
  timer_.setSingleShot(true);
  connect(&timer_, &QTimer::timeout, this, [this] { flush(); });
  sinceFlush_.start();
}

AnswerRecorder::~AnswerRecorder() {
  if (!finished_) flush();
}

void AnswerRecorder::append(const QString& chunk) {
  if (chunk.isEmpty() || finished_) return;
  text_ += chunk;
  dirty_ = true;
  const qint64 elapsed = sinceFlush_.elapsed();
  if (elapsed >= intervalMs_) {
    flush();
  } else if (!timer_.isActive()) {
    timer_.start(int(intervalMs_ - elapsed));
  }
}

bool AnswerRecorder::flush() {
  timer_.stop();
  if (!dirty_) return true;
  dirty_ = false;
  sinceFlush_.restart();
  return store_->updateMessageText(messageId_, text_);
}

bool AnswerRecorder::finish(const QString& fullText, const QString& mode,
                            const QJsonObject& stats) {
  timer_.stop();
  finished_ = true;
  dirty_ = false;
  text_ = fullText;
  return store_->finishAnswer(messageId_, fullText, mode, stats);
}

}  // namespace resa::app
