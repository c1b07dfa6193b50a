// The single path by which a failed absl::Status leaves C++ for Python.
#ifndef LEANGRAPH_NATIVE_STATUS_ERROR_H_
#define LEANGRAPH_NATIVE_STATUS_ERROR_H_

#include <stdexcept>
#include <string>

#include "absl/status/status.h"

namespace leangraph {

// Which leangraph.errors class a failure becomes in Python.
enum class ErrorKind { kTransform, kBenchmark };

class StatusError : public std::runtime_error {
 public:
  StatusError(const absl::Status& status, ErrorKind kind)
      : std::runtime_error(std::string(status.message())), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

inline void ThrowIfError(const absl::Status& status, ErrorKind kind) {
  if (!status.ok()) throw StatusError(status, kind);
}

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_STATUS_ERROR_H_
