#include "native/graph_check.h"

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

NodeDef* Add(GraphDef* graph, const std::string& name, const std::string& op,
             std::initializer_list<std::string> inputs = {}) {
  NodeDef* node = graph->add_node();
  node->set_name(name);
  node->set_op(op);
  for (const std::string& input : inputs) node->add_input(input);
  return node;
}

void SetType(NodeDef* node, const std::string& attr, DataType type) {
  (*node->mutable_attr())[attr].set_type(type);
}

NodeDef* AddConst(GraphDef* graph, const std::string& name,
                  const std::vector<int64_t>& dims, DataType type = tensorflow::DT_FLOAT) {
  NodeDef* node = Add(graph, name, "Const");
  SetType(node, "dtype", type);
  tensorflow::TensorProto* tensor = (*node->mutable_attr())["value"].mutable_tensor();
  tensor->set_dtype(type);
  int64_t count = 1;
  for (const int64_t dim : dims) {
    tensor->mutable_tensor_shape()->add_dim()->set_size(dim);
    count *= dim;
  }
  const int size = type == tensorflow::DT_FLOAT || type == tensorflow::DT_INT32 ? 4 : 8;
  tensor->set_tensor_content(std::string(count * size, '\0'));
  return node;
}

// input -> conv (weights w) -> mul (scale) : a fold_batch_norms pattern.
GraphDef ConvMulGraph() {
  GraphDef graph;
  NodeDef* input = Add(&graph, "input", "Placeholder");
  SetType(input, "dtype", tensorflow::DT_FLOAT);
  AddConst(&graph, "w", {1, 1, 3, 2});
  NodeDef* conv = Add(&graph, "conv", "Conv2D", {"input", "w"});
  SetType(conv, "T", tensorflow::DT_FLOAT);
  auto* strides = (*conv->mutable_attr())["strides"].mutable_list();
  for (int i = 0; i < 4; ++i) strides->add_i(1);
  (*conv->mutable_attr())["padding"].set_s("SAME");
  AddConst(&graph, "scale", {2});
  NodeDef* mul = Add(&graph, "mul", "Mul", {"conv", "scale"});
  SetType(mul, "T", tensorflow::DT_FLOAT);
  leangraph::AddMissingDefaults(&graph);
  return graph;
}

NodeDef* Find(GraphDef* graph, const std::string& name) {
  for (NodeDef& node : *graph->mutable_node()) {
    if (node.name() == name) return &node;
  }
  return nullptr;
}

// The check refused the graph, and its message has every fragment.
bool Refused(const GraphDef& graph, std::initializer_list<std::string> fragments) {
  return leangraph_test::RefusedWith(leangraph::CheckGraph(graph), fragments);
}

LG_TEST(AcceptsAWellFormedGraph) {
  LG_EXPECT(leangraph_test::AcceptedWith(leangraph::CheckGraph(ConvMulGraph())));
}

LG_TEST(AcceptsAnEmptyGraph) { LG_EXPECT(leangraph::CheckGraph(GraphDef()).ok()); }

LG_TEST(RefusesAMissingDefaultedAttributeUntilDefaultsAreAdded) {
  GraphDef graph = ConvMulGraph();
  // data_format has a default: TF's import would fill it in, but its
  // transforms copy it unchecked.
  Find(&graph, "conv")->mutable_attr()->erase("data_format");
  LG_EXPECT(Refused(graph, {"'conv'", "'data_format' is missing"}));
  leangraph::AddMissingDefaults(&graph);
  LG_EXPECT(Find(&graph, "conv")->attr().at("data_format").s() == "NHWC");
  LG_EXPECT(leangraph::CheckGraph(graph).ok());
}

LG_TEST(AddMissingDefaultsLeavesUnknownOpsAlone) {
  GraphDef graph = ConvMulGraph();
  Find(&graph, "mul")->set_op("NoSuchOp");
  leangraph::AddMissingDefaults(&graph);
  LG_EXPECT(Refused(graph, {"unknown op 'NoSuchOp'"}));
}

