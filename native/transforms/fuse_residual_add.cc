// fuse_residual_add: a residual Add/AddV2 of a Conv2D + BiasAdd and another
// tensor of the same shape, and a Relu that is the Add's only reader, become
// one convolution with fused_ops [BiasAdd, Add(, Relu)]: oneDNN's convolution
// with a sum post-op, the node OpenVINO makes of it too.
//
// Why a transform: Grappler's remapper in TF 2.21 fuses Conv2D + BiasAdd
// (+ activation) but leaves the residual Add, and the Relu after it, as
// kernels of their own (checked on the executed graph: ResNet50 runs 16
// AddV2 and 16 Relu beside its fused convs, Xception 12 AddV2). oneDNN's
// layout pass does turn a _FusedConv2D [BiasAdd, Add(, Relu)] that is already
// in the graph into _MklNativeFusedConv2D with the sum post-op.
//
// float32 becomes _FusedConv2D, which oneDNN's layout pass rewrites; it needs
// oneDNN: TensorFlow's Eigen _FusedConv2D has no Add fusion, so with
// TF_ENABLE_ONEDNN_OPTS=0 such a graph does not run, and the transform then
// leaves float32 as it is. bfloat16 (what to_bfloat16 calls this for) cannot
// be a _FusedConv2D (its op takes no bf16), so it becomes the node the layout
// pass would make, _MklNativeFusedConv2D with its kernel label: TF 2.21's x86
// kernel, which also runs with TF_ENABLE_ONEDNN_OPTS=0 (checked). The sum is
// then added in the conv's float accumulator before one rounding to bf16,
// where the unfused graph rounds twice. The Add must not broadcast: both
// summands' shapes are inferred and must be fully known and equal. The last
// node of the pattern (the Relu, else the Add) gives the fused node its name,
// so readers are untouched; nodes the runner's outputs name stay unfused.
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "native/transforms/fuse_residual_add.h"

#include "native/transform_context.h"
#include "native/transforms/graph_util.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/graph/graph.h"

