// resa-eval's math grader: the last \boxed{} of a response against the gold answer, equal up to
// notation. Every gold answer of the five sets must grade as correct when written in its own
// notation, and perturbed ones (other numbers, inverted fractions, other choice letters) must
// not.
// ctest-link: resa_eval_grader
#include <QtTest>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "app/eval/grader.h"
#include "app/eval/math_sets.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;
using resa::eval::answers_equal;
using resa::eval::grade_response;
using resa::eval::last_boxed;

namespace {

fs::path math_data_dir() {
  if (const char* env = std::getenv("RESA_MATH_DATA")) return env;
  return fs::path(RESA_SOURCE_DIR) / ".." / "shared" / "data" / "math";
}

// "099" -> "100".
std::string increment_digits(std::string d) {
  int i = int(d.size()) - 1;
  while (i >= 0 && d[i] == '9') d[i--] = '0';
  if (i < 0)
    d.insert(d.begin(), '1');
  else
    ++d[i];
  return d;
}

// Every number in the answer plus one (subscripts kept: x_1 stays x_1).
std::optional<std::string> perturb_numbers(const std::string& g) {
  std::string out;
  bool any = false;
  for (size_t i = 0; i < g.size();) {
    if (std::isdigit(uint8_t(g[i])) && !(i > 0 && g[i - 1] == '_')) {
      size_t e = i;
      while (e < g.size() && std::isdigit(uint8_t(g[e]))) ++e;
      out += increment_digits(g.substr(i, e - i));
      any = true;
      i = e;
    } else {
      out += g[i++];
    }
  }
  if (!any) return std::nullopt;
  return out;
}

// The first \frac{a}{b} turned into \frac{b}{a} (when a != b).
std::optional<std::string> invert_first_fraction(const std::string& g) {
  const size_t p = g.find("\\frac{");
  if (p == std::string::npos) return std::nullopt;
  auto group_end = [&](size_t open) -> size_t {
    int depth = 0;
    for (size_t i = open; i < g.size(); ++i) {
      if (g[i] == '{') ++depth;
      if (g[i] == '}' && --depth == 0) return i + 1;
    }
    return std::string::npos;
  };
  const size_t a = p + 5, ae = group_end(a);
  if (ae == std::string::npos || ae >= g.size() || g[ae] != '{') return std::nullopt;
  const size_t be = group_end(ae);
  if (be == std::string::npos) return std::nullopt;
  const std::string num = g.substr(a, ae - a), den = g.substr(ae, be - ae);
  if (num == den) return std::nullopt;
  return g.substr(0, a) + den + num + g.substr(be);
}

struct SetData {
  std::string name;
  std::vector<resa::eval::MathProblem> problems;
};

std::vector<SetData> load_all_sets() {
  std::vector<SetData> sets;
  for (const std::string& name : resa::eval::math_set_names())
    sets.push_back({name, resa::eval::load_math_set(math_data_dir(), name)});
  return sets;
}

}  // namespace

class TestEvalGrader : public QObject {
  Q_OBJECT

 private slots:
  void last_boxed_takes_the_last_balanced_box() {
    QCOMPARE(last_boxed("first \\boxed{1}, then \\boxed{\\frac{1}{2}}.").value_or("?"),
             std::string("\\frac{1}{2}"));
    QCOMPARE(last_boxed("sets: $\\boxed{\\{1,2\\}}$").value_or("?"), std::string("\\{1,2\\}"));
    QCOMPARE(last_boxed("so \\boxed 5$").value_or("?"), std::string("5"));
    QCOMPARE(last_boxed("\\fbox{7}").value_or("?"), std::string("7"));
    QVERIFY(!last_boxed("no box here: 42").has_value());
    QVERIFY(!last_boxed("unclosed \\boxed{3").has_value());
    QVERIFY(!grade_response("the answer is 42", "42"));
  }

