// quantize_int8: float convolutions and matmuls become oneDNN's fused int8
// kernels (_FusedQuantizedConv2D, _FusedQuantizedDepthwiseConv2D,
// _QuantizedMatMul), which the stock TensorFlow CPU wheel runs on VNNI.
//
// A "unit" is a contraction with a constant weight, optionally followed by a
// BiasAdd of a constant and a Relu/Relu6, each the only reader of the one
// before. Weights are stored as per-output-channel symmetric qint8; the
// activations use the calibrated ranges given in `ranges` (from
// leangraph.calibrate): an input whose range is non-negative is quint8, any
// other qint8, both symmetric (mode SCALED; oneDNN ignores zero points). A
// conv unit requantizes its output to the frozen range of its last node
// (quint8 after a Relu, Relu6 as a Relu whose range is capped at 6), so a
// unit that reads another's output reads the 8-bit tensor directly; only
// where a float op or a graph output reads a unit is a Dequantize inserted,
// and it takes the last node's name so those readers are untouched. A
// MatMul unit dequantizes inside the kernel. MaxPool/AvgPool of an 8-bit
// tensor run 8-bit too. A zero Pad straight before a VALID conv becomes the
// conv's explicit padding (the quantized zero is 0 in SCALED mode).
//
// Units without a range for their input or output, or named in `exclude`,
// stay float. With probes=true every conv unit also gets a Dequantize under
// its last node's name and no Relu is absorbed, so every unit's input and
// output can be compared with the float graph; shifts=true keeps the unsigned
// hand-overs (see ResolveSums) in a probed graph.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "native/transform_context.h"
#include "native/transforms/graph_util.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/graph_def_util.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.pb.h"

