#include "tests/support/test_support.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace resa::test {

std::filesystem::path fixtures_dir() { return RESA_FIXTURES_DIR; }

std::filesystem::path fixture(const std::string& relative) { return fixtures_dir() / relative; }

std::vector<char> read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + p.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string read_text(const std::filesystem::path& p) {
  auto b = read_bytes(p);
  return {b.begin(), b.end()};
}

void write_bytes(const std::filesystem::path& p, const std::vector<char>& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

void write_text(const std::filesystem::path& p, const std::string& text) {
  write_bytes(p, std::vector<char>(text.begin(), text.end()));
}

template <typename T>
static std::vector<T> read_array(const std::filesystem::path& p) {
  auto b = read_bytes(p);
  if (b.size() % sizeof(T) != 0) throw std::runtime_error("odd size: " + p.string());
  std::vector<T> v(b.size() / sizeof(T));
  std::memcpy(v.data(), b.data(), b.size());
  return v;
}

std::vector<float> read_f32(const std::filesystem::path& p) { return read_array<float>(p); }
std::vector<int> read_i32(const std::filesystem::path& p) { return read_array<int>(p); }

}  // namespace resa::test
