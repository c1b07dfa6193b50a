// fuse_matmul_reshape on hand-built Dense-on-a-sequence and EinsumDense
// graphs: what it moves, what it must leave, and the rewritten graph's
// outputs against TensorFlow's run of the original as the oracle.
#include <string>
#include <vector>

#include "native/test_main.h"
#include "native/transforms/test_graphs.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/tensor.h"

namespace {

using leangraph_test::AddNode;
using leangraph_test::CountOps;
using leangraph_test::FindNode;
using leangraph_test::FloatConstNode;
using leangraph_test::Names;
using leangraph_test::Shape;
using leangraph_test::ShapeConstNode;
using tensorflow::GraphDef;
using tensorflow::NodeDef;

const Shape kInput = {2, 3, 4};  // batch, steps, channels

GraphDef Run(const GraphDef& graph, const Names& outputs) {
  return leangraph_test::RunTransform("fuse_matmul_reshape", graph, {"input"}, outputs);
}

void ExpectSame(const GraphDef& before, const GraphDef& after, const Names& outputs) {
  leangraph_test::ExpectSameOutputs(before, after, "input", kInput, outputs);
}

// Keras Dense(8) on [2, 3, 4] as tensordot lowers it: Reshape, MatMul,
// Reshape, then `name`/mm's bias and activation.
std::string Tensordot(GraphDef* graph, const std::string& name, const Shape& out_shape,
                      int units = 8) {
  ShapeConstNode(graph, name + "/flat_shape", {-1, 4});
  AddNode(graph, name + "/flat", "Reshape", {"input", name + "/flat_shape"});
  FloatConstNode(graph, name + "/w", {4, units}, 0.5f);
  AddNode(graph, name + "/mm", "MatMul", {name + "/flat", name + "/w"});
  ShapeConstNode(graph, name + "/seq_shape", out_shape);
  AddNode(graph, name + "/seq", "Reshape", {name + "/mm", name + "/seq_shape"});
  return name + "/seq";
}

std::vector<float> BiasOf(const GraphDef& graph, const NodeDef& bias_add) {
  std::vector<float> values;
  const NodeDef* node = FindNode(graph, bias_add.input(1));
  tensorflow::Tensor tensor;
  if (node == nullptr || !tensor.FromProto(node->attr().at("value").tensor())) return values;
  for (int64_t i = 0; i < tensor.NumElements(); ++i) values.push_back(tensor.flat<float>()(i));
  return values;
}

LG_TEST(MovesADenseLayersBiasAndReluNextToItsMatMul) {
  GraphDef graph;
  leangraph_test::PlaceholderNode(&graph, "input", kInput);
  const std::string seq = Tensordot(&graph, "d", {2, 3, 8});
  FloatConstNode(&graph, "d/b", {8}, 0.3f);
  AddNode(&graph, "d/bias", "BiasAdd", {seq, "d/b"});
  AddNode(&graph, "d/relu", "Relu", {"d/bias"});
  AddNode(&graph, "output", "Identity", {"d/relu"});
  const GraphDef out = Run(graph, {"output"});
  // The readers still read "d/relu", now the Reshape at the end of the chain.
  const NodeDef* reshape = FindNode(out, "d/relu");
  LG_EXPECT(reshape != nullptr && reshape->op() == "Reshape");
  const NodeDef* relu = reshape ? FindNode(out, reshape->input(0)) : nullptr;
  LG_EXPECT(relu != nullptr && relu->op() == "Relu");
  const NodeDef* bias = relu ? FindNode(out, relu->input(0)) : nullptr;
  LG_EXPECT(bias != nullptr && bias->op() == "BiasAdd" && bias->input(0) == "d/mm");
  LG_EXPECT(FindNode(out, "d/seq") == nullptr && CountOps(out, "Reshape") == 2);
  ExpectSame(graph, out, {"output"});
}

// Keras EinsumDense as a MultiHeadAttention projection lowers it: a
// BatchMatMulV2 by a [4, 8] weight, a Reshape to 2 heads of 4, and an AddV2
// of a [2, 4] bias (here on the Add's left), or of one broadcast per head.
LG_TEST(TurnsAnEinsumDenseIntoOneMatMulWithItsBias) {
  GraphDef graph;
  leangraph_test::PlaceholderNode(&graph, "input", kInput);
  for (const std::string name : {"q", "k"}) {
    FloatConstNode(&graph, name + "/w", {4, 8}, 0.5f);
    AddNode(&graph, name + "/bmm", "BatchMatMulV2", {"input", name + "/w"});
    ShapeConstNode(&graph, name + "/heads_shape", {2, 3, 2, 4});
    AddNode(&graph, name + "/heads", "Reshape", {name + "/bmm", name + "/heads_shape"});
  }
  FloatConstNode(&graph, "q/b", {2, 4}, 0.3f);
  AddNode(&graph, "q/add", "AddV2", {"q/b", "q/heads"});
  FloatConstNode(&graph, "k/b", {1, 1, 1, 4}, 0.2f);
  AddNode(&graph, "k/add", "Add", {"k/heads", "k/b"});
  const Names outputs = {"q/add", "k/add"};
  const GraphDef out = Run(graph, outputs);
  LG_EXPECT(CountOps(out, "BatchMatMulV2") == 0 && CountOps(out, "MatMul") == 2);
  for (const std::string name : {"q", "k"}) {
    const NodeDef* reshape = FindNode(out, name + "/add");
    LG_EXPECT(reshape != nullptr && reshape->op() == "Reshape");
    const NodeDef* bias = reshape ? FindNode(out, reshape->input(0)) : nullptr;
    LG_EXPECT(bias != nullptr && bias->op() == "BiasAdd" && bias->input(0) == name + "/bmm");
    LG_EXPECT(FindNode(out, name + "/bmm")->op() == "MatMul");
    if (bias != nullptr) {
      const std::vector<float> values = BiasOf(out, *bias);
      LG_EXPECT(values.size() == 8);
      // k's per-channel bias repeats for each head.
      if (name == "k" && values.size() == 8) {
        for (int c = 0; c < 4; ++c) LG_EXPECT(values[c] == values[c + 4]);
      }
    }
  }
  ExpectSame(graph, out, outputs);
}

// The attention's output projection: its input comes from a Reshape to
// [-1, 3, 4] (Keras leaves the batch to be inferred), and its BiasAdd reads
// it straight.
LG_TEST(FlattensAnOutputProjectionWhoseInputShapeIsKnown) {
  GraphDef graph;
  leangraph_test::PlaceholderNode(&graph, "input", kInput);
  ShapeConstNode(&graph, "merge_shape", {-1, 3, 4});
  AddNode(&graph, "merge", "Reshape", {"input", "merge_shape"});
  FloatConstNode(&graph, "out/w", {4, 8}, 0.5f);
  AddNode(&graph, "out", "BatchMatMulV2", {"merge", "out/w"});
  FloatConstNode(&graph, "out/b", {8}, 0.3f);
  AddNode(&graph, "out/bias", "BiasAdd", {"out", "out/b"});
  AddNode(&graph, "output", "Identity", {"out/bias"});
  const GraphDef out = Run(graph, {"output"});
  LG_EXPECT(CountOps(out, "BatchMatMulV2") == 0 && CountOps(out, "MatMul") == 1);
  const NodeDef* reshape = FindNode(out, "out/bias");
  LG_EXPECT(reshape != nullptr && reshape->op() == "Reshape");
  const NodeDef* bias = reshape ? FindNode(out, reshape->input(0)) : nullptr;
  LG_EXPECT(bias != nullptr && bias->op() == "BiasAdd" &&
            FindNode(out, bias->input(0))->op() == "MatMul");
  ExpectSame(graph, out, {"output"});
}

LG_TEST(LeavesWhatDoesNotKeepTheChannelsTogether) {
  GraphDef graph;
  leangraph_test::PlaceholderNode(&graph, "input", kInput);
  // The Reshape mixes rows: [6, 8] -> [3, 16].
  const std::string mix = Tensordot(&graph, "mix", {3, 16});
  FloatConstNode(&graph, "mix/b", {16}, 0.3f);
  AddNode(&graph, "mix/add", "AddV2", {mix, "mix/b"});
  // A bias per step, not per channel.
  const std::string step = Tensordot(&graph, "step", {2, 3, 8});
  FloatConstNode(&graph, "step/b", {3, 1}, 0.3f);
  AddNode(&graph, "step/add", "AddV2", {step, "step/b"});
  // The MatMul has a second reader.
  const std::string twice = Tensordot(&graph, "twice", {2, 3, 8});
  FloatConstNode(&graph, "twice/b", {8}, 0.3f);
  AddNode(&graph, "twice/bias", "BiasAdd", {twice, "twice/b"});
  AddNode(&graph, "twice/other", "Relu", {"twice/mm"});
  // The Reshape is an output of its own.
  const std::string shown = Tensordot(&graph, "shown", {2, 3, 8});
  FloatConstNode(&graph, "shown/b", {8}, 0.3f);
  AddNode(&graph, "shown/bias", "BiasAdd", {shown, "shown/b"});
  // An adjoint BatchMatMulV2 is not a plain projection.
  FloatConstNode(&graph, "adj/w", {8, 4}, 0.5f);
  NodeDef* adj = AddNode(&graph, "adj/bmm", "BatchMatMulV2", {"input", "adj/w"});
  (*adj->mutable_attr())["adj_y"].set_b(true);
  ShapeConstNode(&graph, "adj/shape", {2, 3, 8});
  AddNode(&graph, "adj/seq", "Reshape", {"adj/bmm", "adj/shape"});
  // No Reshape reads it and its input's shape is not known here.
  FloatConstNode(&graph, "open/w", {4, 8}, 0.5f);
  AddNode(&graph, "open/bmm", "BatchMatMulV2", {"input", "open/w"});
  FloatConstNode(&graph, "open/b", {8}, 0.3f);
  AddNode(&graph, "open/bias", "BiasAdd", {"open/bmm", "open/b"});
  const Names outputs = {"mix/add", "step/add", "twice/bias", "twice/other",
                         "shown/bias", "shown/seq", "adj/seq", "open/bias"};
  const GraphDef out = Run(graph, outputs);
  LG_EXPECT(out.node_size() == graph.node_size());
  LG_EXPECT(CountOps(out, "BatchMatMulV2") == 2 && CountOps(out, "BiasAdd") == 3);
  for (const std::string name : {"mix/add", "step/add", "twice/bias", "shown/bias"}) {
    LG_EXPECT(FindNode(out, name)->op() != "Reshape");
  }
  ExpectSame(graph, out, outputs);
}

LG_TEST(IsIdempotent) {
  GraphDef graph;
  leangraph_test::PlaceholderNode(&graph, "input", kInput);
  const std::string seq = Tensordot(&graph, "d", {2, 3, 8});
  FloatConstNode(&graph, "d/b", {8}, 0.3f);
  AddNode(&graph, "d/add", "AddV2", {seq, "d/b"});
  AddNode(&graph, "d/tanh", "Tanh", {"d/add"});
  const GraphDef once = Run(graph, {"d/tanh"});
  const GraphDef twice = Run(once, {"d/tanh"});
  LG_EXPECT(FindNode(once, "d/tanh")->op() == "Reshape");
  LG_EXPECT(once.node_size() == twice.node_size());
  ExpectSame(graph, twice, {"d/tanh"});
}

}  // namespace
