// ctest-labels: slow
// The Debian package (issue 6): runs CPack on this build tree, unpacks the .deb into a
// temporary root (no root rights needed) and checks its name, control fields and file list,
// runs the unpacked resa-cli (--version and a short generation on the bundled model) and
// validates the desktop entry and AppStream metadata with desktop-file-validate and
// appstreamcli when they are installed (packaging/install-deps.sh installs them).
#include <QDir>
#include <QDirIterator>
#include <QFile>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QtTest>

#include <memory>

#include "tests/support/test_support.h"

namespace {

struct Run {
  int code = -1;
  QString out, err;
};

Run run(const QString& program, const QStringList& args, int timeoutMs = 120000,
        const QProcessEnvironment& env = QProcessEnvironment::systemEnvironment()) {
  QProcess p;
  p.setProcessEnvironment(env);
  p.start(program, args);
  if (!p.waitForStarted(30000)) return {-3, {}, QStringLiteral("could not start ") + program};
  p.closeWriteChannel();
  if (!p.waitForFinished(timeoutMs)) {
    p.kill();
    p.waitForFinished();
    return {-2, {}, QStringLiteral("timed out: ") + program};
  }
  Run r;
  r.code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;  // -1: crashed
  r.out = QString::fromUtf8(p.readAllStandardOutput());
  r.err = QString::fromUtf8(p.readAllStandardError());
  return r;
}

QString describe(const Run& r) {
  return QStringLiteral("exit %1\nstdout:\n%2\nstderr:\n%3").arg(r.code).arg(r.out, r.err);
}

const QStringList kPrograms = {QStringLiteral("resa-chat"), QStringLiteral("resa-cli"),
                               QStringLiteral("resa-bench"), QStringLiteral("resa-eval")};

}  // namespace

class TestPackage : public QObject {
  Q_OBJECT

 private:
  QString buildDir_, deb_, root_;
  std::unique_ptr<QTemporaryDir> tmp_;

  QString inRoot(const QString& relative) const { return root_ + QLatin1Char('/') + relative; }

  // The unpacked tree's libraries first, should a future package ship private ones.
  QProcessEnvironment unpackedEnv() const {
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    QString ld = inRoot(QStringLiteral("usr/lib"));
    if (env.contains(QStringLiteral("LD_LIBRARY_PATH")))
      ld += QLatin1Char(':') + env.value(QStringLiteral("LD_LIBRARY_PATH"));
    env.insert(QStringLiteral("LD_LIBRARY_PATH"), ld);
    return env;
  }

 private slots:
  void initTestCase() {
    // Tests live in <build>/tests; CPack's configuration is at the top of the build tree.
    buildDir_ =
        QDir(QCoreApplication::applicationDirPath() + QStringLiteral("/..")).canonicalPath();
    if (!QFile::exists(buildDir_ + QStringLiteral("/CPackConfig.cmake")))
      QSKIP("no CPackConfig.cmake in the build tree (configured without the CPack section)");
    QString cpack;
#ifdef RESA_CPACK_COMMAND
    cpack = QStringLiteral(RESA_CPACK_COMMAND);
#endif
    if (cpack.isEmpty() || !QFileInfo(cpack).isExecutable())
      cpack = QStandardPaths::findExecutable(QStringLiteral("cpack"));
    if (cpack.isEmpty()) QSKIP("cpack not found");
    if (QStandardPaths::findExecutable(QStringLiteral("dpkg-deb")).isEmpty())
      QSKIP("dpkg-deb not found (not a Debian system)");

    tmp_ = std::make_unique<QTemporaryDir>();
    QVERIFY(tmp_->isValid());
    const QString out = tmp_->filePath(QStringLiteral("out"));
    root_ = tmp_->filePath(QStringLiteral("root"));
    QVERIFY(QDir().mkpath(out));
    QVERIFY(QDir().mkpath(root_));

    // cpack only installs the already-built tree into its staging folder (no build step),
    // so it cannot relink this running test; everything it writes goes under `out`.
    const Run pack =
        run(cpack,
            {QStringLiteral("-G"), QStringLiteral("DEB"), QStringLiteral("--config"),
             buildDir_ + QStringLiteral("/CPackConfig.cmake"), QStringLiteral("-B"), out},
            150000);
    QVERIFY2(pack.code == 0, qPrintable(describe(pack)));
    const QStringList debs = QDir(out).entryList({QStringLiteral("*.deb")}, QDir::Files);
    QVERIFY2(debs.size() == 1, qPrintable(debs.join(QLatin1Char(' ')) + describe(pack)));
    deb_ = out + QLatin1Char('/') + debs.first();

    const Run unpack = run(QStringLiteral("dpkg-deb"), {QStringLiteral("-x"), deb_, root_});
    QVERIFY2(unpack.code == 0, qPrintable(describe(unpack)));
  }

