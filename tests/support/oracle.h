// The transformers reference outputs written by tools/fixtures/make_oracle.py:
// tests/fixtures/oracle/<name>.json and its logits file.
#pragma once

#include <QByteArray>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QString>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace resa::test {

struct Oracle {
  std::filesystem::path model_dir;
  std::string prompt_text;
  std::vector<int> prompt_ids, continuation_ids;
  std::vector<float> logits;  // [rows][vocab], row i = after token i of prompt + continuation
  int rows = 0, vocab = 0;
};

inline std::vector<int> json_ints(const QJsonValue& v) {
  std::vector<int> out;
  for (const QJsonValue& x : v.toArray()) out.push_back(x.toInt());
  return out;
}

inline Oracle read_oracle(const QString& name) {
  Oracle o;
  const auto dir = fixture("oracle");
  const QJsonObject j =
      QJsonDocument::fromJson(
          QByteArray::fromStdString(read_text(dir / (name.toStdString() + ".json"))))
          .object();
  o.model_dir = fixtures_dir() / j["model"].toString().toStdString();
  o.prompt_text = j["prompt_text"].toString().toStdString();
  o.prompt_ids = json_ints(j["prompt_ids"]);
  o.continuation_ids = json_ints(j["continuation_ids"]);
  o.rows = j["logits_shape"].toArray()[0].toInt();
  o.vocab = j["logits_shape"].toArray()[1].toInt();
  o.logits = read_f32(dir / j["logits_file"].toString().toStdString());
  return o;
}

}  // namespace resa::test
