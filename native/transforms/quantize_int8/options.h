// quantize_int8's parameters: the calibrated ranges, the excluded nodes and
// the switches, read once and checked against the graph.
#ifndef LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_OPTIONS_H_
#define LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_OPTIONS_H_

#include <map>
#include <optional>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "native/transform_context.h"
#include "native/transforms/graph_util.h"
#include "native/transforms/quantize_int8/unit.h"
#include "tensorflow/core/framework/graph.pb.h"

namespace leangraph {
namespace quantize_int8 {

// Calibrated ranges by tensor ("node:port"; see TensorKey).
using Ranges = std::map<std::string, Range>;

struct Options {
  Ranges ranges;
  std::set<std::string> exclude;  // nodes that stay float
  // Every conv unit dequantized under its last node's name, no Relu absorbed,
  // so each unit's input and output can be compared with the float graph.
  bool probes = false;
  bool shifts = true;  // unsigned hand-overs (see ResolveSums); default !probes
  bool pad_inputs = false;  // see the shifted float inputs in plan.cc
  int weight_bits = 8;      // or 7, for CPUs without VNNI
};

// "node" and "node:0" name the same tensor.
std::string TensorKey(const std::string& name);

// "tensor=min,max;..." as leangraph.calibrate writes it.
absl::StatusOr<Ranges> ParseRanges(const std::string& text);

// The calibrated range of `edge`, if any.
std::optional<Range> Lookup(const Ranges& ranges, const graph_util::Edge& edge);

// The step's parameters; InvalidArgument for a bad or missing one.
absl::StatusOr<Options> ReadOptions(const TransformContext& context);

// Refuses a graph that is not frozen, and ranges or exclusions that name
// nodes the graph does not have.
absl::Status CheckGraph(const tensorflow::GraphDef& graph,
                        const graph_util::GraphIndex& index, const Options& options);

}  // namespace quantize_int8
}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_OPTIONS_H_
