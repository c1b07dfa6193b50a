// fuse_layer_norm on hand-built copies of what Keras 3's LayerNormalization
// freezes to: what it fuses, what it must leave, and the fused graph's
// outputs against TensorFlow's run of the eleven ops as the oracle.
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "native/test_main.h"
#include "native/transforms/test_graphs.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"

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

// These tensors are small: fused at any size unless `min_elements` is given.
GraphDef Run(const GraphDef& graph, const Names& outputs, const std::string& min_elements = "1") {
  return leangraph_test::RunTransform("fuse_layer_norm", graph, {"input"}, outputs,
                                      {{"min_elements", {min_elements}}});
}

// `name`/out = LayerNormalization(`x`) over `axis`, as Keras 3 freezes it,
// with gamma and beta of `param_shape`.
std::string KerasLayerNorm(GraphDef* graph, const std::string& name, const std::string& x,
                           const Shape& param_shape, int axis = -1, bool keep_dims = true) {
  ShapeConstNode(graph, name + "/axes", {axis});
  NodeDef* mean = AddNode(graph, name + "/mean", "Mean", {x, name + "/axes"});
  AddNode(graph, name + "/neg", "Neg", {name + "/mean"});
  AddNode(graph, name + "/sq", "SquaredDifference", {x, name + "/mean"});
  NodeDef* variance = AddNode(graph, name + "/variance", "Mean", {name + "/sq", name + "/axes"});
  for (NodeDef* node : {mean, variance}) {
    (*node->mutable_attr())["keep_dims"].set_b(keep_dims);
    (*node->mutable_attr())["Tidx"].set_type(tensorflow::DT_INT32);
  }
  FloatConstNode(graph, name + "/eps", {}, 0.001f);
  AddNode(graph, name + "/plus", "AddV2", {name + "/variance", name + "/eps"});
  AddNode(graph, name + "/rsqrt", "Rsqrt", {name + "/plus"});
  FloatConstNode(graph, name + "/gamma", param_shape, 1.5f);
  AddNode(graph, name + "/mul", "Mul", {name + "/rsqrt", name + "/gamma"});
  AddNode(graph, name + "/mul_1", "Mul", {name + "/neg", name + "/mul"});
  AddNode(graph, name + "/mul_2", "Mul", {x, name + "/mul"});
  FloatConstNode(graph, name + "/beta", param_shape, 0.4f);
  AddNode(graph, name + "/add_1", "AddV2", {name + "/mul_1", name + "/beta"});
  AddNode(graph, name + "/out", "AddV2", {name + "/mul_2", name + "/add_1"});
  return name + "/out";
}

LG_TEST(FusesKerasLayerNormalizationIntoOneOp) {
  const Shape input = {2, 3, 8};
  GraphDef graph;
  leangraph_test::PlaceholderNode(&graph, "input", input);
  // One with gamma and beta as Keras stores them ([1, 1, C]), one with [C],
  // on the first's output: both fuse.
  const std::string a = KerasLayerNorm(&graph, "a", "input", {1, 1, 8});
  const std::string b = KerasLayerNorm(&graph, "b", a, {8});
  AddNode(&graph, "output", "Relu", {b});
  const GraphDef out = Run(graph, {"output"});
  LG_EXPECT(CountOps(out, "_MklLayerNorm") == 2);
  LG_EXPECT(CountOps(out, "Mean") == 0 && CountOps(out, "Rsqrt") == 0 &&
            CountOps(out, "Mul") == 0 && CountOps(out, "AddV2") == 0);
  const NodeDef* fused = FindNode(out, "b/out");
  LG_EXPECT(fused != nullptr && fused->op() == "_MklLayerNorm" && fused->input(0) == a);
  // FloatConstNode's one value: scale * sin(0.3).
  LG_EXPECT(fused != nullptr && fused->attr().at("epsilon").f() == 0.001f * std::sin(0.3f));
  leangraph_test::ExpectSameOutputs(graph, out, "input", input, {"output"});
}

LG_TEST(LeavesOtherAxesRanksAndParameters) {
  GraphDef graph;
  leangraph_test::PlaceholderNode(&graph, "input", {2, 3, 8});
  // Over the steps, not the channels.
  const std::string steps = KerasLayerNorm(&graph, "steps", "input", {1, 3, 1}, 1);
  // Without keep_dims the statistics are not the layer norm's.
  const std::string flat = KerasLayerNorm(&graph, "flat", "input", {1, 1, 8}, -1, false);
  // A gamma per step and channel is no per-channel scale.
  const std::string wide = KerasLayerNorm(&graph, "wide", "input", {1, 3, 8});
  const Names outputs = {steps, wide};
  const GraphDef out = Run(graph, {steps, flat, wide});
  LG_EXPECT(CountOps(out, "_MklLayerNorm") == 0);
  LG_EXPECT(out.node_size() == graph.node_size());
  leangraph_test::ExpectSameOutputs(graph, out, "input", {2, 3, 8}, outputs);
}

