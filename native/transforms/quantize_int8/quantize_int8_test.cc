// quantize_int8's phases on hand-built graphs: the options it refuses, the
// units it matches, the Sum fusions and shifts it decides, the plan, and the
// exact nodes and values the whole transform writes.
#include <cmath>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "native/test_main.h"
#include "native/transform_context.h"
#include "native/transforms/graph_util.h"
#include "native/transforms/quantize_int8/match.h"
#include "native/transforms/quantize_int8/options.h"
#include "native/transforms/quantize_int8/plan.h"
#include "native/transforms/quantize_int8/sums.h"
#include "native/transforms/quantize_int8/unit.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor.pb.h"

namespace {

namespace q = leangraph::quantize_int8;
using leangraph::TransformContext;
using leangraph::TransformParams;
using tensorflow::GraphDef;
using tensorflow::NodeDef;
using Names = std::vector<std::string>;

// A float graph built node by node.
struct Builder {
  GraphDef graph;

  NodeDef* Node(const std::string& name, const std::string& op, const Names& inputs) {
    NodeDef* node = graph.add_node();
    node->set_name(name);
    node->set_op(op);
    for (const std::string& input : inputs) node->add_input(input);
    if (op != "Const" && op != "Placeholder") {
      (*node->mutable_attr())["T"].set_type(tensorflow::DT_FLOAT);
    }
    return node;
  }
  void Input(const std::string& name, const std::vector<int64_t>& shape) {
    NodeDef* node = Node(name, "Placeholder", {});
    (*node->mutable_attr())["dtype"].set_type(tensorflow::DT_FLOAT);
    auto* proto = (*node->mutable_attr())["shape"].mutable_shape();
    for (const int64_t d : shape) proto->add_dim()->set_size(d);
  }
  void Floats(const std::string& name, const std::vector<int64_t>& shape,
              const std::vector<float>& values) {
    NodeDef* node = Node(name, "Const", {});
    (*node->mutable_attr())["dtype"].set_type(tensorflow::DT_FLOAT);
    auto* tensor = (*node->mutable_attr())["value"].mutable_tensor();
    tensor->set_dtype(tensorflow::DT_FLOAT);
    for (const int64_t d : shape) tensor->mutable_tensor_shape()->add_dim()->set_size(d);
    for (const float v : values) tensor->add_float_val(v);
  }
  void Ints(const std::string& name, const std::vector<int64_t>& shape,
            const std::vector<int>& values) {
    NodeDef* node = Node(name, "Const", {});
    (*node->mutable_attr())["dtype"].set_type(tensorflow::DT_INT32);
    auto* tensor = (*node->mutable_attr())["value"].mutable_tensor();
    tensor->set_dtype(tensorflow::DT_INT32);
    for (const int64_t d : shape) tensor->mutable_tensor_shape()->add_dim()->set_size(d);
    for (const int v : values) tensor->add_int_val(v);
  }
  void Conv(const std::string& name, const std::string& input, const std::string& filter,
            const std::string& padding = "SAME", const std::string& op = "Conv2D") {
    NodeDef* node = Node(name, op, {input, filter});
    for (int i = 0; i < 4; ++i) (*node->mutable_attr())["strides"].mutable_list()->add_i(1);
    (*node->mutable_attr())["padding"].set_s(padding);
  }
  // A 1x1 conv of 2 channels to 2, its bias and, unless `act` is empty, a Relu.
  void Pointwise(const std::string& prefix, const std::string& input, const std::string& act) {
    Floats(prefix + "_w", {1, 1, 2, 2}, {0.5f, -1.0f, 0.25f, 0.5f});
    Conv(prefix, input, prefix + "_w");
    Floats(prefix + "_b", {2}, {0.1f, -0.2f});
    Node(prefix + "_bias", "BiasAdd", {prefix, prefix + "_b"});
    if (!act.empty()) Node(act, "Relu", {prefix + "_bias"});
  }
};

TransformContext Context(const std::string& ranges, const Names& outputs,
                         TransformParams params = {}) {
  params["ranges"] = {ranges};
  return TransformContext{"quantize_int8", {"input"}, outputs, params};
}

absl::Status RunTransform(const GraphDef& in, const TransformContext& context, GraphDef* out) {
  for (const leangraph::OwnTransform& own : leangraph::OwnTransforms()) {
    if (std::string(own.name) == "quantize_int8") return own.fn(in, context, out);
  }
  return absl::NotFoundError("quantize_int8 is not registered");
}

// Matching, then ResolveSums, as the transform runs them.
std::vector<q::Unit> Units(const GraphDef& graph, const TransformContext& context,
                           const leangraph::graph_util::GraphIndex& index) {
  const auto options = q::ReadOptions(context);
  LG_EXPECT(options.ok());
  if (!options.ok()) return {};
  std::set<std::string> endpoints(context.outputs.begin(), context.outputs.end());
  std::vector<q::Unit> units = q::MatchUnits(index, graph, *options, endpoints);
  q::ResolveSums(&units, index, graph, *options);
  return units;
}

const NodeDef* Find(const GraphDef& graph, const std::string& name) {
  for (const NodeDef& node : graph.node()) {
    if (node.name() == name) return &node;
  }
  return nullptr;
}

Names NodeNames(const GraphDef& graph) {
  Names names;
  for (const NodeDef& node : graph.node()) names.push_back(node.name());
  return names;
}

Names Inputs(const NodeDef* node) {
  if (node == nullptr) return {};
  return Names(node->input().begin(), node->input().end());
}

Names FusedOps(const NodeDef* node) {
  if (node == nullptr) return {};
  const auto& list = node->attr().at("fused_ops").list().s();
  return Names(list.begin(), list.end());
}

tensorflow::Tensor Value(const GraphDef& graph, const std::string& name) {
  tensorflow::Tensor tensor;
  const NodeDef* node = Find(graph, name);
  if (node != nullptr) LG_EXPECT(tensor.FromProto(node->attr().at("value").tensor()));
  return tensor;
}

std::vector<float> Floats(const GraphDef& graph, const std::string& name) {
  const tensorflow::Tensor t = Value(graph, name);
  if (t.dtype() != tensorflow::DT_FLOAT) return {};
  return std::vector<float>(t.flat<float>().data(), t.flat<float>().data() + t.NumElements());
}

std::vector<int> Qint8s(const GraphDef& graph, const std::string& name) {
  const tensorflow::Tensor t = Value(graph, name);
  std::vector<int> out;
  if (t.dtype() != tensorflow::DT_QINT8) return out;
  for (int64_t i = 0; i < t.NumElements(); ++i) out.push_back(t.flat<tensorflow::qint8>()(i));
  return out;
}

bool Near(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::fabs(a[i] - b[i]) > 1e-5f * (1.0f + std::fabs(b[i]))) return false;
  }
  return true;
}

