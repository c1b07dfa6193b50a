#include "native/transforms/quantize_int8/plan.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "native/transforms/quantize_int8/match.h"
#include "tensorflow/core/framework/attr_value.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"

namespace leangraph {
namespace quantize_int8 {
namespace {

using graph_util::Edge;
using graph_util::GraphIndex;
using tensorflow::GraphDef;
using tensorflow::NodeDef;

bool ReadsEightBit(const Plan& plan, const NodeDef& reader, const Edge& edge);

// A matmul unit whose every reader is an 8-bit unit hands its output on
// 8-bit: its kernel requantizes to the calibrated range, as a conv unit's
// does, and the readers take that tensor. Dequantizing inside the kernel
// and quantizing again for each reader costs a QuantizeV2 per hand-over,
// which at MLP sizes costs more than the matmul itself (a factorised
// Dense's rank-r pair has no activation between its two matmuls, so every
// such pair paid one: measured on a Zen 4 at batch 32, 35-80 us a
// QuantizeV2 against 15-30 us a matmul). Probed graphs keep the float
// form, so each unit's output can be compared with the float graph.
void PlanRequantizedMatMuls(const GraphIndex& index, const GraphDef& in, const Options& options,
                            const std::set<std::string>& endpoints, Plan* plan) {
  if (options.probes) return;
  for (Unit& unit : plan->units) {
    if (!unit.is_matmul || !unit.out_known || endpoints.count(unit.last) > 0) continue;
    const auto& consumers = index.Consumers(unit.last);
    const bool only_units =
        !consumers.empty() &&
        std::all_of(consumers.begin(), consumers.end(), [&](const auto& consumer) {
          const NodeDef& reader = in.node(consumer.node);
          return !consumer.edge.control && plan->replaced.count(reader.name()) > 0 &&
                 ReadsEightBit(*plan, reader, consumer.edge);
        });
    if (!only_units) continue;
    unit.requantized = true;
    // It takes its last node's name (see emit.cc).
    plan->producers[unit.last] = {unit.last, unit.last + ":1", unit.last + ":2",
                                  unit.out_type};
  }
}

// A zero Pad of a unit's 8-bit output that only pools read (ResNet's stem:
// ZeroPadding2D, then a VALID MaxPool) pads the 8-bit tensor, whose 0 is 0.0
// unless the unit hands it on shifted. TF's Pad of a quantized type is slow
// (a 112x112x64 quint8 tensor: 4.7 ms, against 0.09 ms for float and 0.03 ms
// for uint8, measured on a Zen 4), so the pad runs on a Bitcast to the plain
// 8-bit type and back: Dequantize, Pad, MaxPool and QuantizeV2 (0.31 ms)
// become two free Bitcasts, a Pad and a QuantizedMaxPool (0.13 ms).
void NamePads(const GraphIndex& index, const GraphDef& in, const Options& options,
              const std::set<std::string>& endpoints, Plan* plan) {
  std::map<std::string, const Unit*> by_last;
  for (const Unit& unit : plan->units) {
    if (!unit.is_matmul) by_last[unit.last] = &unit;
  }
  for (const NodeDef& node : in.node()) {
    if (!SpatialZeroPad(index, node) || options.exclude.count(node.name()) > 0 ||
        endpoints.count(node.name()) > 0) {
      continue;
    }
    const Edge source = graph_util::ParseEdge(node.input(0));
    const auto unit = by_last.find(source.node);
    if (source.port != 0 || unit == by_last.end() ||
        (unit->second->shifted && unit->second->shift != 0.0f)) {
      continue;
    }
    const auto& consumers = index.Consumers(node.name());
    const bool only_pools =
        !consumers.empty() &&
        std::all_of(consumers.begin(), consumers.end(), [&](const auto& consumer) {
          return !consumer.edge.control && consumer.edge.port == 0 &&
                 IsPoolable(in.node(consumer.node), options.exclude);
        });
    if (!only_pools) continue;
    const Quantized& value = plan->producers.at(source.node);
    const std::string qname = graph_util::UniqueName(node.name() + "_int8", &plan->taken);
    plan->pads[node.name()] = qname;
    plan->producers[node.name()] = {qname, value.min, value.max, value.type};
  }
}

// The nodes the units absorb, and the names of the 8-bit nodes: the units',
// then the zero Pads' and pools' of their outputs.
void NameUnitsAndPools(const GraphIndex& index, const GraphDef& in, const Options& options,
                       const std::set<std::string>& endpoints, Plan* plan) {
  std::vector<Unit>& units = plan->units;
  std::set<std::string>& replaced = plan->replaced;
  std::set<std::string>& taken = plan->taken;
  std::map<std::string, Quantized>& producers = plan->producers;
  std::map<std::string, std::string>& pools = plan->pools;
  for (const Unit& unit : units) {
    replaced.insert(unit.contraction->name());
    if (unit.pad) replaced.insert(unit.pad->name());
    if (unit.bias) replaced.insert(unit.bias->name());
    if (unit.act) replaced.insert(unit.act->name());
    if (unit.summed) replaced.insert(unit.sum_add->name());
  }

  taken = graph_util::NodeNames(in);
  for (Unit& unit : units) {
    unit.qname = graph_util::UniqueName(unit.contraction->name() + "_int8", &taken);
  }

  for (const Unit& unit : units) {
    if (unit.is_matmul) continue;
    producers[unit.last] = {unit.qname, unit.qname + ":1", unit.qname + ":2",
                            unit.out_type};
  }
  PlanRequantizedMatMuls(index, in, options, endpoints, plan);
  NamePads(index, in, options, endpoints, plan);
  for (const NodeDef& node : in.node()) {
    if (!IsPoolable(node, options.exclude)) continue;
    const Edge source = graph_util::ParseEdge(node.input(0));
    const auto it = producers.find(source.node);
    if (source.port != 0 || it == producers.end()) continue;
    const std::string qname = graph_util::UniqueName(node.name() + "_int8", &taken);
    pools[node.name()] = qname;
    producers[node.name()] = {qname, qname + ":1", qname + ":2", it->second.type};
  }
}

// Whether `reader` takes the 8-bit form of what `edge` names: the 8-bit
// readers are units and pools.
bool ReadsEightBit(const Plan& plan, const NodeDef& reader, const Edge& edge) {
  if (edge.control || edge.port != 0) return false;
  if (plan.pools.count(reader.name()) > 0) return true;
  for (const Unit& unit : plan.units) {
    if (unit.contraction->name() == reader.name() ||
        (unit.pad != nullptr && unit.pad->name() == reader.name())) {
      return !unit.reads_dequantized && unit.input.node == edge.node && unit.input.port == 0;
    }
    if (unit.summed && unit.sum_add->name() == reader.name()) {
      return unit.summand.node == edge.node && unit.summand.port == 0;
    }
  }
  return false;
}

// Which 8-bit producers a float op or an endpoint reads (they get a
// Dequantize), and the Relus that go.
void PlanFloatReaders(const GraphIndex& index, const GraphDef& in, const Options& options,
                      const std::set<std::string>& endpoints, Plan* plan) {
  const std::vector<Unit>& units = plan->units;
  const std::set<std::string>& replaced = plan->replaced;
  const std::map<std::string, Quantized>& producers = plan->producers;
  const std::map<std::string, std::string>& pools = plan->pools;
  std::set<std::string>& needs_float = plan->needs_float;
  for (const auto& [name, producer] : producers) {
    if (options.probes || endpoints.count(name) > 0) needs_float.insert(name);
    for (const auto& consumer : index.Consumers(name)) {
      const NodeDef& reader = in.node(consumer.node);
      if (replaced.count(reader.name()) > 0 && ReadsEightBit(*plan, reader, consumer.edge)) continue;
      if ((pools.count(reader.name()) > 0 || plan->pads.count(reader.name()) > 0) &&
          !consumer.edge.control) {
        continue;
      }
      needs_float.insert(name);
    }
  }

  // A Relu/Relu6 read only by 8-bit units is the clamp of an unsigned
  // QuantizeV2 of its input (negatives saturate to 0, and Relu6's cap is the
  // range's top), so it goes.
  std::map<std::string, std::string>& absorbed = plan->absorbed;
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
                   ReadsEightBit(*plan, reader, consumer.edge);
    }
    if (only_units && !options.probes) absorbed[relu->name()] = relu->input(0);
  }
}

// A float tensor of either sign that only 1x1 convs read 8-bit (an SE
// block's product, a swish or hard-swish output) is quantized unsigned with
// its minimum as zero (QuantizeV2 MIN_FIRST: q = (x - min) * 255 / (max -
// min)), and each of those convs takes c = -min * sum_k W[k,n] off its
// bias, as for shifted unit outputs: 255 levels over [min, max] instead of
// 127 over [-m, m], and the faster unsigned-input kernels.
void PlanShiftedInputs(const GraphDef& in, const Options& options, Plan* plan) {
  std::vector<Unit>& units = plan->units;
  const std::map<std::string, Quantized>& producers = plan->producers;
  const std::map<std::string, std::string>& absorbed = plan->absorbed;
  std::map<std::string, Range>& shifted_inputs = plan->shifted_inputs;
  // The units reading each float tensor; a tensor some unit sums is never shifted.
  std::map<std::string, std::vector<Unit*>> readers;
  std::set<std::string> summed;
  for (Unit& unit : units) {
    if (unit.summed) summed.insert(graph_util::EdgeString(unit.summand));
    if (unit.input.port == 0 && !unit.reads_dequantized &&
        (producers.count(unit.input.node) > 0 || absorbed.count(unit.input.node) > 0)) {
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
    const auto range = Lookup(options.ranges, group.front()->input);
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
    } else if (padding->second.s() == "SAME" && options.pad_inputs) {
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
  for (const Unit& unit : units) {
    if (!unit.float_pad.empty()) plan->padded_readers[graph_util::EdgeString(unit.input)] = &unit;
  }
}

// Float readers of a shifted producer dequantize it MIN_FIRST, its zero at
// the shift.
void PlanShiftedProducers(const GraphIndex& index, Plan* plan) {
  const std::vector<Unit>& units = plan->units;
  const std::map<std::string, std::string>& pools = plan->pools;
  std::map<std::string, const Unit*>& shifted_producers = plan->shifted_producers;
  for (const Unit& unit : units) {
    if (unit.shifted && unit.shift != 0.0f) shifted_producers[unit.last] = &unit;
  }
  for (bool grown = true; grown;) {  // MaxPools pass a shift on
    grown = false;
    for (const auto& [pool, qname] : pools) {
      const NodeDef* node = index.Find(pool);
      const auto source = shifted_producers.find(graph_util::ParseEdge(node->input(0)).node);
      if (node->op() == "MaxPool" && source != shifted_producers.end() &&
          shifted_producers.count(pool) == 0) {
        shifted_producers[pool] = source->second;
        grown = true;
      }
    }
  }
}

}  // namespace

Plan MakePlan(const GraphIndex& index, const GraphDef& in, const Options& options,
              const std::set<std::string>& endpoints, std::vector<Unit> units) {
  Plan plan;
  plan.units = std::move(units);
  NameUnitsAndPools(index, in, options, endpoints, &plan);
  PlanFloatReaders(index, in, options, endpoints, &plan);
  PlanShiftedInputs(in, options, &plan);
  PlanShiftedProducers(index, &plan);
  return plan;
}

}  // namespace quantize_int8
}  // namespace leangraph
