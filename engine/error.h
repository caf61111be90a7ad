// Errors of the engine: one exception type whose message says what, where and what to do.
#pragma once

#include <stdexcept>
#include <string>

namespace resa {

// What went wrong, as a category the app can act on (e.g. offer to pick another folder).
enum class ErrorKind {
  kInvalidArgument,  // a flag or setting out of range
  kFileNotFound,     // a file the model needs is missing
  kCorruptFile,      // a file exists but its content is malformed
  kUnsupported,      // a valid file describing something we do not run
  kShapeMismatch,    // a tensor exists with the wrong shape / dtype
  kContextFull,      // the context limit or the memory for the KV cache is exceeded
  kOutOfMemory,
  kDevice,  // a backend / device failure
  kCancelled,
  kInternal,
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace resa