bool HasError(const absl::Status& status, const std::string& words) {
  return !status.ok() && std::string(status.message()).find(words) != std::string::npos;
}

// ---- options ----------------------------------------------------------------

LG_TEST(RangesKeyTensorsWithTheirPort) {
  const auto ranges = q::ParseRanges(" a=-1,2; b:1 = 0 , 3 ;c:0=1,1");
  LG_EXPECT(ranges.ok());
  if (!ranges.ok()) return;
  LG_EXPECT(ranges->size() == 3);
  LG_EXPECT(ranges->count("a:0") == 1 && ranges->at("a:0").lo == -1.0f &&
            ranges->at("a:0").hi == 2.0f);
  LG_EXPECT(ranges->count("b:1") == 1 && ranges->at("b:1").hi == 3.0f);
  LG_EXPECT(ranges->count("c:0") == 1);
  LG_EXPECT(q::TensorKey("conv") == q::TensorKey("conv:0"));
}

LG_TEST(MalformedRangesAreRefused) {
  LG_EXPECT(HasError(q::ParseRanges("a=1").status(), "malformed range 'a=1'"));
  LG_EXPECT(HasError(q::ParseRanges("=0,1").status(), "malformed range"));
  LG_EXPECT(HasError(q::ParseRanges("a=x,1").status(), "malformed range"));
  LG_EXPECT(HasError(q::ParseRanges("a=2,1").status(), "not a finite interval"));
  LG_EXPECT(HasError(q::ParseRanges("a=0,inf").status(), "not a finite interval"));
}

LG_TEST(OptionsDefaultsAndRefusals) {
  const auto plain = q::ReadOptions(Context("a=0,1", {"a"}));
  LG_EXPECT(plain.ok() && plain->shifts && !plain->probes && plain->weight_bits == 8);
  // Probes shift nothing unless asked.
  const auto probes = q::ReadOptions(Context("a=0,1", {"a"}, {{"probes", {"true"}}}));
  LG_EXPECT(probes.ok() && probes->probes && !probes->shifts);
  const auto both =
      q::ReadOptions(Context("a=0,1", {"a"}, {{"probes", {"true"}}, {"shifts", {"true"}}}));
  LG_EXPECT(both.ok() && both->shifts);
  const auto excluded = q::ReadOptions(Context("a=0,1", {"a"}, {{"exclude", {"x, y", "z"}}}));
  LG_EXPECT(excluded.ok() && excluded->exclude == (std::set<std::string>{"x", "y", "z"}));
  LG_EXPECT(HasError(q::ReadOptions(Context("a=0,1", {"a"}, {{"weight_bits", {"6"}}})).status(),
                     "weight_bits must be 8 or 7"));
  LG_EXPECT(HasError(q::ReadOptions(Context("", {"a"})).status(), "needs ranges="));
}

LG_TEST(CheckGraphRefusesWhatTheGraphDoesNotHave) {
  Builder b;
  b.Input("input", {1, 4, 4, 2});
  b.Pointwise("conv", "input", "relu");
  const leangraph::graph_util::GraphIndex index(b.graph);
  auto check = [&](const TransformContext& context) {
    const auto options = q::ReadOptions(context);
    LG_EXPECT(options.ok());
    return options.ok() ? q::CheckGraph(b.graph, index, *options) : options.status();
  };
  LG_EXPECT(check(Context("input=0,1;relu:0=0,1", {"relu"})).ok());
  LG_EXPECT(HasError(check(Context("input=0,1;other=0,1", {"relu"})),
                     "ranges name 'other:0', which is not in the graph"));
  LG_EXPECT(HasError(check(Context("input=0,1", {"relu"}, {{"exclude", {"nope"}}})),
                     "exclude names 'nope'"));
  Builder variable = b;
  variable.Node("v", "VariableV2", {});
  const leangraph::graph_util::GraphIndex variable_index(variable.graph);
  const auto options = q::ReadOptions(Context("input=0,1", {"relu"}));
  const absl::Status frozen = q::CheckGraph(variable.graph, variable_index, *options);
  LG_EXPECT(frozen.code() == absl::StatusCode::kFailedPrecondition);
  LG_EXPECT(HasError(frozen, "not frozen (VariableV2 'v')"));
}

