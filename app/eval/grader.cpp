#include "app/eval/grader.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <numbers>
#include <vector>

namespace resa::eval {
namespace {

bool is_alpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }
bool is_digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }
bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
}

// Removes `cmd` (a backslash command) wherever the next character is not a letter, so "\left("
// loses "\left" but "\leftarrow" stays.
void remove_command(std::string& s, std::string_view cmd) {
  size_t pos = 0;
  while ((pos = s.find(cmd, pos)) != std::string::npos) {
    const size_t end = pos + cmd.size();
    if (end < s.size() && is_alpha(s[end])) {
      pos = end;
      continue;
    }
    s.erase(pos, cmd.size());
  }
}

// Index one past the brace group that opens at s[open] == '{', or npos when it never closes.
// Escaped braces (\{ \}) do not count.
size_t match_brace(std::string_view s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
      continue;
    }
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return i + 1;
  }
  return std::string::npos;
}

// "\text{abc}" -> "abc" for every wrapper command in `cmds`, innermost last.
void unwrap_commands(std::string& s, const std::vector<std::string_view>& cmds) {
  for (bool changed = true; changed;) {
    changed = false;
    for (std::string_view cmd : cmds) {
      size_t pos = s.find(cmd);
      while (pos != std::string::npos) {
        size_t b = pos + cmd.size();
        while (b < s.size() && s[b] == ' ') ++b;
        if (b < s.size() && s[b] == '{') {
          const size_t e = match_brace(s, b);
          if (e != std::string::npos) {
            s = s.substr(0, pos) + s.substr(b + 1, e - b - 2) + s.substr(e);
            changed = true;
          }
        }
        pos = s.find(cmd, pos + 1);
      }
    }
  }
}

// "$a$ and $b$" -> "a,b" when the answer opens in math mode; elsewhere stray '$' are dropped.
std::string keep_math_segments(std::string s) {
  if (s.empty() || s[0] != '$' || std::count(s.begin(), s.end(), '$') < 2) {
    s.erase(std::remove(s.begin(), s.end(), '$'), s.end());
    return s;
  }
  std::vector<std::string> parts;
  size_t i = 0;
  while (true) {
    size_t a = s.find('$', i);
    if (a == std::string::npos) break;
    size_t skip = (a + 1 < s.size() && s[a + 1] == '$') ? 2 : 1;  // $$...$$
    size_t b = s.find('$', a + skip);
    if (b == std::string::npos) break;
    parts.push_back(trim(std::string_view(s).substr(a + skip, b - a - skip)));
    i = b + skip;
  }
  std::string out;
  for (const std::string& p : parts) {
    if (p.empty()) continue;
    out += (out.empty() ? "" : ",") + p;
  }
  return out;
}

// \frac12 -> \frac{1}{2}, \frac1{x} -> \frac{1}{x}, \sqrt2 -> \sqrt{2} (nested ones too).
std::string brace_short_arguments(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != '\\') {
      out += s[i++];
      continue;
    }
    size_t e = i + 1;
    while (e < s.size() && is_alpha(s[e])) ++e;
    if (e == i + 1) {  // \{, \, ...: copy the escape whole
      out.append(s, i, std::min<size_t>(2, s.size() - i));
      i += 2;
      continue;
    }
    const std::string name = s.substr(i, e - i);
    out += name;
    i = e;
    if (name != "\\frac" && name != "\\sqrt") continue;
    if (name == "\\sqrt" && i < s.size() && s[i] == '[') {  // \sqrt[n]{x}
      const size_t close = s.find(']', i);
      if (close == std::string::npos) continue;
      out.append(s, i, close + 1 - i);
      i = close + 1;
    }
    for (int a = 0; a < (name == "\\frac" ? 2 : 1) && i < s.size(); ++a) {
      if (s[i] == '{') {
        const size_t g = match_brace(s, i);
        if (g == std::string::npos) break;
        out += '{';
        out += brace_short_arguments(s.substr(i + 1, g - i - 2));
        out += '}';
        i = g;
      } else if (s[i] == '\\') {
        size_t g = i + 1;
        while (g < s.size() && is_alpha(s[g])) ++g;
        out += '{';
        out.append(s, i, g - i);
        out += '}';
        i = g;
      } else {
        out += '{';
        out += s[i++];
        out += '}';
      }
    }
  }
  return out;
}

