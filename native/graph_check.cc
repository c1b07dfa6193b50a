#include "native/graph_check.h"

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "native/edge.h"
#include "native/int8_check.h"
#include "tensorflow/core/common_runtime/graph_constructor.h"
#include "tensorflow/core/framework/function.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/node_def_util.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_def.pb.h"
#include "tensorflow/core/framework/op_def_util.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor.pb.h"
#include "tensorflow/core/framework/tensor_shape.pb.h"
#include "tensorflow/core/framework/types.h"
#include "tensorflow/core/framework/types.pb.h"
#include "tensorflow/core/graph/graph.h"

namespace leangraph {
namespace {

using tensorflow::DataType;
using tensorflow::DataTypeVector;
using tensorflow::GraphDef;
using tensorflow::NodeDef;
using tensorflow::OpDef;

// Attribute-driven list lengths (Split's num_split, ...) beyond this are
// refused before TF materialises one entry per element.
constexpr int64_t kMaxListLength = 1 << 20;

// Strict, as Python decodes: no overlong forms, surrogates or code points
// past U+10FFFF.
bool IsUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char lead = text[i];
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length = 0;
    unsigned char low = 0x80, high = 0xBF;  // bounds of the second byte
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) low = 0xA0;
      if (lead == 0xED) high = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) low = 0x90;
      if (lead == 0xF4) high = 0x8F;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (size_t j = 1; j < length; ++j) {
      const unsigned char next = text[i + j];
      if (next < (j == 1 ? low : 0x80) || next > (j == 1 ? high : 0xBF)) {
        return false;
      }
    }
    i += length;
  }
  return true;
}

// Names come from the file and may hold any bytes; the message becomes a
// Python str, which must be valid UTF-8.
std::string Printable(std::string_view text) {
  return IsUtf8(text) ? std::string(text) : absl::CHexEscape(text);
}

absl::Status NodeError(const NodeDef& node, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(
      "node '", Printable(node.name()), "' (", Printable(node.op()), "): ",
      Printable(what)));
}

// "^name" -> name, "name:3" -> name and port 3, "name" -> port 0; `valid`
// is false for a port that is not a non-negative int (native/edge.h).
using Endpoint = EdgeView;
Endpoint ParseEndpoint(std::string_view text) { return ParseEdge(text); }

// What the rest of the check needs to know about one node.
struct NodeInfo {
  const NodeDef* node = nullptr;
  DataTypeVector inputs;
  DataTypeVector outputs;
  int rank = -1;  // of a Const's value; -1 for other ops
};

absl::Status CheckConst(const NodeDef& node, int* rank) {
  const auto value = node.attr().find("value");
  if (value == node.attr().end() || !value->second.has_tensor()) {
    return NodeError(node, "Const has no 'value' tensor");
  }
  const auto dtype = node.attr().find("dtype");
  if (dtype == node.attr().end() ||
      dtype->second.value_case() != tensorflow::AttrValue::kType) {
    return NodeError(node, "Const has no 'dtype' type attribute");
  }
  const tensorflow::TensorProto& proto = value->second.tensor();
  if (proto.dtype() != dtype->second.type()) {
    return NodeError(
        node, absl::StrCat("Const value has dtype ",
                           tensorflow::DataType_Name(proto.dtype()),
                           " but its 'dtype' attribute says ",
                           tensorflow::DataType_Name(dtype->second.type())));
  }
  // A short proto may describe a huge tensor (missing values repeat the
  // last one), so the size is bounded before anything is allocated.
  const tensorflow::TensorShapeProto& shape = proto.tensor_shape();
  if (shape.unknown_rank()) {
    return NodeError(node, "Const value has an unknown rank");
  }
  // Strings and other non-POD elements take at least a pointer-sized slot.
  const int pod_size = tensorflow::DataTypeSize(proto.dtype());
  const int64_t element_size = pod_size > 0 ? pod_size : 32;
  int64_t elements = 1;
  for (const auto& dim : shape.dim()) {
    if (dim.size() < 0) {
      return NodeError(node, absl::StrCat("Const value has a negative dimension (",
                                          dim.size(), ")"));
    }
    if (dim.size() > 0 && elements > kMaxTensorBytes / element_size / dim.size()) {
      return NodeError(node, absl::StrCat("Const value is larger than ",
                                          kMaxTensorBytes >> 20, " MiB"));
    }
    elements *= dim.size();
  }
  // FromProto refuses (without aborting) contents of the wrong size and
  // dtypes a tensor cannot hold.
  tensorflow::Tensor tensor;
  if (!tensor.FromProto(proto)) {
    return NodeError(node,
                     "Const value tensor is malformed (its contents do not "
                     "match its dtype and shape)");
  }
  *rank = shape.dim_size();
  return absl::OkStatus();
}

