// fold_keras_batch_norms, fuse_bias_add, strip_freeze_artifacts,
// remove_identity_chains and inline_grouped_convs on hand-built graphs: the
// exact nodes after each, the folded values, and the cases where nothing may
// fire.
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "native/test_main.h"
#include "native/transform_context.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/function.pb.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor.pb.h"

namespace {

using tensorflow::DT_FLOAT;
using tensorflow::DT_INT32;
using tensorflow::GraphDef;
using tensorflow::NodeDef;
using Names = std::vector<std::string>;

NodeDef* Add(GraphDef* graph, const std::string& name, const std::string& op,
             const Names& inputs) {
  NodeDef* node = graph->add_node();
  node->set_name(name);
  node->set_op(op);
  for (const std::string& input : inputs) node->add_input(input);
  if (op != "Const" && op != "Placeholder" && op != "NoOp" && op != "Cast") {
    (*node->mutable_attr())["T"].set_type(DT_FLOAT);
  }
  return node;
}

NodeDef* Input(GraphDef* graph, const std::string& name,
               const std::vector<int64_t>& shape) {
  NodeDef* node = Add(graph, name, "Placeholder", {});
  (*node->mutable_attr())["dtype"].set_type(DT_FLOAT);
  auto* proto = (*node->mutable_attr())["shape"].mutable_shape();
  for (const int64_t d : shape) proto->add_dim()->set_size(d);
  return node;
}

NodeDef* Const(GraphDef* graph, const std::string& name,
               const std::vector<int64_t>& shape,
               const std::vector<float>& values) {
  NodeDef* node = Add(graph, name, "Const", {});
  (*node->mutable_attr())["dtype"].set_type(DT_FLOAT);
  auto* tensor = (*node->mutable_attr())["value"].mutable_tensor();
  tensor->set_dtype(DT_FLOAT);
  for (const int64_t d : shape) tensor->mutable_tensor_shape()->add_dim()->set_size(d);
  for (const float v : values) tensor->add_float_val(v);
  return node;
}

NodeDef* IntConst(GraphDef* graph, const std::string& name,
                  const std::vector<int>& values) {
  NodeDef* node = Add(graph, name, "Const", {});
  (*node->mutable_attr())["dtype"].set_type(DT_INT32);
  auto* tensor = (*node->mutable_attr())["value"].mutable_tensor();
  tensor->set_dtype(DT_INT32);
  tensor->mutable_tensor_shape()->add_dim()->set_size(values.size());
  for (const int v : values) tensor->add_int_val(v);
  return node;
}

NodeDef* Conv(GraphDef* graph, const std::string& op, const std::string& name,
              const Names& inputs) {
  NodeDef* node = Add(graph, name, op, inputs);
  auto& attr = *node->mutable_attr();
  for (int i = 0; i < 4; ++i) attr["strides"].mutable_list()->add_i(1);
  attr["padding"].set_s("SAME");
  return node;
}

NodeDef* FusedBn(GraphDef* graph, const std::string& name, const Names& inputs,
                 bool training) {
  NodeDef* node = Add(graph, name, "FusedBatchNormV3", inputs);
  (*node->mutable_attr())["U"].set_type(DT_FLOAT);
  (*node->mutable_attr())["is_training"].set_b(training);
  (*node->mutable_attr())["epsilon"].set_f(0.001f);
  return node;
}

GraphDef Run(const std::string& name, const GraphDef& graph,
             const Names& outputs, const Names& inputs = {"input"},
             const leangraph::TransformParams& params = {}) {
  const leangraph::OwnTransform* own = nullptr;
  for (const auto& t : leangraph::OwnTransforms()) {
    if (name == t.name) own = &t;
  }
  LG_EXPECT(own != nullptr);
  GraphDef out;
  if (own == nullptr) return out;
  leangraph::TransformContext context{name, inputs, outputs, params};
  LG_EXPECT(own->fn(graph, context, &out).ok());
  return out;
}

Names NodeNames(const GraphDef& graph) {
  Names names;
  for (const NodeDef& node : graph.node()) names.push_back(node.name());
  return names;
}

const NodeDef* Find(const GraphDef& graph, const std::string& name) {
  for (const NodeDef& node : graph.node()) {
    if (node.name() == name) return &node;
  }
  return nullptr;
}

std::vector<float> Values(const GraphDef& graph, const std::string& name) {
  const NodeDef* node = Find(graph, name);
  std::vector<float> values;
  if (node == nullptr) return values;
  tensorflow::Tensor tensor;
  if (!tensor.FromProto(node->attr().at("value").tensor())) return values;
  for (int64_t i = 0; i < tensor.NumElements(); ++i) {
    values.push_back(tensor.flat<float>()(i));
  }
  return values;
}

bool Near(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::fabs(a[i] - b[i]) > 1e-5f * (1.0f + std::fabs(b[i]))) return false;
  }
  return true;
}

