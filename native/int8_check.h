// The operand contracts of TensorFlow's 8-bit kernels, which its shape
// functions leave unchecked. oneDNN's fused int8 kernels (_FusedQuantizedConv2D,
// _FusedQuantizedDepthwiseConv2D, _QuantizedMatMul) read a range input with
// Tensor::scalar() (a CHECK: a vector there aborts the process), trust their
// fused_ops list and their output types, and index per-channel ranges by the
// filter's channels. The plain quantized ops (QuantizeV2, Dequantize,
// Requantize, QuantizedMaxPool, QuantizedConcatV2, ...) read one value per
// range. A graph that breaks one of these is refused before TF runs it.
#ifndef LEANGRAPH_NATIVE_INT8_CHECK_H_
#define LEANGRAPH_NATIVE_INT8_CHECK_H_

#include "absl/status/status.h"
#include "tensorflow/core/framework/graph.pb.h"

namespace leangraph {

// OK, or InvalidArgument naming the first node that breaks its kernel's
// contract and how. Assumes the generic checks (op registry, attributes,
// edges and dtypes) passed.
absl::Status CheckInt8Kernels(const tensorflow::GraphDef& graph);

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_INT8_CHECK_H_
