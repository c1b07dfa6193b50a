#include "native/int8_check.h"

#include <cstdio>
#include <initializer_list>
#include <string>
#include <vector>

#include "native/status_expect.h"
#include "native/test_main.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/tensor.pb.h"
#include "tensorflow/core/framework/types.pb.h"

namespace {

using tensorflow::DataType;
using tensorflow::GraphDef;
using tensorflow::NodeDef;

constexpr DataType kFloat = tensorflow::DT_FLOAT;
constexpr DataType kQInt8 = tensorflow::DT_QINT8;
constexpr DataType kQUInt8 = tensorflow::DT_QUINT8;

NodeDef* Add(GraphDef* graph, const std::string& name, const std::string& op,
             std::initializer_list<std::string> inputs = {}) {
  NodeDef* node = graph->add_node();
  node->set_name(name);
  node->set_op(op);
  for (const std::string& input : inputs) node->add_input(input);
  return node;
}

void SetTypes(NodeDef* node, const std::string& attr, std::initializer_list<DataType> types) {
  auto* list = (*node->mutable_attr())[attr].mutable_list();
  list->Clear();
  for (const DataType t : types) list->add_type(t);
}

void SetInts(NodeDef* node, const std::string& attr, std::initializer_list<int64_t> values) {
  auto* list = (*node->mutable_attr())[attr].mutable_list();
  list->Clear();
  for (const int64_t v : values) list->add_i(v);
}

void SetStrings(NodeDef* node, const std::string& attr,
                std::initializer_list<std::string> values) {
  auto* list = (*node->mutable_attr())[attr].mutable_list();
  list->Clear();
  for (const std::string& v : values) list->add_s(v);
}

NodeDef* AddConst(GraphDef* graph, const std::string& name, const std::vector<int64_t>& dims,
                  DataType type = kFloat) {
  NodeDef* node = Add(graph, name, "Const");
  (*node->mutable_attr())["dtype"].set_type(type);
  tensorflow::TensorProto* tensor = (*node->mutable_attr())["value"].mutable_tensor();
  tensor->set_dtype(type);
  for (const int64_t dim : dims) tensor->mutable_tensor_shape()->add_dim()->set_size(dim);
  return node;
}

NodeDef* Find(GraphDef* graph, const std::string& name) {
  for (NodeDef& node : *graph->mutable_node()) {
    if (node.name() == name) return &node;
  }
  return nullptr;
}

// The graph's float input, quantized to quint8 as node "q" (ranges "lo", "hi").
void QuantizedInput(GraphDef* graph) {
  Add(graph, "input", "Placeholder");
  AddConst(graph, "lo", {});
  AddConst(graph, "hi", {});
  NodeDef* q = Add(graph, "q", "QuantizeV2", {"input", "lo", "hi"});
  (*q->mutable_attr())["T"].set_type(kQUInt8);
  (*q->mutable_attr())["axis"].set_i(-1);
}

// input -> QuantizeV2 -> conv (bias, relu, requantize; 3 output channels)
// -> QuantizedMaxPool -> Dequantize, as leangraph's int8 rewrite writes it.
GraphDef Int8Graph() {
  GraphDef graph;
  QuantizedInput(&graph);
  AddConst(&graph, "w", {1, 1, 2, 3}, kQInt8);
  AddConst(&graph, "b", {3});
  AddConst(&graph, "wmin", {3});
  AddConst(&graph, "wmax", {3});
  NodeDef* conv = Add(&graph, "conv", "_FusedQuantizedConv2D",
                      {"q", "w", "b", "q:1", "q:2", "wmin", "wmax", "lo", "hi"});
  auto& attr = *conv->mutable_attr();
  attr["Tinput"].set_type(kQUInt8);
  attr["Tfilter"].set_type(kQInt8);
  attr["Tbias"].set_type(kFloat);
  attr["out_type"].set_type(kQUInt8);
  attr["Tsummand"].set_type(kQUInt8);
  attr["data_format"].set_s("NHWC");
  attr["padding"].set_s("SAME");
  SetInts(conv, "strides", {1, 1, 1, 1});
  SetInts(conv, "dilations", {1, 1, 1, 1});
  SetStrings(conv, "fused_ops", {"BiasAdd", "Relu", "Requantize"});
  SetTypes(conv, "Thost_inputs",
           {kQUInt8, kQInt8, kFloat, kFloat, kFloat, kFloat, kFloat, kFloat, kFloat});
  SetTypes(conv, "Thost_outputs", {kQUInt8, kFloat, kFloat});
  SetTypes(conv, "Tdevice_inputs", {});
  SetTypes(conv, "Tdevice_outputs", {});
  NodeDef* pool = Add(&graph, "pool", "QuantizedMaxPool", {"conv", "conv:1", "conv:2"});
  SetInts(pool, "ksize", {1, 2, 2, 1});
  SetInts(pool, "strides", {1, 2, 2, 1});
  (*pool->mutable_attr())["padding"].set_s("VALID");
  NodeDef* dq = Add(&graph, "out", "Dequantize", {"pool", "pool:1", "pool:2"});
  (*dq->mutable_attr())["axis"].set_i(-1);
  return graph;
}

bool Refused(const GraphDef& graph, std::initializer_list<std::string> fragments) {
  return leangraph_test::RefusedWith(leangraph::CheckInt8Kernels(graph), fragments);
}

bool Accepted(const GraphDef& graph) {
  return leangraph_test::AcceptedWith(leangraph::CheckInt8Kernels(graph));
}

LG_TEST(AcceptsTheRewritesOwnForm) { LG_EXPECT(Accepted(Int8Graph())); }

// input -> QuantizeV2 -> matmul (bias, requantize, qint8) -> matmul (bias,
// relu, dequantize): a factorised Dense's pair, handed over 8-bit.
GraphDef MatMulPair() {
  GraphDef graph;
  QuantizedInput(&graph);
  auto matmul = [&](const std::string& name, const std::string& input, DataType in,
                    const std::vector<int64_t>& dims, bool requantized) {
    AddConst(&graph, name + "/w", dims, kQInt8);
    AddConst(&graph, name + "/b", {dims[1]});
    AddConst(&graph, name + "/wmin", {dims[1]});
    AddConst(&graph, name + "/wmax", {dims[1]});
    NodeDef* mm = Add(&graph, name, "_QuantizedMatMul",
                      {input, name + "/w", name + "/b", input == "q" ? "q:1" : "lo",
                       input == "q" ? "q:2" : "hi", name + "/wmin", name + "/wmax"});
    auto& attr = *mm->mutable_attr();
    attr["T1"].set_type(in);
    attr["T2"].set_type(kQInt8);
    attr["Tbias"].set_type(kFloat);
    attr["Tout"].set_type(requantized ? kQInt8 : kFloat);
    if (requantized) {
      mm->add_input("lo");
      mm->add_input("hi");
      SetStrings(mm, "fused_ops", {"BiasAdd", "Requantize"});
      SetTypes(mm, "Thost_inputs", {in, kQInt8, kFloat, kFloat, kFloat, kFloat, kFloat,
                                    kFloat, kFloat});
      SetTypes(mm, "Thost_outputs", {kQInt8, kFloat, kFloat});
    } else {
      SetStrings(mm, "fused_ops", {"BiasAdd", "Relu", "Dequantize"});
      SetTypes(mm, "Thost_inputs", {in, kQInt8, kFloat, kFloat, kFloat, kFloat, kFloat});
      SetTypes(mm, "Thost_outputs", {kFloat});
    }
    SetTypes(mm, "Tdevice_inputs", {});
    SetTypes(mm, "Tdevice_outputs", {});
  };
  matmul("inner", "q", kQUInt8, {4, 2}, true);
  matmul("outer", "inner", kQInt8, {2, 3}, false);
  return graph;
}

LG_TEST(AcceptsAMatMulPairHandedOverEightBit) { LG_EXPECT(Accepted(MatMulPair())); }

LG_TEST(RefusesABrokenEightBitMatMulHandOver) {
  {  // Requantize with a float output type
    GraphDef graph = MatMulPair();
    (*Find(&graph, "inner")->mutable_attr())["Tout"].set_type(kFloat);
    LG_EXPECT(Refused(graph, {"inner", "'Tout' must be qint8 or quint8"}));
  }
  {  // Dequantize with an 8-bit output type
    GraphDef graph = MatMulPair();
    (*Find(&graph, "outer")->mutable_attr())["Tout"].set_type(kQUInt8);
    LG_EXPECT(Refused(graph, {"outer", "'Tout' must be float"}));
  }
  {  // Requantize without the output's range
    GraphDef graph = MatMulPair();
    NodeDef* inner = Find(&graph, "inner");
    inner->mutable_input()->RemoveLast();
    inner->mutable_input()->RemoveLast();
    LG_EXPECT(Refused(graph, {"inner", "need 9"}));
  }
  {  // an output range the kernel would read as a scalar, given as a vector
    GraphDef graph = MatMulPair();
    AddConst(&graph, "wide", {3});
    Find(&graph, "inner")->set_input(8, "wide");
    LG_EXPECT(Refused(graph, {"inner"}));
  }
  {  // host outputs that contradict the fused ops
    GraphDef graph = MatMulPair();
    SetTypes(Find(&graph, "inner"), "Thost_outputs", {kQInt8});
    LG_EXPECT(Refused(graph, {"inner"}));
  }
  {  // a fused list no proof covers
    GraphDef graph = MatMulPair();
    SetStrings(Find(&graph, "inner"), "fused_ops", {"BiasAdd", "Relu6", "Requantize"});
    LG_EXPECT(Refused(graph, {"inner", "[BiasAdd, Relu, Requantize]"}));
  }
}



LG_TEST(AcceptsOneFilterRangeForAllChannels) {
  GraphDef graph = Int8Graph();
  Find(&graph, "conv")->set_input(5, "lo");
  Find(&graph, "conv")->set_input(6, "hi");
  LG_EXPECT(Accepted(graph));
}

LG_TEST(RefusesAVectorWhereTheKernelReadsAScalar) {
  // TF: "Check failed: 1 == NumElements() (1 vs. 16)", the process aborts.
  GraphDef graph = Int8Graph();
  AddConst(&graph, "wide", {16});
  Find(&graph, "conv")->set_input(7, "wide");
  LG_EXPECT(Refused(graph, {"'conv'", "range input 7", "holds 16 values"}));
}

LG_TEST(RefusesARangeOfUnknownSizeInAFusedKernel) {
  GraphDef graph = Int8Graph();
  (*Find(&graph, "q")->mutable_attr())["axis"].set_i(3);
  LG_EXPECT(Refused(graph, {"'conv'", "range input 3", "must hold one value"}));
}

LG_TEST(RefusesPerChannelRangesOfTheWrongLength) {
  GraphDef graph = Int8Graph();
  AddConst(&graph, "two", {2});
  Find(&graph, "conv")->set_input(5, "two");
  LG_EXPECT(Refused(graph, {"'two'", "holds 2 values", "one per output channel (3)"}));
}

LG_TEST(RefusesFusedOpsTheKernelDoesNotRunSafely) {
  // Measured: [BiasAdd, Relu] under an 8-bit out_type aborts the process.
  GraphDef graph = Int8Graph();
  SetStrings(Find(&graph, "conv"), "fused_ops", {"BiasAdd", "Relu"});
  LG_EXPECT(Refused(graph, {"fused_ops [BiasAdd, Relu]"}));
}

LG_TEST(RefusesHostTypesThatContradictTheFusedOps) {
  GraphDef graph = Int8Graph();
  SetTypes(Find(&graph, "conv"), "Thost_outputs", {kQUInt8});
  LG_EXPECT(Refused(graph, {"'Thost_outputs'"}));
  graph = Int8Graph();
  (*Find(&graph, "conv")->mutable_attr())["out_type"].set_type(tensorflow::DT_QINT32);
  LG_EXPECT(Refused(graph, {"'out_type'"}));
}

LG_TEST(RefusesBadGeometry) {
  GraphDef graph = Int8Graph();
  SetInts(Find(&graph, "conv"), "strides", {1, 1, 1});
  LG_EXPECT(Refused(graph, {"'strides' has 3 entries"}));
  graph = Int8Graph();
  SetInts(Find(&graph, "conv"), "strides", {1, 0, 1, 1});
  LG_EXPECT(Refused(graph, {"'strides' holds 0"}));
  graph = Int8Graph();
  (*Find(&graph, "conv")->mutable_attr())["padding"].set_s("EXPLICIT");
  LG_EXPECT(Refused(graph, {"'explicit_paddings' has 0 entries"}));
  SetInts(Find(&graph, "conv"), "explicit_paddings", {0, 0, 1, 1, 1, 1, 0, 0});
  LG_EXPECT(Accepted(graph));
  graph = Int8Graph();
  SetInts(Find(&graph, "pool"), "ksize", {2, 2, 2, 1});
  LG_EXPECT(Refused(graph, {"'pool'", "'ksize' must be 1 over the batch"}));
}

LG_TEST(RefusesABiasThatIsNotOnePerChannel) {
  GraphDef graph = Int8Graph();
  AddConst(&graph, "short_bias", {2});
  Find(&graph, "conv")->set_input(2, "short_bias");
  LG_EXPECT(Refused(graph, {"its bias must be a float Const of shape [3]"}));
}

LG_TEST(RefusesMissingInputs) {
  GraphDef graph = Int8Graph();
  Find(&graph, "conv")->mutable_input()->RemoveLast();
  LG_EXPECT(Refused(graph, {"'conv'"}));
}

LG_TEST(FollowsRangesThroughPoolsAndIdentities) {
  GraphDef graph = Int8Graph();
  AddConst(&graph, "wide", {4});
  NodeDef* id = Add(&graph, "id", "Identity", {"wide"});
  (void)id;
  Find(&graph, "pool")->set_input(1, "id");
  // The pool passes the wide range on to the Dequantize, which reads a scalar.
  LG_EXPECT(Refused(graph, {"'pool'", "holds 4 values"}));
}

LG_TEST(RefusesAnInputOfTheWrongRank) {
  // oneDNN: "Check failed: index >= 0 && index < num_total_dims", the process aborts.
  GraphDef graph = Int8Graph();
  AddConst(&graph, "flat", {8}, kQUInt8);
  Find(&graph, "conv")->set_input(0, "flat");
  LG_EXPECT(Refused(graph, {"'conv'", "input 0", "has rank 1", "needs rank 4"}));
  graph = Int8Graph();
  NodeDef* input = Find(&graph, "input");
  auto* shape = (*input->mutable_attr())["shape"].mutable_shape();
  for (int i = 0; i < 2; ++i) shape->add_dim()->set_size(4);
  LG_EXPECT(Refused(graph, {"'conv'", "has rank 2"}));
  for (int i = 0; i < 2; ++i) shape->add_dim()->set_size(4);
  LG_EXPECT(Accepted(graph));
}

LG_TEST(FollowsRanksThroughAnEightBitPad) {
  // The rewrite pads an 8-bit tensor as its plain 8-bit type: conv -> Bitcast
  // (uint8) -> Pad -> Bitcast (quint8) -> QuantizedMaxPool.
  GraphDef graph = Int8Graph();
  NodeDef* raw = Add(&graph, "raw", "Bitcast", {"conv"});
  (*raw->mutable_attr())["T"].set_type(kQUInt8);
  (*raw->mutable_attr())["type"].set_type(tensorflow::DT_UINT8);
  AddConst(&graph, "paddings", {4, 2}, tensorflow::DT_INT32);
  Add(&graph, "padded", "Pad", {"raw", "paddings"});
  NodeDef* back = Add(&graph, "back", "Bitcast", {"padded"});
  (*back->mutable_attr())["T"].set_type(tensorflow::DT_UINT8);
  (*back->mutable_attr())["type"].set_type(kQUInt8);
  Find(&graph, "pool")->set_input(0, "back");
  LG_EXPECT(Accepted(graph));
  AddConst(&graph, "flat", {8}, kQUInt8);
  Find(&graph, "raw")->set_input(0, "flat");
  LG_EXPECT(Refused(graph, {"'pool'", "input 0", "has rank 1", "needs rank 4"}));
  // A Bitcast to a wider type changes the shape: the rank is not followed.
  (*back->mutable_attr())["T"].set_type(tensorflow::DT_INT32);
  LG_EXPECT(Accepted(graph));
}

LG_TEST(RangesOfThePlainOpsMustBeKnownScalars) {
  // oneDNN's Dequantize reads its range as a scalar: a rewired 256-value tensor aborted
  // the process (measured), and the graph alone cannot tell a Mean's size.
  GraphDef graph = Int8Graph();
  Add(&graph, "mean", "Mean", {"input", "lo"});
  Find(&graph, "out")->set_input(1, "mean");
  LG_EXPECT(Refused(graph, {"'out'", "range input 1", "must hold one value"}));
  // TF's eight-bit recipe: Min/Max over a Reshape to [-1], along axis 0.
  graph = Int8Graph();
  AddConst(&graph, "flat_shape", {1}, tensorflow::DT_INT32);
  Add(&graph, "flat", "Reshape", {"input", "flat_shape"});
  NodeDef* axis = AddConst(&graph, "axis", {1}, tensorflow::DT_INT32);
  axis->mutable_attr()->at("value").mutable_tensor()->add_int_val(0);
  Add(&graph, "min", "Min", {"flat", "axis"});
  Add(&graph, "max", "Max", {"flat", "axis"});
  Find(&graph, "q")->set_input(1, "min");
  Find(&graph, "q")->set_input(2, "max");
  LG_EXPECT(Accepted(graph));
  (*Find(&graph, "min")->mutable_attr())["keep_dims"].set_b(true);
  LG_EXPECT(Refused(graph, {"'q'", "range input 1"}));
}

LG_TEST(RefusesAConstSummand) {
  GraphDef graph = Int8Graph();
  NodeDef* conv = Find(&graph, "conv");
  SetStrings(conv, "fused_ops", {"BiasAdd", "Sum", "Relu", "Requantize"});
  AddConst(&graph, "summand", {1, 4, 4, 3}, kQUInt8);
  conv->mutable_input()->Clear();
  for (const char* input : {"q", "w", "b", "summand", "q:1", "q:2", "wmin", "wmax", "lo", "hi",
                            "lo", "hi"}) {
    conv->add_input(input);
  }
  SetTypes(conv, "Thost_inputs", {kQUInt8, kQInt8, kFloat, kQUInt8, kFloat, kFloat, kFloat,
                                  kFloat, kFloat, kFloat, kFloat, kFloat});
  LG_EXPECT(Refused(graph, {"summand of its Sum fusion is a Const"}));
  conv->set_input(3, "pool");
  LG_EXPECT(Accepted(graph));
}

}  // namespace