// ---- matching ---------------------------------------------------------------

LG_TEST(UnitAbsorbsPadBiasAndRelu) {
  Builder b;
  b.Input("input", {1, 4, 4, 2});
  b.Ints("pads", {4, 2}, {0, 0, 1, 1, 0, 2, 0, 0});
  b.Node("pad", "Pad", {"input", "pads"});
  b.Floats("w", {1, 1, 2, 2}, {0.5f, -1.0f, 0.25f, 0.5f});
  b.Conv("conv", "pad", "w", "VALID");
  b.Floats("b", {2}, {0.1f, -0.2f});
  b.Node("bias", "BiasAdd", {"conv", "b"});
  b.Node("relu", "Relu6", {"bias"});
  const leangraph::graph_util::GraphIndex index(b.graph);
  const auto units = Units(b.graph, Context("input=-1,1;relu=0,9", {"relu"}), index);
  LG_EXPECT(units.size() == 1);
  if (units.size() != 1) return;
  const q::Unit& unit = units[0];
  LG_EXPECT(unit.pad != nullptr && unit.pad->name() == "pad");
  LG_EXPECT((unit.paddings == std::vector<int64_t>{0, 0, 1, 1, 0, 2, 0, 0}));
  LG_EXPECT(unit.input.node == "input");
  LG_EXPECT(unit.bias != nullptr && Near(unit.bias_values, {0.1f, -0.2f}));
  LG_EXPECT(unit.act != nullptr && unit.last == "relu");
  LG_EXPECT(unit.channels == 2 && !unit.is_matmul);
  // After a Relu6 the output is unsigned and capped at 6.
  LG_EXPECT(unit.out_type == q::kU8 && unit.out_range.lo == 0.0f && unit.out_range.hi == 6.0f);
}

LG_TEST(UnitsNeedRangesAndStayOutOfExcludedNodes) {
  Builder b;
  b.Input("input", {1, 4, 4, 2});
  b.Pointwise("conv", "input", "relu");
  const leangraph::graph_util::GraphIndex index(b.graph);
  LG_EXPECT(Units(b.graph, Context("relu=0,1", {"relu"}), index).empty());
  LG_EXPECT(Units(b.graph, Context("input=0,1", {"relu"}), index).empty());
  LG_EXPECT(Units(b.graph, Context("input=0,1;relu=0,1", {"relu"},
                                   {{"exclude", {"conv"}}}), index).empty());
  // An excluded Relu stays float: the unit ends at the BiasAdd, whose range it needs.
  const auto units = Units(b.graph, Context("input=0,1;relu=0,1;conv_bias=-1,1", {"relu"},
                                            {{"exclude", {"relu"}}}), index);
  LG_EXPECT(units.size() == 1 && units[0].last == "conv_bias" && units[0].act == nullptr);
  // A graph output is never absorbed.
  const auto ends = Units(b.graph, Context("input=0,1;conv_bias=-1,1", {"relu", "conv_bias"}),
                          index);
  LG_EXPECT(ends.size() == 1 && ends[0].last == "conv_bias");
}

LG_TEST(MatMulWeightsAreStoredKByN) {
  Builder b;
  b.Input("input", {1, 3});
  b.Floats("w", {2, 3}, {1, 2, 3, 4, 5, 6});  // [N, K], read transposed
  NodeDef* mm = b.Node("mm", "MatMul", {"input", "w"});
  (*mm->mutable_attr())["transpose_b"].set_b(true);
  const leangraph::graph_util::GraphIndex index(b.graph);
  const auto units = Units(b.graph, Context("input=-1,1", {"mm"}), index);
  LG_EXPECT(units.size() == 1);
  if (units.size() != 1) return;
  LG_EXPECT(units[0].is_matmul && units[0].channels == 2);
  const tensorflow::Tensor& w = units[0].weight;
  LG_EXPECT(w.dim_size(0) == 3 && w.dim_size(1) == 2);
  LG_EXPECT(w.matrix<float>()(0, 1) == 4.0f && w.matrix<float>()(2, 0) == 3.0f);
}

// ---- weights ----------------------------------------------------------------

