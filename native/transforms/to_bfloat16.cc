// to_bfloat16: rewrites the float compute of a frozen graph to bfloat16, so
// any TensorFlow runtime on a CPU with AVX512_BF16/AMX runs oneDNN's bf16
// kernels without session options, and the weights take half the file.
//
// Policy (the same shape as Grappler's auto mixed precision, decided once,
// offline):
//  - "compute" ops (convolutions, matmuls) become bf16 whenever they fit;
//  - "follow" ops (bias, activations, pooling, adds, shape plumbing) become
//    bf16 only when one of their float inputs already is bf16, so no cast
//    pair is created around an isolated cheap op;
//  - a Const whose every consumer reads it as bf16 is stored as bf16
//    (round to nearest even); Placeholders, the named outputs and every op
//    without a bf16 CPU kernel keep float;
//  - a Cast is inserted once per crossing tensor, only where a bf16 region
//    meets a float one;
//  - then a bf16 Conv2D + BiasAdd with a same-shape residual Add (and the
//    Relu that alone reads it) becomes one oneDNN conv with a sum post-op
//    (fuse_residual_add.cc; fuse_residual=false keeps them apart): Grappler
//    leaves those Adds and Relus to Eigen, whose bf16 element-wise kernels
//    are slow, and cannot fuse them itself.
// Anything that does not fit (unexpected attrs, dtypes or input counts, no
// registered kernel) is left as it is: the transform never fails a graph.
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "native/transform_context.h"
#include "native/transforms/fuse_residual_add.h"
#include "native/transforms/graph_util.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/kernel_def.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.pb.h"
#include "tensorflow/core/framework/tensor_shape.pb.h"
#include "tensorflow/core/framework/types.pb.h"

