// quantize_int8's Sum fusions and shifted (unsigned) hand-overs, decided
// together since each depends on the other.
#ifndef LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_SUMS_H_
#define LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_SUMS_H_

#include <vector>

#include "native/transforms/graph_util.h"
#include "native/transforms/quantize_int8/options.h"
#include "native/transforms/quantize_int8/unit.h"
#include "tensorflow/core/framework/graph.pb.h"

namespace leangraph {
namespace quantize_int8 {

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
// readers dequantize it MIN_FIRST (see emit.cc). The range [0, max - min] is
// no coarser than the signed [-m, m], oneDNN's unsigned-input kernels are
// faster (8 middle-flow 1x1 convs of Xception: 6.8 ms signed, 5.4 ms
// unsigned, measured), and it lets a linear residual add (MobileNetV2's,
// EfficientNet's) run inside the conv as a Sum fusion, whose result is
// itself handed on shifted. A linear Sum fusion needs no reader to take the
// shift back: a conv with padding reading it quantizes its MIN_FIRST
// Dequantize instead (Unit::reads_dequantized), on whose signed grid the sum
// is then written. Probe graphs compare every unit's dequantized
// output with the float graph; they shift nothing unless shifts=true
// (options.shifts).
//
// Flags only ever turn off, so repeating until nothing changes ends.
void ResolveSums(std::vector<Unit>* units, const graph_util::GraphIndex& index,
                 const tensorflow::GraphDef& graph, const Options& options);

}  // namespace quantize_int8
}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_SUMS_H_
