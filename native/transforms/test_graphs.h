// Hand-built graphs for the transforms' tests, and TensorFlow's own session
// as the oracle their rewritten graphs are checked against.
#ifndef LEANGRAPH_NATIVE_TRANSFORMS_TEST_GRAPHS_H_
#define LEANGRAPH_NATIVE_TRANSFORMS_TEST_GRAPHS_H_

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "native/test_main.h"
#include "native/transform_context.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor.pb.h"
#include "tensorflow/core/public/session.h"

namespace leangraph_test {

using Names = std::vector<std::string>;
using Shape = std::vector<int64_t>;

// A node of `op` reading `inputs`; every op but Const and Placeholder gets
// T=float.
inline tensorflow::NodeDef* AddNode(tensorflow::GraphDef* graph, const std::string& name,
                                    const std::string& op, const Names& inputs) {
  tensorflow::NodeDef* node = graph->add_node();
  node->set_name(name);
  node->set_op(op);
  for (const std::string& input : inputs) node->add_input(input);
  if (op != "Const" && op != "Placeholder") {
    (*node->mutable_attr())["T"].set_type(tensorflow::DT_FLOAT);
  }
  return node;
}

// A float Const whose values differ per element, so a wrong channel or
// summand shows.
inline tensorflow::NodeDef* FloatConstNode(tensorflow::GraphDef* graph,
                                           const std::string& name, const Shape& shape,
                                           float scale) {
  tensorflow::NodeDef* node = AddNode(graph, name, "Const", {});
  (*node->mutable_attr())["dtype"].set_type(tensorflow::DT_FLOAT);
  auto* tensor = (*node->mutable_attr())["value"].mutable_tensor();
  tensor->set_dtype(tensorflow::DT_FLOAT);
  int64_t count = 1;
  for (const int64_t d : shape) {
    tensor->mutable_tensor_shape()->add_dim()->set_size(d);
    count *= d;
  }
  for (int64_t i = 0; i < count; ++i) {
    tensor->add_float_val(scale * std::sin(0.7f * static_cast<float>(i) + 0.3f));
  }
  return node;
}

// A rank-1 int32 Const (a shape).
inline tensorflow::NodeDef* ShapeConstNode(tensorflow::GraphDef* graph,
                                           const std::string& name, const Shape& values) {
  tensorflow::NodeDef* node = AddNode(graph, name, "Const", {});
  (*node->mutable_attr())["dtype"].set_type(tensorflow::DT_INT32);
  auto* tensor = (*node->mutable_attr())["value"].mutable_tensor();
  tensor->set_dtype(tensorflow::DT_INT32);
  tensor->mutable_tensor_shape()->add_dim()->set_size(static_cast<int64_t>(values.size()));
  for (const int64_t v : values) tensor->add_int_val(static_cast<int32_t>(v));
  return node;
}

inline tensorflow::NodeDef* PlaceholderNode(tensorflow::GraphDef* graph,
                                            const std::string& name, const Shape& shape) {
  tensorflow::NodeDef* node = AddNode(graph, name, "Placeholder", {});
  (*node->mutable_attr())["dtype"].set_type(tensorflow::DT_FLOAT);
  auto* proto = (*node->mutable_attr())["shape"].mutable_shape();
  for (const int64_t d : shape) proto->add_dim()->set_size(d);
  return node;
}

// Runs leangraph's own transform `name` on a copy of `graph`.
inline tensorflow::GraphDef RunTransform(const std::string& name,
                                         const tensorflow::GraphDef& graph,
                                         const Names& inputs, const Names& outputs,
                                         const leangraph::TransformParams& params = {}) {
  const leangraph::OwnTransform* own = nullptr;
  for (const auto& t : leangraph::OwnTransforms()) {
    if (name == t.name) own = &t;
  }
  LG_EXPECT(own != nullptr);
  tensorflow::GraphDef out;
  if (own == nullptr) return out;
  leangraph::TransformContext context{name, inputs, outputs, params};
  LG_EXPECT(own->fn(graph, context, &out).ok());
  return out;
}

inline const tensorflow::NodeDef* FindNode(const tensorflow::GraphDef& graph,
                                           const std::string& name) {
  for (const tensorflow::NodeDef& node : graph.node()) {
    if (node.name() == name) return &node;
  }
  return nullptr;
}

inline int CountOps(const tensorflow::GraphDef& graph, const std::string& op) {
  int count = 0;
  for (const tensorflow::NodeDef& node : graph.node()) count += node.op() == op;
  return count;
}

// `outputs` of `graph` in a one-thread session, the Placeholder `input` fed
// values that differ per element.
inline std::vector<tensorflow::Tensor> Evaluate(const tensorflow::GraphDef& graph,
                                                const std::string& input,
                                                const Shape& shape, const Names& outputs) {
  tensorflow::SessionOptions options;
  options.config.set_intra_op_parallelism_threads(1);
  options.config.set_inter_op_parallelism_threads(1);
  std::unique_ptr<tensorflow::Session> session(tensorflow::NewSession(options));
  std::vector<tensorflow::Tensor> results;
  if (!session || !session->Create(graph).ok()) {
    LG_EXPECT(false && "the graph does not load");
    return results;
  }
  tensorflow::Tensor x(tensorflow::DT_FLOAT, tensorflow::TensorShape(shape));
  auto flat = x.flat<float>();
  for (int64_t i = 0; i < flat.size(); ++i) {
    flat(i) = std::cos(0.37f * static_cast<float>(i));
  }
  const auto status = session->Run({{input, x}}, outputs, {}, &results);
  LG_EXPECT(status.ok());
  return results;
}

// The rewritten graph computes what TensorFlow computes for the original:
// same shapes, every element within 1e-5 relative.
inline void ExpectSameOutputs(const tensorflow::GraphDef& before,
                              const tensorflow::GraphDef& after, const std::string& input,
                              const Shape& shape, const Names& outputs) {
  const auto want = Evaluate(before, input, shape, outputs);
  const auto got = Evaluate(after, input, shape, outputs);
  LG_EXPECT(want.size() == outputs.size() && got.size() == outputs.size());
  if (want.size() != got.size()) return;
  for (size_t k = 0; k < want.size(); ++k) {
    LG_EXPECT(want[k].shape() == got[k].shape());
    if (want[k].NumElements() != got[k].NumElements()) continue;
    const auto a = want[k].flat<float>();
    const auto b = got[k].flat<float>();
    for (int64_t i = 0; i < a.size(); ++i) {
      if (std::fabs(a(i) - b(i)) > 1e-5f * (1.0f + std::fabs(a(i)))) {
        std::fprintf(stderr, "output %zu element %lld: %g against %g\n", k,
                     static_cast<long long>(i), b(i), a(i));
        LG_EXPECT(false && "outputs differ");
        break;
      }
    }
  }
}

}  // namespace leangraph_test

#endif  // LEANGRAPH_NATIVE_TRANSFORMS_TEST_GRAPHS_H_
