// Grading of math answers (the protocol of shared/data/math/README.md): the last \boxed{...} of
// a response is compared with the gold answer, equal up to notation. Qt-free, so the grader's
// unit test needs nothing else.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace resa::eval {

// The content of the last \boxed{...} (also \fbox{...}, \framebox{...}, "\boxed 5") of `text`,
// without the braces; nullopt when there is none or its braces never close.
std::optional<std::string> last_boxed(std::string_view text);

// The canonical string form of an answer: math delimiters ($, \(, \[), LaTeX spacing, \left /
// \right, \displaystyle, \text{} / \mathrm{} wrappers, degree and percent signs, trailing units
// and full stops removed; \dfrac / \tfrac -> \frac, \frac12 -> \frac{1}{2}, \sqrt2 -> \sqrt{2};
// thousands separators dropped ("10,000" -> "10000"); multiple-choice letters bare ("(B)" -> "B").
std::string normalize_answer(std::string_view answer);

// Value of a closed expression in the LaTeX subset answers use (numbers, + - * / ^ !, \frac,
// \sqrt, \sqrt[n], \pi, \cdot, \times, \div, \sin \cos \tan \ln \log \exp, implicit products,
// scientific notation). nullopt when it has a free variable, does not parse or is not finite.
std::optional<double> evaluate_answer(std::string_view answer);

// True when `predicted` and `gold` are the same answer up to notation: equal canonical strings,
// equal values (integers exactly, other numbers to a relative 1e-4; a percent may be written as
// its fraction), equal lists / tuples / intervals element by element (sets and unbracketed
// lists in any order), "x = 3" against "3", or expressions in the same variables that agree at
// several random points.
bool answers_equal(std::string_view predicted, std::string_view gold);

// Grades one model response: its last \boxed{} against `gold`. False when nothing is boxed.
bool grade_response(std::string_view response, std::string_view gold);

}  // namespace resa::eval
