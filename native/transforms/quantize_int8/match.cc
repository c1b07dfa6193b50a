#include "native/transforms/quantize_int8/match.h"

#include <cstdint>
#include <optional>

#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/tensor_shape.h"

namespace leangraph {
namespace quantize_int8 {
namespace {

using graph_util::Edge;
using graph_util::GraphIndex;
using tensorflow::GraphDef;
using tensorflow::NodeDef;
using tensorflow::Tensor;
using tensorflow::TensorShape;

// The one node that reads `name` (port 0 only), or nullptr when there are
// several readers, another port or a control edge is read, or `name` is a
// graph endpoint.
const NodeDef* SoleReader(const GraphIndex& index, const GraphDef& graph,
                          const std::string& name,
                          const std::set<std::string>& endpoints) {
  if (endpoints.count(name) > 0 || !index.HasSingleDataConsumer(name)) {
    return nullptr;
  }
  const auto& consumers = index.Consumers(name);
  if (consumers.size() != 1) return nullptr;
  return &graph.node(consumers[0].node);
}

// Adds whose two inputs have provably the same shape (rank 4, every
// dimension known and equal, or both the unknown batch): only those may be a
// conv's Sum fusion, which does not broadcast.
std::set<std::string> SameShapeAdds(const GraphDef& graph) {
  std::set<std::string> out;
  graph_util::VisitInferredShapes(
      graph, [&out](const tensorflow::Node& node,
                    tensorflow::shape_inference::InferenceContext& c) {
        if ((node.type_string() != "AddV2" && node.type_string() != "Add") ||
            c.num_inputs() != 2) {
          return;
        }
        const auto a = c.input(0);
        const auto b = c.input(1);
        if (!c.RankKnown(a) || !c.RankKnown(b) || c.Rank(a) != 4 || c.Rank(b) != 4) return;
        for (int i = 0; i < 4; ++i) {
          const auto da = c.Dim(a, i);
          const auto db = c.Dim(b, i);
          const bool known = c.ValueKnown(da) && c.ValueKnown(db);
          if (known ? c.Value(da) != c.Value(db)
                    : (i != 0 || c.ValueKnown(da) || c.ValueKnown(db))) {
            return;
          }
        }
        out.insert(node.name());
      });
  return out;
}

// A float contraction with a constant weight of the right rank, its weight
// stored as the kernel wants it; nullopt for anything else.
std::optional<Unit> MatchContraction(const GraphIndex& index, const NodeDef& node,
                                     const std::set<std::string>& exclude) {
  const std::string& op = node.op();
  if ((op != "Conv2D" && op != "DepthwiseConv2dNative" && op != "MatMul") ||
      graph_util::TypeAttr(node, "T") != kFloat || node.input_size() != 2 ||
      graph_util::HasControlInput(node) || exclude.count(node.name()) > 0) {
    return std::nullopt;
  }
  Unit unit;
  unit.contraction = &node;
  unit.is_matmul = op == "MatMul";
  if (unit.is_matmul) {
    const auto ta = node.attr().find("transpose_a");
    if (ta != node.attr().end() && ta->second.b()) return std::nullopt;
  } else {
    if (graph_util::DataFormat(node) != "NHWC") return std::nullopt;
    const auto padding = node.attr().find("padding");
    if (padding == node.attr().end()) return std::nullopt;
  }
  const auto weight = graph_util::EvalFloat(index, graph_util::ParseEdge(node.input(1)));
  if (!weight || weight->dims() != (unit.is_matmul ? 2 : 4)) return std::nullopt;
  unit.weight = *weight;
  if (unit.is_matmul) {
    const auto tb = node.attr().find("transpose_b");
    const bool transposed = tb != node.attr().end() && tb->second.b();
    if (transposed) {
      // The kernel wants [K, N]; store it that way.
      Tensor flipped(kFloat, TensorShape({weight->dim_size(1), weight->dim_size(0)}));
      const auto src = weight->matrix<float>();
      auto dst = flipped.matrix<float>();
      for (int64_t i = 0; i < weight->dim_size(0); ++i) {
        for (int64_t j = 0; j < weight->dim_size(1); ++j) dst(j, i) = src(i, j);
      }
      unit.weight = flipped;
    }
    unit.channels = unit.weight.dim_size(1);
  } else if (op == "Conv2D") {
    unit.channels = weight->dim_size(3);
  } else {
    unit.channels = weight->dim_size(2) * weight->dim_size(3);
  }
  if (unit.channels <= 0) return std::nullopt;
  return unit;
}

// A zero Pad that only a VALID conv reads becomes the conv's explicit
// padding, and the unit reads the Pad's input.
void AbsorbPad(const GraphIndex& index, const GraphDef& graph, const NodeDef& node,
               const std::set<std::string>& exclude, const std::set<std::string>& endpoints,
               Unit* unit) {
  const NodeDef* pad = index.Find(unit->input.node);
  const auto padding = node.attr().at("padding").s();
  if (pad != nullptr && unit->input.port == 0 && padding == "VALID" &&
      SoleReader(index, graph, pad->name(), endpoints) == &node &&
      exclude.count(pad->name()) == 0) {
    if (auto paddings = SpatialZeroPad(index, *pad)) {
      unit->pad = pad;
      unit->paddings = *paddings;
      unit->input = graph_util::ParseEdge(pad->input(0));
    }
  }
}

// The BiasAdd of a constant that alone reads the contraction; returns the
// sole reader of what the unit now ends at (nullptr: none, or several).
const NodeDef* AbsorbBias(const GraphIndex& index, const GraphDef& graph,
                          const std::set<std::string>& endpoints, Unit* unit) {
  unit->last = unit->contraction->name();
  const NodeDef* next = SoleReader(index, graph, unit->last, endpoints);
  if (next != nullptr && next->op() == "BiasAdd" && next->input_size() == 2 &&
      graph_util::TypeAttr(*next, "T") == kFloat && !graph_util::HasControlInput(*next) &&
      graph_util::DataFormat(*next) == "NHWC" &&
      graph_util::ParseEdge(next->input(0)).node == unit->last) {
    const auto bias = graph_util::EvalFloat(index, graph_util::ParseEdge(next->input(1)));
    if (bias && bias->NumElements() == unit->channels && bias->dims() == 1) {
      unit->bias = next;
      unit->bias_values.assign(bias->flat<float>().data(),
                               bias->flat<float>().data() + unit->channels);
      unit->last = next->name();
      next = SoleReader(index, graph, unit->last, endpoints);
    }
  }
  return next;
}

// `next`, when it is a same-shape add of the unit's output and another
// tensor, as a Sum fusion candidate (with the Relu after it, if any).
void FindSumCandidate(const GraphIndex& index, const GraphDef& graph, const NodeDef* next,
                      const Ranges& ranges, const std::set<std::string>& exclude,
                      const std::set<std::string>& endpoints,
                      const std::set<std::string>& same_shape_adds, Unit* unit) {
  if (unit->is_matmul || next == nullptr || same_shape_adds.count(next->name()) == 0 ||
      graph_util::TypeAttr(*next, "T") != kFloat || graph_util::HasControlInput(*next) ||
      next->input_size() != 2 || exclude.count(next->name()) > 0) {
    return;
  }
  const Edge first = graph_util::ParseEdge(next->input(0));
  const Edge other = graph_util::ParseEdge(
      next->input(first.node == unit->last && first.port == 0 ? 1 : 0));
  const NodeDef* relu = SoleReader(index, graph, next->name(), endpoints);
  const NodeDef* source = index.Find(other.node);
  const auto relu_range =
      relu != nullptr ? Lookup(ranges, Edge{relu->name(), 0, false}) : std::nullopt;
  const auto add_range = Lookup(ranges, Edge{next->name(), 0, false});
  // A constant summand is never fused: one such probe crashed TensorFlow.
  // Nor is the unit's own input: the kernel writes into the summand.
  const bool summable = other.node != unit->last && source != nullptr &&
                        source->op() != "Const" && !other.control &&
                        !(other.node == unit->input.node && other.port == unit->input.port);
  if (summable && relu != nullptr && relu->op() == "Relu" && relu_range &&
      graph_util::TypeAttr(*relu, "T") == kFloat && !graph_util::HasControlInput(*relu) &&
      exclude.count(relu->name()) == 0) {
    unit->sum_add = next;
    unit->sum_relu = relu;
    unit->summand = other;
    unit->sum_range = *relu_range;
  } else if (summable && add_range) {
    unit->sum_add = next;
    unit->summand = other;
    unit->sum_range = *add_range;
  }
}

// A unit rooted at `node`, or nullopt when `node` cannot be one.
std::optional<Unit> MatchUnit(const GraphIndex& index, const GraphDef& graph,
                              const NodeDef& node, const Ranges& ranges,
                              const std::set<std::string>& exclude,
                              const std::set<std::string>& endpoints,
                              const std::set<std::string>& same_shape_adds) {
  std::optional<Unit> matched = MatchContraction(index, node, exclude);
  if (!matched) return std::nullopt;
  Unit& unit = *matched;
  unit.input = graph_util::ParseEdge(node.input(0));
  if (!unit.is_matmul) AbsorbPad(index, graph, node, exclude, endpoints, &unit);
  const NodeDef* next = AbsorbBias(index, graph, endpoints, &unit);
  FindSumCandidate(index, graph, next, ranges, exclude, endpoints, same_shape_adds, &unit);
  if (next != nullptr && (next->op() == "Relu" || next->op() == "Relu6") &&
      graph_util::TypeAttr(*next, "T") == kFloat && !graph_util::HasControlInput(*next) &&
      exclude.count(next->name()) == 0) {
    unit.act = next;
    unit.last = next->name();
  }
  if (exclude.count(unit.last) > 0) return std::nullopt;
  if (unit.bias_values.empty()) unit.bias_values.assign(unit.channels, 0.0f);

  auto in_range = Lookup(ranges, unit.input);
  if (!in_range && unit.pad != nullptr) {
    in_range = Lookup(ranges, Edge{unit.pad->name(), 0, false});
  }
  if (!in_range) return std::nullopt;
  unit.in_range = *in_range;
  // A matmul can dequantize inside its kernel, so it matches without one.
  const auto out_range = Lookup(ranges, Edge{unit.last, 0, false});
  if (!out_range && !unit.is_matmul) return std::nullopt;
  if (out_range) {
    unit.out_known = true;
    unit.raw_out = *out_range;
    SetOutput(&unit, unit.act, *out_range);
  }
  return matched;
}

}  // namespace

bool IsPoolable(const NodeDef& node, const std::set<std::string>& exclude) {
  return (node.op() == "MaxPool" || node.op() == "AvgPool") &&
         graph_util::TypeAttr(node, "T") == kFloat && node.input_size() == 1 &&
         graph_util::DataFormat(node) == "NHWC" && exclude.count(node.name()) == 0;
}

std::optional<std::vector<int64_t>> SpatialZeroPad(const GraphIndex& index,
                                                   const NodeDef& pad) {
  if (pad.op() != "Pad" || pad.input_size() != 2 ||
      graph_util::TypeAttr(pad, "T") != kFloat || graph_util::HasControlInput(pad)) {
    return std::nullopt;
  }
  const NodeDef* paddings = index.Find(graph_util::ParseEdge(pad.input(1)).node);
  if (paddings == nullptr || paddings->op() != "Const") return std::nullopt;
  Tensor value;
  const auto it = paddings->attr().find("value");
  if (it == paddings->attr().end() || !value.FromProto(it->second.tensor()) ||
      value.dims() != 2 || value.dim_size(0) != 4 || value.dim_size(1) != 2) {
    return std::nullopt;
  }
  std::vector<int64_t> out(8);
  for (int i = 0; i < 8; ++i) {
    if (value.dtype() == tensorflow::DT_INT32) {
      out[i] = value.flat<int32_t>()(i);
    } else if (value.dtype() == tensorflow::DT_INT64) {
      out[i] = value.flat<int64_t>()(i);
    } else {
      return std::nullopt;
    }
    if (out[i] < 0) return std::nullopt;
  }
  if (out[0] != 0 || out[1] != 0 || out[6] != 0 || out[7] != 0) {
    return std::nullopt;
  }
  return out;
}

std::vector<Unit> MatchUnits(const GraphIndex& index, const GraphDef& graph,
                             const Options& options, const std::set<std::string>& endpoints) {
  const std::set<std::string> same_shape_adds = SameShapeAdds(graph);
  std::vector<Unit> units;
  for (const NodeDef& node : graph.node()) {
    auto unit = MatchUnit(index, graph, node, options.ranges, options.exclude, endpoints,
                          same_shape_adds);
    if (unit) units.push_back(std::move(*unit));
  }
  return units;
}

}  // namespace quantize_int8
}  // namespace leangraph
