#include "native/transforms/quantize_int8/emit.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/graph_def_util.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.pb.h"

namespace leangraph {
namespace quantize_int8 {
namespace {

using graph_util::Edge;
using graph_util::GraphIndex;
using tensorflow::DataType;
using tensorflow::GraphDef;
using tensorflow::NodeDef;
using tensorflow::Tensor;
using tensorflow::TensorShape;

DataType TypeForRange(const Range& range) { return range.lo >= 0 ? kU8 : kS8; }

NodeDef MakeScalar(const std::string& name, float value) {
  Tensor t(kFloat, TensorShape({}));
  t.scalar<float>()() = value;
  return graph_util::MakeFloatConst(name, t);
}

// A vector of one value (a bias-free conv's zero bias, a depthwise half's
// shift) is stored as that value and its length: TensorFlow repeats a
// tensor's last listed value (NASNetMobile: 165 such vectors, 0.3 % of its
// int8 file).
NodeDef MakeVector(const std::string& name, const std::vector<float>& values) {
  const bool uniform = !values.empty() &&
      std::all_of(values.begin(), values.end(), [&](float v) {
        return std::memcmp(&v, &values.front(), sizeof v) == 0;
      });
  if (!uniform || values.size() == 1) {
    Tensor t(kFloat, TensorShape({static_cast<int64_t>(values.size())}));
    std::copy(values.begin(), values.end(), t.flat<float>().data());
    return graph_util::MakeFloatConst(name, t);
  }
  NodeDef node;
  node.set_name(name);
  node.set_op("Const");
  (*node.mutable_attr())["dtype"].set_type(kFloat);
  auto* tensor = (*node.mutable_attr())["value"].mutable_tensor();
  tensor->set_dtype(kFloat);
  tensor->mutable_tensor_shape()->add_dim()->set_size(static_cast<int64_t>(values.size()));
  tensor->add_float_val(values.front());
  return node;
}

void SetTypes(NodeDef* node, const std::string& attr,
              const std::vector<DataType>& types) {
  auto* list = (*node->mutable_attr())[attr].mutable_list();
  list->Clear();
  for (const DataType t : types) list->add_type(t);
}

void CopyAttr(const NodeDef& from, const std::string& attr, NodeDef* to) {
  const auto it = from.attr().find(attr);
  if (it != from.attr().end()) (*to->mutable_attr())[attr] = it->second;
}

// The rewrite's constants are named q<N>/<role>, N counting the nodes they
// serve: names derived from the layer's (80 characters in NASNetMobile, each
// written once and read once or twice) were a twentieth of its int8 file.
// The node that reads them keeps its layer's name, so it says whose they are.
class ConstantNames {
 public:
  explicit ConstantNames(std::set<std::string>* taken) : taken_(taken) {}
  std::string NewScope() { return absl::StrCat("q", next_++, "/"); }
  std::string Name(const std::string& scope, const char* role) {
    return graph_util::UniqueName(scope + role, taken_);
  }