bool is_thousands_number(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  const size_t first = i;
  while (i < s.size() && is_digit(s[i])) ++i;
  if (i == first || i - first > 3) return false;
  bool grouped = false;
  while (i < s.size() && s[i] == ',') {
    for (int k = 1; k <= 3; ++k)
      if (i + k >= s.size() || !is_digit(s[i + k])) return false;
    i += 4;
    grouped = true;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_digit(s[i])) ++i;
  }
  return grouped && i == s.size();
}

struct Normalized {
  std::string text;
  bool percent = false;
};

Normalized normalize(std::string_view answer);

// ---------------------------------------------------------------------------------------------
// Expression evaluation: a recursive-descent parser over the normalised text. Variables take
// values from `vars` (symbolic comparison) or make the parse fail (closed evaluation).
class Evaluator {
 public:
  Evaluator(std::string_view s, const std::function<double(const std::string&)>* vars)
      : s_(s), vars_(vars) {}

  std::optional<double> run() {
    const double v = expr();
    if (failed_ || i_ != s_.size() || !std::isfinite(v)) return std::nullopt;
    return v;
  }
  int variables_seen() const { return variables_; }

 private:
  bool at_end() const { return i_ >= s_.size(); }
  void skip_spaces() {
    while (i_ < s_.size() && s_[i_] == ' ') ++i_;
  }
  char peek() {
    skip_spaces();
    return at_end() ? '\0' : s_[i_];
  }
  bool accept(char c) {
    if (peek() != c) return false;
    ++i_;
    return true;
  }
  bool accept(std::string_view word) {
    skip_spaces();
    if (s_.substr(i_, word.size()) != word) return false;
    const size_t end = i_ + word.size();
    if (word[0] == '\\' && end < s_.size() && is_alpha(s_[end])) return false;
    i_ = end;
    return true;
  }
  double fail() {
    failed_ = true;
    return std::nan("");
  }

  double expr() {
    double v = term();
    while (!failed_) {
      if (accept('+'))
        v += term();
      else if (accept('-'))
        v -= term();
      else
        break;
    }
    return v;
  }

  bool starts_atom() {
    const char c = peek();
    if (is_digit(c) || c == '.' || is_alpha(c) || c == '(' || c == '{' || c == '[') return true;
    if (c != '\\') return false;
    static const char* kOps[] = {"\\cdot", "\\times", "\\div", "\\right", "\\}"};
    for (const char* op : kOps)
      if (s_.substr(i_, std::string_view(op).size()) == op) return false;
    return true;
  }

  double term() {
    double v = factor();
    while (!failed_) {
      if (accept('*') || accept("\\cdot") || accept("\\times"))
        v *= factor();
      else if (accept('/') || accept("\\div"))
        v /= factor();
      else if (starts_atom())
        v *= factor();  // implicit product: 2\pi, 3\sqrt{2}, 2x
      else
        break;
    }
    return v;
  }

  double factor() {
    if (accept('-')) return -factor();
    if (accept('+')) return factor();
    return power();
  }

  double power() {
    double base = postfix(atom());
    if (accept('^')) {
      double e;
      if (peek() == '{') {
        e = group('{', '}');
      } else if (peek() == '-' || peek() == '+') {
        const bool neg = s_[i_++] == '-';
        e = single();
        if (neg) e = -e;
      } else {
        e = single();
      }
      return std::pow(base, e);
    }
    return base;
  }

