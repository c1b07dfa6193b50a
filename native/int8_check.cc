#include "native/int8_check.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "native/edge.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor.pb.h"
#include "tensorflow/core/framework/tensor_shape.pb.h"
#include "tensorflow/core/framework/types.pb.h"

namespace leangraph {
namespace {

using tensorflow::DataType;
using tensorflow::GraphDef;
using tensorflow::NodeDef;

constexpr DataType kFloat = tensorflow::DT_FLOAT;
constexpr DataType kQInt8 = tensorflow::DT_QINT8;
constexpr DataType kQUInt8 = tensorflow::DT_QUINT8;

// Size of a range tensor that cannot be known before the graph runs.
constexpr int64_t kUnknown = -1;
// Identity chains longer than this are not followed (and a cycle ends).
constexpr int kMaxDepth = 64;
// A stride, dilation or window beyond this is no real graph's.
constexpr int64_t kMaxGeometry = int64_t{1} << 20;

absl::Status Refuse(const NodeDef& node, std::string_view what) {
  const std::string name = absl::Utf8SafeCHexEscape(node.name());
  return absl::InvalidArgumentError(
      absl::StrCat("node '", name, "' (", node.op(), "): ", what));
}

DataType TypeAttr(const NodeDef& node, const std::string& name) {
  const auto it = node.attr().find(name);
  return it == node.attr().end() ? tensorflow::DT_INVALID : it->second.type();
}

std::vector<DataType> TypeListAttr(const NodeDef& node, const std::string& name) {
  std::vector<DataType> out;
  const auto it = node.attr().find(name);
  if (it == node.attr().end()) return out;
  for (const int type : it->second.list().type()) out.push_back(static_cast<DataType>(type));
  return out;
}

std::vector<int64_t> IntListAttr(const NodeDef& node, const std::string& name) {
  const auto it = node.attr().find(name);
  if (it == node.attr().end()) return {};
  return {it->second.list().i().begin(), it->second.list().i().end()};
}

std::string StringAttr(const NodeDef& node, const std::string& name) {
  const auto it = node.attr().find(name);
  return it == node.attr().end() ? std::string() : it->second.s();
}

int64_t IntAttr(const NodeDef& node, const std::string& name, int64_t fallback) {
  const auto it = node.attr().find(name);
  return it == node.attr().end() ? fallback : it->second.i();
}

bool BoolAttr(const NodeDef& node, const std::string& name) {
  const auto it = node.attr().find(name);
  return it != node.attr().end() && it->second.b();
}

// A Bitcast between two of these keeps its input's shape.
bool IsEightBit(DataType type) {
  return type == kQInt8 || type == kQUInt8 || type == tensorflow::DT_INT8 ||
         type == tensorflow::DT_UINT8;
}

std::string TypeNames(const std::vector<DataType>& types) {
  std::vector<std::string> names;
  for (const DataType type : types) names.push_back(tensorflow::DataType_Name(type));
  return absl::StrCat("[", absl::StrJoin(names, ", "), "]");
}

// The fused_ops lists leangraph's int8 rewrite emits, each with the output
// types it pairs them with. TF's kernels accept others, but not every other
// one: a list without Requantize under an 8-bit out_type aborts the process
// (measured), so only these proven pairs run.
struct FusedForm {
  std::vector<std::string> ops;
  bool sum;
};
const FusedForm kConvForms[] = {
    {{"BiasAdd", "Requantize"}, false},
    {{"BiasAdd", "Relu", "Requantize"}, false},
    {{"BiasAdd", "Sum", "Relu", "Requantize"}, true},
};
// A matmul's list ends in Dequantize (a float output) or Requantize (an
// 8-bit one, with the output's range as two more inputs).
const std::vector<std::string> kMatMulForms[] = {
    {"BiasAdd", "Dequantize"},
    {"BiasAdd", "Relu", "Dequantize"},
    {"BiasAdd", "Requantize"},
    {"BiasAdd", "Relu", "Requantize"},
};

// Input positions of plain quantized ops that hold one value each (a min or
// max); TF reads each as a scalar.
struct ScalarRanges {
  std::string_view op;
  std::vector<int> inputs;
};
const ScalarRanges kScalarRanges[] = {
    {"Requantize", {1, 2, 3, 4}},
    {"RequantizationRange", {1, 2}},
    {"QuantizeDownAndShrinkRange", {1, 2}},
    {"QuantizedMaxPool", {1, 2}},
    {"QuantizedAvgPool", {1, 2}},
    {"QuantizedRelu", {1, 2}},
    {"QuantizedRelu6", {1, 2}},
    {"QuantizedReshape", {2, 3}},
    {"QuantizedBiasAdd", {2, 3, 4, 5}},
    {"QuantizedConv2D", {2, 3, 4, 5}},
    {"QuantizedMatMul", {2, 3, 4, 5}},
    {"QuantizedAdd", {2, 3, 4, 5}},
    {"QuantizedMul", {2, 3, 4, 5}},
};

class Int8Checker {
 public:
  explicit Int8Checker(const GraphDef& graph) {
    for (const NodeDef& node : graph.node()) index_.emplace(node.name(), &node);
  }