 private:
  std::set<std::string>* taken_;
  int64_t next_ = 0;
};

// Per-output-channel symmetric qint8 weights and their ranges.
void QuantizeWeight(const Unit& unit, GraphDef* out, const std::string& scope,
                    ConstantNames* names,
                    std::string* w, std::string* wmin, std::string* wmax) {
  const int64_t channels = unit.channels;
  const int64_t total = unit.weight.NumElements();
  const float* values = unit.weight.flat<float>().data();
  const std::vector<float> scale = ChannelScales(unit);
  Tensor q(kS8, unit.weight.shape());
  auto qflat = q.flat<tensorflow::qint8>();
  for (int64_t i = 0; i < total; ++i) qflat(i) = RoundWeight(values[i], scale[i % channels]);
  *w = names->Name(scope, "w");
  NodeDef* wnode = out->add_node();
  wnode->set_name(*w);
  wnode->set_op("Const");
  (*wnode->mutable_attr())["dtype"].set_type(kS8);
  q.AsProtoTensorContent((*wnode->mutable_attr())["value"].mutable_tensor());
  if (!unit.is_matmul) {
    // The conv kernels take each channel's range as max(|min|, |max|), so
    // one vector serves as both (a depthwise conv's ranges would otherwise
    // outweigh its 3x3 int8 weights).
    *wmin = names->Name(scope, "r");
    *wmax = *wmin;
    *out->add_node() = MakeVector(*wmin, scale);
    return;
  }
  std::vector<float> negated(scale.size());
  std::transform(scale.begin(), scale.end(), negated.begin(), [](float s) { return -s; });
  *wmin = names->Name(scope, "wmin");
  *wmax = names->Name(scope, "wmax");
  *out->add_node() = MakeVector(*wmin, negated);
  *out->add_node() = MakeVector(*wmax, scale);
}

// A requantizing conv's or matmul's output range (outputs 1 and 2) is the constant range
// it was given, and an 8-bit pool's is its input's: readers take those
// constants (q<N>/lo) instead of "<layer>_int8:1", a tenth of a narrow
// network's node bytes (NASNetMobile: 0.25 % of its int8 file). The graph
// computes the same, to the bit (tested). A QuantizeV2's output range is not
// its input range (qint8: -128/127 of it), so its readers keep reading it.
void ReadRangesFromConstants(GraphDef* out) {
  std::map<std::string, std::pair<std::string, std::string>> ranges;  // node -> min, max
  auto constant_range = [&](const std::string& min, const std::string& max)
      -> std::optional<std::pair<std::string, std::string>> {
    const Edge lo = graph_util::ParseEdge(min);
    const Edge hi = graph_util::ParseEdge(max);
    if (lo.control || hi.control) return std::nullopt;
    if (lo.port == 0 && hi.port == 0) return std::make_pair(min, max);
    const auto it = ranges.find(lo.node);
    if (lo.node == hi.node && lo.port == 1 && hi.port == 2 && it != ranges.end()) {
      return it->second;
    }
    return std::nullopt;
  };
  for (bool grown = true; grown;) {  // pools of pools
    grown = false;
    for (const NodeDef& node : out->node()) {
      if (ranges.count(node.name()) > 0) continue;
      std::optional<std::pair<std::string, std::string>> range;
      const auto fused = node.attr().find("fused_ops");
      if ((node.op() == "_FusedQuantizedConv2D" || node.op() == "_QuantizedMatMul" ||
           node.op() == "_FusedQuantizedDepthwiseConv2D") && fused != node.attr().end()) {
        const auto& ops = fused->second.list().s();
        int n = node.input_size();  // data inputs: control edges come last
        while (n > 0 && graph_util::ParseEdge(node.input(n - 1)).control) --n;
        if (!ops.empty() && ops[ops.size() - 1] == "Requantize" && n >= 2) {
          range = constant_range(node.input(n - 2), node.input(n - 1));
        }
      } else if ((node.op() == "QuantizedMaxPool" || node.op() == "QuantizedAvgPool") &&
                 node.input_size() == 3) {
        range = constant_range(node.input(1), node.input(2));
      }
      if (range) {
        ranges[node.name()] = *range;
        grown = true;
      }
    }
  }
  for (NodeDef& node : *out->mutable_node()) {
    for (int i = 0; i < node.input_size(); ++i) {
      const Edge edge = graph_util::ParseEdge(node.input(i));
      const auto it = ranges.find(edge.node);
      if (edge.control || it == ranges.end() || (edge.port != 1 && edge.port != 2)) continue;
      node.set_input(i, edge.port == 1 ? it->second.first : it->second.second);
    }
  }
}

// Every node `to` (transitively) reads.
std::set<std::string> Ancestors(const GraphIndex& index, const std::string& to) {
  std::set<std::string> seen;
  std::vector<std::string> stack = {to};
  while (!stack.empty()) {
    const NodeDef* node = index.Find(stack.back());
    stack.pop_back();
    if (node == nullptr) continue;
    for (const std::string& input : node->input()) {
      const std::string source = graph_util::ParseEdge(input).node;
      if (seen.insert(source).second) stack.push_back(source);
    }
  }
  return seen;
}

// oneDNN's Sum fusion writes its result into the summand's buffer (a graph
// whose summand was also read by an unordered Dequantize crashed, and ran
// once the reader was ordered first: measured). So every reader of a
// summand that the fused conv does not already wait for gets a control edge
// into it; ResolveSums made sure no such reader depends on the conv.
void OrderSummandReaders(const std::vector<std::pair<std::string, std::string>>& summands,
                         GraphDef* out) {
  if (summands.empty()) return;
  std::map<std::string, std::vector<std::string>> edges;
  {
    const GraphIndex index(*out);
    for (const auto& [conv, summand] : summands) {
      const std::set<std::string> before = Ancestors(index, conv);
      for (const auto& consumer : index.Consumers(summand)) {
        const std::string& reader = out->node(consumer.node).name();
        if (reader != conv && before.count(reader) == 0) edges[conv].push_back(reader);
      }
    }
  }
  for (NodeDef& node : *out->mutable_node()) {
    const auto it = edges.find(node.name());
    if (it == edges.end()) continue;
    std::set<std::string> added;
    for (const std::string& reader : it->second) {
      if (added.insert(reader).second) node.add_input("^" + reader);
    }
  }
}

// One emission: the graph being written, and what it has written so far
// that later nodes reuse.
class Emitter {
 public:
  Emitter(const GraphIndex& index, const GraphDef& in, const Options& options, Plan* plan,
          GraphDef* out)
      : index_(index), in_(in), options_(options), plan_(*plan), out_(out),
        constants_(&plan->taken) {}

