// QVERIFY_RESA_ERROR(expr, kind, phrases...): `expr` must throw a resa::Error of `kind` whose
// message contains every phrase (what, where and what to do: STYLE.md 6).
#pragma once

#include <QString>
#include <QtTest>

#include <optional>
#include <string>
#include <vector>

#include "engine/error.h"

namespace resa::test {

template <typename F>
std::optional<resa::Error> error_of(F&& f) {
  try {
    f();
  } catch (const resa::Error& e) {
    return e;
  }
  return std::nullopt;
}

inline QString kind_name(ErrorKind k) {
  switch (k) {
    case ErrorKind::kInvalidArgument:
      return "kInvalidArgument";
    case ErrorKind::kFileNotFound:
      return "kFileNotFound";
    case ErrorKind::kCorruptFile:
      return "kCorruptFile";
    case ErrorKind::kUnsupported:
      return "kUnsupported";
    case ErrorKind::kShapeMismatch:
      return "kShapeMismatch";
    case ErrorKind::kContextFull:
      return "kContextFull";
    case ErrorKind::kOutOfMemory:
      return "kOutOfMemory";
    case ErrorKind::kDevice:
      return "kDevice";
    case ErrorKind::kCancelled:
      return "kCancelled";
    case ErrorKind::kInternal:
      return "kInternal";
  }
  return QString::number(int(k));
}

}  // namespace resa::test

#define QVERIFY_RESA_ERROR(expr, expected_kind, ...)                                       \
  do {                                                                                     \
    const std::optional<resa::Error> err_ = resa::test::error_of([&] { (void)(expr); });   \
    QVERIFY2(err_.has_value(), "no resa::Error from: " #expr);                             \
    QCOMPARE(resa::test::kind_name(err_->kind()), resa::test::kind_name(expected_kind));   \
    for (const std::string& phrase_ : std::vector<std::string>{__VA_ARGS__}) {             \
      QVERIFY2(std::string(err_->what()).find(phrase_) != std::string::npos,               \
               qPrintable(QString("'%1' not in: %2").arg(phrase_.c_str(), err_->what()))); \
    }                                                                                      \
  } while (0)
