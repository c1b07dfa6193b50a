// Declarations of the graph_transforms entry points that leangraph calls in
// the TensorFlow wheel's libtensorflow_cc.so.2.
//
// The wheel exports these symbols but ships no header for them, so they are
// declared here by hand. They match TensorFlow 2.21 (tensorflow/tools/
// graph_transforms/transform_graph.h and transform_utils.h at v2.21.0): a
// mismatch shows up as an undefined symbol when the extension is loaded and
// in //native:tf_graph_transforms_test, never as silent misbehaviour, because
// the C++ mangled names encode every parameter type.
#ifndef LEANGRAPH_NATIVE_TF_GRAPH_TRANSFORMS_H_
#define LEANGRAPH_NATIVE_TF_GRAPH_TRANSFORMS_H_

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "tensorflow/core/framework/graph.pb.h"

namespace tensorflow {
namespace graph_transforms {

// One transform's parameters: name -> every value given for it, in order.
using TransformFuncParameters = std::map<std::string, std::vector<std::string>>;
// A parsed transform string: (transform name, parameters), in order.
using TransformParameters =
    std::vector<std::pair<std::string, TransformFuncParameters>>;

// Only ever handled by reference; leangraph never builds one, so its layout
// does not need to be declared.
struct TransformFuncContext;

using TransformFunc = std::function<absl::Status(
    const GraphDef&, const TransformFuncContext&, GraphDef*)>;
using TransformRegistry = std::map<std::string, TransformFunc>;

// Every transform registered by the library, by name.
TransformRegistry* GetTransformRegistry();

// TF's parser for transform_graph's --transforms syntax (used by the tests as
// the reference for leangraph's own parser).
absl::Status ParseTransformParameters(const std::string& transforms_string,
                                      TransformParameters* params_list);

// Runs the steps in order on *graph_def; honours each step's ignore_errors.
absl::Status TransformGraph(const std::vector<std::string>& inputs,
                            const std::vector<std::string>& outputs,
                            const TransformParameters& transform_params,
                            GraphDef* graph_def);

// Every input of every node names a node that exists.
absl::Status IsGraphValid(const GraphDef& graph_def);

}  // namespace graph_transforms
}  // namespace tensorflow

#endif  // LEANGRAPH_NATIVE_TF_GRAPH_TRANSFORMS_H_
