// remove_identity_chains: removes Identity, Snapshot, StopGradient and
// PreventGradient nodes (pass-throughs at inference), Casts to the
// same dtype and Reshapes whose static output shape equals their input's,
// rewiring readers (data and control) to the original producer — safely,
// unlike remove_nodes(op=Identity). IdentityN (output k is input k; what
// tf.custom_gradient leaves around every tf.nn.silu in a frozen Keras model)
// goes too when nothing reads it by a control edge: its float type list
// would otherwise split a bf16 region at every swish.
//  - endpoints (the graph's inputs and outputs) always stay;
//  - a node next to control flow stays (reading from or feeding Switch,
//    Merge, Enter, Exit, NextIteration, LoopCond): tf.cond hangs its branch
//    constants on the Identity after a Switch, and loops need theirs;
//  - a node with control inputs stays (run strip_freeze_artifacts first to
//    drop the ones that order nothing), as does one reading a stateful op
//    (an Identity of a ref variable is a snapshot, not a no-op).
// With check_numerics=true, CheckNumerics goes too (what TF's deployment
// recipe does with remove_nodes, without a second pass over the graph).
// Fails only on a malformed parameter; a graph whose shapes cannot be
// inferred keeps its Reshapes.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
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

bool HasControlInput(const NodeDef& node) {
  for (const std::string& input : node.input()) {
    if (!input.empty() && input[0] == '^') return true;
  }
  return false;
}

// Reshapes whose fully known output shape equals their fully known input
// shape.
std::set<std::string> NoOpReshapes(const GraphDef& graph) {
  std::set<std::string> found;
  bool any = false;
  for (const NodeDef& node : graph.node()) any = any || node.op() == "Reshape";
  if (!any) return found;
  graph_util::VisitInferredShapes(
      graph, [&found](const tensorflow::Node& node,
                      tensorflow::shape_inference::InferenceContext& context) {
        if (node.type_string() != "Reshape" || context.num_inputs() < 1 ||
            context.num_outputs() < 1) {
          return;
        }
        const auto in = context.input(0);
        const auto out = context.output(0);
        if (!context.FullyDefined(in) || !context.FullyDefined(out) ||
            context.Rank(in) != context.Rank(out)) {
          return;
        }
        bool same = true;
        for (int i = 0; i < context.Rank(in); ++i) {
          same = same && context.Value(context.Dim(in, i)) ==
                             context.Value(context.Dim(out, i));
        }
        if (same) found.insert(node.name());
      });
  return found;
}

// IdentityN whose type list matches its data inputs.
bool IsIdentityN(const NodeDef& node) {
  if (node.op() != "IdentityN" || HasControlInput(node)) return false;
  const auto types = node.attr().find("T");
  return types != node.attr().end() && types->second.has_list() &&
         types->second.list().type_size() == node.input_size() &&
         node.input_size() > 0;
}

bool IsPassThrough(const NodeDef& node, const std::set<std::string>& reshapes,
                   bool check_numerics) {
  const std::string& op = node.op();
  if (IsIdentityN(node)) return true;
  if ((op == "Identity" || op == "Snapshot" || op == "StopGradient" ||
       op == "PreventGradient" ||
       (check_numerics && op == "CheckNumerics")) &&
      node.input_size() == 1) {
    return true;
  }
  if (op == "Cast" && node.input_size() == 1) {
    const auto src = graph_util::TypeAttr(node, "SrcT");
    return src != tensorflow::DT_INVALID &&
           src == graph_util::TypeAttr(node, "DstT");
  }
  return op == "Reshape" && node.input_size() == 2 &&
         reshapes.count(node.name()) > 0;
}