LG_TEST(ChannelScalesAndRounding) {
  q::Unit unit;
  unit.channels = 2;
  unit.weight = tensorflow::Tensor(tensorflow::DT_FLOAT, tensorflow::TensorShape({2, 2}));
  const float values[4] = {0.5f, -1.0f, 0.25f, 0.5f};  // channel = index % 2
  for (int i = 0; i < 4; ++i) unit.weight.flat<float>()(i) = values[i];
  LG_EXPECT(Near(q::ChannelScales(unit), {0.5f, 1.0f}));
  LG_EXPECT(q::RoundWeight(0.5f, 0.5f) == 127 && q::RoundWeight(-1.0f, 1.0f) == -127);
  LG_EXPECT(q::RoundWeight(0.25f, 0.5f) == 64);  // 63.5
  LG_EXPECT(q::RoundWeight(3.0f, 1.0f) == 127);  // clamped
  // 7-bit weights: the largest is stored as 63.
  unit.weight_levels = 63.0f;
  const std::vector<float> scale = q::ChannelScales(unit);
  LG_EXPECT(Near(scale, {0.5f * 127 / 63, 1.0f * 127 / 63}));
  LG_EXPECT(q::RoundWeight(-1.0f, scale[1]) == -63);
  // A shift c of the input comes off the bias as c * the stored weights.
  unit.weight_levels = 127.0f;
  unit.bias_values = {0.0f, 0.0f};
  q::TakeShiftBack(&unit, 0.5f);
  q::TakeShiftBack(&unit, 0.5f);
  q::ApplyShiftsTakenBack(&unit);
  LG_EXPECT(Near(unit.bias_values, {-(127 + 64) * 0.5f / 127, -(-127 + 64) * 1.0f / 127}));
  LG_EXPECT(unit.taken_back == 0.0f);
}

// ---- sums and shifts --------------------------------------------------------

// A residual block: input -> a (Relu "ra") -> b (Relu "rb") -> c, then
// add(c, ra) -> Relu "out"; every conv 1x1.
Builder Residual() {
  Builder b;
  b.Input("input", {1, 4, 4, 2});
  b.Pointwise("a", "input", "ra");
  b.Pointwise("b", "ra", "rb");
  b.Pointwise("c", "rb", "");
  b.Node("add", "AddV2", {"c_bias", "ra"});
  b.Node("out", "Relu", {"add"});
  return b;
}

const char kResidualRanges[] = "input=0,1;ra=0,2;rb=0,2;c_bias=-2,2;out=0,4";

LG_TEST(ResidualAddAndReluFuseIntoTheConv) {
  const Builder b = Residual();
  const leangraph::graph_util::GraphIndex index(b.graph);
  const auto units = Units(b.graph, Context(kResidualRanges, {"out"}), index);
  LG_EXPECT(units.size() == 3);
  if (units.size() != 3) return;
  const q::Unit& fused = units[2];
  LG_EXPECT(fused.summed && fused.sum_add->name() == "add" && fused.sum_relu->name() == "out");
  LG_EXPECT(fused.summand.node == "ra" && fused.last == "out");
  LG_EXPECT(fused.out_type == q::kU8 && fused.out_range.hi == 4.0f);
  LG_EXPECT(!fused.shifted && !units[0].shifted && !units[1].shifted);
}

LG_TEST(SignedSummandIsNotFused) {
  Builder b = Residual();
  // The summand is now a float tensor of either sign.
  b.graph.mutable_node(b.graph.node_size() - 2)->set_input(1, "input");
  const leangraph::graph_util::GraphIndex index(b.graph);
  const auto units =
      Units(b.graph, Context("input=-1,1;ra=0,2;rb=0,2;c_bias=-2,2;out=0,4;add=-3,3", {"out"}),
            index);
  LG_EXPECT(units.size() == 3);
  if (units.size() == 3) LG_EXPECT(!units[2].summed && units[2].last == "c_bias");
}

LG_TEST(TheConvsOwnInputIsNeverItsSummand) {
  Builder b = Residual();
  // add(c, rb): the kernel would write into the tensor it reads.
  b.graph.mutable_node(b.graph.node_size() - 2)->set_input(1, "rb");
  const leangraph::graph_util::GraphIndex index(b.graph);
  const auto units = Units(b.graph, Context(kResidualRanges, {"out"}), index);
  LG_EXPECT(units.size() == 3);
  if (units.size() == 3) LG_EXPECT(units[2].sum_add == nullptr && !units[2].summed);
}

// input -> a (1x1, no activation) -> c (1x1) -> c_bias
Builder Chain() {
  Builder b;
  b.Input("input", {1, 4, 4, 2});
  b.Pointwise("a", "input", "");
  b.Pointwise("c", "a_bias", "");
  return b;
}

LG_TEST(SignedOutputIsHandedOnShiftedToAPointwiseConv) {
  const Builder b = Chain();
  const leangraph::graph_util::GraphIndex index(b.graph);
  const std::string ranges = "input=0,1;a_bias=-1,3;c_bias=-2,2";
  const auto units = Units(b.graph, Context(ranges, {"c_bias"}), index);
  LG_EXPECT(units.size() == 2);
  if (units.size() != 2) return;
  const q::Unit& a = units[0];
  const q::Unit& c = units[1];
  LG_EXPECT(a.shifted && a.shift == 1.0f && a.out_type == q::kU8);
  LG_EXPECT(a.out_range.lo == 0.0f && a.out_range.hi == 4.0f);
  LG_EXPECT(Near(a.bias_values, {1.1f, 0.8f}));  // the bias adds the shift
  LG_EXPECT(c.taken_back == 1.0f && c.in_range.hi == 4.0f);
  // The graph output is read in float only: no reader to take a shift back.
  LG_EXPECT(!c.shifted);
  const auto unshifted =
      Units(b.graph, Context(ranges, {"c_bias"}, {{"shifts", {"false"}}}), index);
  LG_EXPECT(unshifted.size() == 2 && !unshifted[0].shifted && unshifted[1].taken_back == 0.0f);
}