  absl::Status Check(const NodeDef& node) const {
    const std::string& op = node.op();
    if (op == "_FusedQuantizedConv2D" || op == "_FusedQuantizedDepthwiseConv2D") {
      return CheckFusedConv(node);
    }
    if (op == "_QuantizedMatMul") return CheckFusedMatMul(node);
    if (op == "QuantizeV2" || op == "Dequantize") return CheckPerAxis(node);
    if (op == "QuantizedConcatV2" || op == "QuantizedConcat") return CheckConcat(node);
    for (const ScalarRanges& entry : kScalarRanges) {
      if (op != entry.op) continue;
      for (const int input : entry.inputs) {
        absl::Status status = NeedOneValue(node, input, /*unknown_ok=*/false);
        if (!status.ok()) return status;
      }
      if (op == "QuantizedMaxPool" || op == "QuantizedAvgPool") return CheckPool(node);
    }
    return absl::OkStatus();
  }

 private:
  const NodeDef* Node(std::string_view name) const {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : it->second;
  }

  // The edge of data input `i`; control inputs come after the data inputs.
  EdgeView Input(const NodeDef& node, int i) const {
    if (i < 0 || i >= node.input_size()) return EdgeView{{}, 0, false, false};
    EdgeView edge = ParseEdge(node.input(i));
    if (edge.control) edge.valid = false;
    return edge;
  }

  const NodeDef* Const(const NodeDef& node, int i) const {
    const EdgeView edge = Input(node, i);
    const NodeDef* source = edge.valid ? Node(edge.node) : nullptr;
    return source != nullptr && source->op() == "Const" ? source : nullptr;
  }

  static std::vector<int64_t> Dims(const NodeDef& constant) {
    std::vector<int64_t> dims;
    const auto value = constant.attr().find("value");
    if (value == constant.attr().end()) return dims;
    for (const auto& dim : value->second.tensor().tensor_shape().dim()) dims.push_back(dim.size());
    return dims;
  }

  static int64_t Elements(const std::vector<int64_t>& dims) {
    int64_t count = 1;
    for (const int64_t d : dims) count *= d;
    return count;
  }