absl::Status RemoveIdentityChains(const GraphDef& in,
                                  const TransformContext& context,
                                  GraphDef* out) {
  const absl::StatusOr<bool> check_numerics =
      context.GetBool("check_numerics", false);
  if (!check_numerics.ok()) return check_numerics.status();
  const GraphIndex index(in);
  std::set<std::string> endpoints(context.outputs.begin(),
                                  context.outputs.end());
  endpoints.insert(context.inputs.begin(), context.inputs.end());
  const std::set<std::string> reshapes = NoOpReshapes(in);

  // Removed node -> the edge each of its outputs forwards (one, except for
  // IdentityN).
  std::map<std::string, std::vector<Edge>> forward;
  // Constants that only a removed node read (a Reshape's shape, the
  // unread inputs of an IdentityN): dropped once nothing else reads them.
  std::set<std::string> orphans;
  for (const NodeDef& node : in.node()) {
    if (endpoints.count(node.name()) > 0 || !IsPassThrough(node, reshapes, *check_numerics) ||
        HasControlInput(node)) {
      continue;
    }
    const bool many = node.op() == "IdentityN";
    std::vector<Edge> sources;
    bool movable = true;
    for (int i = 0; i < (many ? node.input_size() : 1); ++i) {
      const Edge source = graph_util::ParseEdge(node.input(i));
      const NodeDef* producer = index.Find(source.node);
      movable = movable && producer != nullptr &&
                !graph_util::IsControlFlow(producer->op()) &&
                (producer->op() == "Const" ||
                 !graph_util::IsStateful(producer->op()));
      sources.push_back(source);
    }
    if (!movable) continue;
    const int outputs = static_cast<int>(sources.size());
    bool next_to_control_flow = false;
    for (const auto& consumer : index.Consumers(node.name())) {
      const std::string& op = in.node(consumer.node).op();
      next_to_control_flow = next_to_control_flow || graph_util::IsControlFlow(op);
      // A port the node does not have is left for TF to reject; a control
      // edge on an IdentityN waits for all its inputs, which no single
      // rewired edge says.
      if (consumer.edge.control ? many : consumer.edge.port >= outputs) {
        next_to_control_flow = true;
      }
    }
    if (next_to_control_flow) continue;
    forward[node.name()] = sources;
    if (node.op() == "Reshape") {
      orphans.insert(graph_util::ParseEdge(node.input(1)).node);
    }
    for (const Edge& source : many ? sources : std::vector<Edge>{}) {
      if (index.Find(source.node)->op() == "Const") orphans.insert(source.node);
    }
  }
  if (forward.empty()) {
    *out = in;
    return absl::OkStatus();
  }
  // Follows a chain of removed nodes to the edge that survives. Control
  // edges only reach single-output nodes here (see above).
  const auto resolve = [&forward](Edge edge) {
    for (size_t hops = 0; hops <= forward.size(); ++hops) {
      const auto it = forward.find(edge.node);
      if (it == forward.end()) break;
      const bool control = edge.control;
      const size_t port = control ? 0 : static_cast<size_t>(edge.port);
      edge = it->second[port < it->second.size() ? port : 0];
      edge.control = control;
    }
    return edge;
  };
  for (const NodeDef& node : in.node()) {
    if (forward.count(node.name()) > 0) continue;
    NodeDef* copy = out->add_node();
    *copy = node;
    copy->clear_input();
    std::set<std::string> data_sources;
    std::set<std::string> control_sources;
    std::vector<std::string> controls;
    for (const std::string& input : node.input()) {
      const Edge edge = resolve(graph_util::ParseEdge(input));
      if (!edge.control) {
        copy->add_input(graph_util::EdgeString(edge));
        data_sources.insert(edge.node);
      } else if (control_sources.insert(edge.node).second) {
        controls.push_back(edge.node);
      }
    }
    // A control edge duplicating a data edge (or another control edge)
    // orders nothing more.
    for (const std::string& source : controls) {
      if (data_sources.count(source) == 0) copy->add_input("^" + source);
    }
  }
  graph_util::RemoveOrphans(out, orphans, endpoints);
  return absl::OkStatus();
}

}  // namespace

LEANGRAPH_REGISTER_TRANSFORM(
    "remove_identity_chains", RemoveIdentityChains, "check_numerics=false",
    "remove Identity, IdentityN, same-dtype Cast and same-shape Reshape nodes, keeping "
    "endpoints, control-flow neighbours and nodes with control inputs");

}  // namespace leangraph
