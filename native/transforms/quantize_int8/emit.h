// quantize_int8's emitting: writes the graph a Plan describes. The units
// become oneDNN's fused int8 kernels, the float tensors they read get a
// QuantizeV2, and the float readers of 8-bit tensors a Dequantize under the
// replaced node's name.
#ifndef LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_EMIT_H_
#define LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_EMIT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "native/transforms/graph_util.h"
#include "native/transforms/quantize_int8/options.h"
#include "native/transforms/quantize_int8/plan.h"
#include "tensorflow/core/framework/graph.pb.h"

namespace leangraph {
namespace quantize_int8 {

// Writes `in` rewritten by `plan` to `out`; `inputs` and `outputs` (the
// graph's endpoints) are never removed. Rounds the units' weights into
// `plan` (their bias takes the shifts back then), and takes the names of the
// new nodes from plan->taken.
absl::Status Emit(const graph_util::GraphIndex& index, const tensorflow::GraphDef& in,
                  const Options& options, const std::vector<std::string>& inputs,
                  const std::vector<std::string>& outputs, Plan* plan,
                  tensorflow::GraphDef* out);

}  // namespace quantize_int8
}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_EMIT_H_