LG_TEST(RefusesDuplicateNames) {
  GraphDef graph = ConvMulGraph();
  Find(&graph, "scale")->set_name("w");
  LG_EXPECT(Refused(graph, {"'w'", "duplicate node name"}));
}

LG_TEST(RefusesAnEmptyName) {
  GraphDef graph = ConvMulGraph();
  Find(&graph, "mul")->set_name("");
  LG_EXPECT(Refused(graph, {"empty name"}));
}

LG_TEST(RefusesUnknownOps) {
  GraphDef graph = ConvMulGraph();
  Find(&graph, "mul")->set_op("NoSuchOp");
  LG_EXPECT(Refused(graph, {"'mul'", "unknown op 'NoSuchOp'"}));
}

LG_TEST(RefusesADanglingInput) {
  GraphDef graph = ConvMulGraph();
  Find(&graph, "mul")->set_input(1, "gone");
  LG_EXPECT(Refused(graph, {"'mul'", "'gone'", "does not exist"}));
}

LG_TEST(RefusesAPortBeyondTheOutputs) {
  GraphDef graph = ConvMulGraph();
  Find(&graph, "mul")->set_input(1, "scale:1");
  LG_EXPECT(Refused(graph, {"'mul'", "output 1", "1 output(s)"}));
}

LG_TEST(RefusesMalformedPorts) {
  for (const char* input : {"scale:x", "scale:-1", "scale:1:2", ":0", "^"}) {
    GraphDef graph = ConvMulGraph();
    Find(&graph, "mul")->set_input(1, input);
    LG_EXPECT(Refused(graph, {"'mul'"}));
  }
}

LG_TEST(RefusesAWrongInputCount) {
  GraphDef graph = ConvMulGraph();
  Find(&graph, "mul")->add_input("scale");
  LG_EXPECT(Refused(graph, {"'mul'", "inputs"}));
}

LG_TEST(RefusesAnEdgeOfTheWrongDtype) {
  GraphDef graph = ConvMulGraph();
  AddConst(&graph, "int_scale", {2}, tensorflow::DT_INT32);
  Find(&graph, "mul")->set_input(1, "int_scale");
  LG_EXPECT(Refused(graph, {"'mul'", "int32", "expects float"}));
}

LG_TEST(RefusesAMissingRequiredAttribute) {
  GraphDef graph = ConvMulGraph();
  Find(&graph, "conv")->mutable_attr()->erase("strides");
  LG_EXPECT(Refused(graph, {"'conv'", "strides"}));
}

LG_TEST(RefusesAnAttributeOfTheWrongType) {
  GraphDef graph = ConvMulGraph();
  (*Find(&graph, "conv")->mutable_attr())["padding"].set_i(3);
  LG_EXPECT(Refused(graph, {"'conv'", "padding"}));
}

LG_TEST(RefusesAConstWithoutValue) {
  GraphDef graph = ConvMulGraph();
  Find(&graph, "scale")->mutable_attr()->erase("value");
  LG_EXPECT(Refused(graph, {"'scale'", "value"}));
}

LG_TEST(RefusesAConstWhoseDtypesDisagree) {
  GraphDef graph = ConvMulGraph();
  (*Find(&graph, "scale")->mutable_attr())["value"].mutable_tensor()->set_dtype(
      tensorflow::DT_INT32);
  LG_EXPECT(Refused(graph, {"'scale'", "DT_INT32", "DT_FLOAT"}));
}

LG_TEST(RefusesATruncatedConst) {
  GraphDef graph = ConvMulGraph();
  (*Find(&graph, "w")->mutable_attr())["value"].mutable_tensor()->set_tensor_content("abc");
  LG_EXPECT(Refused(graph, {"'w'", "malformed"}));
}

