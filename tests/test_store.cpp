// The conversation store: CRUD, answer versions, migrations from every earlier schema, search,
// export, crash safety of a streamed answer (a child killed with SIGKILL), and the files it
// cannot use (read-only, corrupt, locked, newer) falling back to memory with a clear message.
#include <QtConcurrent>
#include <QtTest>

#include <QProcess>
#include <QSqlDatabase>
#include <QSqlError>
#include <QSqlQuery>
#include <QTemporaryDir>

#include <unistd.h>
#include <csignal>
#include <cstdio>

#include "app/lib/conversation_store.h"

using namespace resa::app;

namespace {

constexpr char kChildEnv[] = "RESA_STORE_TEST_CHILD";

// Child mode "stream DB": writes a conversation and streams an answer into it forever, printing
// how many chunks it appended, until the parent kills it.
int runStreamingChild(const QString& path) {
  ConversationStore store(path);
  if (!store.open()) return 3;
  const qint64 conv = store.createConversation("crash test");
  const qint64 user = store.addMessage(conv, "user", "Tell me a long story.");
  const qint64 answer = store.beginAnswer(conv, user, "resa");
  auto* recorder = new AnswerRecorder(&store, answer, 100);
  int i = 0;
  QTimer tick;
  QObject::connect(&tick, &QTimer::timeout, [&] {
    recorder->append(QStringLiteral("tok%1 ").arg(i));
    std::printf("appended %d\n", i++);
    std::fflush(stdout);
  });
  tick.start(10);
  return QCoreApplication::exec();
}

// Child mode "readonly DB": drops root's privilege (root ignores file modes) and opens a file it
// may not write. Prints the warning; exit 0 when the store fell back and still works.
int runReadOnlyChild(const QString& path) {
  if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) return 4;
  ConversationStore store(path);
  const bool opened = store.open();
  std::printf("%s\n", qPrintable(store.warning()));
  std::fflush(stdout);
  if (opened || store.isPersistent()) return 5;
  return store.createConversation("still usable") > 0 ? 0 : 6;
}

}  // namespace

class TestStore : public QObject {
  Q_OBJECT

  QTemporaryDir dir_;
  int n_ = 0;
  QString freshPath() { return dir_.filePath(QStringLiteral("db%1.sqlite").arg(++n_)); }

 private slots:
  void initTestCase() { QVERIFY(dir_.isValid()); }

  void conversations_and_messages_round_trip() {
    ConversationStore store(freshPath());
    QVERIFY2(store.open(), qPrintable(store.warning()));
    QVERIFY(store.isPersistent());
    QCOMPARE(store.schemaVersion(), ConversationStore::kSchemaVersion);
    const qint64 a = store.createConversation("First");
    const qint64 b = store.createConversation("Second");
    QVERIFY(a > 0 && b > a);
    QVERIFY(store.renameConversation(a, "Renamed"));
    QCOMPARE(store.conversation(a)->title, QString("Renamed"));
    QVERIFY(!store.renameConversation(9999, "x"));

    const qint64 u = store.addMessage(a, "user", "Hello there");
    const QJsonObject stats{{"decode_tok_s", 12.5}, {"kv_read_fraction", 0.25}};
    const qint64 m = store.addMessage(a, "assistant", "Hi!", "sparse", stats);
    const QList<MessageRecord> msgs = store.messages(a);
    QCOMPARE(msgs.size(), 2);
    QCOMPARE(msgs[0].role, QString("user"));
    QCOMPARE(msgs[1].text, QString("Hi!"));
    QCOMPARE(msgs[1].mode, QString("sparse"));
    QCOMPARE(msgs[1].stats["decode_tok_s"].toDouble(), 12.5);
    QCOMPARE(msgs[1].parentId, u);
    QCOMPARE(store.message(m)->complete, true);
    QCOMPARE(store.conversation(a)->messageCount, 2);
    // The conversation touched last comes first.
    QCOMPARE(store.conversations().first().id, a);

    const qint64 d = store.addDocument(a, "report.txt", "Quarterly numbers.", 5);
    QCOMPARE(store.documents(a).size(), 1);
    QCOMPARE(store.documents(a)[0].tokenCount, 5);
    QVERIFY(store.removeDocument(d));
    QVERIFY(store.documents(a).isEmpty());
    store.addDocument(a, "again.txt", "More.", 2);
    QVERIFY(store.addComparison(a, "Why?", QJsonObject{{"runs", QJsonArray()}}) > 0);

    QVERIFY(store.deleteConversation(a));
    QVERIFY(!store.conversation(a));
    QVERIFY(store.messages(a).isEmpty());
    QVERIFY(store.documents(a).isEmpty());
    QVERIFY(store.comparisons(a).isEmpty());
    QCOMPARE(store.conversations().size(), 1);
    QCOMPARE(store.conversations().first().id, b);
  }