namespace leangraph {
namespace {

using tensorflow::DataType;
using tensorflow::GraphDef;
using tensorflow::NodeDef;

enum class Role { kCompute, kFollow };

// Which data inputs carry the type attribute. kAllButLast is ConcatV2's
// layout (N values, then the int32 axis); kAll is AddN's.
enum class Inputs { kList, kAll, kAllButLast };

struct OpSpec {
  Role role;
  Inputs layout;
  std::vector<int> typed_inputs;  // for Inputs::kList
};

// Ops that oneDNN (or a cheap Eigen kernel) runs in bf16 on CPU. Only
// output 0 of each carries the type attribute "T"; FusedBatchNormV3's
// statistics outputs stay float (attr U).
const std::map<std::string, OpSpec>& Specs() {
  static const auto* specs = new std::map<std::string, OpSpec>{
      {"Conv2D", {Role::kCompute, Inputs::kList, {0, 1}}},
      {"DepthwiseConv2dNative", {Role::kCompute, Inputs::kList, {0, 1}}},
      {"Conv2DBackpropInput", {Role::kCompute, Inputs::kList, {1, 2}}},
      {"MatMul", {Role::kCompute, Inputs::kList, {0, 1}}},
      {"BatchMatMulV2", {Role::kCompute, Inputs::kList, {0, 1}}},
      {"BiasAdd", {Role::kFollow, Inputs::kList, {0, 1}}},
      {"FusedBatchNormV3", {Role::kFollow, Inputs::kList, {0}}},
      {"Relu", {Role::kFollow, Inputs::kList, {0}}},
      {"Relu6", {Role::kFollow, Inputs::kList, {0}}},
      {"Elu", {Role::kFollow, Inputs::kList, {0}}},
      {"LeakyRelu", {Role::kFollow, Inputs::kList, {0}}},
      {"MaxPool", {Role::kFollow, Inputs::kList, {0}}},
      {"AvgPool", {Role::kFollow, Inputs::kList, {0}}},
      {"Add", {Role::kFollow, Inputs::kList, {0, 1}}},
      {"AddV2", {Role::kFollow, Inputs::kList, {0, 1}}},
      {"Sub", {Role::kFollow, Inputs::kList, {0, 1}}},
      {"Mul", {Role::kFollow, Inputs::kList, {0, 1}}},
      {"Maximum", {Role::kFollow, Inputs::kList, {0, 1}}},
      {"Minimum", {Role::kFollow, Inputs::kList, {0, 1}}},
      {"AddN", {Role::kFollow, Inputs::kAll, {}}},
      {"Mean", {Role::kFollow, Inputs::kList, {0}}},
      {"ConcatV2", {Role::kFollow, Inputs::kAllButLast, {}}},
      {"Pad", {Role::kFollow, Inputs::kList, {0}}},
      {"Reshape", {Role::kFollow, Inputs::kList, {0}}},
      {"Squeeze", {Role::kFollow, Inputs::kList, {0}}},
      {"ExpandDims", {Role::kFollow, Inputs::kList, {0}}},
      {"Transpose", {Role::kFollow, Inputs::kList, {0}}},
      {"Identity", {Role::kFollow, Inputs::kList, {0}}},
      {"StopGradient", {Role::kFollow, Inputs::kList, {0}}},
      // Activations and elementwise math of modern blocks: swish and SE
      // gates (Sigmoid, Mul), hard-swish (RealDiv by 6), GELU's Neg, layer
      // norm (SquaredDifference, Rsqrt). Left float on purpose: Exp, Log,
      // Pow and Sum, whose bf16 results drift (Grappler's mixed-precision
      // deny list keeps them float too), and Erf/Erfc, whose bf16 CPU
      // kernels are scalar: ConvNeXtTiny's 17 Erfc took 34.8 ms in bf16 and
      // 6.9 ms in fp32 (RunMetadata step stats, this machine).
      {"Sigmoid", {Role::kFollow, Inputs::kList, {0}}},
      {"Tanh", {Role::kFollow, Inputs::kList, {0}}},
      {"Softplus", {Role::kFollow, Inputs::kList, {0}}},
      {"Softsign", {Role::kFollow, Inputs::kList, {0}}},
      {"Selu", {Role::kFollow, Inputs::kList, {0}}},
      {"Softmax", {Role::kFollow, Inputs::kList, {0}}},
      {"Neg", {Role::kFollow, Inputs::kList, {0}}},
      {"Abs", {Role::kFollow, Inputs::kList, {0}}},
      {"Square", {Role::kFollow, Inputs::kList, {0}}},
      {"Sqrt", {Role::kFollow, Inputs::kList, {0}}},
      {"Rsqrt", {Role::kFollow, Inputs::kList, {0}}},
      {"Reciprocal", {Role::kFollow, Inputs::kList, {0}}},
      {"RealDiv", {Role::kFollow, Inputs::kList, {0, 1}}},
      {"Div", {Role::kFollow, Inputs::kList, {0, 1}}},
      {"SquaredDifference", {Role::kFollow, Inputs::kList, {0, 1}}},
      // fuse_layer_norm's layer norm: x, gamma and beta in one type.
      {"_MklLayerNorm", {Role::kFollow, Inputs::kList, {0, 1, 2}}},
      {"ClipByValue", {Role::kFollow, Inputs::kList, {0, 1, 2}}},
      {"Max", {Role::kFollow, Inputs::kList, {0}}},
      // Shape plumbing between bf16 regions (NASNet's StridedSlice, ...).
      {"PadV2", {Role::kFollow, Inputs::kList, {0, 2}}},
      {"MirrorPad", {Role::kFollow, Inputs::kList, {0}}},
      {"StridedSlice", {Role::kFollow, Inputs::kList, {0}}},
      {"Slice", {Role::kFollow, Inputs::kList, {0}}},
      {"Pack", {Role::kFollow, Inputs::kAll, {}}},
      {"DepthToSpace", {Role::kFollow, Inputs::kList, {0}}},
      {"SpaceToDepth", {Role::kFollow, Inputs::kList, {0}}},
      {"Conv3D", {Role::kCompute, Inputs::kList, {0, 1}}},
      {"MaxPool3D", {Role::kFollow, Inputs::kList, {0}}},
      {"AvgPool3D", {Role::kFollow, Inputs::kList, {0}}},
  };
  return *specs;
}

// "name:2" -> ("name", 2); "name" -> ("name", 0). Control inputs are never
// passed here.
std::pair<std::string, int> ParseTensor(const std::string& input) {
  graph_util::Edge edge = graph_util::ParseEdge(input);
  return {std::move(edge.node), edge.port};
}

std::string StripPort(const std::string& name) {
  std::string bare = name;
  if (!bare.empty() && bare[0] == '^') bare.erase(0, 1);
  return ParseTensor(bare).first;
}

bool IsControl(const std::string& input) {
  return !input.empty() && input[0] == '^';
}

// Data inputs only, in order; control inputs come last in a valid NodeDef
// but are skipped wherever they are.
std::vector<int> DataInputIndices(const NodeDef& node) {
  std::vector<int> indices;
  for (int i = 0; i < node.input_size(); ++i) {
    if (!IsControl(node.input(i))) indices.push_back(i);
  }
  return indices;
}

DataType AttrType(const NodeDef& node, const char* name) {
  const auto it = node.attr().find(name);
  if (it == node.attr().end() ||
      it->second.value_case() != tensorflow::AttrValue::kType) {
    return tensorflow::DT_INVALID;
  }
  return it->second.type();
}

// Positions (among the data inputs) that carry T, or empty when the node's
// shape does not match what the spec expects.
std::vector<int> TypedInputs(const NodeDef& node, const OpSpec& spec) {
  const int data_inputs = static_cast<int>(DataInputIndices(node).size());
  std::vector<int> typed;
  if (spec.layout == Inputs::kList) {
    for (const int i : spec.typed_inputs) {
      if (i >= data_inputs) return {};
      typed.push_back(i);
    }
    return typed;
  }
  const auto n = node.attr().find("N");
  if (n == node.attr().end() ||
      n->second.value_case() != tensorflow::AttrValue::kI) {
    return {};
  }
  const int count = static_cast<int>(n->second.i());
  const int expected = spec.layout == Inputs::kAll ? count : count + 1;
  if (count < 1 || data_inputs != expected) return {};
  for (int i = 0; i < count; ++i) typed.push_back(i);
  return typed;
}

// Whether this CPU build of TensorFlow registers a kernel for the node with
// T = bfloat16; asked of the kernel registry itself, so an op that TF
// cannot run in bf16 here is never rewritten.
bool HasBf16CpuKernel(const NodeDef& node) {
  NodeDef probe = node;
  probe.clear_device();
  probe.clear_input();
  (*probe.mutable_attr())["T"].set_type(tensorflow::DT_BFLOAT16);
  const tensorflow::KernelDef* def = nullptr;
  std::string kernel_class;
  return tensorflow::FindKernelDef(tensorflow::DeviceType("CPU"), probe, &def,
                                   &kernel_class)
      .ok();
}

// Whether the node may run in bf16 at all (its own attrs and kernels); the
// neighbourhood decides whether it will.
bool Eligible(const NodeDef& node, const OpSpec& spec) {
  if (AttrType(node, "T") != tensorflow::DT_FLOAT) return false;
  if (TypedInputs(node, spec).empty()) return false;
  if (node.op() == "FusedBatchNormV3") {
    const auto training = node.attr().find("is_training");
    if (training != node.attr().end() && training->second.b()) return false;
    if (AttrType(node, "U") != tensorflow::DT_FLOAT) return false;
  }
  return HasBf16CpuKernel(node);
}

// fp32 -> bf16, round to nearest even; NaN stays a (quiet) NaN.
uint16_t ToBf16(float value) {
  uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  }
  const uint32_t lsb = (bits >> 16) & 1u;
  bits += 0x7fffu + lsb;
  return static_cast<uint16_t>(bits >> 16);
}

// The float Const's value re-encoded as bf16, or false when its tensor is
// not a plain float tensor this code understands (it then stays float).
bool ConvertConstValue(const tensorflow::TensorProto& in,
                       tensorflow::TensorProto* out) {
  if (in.dtype() != tensorflow::DT_FLOAT) return false;
  if (in.tensor_shape().unknown_rank()) return false;
  int64_t elements = 1;
  for (const auto& dim : in.tensor_shape().dim()) {
    if (dim.size() < 0) return false;
    elements *= dim.size();
  }
  out->Clear();
  out->set_dtype(tensorflow::DT_BFLOAT16);
  *out->mutable_tensor_shape() = in.tensor_shape();
  if (!in.tensor_content().empty()) {
    if (static_cast<int64_t>(in.tensor_content().size()) !=
        elements * static_cast<int64_t>(sizeof(float))) {
      return false;
    }
    std::string content(static_cast<size_t>(elements) * sizeof(uint16_t), '\0');
    const char* src = in.tensor_content().data();
    for (int64_t i = 0; i < elements; ++i) {
      float value = 0;
      std::memcpy(&value, src + i * sizeof(float), sizeof(float));
      const uint16_t half = ToBf16(value);
      std::memcpy(&content[i * sizeof(uint16_t)], &half, sizeof(half));
    }
    out->set_tensor_content(content);
    return true;
  }
  // float_val may hold fewer values than elements (the last one repeats);
  // half_val keeps that meaning, so a splat stays a splat.
  if (in.float_val_size() > elements) return false;
  if (in.float_val_size() == 0 && elements > 0) return false;
  for (const float value : in.float_val()) out->add_half_val(ToBf16(value));
  return true;
}

// Whether every element of a bf16 tensor is +0 or -0.
bool AllZero(const tensorflow::TensorProto& tensor) {
  const std::string& bytes = tensor.tensor_content();
  for (size_t i = 0; i + 1 < bytes.size(); i += 2) {
    uint16_t value = 0;
    std::memcpy(&value, bytes.data() + i, sizeof(value));
    if ((value & 0x7fffu) != 0) return false;
  }
  for (const int value : tensor.half_val()) {
    if ((value & 0x7fff) != 0) return false;
  }
  return true;
}

// bf16's smallest normal number, 2^-126.
constexpr uint16_t kTinyBf16 = 0x0080;

// The same tensor with every element 2^-126.
void FillTiny(tensorflow::TensorProto* tensor) {
  if (!tensor->tensor_content().empty()) {
    std::string content(tensor->tensor_content().size(), '\0');
    for (size_t i = 0; i + 1 < content.size(); i += 2) {
      std::memcpy(&content[i], &kTinyBf16, sizeof(kTinyBf16));
    }
    tensor->set_tensor_content(content);
  }
  for (int i = 0; i < tensor->half_val_size(); ++i) {
    tensor->set_half_val(i, kTinyBf16);
  }
}

class Rewriter {
 public:
  Rewriter(const GraphDef& graph, const TransformContext& context,
           bool exact_zero_bias)
      : graph_(graph), exact_zero_bias_(exact_zero_bias) {
    for (const std::string& output : context.outputs) {
      pinned_.insert(StripPort(output));
    }
    for (const std::string& input : context.inputs) {
      pinned_.insert(StripPort(input));
    }
    for (const std::string& name : context.GetAll("exclude_node")) {
      pinned_.insert(name);
    }
    for (const std::string& op : context.GetAll("exclude_op")) {
      excluded_ops_.insert(op);
    }
    for (int i = 0; i < graph.node_size(); ++i) {
      index_[graph.node(i).name()] = i;
      names_.insert(graph.node(i).name());
    }
  }

