// Structural checks run before any transform sees a graph. TensorFlow's
// transforms trust their input and CHECK-fail (abort the process) on many
// malformed graphs; every such shape of input must be refused here instead.
#ifndef LEANGRAPH_NATIVE_GRAPH_CHECK_H_
#define LEANGRAPH_NATIVE_GRAPH_CHECK_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tensorflow/core/framework/graph.pb.h"

namespace leangraph {

// OK, or InvalidArgument naming the first offending node and what is wrong.
absl::Status CheckGraph(const tensorflow::GraphDef& graph);

// Every name ("node", "node:1" or "^node") refers to a node of the graph.
// `role` ("input", "output") is used in the message.
absl::Status CheckEndpoints(const tensorflow::GraphDef& graph,
                            const std::vector<std::string>& names,
                            const char* role);

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_GRAPH_CHECK_H_
