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
// MatMul unit dequantizes inside the kernel, unless only 8-bit units read it:
// then it requantizes as a conv unit does. MaxPool/AvgPool of an 8-bit
// tensor run 8-bit too. A zero Pad straight before a VALID conv becomes the
// conv's explicit padding (the quantized zero is 0 in SCALED mode).
//
// Units without a range for their input or output, or named in `exclude`,
// stay float. With probes=true every conv unit also gets a Dequantize under
// its last node's name and no Relu is absorbed, so every unit's input and
// output can be compared with the float graph; shifts=true keeps the unsigned
// hand-overs (see ResolveSums) in a probed graph.
//
// The phases, each in its own file here: options (the parameters), match
// (the units), sums (Sum fusions and shifted hand-overs), plan (every other
// decision, in a Plan) and emit (the nodes).
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "native/transform_context.h"
#include "native/transforms/graph_util.h"
#include "native/transforms/quantize_int8/emit.h"
#include "native/transforms/quantize_int8/match.h"
#include "native/transforms/quantize_int8/options.h"
#include "native/transforms/quantize_int8/plan.h"
#include "native/transforms/quantize_int8/sums.h"
#include "tensorflow/core/framework/graph.pb.h"

namespace leangraph {
namespace {

absl::Status QuantizeInt8(const tensorflow::GraphDef& in, const TransformContext& context,
                          tensorflow::GraphDef* out) {
  namespace q = quantize_int8;
  absl::StatusOr<q::Options> options = q::ReadOptions(context);
  if (!options.ok()) return options.status();
  const graph_util::GraphIndex index(in);
  const absl::Status checked = q::CheckGraph(in, index, *options);
  if (!checked.ok()) return checked;
  std::set<std::string> endpoints;
  for (const std::string& output : context.outputs) {
    endpoints.insert(graph_util::ParseEdge(output).node);
  }
  std::vector<q::Unit> units = q::MatchUnits(index, in, *options, endpoints);
  q::ResolveSums(&units, index, in, *options);
  q::Plan plan = q::MakePlan(index, in, *options, endpoints, std::move(units));
  return q::Emit(index, in, *options, context.inputs, context.outputs, &plan, out);
}

}  // namespace

LEANGRAPH_REGISTER_TRANSFORM(
    "quantize_int8", QuantizeInt8, "ranges=, exclude=, probes=false, shifts=!probes, pad_inputs=false, weight_bits=8",
    "calibrated convs/matmuls -> oneDNN's fused int8 kernels (VNNI or AVX2)");

}  // namespace leangraph