  void Run(GraphDef* out) {
    ChooseNodes();
    ChooseConsts();
    if (!exact_zero_bias_) KeepZeroBiasesFusable();
    Emit(out);
  }

 private:
  const NodeDef* Find(const std::string& name) const {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : &graph_.node(it->second);
  }

  const OpSpec* SpecOf(const NodeDef& node) const {
    if (pinned_.count(node.name()) || excluded_ops_.count(node.op())) {
      return nullptr;
    }
    const auto it = Specs().find(node.op());
    return it == Specs().end() ? nullptr : &it->second;
  }

  // Whether the tensor "name:port" is bf16 after the rewrite decided so far.
  bool IsBf16Tensor(const std::string& input) const {
    const auto [name, port] = ParseTensor(input);
    if (port != 0) return false;
    return converted_.count(name) > 0 || bf16_consts_.count(name) > 0;
  }

  // Every (reader, data position) of output 0 of each node; readers of
  // other ports are recorded under the port-qualified name and never count
  // as bf16 readers.
  void IndexReaders() {
    for (const NodeDef& node : graph_.node()) {
      const std::vector<int> data = DataInputIndices(node);
      for (int i = 0; i < static_cast<int>(data.size()); ++i) {
        const auto [name, port] = ParseTensor(node.input(data[i]));
        readers_[name].push_back({&node, port == 0 ? i : -1});
      }
    }
  }

