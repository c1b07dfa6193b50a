// Small GraphDef helpers shared by leangraph's own transforms: edge parsing,
// a consumer index, op properties from the registry, and float constants
// (including tiny constant expressions, so batch-norm parameters can be read
// without running TensorFlow's whole-graph constant folding first).
#ifndef LEANGRAPH_NATIVE_TRANSFORMS_GRAPH_UTIL_H_
#define LEANGRAPH_NATIVE_TRANSFORMS_GRAPH_UTIL_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/graph/graph.h"

namespace leangraph {
namespace graph_util {

// One entry of NodeDef.input: "name", "name:port" or "^name".
struct Edge {
  std::string node;
  int port = 0;
  bool control = false;
};

// leangraph::ParseEdge (native/edge.h), holding its own copy of the name. A
// malformed port ("a:x", "a:-1") stays part of the node name, which no node has.
Edge ParseEdge(const std::string& input);
std::string EdgeString(const Edge& edge);

// Whether any input is a control edge ("^name").
bool HasControlInput(const tensorflow::NodeDef& node);

// TensorFlow's own switch (tensorflow/core/util/util.cc reads the same
// variable): oneDNN's rewrites and ops are on unless TF_ENABLE_ONEDNN_OPTS
// says 0/false.
bool OneDnnEnabled();

// Stateful per the op registry. An op the registry does not know (a library
// function, a custom op) counts as stateful: nothing may assume otherwise.
bool IsStateful(const std::string& op);

// Switch, Merge, Enter, Exit, NextIteration, LoopCond and their Ref forms.
bool IsControlFlow(const std::string& op);

// The "T"-like type attribute `attr`, or DT_INVALID when absent or not a type.
tensorflow::DataType TypeAttr(const tensorflow::NodeDef& node,
                              const std::string& attr);

// "NHWC" when absent, like the ops' defaults.
std::string DataFormat(const tensorflow::NodeDef& node);

// Who reads each node, by name.
struct Consumer {
  int node;   // index into graph.node()
  int input;  // index into that node's inputs
  Edge edge;
};

class GraphIndex {
 public:
  explicit GraphIndex(const tensorflow::GraphDef& graph);

  const tensorflow::NodeDef* Find(const std::string& name) const;
  const std::vector<Consumer>& Consumers(const std::string& name) const;
  // Inputs that read port 0 of `name` and nothing else reads it (no other
  // port, no control edge).
  bool HasSingleDataConsumer(const std::string& name) const;

