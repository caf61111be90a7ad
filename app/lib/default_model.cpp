#include "app/lib/default_model.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>

namespace resa::app {

QStringList defaultModelCandidates() {
  QStringList out;
  const QString env = qEnvironmentVariable("RESA_DEMO_MODEL");
  if (!env.isEmpty()) out << env;
  const QString appDir = QCoreApplication::applicationDirPath();
  out << appDir + QStringLiteral("/../share/resa-chat/models/demo")
      << appDir + QStringLiteral("/../../resources/models/demo")
      << appDir + QStringLiteral("/../../tests/fixtures/models/llama-gqa");
  return out;
}

QString defaultModelDir() {
  for (const QString& c : defaultModelCandidates())
    if (QFileInfo::exists(c + QStringLiteral("/config.json"))) return QDir(c).canonicalPath();
  return {};
}

QString modelDirOrDefault(const QString& given, QString* error) {
  if (!given.isEmpty()) return given;
  const QString dir = defaultModelDir();
  if (dir.isEmpty() && error)
    *error = QStringLiteral(
                 "no --model DIR given and the bundled demo model was not found "
                 "(looked in %1)")
                 .arg(defaultModelCandidates().join(QStringLiteral(", ")));
  return dir;
}

}  // namespace resa::app