// Map fields (attrs) serialize in unspecified order unless asked otherwise.
std::string Canonical(const GraphDef& graph) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    graph.SerializeToCodedStream(&coded);
  }
  return bytes;
}

bool Same(const GraphDef& a, const GraphDef& b) {
  return Canonical(a) == Canonical(b);
}

// ---- fold_keras_batch_norms -------------------------------------------------

// input -> conv -> Mul([C]) -> AddV2([1,1,1,C]) -> relu
GraphDef ConvMulAdd(const std::vector<int64_t>& mul_shape,
                    const std::vector<float>& mul_values) {
  GraphDef g;
  Input(&g, "input", {1, 2, 2, 1});
  Const(&g, "w", {1, 1, 1, 2}, {1.0f, 2.0f});
  Conv(&g, "Conv2D", "conv", {"input", "w"});
  Const(&g, "scale", mul_shape, mul_values);
  Add(&g, "mul", "Mul", {"conv", "scale"});
  Const(&g, "shift", {1, 1, 1, 2}, {0.5f, -1.0f});
  Add(&g, "add", "AddV2", {"mul", "shift"});
  Add(&g, "relu", "Relu", {"add"});
  return g;
}

LG_TEST(FoldMulAddAfterConv2D) {
  const GraphDef out = Run("fold_keras_batch_norms",
                           ConvMulAdd({2}, {3.0f, 4.0f}), {"relu"});
  LG_EXPECT((NodeNames(out) == Names{"input", "conv/folded_weights", "conv",
                                     "add/folded_bias", "add", "relu"}));
  LG_EXPECT(Near(Values(out, "conv/folded_weights"), {3.0f, 8.0f}));
  LG_EXPECT(Near(Values(out, "add/folded_bias"), {0.5f, -1.0f}));
  LG_EXPECT(Find(out, "add")->op() == "BiasAdd");
  LG_EXPECT(Find(out, "add")->input(0) == "conv");
  LG_EXPECT(Find(out, "conv")->input(1) == "conv/folded_weights");
}

LG_TEST(FoldSkipsMulThatIsNotPerChannel) {
  // [2,1,1,2] scales differ along the batch axis: not a batch norm.
  const GraphDef in = ConvMulAdd({2, 1, 1, 2}, {1.0f, 2.0f, 3.0f, 4.0f});
  LG_EXPECT(Same(Run("fold_keras_batch_norms", in, {"relu"}), in));
}

LG_TEST(FoldSkipsContractionWithTwoConsumers) {
  GraphDef in = ConvMulAdd({2}, {3.0f, 4.0f});
  Add(&in, "other", "Relu", {"conv"});
  LG_EXPECT(Same(Run("fold_keras_batch_norms", in, {"relu", "other"}), in));
}

LG_TEST(FoldSkipsOutputInsideChain) {
  const GraphDef in = ConvMulAdd({2}, {3.0f, 4.0f});
  LG_EXPECT(Same(Run("fold_keras_batch_norms", in, {"relu", "conv"}), in));
}

LG_TEST(FoldPureScaleRenamesContraction) {
  GraphDef g;
  Input(&g, "input", {1, 2, 2, 1});
  Const(&g, "w", {1, 1, 1, 2}, {1.0f, 2.0f});
  Conv(&g, "Conv2D", "conv", {"input", "w"});
  Const(&g, "scale", {}, {2.0f});
  Add(&g, "div", "RealDiv", {"conv", "scale"});
  Add(&g, "relu", "Relu", {"div"});
  const GraphDef out = Run("fold_keras_batch_norms", g, {"relu"});
  LG_EXPECT((NodeNames(out) == Names{"input", "conv/folded_weights", "div",
                                     "relu"}));
  LG_EXPECT(Find(out, "div")->op() == "Conv2D");
  LG_EXPECT(Near(Values(out, "conv/folded_weights"), {0.5f, 1.0f}));
}

