// fuse_matmul_reshape: lets Grappler fuse a Keras Dense or EinsumDense that
// runs on a sequence ([batch, steps, C] and the like). TensorFlow lowers those
// to Reshape -> MatMul -> Reshape -> bias Add -> activation (Dense, through
// tensordot) or BatchMatMulV2 against a 2-D weight -> Reshape -> bias Add
// (EinsumDense), and its remapper fuses a contraction with its bias and
// activation only when they are adjacent. Two rewrites, in this order:
//   1. a BatchMatMulV2 of x by a constant [K, N] weight becomes
//      MatMul(Reshape(x, [-1, K]), weight): the rows come out in the same
//      order. Where a Reshape alone reads it, that Reshape fixes the shape as
//      before and the MatMul takes its name; where x comes from a Reshape to
//      a known shape [..., K] (the attention's output projection; one -1
//      allowed), a Reshape to [..., N] takes its name;
//   2. a MatMul's Reshape that keeps the N channels together (its last dims
//      multiply to N), read only by an Add/AddV2/BiasAdd of a constant that
//      broadcasts over those last dims, and that add's activation (Relu,
//      Relu6, Elu, LeakyRelu, Tanh, Sigmoid; its only reader), move behind
//      the add and activation: MatMul -> BiasAdd([N]) -> activation ->
//      Reshape. The Reshape takes the name of the last node moved, so its
//      readers are untouched; the moved nodes get new names.
// Element-wise ops commute with a reshape and the bias is the same number
// for the same element, so the outputs are the same. Anything else (a
// control edge, a graph endpoint in the middle, another reader) is left as
// it is; never fails.
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "native/transform_context.h"
#include "native/transforms/graph_util.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor.pb.h"