// The op's definition: a registered op, or a function of the graph's library
// called by name.
absl::StatusOr<const OpDef*> FindOpDef(
    const NodeDef& node,
    const std::unordered_map<std::string_view, const OpDef*>& functions) {
  const auto function = functions.find(node.op());
  if (function != functions.end()) return function->second;
  const tensorflow::OpRegistrationData* registered = nullptr;
  if (!tensorflow::OpRegistry::Global()->LookUp(node.op(), &registered).ok() ||
      registered == nullptr) {
    return NodeError(node, absl::StrCat("unknown op '", node.op(), "'"));
  }
  return &registered->op_def;
}

// Fills `info` with the node's input and output types, after checking its
// attributes and input count against the op's definition.
absl::Status CheckAgainstOpDef(const NodeDef& node, const OpDef& op_def,
                               NodeInfo* info) {
  // TF's import fills in attributes that have defaults, but its transforms
  // copy attributes with CopyNodeAttr, which CHECK-fails on a missing one
  // (measured: quantize_nodes on a MatMul without transpose_a). AddMissingDefaults
  // fills them in before the check; one still missing here is refused.
  for (const auto& attr : op_def.attr()) {
    if (attr.has_default_value() && node.attr().count(attr.name()) == 0) {
      return NodeError(node, absl::StrCat(
          "attribute '", attr.name(),
          "' is missing (it has a default, but TensorFlow's transforms read "
          "it unchecked; re-export the graph with its default attributes)"));
    }
  }
  // TF's validation only logs an attribute its op does not define, but shape
  // functions read such attributes by name: a data_format on QuantizedMaxPool
  // CHECK-fails TF's import ("Unknown format", measured). Internal attributes
  // ("_class", "_output_shapes", ...) are TF's own annotations.
  for (const auto& entry : node.attr()) {
    if (absl::StartsWith(entry.first, "_")) continue;
    bool defined = false;
    for (const auto& attr : op_def.attr()) defined = defined || attr.name() == entry.first;
    if (!defined) {
      return NodeError(node, absl::StrCat("attribute '", entry.first, "' is not one that op ",
                                          op_def.name(), " defines"));
    }
  }
  absl::Status status = tensorflow::ValidateNodeDef(node, op_def);
  if (!status.ok()) return NodeError(node, std::string(status.message()));
  // ValidateNodeDef ties input list lengths to the actual inputs; output
  // list lengths come from attributes alone.
  for (const auto& arg : op_def.output_arg()) {
    if (arg.number_attr().empty()) continue;
    const auto length = node.attr().find(arg.number_attr());
    if (length != node.attr().end() &&
        length->second.i() > kMaxListLength) {
      return NodeError(node, absl::StrCat("attribute '", arg.number_attr(),
                                          "' = ", length->second.i(),
                                          " is too large"));
    }
  }
  status = tensorflow::InOutTypesForNode(node, op_def, &info->inputs,
                                         &info->outputs);
  if (!status.ok()) return NodeError(node, std::string(status.message()));
  return absl::OkStatus();
}