LG_TEST(FoldDepthwiseChannelOrder) {
  // Weights [1,1,Cin=2,M=2]: output channel cin*M+m.
  GraphDef g;
  Input(&g, "input", {1, 2, 2, 2});
  Const(&g, "w", {1, 1, 2, 2}, {1.0f, 2.0f, 3.0f, 4.0f});
  Conv(&g, "DepthwiseConv2dNative", "dw", {"input", "w"});
  Const(&g, "scale", {4}, {10.0f, 20.0f, 30.0f, 40.0f});
  Add(&g, "mul", "Mul", {"scale", "dw"});
  Const(&g, "beta", {4}, {1.0f, 2.0f, 3.0f, 4.0f});
  Add(&g, "sub", "Sub", {"mul", "beta"});
  const GraphDef out = Run("fold_keras_batch_norms", g, {"sub"});
  LG_EXPECT((NodeNames(out) == Names{"input", "dw/folded_weights", "dw",
                                     "sub/folded_bias", "sub"}));
  LG_EXPECT(Near(Values(out, "dw/folded_weights"), {10.0f, 40.0f, 90.0f, 160.0f}));
  LG_EXPECT(Near(Values(out, "sub/folded_bias"), {-1.0f, -2.0f, -3.0f, -4.0f}));
}

LG_TEST(FoldFusedBatchNormAcrossBiasAddAfterMatMul) {
  GraphDef g;
  Input(&g, "input", {1, 2});
  Const(&g, "w", {2, 2}, {1.0f, 2.0f, 3.0f, 4.0f});
  Add(&g, "matmul", "MatMul", {"input", "w"});
  Const(&g, "b", {2}, {1.0f, 1.0f});
  Add(&g, "bias", "BiasAdd", {"matmul", "b"});
  Const(&g, "gamma", {2}, {2.0f, 1.0f});
  Const(&g, "beta", {2}, {0.5f, 0.0f});
  Const(&g, "mean", {2}, {1.0f, 3.0f});
  Const(&g, "var", {2}, {3.999f, 0.999f});
  FusedBn(&g, "bn", {"bias", "gamma", "beta", "mean", "var"}, false);
  const GraphDef out = Run("fold_keras_batch_norms", g, {"bn"});
  // s = gamma / sqrt(var + 0.001) = {1, 1}; bias = (1 - mean) * s + beta.
  LG_EXPECT((NodeNames(out) == Names{"input", "matmul/folded_weights",
                                     "matmul", "bn/folded_bias", "bn"}));
  LG_EXPECT(Near(Values(out, "matmul/folded_weights"), {1.0f, 2.0f, 3.0f, 4.0f}));
  LG_EXPECT(Near(Values(out, "bn/folded_bias"), {0.5f, -2.0f}));
}

LG_TEST(FoldSkipsTrainingBatchNorm) {
  GraphDef g;
  Input(&g, "input", {1, 2, 2, 1});
  Const(&g, "w", {1, 1, 1, 2}, {1.0f, 2.0f});
  Conv(&g, "Conv2D", "conv", {"input", "w"});
  for (const char* name : {"gamma", "beta", "mean", "var"}) {
    Const(&g, name, {2}, {1.0f, 1.0f});
  }
  FusedBn(&g, "bn", {"conv", "gamma", "beta", "mean", "var"}, true);
  LG_EXPECT(Same(Run("fold_keras_batch_norms", g, {"bn"}), g));
}