namespace leangraph {
namespace {

using graph_util::Edge;
using graph_util::GraphIndex;
using tensorflow::DataType;
using tensorflow::GraphDef;
using tensorflow::NodeDef;
using tensorflow::Tensor;
using tensorflow::TensorShape;

constexpr DataType kFloat = tensorflow::DT_FLOAT;
constexpr DataType kU8 = tensorflow::DT_QUINT8;
constexpr DataType kS8 = tensorflow::DT_QINT8;

// Below this a range is treated as this wide: a dead channel or an all-zero
// tensor must not give oneDNN a zero scale.
constexpr float kMinRange = 1e-6f;

struct Range {
  float lo = 0;
  float hi = 0;
};

// "node" and "node:0" name the same tensor.
std::string TensorKey(const std::string& name) {
  Edge edge = graph_util::ParseEdge(name);
  return absl::StrCat(edge.node, ":", edge.port);
}

absl::StatusOr<std::map<std::string, Range>> ParseRanges(
    const std::string& text) {
  std::map<std::string, Range> ranges;
  for (absl::string_view entry : absl::StrSplit(text, ';', absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    const size_t eq = entry.rfind('=');
    std::vector<std::string> bounds;
    if (eq != absl::string_view::npos) {
      bounds = absl::StrSplit(entry.substr(eq + 1), ',');
    }
    Range range;
    if (eq == absl::string_view::npos || eq == 0 || bounds.size() != 2 ||
        !absl::SimpleAtof(absl::StripAsciiWhitespace(bounds[0]), &range.lo) ||
        !absl::SimpleAtof(absl::StripAsciiWhitespace(bounds[1]), &range.hi)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "quantize_int8: malformed range '", entry,
          "' (expected tensor=min,max; entries separated by ';')"));
    }
    const std::string name(absl::StripAsciiWhitespace(entry.substr(0, eq)));
    if (!std::isfinite(range.lo) || !std::isfinite(range.hi) ||
        range.lo > range.hi) {
      return absl::InvalidArgumentError(
          absl::StrCat("quantize_int8: the range of '", name, "' is [",
                       range.lo, ", ", range.hi,
                       "], which is not a finite interval"));
    }
    ranges[TensorKey(name)] = range;
  }
  return ranges;
}

struct Unit {
  const NodeDef* contraction = nullptr;
  const NodeDef* pad = nullptr;  // folded into explicit padding
  const NodeDef* bias = nullptr;
  const NodeDef* act = nullptr;  // Relu or Relu6
  std::string last;              // the node whose output the unit replaces
  Edge input;                    // the float tensor the unit reads
  std::vector<int64_t> paddings; // explicit paddings, NHWC, when `pad`
  Tensor weight;
  std::vector<float> bias_values;
  int64_t channels = 0;
  // The largest stored weight: 127, or 63 for kernels without VNNI (see
  // ChannelScales); set once the input's type is known.
  float weight_levels = 127.0f;
  // The shifts its input carries (see TakeShiftBack), taken off its bias
  // once its weights are rounded.
  float taken_back = 0.0f;
  Range in_range, out_range;
  bool is_matmul = false;
  DataType out_type = kS8;
  std::string qname;  // the quantized node
  // Sum fusion: an unactivated conv unit whose output is added to another
  // tensor of the same shape, then Relu'd, folds the add and the Relu in.
  // A linear add (no Relu after it) is fused too when its result can be
  // handed on shifted (see ResolveSums): sum_relu is then null.
  const NodeDef* sum_add = nullptr;
  const NodeDef* sum_relu = nullptr;
  Edge summand;
  Range sum_range;  // of the Relu, or of a linear add
  bool summed = false;  // the fusion is in use (see ResolveSums)
  // Shifted: the 8-bit output holds y + shift, unsigned (see ResolveSums).
  Range raw_out;  // the calibrated range of `last`, before SetOutput
  bool shifted = false;
  float shift = 0.0f;
  // Reads its float input padded in float first, then shifted (see below):
  // the paddings [top, bottom, left, right], and the conv runs VALID.
  std::vector<int64_t> float_pad;
};

// Output type and range of a unit ending at `act` (or at no activation).
void SetOutput(Unit* unit, const NodeDef* act, Range range) {
  unit->act = act;
  unit->out_type = act != nullptr ? kU8 : kS8;
  if (act != nullptr) {
    range.lo = 0;
    range.hi = std::max(range.hi, 0.0f);
    if (act->op() == "Relu6") range.hi = std::min(range.hi, 6.0f);
  } else {
    const float m = std::max(std::fabs(range.lo), std::fabs(range.hi));
    range = {-m, m};
  }
  range.hi = std::max(range.hi, kMinRange);
  if (unit->out_type == kS8) range.lo = -range.hi;
  unit->out_range = range;
}

bool HasControlInput(const NodeDef& node) {
  for (const std::string& input : node.input()) {
    if (!input.empty() && input[0] == '^') return true;
  }
  return false;
}

// The one node that reads `name` (port 0 only), or nullptr when there are
// several readers, another port or a control edge is read, or `name` is a
// graph endpoint.
const NodeDef* SoleReader(const GraphIndex& index, const GraphDef& graph,
                          const std::string& name,
                          const std::set<std::string>& endpoints) {
  if (endpoints.count(name) > 0 || !index.HasSingleDataConsumer(name)) {
    return nullptr;
  }
  const auto& consumers = index.Consumers(name);
  if (consumers.size() != 1) return nullptr;
  return &graph.node(consumers[0].node);
}

// Pad [[0,0],[t,b],[l,r],[0,0]] of zeros; nullopt for anything else.
std::optional<std::vector<int64_t>> SpatialZeroPad(const GraphIndex& index,
                                                   const NodeDef& pad) {
  if (pad.op() != "Pad" || pad.input_size() != 2 ||
      graph_util::TypeAttr(pad, "T") != kFloat || HasControlInput(pad)) {
    return std::nullopt;
  }
  const NodeDef* paddings = index.Find(graph_util::ParseEdge(pad.input(1)).node);
  if (paddings == nullptr || paddings->op() != "Const") return std::nullopt;
  Tensor value;
  const auto it = paddings->attr().find("value");
  if (it == paddings->attr().end() || !value.FromProto(it->second.tensor()) ||
      value.dims() != 2 || value.dim_size(0) != 4 || value.dim_size(1) != 2) {
    return std::nullopt;
  }
  std::vector<int64_t> out(8);
  for (int i = 0; i < 8; ++i) {
    if (value.dtype() == tensorflow::DT_INT32) {
      out[i] = value.flat<int32_t>()(i);
    } else if (value.dtype() == tensorflow::DT_INT64) {
      out[i] = value.flat<int64_t>()(i);
    } else {
      return std::nullopt;
    }
    if (out[i] < 0) return std::nullopt;
  }
  if (out[0] != 0 || out[1] != 0 || out[6] != 0 || out[7] != 0) {
    return std::nullopt;
  }
  return out;
}

std::optional<Range> Lookup(const std::map<std::string, Range>& ranges,
                            const Edge& edge) {
  const auto it = ranges.find(absl::StrCat(edge.node, ":", edge.port));
  if (it == ranges.end()) return std::nullopt;
  return it->second;
}

// Adds whose two inputs have provably the same shape (rank 4, every
// dimension known and equal, or both the unknown batch): only those may be a
// conv's Sum fusion, which does not broadcast.
std::set<std::string> SameShapeAdds(const GraphDef& graph) {
  std::set<std::string> out;
  graph_util::VisitInferredShapes(
      graph, [&out](const tensorflow::Node& node,
                    tensorflow::shape_inference::InferenceContext& c) {
        if ((node.type_string() != "AddV2" && node.type_string() != "Add") ||
            c.num_inputs() != 2) {
          return;
        }
        const auto a = c.input(0);
        const auto b = c.input(1);
        if (!c.RankKnown(a) || !c.RankKnown(b) || c.Rank(a) != 4 || c.Rank(b) != 4) return;
        for (int i = 0; i < 4; ++i) {
          const auto da = c.Dim(a, i);
          const auto db = c.Dim(b, i);
          const bool known = c.ValueKnown(da) && c.ValueKnown(db);
          if (known ? c.Value(da) != c.Value(db)
                    : (i != 0 || c.ValueKnown(da) || c.ValueKnown(db))) {
            return;
          }
        }
        out.insert(node.name());
      });
  return out;
}

// A unit rooted at `node`, or nullopt when `node` cannot be one.
std::optional<Unit> MatchUnit(const GraphIndex& index, const GraphDef& graph,
                              const NodeDef& node,
                              const std::map<std::string, Range>& ranges,
                              const std::set<std::string>& exclude,
                              const std::set<std::string>& endpoints,
                              const std::set<std::string>& same_shape_adds) {
  const std::string& op = node.op();
  if ((op != "Conv2D" && op != "DepthwiseConv2dNative" && op != "MatMul") ||
      graph_util::TypeAttr(node, "T") != kFloat || node.input_size() != 2 ||
      HasControlInput(node) || exclude.count(node.name()) > 0) {
    return std::nullopt;
  }
  Unit unit;
  unit.contraction = &node;
  unit.is_matmul = op == "MatMul";
  if (unit.is_matmul) {
    const auto ta = node.attr().find("transpose_a");
    if (ta != node.attr().end() && ta->second.b()) return std::nullopt;
  } else {
    if (graph_util::DataFormat(node) != "NHWC") return std::nullopt;
    const auto padding = node.attr().find("padding");
    if (padding == node.attr().end()) return std::nullopt;
  }
  const auto weight = graph_util::EvalFloat(index, graph_util::ParseEdge(node.input(1)));
  if (!weight || weight->dims() != (unit.is_matmul ? 2 : 4)) return std::nullopt;
  unit.weight = *weight;
  if (unit.is_matmul) {
    const auto tb = node.attr().find("transpose_b");
    const bool transposed = tb != node.attr().end() && tb->second.b();
    if (transposed) {
      // The kernel wants [K, N]; store it that way.
      Tensor flipped(kFloat, TensorShape({weight->dim_size(1), weight->dim_size(0)}));
      const auto src = weight->matrix<float>();
      auto dst = flipped.matrix<float>();
      for (int64_t i = 0; i < weight->dim_size(0); ++i) {
        for (int64_t j = 0; j < weight->dim_size(1); ++j) dst(j, i) = src(i, j);
      }
      unit.weight = flipped;
    }
    unit.channels = unit.weight.dim_size(1);
  } else if (op == "Conv2D") {
    unit.channels = weight->dim_size(3);
  } else {
    unit.channels = weight->dim_size(2) * weight->dim_size(3);
  }
  if (unit.channels <= 0) return std::nullopt;

  unit.input = graph_util::ParseEdge(node.input(0));
  if (!unit.is_matmul) {
    const NodeDef* pad = index.Find(unit.input.node);
    const auto padding = node.attr().at("padding").s();
    if (pad != nullptr && unit.input.port == 0 && padding == "VALID" &&
        SoleReader(index, graph, pad->name(), endpoints) == &node &&
        exclude.count(pad->name()) == 0) {
      if (auto paddings = SpatialZeroPad(index, *pad)) {
        unit.pad = pad;
        unit.paddings = *paddings;
        unit.input = graph_util::ParseEdge(pad->input(0));
      }
    }
  }

  unit.last = node.name();
  const NodeDef* next = SoleReader(index, graph, unit.last, endpoints);
  if (next != nullptr && next->op() == "BiasAdd" && next->input_size() == 2 &&
      graph_util::TypeAttr(*next, "T") == kFloat && !HasControlInput(*next) &&
      graph_util::DataFormat(*next) == "NHWC" &&
      graph_util::ParseEdge(next->input(0)).node == unit.last) {
    const auto bias = graph_util::EvalFloat(index, graph_util::ParseEdge(next->input(1)));
    if (bias && bias->NumElements() == unit.channels && bias->dims() == 1) {
      unit.bias = next;
      unit.bias_values.assign(bias->flat<float>().data(),
                              bias->flat<float>().data() + unit.channels);
      unit.last = next->name();
      next = SoleReader(index, graph, unit.last, endpoints);
    }
  }
  if (!unit.is_matmul && next != nullptr && same_shape_adds.count(next->name()) > 0 &&
      graph_util::TypeAttr(*next, "T") == kFloat && !HasControlInput(*next) &&
      next->input_size() == 2 && exclude.count(next->name()) == 0) {
    const Edge first = graph_util::ParseEdge(next->input(0));
    const Edge other = graph_util::ParseEdge(
        next->input(first.node == unit.last && first.port == 0 ? 1 : 0));
    const NodeDef* relu = SoleReader(index, graph, next->name(), endpoints);
    const NodeDef* source = index.Find(other.node);
    const auto relu_range =
        relu != nullptr ? Lookup(ranges, Edge{relu->name(), 0, false}) : std::nullopt;
    const auto add_range = Lookup(ranges, Edge{next->name(), 0, false});
    // A constant summand is never fused: one such probe crashed TensorFlow.
    // Nor is the unit's own input: the kernel writes into the summand.
    const bool summable = other.node != unit.last && source != nullptr &&
                          source->op() != "Const" && !other.control &&
                          !(other.node == unit.input.node && other.port == unit.input.port);
    if (summable && relu != nullptr && relu->op() == "Relu" && relu_range &&
        graph_util::TypeAttr(*relu, "T") == kFloat && !HasControlInput(*relu) &&
        exclude.count(relu->name()) == 0) {
      unit.sum_add = next;
      unit.sum_relu = relu;
      unit.summand = other;
      unit.sum_range = *relu_range;
    } else if (summable && add_range) {
      unit.sum_add = next;
      unit.summand = other;
      unit.sum_range = *add_range;
    }
  }
  if (next != nullptr && (next->op() == "Relu" || next->op() == "Relu6") &&
      graph_util::TypeAttr(*next, "T") == kFloat && !HasControlInput(*next) &&
      exclude.count(next->name()) == 0) {
    unit.act = next;
    unit.last = next->name();
  }
  if (exclude.count(unit.last) > 0) return std::nullopt;
  if (unit.bias_values.empty()) unit.bias_values.assign(unit.channels, 0.0f);

  auto in_range = Lookup(ranges, unit.input);
  if (!in_range && unit.pad != nullptr) {
    in_range = Lookup(ranges, Edge{unit.pad->name(), 0, false});
  }
  if (!in_range) return std::nullopt;
  unit.in_range = *in_range;
  if (!unit.is_matmul) {
    const auto out_range = Lookup(ranges, Edge{unit.last, 0, false});
    if (!out_range) return std::nullopt;
    unit.raw_out = *out_range;
    SetOutput(&unit, unit.act, *out_range);
  }
  return unit;
}

// Every node that (transitively) reads `from`.
std::set<std::string> Descendants(const GraphIndex& index, const GraphDef& graph,
                                  const std::string& from) {
  std::set<std::string> seen;
  std::vector<std::string> stack = {from};
  while (!stack.empty()) {
    const std::string name = stack.back();
    stack.pop_back();
    for (const auto& consumer : index.Consumers(name)) {
      const std::string& reader = graph.node(consumer.node).name();
      if (seen.insert(reader).second) stack.push_back(reader);
    }
  }
  return seen;
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

// A MaxPool/AvgPool the rewrite runs 8-bit when its input is 8-bit.
bool IsPoolable(const NodeDef& node, const std::set<std::string>& exclude) {
  return (node.op() == "MaxPool" || node.op() == "AvgPool") &&
         graph_util::TypeAttr(node, "T") == kFloat && node.input_size() == 1 &&
         graph_util::DataFormat(node) == "NHWC" && exclude.count(node.name()) == 0;
}

// The tensor a unit's 8-bit output stands for: its Relu or add when a Sum
// fusion is in use, else its last node.
std::string FinalName(const Unit& unit) {
  if (!unit.summed) return unit.last;
  return (unit.sum_relu != nullptr ? unit.sum_relu : unit.sum_add)->name();
}

bool IsPointwiseConv(const Unit& unit) {
  return unit.contraction->op() == "Conv2D" && unit.pad == nullptr &&
         unit.weight.dim_size(0) == 1 && unit.weight.dim_size(1) == 1;
}

// Each output channel's symmetric range, as the stored qint8 weights use it
// (every layout keeps the output channel innermost once flattened: Conv2D
// [H,W,I,O], depthwise [H,W,C,M] as C*M, MatMul [K,N]). The kernels read a
// stored q as q * range / 127; with 7-bit weights (weight_levels 63) the
// range is max|w| * 127 / 63, so the largest weight is stored as 63. Without
// VNNI, oneDNN multiplies u8 by s8 with vpmaddubsw, which adds each pair of
// products in 16 bits with saturation: 255 * 127 * 2 overflows it, and
// 255 * 63 * 2 does not.
std::vector<float> ChannelScales(const Unit& unit) {
  const int64_t channels = unit.channels;
  const float* values = unit.weight.flat<float>().data();
  std::vector<float> scale(channels, 0.0f);
  for (int64_t i = 0; i < unit.weight.NumElements(); ++i) {
    float& s = scale[i % channels];
    s = std::max(s, std::fabs(values[i]));
  }
  for (float& s : scale) s = std::max(s, kMinRange) * (127.0f / unit.weight_levels);
  return scale;
}

int8_t RoundWeight(float value, float scale) {
  const float v = std::nearbyint(value / scale * 127.0f);
  return static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f));
}

