// Parsing of transform strings in transform_graph's syntax:
//   name  name(param=value, list="a,b", param=second_value)  other_name
#ifndef LEANGRAPH_NATIVE_TRANSFORM_PARAMS_H_
#define LEANGRAPH_NATIVE_TRANSFORM_PARAMS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace leangraph {

// A parameter given more than once keeps every value, in order.
using TransformParams = std::map<std::string, std::vector<std::string>>;

struct TransformStep {
  std::string name;
  TransformParams params;
};

// Splits a transform string into steps. Values may be double-quoted to hold
// commas, spaces or parentheses. Errors name the offending column.
absl::StatusOr<std::vector<TransformStep>> ParseTransforms(
    const std::string& text);

// Renders steps back into the same syntax (values quoted when needed).
std::string FormatTransforms(const std::vector<TransformStep>& steps);

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_TRANSFORM_PARAMS_H_