LG_TEST(FoldTransposedConvWithUnfoldedKerasExpression) {
  // Keras 3 freezes BN as x * (gamma * rsqrt(var + eps)) + (beta - mean * k).
  GraphDef g;
  Input(&g, "input", {1, 2, 2, 3});
  IntConst(&g, "sizes", {1, 2, 2, 2});
  Const(&g, "w", {1, 1, 2, 3}, {1, 2, 3, 4, 5, 6});
  Conv(&g, "Conv2DBackpropInput", "deconv", {"sizes", "w", "input"});
  Const(&g, "var", {2}, {3.0f, 0.0f});
  Const(&g, "eps", {}, {1.0f});
  Add(&g, "var_eps", "AddV2", {"var", "eps"});
  Add(&g, "rsqrt", "Rsqrt", {"var_eps"});
  Const(&g, "gamma", {2}, {1.0f, 3.0f});
  Add(&g, "k", "Mul", {"rsqrt", "gamma"});
  Add(&g, "mul", "Mul", {"deconv", "k"});
  Const(&g, "mean", {2}, {2.0f, 1.0f});
  Add(&g, "mean_k", "Mul", {"mean", "k"});
  Const(&g, "beta", {2}, {0.0f, 1.0f});
  Add(&g, "shift", "Sub", {"beta", "mean_k"});
  Add(&g, "add", "AddV2", {"mul", "shift"});
  const GraphDef out = Run("fold_keras_batch_norms", g, {"add"});
  // k = {0.5, 3}; weights [H,W,Cout,Cin]: channel = dim 2.
  LG_EXPECT((NodeNames(out) == Names{"input", "sizes", "deconv/folded_weights",
                                     "deconv", "add/folded_bias", "add"}));
  LG_EXPECT(Near(Values(out, "deconv/folded_weights"),
                 {0.5f, 1.0f, 1.5f, 12.0f, 15.0f, 18.0f}));
  LG_EXPECT(Near(Values(out, "add/folded_bias"), {-1.0f, -2.0f}));
}

LG_TEST(FoldEvaluatesParametersOfBatchNormAfterNoContraction) {
  GraphDef g;
  Input(&g, "input", {1, 2});
  Const(&g, "var", {2}, {3.0f, 0.0f});
  Const(&g, "eps", {}, {1.0f});
  Add(&g, "var_eps", "AddV2", {"var", "eps"});
  Add(&g, "rsqrt", "Rsqrt", {"var_eps"});
  Add(&g, "mul", "Mul", {"input", "rsqrt"});
  const GraphDef out = Run("fold_keras_batch_norms", g, {"mul"});
  LG_EXPECT((NodeNames(out) == Names{"input", "rsqrt", "mul"}));
  LG_EXPECT(Find(out, "rsqrt")->op() == "Const");
  LG_EXPECT(Near(Values(out, "rsqrt"), {0.5f, 1.0f}));
}

LG_TEST(FoldIsIdempotent) {
  const GraphDef once = Run("fold_keras_batch_norms",
                            ConvMulAdd({2}, {3.0f, 4.0f}), {"relu"});
  LG_EXPECT(Same(Run("fold_keras_batch_norms", once, {"relu"}), once));
}

// ---- fuse_bias_add ----------------------------------------------------------

LG_TEST(FuseBroadcastAddIntoBiasAdd) {
  GraphDef g;
  Input(&g, "input", {1, 2, 2, 1});
  Const(&g, "w", {1, 1, 1, 2}, {1.0f, 2.0f});
  Conv(&g, "Conv2D", "conv", {"input", "w"});
  Const(&g, "b", {1, 1, 1, 2}, {0.5f, 0.25f});
  Add(&g, "add", "AddV2", {"b", "conv"});
  Add(&g, "relu", "Relu", {"add"});
  const GraphDef out = Run("fuse_bias_add", g, {"relu"});
  LG_EXPECT((NodeNames(out) == Names{"input", "w", "conv", "add/bias", "add",
                                     "relu"}));
  LG_EXPECT(Find(out, "add")->op() == "BiasAdd");
  LG_EXPECT(Find(out, "add")->input(0) == "conv");
  LG_EXPECT(Near(Values(out, "add/bias"), {0.5f, 0.25f}));
}

LG_TEST(FuseSkipsAddThatIsNotPerChannel) {
  GraphDef g;
  Input(&g, "input", {1, 2, 2, 1});
  Const(&g, "w", {1, 1, 1, 2}, {1.0f, 2.0f});
  Conv(&g, "Conv2D", "conv", {"input", "w"});
  Const(&g, "b", {2, 1, 2}, {1, 2, 3, 4});
  Add(&g, "add", "AddV2", {"conv", "b"});
  Input(&g, "other", {1, 2, 2, 2});
  Add(&g, "add2", "AddV2", {"conv", "other"});
  LG_EXPECT(Same(Run("fuse_bias_add", g, {"add", "add2"}), g));
}

// ---- strip_freeze_artifacts -------------------------------------------------