  double postfix(double v) {
    while (accept('!')) {
      if (v < 0 || v > 170 || v != std::floor(v)) return fail();
      double f = 1;
      for (int k = 2; k <= int(v); ++k) f *= k;
      v = f;
    }
    return v;
  }

  // One character's worth of exponent, as LaTeX reads x^23 (= x^2 * 3).
  double single() {
    if (is_digit(peek())) return double(s_[i_++] - '0');
    return atom();
  }

  double group(char open, char close) {
    if (!accept(open)) return fail();
    const double v = expr();
    if (!accept(close)) return fail();
    return v;
  }

  double number() {
    const size_t b = i_;
    while (is_digit(peek())) ++i_;
    if (peek() == '.') {
      ++i_;
      while (is_digit(peek())) ++i_;
    }
    if (i_ == b || (i_ == b + 1 && s_[b] == '.')) return fail();
    // Scientific notation 4.5e33 / 1E-5 (a bare "2e" stays 2 times e).
    if ((peek() == 'e' || peek() == 'E')) {
      size_t j = i_ + 1;
      if (j < s_.size() && (s_[j] == '-' || s_[j] == '+')) ++j;
      if (j < s_.size() && is_digit(s_[j])) {
        i_ = j;
        while (is_digit(peek())) ++i_;
      }
    }
    return std::strtod(std::string(s_.substr(b, i_ - b)).c_str(), nullptr);
  }

  // A variable, with its subscript (x_1 and x_{1} are one name) and primes.
  double variable(std::string name) {
    if (accept('_')) {
      if (peek() == '{') {
        const size_t e = match_brace(s_, i_);
        if (e == std::string::npos) return fail();
        name += '_';
        name.append(s_.substr(i_ + 1, e - i_ - 2));
        i_ = e;
      } else if (!at_end()) {
        name += '_';
        name += s_[i_++];
      }
    }
    while (accept('\'')) name += "'";
    ++variables_;
    if (!vars_) return fail();
    return (*vars_)(name);
  }

  // A function's argument: a bracketed group or the next power (\sin x, \ln 2).
  double argument() {
    if (peek() == '(') return group('(', ')');
    if (peek() == '{') return group('{', '}');
    return power();
  }

  double atom() {
    if (failed_) return fail();
    const char c = peek();
    if (is_digit(c) || c == '.') return number();
    if (c == '(') return group('(', ')');
    if (c == '{') return group('{', '}');
    if (c == '[') return group('[', ']');
    if (is_alpha(c)) return variable(std::string(1, s_[i_++]));
    if (c != '\\') return fail();
    if (accept("\\frac") || accept("\\dfrac") || accept("\\tfrac")) {
      const double a = group('{', '}');
      const double b = group('{', '}');
      return a / b;
    }
    if (accept("\\binom")) {
      const double n = group('{', '}');
      const double k = group('{', '}');
      if (n < 0 || k < 0 || n != std::floor(n) || k != std::floor(k) || k > n) return fail();
      double r = 1;
      for (int j = 1; j <= int(k); ++j) r = r * (n - k + j) / j;
      return std::round(r);
    }
    if (accept("\\sqrt")) {
      double root = 2;
      if (peek() == '[') root = group('[', ']');
      const double x = peek() == '{' ? group('{', '}') : single();
      if (root == 3) return std::cbrt(x);
      return std::pow(x, 1.0 / root);
    }
    if (accept("\\pi")) return std::numbers::pi;
    if (accept("\\left")) return atom();
    struct Fn {
      const char* name;
      double (*f)(double);
    };
    static const Fn kFns[] = {{"\\sin", [](double x) { return std::sin(x); }},
                              {"\\cos", [](double x) { return std::cos(x); }},
                              {"\\tan", [](double x) { return std::tan(x); }},
                              {"\\cot", [](double x) { return 1.0 / std::tan(x); }},
                              {"\\sec", [](double x) { return 1.0 / std::cos(x); }},
                              {"\\csc", [](double x) { return 1.0 / std::sin(x); }},
                              {"\\arcsin", [](double x) { return std::asin(x); }},
                              {"\\arccos", [](double x) { return std::acos(x); }},
                              {"\\arctan", [](double x) { return std::atan(x); }},
                              {"\\ln", [](double x) { return std::log(x); }},
                              {"\\exp", [](double x) { return std::exp(x); }}};
    for (const Fn& fn : kFns)
      if (accept(fn.name)) return fn.f(argument());
    if (accept("\\log")) {
      double base = 10;
      if (accept('_')) base = peek() == '{' ? group('{', '}') : single();
      return std::log(argument()) / std::log(base);
    }
    // Greek letters and other symbols are variables.
    static const char* kGreek[] = {"\\alpha",  "\\beta", "\\gamma", "\\delta",   "\\theta",
                                   "\\lambda", "\\mu",   "\\phi",   "\\varphi",  "\\omega",
                                   "\\sigma",  "\\rho",  "\\tau",   "\\epsilon", "\\varepsilon"};
    for (const char* g : kGreek)
      if (accept(g)) return variable(g);
    return fail();
  }