  // The order of these calls is the order of the output's nodes and of the
  // names they take.
  void CopyNodes();
  // A zero Pad of an 8-bit tensor (see NamePads in plan.cc) as `qname`: the
  // tensor bitcast to the plain 8-bit type, padded, and bitcast back.
  void EmitPad(const NodeDef& pad, const std::string& qname);
  void EmitUnit(Unit& unit);
  void EmitDequantizes();
  absl::Status Finish(const std::vector<std::string>& inputs,
                      const std::vector<std::string>& outputs);

 private:
  // The 8-bit form of the tensor `edge`: a producer's own (unless
  // `from_float`: its Dequantize is read), or one QuantizeV2 per float
  // tensor that 8-bit units read, made on first use.
  Quantized QuantizeEdge(const Edge& edge, const Range& range, bool from_float = false);
  Quantized QuantizeShifted(const std::string& key, const std::string& name,
                            const std::string& scope, const std::string& lo_name,
                            const std::string& hi_name, const Range& calibrated);

  // A fused kernel's inputs (names and types, in the kernel's order) and
  // fused_ops, which the contraction's kind completes.
  struct Kernel {
    std::vector<std::string> inputs;
    std::vector<DataType> types;
    std::vector<std::string> fused;
  };
  // Appends "Requantize" and the unit's calibrated output range (two scalar
  // constants) as the kernel's last inputs.
  void Requantize(const Unit& unit, const std::string& scope, Kernel* kernel);
  // Dequantizes inside the kernel, or requantizes to the unit's output
  // range where only 8-bit units read it (see plan.cc).
  void MatMulKernel(const Unit& unit, const Quantized& source, const std::string& scope,
                    NodeDef* q, Kernel* kernel);
  // Adds the Sum fusion's summand (quantized on first use) and the output's
  // requantization range.
  void ConvKernel(const Unit& unit, const Quantized& source, const std::string& scope,
                  NodeDef* q, Kernel* kernel);