LG_TEST(StripFreezeNoOpAndConstantControlEdges) {
  GraphDef g;
  Input(&g, "input", {1, 2});
  Const(&g, "w", {2, 2}, {1, 2, 3, 4});
  Add(&g, "read", "Identity", {"w"});
  Add(&g, "matmul", "MatMul", {"input", "read"});
  // A variable nothing computes with any more: only the NoOp reads it.
  Const(&g, "unused", {2}, {1, 2});
  Add(&g, "unused_read", "Identity", {"unused"});
  Add(&g, "NoOp", "NoOp", {"^read", "^w", "^unused_read"});
  Add(&g, "Identity", "Identity", {"matmul", "^NoOp"});
  const GraphDef out = Run("strip_freeze_artifacts", g, {"Identity"});
  LG_EXPECT((NodeNames(out) == Names{"input", "w", "read", "matmul",
                                     "Identity"}));
  LG_EXPECT(Find(out, "Identity")->input_size() == 1);
}

LG_TEST(StripKeepsEdgesOrderingStatefulOps) {
  GraphDef g;
  Input(&g, "input", {1, 2});
  IntConst(&g, "shape", {2});
  Const(&g, "c", {}, {1.0f});
  // A stateful op ordered after a constant, and an output ordered after it.
  NodeDef* random = Add(&g, "random", "RandomUniform", {"shape", "^c"});
  random->mutable_attr()->erase("T");
  (*random->mutable_attr())["T"].set_type(DT_INT32);
  (*random->mutable_attr())["dtype"].set_type(DT_FLOAT);
  Add(&g, "NoOp", "NoOp", {"^random"});
  Add(&g, "Identity", "Identity", {"input", "^NoOp", "^random"});
  LG_EXPECT(Same(Run("strip_freeze_artifacts", g, {"Identity"}), g));
}

LG_TEST(StripIsIdempotentAndKeepsUnrelatedConstants) {
  GraphDef g;
  Input(&g, "input", {2});
  Const(&g, "c", {2}, {1, 2});
  Const(&g, "dangling", {2}, {1, 2});
  Add(&g, "add", "AddV2", {"input", "c", "^c"});
  const GraphDef once = Run("strip_freeze_artifacts", g, {"add"});
  LG_EXPECT((NodeNames(once) == Names{"input", "c", "dangling", "add"}));
  LG_EXPECT(Find(once, "add")->input_size() == 2);
  LG_EXPECT(Same(Run("strip_freeze_artifacts", once, {"add"}), once));
}

// ---- remove_identity_chains -------------------------------------------------

LG_TEST(RemoveIdentityCastAndReshapeChains) {
  GraphDef g;
  Input(&g, "input", {1, 4});
  Add(&g, "a", "Identity", {"input"});
  NodeDef* cast = Add(&g, "cast", "Cast", {"a"});
  (*cast->mutable_attr())["SrcT"].set_type(DT_FLOAT);
  (*cast->mutable_attr())["DstT"].set_type(DT_FLOAT);
  IntConst(&g, "same", {1, 4});
  NodeDef* same = Add(&g, "reshape", "Reshape", {"cast", "same"});
  (*same->mutable_attr())["Tshape"].set_type(DT_INT32);
  IntConst(&g, "flat", {4});
  NodeDef* flat = Add(&g, "flatten", "Reshape", {"reshape", "flat"});
  (*flat->mutable_attr())["Tshape"].set_type(DT_INT32);
  Add(&g, "relu", "Relu", {"flatten", "^a"});
  Add(&g, "output", "Identity", {"relu"});
  const GraphDef out = Run("remove_identity_chains", g, {"output"});
  LG_EXPECT((NodeNames(out) == Names{"input", "flat", "flatten", "relu",
                                     "output"}));
  LG_EXPECT(Find(out, "flatten")->input(0) == "input");
  // The control edge follows the chain to its source.
  LG_EXPECT(Find(out, "relu")->input_size() == 2);
  LG_EXPECT(Find(out, "relu")->input(1) == "^input");
}

