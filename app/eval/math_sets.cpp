#include "app/eval/math_sets.h"

#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QString>

#include <cmath>
#include <stdexcept>

#include "app/eval/grader.h"

namespace resa::eval {
namespace {

struct SetFields {
  const char* name;
  const char* question;
  const char* gold;
};

// README.md's table: where each set keeps its question and its gold answer.
constexpr SetFields kSets[] = {{"aime24", "problem", "answer"},
                               {"amc23", "question", "answer"},
                               {"gaokao2023en", "question", "answer"},
                               {"minerva_math", "problem", "solution"},
                               {"olympiadbench", "question", "final_answer"}};

std::string value_text(const QJsonValue& v) {
  if (v.isString()) return v.toString().toStdString();
  if (v.isDouble()) {
    const double x = v.toDouble();
    if (x == std::floor(x) && std::fabs(x) < 1e15) return std::to_string(static_cast<long long>(x));
    return QString::number(x, 'g', 17).toStdString();
  }
  if (v.isArray()) {
    std::string out;
    for (const QJsonValue& item : v.toArray()) out += (out.empty() ? "" : ", ") + value_text(item);
    return out;
  }
  return {};
}

}  // namespace

const std::vector<std::string>& math_set_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const SetFields& s : kSets) n.emplace_back(s.name);
    return n;
  }();
  return names;
}

std::vector<MathProblem> load_math_set(const std::filesystem::path& dir, const std::string& name) {
  const SetFields* fields = nullptr;
  for (const SetFields& s : kSets)
    if (name == s.name) fields = &s;
  if (!fields)
    throw std::runtime_error("unknown math set '" + name +
                             "' (sets: aime24, amc23, gaokao2023en, minerva_math, olympiadbench)");
  const std::filesystem::path path = dir / (name + ".jsonl");
  QFile f(QString::fromStdString(path.string()));
  if (!f.open(QIODevice::ReadOnly))
    throw std::runtime_error(path.string() + ": cannot read it (" + f.errorString().toStdString() +
                             "; pass --math-data DIR, the folder of the five .jsonl files)");
  std::vector<MathProblem> problems;
  int line_no = 0;
  while (!f.atEnd()) {
    const QByteArray line = f.readLine().trimmed();
    ++line_no;
    if (line.isEmpty()) continue;
    QJsonParseError err;
    const QJsonDocument doc = QJsonDocument::fromJson(line, &err);
    if (!doc.isObject())
      throw std::runtime_error(path.string() + ":" + std::to_string(line_no) +
                               ": not a JSON object (" + err.errorString().toStdString() + ")");
    const QJsonObject o = doc.object();
    MathProblem p;
    p.set = name;
    p.index = int(problems.size());
    p.question = value_text(o.value(QString::fromUtf8(fields->question)));
    const std::string gold_field = value_text(o.value(QString::fromUtf8(fields->gold)));
    p.solution = value_text(o.value(QStringLiteral("solution")));
    if (name == "minerva_math") {
      p.gold = last_boxed(gold_field).value_or("");
    } else {
      p.gold = gold_field;
    }
    if (p.question.empty())
      throw std::runtime_error(path.string() + ":" + std::to_string(line_no) + ": no '" +
                               fields->question + "' field");
    problems.push_back(std::move(p));
  }
  return problems;
}

std::string math_user_prompt(std::string_view question) {
  return "Please reason step by step, and put your final answer within \\boxed{}. " +
         std::string(question);
}

}  // namespace resa::eval