LG_TEST(RefusesAHugeConstBeforeAllocatingIt) {
  GraphDef graph = ConvMulGraph();
  auto* tensor = (*Find(&graph, "scale")->mutable_attr())["value"].mutable_tensor();
  tensor->clear_tensor_content();
  tensor->add_float_val(1.0f);  // a splat: one value claims the whole shape
  tensor->mutable_tensor_shape()->mutable_dim(0)->set_size(int64_t{1} << 40);
  LG_EXPECT(Refused(graph, {"'scale'", "larger than 2048 MiB"}));
}

LG_TEST(RefusesANegativeDimension) {
  GraphDef graph = ConvMulGraph();
  (*Find(&graph, "scale")->mutable_attr())["value"].mutable_tensor()
      ->mutable_tensor_shape()->mutable_dim(0)->set_size(-2);
  LG_EXPECT(Refused(graph, {"'scale'", "negative dimension"}));
}

LG_TEST(RefusesATwoDimensionalConvWeight) {
  GraphDef graph = ConvMulGraph();
  auto* shape = (*Find(&graph, "w")->mutable_attr())["value"].mutable_tensor()
                    ->mutable_tensor_shape();
  shape->clear_dim();
  shape->add_dim()->set_size(3);
  shape->add_dim()->set_size(2);
  LG_EXPECT(Refused(graph, {"'conv'", "Const 'w' of rank 2", "rank 4"}));
}

LG_TEST(RefusesNonFloatWeightsInAFoldablePattern) {
  GraphDef graph;
  NodeDef* input = Add(&graph, "input", "Placeholder");
  SetType(input, "dtype", tensorflow::DT_INT32);
  AddConst(&graph, "w", {2, 2}, tensorflow::DT_INT32);
  NodeDef* matmul = Add(&graph, "matmul", "MatMul", {"input", "w"});
  SetType(matmul, "T", tensorflow::DT_INT32);
  AddConst(&graph, "scale", {2}, tensorflow::DT_INT32);
  NodeDef* mul = Add(&graph, "mul", "Mul", {"matmul", "scale"});
  SetType(mul, "T", tensorflow::DT_INT32);
  leangraph::AddMissingDefaults(&graph);
  LG_EXPECT(Refused(graph, {"'mul'", "'w'", "int32", "float32"}));
}

LG_TEST(RefusesACycle) {
  GraphDef graph = ConvMulGraph();
  Find(&graph, "conv")->add_input("^mul");
  LG_EXPECT(Refused(graph, {"cycle"}));
}

LG_TEST(AcceptsALoopThroughNextIteration) {
  GraphDef graph = ConvMulGraph();
  NodeDef* merge = Add(&graph, "merge", "Merge", {"input", "next"});
  SetType(merge, "T", tensorflow::DT_FLOAT);
  (*merge->mutable_attr())["N"].set_i(2);
  NodeDef* next = Add(&graph, "next", "NextIteration", {"merge"});
  SetType(next, "T", tensorflow::DT_FLOAT);
  leangraph::AddMissingDefaults(&graph);
  LG_EXPECT(leangraph_test::AcceptedWith(leangraph::CheckGraph(graph)));
}

LG_TEST(RefusesAnOversizedOutputList) {
  GraphDef graph = ConvMulGraph();
  AddConst(&graph, "axis", {}, tensorflow::DT_INT32);
  NodeDef* split = Add(&graph, "split", "Split", {"axis", "mul"});
  SetType(split, "T", tensorflow::DT_FLOAT);
  (*split->mutable_attr())["num_split"].set_i(int64_t{1} << 25);
  LG_EXPECT(Refused(graph, {"'split'", "num_split"}));
}

LG_TEST(RefusesAnUnknownFunctionCall) {
  GraphDef graph = ConvMulGraph();
  Add(&graph, "call", "my_function", {"mul"});
  LG_EXPECT(Refused(graph, {"'call'", "unknown op"}));
}

