#include "native/transforms/graph_util.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "native/edge.h"
#include "tensorflow/core/common_runtime/graph_constructor.h"
#include "tensorflow/core/common_runtime/shape_refiner.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_def.pb.h"
#include "tensorflow/core/framework/tensor.pb.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.pb.h"

namespace leangraph {
namespace graph_util {

using tensorflow::DataType;
using tensorflow::GraphDef;
using tensorflow::NodeDef;
using tensorflow::Tensor;
using tensorflow::TensorShape;

Edge ParseEdge(const std::string& input) {
  const EdgeView view = ::leangraph::ParseEdge(input);
  return Edge{std::string(view.node), view.port, view.control};
}

std::string EdgeString(const Edge& edge) {
  if (edge.control) return "^" + edge.node;
  if (edge.port == 0) return edge.node;
  return absl::StrCat(edge.node, ":", edge.port);
}

bool IsStateful(const std::string& op) {
  const tensorflow::OpDef* def = nullptr;
  if (!tensorflow::OpRegistry::Global()->LookUpOpDef(op, &def).ok() ||
      def == nullptr) {
    return true;
  }
  return def->is_stateful();
}

bool IsControlFlow(const std::string& op) {
  static const auto* ops = new std::set<std::string>{
      "Switch",   "RefSwitch", "Merge",         "RefMerge",
      "Enter",    "RefEnter",  "Exit",          "RefExit",
      "LoopCond", "NextIteration", "RefNextIteration", "ControlTrigger"};
  return ops->count(op) > 0;
}

DataType TypeAttr(const NodeDef& node, const std::string& attr) {
  const auto it = node.attr().find(attr);
  if (it == node.attr().end() ||
      it->second.value_case() != tensorflow::AttrValue::kType) {
    return tensorflow::DT_INVALID;
  }
  return it->second.type();
}

std::string DataFormat(const NodeDef& node) {
  const auto it = node.attr().find("data_format");
  if (it == node.attr().end()) return "NHWC";
  return it->second.s();
}

GraphIndex::GraphIndex(const GraphDef& graph) {
  for (int i = 0; i < graph.node_size(); ++i) {
    const NodeDef& node = graph.node(i);
    nodes_[node.name()] = &node;
    for (int j = 0; j < node.input_size(); ++j) {
      const Edge edge = ParseEdge(node.input(j));
      consumers_[edge.node].push_back({i, j, edge});
    }
  }
}

const NodeDef* GraphIndex::Find(const std::string& name) const {
  const auto it = nodes_.find(name);
  return it == nodes_.end() ? nullptr : it->second;
}

const std::vector<Consumer>& GraphIndex::Consumers(
    const std::string& name) const {
  const auto it = consumers_.find(name);
  return it == consumers_.end() ? none_ : it->second;
}

bool HasControlInput(const NodeDef& node) {
  for (const std::string& input : node.input()) {
    if (!input.empty() && input[0] == '^') return true;
  }
  return false;
}

const NodeDef* Producer(const GraphIndex& index, const std::string& input) {
  const Edge edge = ParseEdge(input);
  if (edge.control || edge.port != 0) return nullptr;
  return index.Find(edge.node);
}

std::optional<std::vector<int64_t>> IntConst(const GraphIndex& index, const std::string& input) {
  const NodeDef* node = Producer(index, input);
  if (node == nullptr || node->op() != "Const") return std::nullopt;
  const auto it = node->attr().find("value");
  Tensor value;
  if (it == node->attr().end() || !it->second.has_tensor() ||
      !value.FromProto(it->second.tensor()) || value.dims() > 1) {
    return std::nullopt;
  }
  std::vector<int64_t> values;
  for (int64_t i = 0; i < value.NumElements(); ++i) {
    if (value.dtype() == tensorflow::DT_INT32) {
      values.push_back(value.flat<int32_t>()(i));
    } else if (value.dtype() == tensorflow::DT_INT64) {
      values.push_back(value.flat<int64_t>()(i));
    } else {
      return std::nullopt;
    }
  }
  return values;
}

bool OneDnnEnabled() {
  const char* value = std::getenv("TF_ENABLE_ONEDNN_OPTS");
  if (value == nullptr) return true;
  const std::string v(value);
  return !(v == "0" || v == "false" || v == "False" || v == "FALSE");
}

bool GraphIndex::HasSingleDataConsumer(const std::string& name) const {
  const std::vector<Consumer>& consumers = Consumers(name);
  return consumers.size() == 1 && !consumers[0].edge.control &&
         consumers[0].edge.port == 0;
}

std::optional<Tensor> FloatConst(const NodeDef& node) {
  if (node.op() != "Const" || TypeAttr(node, "dtype") != tensorflow::DT_FLOAT) {
    return std::nullopt;
  }
  const auto it = node.attr().find("value");
  if (it == node.attr().end() || !it->second.has_tensor() ||
      it->second.tensor().dtype() != tensorflow::DT_FLOAT) {
    return std::nullopt;
  }
  Tensor value;
  if (!value.FromProto(it->second.tensor())) return std::nullopt;
  return value;
}

namespace {

// The int32/int64 values of a Const (a shape or axis operand).
std::optional<std::vector<int64_t>> IntConst(const NodeDef& node) {
  if (node.op() != "Const") return std::nullopt;
  const auto it = node.attr().find("value");
  if (it == node.attr().end() || !it->second.has_tensor()) return std::nullopt;
  Tensor value;
  if (!value.FromProto(it->second.tensor()) || value.dims() > 1) {
    return std::nullopt;
  }
  std::vector<int64_t> out;
  if (value.dtype() == tensorflow::DT_INT32) {
    for (int64_t i = 0; i < value.NumElements(); ++i) {
      out.push_back(value.flat<int32_t>()(i));
    }
  } else if (value.dtype() == tensorflow::DT_INT64) {
    for (int64_t i = 0; i < value.NumElements(); ++i) {
      out.push_back(value.flat<int64_t>()(i));
    }
  } else {
    return std::nullopt;
  }
  return out;
}

std::optional<Tensor> Reshaped(const Tensor& value,
                               const std::vector<int64_t>& dims) {
  int64_t known = 1;
  int unknown = -1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == -1 && unknown < 0) {
      unknown = static_cast<int>(i);
    } else if (dims[i] < 0) {
      return std::nullopt;
    } else {
      known *= dims[i];
    }
  }
  std::vector<int64_t> resolved = dims;
  if (unknown >= 0) {
    if (known == 0 || value.NumElements() % known != 0) return std::nullopt;
    resolved[unknown] = value.NumElements() / known;
  } else if (known != value.NumElements()) {
    return std::nullopt;
  }
  TensorShape shape;
  for (const int64_t d : resolved) shape.AddDim(d);
  Tensor out(tensorflow::DT_FLOAT, shape);
  std::copy_n(value.flat<float>().data(), value.NumElements(),
              out.flat<float>().data());
  return out;
}

// Numpy broadcasting of two shapes; nullopt when they do not broadcast.
std::optional<std::vector<int64_t>> BroadcastShape(const TensorShape& a,
                                                   const TensorShape& b) {
  const int rank = std::max(a.dims(), b.dims());
  std::vector<int64_t> out(rank);
  for (int i = 0; i < rank; ++i) {
    const int ai = a.dims() - rank + i;
    const int bi = b.dims() - rank + i;
    const int64_t da = ai >= 0 ? a.dim_size(ai) : 1;
    const int64_t db = bi >= 0 ? b.dim_size(bi) : 1;
    if (da != db && da != 1 && db != 1) return std::nullopt;
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Flat index into `shape` (right-aligned, broadcast) of output element
// `flat` of `out_dims`.
int64_t SourceIndex(const std::vector<int64_t>& out_dims,
                    const TensorShape& shape, int64_t flat) {
  int64_t index = 0;
  int64_t stride = 1;
  const int rank = static_cast<int>(out_dims.size());
  for (int i = rank - 1; i >= 0; --i) {
    const int64_t coordinate = flat % out_dims[i];
    flat /= out_dims[i];
    const int si = shape.dims() - rank + i;
    if (si < 0) continue;
    const int64_t size = shape.dim_size(si);
    if (size != 1) index += coordinate * stride;
    stride *= size;
  }
  return index;
}

std::optional<Tensor> Binary(const std::string& op, const Tensor& a,
                             const Tensor& b) {
  const auto dims = BroadcastShape(a.shape(), b.shape());
  if (!dims) return std::nullopt;
  TensorShape shape;
  for (const int64_t d : *dims) shape.AddDim(d);
  Tensor out(tensorflow::DT_FLOAT, shape);
  const auto x = a.flat<float>();
  const auto y = b.flat<float>();
  auto z = out.flat<float>();
  using Fn = float (*)(float, float);
  Fn fn = [](float p, float q) { return p + q; };
  if (op == "Sub") fn = [](float p, float q) { return p - q; };
  if (op == "Mul") fn = [](float p, float q) { return p * q; };
  if (op == "RealDiv") fn = [](float p, float q) { return p / q; };
  if (op == "Maximum") fn = [](float p, float q) { return std::max(p, q); };
  if (op == "Minimum") fn = [](float p, float q) { return std::min(p, q); };
  for (int64_t i = 0; i < out.NumElements(); ++i) {
    z(i) = fn(x(SourceIndex(*dims, a.shape(), i)),
              y(SourceIndex(*dims, b.shape(), i)));
  }
  return out;
}

std::optional<Tensor> Unary(const std::string& op, const Tensor& a) {
  Tensor out(tensorflow::DT_FLOAT, a.shape());
  const auto x = a.flat<float>();
  auto z = out.flat<float>();
  for (int64_t i = 0; i < a.NumElements(); ++i) {
    const float v = x(i);
    z(i) = op == "Rsqrt"  ? 1.0f / std::sqrt(v)
           : op == "Sqrt" ? std::sqrt(v)
           : op == "Neg"  ? -v
                          : 1.0f / v;  // Reciprocal
  }
  return out;
}

std::optional<Tensor> Eval(const GraphIndex& index, const Edge& edge,
                           std::set<std::string>* visited, int depth) {
  // Batch-norm parameter expressions are a handful of ops deep; the limit
  // keeps a pathological graph from recursing without bound.
  if (edge.control || edge.port != 0 || depth > 16) return std::nullopt;
  const NodeDef* node = index.Find(edge.node);
  if (node == nullptr || HasControlInput(*node)) return std::nullopt;
  const std::string& op = node->op();
  std::optional<Tensor> result;
  if (op == "Const") {
    result = FloatConst(*node);
  } else {
    if (TypeAttr(*node, "T") != tensorflow::DT_FLOAT) {
      return std::nullopt;
    }
    std::vector<Edge> inputs;
    for (const std::string& input : node->input()) {
      inputs.push_back(ParseEdge(input));
    }
    if ((op == "Identity" || op == "Snapshot") && inputs.size() == 1) {
      result = Eval(index, inputs[0], visited, depth + 1);
    } else if ((op == "Rsqrt" || op == "Sqrt" || op == "Reciprocal" ||
                op == "Neg") &&
               inputs.size() == 1) {
      const auto a = Eval(index, inputs[0], visited, depth + 1);
      if (a) result = Unary(op, *a);
    } else if ((op == "Add" || op == "AddV2" || op == "Sub" || op == "Mul" ||
                op == "RealDiv" || op == "Maximum" || op == "Minimum") &&
               inputs.size() == 2) {
      const auto a = Eval(index, inputs[0], visited, depth + 1);
      const auto b = a ? Eval(index, inputs[1], visited, depth + 1)
                       : std::nullopt;
      if (a && b) result = Binary(op, *a, *b);
    } else if (op == "Reshape" && inputs.size() == 2) {
      const NodeDef* shape = index.Find(inputs[1].node);
      const auto dims = shape != nullptr && inputs[1].port == 0 &&
                                !HasControlInput(*shape)
                            ? IntConst(*shape)
                            : std::nullopt;
      const auto a = dims ? Eval(index, inputs[0], visited, depth + 1)
                          : std::nullopt;
      if (a) result = Reshaped(*a, *dims);
      if (result && visited != nullptr) visited->insert(shape->name());
    } else if (op == "Squeeze" && inputs.size() == 1) {
      const auto a = Eval(index, inputs[0], visited, depth + 1);
      if (a) {
        std::set<int64_t> axes;
        const auto it = node->attr().find("squeeze_dims");
        if (it != node->attr().end()) {
          for (const int64_t axis : it->second.list().i()) {
            axes.insert(axis < 0 ? axis + a->dims() : axis);
          }
        }
        std::vector<int64_t> dims;
        bool ok = true;
        for (int i = 0; i < a->dims(); ++i) {
          const bool listed = axes.empty() || axes.count(i) > 0;
          if (listed && a->dim_size(i) == 1) continue;
          if (listed && !axes.empty()) ok = false;
          dims.push_back(a->dim_size(i));
        }
        if (ok) result = Reshaped(*a, dims);
      }
    }
  }
  if (result && visited != nullptr) visited->insert(node->name());
  return result;
}

}  // namespace

std::optional<Tensor> EvalFloat(const GraphIndex& index, const Edge& edge,
                                std::set<std::string>* visited) {
  std::set<std::string> seen;
  std::optional<Tensor> result = Eval(index, edge, &seen, 0);
  if (result && visited != nullptr) visited->insert(seen.begin(), seen.end());
  return result;
}

std::optional<WeightLayout> ContractionLayout(const NodeDef& node) {
  if (TypeAttr(node, "T") != tensorflow::DT_FLOAT) return std::nullopt;
  const std::string& op = node.op();
  if (op == "MatMul") {
    const auto it = node.attr().find("transpose_b");
    const bool transposed = it != node.attr().end() && it->second.b();
    if (node.input_size() < 2) return std::nullopt;
    return transposed ? WeightLayout{2, 0, 0, 2} : WeightLayout{2, 1, 1, 2};
  }
  if (node.input_size() < 2 || DataFormat(node) != "NHWC") return std::nullopt;
  if (op == "Conv2D") return WeightLayout{4, 3, 3, 4};
  if (op == "DepthwiseConv2dNative") return WeightLayout{4, 2, 3, 4};
  if (op == "Conv2DBackpropInput" && node.input_size() >= 3) {
    return WeightLayout{4, 2, 2, 4};
  }
  return std::nullopt;
}

int64_t ChannelCount(const WeightLayout& layout, const TensorShape& weight) {
  if (weight.dims() != layout.rank) return -1;
  int64_t channels = 1;
  for (int i = layout.first; i <= layout.last; ++i) {
    channels *= weight.dim_size(i);
  }
  return channels;
}

std::optional<TensorShape> ConstShape(const GraphIndex& index,
                                      const Edge& edge) {
  Edge current = edge;
  for (int hops = 0; hops < 16 && !current.control && current.port == 0;
       ++hops) {
    const NodeDef* node = index.Find(current.node);
    if (node == nullptr) return std::nullopt;
    if (node->op() == "Const") {
      const auto it = node->attr().find("value");
      if (it == node->attr().end() || !it->second.has_tensor() ||
          !TensorShape::IsValid(it->second.tensor().tensor_shape())) {
        return std::nullopt;
      }
      return TensorShape(it->second.tensor().tensor_shape());
    }
    if (node->op() != "Identity" || node->input_size() < 1) return std::nullopt;
    current = ParseEdge(node->input(0));
  }
  return std::nullopt;
}

std::optional<std::vector<float>> PerChannel(const Tensor& value,
                                             int64_t channels,
                                             int output_rank) {
  if (value.dtype() != tensorflow::DT_FLOAT || value.dims() > output_rank ||
      channels <= 0) {
    return std::nullopt;
  }
  for (int i = 0; i + 1 < value.dims(); ++i) {
    if (value.dim_size(i) != 1) return std::nullopt;
  }
  const int64_t n = value.dims() == 0 ? 1 : value.dim_size(value.dims() - 1);
  if (n != channels && n != 1) return std::nullopt;
  const auto flat = value.flat<float>();
  std::vector<float> out(channels);
  for (int64_t c = 0; c < channels; ++c) out[c] = flat(n == 1 ? 0 : c);
  return out;
}

NodeDef MakeFloatConst(const std::string& name, const Tensor& value) {
  NodeDef node;
  node.set_name(name);
  node.set_op("Const");
  (*node.mutable_attr())["dtype"].set_type(tensorflow::DT_FLOAT);
  value.AsProtoTensorContent((*node.mutable_attr())["value"].mutable_tensor());
  return node;
}

NodeDef MakeFloatVector(const std::string& name, const std::vector<float>& values) {
  Tensor tensor(tensorflow::DT_FLOAT, TensorShape({static_cast<int64_t>(values.size())}));
  std::copy(values.begin(), values.end(), tensor.flat<float>().data());
  return MakeFloatConst(name, tensor);
}

NodeDef* AddShapeConst(GraphDef* graph, const std::string& name, const std::string& device,
                       const std::vector<int64_t>& values) {
  Tensor shape(tensorflow::DT_INT32,
               TensorShape({static_cast<int64_t>(values.size())}));
  for (size_t i = 0; i < values.size(); ++i) {
    shape.flat<int32_t>()(i) = static_cast<int32_t>(values[i]);
  }
  NodeDef* node = graph->add_node();
  node->set_name(name);
  node->set_op("Const");
  node->set_device(device);
  (*node->mutable_attr())["dtype"].set_type(tensorflow::DT_INT32);
  shape.AsProtoTensorContent((*node->mutable_attr())["value"].mutable_tensor());
  return node;
}

NodeDef* AddReshape(GraphDef* graph, const std::string& name, const std::string& device,
                    const std::string& input, const std::string& shape) {
  NodeDef* node = graph->add_node();
  node->set_name(name);
  node->set_op("Reshape");
  node->set_device(device);
  node->add_input(input);
  node->add_input(shape);
  (*node->mutable_attr())["T"].set_type(tensorflow::DT_FLOAT);
  (*node->mutable_attr())["Tshape"].set_type(tensorflow::DT_INT32);
  return node;
}

std::string UniqueName(const std::string& base, std::set<std::string>* taken) {
  std::string name = base;
  for (int i = 1; taken->count(name) > 0; ++i) name = absl::StrCat(base, "_", i);
  taken->insert(name);
  return name;
}

std::set<std::string> NodeNames(const GraphDef& graph) {
  std::set<std::string> names;
  for (const NodeDef& node : graph.node()) names.insert(node.name());
  return names;
}

std::set<std::string> RemoveOrphans(GraphDef* graph,
                                    const std::set<std::string>& candidates,
                                    const std::set<std::string>& keep) {
  std::map<std::string, int> readers;
  for (const NodeDef& node : graph->node()) {
    for (const std::string& input : node.input()) {
      ++readers[ParseEdge(input).node];
    }
  }
  std::map<std::string, const NodeDef*> by_name;
  for (const NodeDef& node : graph->node()) by_name[node.name()] = &node;
  std::set<std::string> removed;
  std::vector<std::string> work(candidates.begin(), candidates.end());
  while (!work.empty()) {
    const std::string name = work.back();
    work.pop_back();
    if (removed.count(name) > 0 || keep.count(name) > 0 ||
        candidates.count(name) == 0 || readers[name] > 0) {
      continue;
    }
    const auto it = by_name.find(name);
    if (it == by_name.end()) continue;
    removed.insert(name);
    for (const std::string& input : it->second->input()) {
      const std::string source = ParseEdge(input).node;
      if (--readers[source] == 0) work.push_back(source);
    }
  }
  if (removed.empty()) return removed;
  GraphDef kept;
  for (NodeDef& node : *graph->mutable_node()) {
    if (removed.count(node.name()) == 0) *kept.add_node() = std::move(node);
  }
  graph->mutable_node()->Swap(kept.mutable_node());
  return removed;
}

bool VisitInferredShapes(
    const GraphDef& graph,
    const std::function<void(const tensorflow::Node&,
                             tensorflow::shape_inference::InferenceContext&)>&
        visit) {
  GraphDef light;
  *light.mutable_versions() = graph.versions();
  *light.mutable_library() = graph.library();
  for (const NodeDef& node : graph.node()) {
    NodeDef* copy = light.add_node();
    *copy = node;
    if (node.op() != "Const") continue;
    auto& value = (*copy->mutable_attr())["value"];
    if (value.has_tensor() && value.tensor().dtype() == tensorflow::DT_FLOAT &&
        value.tensor().tensor_content().size() > 256) {
      value.mutable_tensor()->clear_tensor_content();
    }
  }
  tensorflow::Graph tf_graph(tensorflow::OpRegistry::Global());
  tensorflow::ShapeRefiner refiner(graph.versions(), tf_graph.op_registry());
  refiner.set_require_shape_inference_fns(false);
  tensorflow::ImportGraphDefOptions options;
  if (!tensorflow::ImportGraphDef(options, light, &tf_graph, &refiner).ok()) {
    return false;
  }
  for (const tensorflow::Node* node : tf_graph.op_nodes()) {
    tensorflow::shape_inference::InferenceContext* context =
        refiner.GetContext(node);
    if (context != nullptr) visit(*node, *context);
  }
  return true;
}

std::set<std::string> BypassIdentityN(GraphDef* graph,
                                      const std::set<std::string>& keep) {
  std::set<std::string> constants;
  const GraphIndex index(*graph);
  std::map<std::string, const NodeDef*> bypassed;
  for (const NodeDef& node : graph->node()) {
    if (node.op() != "IdentityN" || keep.count(node.name()) > 0) continue;
    const auto types = node.attr().find("T");
    bool plain = types != node.attr().end() && types->second.has_list() &&
                 types->second.list().type_size() == node.input_size();
    for (const std::string& input : node.input()) {
      const Edge edge = ParseEdge(input);
      const NodeDef* producer = index.Find(edge.node);
      plain = plain && !edge.control && producer != nullptr &&
              !IsControlFlow(producer->op()) &&
              (producer->op() == "Const" || !IsStateful(producer->op()));
    }
    for (const Consumer& consumer : index.Consumers(node.name())) {
      // A control edge waits for every input, which no rewired edge says.
      plain = plain && !consumer.edge.control &&
              !IsControlFlow(graph->node(consumer.node).op());
    }
    if (plain) bypassed[node.name()] = &node;
  }
  if (bypassed.empty()) return constants;
  // Rewired into a copy: the map points into the original.
  GraphDef rewired;
  std::map<std::string, int> readers;
  for (const NodeDef& node : graph->node()) {
    NodeDef* copy = rewired.add_node();
    *copy = node;
    for (int i = 0; i < copy->input_size(); ++i) {
      Edge edge = ParseEdge(copy->input(i));
      for (size_t hops = 0; !edge.control && hops <= bypassed.size(); ++hops) {
        const auto it = bypassed.find(edge.node);
        if (it == bypassed.end() || edge.port < 0 ||
            edge.port >= it->second->input_size()) {
          break;
        }
        edge = ParseEdge(it->second->input(edge.port));
      }
      copy->set_input(i, EdgeString(edge));
      ++readers[edge.node];
    }
  }
  GraphDef kept;
  for (NodeDef& node : *rewired.mutable_node()) {
    const auto it = bypassed.find(node.name());
    if (it == bypassed.end() || readers[node.name()] > 0) {
      *kept.add_node() = std::move(node);
      continue;
    }
    for (const std::string& input : it->second->input()) {
      const std::string producer = ParseEdge(input).node;
      if (index.Find(producer)->op() == "Const") constants.insert(producer);
    }
  }
  graph->mutable_node()->Swap(kept.mutable_node());
  return constants;
}

int DropDanglingColocations(GraphDef* graph) {
  constexpr absl::string_view kPrefix = "loc:@";
  std::set<std::string> names;
  for (const NodeDef& node : graph->node()) names.insert(node.name());
  int dropped = 0;
  for (NodeDef& node : *graph->mutable_node()) {
    const auto it = node.attr().find("_class");
    if (it == node.attr().end() || !it->second.has_list()) continue;
    std::vector<std::string> kept;
    bool changed = false;
    for (const std::string& entry : it->second.list().s()) {
      const absl::string_view view(entry);
      if (absl::StartsWith(view, kPrefix) &&
          names.count(std::string(view.substr(kPrefix.size()))) == 0) {
        changed = true;
        ++dropped;
        continue;
      }
      kept.push_back(entry);
    }
    if (!changed) continue;
    if (kept.empty()) {
      node.mutable_attr()->erase("_class");
      continue;
    }
    auto* list = (*node.mutable_attr())["_class"].mutable_list()->mutable_s();
    list->Clear();
    for (std::string& entry : kept) list->Add(std::move(entry));
  }
  return dropped;
}

}  // namespace graph_util
}  // namespace leangraph
