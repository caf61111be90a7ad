#include "app/lib/cli_args.h"

#include <iostream>
#include <stdexcept>

#include "app/lib/default_model.h"
#include "engine/error.h"

namespace resa::app {

void usage_error(const std::string& message) { throw UsageError{message}; }

void add_flag(QCommandLineParser& p, const char* name, const char* help, const char* value,
              const char* def) {
  QCommandLineOption o(QString::fromUtf8(name), QString::fromUtf8(help));
  if (value) o.setValueName(QString::fromUtf8(value));
  if (def) o.setDefaultValue(QString::fromUtf8(def));
  p.addOption(o);
}

int flag_int(const QCommandLineParser& p, const char* name, int lo, int hi) {
  bool ok = false;
  const QString v = p.value(QString::fromUtf8(name));
  const int x = v.toInt(&ok);
  if (!ok || x < lo || x > hi)
    usage_error("--" + std::string(name) + " must be a whole number from " + std::to_string(lo) +
                " to " + std::to_string(hi) + ", got '" + v.toStdString() + "'");
  return x;
}

double flag_double(const QCommandLineParser& p, const char* name, double lo, double hi,
                   bool lo_open) {
  bool ok = false;
  const QString v = p.value(QString::fromUtf8(name));
  const double x = v.toDouble(&ok);
  if (!ok || x > hi || x < lo || (lo_open && x == lo))
    usage_error("--" + std::string(name) + " must be a number in " + (lo_open ? "(" : "[") +
                std::to_string(lo) + ", " + std::to_string(hi) + "], got '" + v.toStdString() +
                "'");
  return x;
}

int run_program(const char* program, const std::function<int()>& body) {
  try {
    return body();
  } catch (const UsageError& e) {
    std::cerr << program << ": " << e.message << " (see --help)" << std::endl;
    return 2;
  } catch (const resa::Error& e) {
    std::cerr << program << ": error: " << e.what() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << program << ": internal error: " << e.what() << std::endl;
    return 3;
  }
}

QString flag_model_dir(const QCommandLineParser& p) {
  const bool random = p.isSet(QStringLiteral("random-weights"));
  if (p.isSet(QStringLiteral("model")) && random)
    usage_error("give one of --model DIR or --random-weights PRESET, not both");
  if (random) return {};
  QString no_model;
  const QString dir = modelDirOrDefault(p.value(QStringLiteral("model")), &no_model);
  if (dir.isEmpty()) usage_error(no_model.toStdString());
  return dir;
}

}  // namespace resa::app