  // How many values the tensor `edge` names will hold, where the graph
  // alone tells; kUnknown otherwise.
  int64_t Count(const EdgeView& edge, int depth = 0) const {
    if (!edge.valid || depth > kMaxDepth) return kUnknown;
    const NodeDef* node = Node(edge.node);
    if (node == nullptr) return kUnknown;
    const std::string& op = node->op();
    if (op == "Const") return edge.port == 0 ? Elements(Dims(*node)) : kUnknown;
    if (op == "Identity" || op == "Snapshot" || op == "StopGradient") {
      return edge.port == 0 ? Count(Input(*node, 0), depth + 1) : kUnknown;
    }
    const bool range_port = edge.port == 1 || edge.port == 2;
    if (op == "QuantizeV2") {
      return range_port && IntAttr(*node, "axis", -1) == -1 ? 1 : kUnknown;
    }
    if (op == "Requantize" || op == "QuantizeDownAndShrinkRange" ||
        op == "QuantizedConcatV2" || op == "QuantizedConcat" || op == "QuantizedRelu" ||
        op == "QuantizedRelu6" || op == "QuantizedConv2D" || op == "QuantizedMatMul" ||
        op == "QuantizedBiasAdd" || op == "QuantizedAdd" || op == "QuantizedMul") {
      return range_port ? 1 : kUnknown;
    }
    if (op == "RequantizationRange") return edge.port <= 1 ? 1 : kUnknown;
    if ((op == "Min" || op == "Max") && edge.port == 0) return ReducedCount(*node, depth);
    if (op == "QuantizedMaxPool" || op == "QuantizedAvgPool") {
      return range_port ? Count(Input(*node, edge.port), depth + 1) : kUnknown;
    }
    if (op == "QuantizedReshape") {
      return range_port ? Count(Input(*node, edge.port + 1), depth + 1) : kUnknown;
    }
    if (op == "_FusedQuantizedConv2D" || op == "_FusedQuantizedDepthwiseConv2D") {
      // An 8-bit output has one range; a 32-bit one keeps the filter's.
      if (!range_port) return kUnknown;
      const DataType out = TypeAttr(*node, "out_type");
      return out == kQInt8 || out == kQUInt8 ? 1 : kUnknown;
    }
    return kUnknown;
  }

  // The rank of the tensor `edge` names, where the graph alone tells; -1 otherwise.
  int Rank(const EdgeView& edge, int depth = 0) const {
    if (!edge.valid || depth > kMaxDepth) return -1;
    const NodeDef* node = Node(edge.node);
    if (node == nullptr) return -1;
    const std::string& op = node->op();
    if (op == "Const") return edge.port == 0 ? static_cast<int>(Dims(*node).size()) : -1;
    if (op == "Placeholder" || op == "PlaceholderWithDefault") {
      const auto shape = node->attr().find("shape");
      if (shape == node->attr().end() || shape->second.shape().unknown_rank()) return -1;
      return shape->second.shape().dim_size();
    }
    if (edge.port != 0) return -1;
    if (op == "_FusedQuantizedConv2D" || op == "_FusedQuantizedDepthwiseConv2D" ||
        op == "QuantizedMaxPool" || op == "QuantizedAvgPool" || op == "MaxPool" ||
        op == "AvgPool" || op == "Conv2D" || op == "DepthwiseConv2dNative") {
      return 4;
    }
    if (op == "Reshape") {
      // The shape operand's length is the result's rank.
      const NodeDef* shape = Const(*node, 1);
      const std::vector<int64_t> dims = shape != nullptr ? Dims(*shape) : std::vector<int64_t>{};
      return shape != nullptr && dims.size() == 1 ? static_cast<int>(dims[0]) : -1;
    }
    if (op == "Identity" || op == "Snapshot" || op == "StopGradient" || op == "Relu" ||
        op == "Relu6" || op == "QuantizeV2" || op == "Dequantize" || op == "Pad" ||
        op == "QuantizedConcatV2" || op == "ConcatV2" ||
        (op == "Bitcast" && IsEightBit(TypeAttr(*node, "T")) &&
         IsEightBit(TypeAttr(*node, "type")))) {
      return Rank(Input(*node, 0), depth + 1);
    }
    return -1;
  }

  // The data input `i` has rank `rank`, or a rank the graph does not tell.
  absl::Status NeedRank(const NodeDef& node, int i, int rank) const {
    const int given = Rank(Input(node, i));
    if (given == -1 || given == rank) return absl::OkStatus();
    return Refuse(node, absl::StrCat("input ", i, " ('", absl::Utf8SafeCHexEscape(node.input(i)),
                                     "') has rank ", given, "; the int8 kernel needs rank ",
                                     rank));
  }