  const GraphIndex& index_;
  const GraphDef& in_;
  const Options& options_;
  Plan& plan_;
  GraphDef* out_;
  ConstantNames constants_;
  std::map<std::string, Quantized> quantized_inputs_;
  std::set<std::string> orphans_;  // constants the replaced nodes read
  std::vector<std::pair<std::string, std::string>> summands_;  // Sum conv, summand node
};

Quantized Emitter::QuantizeEdge(const Edge& edge, const Range& range, bool from_float) {
  if (edge.port == 0 && !from_float) {
    const auto it = plan_.producers.find(edge.node);
    if (it != plan_.producers.end()) return it->second;
  }
  const std::string key = graph_util::EdgeString(edge);
  const auto it = quantized_inputs_.find(key);
  if (it != quantized_inputs_.end()) return it->second;
  Quantized q;
  q.type = TypeForRange(range);
  float hi = std::max(std::fabs(range.hi), q.type == kU8 ? 0.0f : std::fabs(range.lo));
  const auto relu = plan_.absorbed.find(edge.node);
  if (relu != plan_.absorbed.end()) {
    q.type = kU8;
    hi = std::max(range.hi, 0.0f);
    if (index_.Find(relu->first)->op() == "Relu6") hi = std::min(hi, 6.0f);
  }
  hi = std::max(hi, kMinRange);
  const std::string base = absl::StrCat(
      edge.node, edge.port == 0 ? "" : absl::StrCat("_", edge.port), "_quantized");
  const std::string name = graph_util::UniqueName(base, &plan_.taken);
  const std::string scope = constants_.NewScope();
  const std::string lo_name = constants_.Name(scope, "min");
  const std::string hi_name = constants_.Name(scope, "max");
  const auto shifted = plan_.shifted_inputs.find(key);
  if (shifted != plan_.shifted_inputs.end()) {
    return QuantizeShifted(key, name, scope, lo_name, hi_name, shifted->second);
  }
  *out_->add_node() = MakeScalar(lo_name, q.type == kU8 ? 0.0f : -hi);
  *out_->add_node() = MakeScalar(hi_name, hi);
  NodeDef* node = out_->add_node();
  node->set_name(name);
  node->set_op("QuantizeV2");
  node->add_input(relu != plan_.absorbed.end() ? relu->second : key);
  node->add_input(lo_name);
  node->add_input(hi_name);
  (*node->mutable_attr())["T"].set_type(q.type);
  (*node->mutable_attr())["mode"].set_s("SCALED");
  (*node->mutable_attr())["round_mode"].set_s("HALF_TO_EVEN");
  (*node->mutable_attr())["narrow_range"].set_b(false);
  (*node->mutable_attr())["axis"].set_i(-1);
  (*node->mutable_attr())["ensure_minimum_range"].set_f(0.0f);
  q.value = name;
  q.min = name + ":1";
  q.max = name + ":2";
  quantized_inputs_[key] = q;
  return q;
}

// The convs read it as SCALED unsigned over [0, max - min].
Quantized Emitter::QuantizeShifted(const std::string& key, const std::string& name,
                                   const std::string& scope, const std::string& lo_name,
                                   const std::string& hi_name, const Range& calibrated) {
  const float width = std::max(calibrated.hi - calibrated.lo, kMinRange);
  const std::string zero = constants_.Name(scope, "smin");
  const std::string top = constants_.Name(scope, "smax");
  *out_->add_node() = MakeScalar(lo_name, calibrated.lo);
  *out_->add_node() = MakeScalar(hi_name, calibrated.lo + width);
  *out_->add_node() = MakeScalar(zero, 0.0f);
  *out_->add_node() = MakeScalar(top, width);
  std::string source = key;
  const auto padded = plan_.padded_readers.find(key);
  if (padded != plan_.padded_readers.end()) {
    const std::vector<int64_t>& p = padded->second->float_pad;
    Tensor amounts(tensorflow::DT_INT32, TensorShape({4, 2}));
    auto m = amounts.matrix<int32_t>();
    const int64_t values[8] = {0, 0, p[0], p[1], p[2], p[3], 0, 0};
    for (int i = 0; i < 8; ++i) m(i / 2, i % 2) = static_cast<int32_t>(values[i]);
    const std::string pad_name = graph_util::UniqueName(name + "/padded", &plan_.taken);
    const std::string amounts_name = constants_.Name(scope, "pad");
    NodeDef* consts = out_->add_node();
    consts->set_name(amounts_name);
    consts->set_op("Const");
    (*consts->mutable_attr())["dtype"].set_type(tensorflow::DT_INT32);
    amounts.AsProtoTensorContent((*consts->mutable_attr())["value"].mutable_tensor());
    NodeDef* pad = out_->add_node();
    pad->set_name(pad_name);
    pad->set_op("Pad");
    pad->add_input(key);
    pad->add_input(amounts_name);
    (*pad->mutable_attr())["T"].set_type(kFloat);
    (*pad->mutable_attr())["Tpaddings"].set_type(tensorflow::DT_INT32);
    source = pad_name;
  }
  NodeDef* node = out_->add_node();
  node->set_name(name);
  node->set_op("QuantizeV2");
  node->add_input(source);
  node->add_input(lo_name);
  node->add_input(hi_name);
  (*node->mutable_attr())["T"].set_type(kU8);
  (*node->mutable_attr())["mode"].set_s("MIN_FIRST");
  (*node->mutable_attr())["round_mode"].set_s("HALF_AWAY_FROM_ZERO");
  (*node->mutable_attr())["narrow_range"].set_b(false);
  (*node->mutable_attr())["axis"].set_i(-1);
  (*node->mutable_attr())["ensure_minimum_range"].set_f(0.0f);
  Quantized shifted_q{name, zero, top, kU8};
  quantized_inputs_[key] = shifted_q;
  return shifted_q;
}

// Every node the units do not absorb, as it was; the pools of 8-bit tensors
// as their quantized forms.
void Emitter::CopyNodes() {
  for (const NodeDef& node : in_.node()) {
    if (plan_.absorbed.count(node.name()) > 0) continue;
    if (plan_.replaced.count(node.name()) > 0) {
      for (const std::string& input : node.input()) {
        orphans_.insert(graph_util::ParseEdge(input).node);
      }
      continue;
    }
    const auto pad = plan_.pads.find(node.name());
    if (pad != plan_.pads.end()) {
      EmitPad(node, pad->second);
      continue;
    }
    const auto pool = plan_.pools.find(node.name());
    if (pool == plan_.pools.end()) {
      *out_->add_node() = node;
      continue;
    }
    for (const std::string& input : node.input()) {
      orphans_.insert(graph_util::ParseEdge(input).node);
    }
    const Quantized& source = plan_.producers.at(graph_util::ParseEdge(node.input(0)).node);
    NodeDef* q = out_->add_node();
    q->set_name(pool->second);
    q->set_op(node.op() == "MaxPool" ? "QuantizedMaxPool" : "QuantizedAvgPool");
    q->set_device(node.device());
    q->add_input(source.value);
    q->add_input(source.min);
    q->add_input(source.max);
    (*q->mutable_attr())["T"].set_type(source.type);
    CopyAttr(node, "ksize", q);
    CopyAttr(node, "strides", q);
    CopyAttr(node, "padding", q);
  }
}

void Emitter::EmitPad(const NodeDef& pad, const std::string& qname) {
  const Quantized& source = plan_.producers.at(graph_util::ParseEdge(pad.input(0)).node);
  const DataType plain = source.type == kU8 ? tensorflow::DT_UINT8 : tensorflow::DT_INT8;
  auto bitcast = [&](const std::string& name, const std::string& input, DataType from,
                     DataType to) {
    NodeDef* node = out_->add_node();
    node->set_name(name);
    node->set_op("Bitcast");
    node->set_device(pad.device());
    node->add_input(input);
    (*node->mutable_attr())["T"].set_type(from);
    (*node->mutable_attr())["type"].set_type(to);
  };
  const std::string raw = graph_util::UniqueName(qname + "/raw", &plan_.taken);
  const std::string padded = graph_util::UniqueName(qname + "/padded", &plan_.taken);
  bitcast(raw, source.value, source.type, plain);
  NodeDef* node = out_->add_node();
  *node = pad;
  node->set_name(padded);
  node->set_input(0, raw);
  (*node->mutable_attr())["T"].set_type(plain);
  bitcast(qname, padded, plain, source.type);
}

void Emitter::EmitUnit(Unit& unit) {
  const Quantized source = QuantizeEdge(unit.input, unit.in_range, unit.reads_dequantized);
  // Without VNNI, Conv2D's kernels saturate on unsigned inputs of 8-bit
  // weights (measured on an AVX2 EPYC, 1x1 convs reading a shifted input:
  // 15-25 dB with 8-bit weights, 35-41 dB with 7). Signed inputs, which
  // oneDNN shifts itself with halved weights, and its depthwise and matmul
  // kernels do not (32-42 dB with 8 bits, 2-8 dB less with 7, unsigned
  // inputs included), so they keep 8.
  if (options_.weight_bits == 7 && unit.contraction->op() == "Conv2D" && source.type == kU8) {
    unit.weight_levels = 63.0f;
  }
  ApplyShiftsTakenBack(&unit);
  std::string w, wmin, wmax;
  // A matmul takes its last node's name (below), so its constants carry
  // the unit's: quantized_units() reads it from its weights.
  const std::string scope = unit.is_matmul ? unit.qname + "/" : constants_.NewScope();
  QuantizeWeight(unit, out_, scope, &constants_, &w, &wmin, &wmax);
  const std::string bias = constants_.Name(scope, "b");
  *out_->add_node() = MakeVector(bias, unit.bias_values);
  NodeDef* q = out_->add_node();
  q->set_name(unit.qname);
  q->set_device(unit.contraction->device());
  Kernel kernel;
  kernel.inputs = {source.value, w, bias, source.min, source.max, wmin, wmax};
  kernel.types = {source.type, kS8, kFloat, kFloat, kFloat, kFloat, kFloat};
  kernel.fused = {"BiasAdd"};
  if (unit.act != nullptr) kernel.fused.push_back("Relu");
  if (unit.is_matmul) {
    MatMulKernel(unit, source, scope, q, &kernel);
  } else {
    ConvKernel(unit, source, scope, q, &kernel);
  }
  auto& attr = *q->mutable_attr();
  attr["is_bias_const"].set_b(true);
  SetTypes(q, "Thost_inputs", kernel.types);
  SetTypes(q, "Tdevice_inputs", {});
  SetTypes(q, "Tdevice_outputs", {});
  auto* fused_list = attr["fused_ops"].mutable_list();
  for (const std::string& f : kernel.fused) fused_list->add_s(f);
  for (const std::string& input : kernel.inputs) q->add_input(input);
  // A matmul takes the last node's name: a float output leaves its readers
  // untouched, and an 8-bit one is read under the name the plan gave it.
  if (unit.is_matmul) q->set_name(unit.last);
}

void Emitter::Requantize(const Unit& unit, const std::string& scope, Kernel* kernel) {
  kernel->fused.push_back("Requantize");
  const std::string lo = constants_.Name(scope, "lo");
  const std::string hi = constants_.Name(scope, "hi");
  *out_->add_node() = MakeScalar(lo, unit.out_range.lo);
  *out_->add_node() = MakeScalar(hi, unit.out_range.hi);
  kernel->inputs.push_back(lo);
  kernel->inputs.push_back(hi);
  kernel->types.push_back(kFloat);
  kernel->types.push_back(kFloat);
}

void Emitter::MatMulKernel(const Unit& unit, const Quantized& source, const std::string& scope,
                           NodeDef* q, Kernel* kernel) {
  auto& attr = *q->mutable_attr();
  q->set_op("_QuantizedMatMul");
  const DataType out = unit.requantized ? unit.out_type : kFloat;
  if (unit.requantized) {
    Requantize(unit, scope, kernel);
  } else {
    kernel->fused.push_back("Dequantize");
  }
  attr["T1"].set_type(source.type);
  attr["T2"].set_type(kS8);
  attr["Tbias"].set_type(kFloat);
  attr["Tout"].set_type(out);
  attr["U"].set_type(kFloat);
  attr["transpose_a"].set_b(false);
  attr["transpose_b"].set_b(false);
  attr["is_weight_const"].set_b(true);
  attr["input_quant_mode"].set_s("SCALED");
  attr["output_quant_mode"].set_s("SCALED");
  if (unit.requantized) {
    SetTypes(q, "Thost_outputs", {out, kFloat, kFloat});
  } else {
    SetTypes(q, "Thost_outputs", {kFloat});
  }
}

void Emitter::ConvKernel(const Unit& unit, const Quantized& source, const std::string& scope,
                         NodeDef* q, Kernel* kernel) {
  auto& attr = *q->mutable_attr();
  q->set_op(unit.contraction->op() == "Conv2D" ? "_FusedQuantizedConv2D"
                                               : "_FusedQuantizedDepthwiseConv2D");
  DataType summand_type = unit.out_type;
  if (unit.summed) {
    const auto range = Lookup(options_.ranges, unit.summand);
    const Quantized summand = QuantizeEdge(unit.summand, range ? *range : Range{0, 0});
    summands_.emplace_back(unit.qname, graph_util::ParseEdge(summand.value).node);
    summand_type = summand.type;
    // Order: input, filter, bias, summand, then the ranges of the input,
    // filter and summand.
    kernel->inputs.insert(kernel->inputs.begin() + 3, summand.value);
    kernel->types.insert(kernel->types.begin() + 3, summand.type);
    kernel->inputs.push_back(summand.min);
    kernel->inputs.push_back(summand.max);
    kernel->types.push_back(kFloat);
    kernel->types.push_back(kFloat);
    kernel->fused = {"BiasAdd", "Sum", "Relu"};
  }
  Requantize(unit, scope, kernel);
  attr["Tinput"].set_type(source.type);
  attr["Tfilter"].set_type(kS8);
  attr["Tbias"].set_type(kFloat);
  attr["out_type"].set_type(unit.out_type);
  attr["Tsummand"].set_type(summand_type);
  attr["data_format"].set_s("NHWC");
  attr["is_filter_const"].set_b(true);
  CopyAttr(*unit.contraction, "strides", q);
  CopyAttr(*unit.contraction, "dilations", q);
  CopyAttr(*unit.contraction, "padding", q);
  CopyAttr(*unit.contraction, "explicit_paddings", q);
  if (!unit.float_pad.empty()) attr["padding"].set_s("VALID");
  if (unit.pad != nullptr) {
    attr["padding"].set_s("EXPLICIT");
    auto* list = attr["explicit_paddings"].mutable_list();
    list->Clear();
    for (const int64_t p : unit.paddings) list->add_i(p);
  }
  SetTypes(q, "Thost_outputs", {unit.out_type, kFloat, kFloat});
}

// Float readers of 8-bit producers read a Dequantize under the producer's
// original name. A shifted one is read as MIN_FIRST, its zero at the
// shift: y = -c + q * (max + c) / 255 over the stored [0, max + c].
void Emitter::EmitDequantizes() {
  for (const std::string& name : plan_.needs_float) {
    const Quantized& producer = plan_.producers.at(name);
    NodeDef* dq = out_->add_node();
    dq->set_name(name);
    dq->set_op("Dequantize");
    dq->add_input(producer.value);
    const auto shifted = plan_.shifted_producers.find(name);
    if (shifted != plan_.shifted_producers.end()) {
      const Unit& unit = *shifted->second;
      const std::string scope = constants_.NewScope();
      const std::string lo = constants_.Name(scope, "smin");
      const std::string hi = constants_.Name(scope, "smax");
      *out_->add_node() = MakeScalar(lo, -unit.shift);
      *out_->add_node() = MakeScalar(hi, unit.out_range.hi - unit.shift);
      dq->add_input(lo);
      dq->add_input(hi);
      (*dq->mutable_attr())["mode"].set_s("MIN_FIRST");
    } else {
      dq->add_input(producer.min);
      dq->add_input(producer.max);
      (*dq->mutable_attr())["mode"].set_s("SCALED");
    }
    (*dq->mutable_attr())["T"].set_type(producer.type);
    (*dq->mutable_attr())["narrow_range"].set_b(false);
    (*dq->mutable_attr())["axis"].set_i(-1);
    (*dq->mutable_attr())["dtype"].set_type(kFloat);
  }
}

absl::Status Emitter::Finish(const std::vector<std::string>& inputs,
                              const std::vector<std::string>& outputs) {
  ReadRangesFromConstants(out_);
  OrderSummandReaders(summands_, out_);

  // Only constants the units absorbed may go; every other input keeps its
  // readers or is an endpoint.
  for (auto it = orphans_.begin(); it != orphans_.end();) {
    const NodeDef* node = index_.Find(*it);
    const bool constant = node != nullptr && (node->op() == "Const" || node->op() == "Identity");
    it = (constant && plan_.replaced.count(*it) == 0) ? std::next(it) : orphans_.erase(it);
  }
  std::set<std::string> keep(outputs.begin(), outputs.end());
  keep.insert(inputs.begin(), inputs.end());
  graph_util::RemoveOrphans(out_, orphans_, keep);
  *out_->mutable_library() = in_.library();
  *out_->mutable_versions() = in_.versions();
  // The new nodes carry every attribute, defaulted ones too, as the graph
  // checks and TF's own transforms expect.
  const tensorflow::Status filled = tensorflow::AddDefaultAttrsToGraphDef(
      out_, *tensorflow::OpRegistry::Global(), 0);
  if (!filled.ok()) {
    return absl::InternalError(absl::StrCat("quantize_int8: ", filled.message()));
  }
  return absl::OkStatus();
}


}  // namespace

absl::Status Emit(const GraphIndex& index, const GraphDef& in, const Options& options,
                  const std::vector<std::string>& inputs, const std::vector<std::string>& outputs,
                  Plan* plan, GraphDef* out) {
  Emitter emitter(index, in, options, plan, out);
  emitter.CopyNodes();
  for (Unit& unit : plan->units) emitter.EmitUnit(unit);
  emitter.EmitDequantizes();
  return emitter.Finish(inputs, outputs);
}

}  // namespace quantize_int8
}  // namespace leangraph
