// to_bfloat16 on hand-built graphs: which ops change, where the casts go,
// how weights are encoded, and what must be left alone.
#include <cstdint>
#include <cmath>
#include <cstring>
#include <memory>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "native/test_main.h"
#include "native/transform_context.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor.pb.h"
#include "tensorflow/core/public/session.h"

namespace {

using tensorflow::DataType;
using tensorflow::DT_BFLOAT16;
using tensorflow::DT_FLOAT;
using tensorflow::GraphDef;
using tensorflow::NodeDef;

NodeDef* Add(GraphDef* graph, const std::string& name, const std::string& op,
             const std::vector<std::string>& inputs, DataType t = DT_FLOAT) {
  NodeDef* node = graph->add_node();
  node->set_name(name);
  node->set_op(op);
  for (const std::string& input : inputs) node->add_input(input);
  if (op != "Const" && op != "Placeholder") (*node->mutable_attr())["T"].set_type(t);
  return node;
}

NodeDef* Placeholder(GraphDef* graph, const std::string& name) {
  NodeDef* node = Add(graph, name, "Placeholder", {});
  (*node->mutable_attr())["dtype"].set_type(DT_FLOAT);
  return node;
}

NodeDef* FloatConst(GraphDef* graph, const std::string& name,
                    const std::vector<int64_t>& shape,
                    const std::vector<float>& values) {
  NodeDef* node = Add(graph, name, "Const", {});
  (*node->mutable_attr())["dtype"].set_type(DT_FLOAT);
  tensorflow::TensorProto* tensor =
      (*node->mutable_attr())["value"].mutable_tensor();
  tensor->set_dtype(DT_FLOAT);
  for (const int64_t d : shape) tensor->mutable_tensor_shape()->add_dim()->set_size(d);
  tensor->set_tensor_content(std::string(
      reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
  return node;
}

NodeDef* Conv(GraphDef* graph, const std::string& name, const std::string& x,
              const std::string& w) {
  NodeDef* node = Add(graph, name, "Conv2D", {x, w});
  auto& attr = *node->mutable_attr();
  for (int i = 0; i < 4; ++i) attr["strides"].mutable_list()->add_i(1);
  attr["padding"].set_s("SAME");
  attr["data_format"].set_s("NHWC");
  return node;
}

GraphDef Run(const GraphDef& graph, const std::vector<std::string>& outputs,
             leangraph::TransformParams params = {}) {
  const leangraph::OwnTransform* own = nullptr;
  for (const auto& t : leangraph::OwnTransforms()) {
    if (std::string(t.name) == "to_bfloat16") own = &t;
  }
  LG_EXPECT(own != nullptr);
  leangraph::TransformContext context{"to_bfloat16", {"input"}, outputs, params};
  GraphDef out;
  LG_EXPECT(own->fn(graph, context, &out).ok());
  return out;
}

std::map<std::string, const NodeDef*> ByName(const GraphDef& graph) {
  std::map<std::string, const NodeDef*> nodes;
  for (const NodeDef& node : graph.node()) nodes[node.name()] = &node;
  return nodes;
}

DataType TypeOf(const NodeDef* node, const char* attr) {
  if (node == nullptr) return tensorflow::DT_INVALID;
  const auto it = node->attr().find(attr);
  return it == node->attr().end() ? tensorflow::DT_INVALID : it->second.type();
}

std::vector<std::string> Names(const GraphDef& graph) {
  std::vector<std::string> names;
  for (const NodeDef& node : graph.node()) names.push_back(node.name());
  return names;
}

// Protobuf map order is not part of a message's identity, so graphs are
// compared node by node and attribute by attribute.
bool SameGraph(const GraphDef& a, const GraphDef& b) {
  if (a.node_size() != b.node_size()) return false;
  for (int i = 0; i < a.node_size(); ++i) {
    const NodeDef& x = a.node(i);
    const NodeDef& y = b.node(i);
    if (x.name() != y.name() || x.op() != y.op() || x.device() != y.device() ||
        x.input_size() != y.input_size() || x.attr_size() != y.attr_size()) {
      return false;
    }
    for (int j = 0; j < x.input_size(); ++j) {
      if (x.input(j) != y.input(j)) return false;
    }
    for (const auto& [key, value] : x.attr()) {
      const auto other = y.attr().find(key);
      if (other == y.attr().end() ||
          other->second.SerializeAsString() != value.SerializeAsString()) {
        return false;
      }
    }
  }
  return true;
}

std::vector<uint16_t> Bf16Content(const NodeDef* node) {
  const std::string& bytes = node->attr().at("value").tensor().tensor_content();
  std::vector<uint16_t> values(bytes.size() / 2);
  std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

// input -> conv(w) -> bias(b) -> relu -> softmax (output)
GraphDef ConvChain() {
  GraphDef graph;
  Placeholder(&graph, "input");
  FloatConst(&graph, "w", {1, 1, 1, 2}, {1.0f, -2.0f});
  FloatConst(&graph, "b", {2}, {0.5f, 0.25f});
  Conv(&graph, "conv", "input", "w");
  Add(&graph, "bias", "BiasAdd", {"conv", "b"});
  Add(&graph, "relu", "Relu", {"bias"});
  Add(&graph, "softmax", "Softmax", {"relu"});
  return graph;
}

LG_TEST(ConvChainBecomesBf16WithCastsAtTheEdges) {
  const GraphDef out = Run(ConvChain(), {"softmax"});
  const std::vector<std::string> expected = {
      "input", "w", "b", "input/to_bfloat16", "conv", "bias",
      "relu", "relu/to_float", "softmax"};
  LG_EXPECT(Names(out) == expected);
  const auto nodes = ByName(out);
  LG_EXPECT(TypeOf(nodes.at("conv"), "T") == DT_BFLOAT16);
  LG_EXPECT(TypeOf(nodes.at("bias"), "T") == DT_BFLOAT16);
  LG_EXPECT(TypeOf(nodes.at("relu"), "T") == DT_BFLOAT16);
  LG_EXPECT(TypeOf(nodes.at("softmax"), "T") == DT_FLOAT);
  LG_EXPECT(TypeOf(nodes.at("input"), "dtype") == DT_FLOAT);
  LG_EXPECT(TypeOf(nodes.at("w"), "dtype") == DT_BFLOAT16);
  LG_EXPECT(TypeOf(nodes.at("b"), "dtype") == DT_BFLOAT16);
  LG_EXPECT(nodes.at("conv")->input(0) == "input/to_bfloat16");
  LG_EXPECT(nodes.at("conv")->input(1) == "w");
  LG_EXPECT(nodes.at("softmax")->input(0) == "relu/to_float");
  const NodeDef* in_cast = nodes.at("input/to_bfloat16");
  LG_EXPECT(in_cast->op() == "Cast");
  LG_EXPECT(in_cast->input(0) == "input");
  LG_EXPECT(TypeOf(in_cast, "SrcT") == DT_FLOAT);
  LG_EXPECT(TypeOf(in_cast, "DstT") == DT_BFLOAT16);
  const NodeDef* out_cast = nodes.at("relu/to_float");
  LG_EXPECT(TypeOf(out_cast, "SrcT") == DT_BFLOAT16);
  LG_EXPECT(TypeOf(out_cast, "DstT") == DT_FLOAT);
  // 1.0 = 0x3f80, -2.0 = 0xc000; the bf16 tensor is half the float bytes.
  LG_EXPECT(Bf16Content(nodes.at("w")) == (std::vector<uint16_t>{0x3f80, 0xc000}));
  LG_EXPECT(nodes.at("w")->attr().at("value").tensor().dtype() == DT_BFLOAT16);
  LG_EXPECT(nodes.at("w")->attr().at("value").tensor().tensor_shape().dim_size() == 4);
}

LG_TEST(NamedOutputKeepsFloatEvenWhenConvertible) {
  GraphDef graph = ConvChain();
  const GraphDef out = Run(graph, {"relu"});
  const auto nodes = ByName(out);
  LG_EXPECT(TypeOf(nodes.at("relu"), "T") == DT_FLOAT);
  LG_EXPECT(nodes.at("relu")->input(0) == "bias/to_float");
  LG_EXPECT(nodes.count("relu/to_float") == 0);
}

LG_TEST(RoundsToNearestEven) {
  uint32_t bits[] = {0x3f808000u,   // halfway, even below: down to 0x3f80
                     0x3f818000u,   // halfway, odd below: up to 0x3f82
                     0x3f808001u,   // just above halfway: up to 0x3f81
                     0x7fc00001u,   // NaN stays NaN
                     0xff800000u};  // -inf stays -inf
  std::vector<float> values(5);
  std::memcpy(values.data(), bits, sizeof(bits));
  GraphDef graph;
  Placeholder(&graph, "input");
  FloatConst(&graph, "w", {1, 1, 1, 5}, values);
  Conv(&graph, "conv", "input", "w");
  Add(&graph, "out", "Sigmoid", {"conv"});
  const GraphDef out = Run(graph, {"out"});
  const std::vector<uint16_t> got = Bf16Content(ByName(out).at("w"));
  LG_EXPECT(got.size() == 5);
  if (got.size() == 5) {
    LG_EXPECT(got[0] == 0x3f80);
    LG_EXPECT(got[1] == 0x3f82);
    LG_EXPECT(got[2] == 0x3f81);
    LG_EXPECT((got[3] & 0x7f80) == 0x7f80 && (got[3] & 0x007f) != 0);
    LG_EXPECT(got[4] == 0xff80);
  }
}

LG_TEST(WeightsBehindIdentityAreStoredAsBf16) {
  GraphDef graph;
  Placeholder(&graph, "input");
  FloatConst(&graph, "w", {1, 1, 1, 1}, {3.0f});
  Add(&graph, "w/read", "Identity", {"w"});
  Conv(&graph, "conv", "input", "w/read");
  Add(&graph, "out", "Sigmoid", {"conv"});
  const auto out = Run(graph, {"out"});
  const auto nodes = ByName(out);
  LG_EXPECT(TypeOf(nodes.at("w"), "dtype") == DT_BFLOAT16);
  LG_EXPECT(TypeOf(nodes.at("w/read"), "T") == DT_BFLOAT16);
  LG_EXPECT(nodes.at("conv")->input(1) == "w/read");
  LG_EXPECT(out.node_size() == 7);  // + input/to_bfloat16, conv/to_float
}

LG_TEST(SharedConstWithAFloatReaderStaysFloatBehindOneCast) {
  GraphDef graph;
  Placeholder(&graph, "input");
  FloatConst(&graph, "w", {1, 1, 1, 1}, {3.0f});
  Conv(&graph, "conv_a", "input", "w");
  Conv(&graph, "conv_b", "input", "w");
  Add(&graph, "sig", "Sigmoid", {"w"});
  Add(&graph, "out", "AddN", {"conv_a", "conv_b"});
  NodeDef* addn = graph.mutable_node(graph.node_size() - 1);
  (*addn->mutable_attr())["N"].set_i(2);
  const auto out = Run(graph, {"out", "sig"});
  const auto nodes = ByName(out);
  LG_EXPECT(TypeOf(nodes.at("w"), "dtype") == DT_FLOAT);
  LG_EXPECT(nodes.at("conv_a")->input(1) == "w/to_bfloat16");
  LG_EXPECT(nodes.at("conv_b")->input(1) == "w/to_bfloat16");
  LG_EXPECT(nodes.at("conv_a")->input(0) == "input/to_bfloat16");
  LG_EXPECT(nodes.at("conv_b")->input(0) == "input/to_bfloat16");
  LG_EXPECT(nodes.at("sig")->input(0) == "w");
  // One cast per crossing tensor, however many readers: 6 nodes + 4 casts.
  LG_EXPECT(out.node_size() == 10);
  LG_EXPECT(nodes.count("conv_a/to_float") == 1);
  LG_EXPECT(nodes.count("conv_b/to_float") == 1);
}

LG_TEST(IsolatedCheapOpsAndUnknownOpsAreLeftAlone) {
  GraphDef graph;
  Placeholder(&graph, "input");
  Add(&graph, "relu", "Relu", {"input"});
  Add(&graph, "exp", "Exp", {"relu"});
  Add(&graph, "out", "Identity", {"exp"});
  const auto out = Run(graph, {"out"});
  LG_EXPECT(SameGraph(out, graph));
}

// conv -> bias -> swish (Sigmoid, Mul) -> hard-sigmoid-style RealDiv by a
// constant -> layer-norm-style SquaredDifference/Rsqrt -> Exp (kept float on
// purpose) -> out. Everything up to Exp is one bf16 region: no cast pair
// around the activations of EfficientNet, MobileNetV3 or ConvNeXt blocks.
LG_TEST(ModernActivationsJoinTheBf16RegionAndExpStaysFloat) {
  GraphDef graph;
  Placeholder(&graph, "input");
  FloatConst(&graph, "w", {1, 1, 1, 2}, {1.0f, -2.0f});
  FloatConst(&graph, "b", {2}, {0.5f, 0.25f});
  FloatConst(&graph, "six", {}, {6.0f});
  Conv(&graph, "conv", "input", "w");
  Add(&graph, "bias", "BiasAdd", {"conv"});
  graph.mutable_node(graph.node_size() - 1)->add_input("b");
  Add(&graph, "sig", "Sigmoid", {"bias"});
  Add(&graph, "swish", "Mul", {"bias", "sig"});
  Add(&graph, "div", "RealDiv", {"swish", "six"});
  Add(&graph, "sqdiff", "SquaredDifference", {"div", "swish"});
  Add(&graph, "rsqrt", "Rsqrt", {"sqdiff"});
  Add(&graph, "exp", "Exp", {"rsqrt"});
  Add(&graph, "out", "Identity", {"exp"});
  const auto out = Run(graph, {"out"});
  const auto nodes = ByName(out);
  for (const char* name : {"conv", "bias", "sig", "swish", "div", "sqdiff", "rsqrt"}) {
    LG_EXPECT(TypeOf(nodes.at(name), "T") == DT_BFLOAT16);
  }
  LG_EXPECT(TypeOf(nodes.at("six"), "dtype") == DT_BFLOAT16);
  LG_EXPECT(TypeOf(nodes.at("exp"), "T") == DT_FLOAT);
  LG_EXPECT(nodes.at("exp")->input(0) == "rsqrt/to_float");
  LG_EXPECT(nodes.at("div")->input(1) == "six");
  // 13 nodes + input/to_bfloat16 + rsqrt/to_float: no other cast.
  LG_EXPECT(out.node_size() == 15);
}

// Keras' swish is x * sigmoid(x) behind an IdentityN (tf.custom_gradient),
// whose float type list would cut the bf16 region after every activation.
LG_TEST(SwishBehindIdentityNStaysInTheBf16Region) {
  GraphDef graph;
  Placeholder(&graph, "input");
  FloatConst(&graph, "w", {1, 1, 1, 1}, {3.0f});
  FloatConst(&graph, "beta", {}, {1.0f});
  Conv(&graph, "conv", "input", "w");
  Add(&graph, "sig", "Sigmoid", {"conv"});
  Add(&graph, "mul", "Mul", {"conv", "sig"});
  NodeDef* identity_n = Add(&graph, "swish", "IdentityN", {"mul", "conv", "beta"});
  identity_n->mutable_attr()->erase("T");
  for (int i = 0; i < 3; ++i) {
    (*identity_n->mutable_attr())["T"].mutable_list()->add_type(DT_FLOAT);
  }
  Conv(&graph, "conv2", "swish", "w");
  Add(&graph, "out", "Relu", {"conv2"});
  const auto out = Run(graph, {"out"});
  const auto nodes = ByName(out);
  LG_EXPECT(nodes.count("swish") == 0);
  LG_EXPECT(nodes.at("conv2")->input(0) == "mul");
  for (const char* name : {"conv", "sig", "mul", "conv2"}) {
    LG_EXPECT(TypeOf(nodes.at(name), "T") == DT_BFLOAT16);
  }
  int casts = 0;
  for (const NodeDef& node : out.node()) casts += node.op() == "Cast";
  LG_EXPECT(casts == 2);  // input/to_bfloat16, conv2/to_float
  // An IdentityN that is a named output stays, float.
  const GraphDef with_swish = Run(graph, {"out", "swish"});
  const auto kept = ByName(with_swish);
  LG_EXPECT(kept.count("swish") == 1);
  LG_EXPECT(kept.at("conv2")->input(0) == "swish/to_bfloat16");
}

LG_TEST(MismatchedAttrsAndDtypesAreSkippedNotFatal) {
  GraphDef graph;
  Placeholder(&graph, "input");
  FloatConst(&graph, "w", {1, 1, 1, 1}, {3.0f});
  Conv(&graph, "conv_double", "input", "w");
  (*graph.mutable_node(2)->mutable_attr())["T"].set_type(tensorflow::DT_DOUBLE);
  Conv(&graph, "conv_short", "input", "w");
  graph.mutable_node(3)->mutable_input()->RemoveLast();  // one input, not two
  Add(&graph, "concat", "ConcatV2", {"conv_double", "conv_short", "axis"});
  (*graph.mutable_node(4)->mutable_attr())["N"].set_i(5);  // wrong N
  Add(&graph, "out", "Sigmoid", {"concat"});
  const auto out = Run(graph, {"out"});
  LG_EXPECT(SameGraph(out, graph));
}

LG_TEST(ExcludeOpAndExcludeNodeKeepFloat) {
  leangraph::TransformParams params;
  params["exclude_op"] = {"BiasAdd"};
  params["exclude_node"] = {"relu"};
  const auto out = Run(ConvChain(), {"softmax"}, params);
  const auto nodes = ByName(out);
  LG_EXPECT(TypeOf(nodes.at("conv"), "T") == DT_BFLOAT16);
  LG_EXPECT(TypeOf(nodes.at("bias"), "T") == DT_FLOAT);
  LG_EXPECT(TypeOf(nodes.at("relu"), "T") == DT_FLOAT);
  LG_EXPECT(TypeOf(nodes.at("b"), "dtype") == DT_FLOAT);
  LG_EXPECT(nodes.at("bias")->input(0) == "conv/to_float");
}

LG_TEST(ControlInputsAndOtherPortsAreNotTypedEdges) {
  GraphDef graph;
  Placeholder(&graph, "input");
  FloatConst(&graph, "w", {1, 1, 1, 1}, {3.0f});
  Conv(&graph, "conv", "input", "w");
  FloatConst(&graph, "s", {1}, {1.0f});
  NodeDef* bn = Add(&graph, "bn", "FusedBatchNormV3", {"conv", "s", "s", "s", "s"});
  (*bn->mutable_attr())["U"].set_type(DT_FLOAT);
  (*bn->mutable_attr())["is_training"].set_b(false);
  Add(&graph, "relu", "Relu", {"bn", "^w"});
  Add(&graph, "mean_out", "Identity", {"bn:1"});
  Add(&graph, "out", "Sigmoid", {"relu"});
  const auto out = Run(graph, {"out", "mean_out"});
  const auto nodes = ByName(out);
  LG_EXPECT(TypeOf(nodes.at("bn"), "T") == DT_BFLOAT16);
  LG_EXPECT(TypeOf(nodes.at("bn"), "U") == DT_FLOAT);
  LG_EXPECT(TypeOf(nodes.at("s"), "dtype") == DT_FLOAT);  // U inputs
  LG_EXPECT(nodes.at("bn")->input(1) == "s");
  LG_EXPECT(TypeOf(nodes.at("relu"), "T") == DT_BFLOAT16);
  LG_EXPECT(nodes.at("relu")->input(1) == "^w");
  LG_EXPECT(nodes.at("mean_out")->input(0) == "bn:1");  // float port, no cast
  LG_EXPECT(nodes.at("out")->input(0) == "relu/to_float");
}

// input -> conv -> bias(zero b) -> relu -> softmax, plus a second BiasAdd of
// `z` (zero too) after the relu, where no contraction precedes it.
GraphDef ZeroBiasChain() {
  GraphDef graph;
  Placeholder(&graph, "input");
  FloatConst(&graph, "w", {1, 1, 1, 2}, {1.0f, -2.0f});
  FloatConst(&graph, "b", {2}, {0.0f, -0.0f});
  FloatConst(&graph, "z", {2}, {0.0f, 0.0f});
  Conv(&graph, "conv", "input", "w");
  Add(&graph, "bias", "BiasAdd", {"conv", "b"});
  Add(&graph, "relu", "Relu", {"bias"});
  Add(&graph, "bias2", "BiasAdd", {"relu", "z"});
  Add(&graph, "softmax", "Softmax", {"bias2"});
  return graph;
}

LG_TEST(ZeroBiasAfterAContractionIsStoredAsTheSmallestNormal) {
  const auto out = Run(ZeroBiasChain(), {"softmax"});
  const auto nodes = ByName(out);
  LG_EXPECT(TypeOf(nodes.at("b"), "dtype") == DT_BFLOAT16);
  LG_EXPECT(Bf16Content(nodes.at("b")) == (std::vector<uint16_t>{0x0080, 0x0080}));
  // Not after a contraction: nothing to fuse, so the zeros stay exact.
  LG_EXPECT(TypeOf(nodes.at("z"), "dtype") == DT_BFLOAT16);
  LG_EXPECT(Bf16Content(nodes.at("z")) == (std::vector<uint16_t>{0x0000, 0x0000}));
  // A non-zero bias is only rounded.
  const GraphDef rounded = Run(ConvChain(), {"softmax"});
  const auto chain = ByName(rounded);
  LG_EXPECT(Bf16Content(chain.at("b")) == (std::vector<uint16_t>{0x3f00, 0x3e80}));
}

LG_TEST(ZeroBiasExactKeepsZerosAndBadValuesAreRefused) {
  leangraph::TransformParams params;
  params["zero_bias"] = {"exact"};
  const GraphDef exact = Run(ZeroBiasChain(), {"softmax"}, params);
  const auto nodes = ByName(exact);
  LG_EXPECT(Bf16Content(nodes.at("b")) == (std::vector<uint16_t>{0x0000, 0x8000}));
  const leangraph::OwnTransform* own = nullptr;
  for (const auto& t : leangraph::OwnTransforms()) {
    if (std::string(t.name) == "to_bfloat16") own = &t;
  }
  LG_EXPECT(own != nullptr);
  if (own == nullptr) return;
  params["zero_bias"] = {"small"};
  leangraph::TransformContext context{"to_bfloat16", {"input"}, {"softmax"}, params};
  GraphDef out;
  const absl::Status status = own->fn(ZeroBiasChain(), context, &out);
  LG_EXPECT(absl::IsInvalidArgument(status));
  LG_EXPECT(std::string(status.message()).find("zero_bias") != std::string::npos);
}

// ResNet's block end in bf16: the conv, its bias, the residual Add and the
// Relu become one oneDNN conv (no _FusedConv2D takes bf16), and the graph
// computes what the unfused bf16 graph computes, in TensorFlow's own run.
GraphDef ResidualBlock() {
  GraphDef graph;
  NodeDef* input = Placeholder(&graph, "input");
  auto* shape = (*input->mutable_attr())["shape"].mutable_shape();
  for (const int64_t d : {1, 5, 5, 4}) shape->add_dim()->set_size(d);
  std::vector<float> w(16), b(4);
  for (int i = 0; i < 16; ++i) w[i] = std::sin(0.9f * i + 0.2f);
  for (int i = 0; i < 4; ++i) b[i] = 0.25f * (i - 1.5f);
  FloatConst(&graph, "w", {1, 1, 4, 4}, w);
  FloatConst(&graph, "b", {4}, b);
  Conv(&graph, "conv", "input", "w");
  Add(&graph, "bias", "BiasAdd", {"conv", "b"});
  Add(&graph, "add", "AddV2", {"bias", "input"});
  Add(&graph, "relu", "Relu", {"add"});
  Add(&graph, "out", "Identity", {"relu"});
  return graph;
}

std::vector<float> Evaluate(const GraphDef& graph) {
  tensorflow::SessionOptions options;
  options.config.set_intra_op_parallelism_threads(1);
  options.config.set_inter_op_parallelism_threads(1);
  std::unique_ptr<tensorflow::Session> session(tensorflow::NewSession(options));
  std::vector<float> values;
  if (!session || !session->Create(graph).ok()) {
    LG_EXPECT(false && "the graph does not load");
    return values;
  }
  tensorflow::Tensor x(DT_FLOAT, tensorflow::TensorShape({1, 5, 5, 4}));
  auto flat = x.flat<float>();
  for (int64_t i = 0; i < flat.size(); ++i) flat(i) = std::cos(0.41f * i);
  std::vector<tensorflow::Tensor> results;
  LG_EXPECT(session->Run({{"input", x}}, {"out"}, {}, &results).ok());
  if (results.size() != 1) return values;
  const auto out = results[0].flat<float>();
  for (int64_t i = 0; i < out.size(); ++i) values.push_back(out(i));
  return values;
}

LG_TEST(ResidualAddAndReluFuseIntoTheBf16Conv) {
  const GraphDef graph = ResidualBlock();
  const GraphDef fused = Run(graph, {"out"});
  const auto nodes = ByName(fused);
  const NodeDef* relu = nodes.count("relu") ? nodes.at("relu") : nullptr;
  LG_EXPECT(relu != nullptr && relu->op() == "_MklNativeFusedConv2D");
  LG_EXPECT(TypeOf(relu, "T") == DT_BFLOAT16);
  LG_EXPECT(nodes.count("add") == 0 && nodes.count("bias") == 0 &&
            nodes.count("conv") == 0);
  if (relu != nullptr && relu->op() == "_MklNativeFusedConv2D") {
    const auto& ops = relu->attr().at("fused_ops").list().s();
    LG_EXPECT(ops.size() == 3 && ops[0] == "BiasAdd" && ops[1] == "Add" &&
              ops[2] == "Relu");
    LG_EXPECT(relu->attr().at("_kernel").s() == "MklNameChangeOp");
    LG_EXPECT(relu->attr().at("is_filter_const").b());
  }
  leangraph::TransformParams params;
  params["fuse_residual"] = {"false"};
  const GraphDef apart = Run(graph, {"out"}, params);
  LG_EXPECT(ByName(apart).at("relu")->op() == "Relu");
  // One bf16 rounding of the sum against two: within bf16's step.
  const auto want = Evaluate(apart);
  const auto got = Evaluate(fused);
  LG_EXPECT(!want.empty() && want.size() == got.size());
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    LG_EXPECT(std::fabs(want[i] - got[i]) <= 1.6e-2f * (1.0f + std::fabs(want[i])));
  }
}

}  // namespace