  void regenerate_keeps_earlier_answers_as_versions() {
    ConversationStore store(freshPath());
    QVERIFY(store.open());
    const qint64 c = store.createConversation("Versions");
    const qint64 u = store.addMessage(c, "user", "Question");
    const qint64 v1 = store.beginAnswer(c, u, "dense");
    QVERIFY(store.finishAnswer(v1, "First answer", "dense", {}));
    const qint64 v2 = store.beginAnswer(c, u, "resa");
    QVERIFY(store.finishAnswer(v2, "Second answer", "resa", {}));
    QList<MessageRecord> shown = store.messages(c);
    QCOMPARE(shown.size(), 2);
    QCOMPARE(shown[1].id, v2);
    QCOMPARE(shown[1].version, 2);
    QCOMPARE(shown[1].versionCount, 2);
    const QList<MessageRecord> all = store.versions(u);
    QCOMPARE(all.size(), 2);
    QCOMPARE(all[0].text, QString("First answer"));
    QVERIFY(!all[0].current);
    QVERIFY(store.setCurrentVersion(v1));
    shown = store.messages(c);
    QCOMPARE(shown[1].id, v1);
    QCOMPARE(store.messages(c, true).size(), 3);
    // Edit-and-resend drops the user message and everything after it.
    QVERIFY(store.deleteMessagesFrom(u));
    QVERIFY(store.messages(c, true).isEmpty());
  }

  void migrates_from_every_earlier_schema_version() {
    for (int from = 0; from < ConversationStore::kSchemaVersion; ++from) {
      const QString path = freshPath();
      QCOMPARE(ConversationStore::createAtVersion(path, from), QString());
      if (from >= 1) {
        // Rows as version 1 wrote them (frozen here on purpose).
        const QString name = QStringLiteral("raw_v%1").arg(from);
        {
          QSqlDatabase raw = QSqlDatabase::addDatabase("QSQLITE", name);
          raw.setDatabaseName(path);
          QVERIFY(raw.open());
          QSqlQuery q(raw);
          QVERIFY(
              q.exec("INSERT INTO conversations(id, title, created, updated) VALUES "
                     "(7, 'Old chat', '2024-01-01T00:00:00Z', '2024-01-01T00:00:00Z')"));
          QVERIFY(
              q.exec("INSERT INTO messages(conversation_id, role, text, mode, stats, created) "
                     "VALUES (7, 'user', 'What is a kestrel?', '', '{}', '2024-01-01')"));
          QVERIFY(
              q.exec("INSERT INTO messages(conversation_id, role, text, mode, stats, created) "
                     "VALUES (7, 'assistant', 'A small falcon.', 'dense', "
                     "'{\"decode_tok_s\": 3}', '2024-01-01')"));
          QVERIFY(
              q.exec("INSERT INTO documents(conversation_id, name, text, token_count, "
                     "created) VALUES (7, 'birds.txt', 'Falcons and kestrels.', 6, "
                     "'2024-01-01')"));
          raw.close();
        }
        QSqlDatabase::removeDatabase(name);
      }
      ConversationStore store(path);
      QVERIFY2(store.open(), qPrintable(store.warning()));
      QCOMPARE(store.schemaVersion(), ConversationStore::kSchemaVersion);
      if (from >= 1) {
        const QList<MessageRecord> msgs = store.messages(7);
        QCOMPARE(msgs.size(), 2);
        QCOMPARE(msgs[1].parentId, msgs[0].id);  // v2 links old answers to their question
        QCOMPARE(msgs[1].version, 1);
        QVERIFY(msgs[1].complete);
        QCOMPARE(msgs[1].stats["decode_tok_s"].toInt(), 3);
        QCOMPARE(store.documents(7).size(), 1);
        if (store.hasFullTextSearch()) QCOMPARE(store.search("kestrel").size(), 1);
        // New features work on the migrated file.
        QVERIFY(store.beginAnswer(7, msgs[0].id, "resa") > 0);
        QCOMPARE(store.versions(msgs[0].id).size(), 2);
      }
    }
  }

