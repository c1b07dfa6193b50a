// fuse_layer_norm: Keras 3's LayerNormalization over the last axis, as it
// freezes (eleven ops: Mean, SquaredDifference, Mean, AddV2 of epsilon,
// Rsqrt, Mul by gamma, Neg of the mean, two Muls and two AddV2s with beta),
// becomes oneDNN's `_MklLayerNorm` (x, gamma, beta, epsilon): one kernel in
// place of eleven that each read or write the whole tensor. Grappler's
// remapper makes the same op, but only from TF 2's own arrangement of the
// formula (Sub of mean * inv), not from Keras 3's (AddV2 of Neg(mean) * inv).
// The fused node keeps the last AddV2's name, so readers are untouched.
//
// The kernel takes rank 2 or 3: a norm over the channels of an image
// ([N, H, W, C], ConvNeXt's) runs on its rows, Reshape(x, [-1, C]), and the
// result takes x's shape back (no copy either way).
//
// The kernel costs about 100 us a call whatever the size (2 threads, Zen 4:
// four norms of [64, 128] took 457 us against 232 us unfused, of [512, 128]
// 422 against 465, of [2048, 128] 549 against 1815), so only a tensor of at
// least `min_elements` (default 65536) is fused, which needs its whole shape
// known from shape inference. Also only where the reduction is the last
// axis alone and gamma and beta are one number per channel. Left alone
// under TF_ENABLE_ONEDNN_OPTS=0 (the op is oneDNN's). Never fails.
#include <algorithm>
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
#include "tensorflow/core/framework/tensor.pb.h"

namespace leangraph {
namespace {

using graph_util::GraphIndex;
using tensorflow::GraphDef;
using tensorflow::NodeDef;
using tensorflow::Tensor;

// What shape inference knows of a Mean's input: its rank and last dim
// (both known), and its whole shape (-1 where a dim is not known).
struct InputShape {
  int rank = 0;
  int64_t channels = 0;
  std::vector<int64_t> dims;

  bool operator==(const InputShape& other) const { return dims == other.dims; }
  // Elements of the input; -1 when a dim is not known (and at most 2^62).
  int64_t Elements() const {
    constexpr int64_t kMost = int64_t{1} << 62;
    int64_t count = 1;
    for (const int64_t d : dims) {
      if (d < 0) return -1;
      count = (d > 0 && count > kMost / d) ? kMost : count * d;
    }
    return count;
  }
};
using Shapes = std::map<std::string, InputShape>;

Shapes MeanInputs(const GraphDef& graph) {
  Shapes found;
  graph_util::VisitInferredShapes(
      graph, [&found](const tensorflow::Node& node,
                      tensorflow::shape_inference::InferenceContext& c) {
        if (node.type_string() != "Mean" || c.num_inputs() < 1) return;
        const auto x = c.input(0);
        if (!c.RankKnown(x)) return;
        const int rank = c.Rank(x);
        if (rank < 1) return;
        const int64_t last = c.Value(c.Dim(x, rank - 1));
        if (last <= 0) return;
        InputShape shape{rank, last, {}};
        for (int d = 0; d < rank; ++d) {
          const int64_t size = c.Value(c.Dim(x, d));
          // The shape goes back as an int32 constant: larger is left unknown.
          shape.dims.push_back(size > 2147483647 ? -1 : size);
        }
        found[node.name()] = std::move(shape);
      });
  return found;
}

bool Plain(const NodeDef* node, const char* op, int inputs) {
  return node != nullptr && node->op() == op && node->input_size() == inputs &&
         graph_util::TypeAttr(*node, "T") == tensorflow::DT_FLOAT &&
         !graph_util::HasControlInput(*node);
}

bool IsAdd(const NodeDef* node) { return Plain(node, "AddV2", 2) || Plain(node, "Add", 2); }

struct LayerNorm {
  std::string x;  // the input, as an input string
  InputShape shape;
  std::vector<float> gamma;
  std::vector<float> beta;
  float epsilon = 0.0f;
  std::set<std::string> consumed;  // every node of the pattern
};

class Matcher {
 public:
  Matcher(const GraphIndex& index, const Shapes& shapes, int64_t min_elements)
      : index_(index), shapes_(shapes), min_elements_(min_elements) {}

  // `add` is the pattern's last node: AddV2(x * mul, Neg(mean) * mul + beta)
  // with mul = Rsqrt(variance + epsilon) * gamma.
  std::optional<LayerNorm> Match(const NodeDef& add) const {
    if (!IsAdd(&add)) return std::nullopt;
    for (int side = 0; side < 2; ++side) {
      auto found = Sides(add.input(side), add.input(1 - side));
      if (found) return found;
    }
    return std::nullopt;
  }

