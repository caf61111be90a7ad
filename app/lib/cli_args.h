// Shared by the command-line programs (resa-cli, resa-eval): flag values checked against their
// ranges with messages that name the flag, and one mapping of errors to exit codes
// (0 ok, 1 engine error, 2 usage error, 3 internal error).
#pragma once

#include <QCommandLineParser>

#include <functional>
#include <string>

namespace resa::app {

struct UsageError {
  std::string message;
};
[[noreturn]] void usage_error(const std::string& message);

// Adds --name with its help text; `value` names its argument (null: a switch), `def` is its
// default (null: none).
void add_flag(QCommandLineParser& p, const char* name, const char* help,
              const char* value = nullptr, const char* def = nullptr);

// The value of --name as a whole number in [lo, hi]; a UsageError naming the flag otherwise.
int flag_int(const QCommandLineParser& p, const char* name, int lo, int hi);
// The value of --name as a number in [lo, hi] ((lo, hi] when lo_open).
double flag_double(const QCommandLineParser& p, const char* name, double lo, double hi,
                   bool lo_open = false);

// The model folder of --model, or, without it and without --random-weights, the bundled demo
// model (the programs' default); empty with --random-weights. A UsageError when both flags are
// given or no model can be found.
QString flag_model_dir(const QCommandLineParser& p);

// Runs body() and turns what it throws into a message on stderr, prefixed with `program`, and
// the exit code above.
int run_program(const char* program, const std::function<int()>& body);

}  // namespace resa::app