  std::string_view s_;
  size_t i_ = 0;
  const std::function<double(const std::string&)>* vars_;
  bool failed_ = false;
  int variables_ = 0;
};

std::optional<double> evaluate_normalized(std::string_view s) {
  if (s.empty()) return std::nullopt;
  return Evaluator(s, nullptr).run();
}

bool numbers_equal(double a, double b) {
  const bool ints =
      a == std::floor(a) && b == std::floor(b) && std::fabs(a) < 1e15 && std::fabs(b) < 1e15;
  if (ints) return a == b;
  return std::fabs(a - b) <= 1e-4 * std::max(std::fabs(a), std::fabs(b));
}

// Expressions with variables: equal when they agree at several pseudo-random points.
bool symbolic_equal(std::string_view a, std::string_view b) {
  bool nonzero = false;  // I(0) e^{t}, read as a product with 0, is 0 everywhere: no evidence
  for (uint64_t seed : {0x9e3779b97f4a7c15ull, 0xc2b2ae3d27d4eb4full, 0x165667b19e3779f9ull}) {
    const std::function<double(const std::string&)> vars = [seed](const std::string& name) {
      uint64_t h = seed;
      for (char c : name) h = (h ^ uint8_t(c)) * 0x100000001b3ull;
      h ^= h >> 29;
      return 0.5 + double(h % 100000) / 50000.0;  // in [0.5, 2.5)
    };
    Evaluator ea(a, &vars), eb(b, &vars);
    const auto va = ea.run();
    const auto vb = eb.run();
    if (!va || !vb || ea.variables_seen() == 0 || eb.variables_seen() == 0) return false;
    if (std::fabs(*va - *vb) > 1e-6 * std::max({1.0, std::fabs(*va), std::fabs(*vb)})) return false;
    nonzero = nonzero || std::fabs(*va) > 1e-9;
  }
  return nonzero;
}

// Splits at `sep` outside brackets and braces.
std::vector<std::string> split_top_level(std::string_view s, char sep) {
  std::vector<std::string> out;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\\' && i + 1 < s.size()) {
      if (s[i + 1] == '{') ++depth;
      if (s[i + 1] == '}') --depth;
      ++i;
      continue;
    }
    if (c == '(' || c == '[' || c == '{') ++depth;
    if (c == ')' || c == ']' || c == '}') --depth;
    if (c == sep && depth == 0) {
      out.emplace_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  out.emplace_back(s.substr(start));
  return out;
}

struct Bracketed {
  std::string_view open, close;  // "(", "[", "\\{" and ")", "]", "\\}"
  std::string inner;
};