 private:
  std::map<std::string, const tensorflow::NodeDef*> nodes_;
  std::map<std::string, std::vector<Consumer>> consumers_;
  std::vector<Consumer> none_;
};

// The node that `input` reads at port 0 (not a control edge), or nullptr.
const tensorflow::NodeDef* Producer(const GraphIndex& index, const std::string& input);

// The values of the int32/int64 Const (a scalar or rank 1) that `input`
// reads at port 0; nullopt for anything else.
std::optional<std::vector<int64_t>> IntConst(const GraphIndex& index, const std::string& input);

// The value of a Const node of type float32; nullopt for anything else
// (another op or dtype, or a TensorProto that does not decode).
std::optional<tensorflow::Tensor> FloatConst(const tensorflow::NodeDef& node);

// Evaluates a small float32 constant expression rooted at `edge`: Const,
// Identity, Snapshot, Reshape/Squeeze/ExpandDims of float constants (with
// constant shapes), and the element-wise Add/AddV2/Sub/Mul/RealDiv/Maximum/
// Minimum (same shape or scalar operand), Rsqrt/Sqrt/Reciprocal/Neg. Every
// node visited is added to `visited` so callers can drop what they consumed.
// nullopt when anything does not fit; never evaluates an op with control
// inputs or of another dtype.
std::optional<tensorflow::Tensor> EvalFloat(
    const GraphIndex& index, const Edge& edge,
    std::set<std::string>* visited = nullptr);

// Where a contraction keeps its output channels in its weight (input 1):
// dims [first, last] of a rank-`rank` weight, flattened row-major, and the
// rank of the op's output. Conv2D [H,W,Cin,Cout]: 3..3; DepthwiseConv2dNative
// [H,W,Cin,M]: 2..3 (channel cin*M+m); Conv2DBackpropInput [H,W,Cout,Cin]:
// 2..2; MatMul [K,N]: 1..1, or 0..0 with transpose_b.
struct WeightLayout {
  int rank;
  int first;
  int last;
  int output_rank;
};

// The layout of a float32 contraction in NHWC; nullopt for anything else.
std::optional<WeightLayout> ContractionLayout(const tensorflow::NodeDef& node);

// Output channels of a weight of that layout; -1 when the rank is wrong.
int64_t ChannelCount(const WeightLayout& layout,
                     const tensorflow::TensorShape& weight);

// The shape of the Const that `edge` reads, looking through Identity.
std::optional<tensorflow::TensorShape> ConstShape(const GraphIndex& index,
                                                  const Edge& edge);

// `value` as one number per channel when it broadcasts only along the
// channel (last) axis of an output of rank `output_rank`: shapes [], [1],
// [C], [1,C], [1,1,1,C]... nullopt for anything else.
std::optional<std::vector<float>> PerChannel(const tensorflow::Tensor& value,
                                             int64_t channels,
                                             int output_rank);

// A float32 Const node named `name` holding `value`.
tensorflow::NodeDef MakeFloatConst(const std::string& name,
                                   const tensorflow::Tensor& value);

// A float32 Const node named `name` holding the vector `values` (a bias).
tensorflow::NodeDef MakeFloatVector(const std::string& name,
                                    const std::vector<float>& values);

// Appends an int32 Const `name` holding the rank-1 `values` (a shape; each
// must fit int32) to `graph`; returns it.
tensorflow::NodeDef* AddShapeConst(tensorflow::GraphDef* graph, const std::string& name,
                                   const std::string& device,
                                   const std::vector<int64_t>& values);

// Appends a float Reshape `name` of `input` by the int32 `shape`; returns it.
tensorflow::NodeDef* AddReshape(tensorflow::GraphDef* graph, const std::string& name,
                                const std::string& device, const std::string& input,
                                const std::string& shape);

// `base`, or `base_1`, `base_2`... whichever is not in `taken`; the result
// is added to `taken`.
std::string UniqueName(const std::string& base, std::set<std::string>* taken);

// Rebuilds `graph`'s node list in order, moving each node rather than
// copying it (weights are most of a graph's bytes): `emit(n, node, &out)`
// writes what replaces node n into `out` (nothing drops it) and returns
// true, or returns false to keep the node as it is.
template <typename Emit>
void RebuildNodes(tensorflow::GraphDef* graph, Emit emit) {
  tensorflow::GraphDef rebuilt;
  for (int n = 0; n < graph->node_size(); ++n) {
    tensorflow::NodeDef& node = *graph->mutable_node(n);
    if (!emit(n, node, &rebuilt)) *rebuilt.add_node() = std::move(node);
  }
  graph->mutable_node()->Swap(rebuilt.mutable_node());
}

// Names of all nodes.
std::set<std::string> NodeNames(const tensorflow::GraphDef& graph);

// Runs TensorFlow's shape inference over a copy of `graph` without its large
// float constants (shapes do not depend on weight values) and calls `visit`
// with every op node and its inference context. False, having visited
// nothing, when the graph does not import.
bool VisitInferredShapes(
    const tensorflow::GraphDef& graph,
    const std::function<void(const tensorflow::Node&,
                             tensorflow::shape_inference::InferenceContext&)>&
        visit);

// Readers of an IdentityN's output k read its input k instead, and an
// IdentityN nothing reads any more is dropped. Those named in `keep`, and
// those with control inputs, read by a control edge, next to control flow or
// after a stateful op, stay as they are. Returns the constants the dropped
// ones read (for RemoveOrphans).
std::set<std::string> BypassIdentityN(tensorflow::GraphDef* graph,
                                      const std::set<std::string>& keep);

// Removes, repeatedly, every node named in `candidates` that nothing reads
// any more (no data or control consumer); a removal can orphan another
// candidate. Callers pass only nodes they made dead (constants and constant
// expressions they consumed). `keep` (the graph's endpoints) always stays.
// Returns the removed names.
std::set<std::string> RemoveOrphans(tensorflow::GraphDef* graph,
                                    const std::set<std::string>& candidates,
                                    const std::set<std::string>& keep);

// Drops the "loc:@X" entries of `_class` attributes whose X is no longer a
// node (a removed Identity a frozen while loop's nodes were colocated with:
// TF refuses to run a graph that names an unknown node there), and the
// attribute when nothing is left of it. Returns how many entries went.
int DropDanglingColocations(tensorflow::GraphDef* graph);

}  // namespace graph_util
}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_TRANSFORMS_GRAPH_UTIL_H_