  // A Min or Max over every axis of its input (TF's eight-bit recipe reduces a
  // Reshape to [-1] over axis 0) holds one value.
  int64_t ReducedCount(const NodeDef& node, int depth) const {
    if (BoolAttr(node, "keep_dims")) return kUnknown;
    const int rank = Rank(Input(node, 0), depth + 1);
    const NodeDef* axes = Const(node, 1);
    if (rank < 0 || axes == nullptr) return kUnknown;
    tensorflow::Tensor value;
    if (!value.FromProto(axes->attr().at("value").tensor()) ||
        (value.dtype() != tensorflow::DT_INT32 && value.dtype() != tensorflow::DT_INT64)) {
      return kUnknown;
    }
    std::vector<bool> reduced(rank, false);
    for (int64_t i = 0; i < value.NumElements(); ++i) {
      int64_t axis = value.dtype() == tensorflow::DT_INT32 ? value.flat<int32_t>()(i)
                                                            : value.flat<int64_t>()(i);
      if (axis < 0) axis += rank;
      if (axis < 0 || axis >= rank) return kUnknown;
      reduced[axis] = true;
    }
    for (const bool r : reduced) {
      if (!r) return kUnknown;
    }
    return 1;
  }

  absl::Status NeedOneValue(const NodeDef& node, int i, bool unknown_ok) const {
    const EdgeView edge = Input(node, i);
    if (!edge.valid) {
      return Refuse(node, absl::StrCat("range input ", i, " is missing"));
    }
    const int64_t count = Count(edge);
    if (count == 1 || (count == kUnknown && unknown_ok)) return absl::OkStatus();
    if (count == kUnknown) {
      return Refuse(node, absl::StrCat(
          "range input ", i, " ('", absl::Utf8SafeCHexEscape(node.input(i)),
          "') must hold one value, and the graph does not say that it does (TensorFlow's "
          "int8 kernel reads it as a scalar and aborts otherwise)"));
    }
    return Refuse(node, absl::StrCat("range input ", i, " ('", absl::Utf8SafeCHexEscape(node.input(i)),
                                     "') holds ", count,
                                     " values; the kernel reads one (a scalar)"));
  }

  static absl::Status CheckWindow(const NodeDef& node, const std::string& name,
                                  bool required) {
    const std::vector<int64_t> values = IntListAttr(node, name);
    if (values.empty() && !required) return absl::OkStatus();
    if (values.size() != 4) {
      return Refuse(node, absl::StrCat("'", name, "' has ", values.size(),
                                       " entries; it needs 4 (NHWC)"));
    }
    for (const int64_t v : values) {
      if (v < 1 || v > kMaxGeometry) {
        return Refuse(node, absl::StrCat("'", name, "' holds ", v,
                                         "; every entry must be a positive size"));
      }
    }
    if (values[0] != 1 || values[3] != 1) {
      return Refuse(node, absl::StrCat("'", name,
                                       "' must be 1 over the batch and the channels"));
    }
    return absl::OkStatus();
  }

  static absl::Status CheckPadding(const NodeDef& node, bool explicit_ok) {
    const std::string padding = StringAttr(node, "padding");
    const std::vector<int64_t> explicit_paddings = IntListAttr(node, "explicit_paddings");
    if (padding == "SAME" || padding == "VALID") {
      if (!explicit_paddings.empty()) {
        return Refuse(node, "'explicit_paddings' is set but padding is not EXPLICIT");
      }
    } else if (padding == "EXPLICIT" && explicit_ok) {
      if (explicit_paddings.size() != 8) {
        return Refuse(node, absl::StrCat("'explicit_paddings' has ", explicit_paddings.size(),
                                         " entries; EXPLICIT padding needs 8"));
      }
      for (size_t i = 0; i < explicit_paddings.size(); ++i) {
        const int64_t p = explicit_paddings[i];
        const bool spatial = i >= 2 && i < 6;
        if (p < 0 || p > kMaxGeometry || (!spatial && p != 0)) {
          return Refuse(node, "'explicit_paddings' must be non-negative and pad only the "
                              "height and width");
        }
      }
    } else {
      return Refuse(node, absl::StrCat("padding '", absl::Utf8SafeCHexEscape(padding),
                                       "' is not one the int8 kernel takes"));
    }
    if (!IntListAttr(node, "padding_list").empty()) {
      return Refuse(node, "'padding_list' must be empty");
    }
    return absl::OkStatus();
  }

