// quantize_int8's plan: every decision the rewrite makes before it writes a
// node. Matching and ResolveSums give the units; MakePlan adds the names of
// the new nodes, which tensors are 8-bit and who must read them in float,
// the Relus that go, and the float inputs quantized with a shift.
#ifndef LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_PLAN_H_
#define LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_PLAN_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "native/transforms/graph_util.h"
#include "native/transforms/quantize_int8/options.h"
#include "native/transforms/quantize_int8/unit.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/types.pb.h"

namespace leangraph {
namespace quantize_int8 {

// The 8-bit form of a float tensor: its type and symmetric range.
struct Quantized {
  std::string value, min, max;
  tensorflow::DataType type = kS8;
};

struct Plan {
  Plan() = default;
  // The maps below point into `units`: a move keeps them valid, a copy would not.
  Plan(Plan&&) = default;
  Plan& operator=(Plan&&) = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  std::vector<Unit> units;
  std::set<std::string> replaced;  // nodes the units absorb
  // Every node name in use, the planned new ones included; emitting takes
  // further names from it in a fixed order, so the output is deterministic.
  std::set<std::string> taken;
  // 8-bit producers: conv units (by last node), then pools of their outputs,
  // whose readers can take the 8-bit tensor.
  std::map<std::string, Quantized> producers;
  std::map<std::string, std::string> pools;  // pool name -> its 8-bit node
  std::map<std::string, std::string> pads;   // zero Pad read by pools -> its 8-bit node
  std::set<std::string> needs_float;  // producers a float op or endpoint reads
  std::map<std::string, std::string> absorbed;  // relu -> the tensor it read
  std::map<std::string, Range> shifted_inputs;  // edge -> its calibrated range
  std::map<std::string, const Unit*> padded_readers;  // edge -> the unit that pads it
  // Producers whose 8-bit value holds y + shift: shifted units, and the
  // MaxPools that pass a shift on; their float readers dequantize MIN_FIRST.
  std::map<std::string, const Unit*> shifted_producers;
};

// `units` as ResolveSums left them; `endpoints`: the graph's output nodes.
// Takes the shifts of the quantized float inputs into the units that read
// them (see TakeShiftBack).
Plan MakePlan(const graph_util::GraphIndex& index, const tensorflow::GraphDef& graph,
              const Options& options, const std::set<std::string>& endpoints,
              std::vector<Unit> units);

}  // namespace quantize_int8
}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_PLAN_H_
