// The single path by which a failed absl::Status leaves C++ for Python.
#ifndef LEANGRAPH_NATIVE_STATUS_ERROR_H_
#define LEANGRAPH_NATIVE_STATUS_ERROR_H_

#include <stdexcept>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"

namespace leangraph {

// Which leangraph.errors class a failure becomes in Python.
enum class ErrorKind { kTransform, kGraph, kBenchmark };

// A status refusing the graph itself (not a parameter or a transform) carries
// this payload, so that it reaches Python as leangraph.GraphError whichever
// entry point it passed through.
inline constexpr char kGraphErrorPayload[] = "leangraph/graph-error";

inline absl::Status AsGraphError(absl::Status status) {
  if (!status.ok()) status.SetPayload(kGraphErrorPayload, absl::Cord("1"));
  return status;
}

class StatusError : public std::runtime_error {
 public:
  StatusError(const absl::Status& status, ErrorKind kind)
      : std::runtime_error(std::string(status.message())),
        kind_(kind),
        code_(static_cast<int>(status.code())) {}
  ErrorKind kind() const { return kind_; }
  // absl::StatusCode as an int; Python keeps it as the exception's `.code`.
  int code() const { return code_; }

 private:
  ErrorKind kind_;
  int code_;
};

inline void ThrowIfError(const absl::Status& status, ErrorKind kind) {
  if (status.ok()) return;
  const bool graph = status.GetPayload(kGraphErrorPayload).has_value();
  throw StatusError(status, graph && kind == ErrorKind::kTransform
                                ? ErrorKind::kGraph
                                : kind);
}

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_STATUS_ERROR_H_