 private:
  std::optional<LayerNorm> Sides(const std::string& scaled_input,
                                 const std::string& shift_input) const {
    const NodeDef* scaled = graph_util::Producer(index_, scaled_input);  // x * mul
    const NodeDef* shift = graph_util::Producer(index_, shift_input);    // Neg(mean) * mul + beta
    if (!Plain(scaled, "Mul", 2) || !IsAdd(shift)) return std::nullopt;
    for (int side = 0; side < 2; ++side) {
      const NodeDef* mul = graph_util::Producer(index_, scaled->input(1 - side));
      if (!Plain(mul, "Mul", 2)) continue;
      auto found = WithScale(scaled->input(side), *mul, *shift);
      if (found) {
        found->consumed.insert({scaled->name(), shift->name(), mul->name()});
        return found;
      }
    }
    return std::nullopt;
  }

  std::optional<LayerNorm> WithScale(const std::string& x, const NodeDef& mul,
                                     const NodeDef& shift) const {
    // mul = Rsqrt(...) * gamma
    for (int side = 0; side < 2; ++side) {
      const NodeDef* rsqrt = graph_util::Producer(index_, mul.input(side));
      if (!Plain(rsqrt, "Rsqrt", 1)) continue;
      LayerNorm norm;
      const auto gamma = graph_util::EvalFloat(
          index_, graph_util::ParseEdge(mul.input(1 - side)), &norm.consumed);
      if (!gamma) continue;
      const NodeDef* mean = Statistics(x, *rsqrt, &norm);
      if (mean == nullptr || !Shift(mul, shift, *mean, &norm)) continue;
      const InputShape& shape = shapes_.at(mean->name());
      auto gamma_values = graph_util::PerChannel(*gamma, shape.channels, shape.rank);
      if (!gamma_values || gamma_values->size() != static_cast<size_t>(shape.channels)) {
        continue;
      }
      norm.gamma = std::move(*gamma_values);
      norm.x = x;
      norm.consumed.insert(rsqrt->name());
      return norm;
    }
    return std::nullopt;
  }

  // Rsqrt(Mean(SquaredDifference(x, mean)) + epsilon), mean = Mean(x), both
  // over the last axis with keep_dims. Returns the mean.
  const NodeDef* Statistics(const std::string& x, const NodeDef& rsqrt, LayerNorm* norm) const {
    const NodeDef* plus = graph_util::Producer(index_, rsqrt.input(0));
    if (!IsAdd(plus)) return nullptr;
    for (int side = 0; side < 2; ++side) {
      const NodeDef* variance = graph_util::Producer(index_, plus->input(side));
      const auto epsilon = graph_util::EvalFloat(
          index_, graph_util::ParseEdge(plus->input(1 - side)), &norm->consumed);
      if (!LastAxisMean(variance) || !epsilon || epsilon->NumElements() != 1) continue;
      const NodeDef* squared = graph_util::Producer(index_, variance->input(0));
      if (!Plain(squared, "SquaredDifference", 2)) continue;
      for (int order = 0; order < 2; ++order) {
        const NodeDef* mean = graph_util::Producer(index_, squared->input(1 - order));
        if (squared->input(order) != x || !LastAxisMean(mean) || mean->input(0) != x) continue;
        const InputShape& shape = shapes_.at(mean->name());
        if (!(shapes_.at(variance->name()) == shape) || shape.rank < 2 ||
            shape.Elements() < min_elements_) {
          continue;
        }
        norm->shape = shape;
        norm->epsilon = epsilon->flat<float>()(0);
        norm->consumed.insert({plus->name(), variance->name(), squared->name(),
                               mean->name(), graph_util::ParseEdge(mean->input(1)).node});
        return mean;
      }
    }
    return nullptr;
  }

  // shift = Neg(mean) * mul + beta
  bool Shift(const NodeDef& mul, const NodeDef& shift, const NodeDef& mean,
             LayerNorm* norm) const {
    const InputShape& shape = shapes_.at(mean.name());
    for (int side = 0; side < 2; ++side) {
      const NodeDef* product = graph_util::Producer(index_, shift.input(side));
      const auto beta = graph_util::EvalFloat(
          index_, graph_util::ParseEdge(shift.input(1 - side)), &norm->consumed);
      if (!Plain(product, "Mul", 2) || !beta) continue;
      for (int order = 0; order < 2; ++order) {
        const NodeDef* neg = graph_util::Producer(index_, product->input(order));
        if (!Plain(neg, "Neg", 1) || product->input(1 - order) != mul.name() ||
            neg->input(0) != mean.name()) {
          continue;
        }
        auto values = graph_util::PerChannel(*beta, shape.channels, shape.rank);
        if (!values || values->size() != static_cast<size_t>(shape.channels)) continue;
        norm->beta = std::move(*values);
        norm->consumed.insert({product->name(), neg->name()});
        return true;
      }
    }
    return false;
  }

