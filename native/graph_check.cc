#include "native/graph_check.h"

#include <string_view>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor.pb.h"
#include "tensorflow/core/framework/types.pb.h"

namespace leangraph {
namespace {

using tensorflow::GraphDef;
using tensorflow::NodeDef;

absl::Status NodeError(const NodeDef& node, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("node '", node.name(), "' (", node.op(), "): ", what));
}

// "^name" -> name, "name:3" -> name and port 3, "name" -> port 0.
struct Endpoint {
  std::string_view node;
  int port = 0;
  bool control = false;
  bool valid = true;
};

Endpoint ParseEndpoint(std::string_view text) {
  Endpoint endpoint;
  if (!text.empty() && text.front() == '^') {
    endpoint.control = true;
    text.remove_prefix(1);
  }
  const size_t colon = text.rfind(':');
  if (colon != std::string_view::npos && !endpoint.control) {
    int port = 0;
    if (absl::SimpleAtoi(text.substr(colon + 1), &port) && port >= 0) {
      endpoint.port = port;
      text = text.substr(0, colon);
    }
  }
  endpoint.node = text;
  endpoint.valid = !text.empty();
  return endpoint;
}

absl::Status CheckConst(const NodeDef& node) {
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
  // FromProto refuses (without aborting) negative dimensions, element
  // counts that overflow and contents of the wrong size.
  tensorflow::Tensor tensor;
  if (!tensor.FromProto(proto)) {
    return NodeError(node,
                     "Const value tensor is malformed (its contents do not "
                     "match its dtype and shape)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckGraph(const GraphDef& graph) {
  std::unordered_map<std::string_view, const NodeDef*> by_name;
  by_name.reserve(graph.node_size());
  for (const NodeDef& node : graph.node()) {
    if (node.name().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("a node of op '", node.op(), "' has an empty name"));
    }
    if (node.op().empty()) return NodeError(node, "node has no op");
    if (!by_name.emplace(node.name(), &node).second) {
      return NodeError(node, "duplicate node name");
    }
  }
  for (const NodeDef& node : graph.node()) {
    for (const std::string& input : node.input()) {
      const Endpoint endpoint = ParseEndpoint(input);
      if (!endpoint.valid) {
        return NodeError(node, absl::StrCat("malformed input '", input, "'"));
      }
      if (by_name.find(endpoint.node) == by_name.end()) {
        return NodeError(node, absl::StrCat("input '", input,
                                            "' names a node that does not exist"));
      }
    }
    if (node.op() == "Const") {
      absl::Status status = CheckConst(node);
      if (!status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

absl::Status CheckEndpoints(const GraphDef& graph,
                            const std::vector<std::string>& names,
                            const char* role) {
  for (const std::string& name : names) {
    const Endpoint endpoint = ParseEndpoint(name);
    bool found = false;
    for (const NodeDef& node : graph.node()) {
      if (node.name() == endpoint.node) {
        found = true;
        break;
      }
    }
    if (!endpoint.valid || !found) {
      return absl::InvalidArgumentError(absl::StrCat(
          role, " '", name, "' is not a node of the graph"));
    }
  }
  return absl::OkStatus();
}

}  // namespace leangraph