  void search_finds_titles_and_message_text() {
    ConversationStore store(freshPath());
    QVERIFY(store.open());
    QVERIFY2(store.hasFullTextSearch(), "this SQLite lacks FTS5; the LIKE fallback is in use");
    const qint64 a = store.createConversation("Trip to Lisbon");
    const qint64 b = store.createConversation("Kernel notes");
    store.addMessage(a, "user", "Which tram goes to Belém?");
    store.addMessage(b, "user", "Explain block-sparse attention with rectification.");
    QList<SearchHit> hits = store.search("lisbon");
    QCOMPARE(hits.size(), 1);
    QCOMPARE(hits[0].conversationId, a);
    QCOMPARE(hits[0].messageId, 0);
    hits = store.search("rectif");  // a word prefix
    QCOMPARE(hits.size(), 1);
    QCOMPARE(hits[0].conversationId, b);
    QVERIFY(hits[0].snippet.contains("[rectification]"));
    QVERIFY(store.search("block-sparse \"quoted").size() <= 1);  // punctuation is literal
    QVERIFY(store.search("nothing-like-this").isEmpty());
    // Updated text is re-indexed.
    const qint64 m = store.addMessage(a, "assistant", "");
    QVERIFY(store.updateMessageText(m, "Tram 15 goes there."));
    QCOMPARE(store.search("tram 15").size(), 1);
    QCOMPARE(store.search("tram").size(), 2);
  }

  void exports_markdown_and_json() {
    ConversationStore store(freshPath());
    QVERIFY(store.open());
    const qint64 c = store.createConversation("Export me");
    store.addDocument(c, "notes.md", "# Notes", 3);
    store.addMessage(c, "user", "Summarise the notes.");
    store.addMessage(c, "assistant", "They are short.", "resa",
                     QJsonObject{{"decode_tok_s", 20.0}, {"kv_read_fraction", 0.125}});
    const QString md = store.exportMarkdown(c);
    QVERIFY(md.startsWith("# Export me"));
    QVERIFY(md.contains("- notes.md (3 tokens)"));
    QVERIFY(md.contains("### User\n\nSummarise the notes."));
    QVERIFY(md.contains("### Assistant (resa, 20.0 tok/s, 13% of KV read)\n\nThey are short."));
    QVERIFY(!md.contains("<details>"));  // no thinking, no fold
    // A reasoning model's answer: the thinking folds into <details>, no raw tags remain. The
    // second one is stored as a DeepSeek-R1 answer is (its "<think>" was in the prompt).
    const qint64 r = store.createConversation("Reasoning");
    store.addMessage(r, "user", "2 + 2?");
    store.addMessage(r, "assistant", "<think>\nAdd two and two.\n</think>\n\nFour.", "dense");
    store.addMessage(r, "assistant", "Just count.\n</think>\n\n4", "dense");
    const QString rmd = store.exportMarkdown(r);
    QVERIFY2(rmd.contains("<details><summary>Thinking (4 words)</summary>\n\nAdd two and two.\n\n"
                          "</details>\n\nFour."),
             qPrintable(rmd));
    QVERIFY2(rmd.contains("<details><summary>Thinking (2 words)</summary>\n\nJust count.\n\n"
                          "</details>\n\n4"),
             qPrintable(rmd));
    QVERIFY(!rmd.contains("<think>") && !rmd.contains("</think>"));
    const QJsonObject json = store.exportJson(c);
    QCOMPARE(json["title"].toString(), QString("Export me"));
    QCOMPARE(json["messages"].toArray().size(), 2);
    QCOMPARE(json["messages"].toArray()[1].toObject()["mode"].toString(), QString("resa"));
    QCOMPARE(json["documents"].toArray()[0].toObject()["text"].toString(), QString("# Notes"));
  }