  void equivalent_notations_are_equal_data() {
    QTest::addColumn<QString>("predicted");
    QTest::addColumn<QString>("gold");
    auto row = [](const char* p, const char* g) { QTest::newRow(p) << QString(p) << QString(g); };
    row("\\dfrac{1}{4}", "$\\frac14$");
    row("0.25", "\\frac{1}{4}");
    row("1/4", "\\tfrac{1}{4}");
    row("27", "27.0");
    row("23", "023");
    row("10,000", "10000");
    row("1{,}000", "1000");
    row("50\\%", "0.5");
    row("50", "50\\%");
    row("90^\\circ", "90");
    row("90^{\\circ}", "$90$");
    row("\\text{(B)}", "B");
    row("(C)", "C");
    row("\\frac{\\sqrt2}{2}", "\\sqrt{2}/2");
    row("\\frac{9 \\sqrt{3}}{20}", "$\\frac{9\\sqrt3}{20}$");
    row("\\sqrt[3]{8}", "2");
    row("4.5 \\times 10^{33}", "4.5e33");
    row("1.6 \\mathrm{~cm}", "1.6");
    row("45 \\text{ minutes}", "45");
    row("\\$6700", "6700");
    row("x = 3", "3");
    row("M=\\frac{9}{32} \\sqrt{2}", "\\frac{9\\sqrt{2}}{32}");
    row("x \\in [2, +\\infty)", "[2,\\infty)");
    row("\\left( -\\frac{5}{3}, 0 \\right)", "(-\\frac53,0)");
    row("\\{2, 1\\}", "\\{1,2\\}");
    row("15, 5", "5,15");
    row("$x=1$ or $x=2$", "2, 1");
    row("1 + 2x", "2x+1");
    row("y=\\frac{e}{4}(x+1)", "$y=\\frac{e}{4}x+\\frac{e}{4}$");
    row("2 \\sqrt{\\pi G \\rho_0} r_0", "\\sqrt{4 \\pi G \\rho_{0} r_{0}^{2}}");
    row("2^{1009}", "2^{1009}");
    row("\\binom{5}{2}", "10");
    row("3!", "6");
  }
  void equivalent_notations_are_equal() {
    QFETCH(QString, predicted);
    QFETCH(QString, gold);
    QVERIFY2(answers_equal(predicted.toStdString(), gold.toStdString()),
             qPrintable(predicted + " should equal " + gold));
    QVERIFY(grade_response("... so the answer is $\\boxed{" + predicted.toStdString() + "}$.",
                           gold.toStdString()));
  }

  void different_answers_are_not_equal_data() {
    QTest::addColumn<QString>("predicted");
    QTest::addColumn<QString>("gold");
    auto row = [](const char* p, const char* g) { QTest::newRow(p) << QString(p) << QString(g); };
    row("24", "25");
    row("109891", "109890");
    row("\\frac{32}{9}", "\\frac{9}{32}");
    row("0.333", "\\frac13");
    row("2.88e-19", "3.89e-20");
    row("A", "B");
    row("(2,1)", "(1,2)");
    row("(1,2)", "[1,2]");
    row("(1,2)", "\\{1,2\\}");
    row("1,2,3", "1,2");
    row("x^2", "x^3");
    row("2x+1", "2x-1");
    row("-1", "1");
    row("\\sqrt{2}", "\\sqrt{3}");
    row("", "0");
    row("3^{1009}", "2^{1009}");
  }
  void different_answers_are_not_equal() {
    QFETCH(QString, predicted);
    QFETCH(QString, gold);
    QVERIFY2(!answers_equal(predicted.toStdString(), gold.toStdString()),
             qPrintable(predicted + " should differ from " + gold));
  }

