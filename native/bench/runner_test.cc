#include "native/bench/runner.h"

#include <string>
#include <vector>

#include "native/test_main.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/tensor.pb.h"

namespace {

void Add(tensorflow::GraphDef* graph, const std::string& name, const std::string& op,
         const std::vector<std::string>& inputs = {}) {
  tensorflow::NodeDef* node = graph->add_node();
  node->set_name(name);
  node->set_op(op);
  for (const std::string& input : inputs) node->add_input(input);
}

}  // namespace

LG_TEST(ParallelWidthOfAChainIsOne) {
  tensorflow::GraphDef g;
  // Listed out of order: the width follows the edges, not the node list.
  Add(&g, "relu2", "Relu", {"conv2"});
  Add(&g, "conv2", "Conv2D", {"relu1", "w"});
  Add(&g, "x", "Placeholder");
  Add(&g, "w", "Const");
  Add(&g, "conv1", "Conv2D", {"x", "w"});
  Add(&g, "relu1", "Relu", {"conv1:0"});
  // A residual add with no heavy op on its shortcut keeps it a chain.
  Add(&g, "add", "AddV2", {"relu1", "relu2"});
  Add(&g, "dense", "MatMul", {"add", "w"});
  LG_EXPECT(leangraph::ParallelWidth(g) == 1);
  tensorflow::GraphDef empty;
  LG_EXPECT(leangraph::ParallelWidth(empty) == 0);
}

LG_TEST(ParallelWidthCountsHeavyOpsOfOneLevel) {
  tensorflow::GraphDef g;
  Add(&g, "x", "Placeholder");
  Add(&g, "w", "Const");
  // A projection shortcut beside a two-conv main branch: 2 wide.
  Add(&g, "main1", "_FusedConv2D", {"x", "w"});
  Add(&g, "main2", "Conv2D", {"main1", "w"});
  Add(&g, "shortcut", "Conv2D", {"x", "w"});
  Add(&g, "add", "AddV2", {"main2", "shortcut"});
  LG_EXPECT(leangraph::ParallelWidth(g) == 2);
  // An Inception-like cell: four branches after `add`.
  for (const char* b : {"b1", "b2", "b3", "b4"}) {
    Add(&g, b, "DepthwiseConv2dNative", {"add", "w"});
  }
  Add(&g, "cat", "ConcatV2", {"b1", "b2", "b3", "b4", "w"});
  LG_EXPECT(leangraph::ParallelWidth(g) == 4);
  // A control input orders ops as a data input does.
  tensorflow::GraphDef ordered;
  Add(&ordered, "x", "Placeholder");
  Add(&ordered, "c1", "Conv2D", {"x", "x"});
  Add(&ordered, "c2", "Conv2D", {"x", "x", "^c1"});
  LG_EXPECT(leangraph::ParallelWidth(ordered) == 1);
}

LG_TEST(ParallelWidthLeavesLoopBackEdgesOut) {
  tensorflow::GraphDef g;
  Add(&g, "x", "Placeholder");
  Add(&g, "enter", "Enter", {"x"});
  Add(&g, "merge", "Merge", {"enter", "next"});
  Add(&g, "body", "MatMul", {"merge", "merge"});
  Add(&g, "next", "NextIteration", {"body"});
  Add(&g, "exit", "Exit", {"body"});
  Add(&g, "after", "MatMul", {"exit", "exit"});
  LG_EXPECT(leangraph::ParallelWidth(g) == 1);
  // A cycle without NextIteration (a malformed graph) ends too.
  tensorflow::GraphDef bad;
  Add(&bad, "a", "MatMul", {"b", "b"});
  Add(&bad, "b", "MatMul", {"a", "a"});
  LG_EXPECT(leangraph::ParallelWidth(bad) >= 1);
}

LG_TEST(AutoSessionsByModeRunsAndSize) {
  tensorflow::GraphDef small;
  Add(&small, "x", "Placeholder");
  leangraph::BenchOptions o;
  o.runs = 100;
  o.ops_in_calling_thread = true;
  LG_EXPECT(leangraph::AutoSessions(o, small, small) == 1);
  o.ops_in_calling_thread = false;
  LG_EXPECT(leangraph::AutoSessions(o, small, small) == leangraph::kPoolSessions);
  o.runs = 10;  // two AB BA blocks per session pair at least
  LG_EXPECT(leangraph::AutoSessions(o, small, small) == 2);
  o.runs = 3;
  LG_EXPECT(leangraph::AutoSessions(o, small, small) == 1);
  o.target_ci = 0.03;  // runs is then the least number of pairs
  LG_EXPECT(leangraph::AutoSessions(o, small, small) == leangraph::kPoolSessions);
  // Each session holds the graph's constants: big graphs get fewer sessions,
  // but never fewer than kMinPoolSessions on the pool.
  tensorflow::GraphDef big;
  Add(&big, "w", "Const");
  (*big.mutable_node(0)->mutable_attr())["value"].mutable_tensor()->set_tensor_content(
      std::string(150u << 20, 'x'));
  o.target_ci = 0;
  o.runs = 100;
  LG_EXPECT(leangraph::AutoSessions(o, big, big) == 6);  // 2 GiB / 300 MiB
  LG_EXPECT(leangraph::AutoSessions(o, big, small) == leangraph::kPoolSessions);
  tensorflow::GraphDef huge = big;
  huge.add_node()->CopyFrom(big.node(0));
  huge.mutable_node(1)->set_name("w2");
  LG_EXPECT(leangraph::AutoSessions(o, huge, huge) == leangraph::kMinPoolSessions);
  // Inline, a graph of megabytes gets sessions too; a small one keeps one.
  o.ops_in_calling_thread = true;
  LG_EXPECT(leangraph::AutoSessions(o, big, small) == leangraph::kPoolSessions);
  LG_EXPECT(leangraph::AutoSessions(o, big, big) == 6);
  // Too big for four copies: one session inline, four on the pool.
  LG_EXPECT(leangraph::AutoSessions(o, huge, huge) == 1);
  tensorflow::GraphDef medium;
  Add(&medium, "w", "Const");
  (*medium.mutable_node(0)->mutable_attr())["value"].mutable_tensor()->set_tensor_content(
      std::string(900u << 10, 'x'));
  LG_EXPECT(leangraph::AutoSessions(o, medium, medium) == 1);  // 1.8 MiB together
  medium.mutable_node(0)->mutable_attr()->at("value").mutable_tensor()->set_tensor_content(
      std::string(1100u << 10, 'x'));
  LG_EXPECT(leangraph::AutoSessions(o, medium, medium) == leangraph::kPoolSessions);
  o.runs = 10;
  LG_EXPECT(leangraph::AutoSessions(o, medium, medium) == 2);
  LG_EXPECT(leangraph::AutoSessions(o, medium, small) == 1);  // 1.1 MiB together
}
