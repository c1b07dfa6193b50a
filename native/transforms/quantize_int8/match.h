// quantize_int8's matching: which float contractions become 8-bit units, and
// what each absorbs.
#ifndef LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_MATCH_H_
#define LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_MATCH_H_

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "native/transforms/graph_util.h"
#include "native/transforms/quantize_int8/options.h"
#include "native/transforms/quantize_int8/unit.h"
#include "tensorflow/core/framework/graph.pb.h"
#include "tensorflow/core/framework/node_def.pb.h"

namespace leangraph {
namespace quantize_int8 {

// A MaxPool/AvgPool the rewrite runs 8-bit when its input is 8-bit.
bool IsPoolable(const tensorflow::NodeDef& node, const std::set<std::string>& exclude);

// The paddings of a float Pad of zeros along height and width only, as its
// constant [[0,0],[t,b],[l,r],[0,0]] lists them (8 values); nullopt for any
// other node.
std::optional<std::vector<int64_t>> SpatialZeroPad(const graph_util::GraphIndex& index,
                                                   const tensorflow::NodeDef& pad);

// A unit is a contraction with a constant weight, optionally after a zero
// Pad (before a VALID conv) and followed by a BiasAdd of a constant, a
// same-shape residual Add (conv units) and a Relu/Relu6, each the only
// reader of the one before. Units without a range for their input or (conv)
// output, or that would absorb an excluded node, are not matched. In graph
// order; the Sum fusions are candidates until ResolveSums decides them.
// `endpoints`: the graph's output nodes, which no unit absorbs.
std::vector<Unit> MatchUnits(const graph_util::GraphIndex& index,
                             const tensorflow::GraphDef& graph, const Options& options,
                             const std::set<std::string>& endpoints);

}  // namespace quantize_int8
}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_MATCH_H_