// "(1,2)" -> {"(", ")", "1,2"} when the opening bracket closes at the very end.
std::optional<Bracketed> outer_brackets(std::string_view s) {
  if (s.size() < 2) return std::nullopt;
  Bracketed b;
  if (s.substr(0, 2) == "\\{")
    b.open = s.substr(0, 2);
  else if (s[0] == '(' || s[0] == '[')
    b.open = s.substr(0, 1);
  else
    return std::nullopt;
  if (s.substr(s.size() - 2) == "\\}")
    b.close = s.substr(s.size() - 2);
  else if (s.back() == ')' || s.back() == ']')
    b.close = s.substr(s.size() - 1);
  else
    return std::nullopt;
  if ((b.open == "\\{") != (b.close == "\\}")) return std::nullopt;
  if (s.size() < b.open.size() + b.close.size()) return std::nullopt;
  // The first bracket must close at the end: depth never returns to 0 before.
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\\' && i + 1 < s.size()) {
      if (s[i + 1] == '{') ++depth;
      if (s[i + 1] == '}') --depth;
      ++i;
    } else if (c == '(' || c == '[' || c == '{') {
      ++depth;
    } else if (c == ')' || c == ']' || c == '}') {
      --depth;
    }
    if (depth == 0 && i + 1 < s.size()) return std::nullopt;
  }
  b.inner = std::string(s.substr(b.open.size(), s.size() - b.open.size() - b.close.size()));
  return b;
}

bool equal_normalized(const std::string& a, const std::string& b, bool percent, int depth);

bool lists_equal(const std::vector<std::string>& a, const std::vector<std::string>& b, bool ordered,
                 bool percent, int depth) {
  if (a.size() != b.size()) return false;
  bool in_order = true;
  for (size_t i = 0; i < a.size() && in_order; ++i)
    in_order = equal_normalized(a[i], b[i], percent, depth + 1);
  if (in_order || ordered) return in_order;
  std::vector<bool> used(b.size(), false);
  for (const std::string& x : a) {
    bool found = false;
    for (size_t j = 0; j < b.size() && !found; ++j) {
      if (!used[j] && equal_normalized(x, b[j], percent, depth + 1)) used[j] = found = true;
    }
    if (!found) return false;
  }
  return true;
}

// The right-hand side of "x=3" / "f(x)=..." / "\angleA=90" when the left is a short name.
std::optional<std::string> rhs_of_definition(const std::string& s) {
  const std::vector<std::string> sides = split_top_level(s, '=');
  if (sides.size() != 2 || sides[0].empty() || sides[1].empty()) return std::nullopt;
  const std::string& lhs = sides[0];
  if (lhs.size() > 24 || lhs.find_first_of("<>") != std::string::npos) return std::nullopt;
  if (evaluate_normalized(lhs)) return std::nullopt;  // "2+2=4" is not a definition
  return sides[1];
}

// "x\in[2,\infty)" -> "[2,\infty)".
std::string strip_membership(const std::string& s) {
  const size_t p = s.find("\\in");
  if (p != std::string::npos && p > 0 && p <= 4 && (p + 3 >= s.size() || !is_alpha(s[p + 3])))
    return s.substr(p + 3);
  return s;
}

