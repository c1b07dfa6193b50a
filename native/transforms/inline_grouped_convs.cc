// inline_grouped_convs: Keras 3 runs a grouped Conv2D (groups > 1:
// ConvNeXt's 7x7 depthwise convs, RegNet's group convs) inside a
// tf.function(jit_compile=True). A frozen model keeps each one as a
// StatefulPartitionedCall that XLA compiles and runs as an island of its own
// (ConvNeXtTiny: 18 of them, most of its CPU time). This transform
//  - replaces every call whose function is a single Conv2D (plus Identity and
//    NoOp plumbing) with that Conv2D, under the call's name: TensorFlow 2.21's
//    CPU Conv2D runs groups itself, with oneDNN and without
//    (TF_ENABLE_ONEDNN_OPTS=0), fp32 and bf16 (checked);
//  - turns a grouped Conv2D with one input channel per group (the depthwise
//    case), a constant filter and an input depth that shape inference knows
//    into DepthwiseConv2dNative, which every TensorFlow CPU build runs: the
//    [kh, kw, 1, C*m] filter is the [kh, kw, C, m] depthwise filter with the
//    same bytes;
//  - drops the functions it inlined once nothing calls them, and, when no
//    stateful op is left in the graph, the control edges that ordered the
//    (stateful) calls: TF 2 collects them in the NoOp its output waits for,
//    and an edge from a stateless Conv2D orders no side effect;
// Anything else (other functions, dilated or strided-unequal convs) is left
// as it is; never fails.
#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "native/transform_context.h"
#include "native/transforms/graph_util.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/function.pb.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.pb.h"
#include "tensorflow/core/graph/graph.h"