// Xception's exit block: a linear add of a 1x1 conv's output and a Relu'd
// tensor, read by a 3x3 SAME conv, which cannot take a shift back.
Builder LinearAddIntoSameConv() {
  Builder b = Residual();
  b.graph.mutable_node(b.graph.node_size() - 1)->set_op("Identity");  // "out" no Relu
  b.Floats("d_w", {3, 3, 2, 1}, std::vector<float>(18, 0.25f));
  b.Conv("d", "add", "d_w", "SAME", "DepthwiseConv2dNative");
  return b;
}

const char kLinearAddRanges[] = "input=0,1;ra=0,2;rb=0,2;c_bias=-2,2;add=-3,1;d=-5,5";

LG_TEST(LinearSumReadByASameConvIsDequantizedOnTheConvsGrid) {
  const Builder b = LinearAddIntoSameConv();
  const leangraph::graph_util::GraphIndex index(b.graph);
  const auto units = Units(b.graph, Context(kLinearAddRanges, {"d", "out"}), index);
  LG_EXPECT(units.size() == 4);
  if (units.size() != 4) return;
  const q::Unit& c = units[2];
  const q::Unit& d = units[3];
  LG_EXPECT(c.summed && c.sum_relu == nullptr && c.shifted && c.last == "add");
  // The grid of a signed 8-bit [-3, 3]: steps of 3/127, the shift 127 of them.
  LG_EXPECT(Near({c.shift}, {3.0f}) && Near({c.out_range.hi}, {255.0f * 3 / 127}));
  LG_EXPECT(d.reads_dequantized && d.taken_back == 0.0f);
  LG_EXPECT(d.in_range.lo == -3.0f && d.in_range.hi == 1.0f);

  GraphDef out;
  LG_EXPECT(RunTransform(b.graph, Context(kLinearAddRanges, {"d", "out"}), &out).ok());
  const NodeDef* add = Find(out, "add");
  LG_EXPECT(add != nullptr && add->op() == "Dequantize" &&
            add->attr().at("mode").s() == "MIN_FIRST");
  const NodeDef* quantize = Find(out, "add_quantized");
  LG_EXPECT(quantize != nullptr && quantize->op() == "QuantizeV2" &&
            quantize->attr().at("mode").s() == "SCALED" &&
            quantize->attr().at("T").type() == tensorflow::DT_QINT8);
  LG_EXPECT(Inputs(quantize).size() == 3 && Inputs(quantize)[0] == "add");
  LG_EXPECT(Inputs(Find(out, "d_int8")).size() > 0 && Inputs(Find(out, "d_int8"))[0] == "add_quantized");
  LG_EXPECT((FusedOps(Find(out, "c_int8")) == Names{"BiasAdd", "Sum", "Relu", "Requantize"}));

  // Without the reader that cannot take it back, the shift is the minimum's.
  Builder plain = Residual();
  plain.graph.mutable_node(plain.graph.node_size() - 1)->set_op("Identity");
  const leangraph::graph_util::GraphIndex plain_index(plain.graph);
  const auto others = Units(plain.graph, Context(kLinearAddRanges, {"out"}), plain_index);
  LG_EXPECT(others.size() == 3 && others[2].summed && Near({others[2].shift}, {3.0f}) &&
            Near({others[2].out_range.hi}, {4.0f}));
}

// ---- plan -------------------------------------------------------------------

LG_TEST(PlanAbsorbsAReluOnlyUnitsRead) {
  Builder b;
  b.Input("input", {1, 4, 4, 2});
  b.Node("r0", "Relu", {"input"});
  b.Floats("w", {3, 3, 2, 2}, std::vector<float>(36, 0.25f));
  b.Conv("conv", "r0", "w");
  const leangraph::graph_util::GraphIndex index(b.graph);
  auto plan_for = [&](const TransformContext& context) {
    const auto options = q::ReadOptions(context);
    const std::set<std::string> endpoints = {"conv"};
    return q::MakePlan(index, b.graph, *options, endpoints, Units(b.graph, context, index));
  };
  const q::Plan plan = plan_for(Context("r0=0,1;conv=-5,5", {"conv"}));
  LG_EXPECT(plan.units.size() == 1 && plan.units[0].qname == "conv_int8");
  LG_EXPECT(plan.absorbed.size() == 1 && plan.absorbed.at("r0") == "input");
  LG_EXPECT(plan.replaced == (std::set<std::string>{"conv"}));
  LG_EXPECT(plan.needs_float == (std::set<std::string>{"conv"}));  // a graph output
  LG_EXPECT(plan.taken.count("conv_int8") == 1 && plan.shifted_inputs.empty());
  const q::Plan probed = plan_for(Context("r0=0,1;conv=-5,5", {"conv"}, {{"probes", {"true"}}}));
  LG_EXPECT(probed.absorbed.empty());
}