namespace leangraph {
namespace {

using graph_util::GraphIndex;
using tensorflow::GraphDef;
using tensorflow::NodeDef;
using tensorflow::Tensor;

// The shapes this writes are int32 constants.
constexpr int64_t kInt32Max = 2147483647;

const std::set<std::string>& Activations() {
  static const std::set<std::string>* const kActivations = new std::set<std::string>{
      "Relu", "Relu6", "Elu", "LeakyRelu", "Tanh", "Sigmoid"};
  return *kActivations;
}

bool AttrTrue(const NodeDef& node, const std::string& name) {
  const auto it = node.attr().find(name);
  return it != node.attr().end() && it->second.b();
}

// The one node that reads `name` (port 0, no control edge), and where.
const NodeDef* OnlyReader(const GraphIndex& index, const GraphDef& graph,
                          const std::string& name, int* input = nullptr) {
  if (!index.HasSingleDataConsumer(name)) return nullptr;
  const graph_util::Consumer& consumer = index.Consumers(name)[0];
  if (input != nullptr) *input = consumer.input;
  return &graph.node(consumer.node);
}

// ---- 1. BatchMatMulV2 against a 2-D constant -> MatMul on the flat input --

struct Flat {
  int64_t depth = 0;           // K
  std::vector<int64_t> shape;  // the output's shape, when no Reshape reads it
};

// How `node` becomes a MatMul, when it is such a BatchMatMulV2.
std::optional<Flat> FlatBatchMatMul(const GraphIndex& index, const GraphDef& graph,
                                    const NodeDef& node,
                                    const std::set<std::string>& endpoints) {
  if (node.op() != "BatchMatMulV2" || node.input_size() != 2 ||
      graph_util::TypeAttr(node, "T") != tensorflow::DT_FLOAT ||
      AttrTrue(node, "adj_x") || AttrTrue(node, "adj_y") ||
      endpoints.count(node.name()) > 0 || graph_util::HasControlInput(node)) {
    return std::nullopt;
  }
  const auto weight = graph_util::ConstShape(index, graph_util::ParseEdge(node.input(1)));
  if (!weight || weight->dims() != 2 || weight->dim_size(0) <= 0 ||
      weight->dim_size(0) > kInt32Max || weight->dim_size(1) > kInt32Max) {
    return std::nullopt;
  }
  Flat flat{weight->dim_size(0), {}};
  int input = -1;
  const NodeDef* reader = OnlyReader(index, graph, node.name(), &input);
  if (reader != nullptr && reader->op() == "Reshape" && input == 0) return flat;
  // Otherwise the output's shape must be known: x from a Reshape to [..., K].
  const NodeDef* producer = graph_util::Producer(index, node.input(0));
  if (producer == nullptr || producer->op() != "Reshape" || producer->input_size() != 2) {
    return std::nullopt;
  }
  const auto shape = graph_util::IntConst(index, producer->input(1));
  if (!shape || shape->size() < 3 || shape->back() != flat.depth) return std::nullopt;
  int inferred = 0;  // a -1 (the batch, as Keras writes it) is inferred again after
  for (const int64_t d : *shape) {
    if (d == -1) ++inferred;
    if ((d <= 0 && d != -1) || inferred > 1 || d > kInt32Max) return std::nullopt;
  }
  flat.shape = *shape;
  flat.shape.back() = weight->dim_size(1);
  return flat;
}

void FlattenBatchMatMuls(GraphDef* graph, const std::set<std::string>& endpoints) {
  std::vector<std::optional<Flat>> flats;
  flats.reserve(graph->node_size());
  {
    const GraphIndex index(*graph);
    for (const NodeDef& node : graph->node()) {
      flats.push_back(FlatBatchMatMul(index, *graph, node, endpoints));
    }
  }
  std::set<std::string> taken = graph_util::NodeNames(*graph);
  graph_util::RebuildNodes(graph, [&](int n, const NodeDef& node, GraphDef* out) {
    if (!flats[n]) return false;
    const Flat& flat = *flats[n];
    const std::string& device = node.device();
    const NodeDef* rows_shape = graph_util::AddShapeConst(
        out, graph_util::UniqueName(node.name() + "/flat_shape", &taken), device,
        {-1, flat.depth});
    const NodeDef* rows = graph_util::AddReshape(
        out, graph_util::UniqueName(node.name() + "/flat", &taken), device,
        node.input(0), rows_shape->name());
    NodeDef* matmul = out->add_node();
    matmul->set_name(flat.shape.empty()
                         ? node.name()
                         : graph_util::UniqueName(node.name() + "/matmul", &taken));
    matmul->set_op("MatMul");
    matmul->set_device(device);
    matmul->add_input(rows->name());
    matmul->add_input(node.input(1));
    (*matmul->mutable_attr())["T"].set_type(tensorflow::DT_FLOAT);
    (*matmul->mutable_attr())["transpose_a"].set_b(false);
    (*matmul->mutable_attr())["transpose_b"].set_b(false);
    if (!flat.shape.empty()) {
      const NodeDef* out_shape = graph_util::AddShapeConst(
          out, graph_util::UniqueName(node.name() + "/out_shape", &taken), device,
          flat.shape);
      graph_util::AddReshape(out, node.name(), device, matmul->name(), out_shape->name());
    }
    return true;
  });
}

// ---- 2. the bias and activation before the MatMul's Reshape ---------------

struct Hoist {
  int add = -1;         // index of the Add/AddV2/BiasAdd
  int activation = -1;  // index of its activation, or -1
  std::vector<float> bias;
  std::set<std::string> consumed;
};

// `value` broadcast to the last dims `tail` of an output of rank `rank` and
// flattened row-major; nullopt unless it broadcasts only along those dims.
std::optional<std::vector<float>> TailBias(const Tensor& value,
                                           const std::vector<int64_t>& tail, int rank) {
  const int dims = value.dims();
  if (dims > rank) return std::nullopt;
  const int lead = rank - static_cast<int>(tail.size());  // dims before the tail
  std::vector<int64_t> size(tail.size(), 1);  // the value's extent per tail dim
  for (int d = 0; d < dims; ++d) {
    const int position = rank - dims + d;
    const int64_t extent = value.dim_size(d);
    if (position < lead) {
      if (extent != 1) return std::nullopt;
      continue;
    }
    const int64_t want = tail[position - lead];
    if (extent != 1 && extent != want) return std::nullopt;
    size[position - lead] = extent;
  }
  int64_t total = 1;
  for (const int64_t d : tail) total *= d;
  std::vector<float> bias(total);
  const auto flat = value.flat<float>();
  std::vector<int64_t> coord(tail.size(), 0);
  for (int64_t i = 0; i < total; ++i) {
    int64_t offset = 0;
    for (size_t d = 0; d < tail.size(); ++d) {
      offset = offset * size[d] + (size[d] == 1 ? 0 : coord[d]);
    }
    bias[i] = flat(offset);
    for (int d = static_cast<int>(tail.size()) - 1; d >= 0; --d) {
      if (++coord[d] < tail[d]) break;
      coord[d] = 0;
    }
  }
  return bias;
}

std::optional<Hoist> MatchHoist(const GraphIndex& index, const GraphDef& graph,
                                const NodeDef& reshape,
                                const std::set<std::string>& endpoints) {
  if (reshape.op() != "Reshape" || reshape.input_size() != 2 ||
      graph_util::TypeAttr(reshape, "T") != tensorflow::DT_FLOAT ||
      endpoints.count(reshape.name()) > 0) {
    return std::nullopt;
  }
  const NodeDef* matmul = graph_util::Producer(index, reshape.input(0));
  if (matmul == nullptr || matmul->op() != "MatMul" ||
      !index.HasSingleDataConsumer(matmul->name())) {
    return std::nullopt;
  }
  const auto layout = graph_util::ContractionLayout(*matmul);
  const auto weight = graph_util::ConstShape(index, graph_util::ParseEdge(matmul->input(1)));
  if (!layout || !weight) return std::nullopt;
  const int64_t channels = graph_util::ChannelCount(*layout, *weight);
  const auto shape = graph_util::IntConst(index, reshape.input(1));
  if (channels <= 0 || !shape || shape->empty()) return std::nullopt;
  // The last dims of the new shape that hold exactly one row of the MatMul.
  std::vector<int64_t> tail;
  int64_t product = 1;
  for (int d = static_cast<int>(shape->size()) - 1; d >= 0 && product < channels; --d) {
    if ((*shape)[d] <= 0) return std::nullopt;
    product *= (*shape)[d];
    tail.insert(tail.begin(), (*shape)[d]);
  }
  if (product != channels) return std::nullopt;

  int side = -1;
  const NodeDef* add = OnlyReader(index, graph, reshape.name(), &side);
  if (add == nullptr || add->input_size() != 2 ||
      graph_util::TypeAttr(*add, "T") != tensorflow::DT_FLOAT) {
    return std::nullopt;
  }
  const bool bias_add = add->op() == "BiasAdd" && side == 0 &&
                        graph_util::DataFormat(*add) == "NHWC";
  if (!bias_add && add->op() != "Add" && add->op() != "AddV2") return std::nullopt;
  Hoist hoist;
  const auto value = graph_util::EvalFloat(
      index, graph_util::ParseEdge(add->input(1 - side)), &hoist.consumed);
  if (!value) return std::nullopt;
  auto bias = TailBias(*value, tail, static_cast<int>(shape->size()));
  if (!bias) return std::nullopt;
  hoist.bias = std::move(*bias);
  hoist.add = static_cast<int>(index.Consumers(reshape.name())[0].node);

  const NodeDef* activation = endpoints.count(add->name()) > 0
                                  ? nullptr
                                  : OnlyReader(index, graph, add->name());
  if (activation != nullptr && Activations().count(activation->op()) > 0 &&
      activation->input_size() == 1 &&
      graph_util::TypeAttr(*activation, "T") == tensorflow::DT_FLOAT) {
    hoist.activation = static_cast<int>(index.Consumers(add->name())[0].node);
  }
  return hoist;
}

void HoistBiases(GraphDef* graph, const std::set<std::string>& endpoints) {
  // For each Reshape that matches: its hoist; and for the add and activation
  // it takes, which Reshape took them.
  std::vector<std::optional<Hoist>> hoists(graph->node_size());
  std::vector<int> reshape_of(graph->node_size(), -1);
  {
    const GraphIndex index(*graph);
    for (int n = 0; n < graph->node_size(); ++n) {
      const NodeDef& node = graph->node(n);
      if (graph_util::HasControlInput(node)) continue;
      hoists[n] = MatchHoist(index, *graph, node, endpoints);
      if (!hoists[n]) continue;
      const int add = hoists[n]->add;
      const int activation = hoists[n]->activation;
      if (graph_util::HasControlInput(graph->node(add)) ||
          (activation >= 0 && graph_util::HasControlInput(graph->node(activation)))) {
        hoists[n].reset();
        continue;
      }
      reshape_of[add] = n;
      if (activation >= 0) reshape_of[activation] = n;
    }
  }
  std::set<std::string> taken = graph_util::NodeNames(*graph);
  std::set<std::string> consumed;
  // Each moved chain is written where its last node was, so a graph in
  // execution order stays in execution order. The chain's other nodes are
  // dropped, not moved, so they can still be read there.
  graph_util::RebuildNodes(graph, [&](int n, const NodeDef& node, GraphDef* out) {
    if (hoists[n]) return true;  // the Reshape moves to the end of its chain
    const int owner = reshape_of[n];
    if (owner < 0) return false;
    const Hoist& hoist = *hoists[owner];
    const int last = hoist.activation >= 0 ? hoist.activation : hoist.add;
    if (n != last) return true;
    const NodeDef& reshape = graph->node(owner);
    const NodeDef& add = graph->node(hoist.add);

    const std::string bias_name = graph_util::UniqueName(add.name() + "/bias", &taken);
    *out->add_node() = graph_util::MakeFloatVector(bias_name, hoist.bias);

    NodeDef* biased = out->add_node();
    biased->set_name(graph_util::UniqueName(add.name() + "/flat", &taken));
    biased->set_op("BiasAdd");
    biased->set_device(add.device());
    biased->add_input(reshape.input(0));
    biased->add_input(bias_name);
    (*biased->mutable_attr())["T"].set_type(tensorflow::DT_FLOAT);
    (*biased->mutable_attr())["data_format"].set_s("NHWC");
    std::string tip = biased->name();
    if (hoist.activation >= 0) {
      NodeDef* activation = out->add_node();
      *activation = graph->node(hoist.activation);
      activation->set_name(graph_util::UniqueName(activation->name() + "/flat", &taken));
      activation->set_input(0, tip);
      tip = activation->name();
    }
    NodeDef* moved = out->add_node();
    moved->set_name(node.name());
    moved->set_op("Reshape");
    moved->set_device(reshape.device());
    moved->add_input(tip);
    moved->add_input(reshape.input(1));
    *moved->mutable_attr() = reshape.attr();
    consumed.insert(hoist.consumed.begin(), hoist.consumed.end());
    return true;
  });
  graph_util::RemoveOrphans(graph, consumed, endpoints);
}

absl::Status FuseMatMulReshape(GraphDef* graph, const TransformContext& context) {
  const std::set<std::string> endpoints = context.Endpoints();
  FlattenBatchMatMuls(graph, endpoints);
  HoistBiases(graph, endpoints);
  return absl::OkStatus();
}

}  // namespace

LEANGRAPH_REGISTER_IN_PLACE_TRANSFORM(
    "fuse_matmul_reshape", FuseMatMulReshape, "",
    "a sequence Dense/EinsumDense's bias and activation moved next to its MatMul");

}  // namespace leangraph