// ConvNeXt's norm over an image's channels: the kernel takes rank 2 or 3, so
// it runs on the rows and the result takes the input's shape back.
LG_TEST(NormalizesAnImageOnItsRows) {
  const Shape input = {2, 3, 8};
  GraphDef graph;
  leangraph_test::PlaceholderNode(&graph, "input", input);
  ShapeConstNode(&graph, "image_shape", {2, 3, 2, 4});
  AddNode(&graph, "image", "Reshape", {"input", "image_shape"});
  const std::string norm = KerasLayerNorm(&graph, "n", "image", {1, 1, 1, 4});
  AddNode(&graph, "output", "Relu", {norm});
  const GraphDef out = Run(graph, {"output"});
  LG_EXPECT(CountOps(out, "_MklLayerNorm") == 1);
  const NodeDef* back = FindNode(out, norm);
  LG_EXPECT(back != nullptr && back->op() == "Reshape");
  const NodeDef* fused = back ? FindNode(out, back->input(0)) : nullptr;
  LG_EXPECT(fused != nullptr && fused->op() == "_MklLayerNorm");
  const NodeDef* rows = fused ? FindNode(out, fused->input(0)) : nullptr;
  LG_EXPECT(rows != nullptr && rows->op() == "Reshape" && rows->input(0) == "image");
  leangraph_test::ExpectSameOutputs(graph, out, "input", input, {"output"});
}

// The kernel's fixed cost outweighs a small tensor's eleven ops: only a
// tensor of min_elements (default 65536) is fused, so its size must be known.
LG_TEST(LeavesSmallTensorsAndUnknownSizes) {
  GraphDef graph;
  leangraph_test::PlaceholderNode(&graph, "input", {-1, 3, 8});
  const std::string a = KerasLayerNorm(&graph, "a", "input", {1, 1, 8});
  LG_EXPECT(CountOps(Run(graph, {a}), "_MklLayerNorm") == 0);  // the batch is unknown
  GraphDef fixed;
  leangraph_test::PlaceholderNode(&fixed, "input", {2, 3, 8});
  const std::string b = KerasLayerNorm(&fixed, "b", "input", {1, 1, 8});
  LG_EXPECT(CountOps(Run(fixed, {b}, "48"), "_MklLayerNorm") == 1);  // 48 elements
  LG_EXPECT(CountOps(Run(fixed, {b}, "49"), "_MklLayerNorm") == 0);
  const GraphDef by_default =
      leangraph_test::RunTransform("fuse_layer_norm", fixed, {"input"}, {b});
  LG_EXPECT(CountOps(by_default, "_MklLayerNorm") == 0 &&
            by_default.node_size() == fixed.node_size());
}

LG_TEST(LeavesTheGraphWithoutOneDnn) {
  GraphDef graph;
  leangraph_test::PlaceholderNode(&graph, "input", {2, 3, 8});
  const std::string a = KerasLayerNorm(&graph, "a", "input", {1, 1, 8});
  setenv("TF_ENABLE_ONEDNN_OPTS", "0", 1);
  const GraphDef out = Run(graph, {a});
  unsetenv("TF_ENABLE_ONEDNN_OPTS");
  LG_EXPECT(CountOps(out, "_MklLayerNorm") == 0 && out.node_size() == graph.node_size());
}

// A statistic read elsewhere too stays for that reader.
LG_TEST(KeepsWhatOtherNodesStillRead) {
  const Shape input = {4, 8};
  GraphDef graph;
  leangraph_test::PlaceholderNode(&graph, "input", input);
  const std::string a = KerasLayerNorm(&graph, "a", "input", {8});
  AddNode(&graph, "also_mean", "Relu", {"a/mean"});
  const Names outputs = {a, "also_mean"};
  const GraphDef out = Run(graph, outputs);
  LG_EXPECT(CountOps(out, "_MklLayerNorm") == 1);
  LG_EXPECT(FindNode(out, "a/mean") != nullptr && FindNode(out, "a/rsqrt") == nullptr);
  leangraph_test::ExpectSameOutputs(graph, out, "input", input, outputs);
}

}  // namespace