  void every_gold_answer_grades_as_its_own() {
    if (!fs::exists(math_data_dir() / "aime24.jsonl"))
      QSKIP(qPrintable(QString::fromStdString("no math data in " + math_data_dir().string() +
                                              " (set RESA_MATH_DATA)")));
    int total = 0, accepted = 0, empty = 0;
    QStringList failures;
    for (const SetData& set : load_all_sets()) {
      int set_ok = 0, set_n = 0;
      for (const auto& p : set.problems) {
        if (resa::eval::normalize_answer(p.gold).empty()) {
          ++empty;  // gaokao2023en has two problems without a gold answer
          continue;
        }
        ++set_n;
        const bool ok = grade_response("Reasoning...\nThus $\\boxed{" + p.gold + "}$.", p.gold) &&
                        grade_response("\\boxed{ " + p.gold + " }", p.gold);
        set_ok += ok ? 1 : 0;
        if (!ok)
          failures << QString::fromStdString(set.name + "#" + std::to_string(p.index) + ": " +
                                             p.gold);
      }
      std::printf("%-14s gold answers accepted: %d/%d\n", set.name.c_str(), set_ok, set_n);
      total += set_n;
      accepted += set_ok;
    }
    std::printf("all sets: %d/%d accepted (%.2f%%), %d problems without a gold answer\n", accepted,
                total, 100.0 * accepted / std::max(1, total), empty);
    QVERIFY(total > 1300);
    QVERIFY2(failures.isEmpty(), qPrintable(failures.join("\n")));
  }

  void minerva_solutions_grade_as_correct() {
    if (!fs::exists(math_data_dir() / "minerva_math.jsonl")) QSKIP("no math data");
    const auto problems = resa::eval::load_math_set(math_data_dir(), "minerva_math");
    QCOMPARE(int(problems.size()), 272);
    int ok = 0;
    for (const auto& p : problems) ok += grade_response(p.solution, p.gold) ? 1 : 0;
    QCOMPARE(ok, 272);
  }

  void perturbed_gold_answers_are_rejected() {
    if (!fs::exists(math_data_dir() / "aime24.jsonl")) QSKIP("no math data");
    int tried = 0, rejected = 0;
    QStringList accepted_wrongly;
    for (const SetData& set : load_all_sets()) {
      for (const auto& p : set.problems) {
        std::vector<std::string> wrong;
        if (auto w = perturb_numbers(p.gold)) wrong.push_back(*w);
        if (auto w = invert_first_fraction(p.gold)) wrong.push_back(*w);
        const std::string norm = resa::eval::normalize_answer(p.gold);
        if (norm.size() == 1 && std::isupper(uint8_t(norm[0])))
          wrong.push_back(std::string(1, norm[0] == 'E' ? 'A' : char(norm[0] + 1)));
        for (const std::string& w : wrong) {
          ++tried;
          if (!grade_response("\\boxed{" + w + "}", p.gold)) {
            ++rejected;
          } else {
            accepted_wrongly << QString::fromStdString(set.name + "#" + std::to_string(p.index) +
                                                       ": " + w + " for " + p.gold);
          }
        }
      }
    }
    std::printf("perturbed answers rejected: %d/%d (%.2f%%)\n", rejected, tried,
                100.0 * rejected / std::max(1, tried));
    QVERIFY(tried > 1500);
    QVERIFY2(accepted_wrongly.isEmpty(), qPrintable(accepted_wrongly.join("\n")));
  }

  void unknown_set_and_missing_folder_say_what_to_do() {
    try {
      resa::eval::load_math_set("/nonexistent", "aime24");
      QFAIL("no exception");
    } catch (const std::runtime_error& e) {
      QVERIFY(std::string(e.what()).find("/nonexistent/aime24.jsonl") != std::string::npos);
      QVERIFY(std::string(e.what()).find("--math-data") != std::string::npos);
    }
    QVERIFY_EXCEPTION_THROWN(resa::eval::load_math_set(math_data_dir(), "gsm8k"),
                             std::runtime_error);
  }
};

QTEST_GUILESS_MAIN(TestEvalGrader)
#include "test_eval_grader.moc"
