// fold_keras_batch_norms: folds inference batch norm, in every form a frozen
// graph carries it, into the weights of the contraction before it plus one
// BiasAdd.
//
// Starting at each float32 Conv2D / DepthwiseConv2dNative / MatMul /
// Conv2DBackpropInput whose weight is a constant, the transform walks the
// single-consumer chain after it and accumulates a per-channel affine map
// y = a * conv(x) + b through BiasAdd, Add/AddV2, Sub, Mul, RealDiv (by a
// per-channel constant: [C], [1], scalar or broadcast [1,..,1,C]),
// FusedBatchNorm/V2/V3 with is_training=false and
// BatchNormWithGlobalNormalization. The constants may still be unfolded
// expressions (Keras 3 freezes gamma * rsqrt(var + eps) as ops), which are
// evaluated here, so the transform does not need TensorFlow's whole-graph
// fold_constants before it. Anything that does not fit ends the chain; a
// chain of nothing or of a single BiasAdd is left as it is. Small float32
// constant expressions left over (the parameters of a batch norm that
// follows no contraction) are replaced by their values. Never fails.
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "native/transform_context.h"
#include "native/transforms/graph_util.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/tensor.h"

namespace leangraph {
namespace {

using graph_util::Edge;
using graph_util::GraphIndex;
using tensorflow::GraphDef;
using tensorflow::NodeDef;
using tensorflow::Tensor;

// y = scale * z + shift, per output channel.
struct Affine {
  std::vector<float> scale;
  std::vector<float> shift;
  bool has_shift = false;
};

struct Plan {
  int contraction;         // node index
  std::vector<int> chain;  // node indices after it, in order
  Tensor weight;           // folded
  Affine affine;
};

float FloatAttr(const NodeDef& node, const std::string& name, float fallback) {
  const auto it = node.attr().find(name);
  if (it == node.attr().end()) return fallback;
  return it->second.f();
}

// Reads input `i` of `node` as a per-channel vector; exact [C] when `exact`.
std::optional<std::vector<float>> Operand(const GraphIndex& index,
                                          const NodeDef& node, int i,
                                          int64_t channels, int output_rank,
                                          bool exact,
                                          std::set<std::string>* consumed) {
  std::set<std::string> visited;
  const auto value = graph_util::EvalFloat(
      index, graph_util::ParseEdge(node.input(i)), &visited);
  if (!value) return std::nullopt;
  if (exact && (value->dims() != 1 || value->dim_size(0) != channels)) {
    return std::nullopt;
  }
  auto out = graph_util::PerChannel(*value, channels, output_rank);
  if (out) consumed->insert(visited.begin(), visited.end());
  return out;
}

// Folds one normalisation into `affine`; false (and `affine` unchanged) when
// the node is not an inference batch norm of a per-channel constant.
bool Absorb(const GraphIndex& index, const NodeDef& node, int from_input,
            int64_t channels, int output_rank, Affine* affine,
            std::set<std::string>* consumed) {
  const std::string& op = node.op();
  if (graph_util::TypeAttr(node, "T") != tensorflow::DT_FLOAT ||
      graph_util::HasControlInput(node)) {
    return false;
  }
  std::set<std::string> used;
  Affine next = *affine;
  const int64_t n = channels;
  if (op == "BiasAdd" || op == "Add" || op == "AddV2" || op == "Sub" ||
      op == "Mul" || op == "RealDiv") {
    if (node.input_size() != 2) return false;
    if (op == "BiasAdd" &&
        (from_input != 0 || graph_util::DataFormat(node) != "NHWC")) {
      return false;
    }
    if (op == "RealDiv" && from_input != 0) return false;
    const auto k = Operand(index, node, 1 - from_input, n, output_rank,
                           op == "BiasAdd", &used);
    if (!k) return false;
    for (int64_t c = 0; c < n; ++c) {
      const float v = (*k)[c];
      if (op == "Mul") {
        next.scale[c] *= v;
        next.shift[c] *= v;
      } else if (op == "RealDiv") {
        if (v == 0.0f) return false;
        next.scale[c] /= v;
        next.shift[c] /= v;
      } else if (op == "Sub" && from_input == 1) {
        next.scale[c] = -next.scale[c];
        next.shift[c] = v - next.shift[c];
      } else if (op == "Sub") {
        next.shift[c] -= v;
      } else {
        next.shift[c] += v;
      }
    }
    next.has_shift = next.has_shift || (op != "Mul" && op != "RealDiv");
  } else if (op == "FusedBatchNorm" || op == "FusedBatchNormV2" ||
             op == "FusedBatchNormV3") {
    const auto training = node.attr().find("is_training");
    if (from_input != 0 || node.input_size() != 5 ||
        training == node.attr().end() || training->second.b() ||
        graph_util::DataFormat(node) != "NHWC" ||
        (op != "FusedBatchNorm" &&
         graph_util::TypeAttr(node, "U") != tensorflow::DT_FLOAT)) {
      return false;
    }
    // The statistics outputs must be unused: they vanish with the node.
    for (const auto& consumer : index.Consumers(node.name())) {
      if (!consumer.edge.control && consumer.edge.port != 0) return false;
    }
    const auto gamma = Operand(index, node, 1, n, 1, true, &used);
    const auto beta = Operand(index, node, 2, n, 1, true, &used);
    const auto mean = Operand(index, node, 3, n, 1, true, &used);
    const auto var = Operand(index, node, 4, n, 1, true, &used);
    if (!gamma || !beta || !mean || !var) return false;
    const float epsilon = FloatAttr(node, "epsilon", 0.0001f);
    for (int64_t c = 0; c < n; ++c) {
      const float s = (*gamma)[c] / std::sqrt((*var)[c] + epsilon);
      next.scale[c] *= s;
      next.shift[c] = (next.shift[c] - (*mean)[c]) * s + (*beta)[c];
    }
    next.has_shift = true;
  } else if (op == "BatchNormWithGlobalNormalization") {
    if (from_input != 0 || node.input_size() != 5) return false;
    const auto mean = Operand(index, node, 1, n, 1, true, &used);
    const auto var = Operand(index, node, 2, n, 1, true, &used);
    const auto beta = Operand(index, node, 3, n, 1, true, &used);
    const auto gamma = Operand(index, node, 4, n, 1, true, &used);
    if (!gamma || !beta || !mean || !var) return false;
    const auto scaled = node.attr().find("scale_after_normalization");
    const bool use_gamma = scaled != node.attr().end() && scaled->second.b();
    const float epsilon = FloatAttr(node, "variance_epsilon", 0.0f);
    for (int64_t c = 0; c < n; ++c) {
      const float s = (use_gamma ? (*gamma)[c] : 1.0f) /
                      std::sqrt((*var)[c] + epsilon);
      next.scale[c] *= s;
      next.shift[c] = (next.shift[c] - (*mean)[c]) * s + (*beta)[c];
    }
    next.has_shift = true;
  } else {
    return false;
  }
  for (int64_t c = 0; c < n; ++c) {
    if (!std::isfinite(next.scale[c]) || !std::isfinite(next.shift[c])) {
      return false;
    }
  }
  *affine = std::move(next);
  consumed->insert(used.begin(), used.end());
  return true;
}

std::optional<Plan> PlanFold(const GraphDef& graph, const GraphIndex& index,
                             int contraction,
                             const std::set<std::string>& endpoints,
                             std::set<std::string>* consumed) {
  const NodeDef& conv = graph.node(contraction);
  const auto layout = graph_util::ContractionLayout(conv);
  if (!layout || graph_util::HasControlInput(conv)) return std::nullopt;
  const Edge weight_edge = graph_util::ParseEdge(conv.input(1));
  const auto shape = graph_util::ConstShape(index, weight_edge);
  if (!shape) return std::nullopt;
  const int64_t channels = graph_util::ChannelCount(*layout, *shape);
  if (channels <= 0) return std::nullopt;

  Plan plan{contraction, {}, Tensor(), {}};
  plan.affine.scale.assign(channels, 1.0f);
  plan.affine.shift.assign(channels, 0.0f);
  std::set<std::string> used;
  std::string current = conv.name();
  while (endpoints.count(current) == 0 &&
         index.HasSingleDataConsumer(current)) {
    const auto& consumer = index.Consumers(current)[0];
    const NodeDef& next = graph.node(consumer.node);
    if (!Absorb(index, next, consumer.input, channels, layout->output_rank,
                &plan.affine, &used)) {
      break;
    }
    plan.chain.push_back(consumer.node);
    current = next.name();
  }
  if (plan.chain.empty() ||
      (plan.chain.size() == 1 && graph.node(plan.chain[0]).op() == "BiasAdd")) {
    return std::nullopt;
  }
  std::set<std::string> weight_nodes;
  const auto weight = graph_util::EvalFloat(index, weight_edge, &weight_nodes);
  if (!weight || weight->dims() != layout->rank) return std::nullopt;
  int64_t inner = 1;
  for (int i = layout->last + 1; i < layout->rank; ++i) {
    inner *= weight->dim_size(i);
  }
  plan.weight = Tensor(tensorflow::DT_FLOAT, weight->shape());
  const auto in = weight->flat<float>();
  auto out = plan.weight.flat<float>();
  // Row-major: blocks of `channels` runs of `inner` elements each; no
  // division per element (it dominated the time on 20M-weight models).
  const std::vector<float>& scale = plan.affine.scale;
  for (int64_t base = 0; base < weight->NumElements();
       base += channels * inner) {
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t start = base + c * inner;
      for (int64_t j = start; j < start + inner; ++j) out(j) = in(j) * scale[c];
    }
  }
  consumed->insert(used.begin(), used.end());
  consumed->insert(weight_nodes.begin(), weight_nodes.end());
  return plan;
}

NodeDef BiasAddNode(const std::string& name, const NodeDef& conv,
                    const std::string& bias) {
  NodeDef node;
  node.set_name(name);
  node.set_op("BiasAdd");
  node.set_device(conv.device());
  node.add_input(conv.name());
  node.add_input(bias);
  (*node.mutable_attr())["T"].set_type(tensorflow::DT_FLOAT);
  (*node.mutable_attr())["data_format"].set_s("NHWC");
  return node;
}

// Batch norms that follow no contraction (after a Concat, say) stay as
// Mul/Add, but their parameter expressions (gamma * rsqrt(var + eps), ...)
// are still replaced by their values, so no Rsqrt runs per inference. The
// same goes for any other small float32 expression of constants.
void EvaluateConstantExpressions(GraphDef* graph,
                                 const std::set<std::string>& endpoints) {
  static const auto* ops = new std::set<std::string>{
      "Add",  "AddV2",      "Sub",  "Mul",     "RealDiv", "Maximum", "Minimum",
      "Rsqrt", "Sqrt", "Reciprocal", "Neg", "Reshape", "Squeeze"};
  // Weights are never expressions worth a second copy here.
  constexpr int64_t kMaxElements = int64_t{1} << 16;
  const GraphIndex index(*graph);
  std::map<std::string, Tensor> values;
  std::set<std::string> visited;
  for (const NodeDef& node : graph->node()) {
    if (ops->count(node.op()) == 0 || endpoints.count(node.name()) > 0) {
      continue;
    }
    std::set<std::string> seen;
    auto value = graph_util::EvalFloat(index, Edge{node.name(), 0, false}, &seen);
    if (!value || value->NumElements() > kMaxElements) continue;
    values.emplace(node.name(), std::move(*value));
    visited.insert(seen.begin(), seen.end());
  }
  if (values.empty()) return;
  for (NodeDef& node : *graph->mutable_node()) {
    const auto it = values.find(node.name());
    if (it == values.end()) continue;
    NodeDef constant = graph_util::MakeFloatConst(node.name(), it->second);
    constant.set_device(node.device());
    node = std::move(constant);
  }
  graph_util::RemoveOrphans(graph, visited, endpoints);
}

// In place, so the constants that stay move instead of being copied: every
// fold is planned first, over the whole graph, then the nodes move into the
// new list (a contraction, which later nodes of its chain read, is copied).
absl::Status FoldKerasBatchNorms(GraphDef* graph,
                                 const TransformContext& context) {
  const GraphDef& in = *graph;
  const GraphIndex index(in);
  const std::set<std::string> endpoints = context.Endpoints();

  std::map<int, const Plan*> at_contraction;
  std::map<int, const Plan*> at_last;
  std::set<int> dropped;
  std::set<std::string> consumed;
  std::vector<Plan> plans;
  plans.reserve(in.node_size());
  for (int i = 0; i < in.node_size(); ++i) {
    auto plan = PlanFold(in, index, i, endpoints, &consumed);
    if (plan) plans.push_back(std::move(*plan));
  }
  for (const Plan& plan : plans) {
    at_contraction[plan.contraction] = &plan;
    at_last[plan.chain.back()] = &plan;
    dropped.insert(plan.chain.begin(), plan.chain.end() - 1);
  }
  if (plans.empty()) {
    EvaluateConstantExpressions(graph, endpoints);
    return absl::OkStatus();
  }

  std::set<std::string> taken = graph_util::NodeNames(in);
  std::map<const Plan*, std::string> weight_names;
  for (const Plan& plan : plans) {
    weight_names[&plan] = graph_util::UniqueName(
        in.node(plan.contraction).name() + "/folded_weights", &taken);
  }
  GraphDef rebuilt;
  GraphDef* out = &rebuilt;
  for (int i = 0; i < in.node_size(); ++i) {
    NodeDef& node = *graph->mutable_node(i);
    if (dropped.count(i) > 0) continue;
    const auto contraction = at_contraction.find(i);
    const auto last = at_last.find(i);
    // A pure scale needs no bias: the contraction takes the chain's name.
    if (contraction != at_contraction.end() &&
        contraction->second->affine.has_shift) {
      const Plan& plan = *contraction->second;
      *out->add_node() =
          graph_util::MakeFloatConst(weight_names[&plan], plan.weight);
      NodeDef* conv = out->add_node();
      *conv = node;
      conv->set_input(1, weight_names[&plan]);
    } else if (contraction != at_contraction.end()) {
      continue;
    }
    if (last == at_last.end()) {
      if (contraction == at_contraction.end()) *out->add_node() = std::move(node);
      continue;
    }
    const Plan& plan = *last->second;
    const NodeDef& conv = in.node(plan.contraction);
    if (plan.affine.has_shift) {
      Tensor bias(tensorflow::DT_FLOAT,
                  tensorflow::TensorShape(
                      {static_cast<int64_t>(plan.affine.shift.size())}));
      std::copy(plan.affine.shift.begin(), plan.affine.shift.end(),
                bias.flat<float>().data());
      const std::string bias_name =
          graph_util::UniqueName(node.name() + "/folded_bias", &taken);
      *out->add_node() = graph_util::MakeFloatConst(bias_name, bias);
      *out->add_node() = BiasAddNode(node.name(), conv, bias_name);
    } else {
      *out->add_node() =
          graph_util::MakeFloatConst(weight_names[&plan], plan.weight);
      NodeDef* renamed = out->add_node();
      *renamed = conv;
      renamed->set_name(node.name());
      renamed->set_input(1, weight_names[&plan]);
    }
  }
  graph->mutable_node()->Swap(out->mutable_node());
  graph_util::RemoveOrphans(graph, consumed, endpoints);
  EvaluateConstantExpressions(graph, endpoints);
  return absl::OkStatus();
}

}  // namespace

LEANGRAPH_REGISTER_IN_PLACE_TRANSFORM(
    "fold_keras_batch_norms", FoldKerasBatchNorms, "",
    "fold inference batch norm (Mul/Add chains, FusedBatchNorm*) into the "
    "preceding Conv2D/DepthwiseConv2dNative/MatMul/Conv2DBackpropInput");

}  // namespace leangraph
