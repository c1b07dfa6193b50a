// strip_freeze_artifacts: removes what freezing a TF 2 function leaves
// behind: control edges whose source computes only from constants (the
// Identity "ReadVariableOp" nodes of frozen variables, and the NoOp that
// collects them), and then whatever only those edges read (the NoOp sink,
// and constant nodes nothing else reads).
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
#include <utility>
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
    // A function call is only as stateless as its body; not looked into.
    if (node.attr().count("f") > 0) return false;
    return op != "Placeholder" && op != "PlaceholderWithDefault" &&
           !graph_util::IsControlFlow(op) && !graph_util::IsStateful(op);
  }

  const GraphIndex& index_;
  std::map<std::string, State> state_;
};

// In place: the edges to drop are all found first (ConstOnly reads the graph
// as given), then the input lists are edited; no node is copied.
absl::Status StripFreezeArtifacts(GraphDef* graph,
                                  const TransformContext& context) {
  const std::set<std::string> endpoints = context.Endpoints();

  std::vector<std::pair<int, std::vector<std::string>>> edited;
  std::set<std::string> dead;
  {
    const GraphIndex index(*graph);
    ConstOnly const_only(index);
    std::vector<std::string> dropped_sources;
    for (int n = 0; n < graph->node_size(); ++n) {
      const NodeDef& node = graph->node(n);
      if (graph_util::IsStateful(node.op())) continue;
      std::vector<std::string> kept;
      bool dropped = false;
      for (const std::string& input : node.input()) {
        const graph_util::Edge edge = graph_util::ParseEdge(input);
        if (edge.control && const_only(edge.node)) {
          dropped_sources.push_back(edge.node);
          dropped = true;
          continue;
        }
        kept.push_back(input);
      }
      if (dropped) edited.emplace_back(n, std::move(kept));
    }
    // What only a dropped edge read (a NoOp sink, the ReadVariableOp Identity
    // nodes it collected, and the constant computations behind them) is dead
    // now; all of it is constant-only, so removing it changes no result.
    while (!dropped_sources.empty()) {
      const std::string name = dropped_sources.back();
      dropped_sources.pop_back();
      const NodeDef* node = index.Find(name);
      if (node == nullptr || !dead.insert(name).second) continue;
      for (const std::string& input : node->input()) {
        dropped_sources.push_back(graph_util::ParseEdge(input).node);
      }
    }
  }
  for (auto& [n, kept] : edited) {
    auto* inputs = graph->mutable_node(n)->mutable_input();
    inputs->Clear();
    for (std::string& input : kept) inputs->Add(std::move(input));
  }
  graph_util::RemoveOrphans(graph, dead, endpoints);
  return absl::OkStatus();
}

}  // namespace

LEANGRAPH_REGISTER_IN_PLACE_TRANSFORM(
    "strip_freeze_artifacts", StripFreezeArtifacts, "",
    "drop control edges from constant-only sources and the NoOp sinks of a "
    "freeze; keep every edge that orders a stateful op");

}  // namespace leangraph