namespace leangraph {
namespace {

using graph_util::Edge;
using graph_util::GraphIndex;
using tensorflow::GraphDef;
using tensorflow::NodeDef;

bool IsFloat(const NodeDef& node) {
  const auto type = graph_util::TypeAttr(node, "T");
  return type == tensorflow::DT_FLOAT || type == tensorflow::DT_BFLOAT16;
}

bool SameType(const NodeDef& a, const NodeDef& b) {
  return graph_util::TypeAttr(a, "T") == graph_util::TypeAttr(b, "T");
}

struct Match {
  const NodeDef* conv;
  const NodeDef* bias_add;
  const NodeDef* add;
  const NodeDef* relu;  // or nullptr
  std::string other;    // the residual summand, as an input string
};

// Adds whose two summands and result have one fully known, equal shape.
std::set<std::string> SameShapeAdds(const GraphDef& graph) {
  std::set<std::string> adds;
  graph_util::VisitInferredShapes(
      graph, [&adds](const tensorflow::Node& node,
                     tensorflow::shape_inference::InferenceContext& c) {
        if (node.type_string() != "Add" && node.type_string() != "AddV2") {
          return;
        }
        if (c.num_inputs() != 2 || c.num_outputs() != 1) return;
        const auto a = c.input(0);
        const auto b = c.input(1);
        if (!c.FullyDefined(a) || !c.FullyDefined(b) || c.Rank(a) != 4 ||
            c.Rank(b) != 4) {
          return;
        }
        for (int d = 0; d < 4; ++d) {
          if (c.Value(c.Dim(a, d)) != c.Value(c.Dim(b, d))) return;
        }
        adds.insert(node.name());
      });
  return adds;
}

std::optional<Match> Find(const GraphDef& graph, const GraphIndex& index,
                          const NodeDef& add,
                          const std::set<std::string>& same_shape,
                          const std::set<std::string>& endpoints) {
  // input_size() counts control inputs: an Add (or Relu) with any is left.
  if ((add.op() != "Add" && add.op() != "AddV2") || add.input_size() != 2 ||
      !IsFloat(add) || same_shape.count(add.name()) == 0) {
    return std::nullopt;
  }
  for (int side = 0; side < 2; ++side) {
    const Edge edge = graph_util::ParseEdge(add.input(side));
    const NodeDef* bias_add = index.Find(edge.node);
    if (bias_add == nullptr || edge.control || edge.port != 0 ||
        bias_add->op() != "BiasAdd" || !SameType(*bias_add, add) ||
        graph_util::DataFormat(*bias_add) != "NHWC" ||
        graph_util::HasControlInput(*bias_add) || bias_add->input_size() != 2 ||
        !index.HasSingleDataConsumer(bias_add->name()) ||
        endpoints.count(bias_add->name()) > 0) {
      continue;
    }
    const Edge conv_edge = graph_util::ParseEdge(bias_add->input(0));
    const NodeDef* conv = index.Find(conv_edge.node);
    if (conv == nullptr || conv_edge.port != 0 || conv->op() != "Conv2D" ||
        !SameType(*conv, add) || graph_util::DataFormat(*conv) != "NHWC" ||
        graph_util::HasControlInput(*conv) || conv->input_size() != 2 ||
        !index.HasSingleDataConsumer(conv->name()) ||
        endpoints.count(conv->name()) > 0) {
      continue;
    }
    const Edge other = graph_util::ParseEdge(add.input(1 - side));
    if (other.control) continue;
    Match match{conv, bias_add, &add, nullptr, add.input(1 - side)};
    // A Relu that is the Add's only reader goes into the kernel too; an Add
    // read by anything else (Xception's, read by the next block's Relu and
    // its residual Add) keeps its value and only the Add is fused.
    const auto& readers = index.Consumers(add.name());
    if (readers.size() == 1 && index.HasSingleDataConsumer(add.name()) &&
        endpoints.count(add.name()) == 0) {
      const NodeDef& reader = graph.node(readers[0].node);
      if (reader.op() == "Relu" && SameType(reader, add) &&
          reader.input_size() == 1) {
        match.relu = &reader;
      }
    }
    return match;
  }
  return std::nullopt;
}

void CopyAttr(const NodeDef& from, const std::string& name, NodeDef* to) {
  const auto it = from.attr().find(name);
  if (it != from.attr().end()) (*to->mutable_attr())[name] = it->second;
}

NodeDef FusedNode(const GraphIndex& index, const Match& match) {
  const NodeDef& last = match.relu != nullptr ? *match.relu : *match.add;
  const auto type = graph_util::TypeAttr(*match.add, "T");
  NodeDef fused;
  fused.set_name(last.name());
  fused.set_op(type == tensorflow::DT_FLOAT ? "_FusedConv2D"
                                            : "_MklNativeFusedConv2D");
  fused.set_device(match.add->device());
  fused.add_input(match.conv->input(0));
  fused.add_input(match.conv->input(1));
  fused.add_input(match.bias_add->input(1));
  fused.add_input(match.other);
  for (const char* name : {"strides", "padding", "explicit_paddings",
                           "data_format", "dilations", "use_cudnn_on_gpu"}) {
    CopyAttr(*match.conv, name, &fused);
  }
  auto& attr = *fused.mutable_attr();
  attr["T"].set_type(type);
  attr["TArgs"].mutable_list()->add_type(type);
  attr["TArgs"].mutable_list()->add_type(type);
  attr["num_args"].set_i(2);
  auto* ops = attr["fused_ops"].mutable_list();
  ops->add_s("BiasAdd");
  ops->add_s("Add");
  if (match.relu != nullptr) ops->add_s("Relu");
  attr["epsilon"].set_f(0.0f);
  if (type != tensorflow::DT_FLOAT) {
    // What the layout pass sets: a Const filter is reordered once and cached.
    const NodeDef* filter =
        index.Find(graph_util::ParseEdge(match.conv->input(1)).node);
    attr["is_filter_const"].set_b(filter != nullptr && filter->op() == "Const");
    attr["_kernel"].set_s("MklNameChangeOp");
  }
  return fused;
}

}  // namespace

int FuseResidualAdds(GraphDef* graph, const std::set<std::string>& endpoints,
                     bool bfloat16_only) {
  const bool float32 = !bfloat16_only && graph_util::OneDnnEnabled();
  // Every match is found first, while the index sees the whole graph; a node
  // belongs to at most one (the conv and BiasAdd have one reader, the Add).
  std::map<std::string, NodeDef> replace;  // name -> the fused node
  std::set<std::string> drop;
  {
    const std::set<std::string> same_shape = SameShapeAdds(*graph);
    if (same_shape.empty()) return 0;
    const GraphIndex index(*graph);
    std::set<std::string> used;
    for (const NodeDef& node : graph->node()) {
      const auto match = Find(*graph, index, node, same_shape, endpoints);
      if (!match) continue;
      if (!float32 &&
          graph_util::TypeAttr(node, "T") == tensorflow::DT_FLOAT) {
        continue;
      }
      std::vector<std::string> names = {match->conv->name(),
                                        match->bias_add->name(),
                                        match->add->name()};
      if (match->relu != nullptr) names.push_back(match->relu->name());
      bool free = true;
      for (const std::string& name : names) free = free && used.count(name) == 0;
      if (!free) continue;
      used.insert(names.begin(), names.end());
      NodeDef fused = FusedNode(index, *match);
      const std::string name = fused.name();
      replace[name] = std::move(fused);
      for (const std::string& n : names) {
        if (n != name) drop.insert(n);
      }
    }
  }
  if (replace.empty()) return 0;
  GraphDef rebuilt;
  for (int n = 0; n < graph->node_size(); ++n) {
    NodeDef& node = *graph->mutable_node(n);
    if (drop.count(node.name()) > 0) continue;
    const auto it = replace.find(node.name());
    if (it != replace.end()) {
      *rebuilt.add_node() = std::move(it->second);
    } else {
      *rebuilt.add_node() = std::move(node);
    }
  }
  graph->mutable_node()->Swap(rebuilt.mutable_node());
  return static_cast<int>(replace.size());
}

namespace {

absl::Status FuseResidualAdd(GraphDef* graph, const TransformContext& context) {
  const std::set<std::string> endpoints = context.Endpoints();
  FuseResidualAdds(graph, endpoints);
  return absl::OkStatus();
}

}  // namespace

LEANGRAPH_REGISTER_IN_PLACE_TRANSFORM(
    "fuse_residual_add", FuseResidualAdd, "",
    "Conv2D + BiasAdd + residual Add (+ Relu) -> one oneDNN conv with a sum post-op");

}  // namespace leangraph