  static absl::Status CheckHostTypes(const NodeDef& node, const std::vector<DataType>& inputs,
                                     const std::vector<DataType>& outputs) {
    if (!TypeListAttr(node, "Tdevice_inputs").empty() ||
        !TypeListAttr(node, "Tdevice_outputs").empty()) {
      return Refuse(node, "'Tdevice_inputs' and 'Tdevice_outputs' must be empty on a CPU");
    }
    const std::vector<DataType> host_inputs = TypeListAttr(node, "Thost_inputs");
    if (host_inputs != inputs) {
      return Refuse(node, absl::StrCat("'Thost_inputs' is ", TypeNames(host_inputs),
                                       "; for its fused ops and types it must be ",
                                       TypeNames(inputs)));
    }
    const std::vector<DataType> host_outputs = TypeListAttr(node, "Thost_outputs");
    if (host_outputs != outputs) {
      return Refuse(node, absl::StrCat("'Thost_outputs' is ", TypeNames(host_outputs),
                                       "; for its fused ops and types it must be ",
                                       TypeNames(outputs)));
    }
    return absl::OkStatus();
  }

  static std::vector<std::string> FusedOps(const NodeDef& node) {
    const auto it = node.attr().find("fused_ops");
    if (it == node.attr().end()) return {};
    return {it->second.list().s().begin(), it->second.list().s().end()};
  }

  // Filter (rank `rank`, qint8) and bias (float, one per channel) constants;
  // returns the output channels in *channels.
  absl::Status CheckWeights(const NodeDef& node, int rank, int64_t* channels) const {
    const NodeDef* filter = Const(node, 1);
    if (filter == nullptr || TypeAttr(*filter, "dtype") != kQInt8 ||
        Dims(*filter).size() != static_cast<size_t>(rank)) {
      return Refuse(node, absl::StrCat("its filter must be a qint8 Const of rank ", rank));
    }
    const std::vector<int64_t> dims = Dims(*filter);
    if (node.op() == "_FusedQuantizedDepthwiseConv2D") {
      *channels = dims[2] * dims[3];
    } else if (node.op() == "_QuantizedMatMul") {
      *channels = BoolAttr(node, "transpose_b") ? dims[0] : dims[1];
    } else {
      *channels = dims[3];
    }
    if (*channels <= 0) return Refuse(node, "its filter has no output channels");
    const NodeDef* bias = Const(node, 2);
    if (bias == nullptr || TypeAttr(*bias, "dtype") != kFloat || Dims(*bias).size() != 1 ||
        Dims(*bias)[0] != *channels) {
      return Refuse(node, absl::StrCat("its bias must be a float Const of shape [", *channels,
                                       "], one value per output channel"));
    }
    return absl::OkStatus();
  }

  // The filter's range: one value, or one per output channel, both alike.
  absl::Status CheckFilterRange(const NodeDef& node, int first, int64_t channels) const {
    int64_t counts[2];
    for (int k = 0; k < 2; ++k) {
      const NodeDef* range = Const(node, first + k);
      if (range == nullptr || TypeAttr(*range, "dtype") != kFloat) {
        return Refuse(node, absl::StrCat("filter range input ", first + k,
                                         " must be a float Const"));
      }
      counts[k] = Elements(Dims(*range));
      if (counts[k] != 1 && counts[k] != channels) {
        return Refuse(node, absl::StrCat(
            "filter range '", absl::Utf8SafeCHexEscape(range->name()), "' holds ", counts[k],
            " values; it needs 1 or one per output channel (", channels, ")"));
      }
    }
    if (counts[0] != counts[1]) {
      return Refuse(node, "its filter's min and max ranges differ in size");
    }
    return absl::OkStatus();
  }