LG_TEST(PlanShiftsASignedInputOnlyPointwiseConvsRead) {
  const Builder b = Chain();
  const leangraph::graph_util::GraphIndex index(b.graph);
  const TransformContext context = Context("input=-1,1;a_bias=-1,3;c_bias=-2,2", {"c_bias"});
  const auto options = q::ReadOptions(context);
  const q::Plan plan =
      q::MakePlan(index, b.graph, *options, {"c_bias"}, Units(b.graph, context, index));
  LG_EXPECT(plan.shifted_inputs.count("input") == 1);
  LG_EXPECT(plan.units.size() == 2 && plan.units[0].taken_back == 1.0f);
  LG_EXPECT(plan.units[0].in_range.lo == 0.0f && plan.units[0].in_range.hi == 2.0f);
  LG_EXPECT(plan.shifted_producers.count("a_bias") == 1);
  LG_EXPECT(plan.needs_float == (std::set<std::string>{"c_bias"}));
}

// ---- the whole transform ----------------------------------------------------

LG_TEST(ConvBiasReluBecomesOneFusedInt8Conv) {
  Builder b;
  b.Input("input", {1, 4, 4, 2});
  b.Pointwise("conv", "input", "relu");
  GraphDef out;
  LG_EXPECT(RunTransform(b.graph, Context("input=-1,1;relu=0,3", {"relu"}), &out).ok());
  // The signed input only a 1x1 conv reads is quantized unsigned from its
  // minimum (MIN_FIRST), and the conv's bias takes that shift back.
  LG_EXPECT((NodeNames(out) == Names{"input", "q0/min", "q0/max", "q0/smin", "q0/smax",
                                     "input_quantized", "q1/w", "q1/r", "q1/b", "conv_int8",
                                     "q1/lo", "q1/hi", "relu"}));
  const NodeDef* quantize = Find(out, "input_quantized");
  LG_EXPECT(quantize != nullptr && quantize->op() == "QuantizeV2" &&
            quantize->attr().at("mode").s() == "MIN_FIRST");
  LG_EXPECT(Near(Floats(out, "q0/min"), {-1.0f}) && Near(Floats(out, "q0/smax"), {2.0f}));
  const NodeDef* conv = Find(out, "conv_int8");
  LG_EXPECT(conv != nullptr && conv->op() == "_FusedQuantizedConv2D");
  LG_EXPECT((FusedOps(conv) == Names{"BiasAdd", "Relu", "Requantize"}));
  LG_EXPECT((Inputs(conv) == Names{"input_quantized", "q1/w", "q1/b", "q0/smin", "q0/smax",
                                   "q1/r", "q1/r", "q1/lo", "q1/hi"}));
  LG_EXPECT(conv->attr().at("Tinput").type() == tensorflow::DT_QUINT8);
  LG_EXPECT(conv->attr().at("out_type").type() == tensorflow::DT_QUINT8);
  LG_EXPECT((Qint8s(out, "q1/w") == std::vector<int>{127, -127, 64, 64}));
  LG_EXPECT(Near(Floats(out, "q1/r"), {0.5f, 1.0f}));
  LG_EXPECT(Near(Floats(out, "q1/b"), {0.1f - (127 + 64) * 0.5f / 127,
                                       -0.2f - (-127 + 64) * 1.0f / 127}));
  LG_EXPECT(Near(Floats(out, "q1/lo"), {0.0f}) && Near(Floats(out, "q1/hi"), {3.0f}));
  // The graph output keeps its name, as a Dequantize reading the range constants.
  const NodeDef* relu = Find(out, "relu");
  LG_EXPECT(relu != nullptr && relu->op() == "Dequantize");
  LG_EXPECT((Inputs(relu) == Names{"conv_int8", "q1/lo", "q1/hi"}));
}

LG_TEST(SumFusionReadsTheSummandLastOfItsReaders) {
  Builder b = Residual();
  b.Node("side", "Sigmoid", {"ra"});  // a float reader of the summand
  GraphDef out;
  LG_EXPECT(RunTransform(b.graph, Context(kResidualRanges, {"out", "side"}), &out).ok());
  const NodeDef* conv = Find(out, "c_int8");
  LG_EXPECT(conv != nullptr && conv->attr().at("Tsummand").type() == tensorflow::DT_QUINT8);
  LG_EXPECT((FusedOps(conv) == Names{"BiasAdd", "Sum", "Relu", "Requantize"}));
  // Input, filter, bias, summand; the ranges of the input, filter and
  // summand, the output's; and, as the kernel writes into the summand's
  // buffer, an edge from the summand's float reader.
  LG_EXPECT((Inputs(conv) == Names{"b_int8", "q3/w", "q3/b", "a_int8", "q2/lo", "q2/hi", "q3/r",
                                   "q3/r", "q1/lo", "q1/hi", "q3/lo", "q3/hi", "^ra"}));
  const NodeDef* ra = Find(out, "ra");
  LG_EXPECT(ra != nullptr && ra->op() == "Dequantize");
  LG_EXPECT(Find(out, "out")->op() == "Dequantize" && Find(out, "add") == nullptr);
}

LG_TEST(SevenBitWeightsForUnsignedInputsOfConv2D) {
  Builder b;
  b.Input("input", {1, 4, 4, 2});
  b.Pointwise("conv", "input", "relu");
  GraphDef out;
  LG_EXPECT(RunTransform(b.graph, Context("input=0,1;relu=0,3", {"relu"},
                                          {{"weight_bits", {"7"}}}), &out).ok());
  LG_EXPECT((Qint8s(out, "q1/w") == std::vector<int>{63, -63, 32, 32}));
}