  void packageNameAndControl() {
    const Run arch = run(QStringLiteral("dpkg"), {QStringLiteral("--print-architecture")});
    QCOMPARE(arch.code, 0);
    const QString expected =
        QStringLiteral("resa-chat_%1_%2.deb").arg(QStringLiteral(RESA_VERSION), arch.out.trimmed());
    QCOMPARE(QFileInfo(deb_).fileName(), expected);

    auto field = [&](const char* name) {
      const Run r =
          run(QStringLiteral("dpkg-deb"), {QStringLiteral("-f"), deb_, QString::fromLatin1(name)});
      return r.code == 0 ? r.out.trimmed() : QString();
    };
    QCOMPARE(field("Package"), QStringLiteral("resa-chat"));
    QCOMPARE(field("Version"), QStringLiteral(RESA_VERSION));
    QCOMPARE(field("Architecture"), arch.out.trimmed());
    QVERIFY(!field("Maintainer").isEmpty());
    QVERIFY(field("Description").contains(QStringLiteral("small")));
    // Runtime dependencies: from dpkg-shlibdeps plus the Qt plugins named by hand.
    const QString depends = field("Depends");
    for (const char* dep : {"libqt6core6", "libqt6sql6-sqlite", "libsentencepiece0", "libgomp1",
                            "libicu72", "libc6", "libstdc++6"})
      QVERIFY2(depends.contains(QString::fromLatin1(dep)),
               qPrintable(QStringLiteral("Depends lacks %1: %2").arg(QLatin1String(dep), depends)));
    if (QFile::exists(buildDir_ + QStringLiteral("/app/resa-chat"))) {
      for (const char* dep : {"libqt6widgets6", "libqt6charts6", "libqt6svg6"})
        QVERIFY2(
            depends.contains(QString::fromLatin1(dep)),
            qPrintable(QStringLiteral("Depends lacks %1: %2").arg(QLatin1String(dep), depends)));
    }
  }

  void fileList() {
    // Every program this tree built, executable, and nothing from the build tree's layout.
    int programs = 0;
    for (const QString& name : kPrograms) {
      if (!QFile::exists(buildDir_ + QStringLiteral("/app/") + name)) continue;
      ++programs;
      const QFileInfo fi(inRoot(QStringLiteral("usr/bin/") + name));
      QVERIFY2(fi.exists() && fi.isExecutable(), qPrintable(fi.filePath()));
    }
    QVERIFY2(programs >= 1 && QFile::exists(inRoot(QStringLiteral("usr/bin/resa-cli"))),
             "resa-cli must be packaged");

    // The bundled demo model: the same files, byte for byte, as resources/models/demo.
    const QDir model(QStringLiteral(RESA_SOURCE_DIR) + QStringLiteral("/resources/models/demo"));
    const QString installed = inRoot(QStringLiteral("usr/share/resa-chat/models/demo"));
    const QStringList files = model.entryList(QDir::Files, QDir::Name);
    QVERIFY(files.contains(QStringLiteral("config.json")));
    QVERIFY(files.contains(QStringLiteral("tokenizer.model")));
    QCOMPARE(QDir(installed).entryList(QDir::Files, QDir::Name), files);
    for (const QString& f : files) {
      QFile a(model.filePath(f)), b(installed + QLatin1Char('/') + f);
      QVERIFY(a.open(QIODevice::ReadOnly) && b.open(QIODevice::ReadOnly));
      QVERIFY2(a.readAll() == b.readAll(), qPrintable(f));
    }

    for (const char* f : {"usr/share/applications/resa-chat.desktop",
                          "usr/share/icons/hicolor/scalable/apps/resa-chat.svg",
                          "usr/share/metainfo/io.github.resa_chat.ResaChat.metainfo.xml"}) {
      const QFileInfo fi(inRoot(QString::fromLatin1(f)));
      QVERIFY2(fi.isFile() && fi.size() > 0, f);
    }
    QFile icon(inRoot(QStringLiteral("usr/share/icons/hicolor/scalable/apps/resa-chat.svg")));
    QVERIFY(icon.open(QIODevice::ReadOnly));
    QVERIFY(icon.readAll().contains("<svg"));

    // Only /usr: no /usr/local, no build or source paths, no stray top-level folders.
    QCOMPARE(QDir(root_).entryList(QDir::AllEntries | QDir::NoDotAndDotDot),
             QStringList{QStringLiteral("usr")});
    QVERIFY(!QFileInfo::exists(inRoot(QStringLiteral("usr/local"))));
    QStringList top = QDir(inRoot(QStringLiteral("usr")))
                          .entryList(QDir::AllEntries | QDir::NoDotAndDotDot, QDir::Name);
    QCOMPARE(top, (QStringList{QStringLiteral("bin"), QStringLiteral("share")}));
  }