  // A float Mean with keep_dims over the last axis alone ([-1] or
  // [rank - 1]), whose input's rank and last dim are known.
  bool LastAxisMean(const NodeDef* mean) const {
    if (!Plain(mean, "Mean", 2)) return false;
    const auto it = mean->attr().find("keep_dims");
    const auto shape = shapes_.find(mean->name());
    if (it == mean->attr().end() || !it->second.b() || shape == shapes_.end()) return false;
    const auto axes = graph_util::IntConst(index_, mean->input(1));
    if (!axes || axes->size() != 1) return false;
    const int64_t axis = axes->front();
    return axis == -1 || axis == shape->second.rank - 1;
  }

  const GraphIndex& index_;
  const Shapes& shapes_;
  const int64_t min_elements_;
};

absl::Status FuseLayerNorm(GraphDef* graph, const TransformContext& context) {
  const auto min_elements = context.GetInt("min_elements", 65536);
  if (!min_elements.ok()) return min_elements.status();
  if (!graph_util::OneDnnEnabled()) return absl::OkStatus();
  const std::set<std::string> endpoints = context.Endpoints();
  const auto shapes = MeanInputs(*graph);
  if (shapes.empty()) return absl::OkStatus();
  std::vector<std::optional<LayerNorm>> norms;
  norms.reserve(graph->node_size());
  {
    const GraphIndex index(*graph);
    const Matcher matcher(index, shapes, std::max<int64_t>(1, *min_elements));
    for (const NodeDef& node : graph->node()) norms.push_back(matcher.Match(node));
  }
  std::set<std::string> taken = graph_util::NodeNames(*graph);
  std::set<std::string> consumed;
  graph_util::RebuildNodes(graph, [&](int n, const NodeDef& node, GraphDef* out) {
    if (!norms[n]) return false;
    const LayerNorm& norm = *norms[n];
    const std::string& device = node.device();
    const std::string scale = graph_util::UniqueName(node.name() + "/gamma", &taken);
    const std::string offset = graph_util::UniqueName(node.name() + "/beta", &taken);
    *out->add_node() = graph_util::MakeFloatVector(scale, norm.gamma);
    *out->add_node() = graph_util::MakeFloatVector(offset, norm.beta);
    const bool rows = norm.shape.rank > 3;
    std::string x = norm.x;
    if (rows) {
      const NodeDef* shape = graph_util::AddShapeConst(
          out, graph_util::UniqueName(node.name() + "/rows_shape", &taken), device,
          {-1, static_cast<int64_t>(norm.gamma.size())});
      x = graph_util::AddReshape(out, graph_util::UniqueName(node.name() + "/rows", &taken),
                                 device, norm.x, shape->name())->name();
    }
    NodeDef* fused = out->add_node();
    fused->set_name(rows ? graph_util::UniqueName(node.name() + "/norm", &taken) : node.name());
    fused->set_op("_MklLayerNorm");
    fused->set_device(device);
    fused->add_input(x);
    fused->add_input(scale);
    fused->add_input(offset);
    (*fused->mutable_attr())["T"].set_type(tensorflow::DT_FLOAT);
    (*fused->mutable_attr())["epsilon"].set_f(norm.epsilon);
    if (rows) {
      // x's shape back (all known: only such a tensor is fused).
      const std::string shape = graph_util::UniqueName(node.name() + "/shape", &taken);
      graph_util::AddShapeConst(out, shape, device, norm.shape.dims);
      graph_util::AddReshape(out, node.name(), device, fused->name(), shape);
    }
    consumed.insert(norm.consumed.begin(), norm.consumed.end());
    return true;
  });
  graph_util::RemoveOrphans(graph, consumed, endpoints);
  return absl::OkStatus();
}

}  // namespace

LEANGRAPH_REGISTER_IN_PLACE_TRANSFORM(
    "fuse_layer_norm", FuseLayerNorm, "min_elements=65536",
    "Keras 3's LayerNormalization over the last axis -> oneDNN's _MklLayerNorm");

}  // namespace leangraph