bool equal_normalized(const std::string& a, const std::string& b, bool percent, int depth) {
  if (a.empty() || b.empty() || depth > 8) return false;  // nothing is not an answer
  if (a == b) return true;
  const auto va = evaluate_normalized(a);
  const auto vb = evaluate_normalized(b);
  if (va && vb) {
    if (numbers_equal(*va, *vb)) return true;
    return percent && (numbers_equal(*va, *vb * 100) || numbers_equal(*va * 100, *vb));
  }
  // Definitions and memberships: "x=3" against "3".
  const auto ra = rhs_of_definition(a), rb = rhs_of_definition(b);
  if (ra && !rb && equal_normalized(*ra, b, percent, depth + 1)) return true;
  if (rb && !ra && equal_normalized(a, *rb, percent, depth + 1)) return true;
  if (ra && rb) {
    const auto la = split_top_level(a, '=')[0], lb = split_top_level(b, '=')[0];
    if (la == lb && equal_normalized(*ra, *rb, percent, depth + 1)) return true;
  }
  const std::string ma = strip_membership(a), mb = strip_membership(b);
  if (ma != a || mb != b) return equal_normalized(ma, mb, percent, depth + 1);

  // Tuples, intervals, sets and bare lists.
  const auto ba = outer_brackets(a), bb = outer_brackets(b);
  if (ba && bb) {
    const bool set = ba->open == "\\{" && bb->open == "\\{";
    if (ba->open != bb->open || ba->close != bb->close) {
      // (a,b) against [a,b]: different intervals; a set against a tuple: different objects.
      return false;
    }
    return lists_equal(split_top_level(ba->inner, ','), split_top_level(bb->inner, ','), !set,
                       percent, depth);
  }
  const auto la = split_top_level(a, ','), lb = split_top_level(b, ',');
  if (ba && !bb && lb.size() > 1) {
    return lists_equal(split_top_level(ba->inner, ','), lb, ba->open != "\\{", percent, depth);
  }
  if (bb && !ba && la.size() > 1) {
    return lists_equal(la, split_top_level(bb->inner, ','), bb->open != "\\{", percent, depth);
  }
  if (la.size() > 1 || lb.size() > 1) return lists_equal(la, lb, false, percent, depth);

  return symbolic_equal(a, b);
}

Normalized normalize(std::string_view answer) {
  Normalized out;
  std::string s = trim(answer);
  if (auto boxed = last_boxed(s)) s = trim(*boxed);
  replace_all(s, "\\$", "");  // a currency sign, not math mode
  s = keep_math_segments(s);
  for (std::string_view d : {"\\(", "\\)", "\\[", "\\]"}) replace_all(s, d, " ");
  replace_all(s, "\\dfrac", "\\frac");
  replace_all(s, "\\tfrac", "\\frac");
  for (std::string_view c : {"\\displaystyle", "\\left", "\\right", "\\bigl", "\\bigr", "\\Bigl",
                             "\\Bigr", "\\big", "\\Big", "\\limits"})
    remove_command(s, c);
  replace_all(s, "{,}", "");
  for (std::string_view sp : {"\\!", "\\,", "\\;", "\\:", "\\ "}) replace_all(s, sp, " ");
  for (std::string_view sp : {"\\qquad", "\\quad"}) remove_command(s, sp);
  replace_all(s, "~", " ");
  // Degrees.
  for (std::string_view d :
       {"^{\\circ}", "^\\circ", "^{\\circ }", "{}^{\\circ}", "\\circ", "°", "\\degree"})
    replace_all(s, d, "");
  // Percent: remembered, so 50\% may equal 0.5.
  if (s.find('%') != std::string::npos) out.percent = true;
  replace_all(s, "\\%", "");
  replace_all(s, "%", "");
  unwrap_commands(s, {"\\text", "\\textbf", "\\textit", "\\mathrm", "\\mathbf", "\\mbox",
                      "\\operatorname", "\\boldsymbol", "\\mathit"});
  replace_all(s, "\\le ", "\\leq ");
  replace_all(s, "\\ge ", "\\geq ");
  for (std::string_view d : {"\\ldots", "\\cdots", "\\dots"}) replace_all(s, d, "...");
  replace_all(s, "\\dagger", "");
  s = trim(s);
  // Trailing units and words after a number ("1.6 cm", "4.5e33 ergs s^{-1}", "6700 dollars"):
  // the longest head, cut at a space, that has a value once the tail holds words only.
  {
    std::vector<std::string> words;
    for (size_t i = 0; i < s.size();) {
      while (i < s.size() && is_space(s[i])) ++i;
      size_t e = i;
      while (e < s.size() && !is_space(s[e])) ++e;
      if (e > i) words.push_back(s.substr(i, e - i));
      i = e;
    }
    for (size_t k = words.size(); k-- > 1;) {
      std::string head, tail;
      for (size_t w = 0; w < words.size(); ++w) (w < k ? head : tail) += words[w];
      int letters = 0;
      for (char c : tail) letters += is_alpha(c) ? 1 : 0;
      if (letters < 2 || tail.find('\\') != std::string::npos) continue;
      if (evaluate_normalized(head)) {
        s = head;
        break;
      }
    }
  }
  // Spaces go, except one between a command and a letter ("\\pi G" must not become "\\piG").
  std::string compact;
  for (size_t i = 0; i < s.size(); ++i) {
    if (!is_space(s[i])) {
      compact += s[i];
      continue;
    }
    size_t j = i;
    while (j < s.size() && is_space(s[j])) ++j;
    size_t k = compact.size();
    while (k > 0 && is_alpha(compact[k - 1])) --k;
    if (j < s.size() && is_alpha(s[j]) && k > 0 && k < compact.size() && compact[k - 1] == '\\')
      compact += ' ';
    i = j - 1;
  }
  s = compact;
  while (!s.empty() && (s.back() == '.' || s.back() == ',' || s.back() == ';')) s.pop_back();
  s = brace_short_arguments(s);
  // +\infty is \infty.
  if (s.rfind("+\\infty", 0) == 0) s.erase(0, 1);
  replace_all(s, ",+\\infty", ",\\infty");
  replace_all(s, "(+\\infty", "(\\infty");
  if (is_thousands_number(s)) replace_all(s, ",", "");
  // Multiple choice: "(B)" / "B:" -> "B".
  if (s.size() == 3 && s[0] == '(' && s[2] == ')' && std::isupper(uint8_t(s[1])))
    s = std::string(1, s[1]);
  if (s.size() == 2 && std::isupper(uint8_t(s[0])) && s[1] == ':') s.pop_back();
  out.text = s;
  return out;
}

}  // namespace