  // Whether every data reader of the node's outputs is a converted node
  // reading output 0 at a typed position (and there is at least one).
  bool AllReadersBf16(const NodeDef& node) const {
    const auto it = readers_.find(node.name());
    if (it == readers_.end() || it->second.empty()) return false;
    for (const auto& [reader, position] : it->second) {
      if (position < 0 || !converted_.count(reader->name())) return false;
      bool typed = false;
      for (const int i : TypedInputs(*reader, *SpecOf(*reader))) {
        typed = typed || i == position;
      }
      if (!typed) return false;
    }
    return true;
  }

  void ChooseNodes() {
    IndexReaders();
    std::vector<const NodeDef*> followers;
    for (const NodeDef& node : graph_.node()) {
      const OpSpec* spec = SpecOf(node);
      if (spec == nullptr || !Eligible(node, *spec)) continue;
      if (spec->role == Role::kCompute) {
        converted_.insert(node.name());
      } else {
        followers.push_back(&node);
      }
    }
    // Spread from the compute ops through the follow ops until nothing
    // changes: forward when a typed input is already bf16, backward for a
    // one-input op (Identity, Reshape, Pad, ...) whose every reader is bf16,
    // so e.g. Const -> Identity -> Conv2D stores its weights as bf16. Frozen
    // graphs are usually in topological order, so this takes few passes.
    bool changed = true;
    while (changed) {
      changed = false;
      for (const NodeDef* node : followers) {
        if (converted_.count(node->name())) continue;
        const std::vector<int> data = DataInputIndices(*node);
        const std::vector<int> typed = TypedInputs(*node, *SpecOf(*node));
        bool convert = typed.size() == 1 && AllReadersBf16(*node);
        for (const int i : typed) {
          convert = convert || IsBf16Tensor(node->input(data[i]));
        }
        if (convert) {
          converted_.insert(node->name());
          changed = true;
        }
      }
    }
  }

