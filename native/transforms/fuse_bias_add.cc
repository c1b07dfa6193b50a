// fuse_bias_add: Add/AddV2 of a per-channel constant straight after a
// float32 contraction (Conv2D, DepthwiseConv2dNative, MatMul,
// Conv2DBackpropInput with a constant weight) becomes a BiasAdd, the form
// Grappler's remapper fuses with the contraction and its activation into one
// kernel. The constant may be [C], [1], a scalar or broadcast [1,..,1,C]; it
// is stored as [C]. The node keeps its name, so consumers are untouched.
// Anything else is left as it is; never fails.
#include <optional>
#include <set>
#include <string>
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

struct Rewrite {
  int contraction_input;  // which input of the Add reads the contraction
  std::vector<float> bias;
  std::set<std::string> consumed;
};

std::optional<Rewrite> Match(const GraphIndex& index, const NodeDef& add) {
  if ((add.op() != "Add" && add.op() != "AddV2") || add.input_size() != 2 ||
      graph_util::TypeAttr(add, "T") != tensorflow::DT_FLOAT) {
    return std::nullopt;
  }
  for (int side = 0; side < 2; ++side) {
    const Edge edge = graph_util::ParseEdge(add.input(side));
    const NodeDef* conv = index.Find(edge.node);
    if (conv == nullptr || edge.port != 0) continue;
    const auto layout = graph_util::ContractionLayout(*conv);
    if (!layout) continue;
    const auto shape =
        graph_util::ConstShape(index, graph_util::ParseEdge(conv->input(1)));
    if (!shape) continue;
    const int64_t channels = graph_util::ChannelCount(*layout, *shape);
    if (channels <= 0) continue;
    Rewrite rewrite{side, {}, {}};
    const auto value = graph_util::EvalFloat(
        index, graph_util::ParseEdge(add.input(1 - side)), &rewrite.consumed);
    if (!value) continue;
    auto bias = graph_util::PerChannel(*value, channels, layout->output_rank);
    if (!bias) continue;
    rewrite.bias = std::move(*bias);
    return rewrite;
  }
  return std::nullopt;
}

// In place, so the constants move instead of being copied: every match is
// found first, while the index still sees the whole graph, then the nodes
// move into the new list.
absl::Status FuseBiasAdd(GraphDef* graph, const TransformContext& context) {
  std::vector<std::optional<Rewrite>> rewrites;
  rewrites.reserve(graph->node_size());
  std::set<std::string> taken = graph_util::NodeNames(*graph);
  {
    const GraphIndex index(*graph);
    for (const NodeDef& node : graph->node()) rewrites.push_back(Match(index, node));
  }
  std::set<std::string> consumed;
  graph_util::RebuildNodes(graph, [&](int n, const NodeDef& node, GraphDef* out) {
    const std::optional<Rewrite>& rewrite = rewrites[n];
    if (!rewrite) return false;
    const std::string bias_name =
        graph_util::UniqueName(node.name() + "/bias", &taken);
    *out->add_node() = graph_util::MakeFloatVector(bias_name, rewrite->bias);
    NodeDef* fused = out->add_node();
    fused->set_name(node.name());
    fused->set_op("BiasAdd");
    fused->set_device(node.device());
    fused->add_input(node.input(rewrite->contraction_input));
    fused->add_input(bias_name);
    for (int i = 2; i < node.input_size(); ++i) fused->add_input(node.input(i));
    (*fused->mutable_attr())["T"].set_type(tensorflow::DT_FLOAT);
    (*fused->mutable_attr())["data_format"].set_s("NHWC");
    consumed.insert(rewrite->consumed.begin(), rewrite->consumed.end());
    return true;
  });
  const std::set<std::string> endpoints = context.Endpoints();
  graph_util::RemoveOrphans(graph, consumed, endpoints);
  return absl::OkStatus();
}

}  // namespace

LEANGRAPH_REGISTER_IN_PLACE_TRANSFORM(
    "fuse_bias_add", FuseBiasAdd, "",
    "Add/AddV2 of a per-channel constant after a contraction -> BiasAdd");

}  // namespace leangraph