LG_TEST(SameConvReadingASignedInputPadsItOnlyWhenAsked) {
  Builder b;
  b.Input("input", {1, 4, 4, 2});
  b.Floats("w", {3, 3, 2, 2}, std::vector<float>(36, 0.25f));
  b.Conv("conv", "input", "w");
  const TransformContext plain = Context("input=-1,1;conv=-5,5", {"conv"});
  GraphDef out;
  LG_EXPECT(RunTransform(b.graph, plain, &out).ok());
  const NodeDef* quantize = Find(out, "input_quantized");
  LG_EXPECT(quantize != nullptr && quantize->attr().at("mode").s() == "SCALED" &&
            quantize->attr().at("T").type() == tensorflow::DT_QINT8);
  LG_EXPECT(Find(out, "conv_int8")->attr().at("padding").s() == "SAME");
  LG_EXPECT((FusedOps(Find(out, "conv_int8")) == Names{"BiasAdd", "Requantize"}));

  GraphDef padded;
  LG_EXPECT(RunTransform(b.graph, Context("input=-1,1;conv=-5,5", {"conv"},
                                          {{"pad_inputs", {"true"}}}), &padded).ok());
  const NodeDef* pad = Find(padded, "input_quantized/padded");
  LG_EXPECT(pad != nullptr && pad->op() == "Pad");
  LG_EXPECT((Inputs(Find(padded, "input_quantized")) ==
             Names{"input_quantized/padded", "q0/min", "q0/max"}));
  LG_EXPECT(Find(padded, "conv_int8")->attr().at("padding").s() == "VALID");
}

// ResNet's stem: conv + Relu, a zero Pad, a VALID MaxPool, a 1x1 conv.
LG_TEST(AZeroPadThatOnlyPoolsReadPadsTheEightBitTensorAsUint8) {
  Builder b;
  b.Input("input", {1, 6, 6, 2});
  b.Pointwise("conv", "input", "relu");
  b.Ints("paddings", {4, 2}, {0, 0, 1, 1, 1, 1, 0, 0});
  NodeDef* pad = b.Node("pad", "Pad", {"relu", "paddings"});
  (*pad->mutable_attr())["Tpaddings"].set_type(tensorflow::DT_INT32);
  NodeDef* pool = b.Node("pool", "MaxPool", {"pad"});
  for (const char* attr : {"ksize", "strides"}) {
    auto* list = (*pool->mutable_attr())[attr].mutable_list();
    for (int v : {1, 3, 3, 1}) list->add_i(attr[0] == 'k' ? v : (v == 3 ? 2 : 1));
  }
  (*pool->mutable_attr())["padding"].set_s("VALID");
  b.Pointwise("head", "pool", "out");
  const std::string ranges = "input=0,1;relu=0,3;pad=0,3;pool=0,3;out=0,2";
  GraphDef out;
  LG_EXPECT(RunTransform(b.graph, Context(ranges, {"out"}), &out).ok());
  const NodeDef* back = Find(out, "pad_int8");
  LG_EXPECT(back != nullptr && back->op() == "Bitcast" &&
            back->attr().at("type").type() == tensorflow::DT_QUINT8);
  LG_EXPECT((Inputs(back) == Names{"pad_int8/padded"}));
  const NodeDef* padded = Find(out, "pad_int8/padded");
  LG_EXPECT(padded != nullptr && padded->op() == "Pad" &&
            padded->attr().at("T").type() == tensorflow::DT_UINT8);
  LG_EXPECT((Inputs(padded) == Names{"pad_int8/raw", "paddings"}));
  LG_EXPECT((Inputs(Find(out, "pad_int8/raw")) == Names{"conv_int8"}));
  const NodeDef* qpool = Find(out, "pool_int8");
  LG_EXPECT(qpool != nullptr && qpool->op() == "QuantizedMaxPool");
  LG_EXPECT(Inputs(qpool).size() == 3 && Inputs(qpool)[0] == "pad_int8");
  LG_EXPECT(Inputs(Find(out, "head_int8")).size() > 0 && Inputs(Find(out, "head_int8"))[0] == "pool_int8");
  // Nothing between the convs is float any more.
  for (const char* name : {"relu", "pad", "pool"}) LG_EXPECT(Find(out, name) == nullptr);

  // A float reader of the Pad keeps it float.
  b.Node("side", "Sigmoid", {"pad"});
  GraphDef kept;
  LG_EXPECT(RunTransform(b.graph, Context(ranges, {"out", "side"}), &kept).ok());
  LG_EXPECT(Find(kept, "pad_int8") == nullptr && Find(kept, "pad")->op() == "Pad");
  LG_EXPECT(Find(kept, "relu") != nullptr && Find(kept, "relu")->op() == "Dequantize");
}