// Consumers whose Const operands TF's folding transforms read with fixed
// ranks and as float32 (a mismatch is a CHECK failure there, not an error).
struct ConstOperand {
  std::string_view op;
  int input;
  int rank;
};
constexpr ConstOperand kConstOperands[] = {
    {"Conv2D", 1, 4},
    {"DepthwiseConv2dNative", 1, 4},
    {"Conv2DBackpropInput", 1, 4},
    {"MatMul", 1, 2},
    {"FusedBatchNorm", 1, 1},
    {"FusedBatchNorm", 2, 1},
    {"FusedBatchNorm", 3, 1},
    {"FusedBatchNorm", 4, 1},
    {"FusedBatchNormV2", 1, 1},
    {"FusedBatchNormV2", 2, 1},
    {"FusedBatchNormV2", 3, 1},
    {"FusedBatchNormV2", 4, 1},
    {"FusedBatchNormV3", 1, 1},
    {"FusedBatchNormV3", 2, 1},
    {"FusedBatchNormV3", 3, 1},
    {"FusedBatchNormV3", 4, 1},
    {"BatchNormWithGlobalNormalization", 1, 1},
    {"BatchNormWithGlobalNormalization", 2, 1},
    {"BatchNormWithGlobalNormalization", 3, 1},
    {"BatchNormWithGlobalNormalization", 4, 1},
};

bool IsWeighted(std::string_view op) {
  return op == "Conv2D" || op == "DepthwiseConv2dNative" || op == "MatMul";
}

bool IsBatchNorm(std::string_view op) {
  return op == "FusedBatchNorm" || op == "FusedBatchNormV2" ||
         op == "FusedBatchNormV3" || op == "BatchNormWithGlobalNormalization";
}

class Checker {
 public:
  explicit Checker(const GraphDef& graph) : graph_(graph) {}

  absl::Status Run() {
    absl::Status status = IndexNodes();
    if (status.ok()) status = CheckNodes();
    if (status.ok()) status = CheckEdges();
    if (status.ok()) status = CheckFoldingPatterns();
    if (status.ok()) status = CheckInt8Kernels(graph_);
    if (status.ok()) status = CheckAcyclic();
    return status;
  }

