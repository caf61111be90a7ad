// Safetensors reading (single file, sharded index) and the dtype conversions it relies on.
// ctest-link: resa_model_io
#include <QTemporaryDir>
#include <QTest>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "engine/error.h"
#include "engine/safetensors.h"
#include "tests/support/error_assert.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using resa::DType;
using resa::ErrorKind;

namespace {

std::vector<char> f32_bytes(const std::vector<float>& v) {
  std::vector<char> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<char> u16_bytes(const std::vector<uint16_t>& v) {
  std::vector<char> b(v.size() * 2);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A file with the given header text (as-is) and data section.
std::vector<char> raw_file(const std::string& header, const std::vector<char>& data) {
  // memcpy rather than insert(): GCC 12 reports false -Warray-bounds on the latter.
  std::vector<char> out(8 + header.size() + data.size());
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  if (!header.empty()) std::memcpy(out.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(out.data() + 8 + header.size(), data.data(), data.size());
  return out;
}

struct RawTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<char> bytes;
};

std::string shape_json(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// A valid file as safetensors' Python writer lays it out: metadata, tensors packed in order,
// header padded with spaces to 8 bytes.
std::vector<char> safetensors_file(const std::vector<RawTensor>& tensors) {
  std::string header = R"({"__metadata__":{"format":"pt"})";
  std::vector<char> data;
  for (const RawTensor& t : tensors) {
    const size_t begin = data.size();
    data.insert(data.end(), t.bytes.begin(), t.bytes.end());
    header += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype +
              "\",\"shape\":" + shape_json(t.shape) + ",\"data_offsets\":[" +
              std::to_string(begin) + "," + std::to_string(data.size()) + "]}";
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';
  return raw_file(header, data);
}

float f32_at(const resa::TensorInfo& t, int64_t i) {
  float v;
  std::memcpy(&v, t.data + 4 * i, 4);
  return v;
}

uint16_t u16_at(const resa::TensorInfo& t, int64_t i) {
  uint16_t v;
  std::memcpy(&v, t.data + 2 * i, 2);
  return v;
}

fs::path tmp_path(const QTemporaryDir& dir, const std::string& name) {
  return fs::path(dir.path().toStdString()) / name;
}

// One F32 tensor 't' of shape [2] with the given header entry, for the corrupt-header cases.
fs::path write_one_entry(const QTemporaryDir& dir, const std::string& entry, size_t data_bytes) {
  const fs::path p = tmp_path(dir, "bad.safetensors");
  resa::test::write_bytes(p, raw_file("{\"t\":" + entry + "}", std::vector<char>(data_bytes, 0)));
  return p;
}

}  // namespace

class TestSafetensors : public QObject {
  Q_OBJECT

 private slots:
  // --- dtype conversions -------------------------------------------------------------------

  void dtype_names_and_sizes_match_safetensors() {
    QCOMPARE(QString::fromUtf8(resa::dtype_name(DType::kF32).data()), QString("F32"));
    QCOMPARE(std::string(resa::dtype_name(DType::kF16)), std::string("F16"));
    QCOMPARE(std::string(resa::dtype_name(DType::kBF16)), std::string("BF16"));
    QCOMPARE(resa::dtype_size(DType::kF32), size_t(4));
    QCOMPARE(resa::dtype_size(DType::kF16), size_t(2));
    QCOMPARE(resa::dtype_size(DType::kBF16), size_t(2));
  }

  void bf16_to_f32_known_values() {
    QCOMPARE(resa::bf16_to_f32(0x3f80), 1.0f);
    QCOMPARE(resa::bf16_to_f32(0xc000), -2.0f);
    QCOMPARE(resa::bf16_to_f32(0x4049), 3.140625f);
    QCOMPARE(resa::bf16_to_f32(0x0001), std::ldexp(1.0f, -133));  // smallest subnormal
    QVERIFY(std::signbit(resa::bf16_to_f32(0x8000)) && resa::bf16_to_f32(0x8000) == 0.0f);
    QCOMPARE(resa::bf16_to_f32(0x7f80), INFINITY);
    QCOMPARE(resa::bf16_to_f32(0xff80), -INFINITY);
    QVERIFY(std::isnan(resa::bf16_to_f32(0x7fc0)));
  }

  void f32_to_bf16_rounds_to_nearest_even() {
    QCOMPARE(resa::f32_to_bf16(1.0f), uint16_t(0x3f80));
    QCOMPARE(resa::f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), uint16_t(0x3f80));       // tie, even
    QCOMPARE(resa::f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), uint16_t(0x3f82));   // tie, even
    QCOMPARE(resa::f32_to_bf16(1.0f + 5 * std::ldexp(1.0f, -10)), uint16_t(0x3f81));  // above half
    QCOMPARE(resa::f32_to_bf16(-INFINITY), uint16_t(0xff80));
    QCOMPARE(resa::f32_to_bf16(3.4028235e38f), uint16_t(0x7f80));  // f32 max rounds to inf
    QVERIFY(std::isnan(resa::bf16_to_f32(resa::f32_to_bf16(NAN))));
  }

  void f16_to_f32_known_values() {
    QCOMPARE(resa::f16_to_f32(0x3c00), 1.0f);
    QCOMPARE(resa::f16_to_f32(0xc000), -2.0f);
    QCOMPARE(resa::f16_to_f32(0x7bff), 65504.0f);                      // largest finite
    QCOMPARE(resa::f16_to_f32(0x0400), std::ldexp(1.0f, -14));         // smallest normal
    QCOMPARE(resa::f16_to_f32(0x0001), std::ldexp(1.0f, -24));         // smallest subnormal
    QCOMPARE(resa::f16_to_f32(0x03ff), 1023 * std::ldexp(1.0f, -24));  // largest subnormal
    QCOMPARE(resa::f16_to_f32(0x8001), -std::ldexp(1.0f, -24));
    QVERIFY(std::signbit(resa::f16_to_f32(0x8000)) && resa::f16_to_f32(0x8000) == 0.0f);
    QCOMPARE(resa::f16_to_f32(0x7c00), INFINITY);
    QCOMPARE(resa::f16_to_f32(0xfc00), -INFINITY);
    QVERIFY(std::isnan(resa::f16_to_f32(0x7e00)));
  }

  void f32_to_f16_round_trips_every_half() {
    for (uint32_t h = 0; h <= 0xffff; ++h) {
      const float f = resa::f16_to_f32(uint16_t(h));
      const uint16_t back = resa::f32_to_f16(f);
      if (std::isnan(f)) {
        QVERIFY2((back & 0x7c00) == 0x7c00 && (back & 0x3ff) != 0, qPrintable(QString::number(h)));
        QCOMPARE(back & 0x8000, int(h & 0x8000));
      } else {
        QVERIFY2(back == h, qPrintable(QString("0x%1 -> 0x%2").arg(h, 0, 16).arg(back, 0, 16)));
      }
    }
  }

  void f32_to_f16_ties_go_to_even_between_every_pair() {
    // Between each pair of adjacent positive halves (subnormal and normal): the midpoint goes
    // to the even one, a hair above to the upper, a hair below to the lower.
    for (uint16_t h = 0; h < 0x7bff; ++h) {
      const float lo = resa::f16_to_f32(h);
      const float hi = resa::f16_to_f32(uint16_t(h + 1));
      const float mid = float((double(lo) + double(hi)) / 2);  // exact: halves have 11 bits
      const uint16_t even = (h % 2 == 0) ? h : uint16_t(h + 1);
      QCOMPARE(resa::f32_to_f16(mid), even);
      QCOMPARE(resa::f32_to_f16(std::nextafter(mid, INFINITY)), uint16_t(h + 1));
      QCOMPARE(resa::f32_to_f16(std::nextafter(mid, 0.0f)), h);
      QCOMPARE(resa::f32_to_f16(-mid), uint16_t(even | 0x8000));
    }
  }

  void f32_to_f16_handles_overflow_underflow_inf_and_nan() {
    QCOMPARE(resa::f32_to_f16(65519.0f), uint16_t(0x7bff));
    QCOMPARE(resa::f32_to_f16(65520.0f), uint16_t(0x7c00));  // tie with 65536: even is inf
    QCOMPARE(resa::f32_to_f16(1e10f), uint16_t(0x7c00));
    QCOMPARE(resa::f32_to_f16(-1e10f), uint16_t(0xfc00));
    QCOMPARE(resa::f32_to_f16(INFINITY), uint16_t(0x7c00));
    QCOMPARE(resa::f32_to_f16(std::ldexp(1.0f, -25)), uint16_t(0x0000));  // tie with 2^-24
    QCOMPARE(resa::f32_to_f16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), uint16_t(0x0001));
    QCOMPARE(resa::f32_to_f16(1e-10f), uint16_t(0x0000));
    QCOMPARE(resa::f32_to_f16(std::ldexp(1.0f, -140)), uint16_t(0x0000));  // f32 subnormal
    QCOMPARE(resa::f32_to_f16(-0.0f), uint16_t(0x8000));
    QCOMPARE(resa::f32_to_f16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -26)),
             uint16_t(0x0400));  // rounds up into the smallest normal
    const uint16_t nan = resa::f32_to_f16(NAN);
    QCOMPARE(nan & 0x7e00, 0x7e00);  // quiet NaN
  }

  // --- single files ----------------------------------------------------------------------

  void reads_f32_f16_bf16_values_back() {
    QTemporaryDir dir;
    const fs::path p = tmp_path(dir, "model.safetensors");
    resa::test::write_bytes(
        p, safetensors_file({
               {"a", "F32", {2, 3}, f32_bytes({1.0f, -0.5f, 2.25f, 0.0f, 1e-3f, -7.0f})},
               {"b", "F16", {4}, u16_bytes({0x3c00, 0xc000, 0x0001, 0x7c00})},
               {"c", "BF16", {2, 2}, u16_bytes({0x3f80, 0x4049, 0xff80, 0x0001})},
               {"scalar", "F32", {}, f32_bytes({42.0f})},
               {"empty", "F32", {0, 4}, {}},
           }));
    resa::SafetensorsFile f(p);
    QCOMPARE(f.path(), p);
    QCOMPARE(int(f.tensors().size()), 5);  // __metadata__ is not a tensor

    const resa::TensorInfo& a = f.tensors().at("a");
    QCOMPARE(a.name, std::string("a"));
    QVERIFY(a.dtype == DType::kF32);
    QCOMPARE(a.shape, (std::vector<int64_t>{2, 3}));
    QCOMPARE(a.numel(), int64_t(6));
    QCOMPARE(a.nbytes, size_t(24));
    QCOMPARE(a.file, p.string());
    QCOMPARE(f32_at(a, 0), 1.0f);
    QCOMPARE(f32_at(a, 1), -0.5f);
    QCOMPARE(f32_at(a, 4), 1e-3f);
    QCOMPARE(f32_at(a, 5), -7.0f);

    const resa::TensorInfo& b = f.tensors().at("b");
    QVERIFY(b.dtype == DType::kF16);
    QCOMPARE(b.nbytes, size_t(8));
    QCOMPARE(resa::f16_to_f32(u16_at(b, 0)), 1.0f);
    QCOMPARE(resa::f16_to_f32(u16_at(b, 1)), -2.0f);
    QCOMPARE(resa::f16_to_f32(u16_at(b, 2)), std::ldexp(1.0f, -24));
    QCOMPARE(resa::f16_to_f32(u16_at(b, 3)), INFINITY);

    const resa::TensorInfo& c = f.tensors().at("c");
    QVERIFY(c.dtype == DType::kBF16);
    QCOMPARE(resa::bf16_to_f32(u16_at(c, 1)), 3.140625f);
    QCOMPARE(resa::bf16_to_f32(u16_at(c, 2)), -INFINITY);

    const resa::TensorInfo& s = f.tensors().at("scalar");
    QVERIFY(s.shape.empty());
    QCOMPARE(s.numel(), int64_t(1));
    QCOMPARE(f32_at(s, 0), 42.0f);

    QCOMPARE(f.tensors().at("empty").numel(), int64_t(0));
    QCOMPARE(f.tensors().at("empty").nbytes, size_t(0));
  }

  void tensor_data_points_into_the_mapping() {
    QTemporaryDir dir;
    const fs::path p = tmp_path(dir, "m.safetensors");
    const std::vector<char> bytes = safetensors_file({{"x", "F32", {2}, f32_bytes({3, 4})}});
    resa::test::write_bytes(p, bytes);
    resa::MappedFile mapped(p);
    QCOMPARE(mapped.size(), bytes.size());
    QVERIFY(std::memcmp(mapped.data(), bytes.data(), bytes.size()) == 0);
    resa::SafetensorsFile f(p);
    const resa::TensorInfo& x = f.tensors().at("x");
    QCOMPARE(f32_at(x, 1), 4.0f);
    // The data section follows the 8-byte length and the header, 8-aligned by the writer.
    QCOMPARE(reinterpret_cast<uintptr_t>(x.data) % 8, uintptr_t(0));
  }

  void missing_file_says_path_and_what_to_do() {
    QTemporaryDir dir;
    const fs::path p = tmp_path(dir, "nope.safetensors");
    QVERIFY_RESA_ERROR(resa::MappedFile(p), ErrorKind::kFileNotFound, p.string(), "no such file",
                       "download");
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kFileNotFound, p.string());
  }

  void empty_file_says_path_and_to_download_again() {
    QTemporaryDir dir;
    const fs::path p = tmp_path(dir, "empty.safetensors");
    resa::test::write_bytes(p, {});
    QVERIFY_RESA_ERROR(resa::MappedFile(p), ErrorKind::kCorruptFile, p.string(), "is empty",
                       "download it again");
  }

  void directory_is_not_a_weights_file() {
    QTemporaryDir dir;
    QVERIFY_RESA_ERROR(resa::MappedFile(dir.path().toStdString()), ErrorKind::kInvalidArgument,
                       dir.path().toStdString(), "not a regular file");
  }

  void file_shorter_than_8_bytes_names_file() {
    QTemporaryDir dir;
    const fs::path p = tmp_path(dir, "short.safetensors");
    resa::test::write_bytes(p, {1, 0, 0, 0, 0});
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(),
                       "5 bytes, shorter than the 8-byte header length");
  }

  void header_length_past_end_names_file() {
    QTemporaryDir dir;
    const fs::path p = tmp_path(dir, "trunc.safetensors");
    std::vector<char> bytes = raw_file("{}", {});
    bytes[0] = char(0xe8);  // claims a 1000-byte header in a 10-byte file
    bytes[1] = char(0x03);
    resa::test::write_bytes(p, bytes);
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(),
                       "header length 1000 runs past the end of the file (10 bytes)");
  }

  void huge_header_length_does_not_overflow() {
    QTemporaryDir dir;
    const fs::path p = tmp_path(dir, "huge.safetensors");
    std::vector<char> bytes = raw_file("{}", {});
    for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char(0xff);
    resa::test::write_bytes(p, bytes);
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(),
                       "runs past the end of the file");
  }

  void header_not_json_names_file() {
    QTemporaryDir dir;
    const fs::path p = tmp_path(dir, "garbage.safetensors");
    resa::test::write_bytes(p, raw_file("{\"t\": {\"dtype\": ", std::vector<char>(16, 0)));
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(),
                       "header is not valid JSON");
  }

  void header_not_object_names_file() {
    QTemporaryDir dir;
    const fs::path p = tmp_path(dir, "array.safetensors");
    resa::test::write_bytes(p, raw_file("[1, 2, 3]", {}));
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(),
                       "header is not a JSON object");
  }

  void entry_not_object_names_tensor() {
    QTemporaryDir dir;
    const fs::path p = write_one_entry(dir, "[0, 8]", 8);
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(), "tensor 't'",
                       "not an object");
  }

  void unsupported_dtype_names_tensor_and_dtype_data() {
    QTest::addColumn<QString>("dtype");
    for (const char* d : {"I64", "F8_E4M3", "F8_E5M2", "F64", "BOOL", "U8", "float32"}) {
      QTest::newRow(d) << QString(d);
    }
  }
  void unsupported_dtype_names_tensor_and_dtype() {
    QFETCH(QString, dtype);
    QTemporaryDir dir;
    const fs::path p = write_one_entry(
        dir, "{\"dtype\":\"" + dtype.toStdString() + "\",\"shape\":[2],\"data_offsets\":[0,16]}",
        16);
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kUnsupported, p.string(),
                       "tensor 't' has dtype " + dtype.toStdString(), "supported: F32, F16, BF16");
  }

  void missing_dtype_is_corrupt() {
    QTemporaryDir dir;
    const fs::path p = write_one_entry(dir, R"({"shape":[2],"data_offsets":[0,8]})", 8);
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(),
                       "tensor 't' has no 'dtype'");
  }

  void negative_dimension_names_tensor() {
    QTemporaryDir dir;
    const fs::path p =
        write_one_entry(dir, R"({"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]})", 8);
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(),
                       "tensor 't' has shape [2,-1] with a negative dimension");
  }

  void non_integer_dimension_names_tensor_data() {
    QTest::addColumn<QString>("shape");
    QTest::newRow("fraction") << "[2.5]";
    QTest::newRow("string") << R"(["2"])";
    QTest::newRow("null") << "[null]";
    QTest::newRow("nested") << "[[2]]";
  }
  void non_integer_dimension_names_tensor() {
    QFETCH(QString, shape);
    QTemporaryDir dir;
    const fs::path p = write_one_entry(
        dir, "{\"dtype\":\"F32\",\"shape\":" + shape.toStdString() + ",\"data_offsets\":[0,8]}", 8);
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(), "tensor 't'",
                       "must be a list of non-negative integers");
  }

  void shape_not_a_list_names_tensor() {
    QTemporaryDir dir;
    const fs::path p = write_one_entry(dir, R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})", 8);
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(),
                       "tensor 't' has no 'shape' list");
  }

  void data_offsets_past_data_section_names_tensor() {
    QTemporaryDir dir;
    const fs::path p =
        write_one_entry(dir, R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})", 8);
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(),
                       "tensor 't' has data_offsets [0, 16] past the end of the data section "
                       "(8 bytes)");
  }

  void data_offsets_begin_after_end_names_tensor() {
    QTemporaryDir dir;
    const fs::path p =
        write_one_entry(dir, R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})", 8);
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(),
                       "tensor 't' has data_offsets [8, 0] with begin after end");
  }

  void data_offsets_malformed_names_tensor_data() {
    QTest::addColumn<QString>("entry");
    QTest::newRow("missing") << R"({"dtype":"F32","shape":[2]})";
    QTest::newRow("one_number") << R"({"dtype":"F32","shape":[2],"data_offsets":[8]})";
    QTest::newRow("negative") << R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})";
    QTest::newRow("fraction") << R"({"dtype":"F32","shape":[2],"data_offsets":[0,8.0]})";
  }
  void data_offsets_malformed_names_tensor() {
    QFETCH(QString, entry);
    QTemporaryDir dir;
    const fs::path p = write_one_entry(dir, entry.toStdString(), 8);
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(),
                       "tensor 't' needs 'data_offsets' as [begin, end]");
  }

  void byte_count_not_matching_shape_names_tensor() {
    QTemporaryDir dir;
    const fs::path p =
        write_one_entry(dir, R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})", 8);
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(),
                       "tensor 't' holds 8 bytes but shape [3] of F32 needs 12 bytes");
  }

  void impossibly_large_shape_is_rejected() {
    QTemporaryDir dir;
    const fs::path p = write_one_entry(
        dir, R"({"dtype":"BF16","shape":[4294967296,4294967296],"data_offsets":[0,8]})", 8);
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(),
                       "tensor 't' has an impossibly large shape");
  }

  void overlapping_tensors_are_named_both() {
    QTemporaryDir dir;
    const fs::path p = tmp_path(dir, "overlap.safetensors");
    resa::test::write_bytes(
        p, raw_file(R"({"first":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("second":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                    std::vector<char>(12, 0)));
    QVERIFY_RESA_ERROR(resa::SafetensorsFile(p), ErrorKind::kCorruptFile, p.string(),
                       "tensors 'first' [0, 8] and 'second' [4, 12] overlap");
  }

  void adjacent_and_empty_tensors_do_not_overlap() {
    QTemporaryDir dir;
    const fs::path p = tmp_path(dir, "adjacent.safetensors");
    resa::test::write_bytes(p, raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                        R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},)"
                                        R"("e":{"dtype":"F16","shape":[0],"data_offsets":[4,4]}})",
                                        std::vector<char>(12, 0)));
    resa::SafetensorsFile f(p);
    QCOMPARE(int(f.tensors().size()), 3);
  }

  // --- checkpoints -----------------------------------------------------------------------

  void checkpoint_reads_model_safetensors() {
    QTemporaryDir dir;
    const fs::path root = dir.path().toStdString();
    resa::test::write_bytes(root / "model.safetensors",
                            safetensors_file({{"w", "F32", {2, 2}, f32_bytes({1, 2, 3, 4})},
                                              {"n", "BF16", {2}, u16_bytes({0x3f80, 0x4000})}}));
    const resa::Checkpoint ckpt(root);
    QCOMPARE(ckpt.source(), root / "model.safetensors");
    QVERIFY(ckpt.has("w") && ckpt.has("n") && !ckpt.has("x"));
    QCOMPARE(int(ckpt.tensors().size()), 2);
    const resa::TensorInfo& w = ckpt.get("w", {2, 2});
    QCOMPARE(f32_at(w, 3), 4.0f);
    QCOMPARE(resa::bf16_to_f32(u16_at(ckpt.get("n", {2}), 1)), 2.0f);
  }

  void checkpoint_accepts_a_safetensors_file_path() {
    QTemporaryDir dir;
    const fs::path file = tmp_path(dir, "tiny.safetensors");
    resa::test::write_bytes(file, safetensors_file({{"w", "F32", {1}, f32_bytes({5})}}));
    const resa::Checkpoint ckpt(file);
    QCOMPARE(f32_at(ckpt.get("w", {1}), 0), 5.0f);
  }

  void checkpoint_reads_shards_listed_by_index() {
    QTemporaryDir dir;
    const fs::path root = dir.path().toStdString();
    const fs::path shard1 = root / "model-00001-of-00002.safetensors";
    const fs::path shard2 = root / "model-00002-of-00002.safetensors";
    resa::test::write_bytes(shard1, safetensors_file({{"a", "F32", {2}, f32_bytes({1, 2})},
                                                      {"b", "F16", {1}, u16_bytes({0x3c00})}}));
    resa::test::write_bytes(shard2, safetensors_file({{"c", "BF16", {1}, u16_bytes({0x4040})}}));
    resa::test::write_text(root / "model.safetensors.index.json",
                           R"({"metadata": {"total_size": 14}, "weight_map": {)"
                           R"("a": "model-00001-of-00002.safetensors",)"
                           R"("b": "model-00001-of-00002.safetensors",)"
                           R"("c": "model-00002-of-00002.safetensors"}})");
    const resa::Checkpoint ckpt(root);
    QCOMPARE(ckpt.source(), root / "model.safetensors.index.json");
    QCOMPARE(int(ckpt.tensors().size()), 3);
    QCOMPARE(f32_at(ckpt.get("a", {2}), 1), 2.0f);
    QCOMPARE(resa::f16_to_f32(u16_at(ckpt.get("b", {1}), 0)), 1.0f);
    QCOMPARE(resa::bf16_to_f32(u16_at(ckpt.get("c", {1}), 0)), 3.0f);
    QCOMPARE(ckpt.get("a", {2}).file, shard1.string());
    QCOMPARE(ckpt.get("c", {1}).file, shard2.string());
  }

  void checkpoint_missing_shard_names_index_and_shard() {
    QTemporaryDir dir;
    const fs::path root = dir.path().toStdString();
    resa::test::write_bytes(root / "model-00001-of-00002.safetensors",
                            safetensors_file({{"a", "F32", {1}, f32_bytes({1})}}));
    resa::test::write_text(root / "model.safetensors.index.json",
                           R"({"weight_map": {"a": "model-00001-of-00002.safetensors",)"
                           R"("z": "model-00002-of-00002.safetensors"}})");
    QVERIFY_RESA_ERROR(resa::Checkpoint(root), ErrorKind::kFileNotFound,
                       (root / "model.safetensors.index.json").string(),
                       "shard 'model-00002-of-00002.safetensors'", "tensor 'z'",
                       "download model-00002-of-00002.safetensors");
  }

  void checkpoint_tensor_in_index_but_not_in_shard_names_both() {
    QTemporaryDir dir;
    const fs::path root = dir.path().toStdString();
    resa::test::write_bytes(root / "s1.safetensors",
                            safetensors_file({{"a", "F32", {1}, f32_bytes({1})}}));
    resa::test::write_text(root / "model.safetensors.index.json",
                           R"({"weight_map": {"a": "s1.safetensors", "ghost": "s1.safetensors"}})");
    QVERIFY_RESA_ERROR(resa::Checkpoint(root), ErrorKind::kCorruptFile,
                       (root / "model.safetensors.index.json").string(),
                       "maps tensor 'ghost' to shard 's1.safetensors'", "has no such tensor");
  }

  void checkpoint_index_without_weight_map_is_corrupt() {
    QTemporaryDir dir;
    const fs::path root = dir.path().toStdString();
    resa::test::write_text(root / "model.safetensors.index.json", R"({"metadata": {}})");
    QVERIFY_RESA_ERROR(resa::Checkpoint(root), ErrorKind::kCorruptFile,
                       (root / "model.safetensors.index.json").string(), "'weight_map' is missing");
  }

  void checkpoint_index_not_json_names_index() {
    QTemporaryDir dir;
    const fs::path root = dir.path().toStdString();
    resa::test::write_text(root / "model.safetensors.index.json", "{\"weight_map\": {");
    QVERIFY_RESA_ERROR(resa::Checkpoint(root), ErrorKind::kCorruptFile,
                       (root / "model.safetensors.index.json").string(), "not valid JSON");
  }

  void checkpoint_index_cannot_point_outside_the_folder() {
    QTemporaryDir dir;
    const fs::path root = dir.path().toStdString();
    resa::test::write_text(root / "model.safetensors.index.json",
                           R"({"weight_map": {"a": "../elsewhere.safetensors"}})");
    QVERIFY_RESA_ERROR(resa::Checkpoint(root), ErrorKind::kCorruptFile,
                       "shard '../elsewhere.safetensors'", "inside the model folder");
  }

  void checkpoint_without_weights_says_what_to_download() {
    QTemporaryDir dir;
    const fs::path root = dir.path().toStdString();
    resa::test::write_text(root / "pytorch_model.bin", "not read");
    QVERIFY_RESA_ERROR(resa::Checkpoint(root), ErrorKind::kFileNotFound,
                       "no model.safetensors or model.safetensors.index.json in " + root.string() +
                           " (download the model's safetensors weights; .bin/.pth checkpoints "
                           "are not supported)");
  }

  void checkpoint_of_missing_folder_is_file_not_found() {
    QTemporaryDir dir;
    const fs::path root = tmp_path(dir, "no-such-model");
    QVERIFY_RESA_ERROR(resa::Checkpoint(root), ErrorKind::kFileNotFound, root.string(),
                       "no such folder");
  }

  void get_missing_tensor_names_tensor_and_file() {
    QTemporaryDir dir;
    const fs::path root = dir.path().toStdString();
    resa::test::write_bytes(root / "model.safetensors",
                            safetensors_file({{"w", "F32", {1}, f32_bytes({1})}}));
    const resa::Checkpoint ckpt(root);
    QVERIFY_RESA_ERROR(ckpt.get("model.layers.3.mlp.up_proj.weight", {4, 4}),
                       ErrorKind::kCorruptFile,
                       "tensor 'model.layers.3.mlp.up_proj.weight' not found in " +
                           (root / "model.safetensors").string());
  }

  void get_wrong_shape_names_file_expected_and_actual() {
    QTemporaryDir dir;
    const fs::path root = dir.path().toStdString();
    resa::test::write_bytes(
        root / "model.safetensors",
        safetensors_file({{"w", "F32", {2, 3}, f32_bytes({1, 2, 3, 4, 5, 6})}}));
    const resa::Checkpoint ckpt(root);
    QVERIFY_RESA_ERROR(ckpt.get("w", {3, 2}), ErrorKind::kShapeMismatch,
                       "tensor 'w' in " + (root / "model.safetensors").string() +
                           " has shape [2, 3], expected [3, 2]");
  }

  void shape_string_formats_like_python() {
    QCOMPARE(resa::shape_string({}), std::string("[]"));
    QCOMPARE(resa::shape_string({32000, 2048}), std::string("[32000, 2048]"));
  }
};

QTEST_APPLESS_MAIN(TestSafetensors)
#include "test_safetensors.moc"
