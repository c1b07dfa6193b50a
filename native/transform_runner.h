// Runs a transform string, mixing TensorFlow's registered transforms with
// leangraph's own, step by step.
#ifndef LEANGRAPH_NATIVE_TRANSFORM_RUNNER_H_
#define LEANGRAPH_NATIVE_TRANSFORM_RUNNER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "native/transform_params.h"
#include "tensorflow/core/framework/graph.pb.h"

namespace leangraph {

struct TransformInfo {
  std::string name;
  std::string origin;   // "tensorflow" or "leangraph"
  std::string params;   // "name=default, ..." where known
  std::string summary;  // one line, where known
};

// Every transform the runner accepts, sorted by name.
std::vector<TransformInfo> ListTransforms();

// Known names closest to `name` (edit distance), best first.
std::vector<std::string> ClosestTransforms(const std::string& name,
                                           size_t limit);

// Checks the graph and the endpoints, then applies the steps in order. An
// error names the step (its position and name) that failed. The graph passes
// from step to step in memory; the overload taking it by rvalue spares the
// copy of the input.
absl::StatusOr<tensorflow::GraphDef> RunTransforms(
    const tensorflow::GraphDef& graph, const std::vector<TransformStep>& steps,
    const std::vector<std::string>& inputs,
    const std::vector<std::string>& outputs);
absl::StatusOr<tensorflow::GraphDef> RunTransforms(
    tensorflow::GraphDef&& graph, const std::vector<TransformStep>& steps,
    const std::vector<std::string>& inputs,
    const std::vector<std::string>& outputs);

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_TRANSFORM_RUNNER_H_