LG_TEST(MatMulDequantizesInsideTheKernelUnderItsLastName) {
  Builder b;
  b.Input("input", {1, 3});
  b.Floats("w", {3, 2}, {1, 2, 3, 4, 5, 6});
  b.Node("mm", "MatMul", {"input", "w"});
  b.Floats("bias_value", {2}, {0.5f, -0.5f});
  b.Node("bias", "BiasAdd", {"mm", "bias_value"});
  GraphDef out;
  LG_EXPECT(RunTransform(b.graph, Context("input=-1,1", {"bias"}), &out).ok());
  const NodeDef* mm = Find(out, "bias");
  LG_EXPECT(mm != nullptr && mm->op() == "_QuantizedMatMul");
  LG_EXPECT((FusedOps(mm) == Names{"BiasAdd", "Dequantize"}));
  LG_EXPECT(Find(out, "mm") == nullptr && Find(out, "w") == nullptr);
  // Its constants carry the unit's name, as quantized_units() reads it.
  LG_EXPECT((Qint8s(out, "mm_int8/w") == std::vector<int>{25, 42, 76, 85, 127, 127}));
  LG_EXPECT(Near(Floats(out, "mm_int8/wmin"), {-5.0f, -6.0f}));
  LG_EXPECT(Near(Floats(out, "mm_int8/b"), {0.5f, -0.5f}));
}

// A factorised Dense: a rank-r MatMul with no activation, then the second
// factor's MatMul, bias and Relu, read by a float op.
Builder FactorisedDense() {
  Builder b;
  b.Input("input", {1, 3});
  b.Floats("u", {3, 2}, {1, 0, 0, 1, 1, 1});
  b.Node("inner", "MatMul", {"input", "u"});
  b.Floats("v", {2, 3}, {1, 2, 3, -1, 0, 1});
  b.Node("outer", "MatMul", {"inner", "v"});
  b.Floats("bias_value", {3}, {0.5f, 0.0f, -0.5f});
  b.Node("bias", "BiasAdd", {"outer", "bias_value"});
  b.Node("relu", "Relu", {"bias"});
  b.Node("out", "Sigmoid", {"relu"});
  return b;
}

LG_TEST(MatMulReadOnlyByAnEightBitMatMulRequantizes) {
  Builder b = FactorisedDense();
  const std::string ranges = "input=-1,1;inner=-3,2;relu=0,4";
  GraphDef out;
  LG_EXPECT(RunTransform(b.graph, Context(ranges, {"out"}), &out).ok());
  const NodeDef* inner = Find(out, "inner");
  LG_EXPECT(inner != nullptr && inner->op() == "_QuantizedMatMul");
  LG_EXPECT((FusedOps(inner) == Names{"BiasAdd", "Requantize"}));
  LG_EXPECT(inner->attr().at("Tout").type() == tensorflow::DT_QINT8);
  const Names in = Inputs(inner);
  LG_EXPECT(in.size() == 9);
  // Signed, symmetric over the larger side of its calibrated range.
  if (in.size() == 9) {
    LG_EXPECT(Near(Floats(out, in[7]), {-3.0f}) && Near(Floats(out, in[8]), {3.0f}));
  }
  // The second factor reads the 8-bit tensor and that range: no QuantizeV2
  // between them, and it dequantizes for the float reader.
  const NodeDef* outer = Find(out, "relu");
  LG_EXPECT(outer != nullptr && outer->op() == "_QuantizedMatMul");
  LG_EXPECT((FusedOps(outer) == Names{"BiasAdd", "Relu", "Dequantize"}));
  const Names read = Inputs(outer);
  LG_EXPECT(read.size() == 7 && read[0] == "inner");
  if (read.size() == 7 && in.size() == 9) LG_EXPECT(read[3] == in[7] && read[4] == in[8]);
  LG_EXPECT(outer->attr().at("T1").type() == tensorflow::DT_QINT8);
  int quantizes = 0;
  for (const NodeDef& node : out.node()) quantizes += node.op() == "QuantizeV2";
  LG_EXPECT(quantizes == 1);
}

LG_TEST(MatMulKeepsItsFloatOutputForFloatReadersEndpointsAndProbes) {
  const std::string ranges = "input=-1,1;inner=-3,2;relu=0,4";
  auto inner_fused = [&](const Builder& b, const Names& outputs, TransformParams params) {
    GraphDef out;
    LG_EXPECT(RunTransform(b.graph, Context(ranges, outputs, params), &out).ok());
    return FusedOps(Find(out, "inner"));
  };
  const Names dequantized = {"BiasAdd", "Dequantize"};
  Builder side = FactorisedDense();
  side.Node("side", "Tanh", {"inner"});
  LG_EXPECT(inner_fused(side, {"out", "side"}, {}) == dequantized);
  LG_EXPECT(inner_fused(FactorisedDense(), {"out", "inner"}, {}) == dequantized);
  LG_EXPECT(inner_fused(FactorisedDense(), {"out"}, {{"probes", {"true"}}}) == dequantized);
  // Without a calibrated range for its output it cannot requantize.
  GraphDef out;
  LG_EXPECT(RunTransform(FactorisedDense().graph, Context("input=-1,1;relu=0,4", {"out"}),
                         &out).ok());
  LG_EXPECT(FusedOps(Find(out, "inner")) == dequantized);
}

LG_TEST(TransformRefusesBadParameters) {
  Builder b;
  b.Input("input", {1, 4, 4, 2});
  b.Pointwise("conv", "input", "relu");
  GraphDef out;
  LG_EXPECT(HasError(RunTransform(b.graph, Context("input=0,1;gone=0,1", {"relu"}), &out),
                     "calibrated on another graph"));
  LG_EXPECT(HasError(RunTransform(b.graph, Context("input=0,1", {"relu"},
                                                   {{"weight_bits", {"4"}}}), &out),
                     "weight_bits must be 8 or 7"));
}

}  // namespace