namespace leangraph {
namespace {

using graph_util::Edge;
using tensorflow::FunctionDef;
using tensorflow::GraphDef;
using tensorflow::NodeDef;

// Which call inputs feed the Conv2D of a conv-only function.
struct ConvFunction {
  int input_arg = -1;
  int filter_arg = -1;
  const NodeDef* conv = nullptr;
};

constexpr int kNoSource = -1;
constexpr int kConvOutput = -2;

// The function-body tensor `tensor` followed through Identity nodes: the
// index of the argument it is, kConvOutput for output 0 of `conv`, or
// kNoSource.
int Resolve(std::string tensor, const std::map<std::string, int>& args,
            const std::map<std::string, const NodeDef*>& nodes,
            const NodeDef* conv) {
  for (size_t hops = 0; hops <= nodes.size(); ++hops) {
    if (tensor.empty() || tensor[0] == '^') return kNoSource;
    const auto arg = args.find(tensor);
    if (arg != args.end()) return arg->second;
    const std::string name = tensor.substr(0, tensor.find(':'));
    const auto it = nodes.find(name);
    if (it == nodes.end()) return kNoSource;
    if (it->second == conv) {
      return tensor == name || tensor == name + ":output:0" ? kConvOutput
                                                            : kNoSource;
    }
    if (it->second->op() != "Identity" || it->second->input_size() < 1) {
      return kNoSource;
    }
    tensor = it->second->input(0);
  }
  return kNoSource;
}

std::optional<ConvFunction> MatchConvFunction(const FunctionDef& function) {
  const auto& signature = function.signature();
  if (signature.output_arg_size() != 1 || function.ret_size() != 1) {
    return std::nullopt;
  }
  std::map<std::string, int> args;
  for (int i = 0; i < signature.input_arg_size(); ++i) {
    args[signature.input_arg(i).name()] = i;
  }
  std::map<std::string, const NodeDef*> nodes;
  ConvFunction match;
  for (const NodeDef& node : function.node_def()) {
    nodes[node.name()] = &node;
    if (node.op() == "Conv2D") {
      if (match.conv != nullptr) return std::nullopt;
      match.conv = &node;
    } else if (node.op() != "Identity" && node.op() != "NoOp") {
      return std::nullopt;
    }
  }
  if (match.conv == nullptr || match.conv->input_size() != 2) {
    return std::nullopt;
  }
  const std::string& ret = function.ret().begin()->second;
  if (Resolve(ret, args, nodes, match.conv) != kConvOutput) return std::nullopt;
  match.input_arg = Resolve(match.conv->input(0), args, nodes, match.conv);
  match.filter_arg = Resolve(match.conv->input(1), args, nodes, match.conv);
  if (match.input_arg < 0 || match.filter_arg < 0) return std::nullopt;
  // A concrete conv of plain tensors: no attr left to the caller (a
  // polymorphic body), no resource argument (a graph that is not frozen).
  for (const auto& [key, value] : match.conv->attr()) {
    if (!value.placeholder().empty()) return std::nullopt;
  }
  const auto type = graph_util::TypeAttr(*match.conv, "T");
  if (signature.input_arg(match.input_arg).type() != type ||
      signature.input_arg(match.filter_arg).type() != type) {
    return std::nullopt;
  }
  return match;
}

bool IsCall(const NodeDef& node) {
  return node.op() == "StatefulPartitionedCall" ||
         node.op() == "PartitionedCall";
}

std::string CalledFunction(const NodeDef& node) {
  const auto f = node.attr().find("f");
  return f == node.attr().end() || !f->second.has_func()
             ? std::string()
             : f->second.func().name();
}

// Every function name a node mentions: its op, and func-valued attrs.
void CollectCalls(const NodeDef& node, std::set<std::string>* names) {
  names->insert(node.op());
  for (const auto& [key, value] : node.attr()) {
    if (value.has_func()) names->insert(value.func().name());
    for (const auto& func : value.list().func()) names->insert(func.name());
  }
}

// Replaces calls of conv-only functions with their Conv2D; returns the
// names of the functions it inlined and adds the call nodes to `calls`.
std::set<std::string> InlineCalls(GraphDef* graph,
                                  std::set<std::string>* calls) {
  // The matches point into the library, which this leaves as it is.
  std::map<std::string, ConvFunction> conv_functions;
  for (const FunctionDef& function : graph->library().function()) {
    const auto match = MatchConvFunction(function);
    if (match) conv_functions[function.signature().name()] = *match;
  }
  std::set<std::string> inlined;
  if (conv_functions.empty()) return inlined;
  for (NodeDef& node : *graph->mutable_node()) {
    if (!IsCall(node)) continue;
    const auto it = conv_functions.find(CalledFunction(node));
    if (it == conv_functions.end()) continue;
    std::vector<std::string> data;
    std::vector<std::string> controls;
    for (const std::string& input : node.input()) {
      (graph_util::ParseEdge(input).control ? controls : data).push_back(input);
    }
    const ConvFunction& match = it->second;
    if (std::max(match.input_arg, match.filter_arg) >=
        static_cast<int>(data.size())) {
      continue;
    }
    NodeDef conv;
    conv.set_name(node.name());
    conv.set_op("Conv2D");
    conv.set_device(node.device());
    conv.add_input(data[match.input_arg]);
    conv.add_input(data[match.filter_arg]);
    for (const std::string& control : controls) conv.add_input(control);
    *conv.mutable_attr() = match.conv->attr();
    node = std::move(conv);
    inlined.insert(it->first);
    calls->insert(node.name());
  }
  return inlined;
}

// Drops the inlined functions nothing mentions any more.
void DropUncalled(const std::set<std::string>& inlined, GraphDef* graph) {
  if (inlined.empty()) return;
  std::set<std::string> mentioned;
  for (const NodeDef& node : graph->node()) CollectCalls(node, &mentioned);
  for (const FunctionDef& function : graph->library().function()) {
    for (const NodeDef& node : function.node_def()) {
      CollectCalls(node, &mentioned);
    }
  }
  for (const auto& gradient : graph->library().gradient()) {
    mentioned.insert(gradient.function_name());
    mentioned.insert(gradient.gradient_func());
  }
  auto* functions = graph->mutable_library()->mutable_function();
  for (int i = functions->size() - 1; i >= 0; --i) {
    const std::string& name = functions->Get(i).signature().name();
    if (inlined.count(name) > 0 && mentioned.count(name) == 0) {
      functions->DeleteSubrange(i, 1);
    }
  }
}

// Input depth of every Conv2D whose input shape inference knows.
std::map<std::string, int64_t> ConvInputDepths(const GraphDef& graph) {
  std::map<std::string, int64_t> depths;
  graph_util::VisitInferredShapes(
      graph, [&depths](const tensorflow::Node& node,
                       tensorflow::shape_inference::InferenceContext& context) {
        if (node.type_string() != "Conv2D" || context.num_inputs() < 1) return;
        const auto in = context.input(0);
        if (!context.RankKnown(in) || context.Rank(in) != 4) return;
        const auto depth = context.Dim(in, 3);
        if (context.ValueKnown(depth)) depths[node.name()] = context.Value(depth);
      });
  return depths;
}

bool AllOnes(const NodeDef& node, const char* attr) {
  const auto it = node.attr().find(attr);
  if (it == node.attr().end()) return true;
  for (const auto value : it->second.list().i()) {
    if (value != 1) return false;
  }
  return true;
}

// [kh, kw, 1, out] of a Const filter, or empty.
std::vector<int64_t> OneChannelFilterShape(const NodeDef* filter) {
  if (filter == nullptr || filter->op() != "Const") return {};
  const auto value = filter->attr().find("value");
  if (value == filter->attr().end() || !value->second.has_tensor()) return {};
  const auto& shape = value->second.tensor().tensor_shape();
  if (shape.dim_size() != 4 || shape.dim(2).size() != 1) return {};
  for (const auto& dim : shape.dim()) {
    if (dim.size() < 1) return {};
  }
  return {shape.dim(0).size(), shape.dim(1).size(), 1, shape.dim(3).size()};
}

// Whether a Conv2D could be DepthwiseConv2dNative, apart from its input
// depth: a float type, NHWC, no dilation, equal strides, and a constant
// [kh, kw, 1, out] filter, whose shape is returned (else empty).
std::vector<int64_t> DepthwiseCandidate(const graph_util::GraphIndex& index,
                                        const NodeDef& node) {
  const auto type = graph_util::TypeAttr(node, "T");
  if (node.op() != "Conv2D" || node.input_size() < 2 ||
      (type != tensorflow::DT_FLOAT && type != tensorflow::DT_HALF &&
       type != tensorflow::DT_BFLOAT16 && type != tensorflow::DT_DOUBLE) ||
      graph_util::DataFormat(node) != "NHWC" || !AllOnes(node, "dilations")) {
    return {};
  }
  const auto strides = node.attr().find("strides");
  if (strides == node.attr().end() || strides->second.list().i_size() != 4 ||
      strides->second.list().i(0) != 1 || strides->second.list().i(3) != 1 ||
      strides->second.list().i(1) != strides->second.list().i(2)) {
    return {};
  }
  const Edge filter = graph_util::ParseEdge(node.input(1));
  if (filter.port != 0) return {};
  return OneChannelFilterShape(index.Find(filter.node));
}

void SetShape(const std::vector<int64_t>& shape, NodeDef* constant) {
  auto* dims =
      (*constant->mutable_attr())["value"].mutable_tensor()->mutable_tensor_shape();
  dims->clear_dim();
  for (const int64_t d : shape) dims->add_dim()->set_size(d);
}

void GroupedToDepthwise(GraphDef* graph) {
  const graph_util::GraphIndex index(*graph);
  std::map<int, std::vector<int64_t>> candidates;  // node index -> filter shape
  for (int i = 0; i < graph->node_size(); ++i) {
    std::vector<int64_t> shape = DepthwiseCandidate(index, graph->node(i));
    if (!shape.empty()) candidates[i] = std::move(shape);
  }
  if (candidates.empty()) return;  // no shape inference to pay for
  const std::map<std::string, int64_t> depths = ConvInputDepths(*graph);
  std::set<std::string> names = graph_util::NodeNames(*graph);
  std::vector<NodeDef> new_filters;
  std::map<std::string, std::vector<int64_t>> reshaped_in_place;
  for (const auto& [i, shape] : candidates) {
    NodeDef& node = *graph->mutable_node(i);
    const auto depth = depths.find(node.name());
    if (depth == depths.end() || depth->second < 2 ||
        shape[3] % depth->second != 0) {
      continue;
    }
    const std::vector<int64_t> depthwise = {shape[0], shape[1], depth->second,
                                            shape[3] / depth->second};
    const NodeDef* filter = index.Find(graph_util::ParseEdge(node.input(1)).node);
    std::string filter_name = filter->name();
    if (index.HasSingleDataConsumer(filter_name)) {
      reshaped_in_place[filter_name] = depthwise;
    } else {
      NodeDef copy = *filter;
      filter_name = graph_util::UniqueName(node.name() + "/depthwise_filter", &names);
      copy.set_name(filter_name);
      copy.clear_input();
      SetShape(depthwise, &copy);
      new_filters.push_back(std::move(copy));
    }
    node.set_op("DepthwiseConv2dNative");
    node.set_input(1, filter_name);
    node.mutable_attr()->erase("use_cudnn_on_gpu");
  }
  for (NodeDef& node : *graph->mutable_node()) {
    const auto it = reshaped_in_place.find(node.name());
    if (it != reshaped_in_place.end()) SetShape(it->second, &node);
  }
  for (NodeDef& filter : new_filters) *graph->add_node() = std::move(filter);
}

// Control edges from the inlined calls, when nothing stateful is left for
// them to order.
void DropControlEdgesFrom(const std::set<std::string>& calls, GraphDef* graph) {
  if (calls.empty()) return;
  for (const NodeDef& node : graph->node()) {
    if (graph_util::IsStateful(node.op())) return;
  }
  for (NodeDef& node : *graph->mutable_node()) {
    auto* inputs = node.mutable_input();
    for (int i = inputs->size() - 1; i >= 0; --i) {
      const Edge edge = graph_util::ParseEdge(inputs->Get(i));
      if (edge.control && calls.count(edge.node) > 0) inputs->DeleteSubrange(i, 1);
    }
  }
}

// In place: most graphs have nothing to inline, and a copy of a large
// model's weights would cost more than the rest of the transform.
absl::Status InlineGroupedConvs(GraphDef* graph,
                                const TransformContext& context) {
  (void)context;
  std::set<std::string> calls;
  const std::set<std::string> inlined = InlineCalls(graph, &calls);
  DropUncalled(inlined, graph);
  DropControlEdgesFrom(calls, graph);
  GroupedToDepthwise(graph);
  return absl::OkStatus();
}

}  // namespace

LEANGRAPH_REGISTER_IN_PLACE_TRANSFORM(
    "inline_grouped_convs", InlineGroupedConvs, "",
    "replace Keras' XLA-compiled grouped-convolution calls with their Conv2D; "
    "one input channel per group becomes DepthwiseConv2dNative");

}  // namespace leangraph