// A conv reading x + c everywhere (padding included) computes W (x + c): its
// bias takes c times the sum of each output channel's weights off, with W as
// the kernel holds it (rounded to 8 or 7 bits), so the correction is exact
// for the int8 kernel, not only for the float weights. The shifts add up
// here and come off in ApplyShiftsTakenBack, once the weights' rounding is
// known.
void TakeShiftBack(Unit* reader, float shift) { reader->taken_back += shift; }

void ApplyShiftsTakenBack(Unit* unit) {
  if (unit->taken_back == 0.0f) return;
  const int64_t channels = unit->channels;
  const std::vector<float> scale = ChannelScales(*unit);
  const float* w = unit->weight.flat<float>().data();
  for (int64_t i = 0; i < unit->weight.NumElements(); ++i) {
    const int64_t n = i % channels;
    unit->bias_values[n] -= unit->taken_back * RoundWeight(w[i], scale[n]) * scale[n] / 127.0f;
  }
  unit->taken_back = 0.0f;
}

// Decides the Sum fusions and the shifted outputs together, since each
// depends on the other.
//
// A Sum fusion needs an unsigned 8-bit summand: the oneDNN kernel reads a
// qint8 one wrongly (measured: half the result off) and refuses a float
// one. The summand qualifies when it is another unit's unsigned output
// (after a Relu, a Sum fusion, or shifted) or a float tensor calibrated
// non-negative (not a pool's, which may become 8-bit of either sign).
//
// A signed, unactivated output y of a conv unit is handed on unsigned as
// y + c, c = -min (the unit adds c through its bias; saturating at 0 is the
// range's own clipping), when every 8-bit reader can take c back exactly: a
// 1x1 conv without padding (its bias loses c * sum_k W[k,n]) or a Sum fusion
// reading it as the summand (its bias loses c); MaxPools pass it on and float
// readers dequantize it MIN_FIRST (see below). The range [0, max - min] is
// no coarser than the signed [-m, m], oneDNN's unsigned-input kernels are
// faster (8 middle-flow 1x1 convs of Xception: 6.8 ms signed, 5.4 ms
// unsigned, measured), and it lets a linear residual add (MobileNetV2's,
// EfficientNet's) run inside the conv as a Sum fusion, whose result is
// itself handed on shifted. Probe graphs compare every unit's dequantized
// output with the float graph; they shift nothing unless shifts=true.
//
// Flags only ever turn off, so repeating until nothing changes ends.
void ResolveSums(std::vector<Unit>* units, const GraphIndex& index, const GraphDef& graph,
                 const std::map<std::string, Range>& ranges,
                 const std::set<std::string>& endpoints, const std::set<std::string>& exclude,
                 bool allow_shifts) {
  // Calls visit(tensor, reader node, edge) for every data reader of a shifted
  // tensor `start`, looking through the MaxPools that pass the shift on (a
  // MaxPool of y + c holds max(y) + c).
  auto for_each_reader = [&](const std::string& start, const auto& visit) {
    std::vector<std::string> tensors = {start};
    while (!tensors.empty()) {
      const std::string name = tensors.back();
      tensors.pop_back();
      for (const auto& consumer : index.Consumers(name)) {
        if (consumer.edge.control) continue;
        const NodeDef& reader = graph.node(consumer.node);
        if (reader.op() == "MaxPool" && IsPoolable(reader, exclude) && consumer.edge.port == 0) {
          tensors.push_back(reader.name());
        } else {
          visit(name, reader, consumer.edge);
        }
      }
    }
  };
  // One add, one fusion: where two units could fuse the same add (a
  // projection shortcut and the main branch), the later one keeps it.
  std::map<std::string, Unit*> claims;
  for (Unit& unit : *units) {
    if (unit.sum_add == nullptr) continue;
    auto [it, fresh] = claims.emplace(unit.sum_add->name(), &unit);
    if (!fresh) {
      it->second->sum_add = nullptr;
      it->second->sum_relu = nullptr;
      it->second = &unit;
    }
  }
  for (Unit& unit : *units) unit.summed = unit.sum_add != nullptr;
  // The kernel accumulates into the summand's buffer: every other reader of
  // the summand must be able to run before it (see OrderSummandReaders). A
  // reader downstream of the fusion cannot, so that add stays float.
  for (Unit& unit : *units) {
    if (!unit.summed) continue;
    const NodeDef* end = unit.sum_relu != nullptr ? unit.sum_relu : unit.sum_add;
    const std::set<std::string> after = Descendants(index, graph, end->name());
    for (const auto& consumer : index.Consumers(unit.summand.node)) {
      if (after.count(graph.node(consumer.node).name()) > 0) unit.summed = false;
    }
  }
  for (Unit& unit : *units) {
    unit.shifted = allow_shifts && !unit.is_matmul &&
                   (unit.summed ? unit.sum_relu == nullptr : unit.act == nullptr);
  }
  auto is_unsigned = [](const Unit& p) {
    if (p.shifted) return true;
    if (p.summed) return p.sum_relu != nullptr;
    return p.act != nullptr;
  };
  for (bool changed = true; changed;) {
    std::map<std::string, const Unit*> by_final;
    std::map<std::string, std::vector<const Unit*>> by_reader;
    for (const Unit& unit : *units) {
      if (unit.is_matmul) continue;
      by_final[FinalName(unit)] = &unit;
    }
    for (const Unit& unit : *units) {
      by_reader[unit.contraction->name()].push_back(&unit);
      if (unit.pad != nullptr) by_reader[unit.pad->name()].push_back(&unit);
      if (unit.summed) by_reader[unit.sum_add->name()].push_back(&unit);
    }
    // Decided on this round's state, applied after it.
    std::vector<bool*> off;
    for (Unit& unit : *units) {
      if (unit.summed) {
        bool ok = false;
        const auto producer = by_final.find(unit.summand.node);
        if (unit.summand.port == 0 && producer != by_final.end()) {
          ok = is_unsigned(*producer->second);
        } else if (producer == by_final.end()) {
          const NodeDef* source = index.Find(unit.summand.node);
          const auto range = Lookup(ranges, unit.summand);
          if (source != nullptr && unit.summand.port == 0 && source->op() == "MaxPool" &&
              IsPoolable(*source, exclude)) {
            // A MaxPool of an unsigned unit output is that unit's 8-bit tensor, pooled.
            const Edge in = graph_util::ParseEdge(source->input(0));
            const auto pooled = by_final.find(in.node);
            ok = in.port == 0 && pooled != by_final.end() && is_unsigned(*pooled->second);
          } else {
            ok = source != nullptr && source->op() != "MaxPool" && source->op() != "AvgPool" &&
                 range && range->lo >= 0;
          }
        }
        // A linear add's result is only 8-bit when it is handed on shifted.
        if (unit.sum_relu == nullptr) ok = ok && unit.shifted;
        if (!ok) off.push_back(&unit.summed);
      }
      if (unit.shifted) {
        // Float readers get a Dequantize with the shift taken off; an 8-bit
        // reader must take it back itself (a MaxPool passes it on to its own
        // readers), and at least one must: for float readers alone the shift
        // buys no kernel, and [min, max] keeps no headroom below the calibrated
        // minimum that the signed [-m, m] has (measured: DenseNet121 40.4 vs
        // 38.7 dB, MobileNetV3Small 35.4 vs 33.3 dB when every output shifts).
        bool ok = true, taken_back = false;
        for_each_reader(FinalName(unit), [&](const std::string& name, const NodeDef& reader,
                                             const Edge& edge) {
          const auto readers = by_reader.find(reader.name());
          if (readers == by_reader.end()) {
            // Any other pool of an 8-bit tensor runs 8-bit too, shifted or not.
            ok = ok && reader.op() != "MaxPool" && reader.op() != "AvgPool";
            return;
          }
          bool takes_it_back = false;
          for (const Unit* r : readers->second) {
            const bool as_input = r->contraction->name() == reader.name() &&
                                  r->input.node == name && r->input.port == 0 &&
                                  edge.port == 0 && IsPointwiseConv(*r);
            const bool as_summand = r->summed && r->sum_add->name() == reader.name() &&
                                    r->summand.node == name && r->summand.port == 0 &&
                                    edge.port == 0;
            takes_it_back = takes_it_back || as_input || as_summand;
          }
          ok = ok && takes_it_back;
          taken_back = taken_back || takes_it_back;
        });
        if (!ok || !taken_back) off.push_back(&unit.shifted);
      }
    }
    for (bool* flag : off) *flag = false;
    changed = !off.empty();
  }

  std::map<std::string, Unit*> by_contraction, by_sum_add;
  for (Unit& unit : *units) {
    by_contraction[unit.contraction->name()] = &unit;
    if (unit.summed) by_sum_add[unit.sum_add->name()] = &unit;
  }
  for (Unit& unit : *units) {
    if (unit.summed) {
      unit.last = FinalName(unit);
      if (unit.sum_relu != nullptr) SetOutput(&unit, unit.sum_relu, unit.sum_range);
    }
    if (!unit.shifted) continue;
    const Range range = unit.summed ? unit.sum_range : unit.raw_out;
    unit.shift = std::max(0.0f, -range.lo);
    for (float& b : unit.bias_values) b += unit.shift;
    unit.out_type = kU8;
    unit.out_range = {0.0f, std::max(range.hi + unit.shift, kMinRange)};
  }
  // Each reader takes the shift back (through the MaxPools that pass it on).
  for (const Unit& unit : *units) {
    if (!unit.shifted || unit.shift == 0.0f) continue;
    for_each_reader(unit.last, [&](const std::string& name, const NodeDef& node, const Edge&) {
      const auto conv = by_contraction.find(node.name());
      if (conv != by_contraction.end() && conv->second->input.node == name) {
        TakeShiftBack(conv->second, unit.shift);
        conv->second->in_range = unit.out_range;
      }
      const auto sum = by_sum_add.find(node.name());
      if (sum != by_sum_add.end() && sum->second->summand.node == name) {
        for (float& b : sum->second->bias_values) b -= unit.shift;
      }
    });
  }
}

