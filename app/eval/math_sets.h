// The five math test sets of shared/data/math (the ReSA paper's math table): loading, the gold
// answer of each problem in its own notation, and the prompt of the protocol.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace resa::eval {

struct MathProblem {
  std::string set;  // "aime24", ...
  int index = 0;    // 0-based line in the file
  std::string question;
  std::string gold;      // as the set writes it (olympiadbench's list joined by ", ")
  std::string solution;  // the reference solution where the set has one (a list: joined)
};

// aime24, amc23, gaokao2023en, minerva_math, olympiadbench.
const std::vector<std::string>& math_set_names();

// Reads `dir`/`name`.jsonl. minerva_math's gold is the last \boxed{} of its solution. Throws
// std::runtime_error naming the file and line when it is missing or a line is malformed.
std::vector<MathProblem> load_math_set(const std::filesystem::path& dir, const std::string& name);

// data/math/README.md: "Please reason step by step, and put your final answer within
// \boxed{}. {question}".
std::string math_user_prompt(std::string_view question);

}  // namespace resa::eval