  // A float Const becomes bf16 when every data edge out of it lands on a
  // typed input of a converted node; otherwise it stays float (and gets a
  // Cast for its bf16 readers).
  void ChooseConsts() {
    std::map<std::string, bool> all_bf16;  // const name -> every reader bf16
    for (const NodeDef& node : graph_.node()) {
      const std::vector<int> data = DataInputIndices(node);
      std::set<int> typed;
      if (converted_.count(node.name())) {
        for (const int i : TypedInputs(node, *SpecOf(node))) typed.insert(i);
      }
      for (int i = 0; i < static_cast<int>(data.size()); ++i) {
        const auto [name, port] = ParseTensor(node.input(data[i]));
        const NodeDef* producer = Find(name);
        if (producer == nullptr || producer->op() != "Const") continue;
        const bool reads_bf16 = typed.count(i) > 0 && port == 0;
        auto it = all_bf16.find(name);
        if (it == all_bf16.end()) {
          all_bf16[name] = reads_bf16;
        } else {
          it->second = it->second && reads_bf16;
        }
      }
    }
    for (const auto& [name, bf16] : all_bf16) {
      const NodeDef* node = Find(name);
      if (!bf16 || pinned_.count(name)) continue;
      if (AttrType(*node, "dtype") != tensorflow::DT_FLOAT) continue;
      const auto value = node->attr().find("value");
      if (value == node->attr().end()) continue;
      tensorflow::TensorProto converted;
      if (!ConvertConstValue(value->second.tensor(), &converted)) continue;
      bf16_consts_[name] = std::move(converted);
    }
  }

