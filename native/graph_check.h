// Structural checks run before any transform sees a graph. TensorFlow's
// transforms trust their input and CHECK-fail (abort the process) on many
// malformed graphs; every such shape of input must be refused here instead.
#ifndef LEANGRAPH_NATIVE_GRAPH_CHECK_H_
#define LEANGRAPH_NATIVE_GRAPH_CHECK_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "tensorflow/core/framework/graph.pb.h"

namespace leangraph {

// Largest Const value accepted, decoded: protobuf cannot carry more, and a
// short proto can claim more (missing values repeat the last one).
inline constexpr int64_t kMaxTensorBytes = int64_t{1} << 31;

// OK, or InvalidArgument naming the first offending node and what is wrong.
// One pass over nodes and edges: unique names; ops registered (or functions of
// the library); attributes and input counts valid for the op; inputs naming
// existing nodes, output ports and matching dtypes; Const values consistent
// with their attributes; the Const operands TF's folding transforms read
// unchecked have the rank and dtype they assume; no cycle except through
// NextIteration.
absl::Status CheckGraph(const tensorflow::GraphDef& graph);

// OK, or InvalidArgument when TF's shape functions refuse the graph (a pool whose
// stride leaves a later VALID conv nothing to read). Python's import runs them;
// a C++ session does not before its kernels run, and oneDNN's int8 kernels abort
// on the empty tensors such a graph makes. Run after CheckGraph.
absl::Status CheckShapes(const tensorflow::GraphDef& graph);

// The node an entry of NodeDef.input names: "^a", "a:1" and "a" all name a.
std::string_view InputNode(std::string_view input);

// Adds the attributes a node leaves out and its op defines with a default, as
// TF's graph import does. TF's transforms read such attributes unchecked, so
// a runner calls this before CheckGraph (which refuses a node that lacks
// one). Nodes of unknown ops are left alone.
void AddMissingDefaults(tensorflow::GraphDef* graph);

// Every name ("node", "node:1" or "^node") refers to a node of the graph.
// `role` ("input", "output") is used in the message.
absl::Status CheckEndpoints(const tensorflow::GraphDef& graph,
                            const std::vector<std::string>& names,
                            const char* role);

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_GRAPH_CHECK_H_