LG_TEST(RemoveIdentityKeepsControlFlowAndControlInputs) {
  GraphDef g;
  Input(&g, "input", {1, 2});
  NodeDef* pred = Add(&g, "pred", "Placeholder", {});
  (*pred->mutable_attr())["dtype"].set_type(tensorflow::DT_BOOL);
  Add(&g, "switch", "Switch", {"input", "pred"});
  Add(&g, "pivot", "Identity", {"switch:1"});
  Const(&g, "one", {}, {1.0f});
  Add(&g, "gated", "Identity", {"one", "^pivot"});
  Add(&g, "add", "AddV2", {"pivot", "gated"});
  NodeDef* merge = Add(&g, "merge", "Merge", {"switch", "add"});
  (*merge->mutable_attr())["N"].set_i(2);
  Add(&g, "output", "Identity", {"merge"});
  LG_EXPECT(Same(Run("remove_identity_chains", g, {"output"},
                     {"input", "pred"}),
                 g));
}

LG_TEST(RemoveIdentityDropsCheckNumericsOnlyWhenAsked) {
  GraphDef g;
  Input(&g, "input", {1, 2});
  Add(&g, "check", "CheckNumerics", {"input"});
  (*g.mutable_node(1)->mutable_attr())["message"].set_s("bad");
  Add(&g, "output", "Relu", {"check"});
  LG_EXPECT(Same(Run("remove_identity_chains", g, {"output"}), g));
  const GraphDef out = Run("remove_identity_chains", g, {"output"}, {"input"},
                           {{"check_numerics", {"true"}}});
  LG_EXPECT((NodeNames(out) == Names{"input", "output"}));
  LG_EXPECT(Find(out, "output")->input(0) == "input");
}

// Keras' moments() wraps the mean in StopGradient; at inference it is an
// Identity (as is PreventGradient).
LG_TEST(RemoveIdentityDropsGradientStops) {
  GraphDef g;
  Input(&g, "input", {1, 2});
  Add(&g, "stop", "StopGradient", {"input"});
  Add(&g, "prevent", "PreventGradient", {"stop"});
  Add(&g, "output", "SquaredDifference", {"input", "prevent"});
  const GraphDef out = Run("remove_identity_chains", g, {"output"});
  LG_EXPECT((NodeNames(out) == Names{"input", "output"}));
  LG_EXPECT(Find(out, "output")->input(1) == "input");
}

NodeDef* IdentityN(GraphDef* graph, const std::string& name,
                   const std::vector<std::string>& inputs) {
  NodeDef* node = Add(graph, name, "IdentityN", inputs);
  node->mutable_attr()->erase("T");
  auto* types = (*node->mutable_attr())["T"].mutable_list();
  for (const std::string& input : inputs) {
    if (input[0] != '^') types->add_type(DT_FLOAT);
  }
  return node;
}

// What tf.nn.silu's custom gradient leaves in a frozen Keras model:
// IdentityN(x * sigmoid(x), x, beta), read at port 0 (and here port 1).
LG_TEST(RemoveIdentityNForwardsEachPortToItsInput) {
  GraphDef g;
  Input(&g, "input", {1, 2});
  Const(&g, "beta", {}, {1.0f});
  Add(&g, "sig", "Sigmoid", {"input"});
  Add(&g, "mul", "Mul", {"input", "sig"});
  IdentityN(&g, "swish", {"mul", "input", "beta"});
  Add(&g, "relu", "Relu", {"swish:1"});
  Add(&g, "output", "AddV2", {"swish", "relu"});
  const GraphDef out = Run("remove_identity_chains", g, {"output"});
  LG_EXPECT((NodeNames(out) == Names{"input", "sig", "mul", "relu", "output"}));
  LG_EXPECT(Find(out, "output")->input(0) == "mul");
  LG_EXPECT(Find(out, "relu")->input(0) == "input");
}

LG_TEST(RemoveIdentityNStaysWhenReadByControlEdgeOrOutOfRange) {
  GraphDef g;
  Input(&g, "input", {1, 2});
  Add(&g, "sig", "Sigmoid", {"input"});
  IdentityN(&g, "pair", {"sig", "input"});
  Add(&g, "output", "Relu", {"pair", "^pair"});
  LG_EXPECT(Same(Run("remove_identity_chains", g, {"output"}), g));
  GraphDef h;
  Input(&h, "input", {1, 2});
  IdentityN(&h, "one", {"input"});
  Add(&h, "output", "Relu", {"one:1"});  // no such port: left for TF to reject
  LG_EXPECT(Same(Run("remove_identity_chains", h, {"output"}), h));
  GraphDef k;
  Input(&k, "input", {1, 2});
  IdentityN(&k, "gated", {"input", "^input"});  // a control input orders it
  Add(&k, "output", "Relu", {"gated"});
  LG_EXPECT(Same(Run("remove_identity_chains", k, {"output"}), k));
}