  // Grappler's constant folding deletes a BiasAdd whose bias is all zeros
  // (x + 0 = x), and with it the pattern its remapper needs to fuse a
  // contraction, its BiasAdd and the activation after it into one oneDNN
  // kernel; the activation then runs as an op of its own (untrained Keras
  // batch norms fold to zero biases: Xception keeps 35 separate Relu, about
  // 9 % of a bf16 run). So a zero bias read only by BiasAdds that follow a
  // converted Conv2D, DepthwiseConv2dNative or MatMul is stored as 2^-126,
  // bf16's smallest normal number: the BiasAdd survives, and in oneDNN's
  // fp32 accumulator x + 2^-126 == x for every |x| >= 2^-101. Exact zeros
  // with zero_bias=exact.
  void KeepZeroBiasesFusable() {
    static const auto* contractions = new std::set<std::string>{
        "Conv2D", "DepthwiseConv2dNative", "MatMul"};
    for (auto& [name, tensor] : bf16_consts_) {
      const auto it = readers_.find(name);
      if (it == readers_.end() || it->second.empty() || !AllZero(tensor)) {
        continue;
      }
      bool fusable = true;
      for (const auto& [reader, position] : it->second) {
        const NodeDef* producer =
            reader->op() == "BiasAdd" && position == 1 &&
                    converted_.count(reader->name())
                ? Find(ParseTensor(reader->input(0)).first)
                : nullptr;
        fusable = fusable && producer != nullptr &&
                  contractions->count(producer->op()) > 0 &&
                  converted_.count(producer->name()) > 0 &&
                  ParseTensor(reader->input(0)).second == 0;
      }
      if (fusable) FillTiny(&tensor);
    }
  }

  // The name of a Cast of `input` to `to`, created on first use and shared
  // by every later reader of the same tensor.
  std::string CastOf(const std::string& input, DataType to, GraphDef* out) {
    const auto key = std::make_pair(input, static_cast<int>(to));
    const auto it = casts_.find(key);
    if (it != casts_.end()) return it->second;
    const auto [producer, port] = ParseTensor(input);
    std::string base = producer;
    if (port != 0) absl::StrAppend(&base, "_", port);
    absl::StrAppend(&base, to == tensorflow::DT_BFLOAT16 ? "/to_bfloat16"
                                                         : "/to_float");
    NodeDef* cast = out->add_node();
    cast->set_name(graph_util::UniqueName(base, &names_));
    cast->set_op("Cast");
    cast->add_input(input);
    if (const NodeDef* source = Find(producer)) {
      cast->set_device(source->device());
    }
    auto& attr = *cast->mutable_attr();
    attr["SrcT"].set_type(to == tensorflow::DT_BFLOAT16
                              ? tensorflow::DT_FLOAT
                              : tensorflow::DT_BFLOAT16);
    attr["DstT"].set_type(to);
    attr["Truncate"].set_b(false);
    casts_[key] = cast->name();
    return cast->name();
  }

