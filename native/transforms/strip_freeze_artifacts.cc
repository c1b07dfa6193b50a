// strip_freeze_artifacts: removes what freezing a TF 2 function leaves
// behind: control edges whose source computes only from constants (the
// Identity "ReadVariableOp" nodes of frozen variables, and the NoOp that
// collects them), and the NoOp sinks left with nothing to order.
//
// A source is "constant-only" when everything it (transitively) depends on,
// data and control, is a Const or a stateless op of the registry; a
// Placeholder, a stateful op, a control-flow op, a function call or a cycle
// make it not. An edge is kept whenever its source is not constant-only or
// its destination is stateful, so every edge that orders a side effect stays.
// Endpoints are never removed. Never fails.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "native/transform_context.h"
#include "native/transforms/graph_util.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"

namespace leangraph {
namespace {

using graph_util::GraphIndex;
using tensorflow::GraphDef;
using tensorflow::NodeDef;

class ConstOnly {
 public:
  explicit ConstOnly(const GraphIndex& index) : index_(index) {}

  // Iterative depth-first search: frozen graphs are deep enough that
  // recursion per node could exhaust the stack.
  bool operator()(const std::string& root) {
    std::vector<std::pair<std::string, bool>> stack{{root, false}};
    while (!stack.empty()) {
      auto [name, expanded] = stack.back();
      stack.pop_back();
      if (state_.count(name) > 0 && state_[name] != kVisiting) continue;
      const NodeDef* node = index_.Find(name);
      if (node == nullptr || !Candidate(*node)) {
        state_[name] = kNo;
        continue;
      }
      if (!expanded) {
        if (state_.count(name) > 0) {  // reached again while visiting: a cycle
          state_[name] = kNo;
          continue;
        }
        state_[name] = kVisiting;
        stack.push_back({name, true});
        for (const std::string& input : node->input()) {
          const std::string source = graph_util::ParseEdge(input).node;
          if (state_.count(source) == 0) stack.push_back({source, false});
        }
        continue;
      }
      State result = kYes;
      for (const std::string& input : node->input()) {
        const auto it = state_.find(graph_util::ParseEdge(input).node);
        if (it == state_.end() || it->second != kYes) result = kNo;
      }
      state_[name] = result;
    }
    return state_[root] == kYes;
  }

 private:
  enum State { kVisiting, kYes, kNo };

  static bool Candidate(const NodeDef& node) {
    const std::string& op = node.op();
    if (op == "Const") return true;
    return op != "Placeholder" && op != "PlaceholderWithDefault" &&
           !graph_util::IsControlFlow(op) && !graph_util::IsStateful(op);
  }

  const GraphIndex& index_;
  std::map<std::string, State> state_;
};

absl::Status StripFreezeArtifacts(const GraphDef& in,
                                  const TransformContext& context,
                                  GraphDef* out) {
  const GraphIndex index(in);
  ConstOnly const_only(index);
  std::set<std::string> endpoints(context.outputs.begin(),
                                  context.outputs.end());
  endpoints.insert(context.inputs.begin(), context.inputs.end());

  GraphDef edited;
  for (const NodeDef& node : in.node()) {
    NodeDef* copy = edited.add_node();
    *copy = node;
    if (graph_util::IsStateful(node.op())) continue;
    copy->clear_input();
    for (const std::string& input : node.input()) {
      const graph_util::Edge edge = graph_util::ParseEdge(input);
      if (edge.control && const_only(edge.node)) continue;
      copy->add_input(input);
    }
  }
  // A NoOp left without inputs and without readers orders nothing.
  std::set<std::string> sinks;
  for (const NodeDef& node : edited.node()) {
    if (node.op() == "NoOp" && node.input_size() == 0) sinks.insert(node.name());
  }
  graph_util::RemoveOrphans(&edited, sinks, endpoints);
  *out = std::move(edited);
  return absl::OkStatus();
}

}  // namespace

LEANGRAPH_REGISTER_TRANSFORM(
    "strip_freeze_artifacts", StripFreezeArtifacts, "",
    "drop control edges from constant-only sources and the NoOp sinks of a "
    "freeze; keep every edge that orders a stateful op");

}  // namespace leangraph