  absl::Status CheckFusedConv(const NodeDef& node) const {
    const std::vector<std::string> fused = FusedOps(node);
    const FusedForm* form = nullptr;
    for (const FusedForm& candidate : kConvForms) {
      if (candidate.ops == fused) form = &candidate;
    }
    if (form == nullptr) {
      return Refuse(node, absl::StrCat(
          "fused_ops [", absl::StrJoin(fused, ", "),
          "] is not a list leangraph has proved TensorFlow's int8 kernel runs; it runs "
          "[BiasAdd, Requantize], [BiasAdd, Relu, Requantize] and "
          "[BiasAdd, Sum, Relu, Requantize]"));
    }
    const DataType input = TypeAttr(node, "Tinput");
    const DataType out = TypeAttr(node, "out_type");
    if (input != kQInt8 && input != kQUInt8) return Refuse(node, "'Tinput' must be qint8 or quint8");
    if (TypeAttr(node, "Tfilter") != kQInt8) return Refuse(node, "'Tfilter' must be qint8");
    if (TypeAttr(node, "Tbias") != kFloat) return Refuse(node, "'Tbias' must be float");
    if (out != kQInt8 && out != kQUInt8) {
      return Refuse(node, "'out_type' must be qint8 or quint8 (its fused ops end in Requantize)");
    }
    const int sum = form->sum ? 1 : 0;
    if (form->sum) {
      // A signed output aborts the process (the kernel then wants a float
      // summand), and a signed summand is read as unsigned.
      if (out != kQUInt8 || TypeAttr(node, "Tsummand") != kQUInt8) {
        return Refuse(node, "its Sum fusion has a signed output or summand; TensorFlow's "
                            "int8 kernel takes only quint8 for both");
      }
      if (Const(node, 3) != nullptr) {
        return Refuse(node, "the summand of its Sum fusion is a Const, which TensorFlow's "
                            "int8 kernel crashes on");
      }
    }
    const int arity = 9 + 3 * sum;
    std::vector<DataType> inputs = {input, kQInt8, kFloat};
    if (form->sum) inputs.push_back(kQUInt8);
    inputs.resize(arity, kFloat);
    absl::Status status = CheckHostTypes(node, inputs, {out, kFloat, kFloat});
    if (!status.ok()) return status;
    if (node.input_size() < arity || (node.input_size() > arity &&
                                      !ParseEdge(node.input(arity)).control)) {
      return Refuse(node, absl::StrCat("it has ", node.input_size(), " inputs; its fused ops "
                                       "need ", arity));
    }
    if (StringAttr(node, "data_format") != "NHWC") return Refuse(node, "data_format must be NHWC");
    status = CheckWindow(node, "strides", true);
    if (status.ok()) status = CheckWindow(node, "dilations", false);
    if (status.ok()) status = CheckPadding(node, true);
    if (!status.ok()) return status;
    // oneDNN's conv indexes its input as NHWC and CHECK-fails on another rank (measured).
    status = NeedRank(node, 0, 4);
    if (status.ok() && form->sum) status = NeedRank(node, 3, 4);
    if (!status.ok()) return status;
    int64_t channels = 0;
    status = CheckWeights(node, 4, &channels);
    if (!status.ok()) return status;
    // Input ranges, the filter's, the summand's, then the output's.
    for (const int i : {3 + sum, 4 + sum}) {
      status = NeedOneValue(node, i, false);
      if (!status.ok()) return status;
    }
    status = CheckFilterRange(node, 5 + sum, channels);
    if (!status.ok()) return status;
    for (int i = 7 + sum; i < arity; ++i) {
      status = NeedOneValue(node, i, false);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

  absl::Status CheckFusedMatMul(const NodeDef& node) const {
    const std::vector<std::string> fused = FusedOps(node);
    bool known = false;
    for (const auto& form : kMatMulForms) known = known || form == fused;
    if (!known) {
      return Refuse(node, absl::StrCat(
          "fused_ops [", absl::StrJoin(fused, ", "),
          "] is not a list leangraph has proved TensorFlow's int8 kernel runs; it runs "
          "[BiasAdd, Dequantize], [BiasAdd, Relu, Dequantize], [BiasAdd, Requantize] and "
          "[BiasAdd, Relu, Requantize]"));
    }
    const bool requantized = fused.back() == "Requantize";
    const DataType input = TypeAttr(node, "T1");
    const DataType out = TypeAttr(node, "Tout");
    if (input != kQInt8 && input != kQUInt8) return Refuse(node, "'T1' must be qint8 or quint8");
    if (TypeAttr(node, "T2") != kQInt8) return Refuse(node, "'T2' must be qint8");
    if (TypeAttr(node, "Tbias") != kFloat) return Refuse(node, "'Tbias' must be float");
    if (!requantized && out != kFloat) {
      return Refuse(node, "'Tout' must be float (its fused ops end in Dequantize)");
    }
    if (requantized && out != kQInt8 && out != kQUInt8) {
      return Refuse(node, "'Tout' must be qint8 or quint8 (its fused ops end in Requantize)");
    }
    if (BoolAttr(node, "transpose_a")) return Refuse(node, "'transpose_a' must be false");
    // Input, weight, bias, the input's and weight's ranges, and with
    // Requantize the output's.
    const int arity = requantized ? 9 : 7;
    std::vector<DataType> inputs = {input, kQInt8};
    inputs.resize(arity, kFloat);
    std::vector<DataType> outputs = {out};
    if (requantized) outputs = {out, kFloat, kFloat};
    absl::Status status = CheckHostTypes(node, inputs, outputs);
    if (!status.ok()) return status;
    if (node.input_size() < arity ||
        (node.input_size() > arity && !ParseEdge(node.input(arity)).control)) {
      return Refuse(node, absl::StrCat("it has ", node.input_size(),
                                       " inputs; its fused ops need ", arity));
    }
    status = NeedRank(node, 0, 2);
    if (!status.ok()) return status;
    int64_t channels = 0;
    status = CheckWeights(node, 2, &channels);
    for (const int i : {3, 4}) {
      if (status.ok()) status = NeedOneValue(node, i, false);
    }
    if (status.ok()) status = CheckFilterRange(node, 5, channels);
    for (int i = 7; i < arity; ++i) {
      if (status.ok()) status = NeedOneValue(node, i, false);
    }
    return status;
  }

  absl::Status CheckPerAxis(const NodeDef& node) const {
    const int64_t axis = IntAttr(node, "axis", -1);
    if (axis == -1) {
      for (const int i : {1, 2}) {
        absl::Status status = NeedOneValue(node, i, false);
        if (!status.ok()) return status;
      }
      return absl::OkStatus();
    }
    if (axis < 0 || axis > 7) {
      return Refuse(node, absl::StrCat("axis ", axis, " is out of range"));
    }
    const int64_t min_count = Count(Input(node, 1));
    const int64_t max_count = Count(Input(node, 2));
    if (min_count != max_count) {
      return Refuse(node, "its per-axis min and max ranges differ in size");
    }
    return absl::OkStatus();
  }

  absl::Status CheckConcat(const NodeDef& node) const {
    const int64_t n = IntAttr(node, "N", 0);
    if (n < 1 || node.input_size() < 3 * n + 1) {
      return Refuse(node, absl::StrCat("'N' = ", n, " does not fit its ", node.input_size(),
                                       " inputs"));
    }
    // QuantizedConcat: axis, values, mins, maxes; V2: values, axis, mins, maxes.
    for (int64_t i = n + 1; i < 3 * n + 1; ++i) {
      absl::Status status = NeedOneValue(node, static_cast<int>(i), false);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

  absl::Status CheckPool(const NodeDef& node) const {
    absl::Status status = NeedRank(node, 0, 4);
    if (status.ok()) status = CheckWindow(node, "ksize", true);
    if (status.ok()) status = CheckWindow(node, "strides", true);
    if (status.ok()) status = CheckPadding(node, false);
    return status;
  }

  std::unordered_map<std::string_view, const NodeDef*> index_;
};

}  // namespace

absl::Status CheckInt8Kernels(const GraphDef& graph) {
  const Int8Checker checker(graph);
  for (const NodeDef& node : graph.node()) {
    absl::Status status = checker.Check(node);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace leangraph