// The 8-bit form of a float tensor: its type and symmetric range.
struct Quantized {
  std::string value, min, max;
  DataType type = kS8;
};

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

// A requantizing conv's output range (outputs 1 and 2) is the constant range
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
      if ((node.op() == "_FusedQuantizedConv2D" ||
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

absl::Status QuantizeInt8(const GraphDef& in, const TransformContext& context,
                          GraphDef* out) {
  auto text = context.GetString("ranges", "");
  if (!text.ok()) return text.status();
  auto probes = context.GetBool("probes", false);
  if (!probes.ok()) return probes.status();
  // Probes shift nothing unless asked (shifts=true): the bias correction fits
  // each unit's error in the graph as it will run, unsigned hand-overs included.
  auto shifts = context.GetBool("shifts", !*probes);
  if (!shifts.ok()) return shifts.status();
  auto pad_inputs = context.GetBool("pad_inputs", false);
  if (!pad_inputs.ok()) return pad_inputs.status();
  const bool pad_float_inputs = *pad_inputs;
  auto weight_bits = context.GetInt("weight_bits", 8);
  if (!weight_bits.ok()) return weight_bits.status();
  if (*weight_bits != 7 && *weight_bits != 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quantize_int8: weight_bits must be 8 or 7 (for CPUs without VNNI), got ", *weight_bits));
  }
  if (text->empty()) {
    return absl::InvalidArgumentError(
        "quantize_int8 needs ranges=\"tensor=min,max;...\" (leangraph.calibrate "
        "computes them)");
  }
  auto ranges = ParseRanges(*text);
  if (!ranges.ok()) return ranges.status();
  std::set<std::string> exclude;
  for (const std::string& value : context.GetAll("exclude")) {
    for (absl::string_view name : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      exclude.insert(std::string(absl::StripAsciiWhitespace(name)));
    }
  }

  const GraphIndex index(in);
  for (const NodeDef& node : in.node()) {
    if (node.op() == "VariableV2" || node.op() == "VarHandleOp" ||
        node.op() == "Variable" || node.op() == "ReadVariableOp") {
      return absl::FailedPreconditionError(absl::StrCat(
          "quantize_int8: the graph is not frozen (", node.op(), " '",
          node.name(), "'); freeze it first (leangraph.freeze)"));
    }
  }
  for (const auto& [name, range] : *ranges) {
    const Edge edge = graph_util::ParseEdge(name);
    if (index.Find(edge.node) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "quantize_int8: ranges name '", name,
          "', which is not in the graph (were they calibrated on another graph?)"));
    }
  }
  for (const std::string& name : exclude) {
    if (index.Find(name) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "quantize_int8: exclude names '", name, "', which is not in the graph"));
    }
  }

  std::set<std::string> endpoints;
  for (const std::string& output : context.outputs) {
    endpoints.insert(graph_util::ParseEdge(output).node);
  }
  const std::set<std::string> same_shape_adds = SameShapeAdds(in);
  std::vector<Unit> units;
  for (const NodeDef& node : in.node()) {
    auto unit = MatchUnit(index, in, node, *ranges, exclude, endpoints, same_shape_adds);
    if (unit) units.push_back(std::move(*unit));
  }
  ResolveSums(&units, index, in, *ranges, endpoints, exclude, /*allow_shifts=*/*shifts);
  std::set<std::string> replaced;  // nodes the units absorb
  for (const Unit& unit : units) {
    replaced.insert(unit.contraction->name());
    if (unit.pad) replaced.insert(unit.pad->name());
    if (unit.bias) replaced.insert(unit.bias->name());
    if (unit.act) replaced.insert(unit.act->name());
    if (unit.summed) replaced.insert(unit.sum_add->name());
  }

  std::set<std::string> taken = graph_util::NodeNames(in);
  ConstantNames constants(&taken);
  for (Unit& unit : units) {
    unit.qname = graph_util::UniqueName(unit.contraction->name() + "_int8", &taken);
  }

  // 8-bit producers: conv units, then pools of their outputs, whose readers
  // can take the 8-bit tensor.
  std::map<std::string, Quantized> producers;
  for (const Unit& unit : units) {
    if (unit.is_matmul) continue;
    producers[unit.last] = {unit.qname, unit.qname + ":1", unit.qname + ":2",
                            unit.out_type};
  }
  std::map<std::string, std::string> pools;  // pool name -> its 8-bit node
  for (const NodeDef& node : in.node()) {
    if (!IsPoolable(node, exclude)) continue;
    const Edge source = graph_util::ParseEdge(node.input(0));
    const auto it = producers.find(source.node);
    if (source.port != 0 || it == producers.end()) continue;
    const std::string qname = graph_util::UniqueName(node.name() + "_int8", &taken);
    pools[node.name()] = qname;
    producers[node.name()] = {qname, qname + ":1", qname + ":2", it->second.type};
  }

  // What each node's readers need: the 8-bit readers are units and pools.
  std::set<std::string> needs_float;  // producers a float op or endpoint reads
  auto reads_8bit = [&](const NodeDef& reader, const Edge& edge) {
    if (edge.control || edge.port != 0) return false;
    if (pools.count(reader.name()) > 0) return true;
    for (const Unit& unit : units) {
      if (unit.contraction->name() == reader.name() ||
          (unit.pad != nullptr && unit.pad->name() == reader.name())) {
        return unit.input.node == edge.node && unit.input.port == 0;
      }
      if (unit.summed && unit.sum_add->name() == reader.name()) {
        return unit.summand.node == edge.node && unit.summand.port == 0;
      }
    }
    return false;
  };
  for (const auto& [name, producer] : producers) {
    if (*probes || endpoints.count(name) > 0) needs_float.insert(name);
    for (const auto& consumer : index.Consumers(name)) {
      const NodeDef& reader = in.node(consumer.node);
      if (replaced.count(reader.name()) > 0 && reads_8bit(reader, consumer.edge)) continue;
      if (pools.count(reader.name()) > 0 && !consumer.edge.control) continue;
      needs_float.insert(name);
    }
  }

  // A Relu/Relu6 read only by 8-bit units is the clamp of an unsigned
  // QuantizeV2 of its input (negatives saturate to 0, and Relu6's cap is the
  // range's top), so it goes.
  std::map<std::string, std::string> absorbed;  // relu -> the tensor it read
  for (const Unit& unit : units) {
    const NodeDef* relu = index.Find(unit.input.node);
    if (unit.input.port != 0 || relu == nullptr ||
        (relu->op() != "Relu" && relu->op() != "Relu6") ||
        graph_util::TypeAttr(*relu, "T") != kFloat || relu->input_size() != 1 ||
        producers.count(relu->name()) > 0 || endpoints.count(relu->name()) > 0 ||
        replaced.count(relu->name()) > 0) {
      continue;
    }
    bool only_units = true;
    for (const auto& consumer : index.Consumers(relu->name())) {
      const NodeDef& reader = in.node(consumer.node);
      only_units = only_units && replaced.count(reader.name()) > 0 &&
                   reads_8bit(reader, consumer.edge);
    }
    if (only_units && !*probes) absorbed[relu->name()] = relu->input(0);
  }

  // A float tensor of either sign that only 1x1 convs read 8-bit (an SE
  // block's product, a swish or hard-swish output) is quantized unsigned with
  // its minimum as zero (QuantizeV2 MIN_FIRST: q = (x - min) * 255 / (max -
  // min)), and each of those convs takes c = -min * sum_k W[k,n] off its
  // bias, as for shifted unit outputs: 255 levels over [min, max] instead of
  // 127 over [-m, m], and the faster unsigned-input kernels.
  std::map<std::string, Range> shifted_inputs;  // edge -> its calibrated range
  {
    // The units reading each float tensor; a tensor some unit sums is never shifted.
    std::map<std::string, std::vector<Unit*>> readers;
    std::set<std::string> summed;
    for (Unit& unit : units) {
      if (unit.summed) summed.insert(graph_util::EdgeString(unit.summand));
      if (unit.input.port == 0 && (producers.count(unit.input.node) > 0 ||
                                   absorbed.count(unit.input.node) > 0)) {
        continue;  // reads an 8-bit tensor
      }
      readers[graph_util::EdgeString(unit.input)].push_back(&unit);
    }
    auto shift = [&](const std::string& key, const Range& range, const std::vector<Unit*>& group) {
      shifted_inputs[key] = range;
      for (Unit* r : group) {
        TakeShiftBack(r, -range.lo);
        r->in_range = {0.0f, std::max(range.hi - range.lo, kMinRange)};
      }
    };
    // Also a VALID conv that alone reads such a tensor (no padding to hold c).
    // With pad_inputs=true a SAME one too (an EfficientNet depthwise reading a
    // swish): the tensor is padded in float, with zeros, before the shift, and
    // the conv runs VALID, so its padding holds c as well and the same
    // correction is exact. Off by default: the float Pad costs about what the
    // finer grid gains (measured: MobileNetV2, whose stem it pads, 1.02x
    // slower [0.99, 1.05] for no SQNR gain; EfficientNetV2B0 +0.8 dB).
    std::map<std::string, std::pair<Unit*, Range>> to_pad;  // conv name -> it, its input range
    for (const auto& [key, group] : readers) {
      const auto range = Lookup(*ranges, group.front()->input);
      if (summed.count(key) > 0 || !range || range->lo >= 0 || range->hi <= 0) continue;
      if (std::all_of(group.begin(), group.end(), [](const Unit* u) { return IsPointwiseConv(*u); })) {
        shift(key, *range, group);
        continue;
      }
      Unit* only = group.front();
      if (group.size() != 1 || only->is_matmul || only->pad != nullptr) continue;
      const auto padding = only->contraction->attr().find("padding");
      if (padding == only->contraction->attr().end()) continue;
      if (padding->second.s() == "VALID") {
        shift(key, *range, group);
      } else if (padding->second.s() == "SAME" && pad_float_inputs) {
        to_pad[only->contraction->name()] = {only, *range};
      }
    }
    if (!to_pad.empty()) {  // the paddings need the input's spatial size
      graph_util::VisitInferredShapes(in, [&](const tensorflow::Node& node,
                                              tensorflow::shape_inference::InferenceContext& c) {
        const auto found = to_pad.find(node.name());
        if (found == to_pad.end() || !c.RankKnown(c.input(0)) || c.Rank(c.input(0)) != 4) return;
        Unit& unit = *found->second.first;
        std::vector<int64_t> pads;
        for (int axis : {1, 2}) {
          const auto dim = c.Dim(c.input(0), axis);
          if (!c.ValueKnown(dim)) return;
          const int64_t size = c.Value(dim);
          const int64_t k = unit.weight.dim_size(axis - 1);
          const auto& strides = unit.contraction->attr().at("strides").list();
          const auto dil = unit.contraction->attr().find("dilations");
          const int64_t stride = strides.i_size() == 4 ? strides.i(axis) : 1;
          const int64_t dilation =
              dil != unit.contraction->attr().end() && dil->second.list().i_size() == 4
                  ? dil->second.list().i(axis) : 1;
          const int64_t out = (size + stride - 1) / stride;
          const int64_t total =
              std::max<int64_t>((out - 1) * stride + (k - 1) * dilation + 1 - size, 0);
          pads.push_back(total / 2);
          pads.push_back(total - total / 2);
        }
        unit.float_pad = pads;
        shift(graph_util::EdgeString(unit.input), found->second.second, {&unit});
      });
    }
  }
  std::map<std::string, const Unit*> padded_readers;  // edge -> the unit that pads it
  for (const Unit& unit : units) {
    if (!unit.float_pad.empty()) padded_readers[graph_util::EdgeString(unit.input)] = &unit;
  }

  // One QuantizeV2 per float tensor that 8-bit units read.
  std::map<std::string, Quantized> quantized_inputs;
  auto quantize_edge = [&](const Edge& edge, const Range& range) -> Quantized {
    if (edge.port == 0) {
      const auto it = producers.find(edge.node);
      if (it != producers.end()) return it->second;
    }
    const std::string key = graph_util::EdgeString(edge);
    const auto it = quantized_inputs.find(key);
    if (it != quantized_inputs.end()) return it->second;
    Quantized q;
    q.type = TypeForRange(range);
    float hi = std::max(std::fabs(range.hi), q.type == kU8 ? 0.0f : std::fabs(range.lo));
    const auto relu = absorbed.find(edge.node);
    if (relu != absorbed.end()) {
      q.type = kU8;
      hi = std::max(range.hi, 0.0f);
      if (index.Find(relu->first)->op() == "Relu6") hi = std::min(hi, 6.0f);
    }
    hi = std::max(hi, kMinRange);
    const std::string base = absl::StrCat(
        edge.node, edge.port == 0 ? "" : absl::StrCat("_", edge.port), "_quantized");
    const std::string name = graph_util::UniqueName(base, &taken);
    const std::string scope = constants.NewScope();
    const std::string lo_name = constants.Name(scope, "min");
    const std::string hi_name = constants.Name(scope, "max");
    const auto shifted = shifted_inputs.find(key);
    if (shifted != shifted_inputs.end()) {
      // The convs read it as SCALED unsigned over [0, max - min].
      const Range& calibrated = shifted->second;
      const float width = std::max(calibrated.hi - calibrated.lo, kMinRange);
      const std::string zero = constants.Name(scope, "smin");
      const std::string top = constants.Name(scope, "smax");
      *out->add_node() = MakeScalar(lo_name, calibrated.lo);
      *out->add_node() = MakeScalar(hi_name, calibrated.lo + width);
      *out->add_node() = MakeScalar(zero, 0.0f);
      *out->add_node() = MakeScalar(top, width);
      std::string source = key;
      const auto padded = padded_readers.find(key);
      if (padded != padded_readers.end()) {
        const std::vector<int64_t>& p = padded->second->float_pad;
        Tensor amounts(tensorflow::DT_INT32, TensorShape({4, 2}));
        auto m = amounts.matrix<int32_t>();
        const int64_t values[8] = {0, 0, p[0], p[1], p[2], p[3], 0, 0};
        for (int i = 0; i < 8; ++i) m(i / 2, i % 2) = static_cast<int32_t>(values[i]);
        const std::string pad_name = graph_util::UniqueName(name + "/padded", &taken);
        const std::string amounts_name = constants.Name(scope, "pad");
        NodeDef* consts = out->add_node();
        consts->set_name(amounts_name);
        consts->set_op("Const");
        (*consts->mutable_attr())["dtype"].set_type(tensorflow::DT_INT32);
        amounts.AsProtoTensorContent((*consts->mutable_attr())["value"].mutable_tensor());
        NodeDef* pad = out->add_node();
        pad->set_name(pad_name);
        pad->set_op("Pad");
        pad->add_input(key);
        pad->add_input(amounts_name);
        (*pad->mutable_attr())["T"].set_type(kFloat);
        (*pad->mutable_attr())["Tpaddings"].set_type(tensorflow::DT_INT32);
        source = pad_name;
      }
      NodeDef* node = out->add_node();
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
      quantized_inputs[key] = shifted_q;
      return shifted_q;
    }
    *out->add_node() = MakeScalar(lo_name, q.type == kU8 ? 0.0f : -hi);
    *out->add_node() = MakeScalar(hi_name, hi);
    NodeDef* node = out->add_node();
    node->set_name(name);
    node->set_op("QuantizeV2");
    node->add_input(relu != absorbed.end() ? relu->second : key);
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
    quantized_inputs[key] = q;
    return q;
  };

  std::set<std::string> orphans;  // constants the replaced nodes read
  for (const NodeDef& node : in.node()) {
    if (absorbed.count(node.name()) > 0) continue;
    if (replaced.count(node.name()) > 0) {
      for (const std::string& input : node.input()) {
        orphans.insert(graph_util::ParseEdge(input).node);
      }
      continue;
    }
    const auto pool = pools.find(node.name());
    if (pool == pools.end()) {
      *out->add_node() = node;
      continue;
    }
    for (const std::string& input : node.input()) {
      orphans.insert(graph_util::ParseEdge(input).node);
    }
    const Quantized& source = producers.at(graph_util::ParseEdge(node.input(0)).node);
    NodeDef* q = out->add_node();
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

  std::vector<std::pair<std::string, std::string>> summands;  // Sum conv, summand node
  for (Unit& unit : units) {
    const Quantized source = quantize_edge(unit.input, unit.in_range);
    // Without VNNI, Conv2D's kernels saturate on unsigned inputs of 8-bit
    // weights (measured on an AVX2 EPYC, 1x1 convs reading a shifted input:
    // 15-25 dB with 8-bit weights, 35-41 dB with 7). Signed inputs, which
    // oneDNN shifts itself with halved weights, and its depthwise and matmul
    // kernels do not (32-42 dB with 8 bits, 2-8 dB less with 7, unsigned
    // inputs included), so they keep 8.
    if (*weight_bits == 7 && unit.contraction->op() == "Conv2D" && source.type == kU8) {
      unit.weight_levels = 63.0f;
    }
    ApplyShiftsTakenBack(&unit);
    std::string w, wmin, wmax;
    // A matmul takes its last node's name (below), so its constants carry
    // the unit's: quantized_units() reads it from its weights.
    const std::string scope = unit.is_matmul ? unit.qname + "/" : constants.NewScope();
    QuantizeWeight(unit, out, scope, &constants, &w, &wmin, &wmax);
    const std::string bias = constants.Name(scope, "b");
    *out->add_node() = MakeVector(bias, unit.bias_values);
    NodeDef* q = out->add_node();
    q->set_name(unit.qname);
    q->set_device(unit.contraction->device());
    auto& attr = *q->mutable_attr();
    std::vector<std::string> inputs = {source.value, w, bias, source.min, source.max,
                                       wmin, wmax};
    std::vector<DataType> types = {source.type, kS8, kFloat, kFloat, kFloat, kFloat, kFloat};
    std::vector<std::string> fused = {"BiasAdd"};
    if (unit.act != nullptr) fused.push_back("Relu");
    if (unit.is_matmul) {
      q->set_op("_QuantizedMatMul");
      fused.push_back("Dequantize");
      attr["T1"].set_type(source.type);
      attr["T2"].set_type(kS8);
      attr["Tbias"].set_type(kFloat);
      attr["Tout"].set_type(kFloat);
      attr["U"].set_type(kFloat);
      attr["transpose_a"].set_b(false);
      attr["transpose_b"].set_b(false);
      attr["is_weight_const"].set_b(true);
      attr["input_quant_mode"].set_s("SCALED");
      attr["output_quant_mode"].set_s("SCALED");
      SetTypes(q, "Thost_outputs", {kFloat});
    } else {
      q->set_op(unit.contraction->op() == "Conv2D" ? "_FusedQuantizedConv2D"
                                                   : "_FusedQuantizedDepthwiseConv2D");
      DataType summand_type = unit.out_type;
      if (unit.summed) {
        const auto range = Lookup(*ranges, unit.summand);
        const Quantized summand = quantize_edge(unit.summand, range ? *range : Range{0, 0});
        summands.emplace_back(unit.qname, graph_util::ParseEdge(summand.value).node);
        summand_type = summand.type;
        // Order: input, filter, bias, summand, then the ranges of the input,
        // filter and summand.
        inputs.insert(inputs.begin() + 3, summand.value);
        types.insert(types.begin() + 3, summand.type);
        inputs.push_back(summand.min);
        inputs.push_back(summand.max);
        types.push_back(kFloat);
        types.push_back(kFloat);
        fused = {"BiasAdd", "Sum", "Relu"};
      }
      fused.push_back("Requantize");
      const std::string lo = constants.Name(scope, "lo");
      const std::string hi = constants.Name(scope, "hi");
      *out->add_node() = MakeScalar(lo, unit.out_range.lo);
      *out->add_node() = MakeScalar(hi, unit.out_range.hi);
      inputs.push_back(lo);
      inputs.push_back(hi);
      types.push_back(kFloat);
      types.push_back(kFloat);
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
    attr["is_bias_const"].set_b(true);
    SetTypes(q, "Thost_inputs", types);
    SetTypes(q, "Tdevice_inputs", {});
    SetTypes(q, "Tdevice_outputs", {});
    auto* fused_list = attr["fused_ops"].mutable_list();
    for (const std::string& f : fused) fused_list->add_s(f);
    for (const std::string& input : inputs) q->add_input(input);
    // A matmul's output is float already: it takes the last node's name, so
    // its readers are untouched.
    if (unit.is_matmul) q->set_name(unit.last);
  }

  // Float readers of 8-bit producers read a Dequantize under the producer's
  // original name. A shifted one is read as MIN_FIRST, its zero at the
  // shift: y = -c + q * (max + c) / 255 over the stored [0, max + c].
  std::map<std::string, const Unit*> shifted_units;
  for (const Unit& unit : units) {
    if (unit.shifted && unit.shift != 0.0f) shifted_units[unit.last] = &unit;
  }
  for (bool grown = true; grown;) {  // MaxPools pass a shift on
    grown = false;
    for (const auto& [pool, qname] : pools) {
      const NodeDef* node = index.Find(pool);
      const auto source = shifted_units.find(graph_util::ParseEdge(node->input(0)).node);
      if (node->op() == "MaxPool" && source != shifted_units.end() &&
          shifted_units.count(pool) == 0) {
        shifted_units[pool] = source->second;
        grown = true;
      }
    }
  }
  for (const std::string& name : needs_float) {
    const Quantized& producer = producers.at(name);
    NodeDef* dq = out->add_node();
    dq->set_name(name);
    dq->set_op("Dequantize");
    dq->add_input(producer.value);
    const auto shifted = shifted_units.find(name);
    if (shifted != shifted_units.end()) {
      const Unit& unit = *shifted->second;
      const std::string scope = constants.NewScope();
      const std::string lo = constants.Name(scope, "smin");
      const std::string hi = constants.Name(scope, "smax");
      *out->add_node() = MakeScalar(lo, -unit.shift);
      *out->add_node() = MakeScalar(hi, unit.out_range.hi - unit.shift);
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

  ReadRangesFromConstants(out);
  OrderSummandReaders(summands, out);

  // Only constants the units absorbed may go; every other input keeps its
  // readers or is an endpoint.
  for (auto it = orphans.begin(); it != orphans.end();) {
    const NodeDef* node = index.Find(*it);
    const bool constant = node != nullptr && (node->op() == "Const" || node->op() == "Identity");
    it = (constant && replaced.count(*it) == 0) ? std::next(it) : orphans.erase(it);
  }
  std::set<std::string> keep(context.outputs.begin(), context.outputs.end());
  keep.insert(context.inputs.begin(), context.inputs.end());
  graph_util::RemoveOrphans(out, orphans, keep);
  *out->mutable_library() = in.library();
  *out->mutable_versions() = in.versions();
  // The new nodes carry every attribute, defaulted ones too, as the graph
  // checks and TF's own transforms expect.
  const tensorflow::Status filled = tensorflow::AddDefaultAttrsToGraphDef(
      out, *tensorflow::OpRegistry::Global(), 0);
  if (!filled.ok()) {
    return absl::InternalError(absl::StrCat("quantize_int8: ", filled.message()));
  }
  return absl::OkStatus();
}

}  // namespace

LEANGRAPH_REGISTER_TRANSFORM(
    "quantize_int8", QuantizeInt8, "ranges=, exclude=, probes=false, shifts=!probes, pad_inputs=false, weight_bits=8",
    "calibrated convs/matmuls -> oneDNN's fused int8 kernels (VNNI or AVX2)");

}  // namespace leangraph