LG_TEST(MessagesAreValidUtf8WhateverTheNames) {
  GraphDef graph = ConvMulGraph();
  Find(&graph, "mul")->set_name("bad\xee\xff");
  Find(&graph, "bad\xee\xff")->set_input(1, "gone");
  const absl::Status status = leangraph::CheckGraph(graph);
  LG_EXPECT(!status.ok() &&
            std::string(status.message()).find("bad\\xee\\xff") != std::string::npos);
}

LG_TEST(EscapesSurrogatesAndOverlongForms) {
  for (const char* name : {"s\xed\xa0\x80", "o\xc0\x80", "t\xe2\x82"}) {
    GraphDef graph = ConvMulGraph();
    Find(&graph, "mul")->set_name(name);
    Find(&graph, name)->set_input(1, "gone");
    const std::string message(leangraph::CheckGraph(graph).message());
    LG_EXPECT(message.find(name) == std::string::npos &&
              message.find("\\x") != std::string::npos);
  }
  GraphDef graph = ConvMulGraph();
  Find(&graph, "mul")->set_name("caf\xc3\xa9");  // valid UTF-8 stays as it is
  Find(&graph, "caf\xc3\xa9")->set_input(1, "gone");
  LG_EXPECT(std::string(leangraph::CheckGraph(graph).message()).find("caf\xc3\xa9") !=
            std::string::npos);
}

LG_TEST(ChecksEndpoints) {
  const GraphDef graph = ConvMulGraph();
  LG_EXPECT(leangraph::CheckEndpoints(graph, {"mul", "conv:0"}, "output").ok());
  const absl::Status status = leangraph::CheckEndpoints(graph, {"nope"}, "output");
  LG_EXPECT(!status.ok() &&
            std::string(status.message()).find("output 'nope'") != std::string::npos);
}

}  // namespace

namespace {

LG_TEST(RefusesAnAttributeTheOpDoesNotDefine) {
  // TF only logs it, but MaxPool's shape function reads a stray data_format and
  // aborts the import on a bad one.
  GraphDef graph = ConvMulGraph();
  (*Find(&graph, "mul")->mutable_attr())["data_format"].set_s("XYZW");
  LG_EXPECT(Refused(graph, {"'mul'", "attribute 'data_format' is not one that op Mul defines"}));
  GraphDef annotated = ConvMulGraph();
  (*Find(&annotated, "mul")->mutable_attr())["_output_shapes"].mutable_list();
  LG_EXPECT(leangraph::CheckGraph(annotated).ok());
}

}  // namespace

namespace {

LG_TEST(CheckShapesRefusesWhatTfShapeFunctionsRefuse) {
  // A 3x3 VALID pool over a 2x2 input: nothing left to read (oneDNN's int8 kernels
  // abort on the empty tensors such a graph makes downstream).
  GraphDef graph;
  NodeDef* input = Add(&graph, "input", "Placeholder");
  SetType(input, "dtype", tensorflow::DT_FLOAT);
  auto* shape = (*input->mutable_attr())["shape"].mutable_shape();
  for (const int64_t d : {1, 2, 2, 3}) shape->add_dim()->set_size(d);
  NodeDef* pool = Add(&graph, "pool", "AvgPool", {"input"});
  SetType(pool, "T", tensorflow::DT_FLOAT);
  (*pool->mutable_attr())["padding"].set_s("VALID");
  for (const char* attr : {"ksize", "strides"}) {
    auto* list = (*pool->mutable_attr())[attr].mutable_list();
    for (const int64_t v : {1, 3, 3, 1}) list->add_i(v);
  }
  leangraph::AddMissingDefaults(&graph);
  LG_EXPECT(leangraph::CheckGraph(graph).ok());
  const absl::Status status = leangraph::CheckShapes(graph);
  LG_EXPECT(!status.ok() &&
            std::string(status.message()).find("shape inference refuses") != std::string::npos);
  (*pool->mutable_attr())["padding"].set_s("SAME");
  LG_EXPECT(leangraph::CheckShapes(graph).ok());
  LG_EXPECT(leangraph::CheckShapes(ConvMulGraph()).ok());
}

}  // namespace
