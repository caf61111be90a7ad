// Small helpers shared by the test suites.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace resa::test {

std::filesystem::path fixtures_dir();
std::filesystem::path fixture(const std::string& relative);
std::string read_text(const std::filesystem::path& p);
std::vector<char> read_bytes(const std::filesystem::path& p);
void write_text(const std::filesystem::path& p, const std::string& text);
void write_bytes(const std::filesystem::path& p, const std::vector<char>& bytes);
// Little-endian f32 / i32 arrays as written by tools/make_fixtures.py.
std::vector<float> read_f32(const std::filesystem::path& p);
std::vector<int> read_i32(const std::filesystem::path& p);

}  // namespace resa::test
