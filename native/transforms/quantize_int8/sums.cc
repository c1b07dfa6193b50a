#include "native/transforms/quantize_int8/sums.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "native/transforms/quantize_int8/match.h"
#include "tensorflow/core/framework/node_def.pb.h"

namespace leangraph {
namespace quantize_int8 {
namespace {

using graph_util::Edge;
using graph_util::GraphIndex;
using tensorflow::GraphDef;
using tensorflow::NodeDef;

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

// Calls visit(tensor, reader node, edge) for every data reader of a shifted
// tensor `start`, looking through the MaxPools that pass the shift on (a
// MaxPool of y + c holds max(y) + c).
void ForEachShiftedReader(
    const GraphIndex& index, const GraphDef& graph, const std::set<std::string>& exclude,
    const std::string& start,
    const std::function<void(const std::string&, const NodeDef&, const Edge&)>& visit) {
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
}

// The Sum fusion candidates in use: one unit per add, and none whose
// summand has a reader after the fusion.
void ClaimSums(std::vector<Unit>* units, const GraphIndex& index, const GraphDef& graph) {
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
  // the summand must be able to run before it (see OrderSummandReaders in
  // emit.cc). A reader downstream of the fusion cannot, so that add stays
  // float.
  for (Unit& unit : *units) {
    if (!unit.summed) continue;
    const NodeDef* end = unit.sum_relu != nullptr ? unit.sum_relu : unit.sum_add;
    const std::set<std::string> after = Descendants(index, graph, end->name());
    for (const auto& consumer : index.Consumers(unit.summand.node)) {
      if (after.count(graph.node(consumer.node).name()) > 0) unit.summed = false;
    }
  }
}

// Turns off the Sum fusions and shifts that cannot hold, until none changes.
void SettleSumsAndShifts(std::vector<Unit>* units, const GraphIndex& index,
                         const GraphDef& graph, const Options& options) {
  const Ranges& ranges = options.ranges;
  const std::set<std::string>& exclude = options.exclude;
  const bool allow_shifts = options.shifts;
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
        // A linear Sum fusion's result is the exception: the fusion itself is
        // the gain (the float add, and the Dequantize of each operand, go), so
        // it needs no reader to take the shift back, and a unit that cannot
        // (a conv with padding: Xception's exit block, whose depthwise conv
        // reads the add) quantizes its Dequantize instead.
        const bool linear_sum = unit.summed && unit.sum_relu == nullptr;
        bool ok = true, taken_back = false;
        ForEachShiftedReader(index, graph, exclude, FinalName(unit), [&](const std::string& name, const NodeDef& reader,
                                             const Edge& edge) {
          const auto readers = by_reader.find(reader.name());
          if (readers == by_reader.end()) {
            // Any other pool of an 8-bit tensor runs 8-bit too, shifted or not.
            ok = ok && reader.op() != "MaxPool" && reader.op() != "AvgPool";
            return;
          }
          bool takes_it_back = false, dequantized = false;
          for (const Unit* r : readers->second) {
            const bool input = (r->contraction->name() == reader.name() ||
                                (r->pad != nullptr && r->pad->name() == reader.name())) &&
                               r->input.node == name && r->input.port == 0 && edge.port == 0;
            const bool as_summand = r->summed && r->sum_add->name() == reader.name() &&
                                    r->summand.node == name && r->summand.port == 0 &&
                                    edge.port == 0;
            takes_it_back = takes_it_back || (input && IsPointwiseConv(*r)) || as_summand;
            dequantized = dequantized || (input && linear_sum);
          }
          ok = ok && (takes_it_back || dequantized);
          taken_back = taken_back || takes_it_back;
        });
        if (!ok || !(taken_back || linear_sum)) off.push_back(&unit.shifted);
      }
    }
    for (bool* flag : off) *flag = false;
    changed = !off.empty();
  }
}

// The settled units' outputs and shifts, and each reader taking the shifts back.
void ApplySumsAndShifts(std::vector<Unit>* units, const GraphIndex& index, const GraphDef& graph,
                        const std::set<std::string>& exclude) {
  std::map<std::string, Unit*> by_contraction, by_sum_add;  // a Pad for a unit absorbing it
  for (Unit& unit : *units) {
    by_contraction[unit.contraction->name()] = &unit;
    if (unit.pad != nullptr) by_contraction[unit.pad->name()] = &unit;
    if (unit.summed) by_sum_add[unit.sum_add->name()] = &unit;
  }
  for (Unit& unit : *units) {
    if (!unit.summed) continue;
    unit.last = FinalName(unit);
    if (unit.sum_relu != nullptr) SetOutput(&unit, unit.sum_relu, unit.sum_range);
  }
  for (Unit& unit : *units) {
    if (!unit.shifted) continue;
    const Range range = unit.summed ? unit.sum_range : unit.raw_out;
    // The units that cannot take the shift back (see SettleSumsAndShifts)
    // read it dequantized and quantize it signed over [-m, m], m the larger
    // of -min and max.
    bool dequantized = false;
    if (range.lo < 0.0f) {
      ForEachShiftedReader(index, graph, exclude, unit.last, [&](const std::string& name, const NodeDef& node, const Edge&) {
        const auto conv = by_contraction.find(node.name());
        if (conv != by_contraction.end() && conv->second->input.node == name &&
            !IsPointwiseConv(*conv->second)) {
          conv->second->reads_dequantized = true;
          dequantized = true;
        }
      });
    }
    if (dequantized) {
      // On their grid: a step of m / 127 and a shift of whole steps, so the
      // values dequantized are that grid's and quantizing them again rounds
      // nothing (c + max <= 254 steps fits in 255).
      const float m = std::max({-range.lo, range.hi, kMinRange});
      const float steps = std::min(127.0f, std::ceil(-range.lo * 127.0f / m));
      unit.shift = steps * (m / 127.0f);
      unit.out_range = {0.0f, 255.0f * (m / 127.0f)};
    } else {
      unit.shift = std::max(0.0f, -range.lo);
      unit.out_range = {0.0f, std::max(range.hi + unit.shift, kMinRange)};
    }
    for (float& b : unit.bias_values) b += unit.shift;
    unit.out_type = kU8;
  }
  // Every other reader takes the shift back (through the MaxPools that pass it on).
  for (const Unit& unit : *units) {
    if (!unit.shifted || unit.shift == 0.0f) continue;
    ForEachShiftedReader(index, graph, exclude, unit.last, [&](const std::string& name, const NodeDef& node, const Edge&) {
      const auto conv = by_contraction.find(node.name());
      if (conv != by_contraction.end() && conv->second->input.node == name &&
          !conv->second->reads_dequantized) {
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

}  // namespace

void ResolveSums(std::vector<Unit>* units, const GraphIndex& index, const GraphDef& graph,
                 const Options& options) {
  ClaimSums(units, index, graph);
  SettleSumsAndShifts(units, index, graph, options);
  ApplySumsAndShifts(units, index, graph, options.exclude);
}

}  // namespace quantize_int8
}  // namespace leangraph