LG_TEST(RemoveIdentityCastChangingTypeStays) {
  GraphDef g;
  Input(&g, "input", {1, 2});
  NodeDef* cast = Add(&g, "cast", "Cast", {"input"});
  (*cast->mutable_attr())["SrcT"].set_type(DT_FLOAT);
  (*cast->mutable_attr())["DstT"].set_type(DT_INT32);
  Add(&g, "output", "Identity", {"cast"});
  LG_EXPECT(Same(Run("remove_identity_chains", g, {"output"}), g));
}

// ---- inline_grouped_convs ---------------------------------------------------

// The function Keras 3 freezes a grouped Conv2D into (jit_compile=True):
// Identity(filter arg) -> Conv2D(x arg, filter) -> Identity(^NoOp), called by
// a StatefulPartitionedCall with inputs (filter, x).
void AddConvFunction(GraphDef* g, const std::string& name, bool extra_op) {
  tensorflow::FunctionDef* f = g->mutable_library()->add_function();
  f->mutable_signature()->set_name(name);
  for (const char* arg : {"filter_arg", "x_arg"}) {
    auto* input = f->mutable_signature()->add_input_arg();
    input->set_name(arg);
    input->set_type(DT_FLOAT);
  }
  auto* output = f->mutable_signature()->add_output_arg();
  output->set_name("identity");
  output->set_type(DT_FLOAT);
  (*f->mutable_attr())["_XlaMustCompile"].set_b(true);
  NodeDef* read = f->add_node_def();
  read->set_name("read");
  read->set_op("Identity");
  read->add_input("filter_arg");
  (*read->mutable_attr())["T"].set_type(DT_FLOAT);
  NodeDef* conv = f->add_node_def();
  conv->set_name("conv");
  conv->set_op("Conv2D");
  conv->add_input("x_arg");
  conv->add_input("read:output:0");
  auto& attr = *conv->mutable_attr();
  attr["T"].set_type(DT_FLOAT);
  for (int i = 0; i < 4; ++i) attr["strides"].mutable_list()->add_i(1);
  attr["padding"].set_s("SAME");
  attr["data_format"].set_s("NHWC");
  std::string last = "conv:output:0";
  if (extra_op) {
    NodeDef* relu = f->add_node_def();
    relu->set_name("relu");
    relu->set_op("Relu");
    relu->add_input(last);
    (*relu->mutable_attr())["T"].set_type(DT_FLOAT);
    last = "relu:activations:0";
  }
  NodeDef* noop = f->add_node_def();
  noop->set_name("NoOp");
  noop->set_op("NoOp");
  noop->add_input("^read");
  NodeDef* id = f->add_node_def();
  id->set_name("id");
  id->set_op("Identity");
  id->add_input(last);
  id->add_input("^NoOp");
  (*id->mutable_attr())["T"].set_type(DT_FLOAT);
  (*f->mutable_ret())["identity"] = "id:output:0";
}

NodeDef* Call(GraphDef* g, const std::string& name, const std::string& function,
              const Names& inputs) {
  NodeDef* call = Add(g, name, "StatefulPartitionedCall", inputs);
  auto& attr = *call->mutable_attr();
  attr.erase("T");
  attr["f"].mutable_func()->set_name(function);
  for (int i = 0; i < 2; ++i) attr["Tin"].mutable_list()->add_type(DT_FLOAT);
  attr["Tout"].mutable_list()->add_type(DT_FLOAT);
  return call;
}

// input [1,5,5,4] -> call(w [3,3,in_depth,4]) -> output
GraphDef GroupedConvGraph(int in_depth, bool extra_op) {
  GraphDef g;
  Input(&g, "input", {1, 5, 5, 4});
  Const(&g, "w", {3, 3, in_depth, 4}, std::vector<float>(36 * in_depth, 0.5f));
  AddConvFunction(&g, "__inference__conv_xla_1", extra_op);
  Call(&g, "call", "__inference__conv_xla_1", {"w", "input"});
  Add(&g, "output", "Relu", {"call"});
  return g;
}

