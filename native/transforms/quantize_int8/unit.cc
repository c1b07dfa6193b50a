#include "native/transforms/quantize_int8/unit.h"

#include <algorithm>
#include <cmath>

namespace leangraph {
namespace quantize_int8 {

void SetOutput(Unit* unit, const tensorflow::NodeDef* act, Range range) {
  unit->act = act;
  unit->out_type = act != nullptr ? kU8 : kS8;
  if (act != nullptr) {
    range.lo = 0;
    range.hi = std::max(range.hi, 0.0f);
    if (act->op() == "Relu6") range.hi = std::min(range.hi, 6.0f);
  } else {
    const float m = std::max(std::fabs(range.lo), std::fabs(range.hi));
    range = {-m, m};
  }
  range.hi = std::max(range.hi, kMinRange);
  if (unit->out_type == kS8) range.lo = -range.hi;
  unit->out_range = range;
}

std::string FinalName(const Unit& unit) {
  if (!unit.summed) return unit.last;
  return (unit.sum_relu != nullptr ? unit.sum_relu : unit.sum_add)->name();
}

bool IsPointwiseConv(const Unit& unit) {
  return unit.contraction->op() == "Conv2D" && unit.pad == nullptr &&
         unit.weight.dim_size(0) == 1 && unit.weight.dim_size(1) == 1;
}

std::vector<float> ChannelScales(const Unit& unit) {
  const int64_t channels = unit.channels;
  const float* values = unit.weight.flat<float>().data();
  std::vector<float> scale(channels, 0.0f);
  for (int64_t i = 0; i < unit.weight.NumElements(); ++i) {
    float& s = scale[i % channels];
    s = std::max(s, std::fabs(values[i]));
  }
  for (float& s : scale) s = std::max(s, kMinRange) * (127.0f / unit.weight_levels);
  return scale;
}

int8_t RoundWeight(float value, float scale) {
  const float v = std::nearbyint(value / scale * 127.0f);
  return static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f));
}

void TakeShiftBack(Unit* reader, float shift) { reader->taken_back += shift; }

void ApplyShiftsTakenBack(Unit* unit) {
  if (unit->taken_back == 0.0f) return;
  const int64_t channels = unit->channels;
  const std::vector<float> scale = ChannelScales(*unit);
  const float* w = unit->weight.flat<float>().data();
  for (int64_t i = 0; i < unit->weight.NumElements(); ++i) {
    const int64_t n = i % channels;
    unit->bias_values[n] -= unit->taken_back * RoundWeight(w[i], scale[n]) * scale[n] / 127.0f;
  }
  unit->taken_back = 0.0f;
}

}  // namespace quantize_int8
}  // namespace leangraph
