// remove_identity_chains: removes Identity, Snapshot, StopGradient and
// PreventGradient nodes (pass-throughs at inference), Casts to the
// same dtype and Reshapes whose static output shape equals their input's,
// rewiring readers (data and control) to the original producer — safely,
// unlike remove_nodes(op=Identity). IdentityN (output k is input k; what
// tf.custom_gradient leaves around every tf.nn.silu in a frozen Keras model)
// goes too, by graph_util::BypassIdentityN: its float type list would
// otherwise split a bf16 region at every swish.
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

bool IsPassThrough(const NodeDef& node, const std::set<std::string>& reshapes,
                   bool check_numerics) {
  const std::string& op = node.op();
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

// In place, so the constants move instead of being copied: what to remove
// is decided over the whole graph first, then the nodes move into the new
// list.
absl::Status RemoveIdentityChains(GraphDef* graph,
                                  const TransformContext& context) {
  const absl::StatusOr<bool> check_numerics =
      context.GetBool("check_numerics", false);
  if (!check_numerics.ok()) return check_numerics.status();
  const std::set<std::string> endpoints = context.Endpoints();
  // IdentityN first; the constants only an IdentityN read (swish's beta) go
  // with the orphans below.
  std::set<std::string> orphans;
  for (const NodeDef& node : graph->node()) {
    if (node.op() != "IdentityN") continue;
    orphans = graph_util::BypassIdentityN(graph, endpoints);
    break;
  }
  const GraphDef& in = *graph;
  const GraphIndex index(in);
  const std::set<std::string> reshapes = NoOpReshapes(in);

  // Removed node -> the edge it forwards.
  std::map<std::string, Edge> forward;
  for (const NodeDef& node : in.node()) {
    if (endpoints.count(node.name()) > 0 || !IsPassThrough(node, reshapes, *check_numerics) ||
        graph_util::HasControlInput(node)) {
      continue;
    }
    const Edge source = graph_util::ParseEdge(node.input(0));
    const NodeDef* producer = index.Find(source.node);
    if (producer == nullptr || graph_util::IsControlFlow(producer->op()) ||
        (producer->op() != "Const" && graph_util::IsStateful(producer->op()))) {
      continue;
    }
    bool next_to_control_flow = false;
    for (const auto& consumer : index.Consumers(node.name())) {
      const std::string& op = in.node(consumer.node).op();
      next_to_control_flow = next_to_control_flow || graph_util::IsControlFlow(op);
      // Only output 0 exists; anything else is left for TF to reject.
      if (!consumer.edge.control && consumer.edge.port != 0) {
        next_to_control_flow = true;
      }
    }
    if (next_to_control_flow) continue;
    forward[node.name()] = source;
    if (node.op() == "Reshape") {
      orphans.insert(graph_util::ParseEdge(node.input(1)).node);
    }
  }
  if (forward.empty()) {
    graph_util::RemoveOrphans(graph, orphans, endpoints);
    return absl::OkStatus();
  }
  // Follows a chain of removed nodes to the edge that survives.
  const auto resolve = [&forward](Edge edge) {
    for (size_t hops = 0; hops <= forward.size(); ++hops) {
      const auto it = forward.find(edge.node);
      if (it == forward.end()) break;
      const bool control = edge.control;
      edge = it->second;
      edge.control = control;
    }
    return edge;
  };
  GraphDef rebuilt;
  GraphDef* out = &rebuilt;
  for (NodeDef& node : *graph->mutable_node()) {
    if (forward.count(node.name()) > 0) continue;
    google::protobuf::RepeatedPtrField<std::string> given_inputs;
    given_inputs.Swap(node.mutable_input());
    NodeDef* copy = out->add_node();
    *copy = std::move(node);
    std::set<std::string> data_sources;
    std::set<std::string> control_sources;
    std::vector<std::string> controls;
    for (const std::string& input : given_inputs) {
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
  graph->mutable_node()->Swap(out->mutable_node());
  graph_util::RemoveOrphans(graph, orphans, endpoints);
  return absl::OkStatus();
}

}  // namespace

LEANGRAPH_REGISTER_IN_PLACE_TRANSFORM(
    "remove_identity_chains", RemoveIdentityChains, "check_numerics=false",
    "remove Identity, IdentityN, same-dtype Cast and same-shape Reshape nodes, keeping "
    "endpoints, control-flow neighbours and nodes with control inputs");

}  // namespace leangraph
