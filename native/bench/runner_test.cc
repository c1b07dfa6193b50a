#include "native/bench/runner.h"

#include <string>
#include <vector>

#include "native/test_main.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"

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