  void Emit(GraphDef* out) {
    for (const NodeDef& node : graph_.node()) {
      // Built aside and appended after its casts, so each Cast precedes its
      // reader and an ordered graph stays ordered.
      NodeDef rewritten = node;
      NodeDef* copy = &rewritten;
      const auto bf16_const = bf16_consts_.find(node.name());
      if (bf16_const != bf16_consts_.end()) {
        (*copy->mutable_attr())["dtype"].set_type(tensorflow::DT_BFLOAT16);
        *(*copy->mutable_attr())["value"].mutable_tensor() = bf16_const->second;
        *out->add_node() = std::move(rewritten);
        continue;
      }
      const bool converted = converted_.count(node.name()) > 0;
      std::set<int> typed;
      if (converted) {
        (*copy->mutable_attr())["T"].set_type(tensorflow::DT_BFLOAT16);
        for (const int i : TypedInputs(node, *SpecOf(node))) typed.insert(i);
      }
      const std::vector<int> data = DataInputIndices(node);
      for (int i = 0; i < static_cast<int>(data.size()); ++i) {
        const std::string& input = node.input(data[i]);
        const bool want_bf16 = typed.count(i) > 0;
        const bool is_bf16 = IsBf16Tensor(input);
        if (want_bf16 && !is_bf16) {
          copy->set_input(data[i],
                          CastOf(input, tensorflow::DT_BFLOAT16, out));
        } else if (!want_bf16 && is_bf16) {
          copy->set_input(data[i], CastOf(input, tensorflow::DT_FLOAT, out));
        }
      }
      *out->add_node() = std::move(rewritten);
    }
  }

  const GraphDef& graph_;
  const bool exact_zero_bias_;
  std::map<std::string, int> index_;
  std::set<std::string> names_;
  std::set<std::string> pinned_;  // inputs, outputs, exclude_node
  std::set<std::string> excluded_ops_;
  std::set<std::string> converted_;
  std::map<std::string, std::vector<std::pair<const NodeDef*, int>>> readers_;
  std::map<std::string, tensorflow::TensorProto> bf16_consts_;
  std::map<std::pair<std::string, int>, std::string> casts_;
};

absl::Status ToBfloat16(const GraphDef& in, const TransformContext& context,
                        GraphDef* out) {
  const auto zero_bias = context.GetString("zero_bias", "tiny");
  if (!zero_bias.ok()) return zero_bias.status();
  if (*zero_bias != "tiny" && *zero_bias != "exact") {
    return absl::InvalidArgumentError(absl::StrCat(
        "to_bfloat16: zero_bias must be 'tiny' or 'exact', not '", *zero_bias,
        "'"));
  }
  const auto fuse_residual = context.GetBool("fuse_residual", true);
  if (!fuse_residual.ok()) return fuse_residual.status();
  std::set<std::string> endpoints;
  for (const auto* names : {&context.inputs, &context.outputs}) {
    for (const std::string& name : *names) endpoints.insert(StripPort(name));
  }
  // tf.nn.silu's custom gradient leaves an IdentityN after every swish; its
  // float type list would split the bf16 region there, so readers of it
  // read its inputs instead.
  // The copy only when there is one.
  bool converted = false;
  for (const NodeDef& node : in.node()) {
    if (node.op() != "IdentityN") continue;
    GraphDef graph = in;
    graph_util::BypassIdentityN(&graph, endpoints);
    Rewriter(graph, context, *zero_bias == "exact").Run(out);
    converted = true;
    break;
  }
  if (!converted) Rewriter(in, context, *zero_bias == "exact").Run(out);
  if (*fuse_residual) FuseResidualAdds(out, endpoints, /*bfloat16_only=*/true);
  return absl::OkStatus();
}

}  // namespace

LEANGRAPH_REGISTER_TRANSFORM(
    "to_bfloat16", ToBfloat16,
    "exclude_op (repeatable), exclude_node (repeatable), zero_bias=tiny|exact, "
    "fuse_residual=true",
    "float compute (conv, matmul and what follows them) to bfloat16; bf16 "
    "weights, casts only at region boundaries; inputs/outputs stay float");

}  // namespace leangraph