  void answer_recorder_flushes_streamed_text_within_the_interval() {
    ConversationStore store(freshPath());
    QVERIFY(store.open());
    const qint64 c = store.createConversation("Streaming");
    const qint64 u = store.addMessage(c, "user", "Go");
    const qint64 a = store.beginAnswer(c, u, "dense");
    QVERIFY(!store.message(a)->complete);
    AnswerRecorder rec(&store, a, 150);
    rec.append("Hel");
    rec.append("lo");
    QTRY_COMPARE_WITH_TIMEOUT(store.message(a)->text, QString("Hello"), 1000);
    rec.append(" world");
    QTRY_COMPARE_WITH_TIMEOUT(store.message(a)->text, QString("Hello world"), 1000);
    QVERIFY(rec.finish("Hello world!", "dense", QJsonObject{{"generated_tokens", 3}}));
    QCOMPARE(store.message(a)->text, QString("Hello world!"));
    QVERIFY(store.message(a)->complete);
  }

  void killed_mid_answer_leaves_the_partial_answer() {
    const QString path = freshPath();
    QProcess child;
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert(kChildEnv, "stream");
    env.insert("RESA_STORE_TEST_DB", path);
    child.setProcessEnvironment(env);
    child.start(QCoreApplication::applicationFilePath(), {});
    QVERIFY(child.waitForStarted());
    int last = -1;
    QByteArray out;
    QElapsedTimer t;
    t.start();
    while (last < 40 && t.elapsed() < 20000) {
      child.waitForReadyRead(200);
      out += child.readAllStandardOutput();
      const int at = out.lastIndexOf("appended ");
      if (at >= 0) {
        const int end = out.indexOf('\n', at);
        if (end > at) last = out.mid(at + 9, end - at - 9).toInt();
      }
    }
    QVERIFY2(last >= 40, out.constData());
    ::kill(pid_t(child.processId()), SIGKILL);
    QVERIFY(child.waitForFinished(5000));
    QCOMPARE(child.exitStatus(), QProcess::CrashExit);

    ConversationStore store(path);
    QVERIFY2(store.open(), qPrintable(store.warning()));
    const QList<ConversationRecord> convs = store.conversations();
    QCOMPARE(convs.size(), 1);
    const QList<MessageRecord> msgs = store.messages(convs[0].id);
    QCOMPARE(msgs.size(), 2);
    QCOMPARE(msgs[1].role, QString("assistant"));
    QVERIFY(!msgs[1].complete);
    // Chunks come every 10 ms and are written every 100 ms: of the `last` chunks reported,
    // at most ~one interval (with slack for a slow machine) may be missing.
    QVERIFY2(msgs[1].text.startsWith("tok0 tok1 "), qPrintable(msgs[1].text));
    QVERIFY2(msgs[1].text.contains(QStringLiteral("tok%1 ").arg(last - 25)),
             qPrintable(msgs[1].text.right(80)));
  }

  void corrupt_file_falls_back_to_memory_with_a_clear_message() {
    const QString path = freshPath();
    QFile f(path);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(QByteArray("this is not a database, just some text\n").repeated(200));
    f.close();
    ConversationStore store(path);
    QVERIFY(!store.open());
    QVERIFY(!store.isPersistent());
    QVERIFY2(store.warning().contains(path), qPrintable(store.warning()));
    QVERIFY2(store.warning().contains("damaged"), qPrintable(store.warning()));
    QVERIFY(store.warning().contains("Move the file aside"));
    // The app still works, in memory, and the damaged file is left alone for recovery.
    const qint64 c = store.createConversation("in memory");
    QVERIFY(c > 0);
    QVERIFY(store.addMessage(c, "user", "hi") > 0);
    QCOMPARE(store.conversations().size(), 1);
    QVERIFY(QFile(path).size() > 0);
    QVERIFY(QFile::exists(path));
  }