  void cliVersion() {
    const Run r = run(inRoot(QStringLiteral("usr/bin/resa-cli")), {QStringLiteral("--version")},
                      60000, unpackedEnv());
    QVERIFY2(r.code == 0, qPrintable(describe(r)));
    QVERIFY2(r.out.contains(QStringLiteral(RESA_VERSION)), qPrintable(describe(r)));
  }

  void cliAnswersFromADocumentWithTheBundledModelByDefault() {
    // No --model: the unpacked resa-cli finds ../share/resa-chat/models/demo next to itself.
    QTemporaryDir tmp;
    QVERIFY(tmp.isValid());
    QFile doc(tmp.filePath(QStringLiteral("notes.txt")));
    QVERIFY(doc.open(QIODevice::WriteOnly));
    doc.write("The library opens at nine in the morning and closes at six in the evening. "
              "Books can be borrowed for three weeks. The code of the blue door is 7316. "
              "The reading room on the second floor is quiet and has large tables.\n");
    doc.close();
    QProcessEnvironment env = unpackedEnv();
    env.remove(QStringLiteral("RESA_DEMO_MODEL"));
    const Run r = run(inRoot(QStringLiteral("usr/bin/resa-cli")),
                      {QStringLiteral("--file"), doc.fileName(), QStringLiteral("--prompt"),
                       QStringLiteral("What is the code of the blue door?"),
                       QStringLiteral("--max-new-tokens"), QStringLiteral("16"),
                       QStringLiteral("--device"), QStringLiteral("cpu"), QStringLiteral("--json")},
                      120000, env);
    QVERIFY2(r.code == 0, qPrintable(describe(r)));
    const QJsonObject j = QJsonDocument::fromJson(r.out.toUtf8()).object();
    QCOMPARE(j.value(QStringLiteral("model")).toString(), QStringLiteral("demo"));
    QVERIFY2(j.value(QStringLiteral("text")).toString().contains(QStringLiteral("7316")),
             qPrintable(describe(r)));
  }


  void desktopEntryValidates() {
    const QString tool = QStandardPaths::findExecutable(QStringLiteral("desktop-file-validate"));
    if (tool.isEmpty())
      QSKIP("desktop-file-validate not installed (Debian package desktop-file-utils)");
    const Run r = run(tool, {inRoot(QStringLiteral("usr/share/applications/resa-chat.desktop"))});
    QVERIFY2(r.code == 0 && !r.out.contains(QStringLiteral("error")), qPrintable(describe(r)));
  }

  void metainfoValidates() {
    const QString file =
        inRoot(QStringLiteral("usr/share/metainfo/io.github.resa_chat.ResaChat.metainfo.xml"));
    QFile f(file);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QByteArray xml = f.readAll();
    // The newest release is the package's version, and it launches the packaged entry.
    QVERIFY2(xml.contains(QByteArray("<release version=\"") + RESA_VERSION + '"'),
             "metainfo <release> does not match the project version");
    QVERIFY(xml.contains("<launchable type=\"desktop-id\">resa-chat.desktop</launchable>"));

    const QString tool = QStandardPaths::findExecutable(QStringLiteral("appstreamcli"));
    if (tool.isEmpty()) QSKIP("appstreamcli not installed (Debian package appstream)");
    const Run r = run(tool, {QStringLiteral("validate"), QStringLiteral("--no-net"), file});
    QVERIFY2(r.code == 0, qPrintable(describe(r)));
  }
};

QTEST_GUILESS_MAIN(TestPackage)
#include "test_slow_package.moc"