LG_TEST(InlineGroupedConvsDepthwiseCallBecomesDepthwiseConv) {
  const GraphDef out =
      Run("inline_grouped_convs", GroupedConvGraph(1, false), {"output"});
  LG_EXPECT((NodeNames(out) == Names{"input", "w", "call", "output"}));
  const NodeDef* call = Find(out, "call");
  LG_EXPECT(call->op() == "DepthwiseConv2dNative");
  LG_EXPECT(call->input_size() == 2);
  LG_EXPECT(call->input(0) == "input" && call->input(1) == "w");
  LG_EXPECT(call->attr().at("padding").s() == "SAME");
  LG_EXPECT(call->attr().count("use_cudnn_on_gpu") == 0);
  // [3,3,1,4] is [3,3,4,1] with the same bytes.
  const auto& shape = Find(out, "w")->attr().at("value").tensor().tensor_shape();
  LG_EXPECT(shape.dim_size() == 4 && shape.dim(2).size() == 4 &&
            shape.dim(3).size() == 1);
  LG_EXPECT(Values(out, "w").size() == 36);
  LG_EXPECT(out.library().function_size() == 0);
  // The NoOp sink TF 2 hangs the stateful call on loses that edge once the
  // call is a stateless Conv2D (and nothing stateful is left).
  GraphDef sink = GroupedConvGraph(1, false);
  Add(&sink, "NoOp", "NoOp", {"^call"});
  sink.mutable_node(sink.node_size() - 1)->mutable_attr()->clear();
  Add(&sink, "result", "Identity", {"output", "^NoOp"});
  const GraphDef unordered = Run("inline_grouped_convs", sink, {"result"});
  LG_EXPECT(Find(unordered, "NoOp")->input_size() == 0);
  LG_EXPECT(Find(unordered, "call")->op() == "DepthwiseConv2dNative");
}

LG_TEST(InlineGroupedConvsKeepsTwoChannelGroupsAsGroupedConv2D) {
  const GraphDef out =
      Run("inline_grouped_convs", GroupedConvGraph(2, false), {"output"});
  const NodeDef* call = Find(out, "call");
  LG_EXPECT(call->op() == "Conv2D");
  LG_EXPECT(call->input(0) == "input" && call->input(1) == "w");
  LG_EXPECT(call->attr().at("T").type() == DT_FLOAT);
  LG_EXPECT(call->attr().count("f") == 0);
  LG_EXPECT(out.library().function_size() == 0);
}

LG_TEST(InlineGroupedConvsLeavesOtherFunctionsAlone) {
  const GraphDef g = GroupedConvGraph(1, true);  // conv + relu in the body
  LG_EXPECT(Same(Run("inline_grouped_convs", g, {"output"}), g));
  // A filter argument that is a resource handle (a graph not frozen).
  GraphDef unfrozen = GroupedConvGraph(1, false);
  unfrozen.mutable_library()
      ->mutable_function(0)
      ->mutable_signature()
      ->mutable_input_arg(0)
      ->set_type(tensorflow::DT_RESOURCE);
  LG_EXPECT(Same(Run("inline_grouped_convs", unfrozen, {"output"}), unfrozen));
}

LG_TEST(InlineGroupedConvsCopiesASharedDepthwiseFilter) {
  GraphDef g;
  Input(&g, "input", {1, 5, 5, 4});
  Const(&g, "w", {3, 3, 1, 4}, std::vector<float>(36, 0.5f));
  Conv(&g, "Conv2D", "grouped", {"input", "w"});
  Add(&g, "other", "Relu", {"w"});
  Add(&g, "output", "AddV2", {"grouped", "grouped"});
  const GraphDef out = Run("inline_grouped_convs", g, {"output", "other"});
  const NodeDef* grouped = Find(out, "grouped");
  LG_EXPECT(grouped->op() == "DepthwiseConv2dNative");
  LG_EXPECT(grouped->input(1) == "grouped/depthwise_filter");
  const NodeDef* copy = Find(out, "grouped/depthwise_filter");
  LG_EXPECT(copy != nullptr && copy->op() == "Const");
  LG_EXPECT(Find(out, "w")->attr().at("value").tensor().tensor_shape().dim(2).size() == 1);
  // Strides that differ by axis stay a grouped Conv2D.
  GraphDef h = g;
  auto* strides = (*h.mutable_node(2)->mutable_attr())["strides"].mutable_list();
  strides->set_i(1, 2);
  LG_EXPECT(Same(Run("inline_grouped_convs", h, {"output", "other"}), h));
}

}  // namespace