  void read_only_file_falls_back_to_memory_with_a_clear_message() {
    const QString path = freshPath();
    {
      ConversationStore store(path);
      QVERIFY(store.open());
      store.createConversation("kept");
    }
    QFile::setPermissions(path,
                          QFileDevice::ReadOwner | QFileDevice::ReadGroup | QFileDevice::ReadOther);
    QFile::setPermissions(dir_.path(), QFileDevice::ReadOwner | QFileDevice::WriteOwner |
                                           QFileDevice::ExeOwner | QFileDevice::ReadOther |
                                           QFileDevice::ExeOther | QFileDevice::ReadGroup |
                                           QFileDevice::ExeGroup);
    QString warning;
    if (geteuid() == 0) {
      // Root may write anything: check as an unprivileged user in a child process.
      QProcess child;
      QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
      env.insert(kChildEnv, "readonly");
      env.insert("RESA_STORE_TEST_DB", path);
      child.setProcessEnvironment(env);
      child.start(QCoreApplication::applicationFilePath(), {});
      QVERIFY(child.waitForFinished(20000));
      if (child.exitCode() == 4) QSKIP("cannot drop root privileges here");
      warning = QString::fromLocal8Bit(child.readAllStandardOutput()).trimmed();
      QVERIFY2(child.exitCode() == 0,
               qPrintable(QStringLiteral("exit %1: %2 %3")
                              .arg(child.exitCode())
                              .arg(warning, QString::fromLocal8Bit(child.readAllStandardError()))));
    } else {
      ConversationStore store(path);
      QVERIFY(!store.open());
      QVERIFY(store.createConversation("still usable") > 0);
      warning = store.warning();
    }
    QFile::setPermissions(path, QFileDevice::ReadOwner | QFileDevice::WriteOwner);
    QVERIFY2(warning.contains(path), qPrintable(warning));
    QVERIFY2(warning.contains("read-only"), qPrintable(warning));
    QVERIFY(warning.contains("writable"));
  }

  void locked_file_falls_back_to_memory_with_a_clear_message() {
    const QString path = freshPath();
    const QString name = "locker";
    {
      QSqlDatabase raw = QSqlDatabase::addDatabase("QSQLITE", name);
      raw.setDatabaseName(path);
      QVERIFY(raw.open());
      QSqlQuery q(raw);
      QVERIFY(q.exec("CREATE TABLE t(x)"));
      QVERIFY(q.exec("BEGIN EXCLUSIVE"));
      QVERIFY(q.exec("INSERT INTO t VALUES (1)"));
      {
        ConversationStore store(path);
        store.setBusyTimeoutMs(100);
        QVERIFY(!store.open());
        QVERIFY2(store.warning().contains("locked"), qPrintable(store.warning()));
        QVERIFY(store.warning().contains(path));
        QVERIFY(store.createConversation("memory") > 0);
      }
      q.exec("ROLLBACK");
      raw.close();
    }
    QSqlDatabase::removeDatabase(name);
  }

  void newer_schema_is_not_touched() {
    const QString path = freshPath();
    QCOMPARE(ConversationStore::createAtVersion(path, ConversationStore::kSchemaVersion),
             QString());
    {
      QSqlDatabase raw = QSqlDatabase::addDatabase("QSQLITE", "newer");
      raw.setDatabaseName(path);
      QVERIFY(raw.open());
      QSqlQuery q(raw);
      QVERIFY(q.exec("PRAGMA user_version = 99"));
      raw.close();
    }
    QSqlDatabase::removeDatabase("newer");
    ConversationStore store(path);
    QVERIFY(!store.open());
    QVERIFY2(store.warning().contains("newer ReSA Chat"), qPrintable(store.warning()));
    QVERIFY(store.warning().contains("99"));
  }

  void each_thread_gets_its_own_connection() {
    for (const bool memory : {false, true}) {
      QString path = freshPath();
      if (memory) {  // a corrupt file forces the shared in-memory fallback
        QFile f(path);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(QByteArray(4096, 'x'));
      }
      ConversationStore store(path);
      QCOMPARE(store.open(), !memory);
      const qint64 c = store.createConversation("threads");
      QFuture<qint64> written = QtConcurrent::run(
          [&store, c] { return store.addMessage(c, "user", "from a worker thread"); });
      QVERIFY(written.result() > 0);
      QCOMPARE(store.messages(c).size(), 1);
      QCOMPARE(store.messages(c)[0].text, QString("from a worker thread"));
    }
  }
};

int main(int argc, char** argv) {
  QCoreApplication app(argc, argv);
  const QByteArray child = qgetenv(kChildEnv);
  const QString db = QString::fromLocal8Bit(qgetenv("RESA_STORE_TEST_DB"));
  if (child == "stream") return runStreamingChild(db);
  if (child == "readonly") return runReadOnlyChild(db);
  TestStore test;
  return QTest::qExec(&test, argc, argv);
}

#include "test_store.moc"