 private:
  absl::Status IndexNodes() {
    index_.reserve(graph_.node_size());
    for (int i = 0; i < graph_.node_size(); ++i) {
      const NodeDef& node = graph_.node(i);
      if (node.name().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("a node of op '", Printable(node.op()), "' has an empty name"));
      }
      if (node.op().empty()) return NodeError(node, "node has no op");
      if (!index_.emplace(node.name(), i).second) {
        return NodeError(node, "duplicate node name");
      }
    }
    for (const auto& function : graph_.library().function()) {
      functions_.emplace(function.signature().name(), &function.signature());
    }
    return absl::OkStatus();
  }

  absl::Status CheckNodes() {
    info_.resize(graph_.node_size());
    for (int i = 0; i < graph_.node_size(); ++i) {
      const NodeDef& node = graph_.node(i);
      NodeInfo& info = info_[i];
      info.node = &node;
      absl::StatusOr<const OpDef*> op_def = FindOpDef(node, functions_);
      if (!op_def.ok()) return op_def.status();
      if (functions_.count(node.op()) > 0) {
        // A library signature is data from the file, not a vetted op.
        const absl::Status valid = tensorflow::ValidateOpDef(**op_def);
        if (!valid.ok()) {
          return NodeError(node, absl::StrCat("its function's signature is invalid: ",
                                              valid.message()));
        }
      }
      // A Const's own check comes first: its messages say more than the
      // generic attribute check's.
      if (node.op() == "Const") {
        const absl::Status status = CheckConst(node, &info.rank);
        if (!status.ok()) return status;
      }
      const absl::Status status = CheckAgainstOpDef(node, **op_def, &info);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

  absl::Status CheckEdges() {
    for (const NodeInfo& info : info_) {
      const NodeDef& node = *info.node;
      int data_input = 0;
      for (const std::string& input : node.input()) {
        const Endpoint endpoint = ParseEndpoint(input);
        if (!endpoint.valid) {
          return NodeError(node, absl::StrCat("malformed input '", input, "'"));
        }
        const auto source = index_.find(endpoint.node);
        if (source == index_.end()) {
          return NodeError(node, absl::StrCat("input '", input,
                                              "' names a node that does not exist"));
        }
        if (endpoint.control) continue;
        const NodeInfo& from = info_[source->second];
        if (endpoint.port >= static_cast<int>(from.outputs.size())) {
          return NodeError(node, absl::StrCat(
              "input '", input, "' asks for output ", endpoint.port, " but '",
              endpoint.node, "' (", from.node->op(), ") has ",
              from.outputs.size(), " output(s)"));
        }
        const DataType given = from.outputs[endpoint.port];
        const DataType wanted = info.inputs[data_input];
        if (tensorflow::BaseType(given) != tensorflow::BaseType(wanted)) {
          return NodeError(node, absl::StrCat(
              "input ", data_input, " ('", input, "') is ",
              tensorflow::DataTypeString(given), " but the op expects ",
              tensorflow::DataTypeString(wanted)));
        }
        ++data_input;
      }
    }
    return absl::OkStatus();
  }

  // The Const feeding `node`'s data input `input`, or nullptr.
  const NodeInfo* ConstInput(const NodeDef& node, int input) const {
    if (input >= node.input_size()) return nullptr;
    const Endpoint endpoint = ParseEndpoint(node.input(input));
    const auto source = index_.find(endpoint.node);
    if (endpoint.control || source == index_.end()) return nullptr;
    const NodeInfo& from = info_[source->second];
    return from.node->op() == "Const" ? &from : nullptr;
  }

  const NodeDef* Producer(const NodeDef& node, int input) const {
    if (input >= node.input_size()) return nullptr;
    const Endpoint endpoint = ParseEndpoint(node.input(input));
    const auto source = index_.find(endpoint.node);
    return endpoint.control || source == index_.end()
               ? nullptr
               : info_[source->second].node;
  }

  static absl::Status NeedFloat(const NodeDef& consumer, const NodeInfo& weight,
                                const char* why) {
    const DataType dtype = weight.outputs[0];
    if (dtype == tensorflow::DT_FLOAT) return absl::OkStatus();
    return NodeError(consumer, absl::StrCat(
        "Const '", weight.node->name(), "' is ",
        tensorflow::DataTypeString(dtype), "; ", why,
        " needs float32 weights here"));
  }

  absl::Status CheckFoldingPatterns() const {
    for (const NodeInfo& info : info_) {
      const NodeDef& node = *info.node;
      for (const ConstOperand& operand : kConstOperands) {
        if (node.op() != operand.op) continue;
        const NodeInfo* weight = ConstInput(node, operand.input);
        if (weight != nullptr && weight->rank != operand.rank) {
          return NodeError(node, absl::StrCat(
              "input ", operand.input, " is Const '", weight->node->name(),
              "' of rank ", weight->rank, "; the op needs rank ", operand.rank));
        }
      }
      // Batch-norm folding reads these Consts as float32 whatever the op's
      // type attribute says.
      const bool mul_after_weights = node.op() == "Mul";
      if (!mul_after_weights && !IsBatchNorm(node.op())) continue;
      const NodeDef* producer = Producer(node, 0);
      // Atrous convolutions reach the batch norm through BatchToSpaceND.
      if (producer != nullptr && producer->op() == "BatchToSpaceND") {
        producer = Producer(*producer, 0);
      }
      if (producer == nullptr || !IsWeighted(producer->op())) continue;
      const NodeInfo* weights = ConstInput(*producer, 1);
      if (weights == nullptr) continue;
      absl::Status status = NeedFloat(node, *weights, "batch-norm folding");
      if (!status.ok()) return status;
      const int params = mul_after_weights ? 1 : 4;
      for (int i = 1; i <= params; ++i) {
        const NodeInfo* param = ConstInput(node, i);
        if (param == nullptr) continue;
        status = NeedFloat(node, *param, "batch-norm folding");
        if (!status.ok()) return status;
      }
    }
    return absl::OkStatus();
  }

  // Kahn's algorithm; edges out of NextIteration are a loop's legal back
  // edges and are left out.
  absl::Status CheckAcyclic() const {
    const int n = graph_.node_size();
    std::vector<int> pending(n, 0);
    std::vector<std::vector<int>> consumers(n);
    for (int i = 0; i < n; ++i) {
      for (const std::string& input : graph_.node(i).input()) {
        const int source = index_.at(ParseEndpoint(input).node);
        const std::string& op = graph_.node(source).op();
        if (op == "NextIteration" || op == "RefNextIteration") continue;
        ++pending[i];
        consumers[source].push_back(i);
      }
    }
    std::vector<int> ready;
    for (int i = 0; i < n; ++i) {
      if (pending[i] == 0) ready.push_back(i);
    }
    int done = 0;
    while (!ready.empty()) {
      const int node = ready.back();
      ready.pop_back();
      ++done;
      for (const int consumer : consumers[node]) {
        if (--pending[consumer] == 0) ready.push_back(consumer);
      }
    }
    if (done == n) return absl::OkStatus();
    for (int i = 0; i < n; ++i) {
      if (pending[i] > 0) {
        return NodeError(graph_.node(i),
                         "the node is part of a cycle (or depends on one) "
                         "that does not pass through NextIteration");
      }
    }
    return absl::OkStatus();
  }

  const GraphDef& graph_;
  std::unordered_map<std::string_view, int> index_;
  std::unordered_map<std::string_view, const OpDef*> functions_;
  std::vector<NodeInfo> info_;
};

}  // namespace