std::optional<std::string> last_boxed(std::string_view text) {
  size_t best = std::string::npos;
  size_t best_len = 0;
  for (std::string_view cmd : {"\\boxed", "\\fbox", "\\framebox"}) {
    size_t pos = text.rfind(cmd);
    while (pos != std::string::npos) {
      const size_t end = pos + cmd.size();
      if (end < text.size() && is_alpha(text[end])) {  // \boxedx is not ours
        pos = pos == 0 ? std::string::npos : text.rfind(cmd, pos - 1);
        continue;
      }
      if (best == std::string::npos || pos > best) {
        best = pos;
        best_len = cmd.size();
      }
      break;
    }
  }
  if (best == std::string::npos) return std::nullopt;
  size_t i = best + best_len;
  while (i < text.size() && text[i] == ' ') ++i;
  if (i < text.size() && text[i] == '{') {
    const size_t e = match_brace(text, i);
    if (e == std::string::npos) return std::nullopt;
    return std::string(text.substr(i + 1, e - i - 2));
  }
  // "\boxed 5": up to the next '$' or whitespace.
  size_t e = i;
  while (e < text.size() && text[e] != '$' && !is_space(text[e])) ++e;
  if (e == i) return std::nullopt;
  return std::string(text.substr(i, e - i));
}

std::string normalize_answer(std::string_view answer) { return normalize(answer).text; }

std::optional<double> evaluate_answer(std::string_view answer) {
  return evaluate_normalized(normalize(answer).text);
}

bool answers_equal(std::string_view predicted, std::string_view gold) {
  const Normalized p = normalize(predicted), g = normalize(gold);
  return equal_normalized(p.text, g.text, p.percent || g.percent, 0);
}

bool grade_response(std::string_view response, std::string_view gold) {
  const auto boxed = last_boxed(response);
  return boxed && answers_equal(*boxed, gold);
}

}  // namespace resa::eval
