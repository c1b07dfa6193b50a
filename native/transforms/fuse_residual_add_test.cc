// fuse_residual_add on hand-built graphs: which nodes it fuses and which it
// must leave, and the fused graph's outputs against TensorFlow's own run of
// the unfused graph (Conv2D, BiasAdd, AddV2, Relu kernels) as the oracle.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "native/test_main.h"
#include "native/transforms/test_graphs.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"

namespace {

using leangraph_test::Names;
using tensorflow::GraphDef;
using tensorflow::NodeDef;
constexpr auto Find = leangraph_test::FindNode;
constexpr auto Count = leangraph_test::CountOps;

constexpr int kSide = 6;
constexpr int kChannels = 8;

NodeDef* Add(GraphDef* graph, const std::string& name, const std::string& op,
             const Names& inputs) {
  return leangraph_test::AddNode(graph, name, op, inputs);
}

NodeDef* Const(GraphDef* graph, const std::string& name,
               const std::vector<int64_t>& shape, float scale) {
  return leangraph_test::FloatConstNode(graph, name, shape, scale);
}

void Input(GraphDef* graph) {
  leangraph_test::PlaceholderNode(graph, "input", {1, kSide, kSide, kChannels});
}

// name/conv -> name/bias: a 1x1 or 3x3 conv of `from` with a bias.
std::string ConvBias(GraphDef* graph, const std::string& name,
                     const std::string& from, int k = 1) {
  Const(graph, name + "/w", {k, k, kChannels, kChannels}, 0.4f);
  Const(graph, name + "/b", {kChannels}, 0.5f);
  NodeDef* conv = Add(graph, name + "/conv", "Conv2D", {from, name + "/w"});
  auto& attr = *conv->mutable_attr();
  for (int i = 0; i < 4; ++i) attr["strides"].mutable_list()->add_i(1);
  attr["padding"].set_s("SAME");
  Add(graph, name + "/bias", "BiasAdd", {name + "/conv", name + "/b"});
  return name + "/bias";
}

GraphDef Run(const GraphDef& graph, const Names& outputs) {
  return leangraph_test::RunTransform("fuse_residual_add", graph, {"input"}, outputs);
}

std::string FusedOps(const GraphDef& graph, const std::string& name) {
  const NodeDef* node = Find(graph, name);
  if (node == nullptr || node->op() != "_FusedConv2D") return "";
  std::string ops;
  for (const std::string& op : node->attr().at("fused_ops").list().s()) {
    ops += (ops.empty() ? "" : ",") + op;
  }
  return ops;
}

// The fused graph computes what TensorFlow computes for the unfused one.
void ExpectSameOutputs(const GraphDef& before, const GraphDef& after,
                       const Names& outputs) {
  leangraph_test::ExpectSameOutputs(before, after, "input",
                                    {1, kSide, kSide, kChannels}, outputs);
}

// ResNet's block end: relu(conv(x) + b + x).
LG_TEST(FusesAddAndReluAfterConv) {
  GraphDef graph;
  Input(&graph);
  const std::string y = ConvBias(&graph, "c", "input");
  Add(&graph, "add", "AddV2", {y, "input"});
  Add(&graph, "relu", "Relu", {"add"});
  Add(&graph, "output", "Identity", {"relu"});
  const GraphDef fused = Run(graph, {"output"});
  LG_EXPECT(FusedOps(fused, "relu") == "BiasAdd,Add,Relu");
  LG_EXPECT(Find(fused, "add") == nullptr && Find(fused, "c/conv") == nullptr &&
            Find(fused, "c/bias") == nullptr);
  const NodeDef* node = Find(fused, "relu");
  LG_EXPECT(node != nullptr && node->input_size() == 4 &&
            node->input(0) == "input" && node->input(1) == "c/w" &&
            node->input(2) == "c/b" && node->input(3) == "input");
  ExpectSameOutputs(graph, fused, {"output"});
}

// Xception's middle flow: the sum is read by the next Relu and the next
// residual Add, so only the Add goes into the conv; the summand may be the
// first input of the Add, and a 3x3 conv fuses as well as a 1x1.
LG_TEST(FusesOnlyTheAddWhenTheSumHasTwoReaders) {
  GraphDef graph;
  Input(&graph);
  const std::string y = ConvBias(&graph, "c1", "input", 3);
  Add(&graph, "add1", "Add", {"input", y});
  Add(&graph, "relu1", "Relu", {"add1"});
  const std::string z = ConvBias(&graph, "c2", "relu1");
  Add(&graph, "add2", "AddV2", {z, "add1"});
  Add(&graph, "output", "Identity", {"add2"});
  const GraphDef fused = Run(graph, {"output"});
  LG_EXPECT(FusedOps(fused, "add1") == "BiasAdd,Add");
  LG_EXPECT(FusedOps(fused, "add2") == "BiasAdd,Add");
  LG_EXPECT(Find(fused, "relu1") != nullptr && Find(fused, "relu1")->op() == "Relu");
  LG_EXPECT(Find(fused, "add1")->input(3) == "input");
  LG_EXPECT(Count(fused, "Conv2D") == 0 && Count(fused, "BiasAdd") == 0);
  ExpectSameOutputs(graph, fused, {"output"});
}

LG_TEST(LeavesBroadcastsSharedConvsAndOutputs) {
  GraphDef graph;
  Input(&graph);
  // A per-channel summand broadcasts: not a residual.
  const std::string a = ConvBias(&graph, "a", "input");
  Const(&graph, "row", {1, 1, 1, kChannels}, 1.0f);
  Add(&graph, "add_a", "AddV2", {a, "row"});
  // The BiasAdd is read twice.
  const std::string b = ConvBias(&graph, "b", "input");
  Add(&graph, "add_b", "AddV2", {b, "input"});
  Add(&graph, "also_b", "Relu", {b});
  // The BiasAdd is an output of its own.
  const std::string c = ConvBias(&graph, "c", "input");
  Add(&graph, "add_c", "AddV2", {c, "input"});
  const Names outputs = {"add_a", "add_b", "also_b", "add_c", "c/bias"};
  const GraphDef fused = Run(graph, outputs);
  LG_EXPECT(Count(fused, "_FusedConv2D") == 0);
  LG_EXPECT(fused.node_size() == graph.node_size());
  ExpectSameOutputs(graph, fused, outputs);
}

LG_TEST(LeavesTheGraphWithoutOneDnn) {
  GraphDef graph;
  Input(&graph);
  const std::string y = ConvBias(&graph, "c", "input");
  Add(&graph, "add", "AddV2", {y, "input"});
  setenv("TF_ENABLE_ONEDNN_OPTS", "0", 1);
  const GraphDef fused = Run(graph, {"add"});
  unsetenv("TF_ENABLE_ONEDNN_OPTS");
  LG_EXPECT(Count(fused, "_FusedConv2D") == 0 && Count(fused, "AddV2") == 1);
}

LG_TEST(IsIdempotent) {
  GraphDef graph;
  Input(&graph);
  const std::string y = ConvBias(&graph, "c", "input");
  Add(&graph, "add", "AddV2", {y, "input"});
  Add(&graph, "relu", "Relu", {"add"});
  const GraphDef once = Run(graph, {"relu"});
  const GraphDef twice = Run(once, {"relu"});
  LG_EXPECT(once.node_size() == twice.node_size());
  LG_EXPECT(FusedOps(twice, "relu") == "BiasAdd,Add,Relu");
}

}  // namespace