std::string_view InputNode(std::string_view input) { return ParseEndpoint(input).node; }

absl::Status CheckGraph(const GraphDef& graph) { return Checker(graph).Run(); }

absl::Status CheckShapes(const GraphDef& graph) {
  // As Python's import does: shape functions run and their errors count.
  tensorflow::ImportGraphDefOptions options;
  options.validate_shape = true;
  tensorflow::Graph shaped(tensorflow::OpRegistry::Global());
  const absl::Status status =
      tensorflow::ImportGraphDef(options, graph, &shaped, nullptr, nullptr);
  if (status.ok()) return status;
  return absl::InvalidArgumentError(absl::StrCat(
      "TensorFlow's shape inference refuses the graph: ", Printable(status.message())));
}

void AddMissingDefaults(GraphDef* graph) {
  std::unordered_map<std::string_view, const OpDef*> functions;
  for (const auto& function : graph->library().function()) {
    functions.emplace(function.signature().name(), &function.signature());
  }
  for (NodeDef& node : *graph->mutable_node()) {
    const absl::StatusOr<const OpDef*> op_def = FindOpDef(node, functions);
    // Unknown ops are left for CheckGraph to report.
    if (op_def.ok()) tensorflow::AddDefaultsToNodeDef(**op_def, &node);
  }
}

absl::Status CheckEndpoints(const GraphDef& graph,
                            const std::vector<std::string>& names,
                            const char* role) {
  std::unordered_map<std::string_view, bool> nodes;
  nodes.reserve(graph.node_size());
  for (const NodeDef& node : graph.node()) nodes.emplace(node.name(), true);
  for (const std::string& name : names) {
    const Endpoint endpoint = ParseEndpoint(name);
    if (!endpoint.valid || nodes.count(endpoint.node) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          role, " '", Printable(name), "' is not a node of the graph"));
    }
  }
  return absl::OkStatus();
}

}  // namespace leangraph
