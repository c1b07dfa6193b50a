#include <string>
#include <vector>

#include "native/test_main.h"
#include "native/tf_graph_transforms.h"
#include "native/transform_params.h"

namespace {

namespace gt = ::tensorflow::graph_transforms;
using leangraph::ParseTransforms;
using leangraph::TransformStep;

// TF's own parser is the reference for every well-formed string.
bool SameAsTensorFlow(const std::string& text) {
  gt::TransformParameters expected;
  if (!gt::ParseTransformParameters(text, &expected).ok()) return false;
  auto ours = ParseTransforms(text);
  if (!ours.ok() || ours->size() != expected.size()) return false;
  for (size_t i = 0; i < expected.size(); ++i) {
    if ((*ours)[i].name != expected[i].first) return false;
    if ((*ours)[i].params != expected[i].second) return false;
  }
  return true;
}

LG_TEST(MatchesTensorFlowOnRecipes) {
  LG_EXPECT(SameAsTensorFlow("fold_constants"));
  LG_EXPECT(SameAsTensorFlow("fold_constants(ignore_errors=true) fold_batch_norms"));
  LG_EXPECT(SameAsTensorFlow(
      "strip_unused_nodes(type=float, shape=\"1,299,299,3\") "
      "remove_nodes(op=Identity, op=CheckNumerics) "
      "fold_constants(ignore_errors=true) fold_batch_norms fold_old_batch_norms"));
  LG_EXPECT(SameAsTensorFlow("  rename_op(old_op_name=Mul, new_op_name=Add)\n  sort_by_execution_order "));
  LG_EXPECT(SameAsTensorFlow("quantize_weights(minimum_size=2)"));
}

LG_TEST(RepeatedParametersKeepEveryValueInOrder) {
  auto steps = ParseTransforms("remove_nodes(op=Identity, op=CheckNumerics, op=Snapshot)");
  LG_EXPECT(steps.ok());
  const std::vector<std::string> want = {"Identity", "CheckNumerics", "Snapshot"};
  LG_EXPECT(steps->at(0).params.at("op") == want);
}

LG_TEST(QuotedValuesHoldSeparators) {
  auto steps = ParseTransforms("t(a=\"x, y)(z\") u");
  LG_EXPECT(steps.ok());
  LG_EXPECT(steps->size() == 2);
  LG_EXPECT(steps->at(0).params.at("a").at(0) == "x, y)(z");
  LG_EXPECT(steps->at(1).name == "u");
}

LG_TEST(MalformedStringsAreErrorsNamingTheColumn) {
  const std::vector<std::string> bad = {
      "fold_constants(",        "fold_constants(ignore_errors)",
      "t(a=\"open",             "t(a=1 b=2)",
      "t(=1)",                  "(a=1)",
      "t(a=1))",                "t(a=)",
  };
  for (const std::string& text : bad) {
    auto steps = ParseTransforms(text);
    LG_EXPECT(!steps.ok());
    if (!steps.ok()) {
      LG_EXPECT(std::string(steps.status().message()).find("column") != std::string::npos);
    }
  }
}

LG_TEST(FormatRoundTrips) {
  const std::string text = "a(x=\"1,2\", x=3, y=q) b";
  auto steps = ParseTransforms(text);
  LG_EXPECT(steps.ok());
  auto again = ParseTransforms(leangraph::FormatTransforms(*steps));
  LG_EXPECT(again.ok());
  LG_EXPECT(again->size() == steps->size());
  LG_EXPECT(again->at(0).params == steps->at(0).params);
}

// Linking this test already proves every declared symbol exists in the
// wheel's library; these calls prove the declarations behave as declared.
LG_TEST(DeclarationsMatchTheWheel) {
  const gt::TransformRegistry* registry = gt::GetTransformRegistry();
  LG_EXPECT(registry != nullptr);
  LG_EXPECT(registry->count("fold_constants") == 1);
  LG_EXPECT(registry->count("strip_unused_nodes") == 1);
  LG_EXPECT(registry->size() >= 29);

  tensorflow::GraphDef graph;
  tensorflow::NodeDef* a = graph.add_node();
  a->set_name("a");
  a->set_op("NoOp");
  tensorflow::NodeDef* b = graph.add_node();
  b->set_name("b");
  b->set_op("NoOp");
  b->add_input("^a");
  LG_EXPECT(gt::IsGraphValid(graph).ok());
  const absl::Status status = gt::TransformGraph(
      {}, {"b"}, {{"remove_control_dependencies", {}}}, &graph);
  LG_EXPECT(status.ok());
  LG_EXPECT(graph.node_size() == 2);
  LG_EXPECT(graph.node(1).input_size() == 0);

  tensorflow::NodeDef* dangling = graph.add_node();
  dangling->set_name("c");
  dangling->set_op("NoOp");
  dangling->add_input("missing");
  LG_EXPECT(!gt::IsGraphValid(graph).ok());
}

}  // namespace
