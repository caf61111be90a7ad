// Readable QCOMPARE failures for std::string and token id lists.
#pragma once

#include <QByteArray>
#include <QtTest>

#include <string>
#include <vector>

namespace QTest {
template <>
inline char* toString(const std::string& s) {
  return QTest::toPrettyCString(s.data(), qsizetype(s.size()));
}
template <>
inline char* toString(const std::vector<int>& v) {
  QByteArray out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? " " : "") + QByteArray::number(v[i]);
  return qstrdup(out + "]");
}
}  // namespace QTest
