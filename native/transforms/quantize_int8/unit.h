// quantize_int8's unit: a float contraction with a constant weight and what
// it absorbs (a zero Pad, a BiasAdd, a Relu/Relu6, a residual add), and its
// weights as the 8-bit kernel will hold them.
#ifndef LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_UNIT_H_
#define LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_UNIT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "native/transforms/graph_util.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.pb.h"

namespace leangraph {
namespace quantize_int8 {

constexpr tensorflow::DataType kFloat = tensorflow::DT_FLOAT;
constexpr tensorflow::DataType kU8 = tensorflow::DT_QUINT8;
constexpr tensorflow::DataType kS8 = tensorflow::DT_QINT8;

// Below this a range is treated as this wide: a dead channel or an all-zero
// tensor must not give oneDNN a zero scale.
constexpr float kMinRange = 1e-6f;

struct Range {
  float lo = 0;
  float hi = 0;
};

struct Unit {
  const tensorflow::NodeDef* contraction = nullptr;
  const tensorflow::NodeDef* pad = nullptr;  // folded into explicit padding
  const tensorflow::NodeDef* bias = nullptr;
  const tensorflow::NodeDef* act = nullptr;  // Relu or Relu6
  std::string last;              // the node whose output the unit replaces
  graph_util::Edge input;        // the float tensor the unit reads
  std::vector<int64_t> paddings; // explicit paddings, NHWC, when `pad`
  tensorflow::Tensor weight;
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
  // A matmul's output range was calibrated (conv units need one to match).
  bool out_known = false;
  // A matmul whose readers are all 8-bit units: it requantizes its output to
  // out_range, as a conv unit does, instead of dequantizing it (see plan.cc).
  bool requantized = false;
  tensorflow::DataType out_type = kS8;
  std::string qname;  // the quantized node
  // Sum fusion: an unactivated conv unit whose output is added to another
  // tensor of the same shape, then Relu'd, folds the add and the Relu in.
  // A linear add (no Relu after it) is fused too when its result can be
  // handed on shifted (see ResolveSums): sum_relu is then null.
  const tensorflow::NodeDef* sum_add = nullptr;
  const tensorflow::NodeDef* sum_relu = nullptr;
  graph_util::Edge summand;
  Range sum_range;  // of the Relu, or of a linear add
  bool summed = false;  // the fusion is in use (see ResolveSums)
  // Shifted: the 8-bit output holds y + shift, unsigned (see ResolveSums).
  Range raw_out;  // the calibrated range of `last`, before SetOutput
  bool shifted = false;
  float shift = 0.0f;
  // Reads a linear Sum fusion's shifted result (or a MaxPool of it) that it
  // cannot take the shift back from (a conv with padding): it quantizes the
  // MIN_FIRST Dequantize that float readers get instead (see ResolveSums).
  bool reads_dequantized = false;
  // Reads its float input padded in float first, then shifted (see
  // plan.cc): the paddings [top, bottom, left, right], and the conv runs VALID.
  std::vector<int64_t> float_pad;
};

// Output type and range of a unit ending at `act` (or at no activation).
void SetOutput(Unit* unit, const tensorflow::NodeDef* act, Range range);

// The tensor a unit's 8-bit output stands for: its Relu or add when a Sum
// fusion is in use, else its last node.
std::string FinalName(const Unit& unit);

// A 1x1 Conv2D without a folded Pad: it can take a shift of its input back
// exactly (see TakeShiftBack).
bool IsPointwiseConv(const Unit& unit);

// Each output channel's symmetric range, as the stored qint8 weights use it
// (every layout keeps the output channel innermost once flattened: Conv2D
// [H,W,I,O], depthwise [H,W,C,M] as C*M, MatMul [K,N]). The kernels read a
// stored q as q * range / 127; with 7-bit weights (weight_levels 63) the
// range is max|w| * 127 / 63, so the largest weight is stored as 63. Without
// VNNI, oneDNN multiplies u8 by s8 with vpmaddubsw, which adds each pair of
// products in 16 bits with saturation: 255 * 127 * 2 overflows it, and
// 255 * 63 * 2 does not.
std::vector<float> ChannelScales(const Unit& unit);

// `value` as stored for a channel of range `scale`.
int8_t RoundWeight(float value, float scale);

// A conv reading x + c everywhere (padding included) computes W (x + c): its
// bias takes c times the sum of each output channel's weights off, with W as
// the kernel holds it (rounded to 8 or 7 bits), so the correction is exact
// for the int8 kernel, not only for the float weights. The shifts add up
// here and come off in ApplyShiftsTakenBack, once the weights' rounding is
// known.
void TakeShiftBack(Unit* reader, float shift);
void ApplyShiftsTakenBack(Unit* unit);

}  // namespace quantize_int8
}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_TRANSFORMS_QUANTIZE_INT8_UNIT_H_
