// What one of leangraph's own transforms is given, and how it is registered.
#ifndef LEANGRAPH_NATIVE_TRANSFORM_CONTEXT_H_
#define LEANGRAPH_NATIVE_TRANSFORM_CONTEXT_H_

#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "native/transform_params.h"
#include "tensorflow/core/framework/graph.pb.h"

namespace leangraph {

struct TransformContext {
  std::string transform;             // the step's name, for error messages
  std::vector<std::string> inputs;   // graph inputs, as given to the runner
  std::vector<std::string> outputs;  // graph outputs, as given to the runner
  TransformParams params;

  // A parameter given at most once; `fallback` when absent. A malformed or
  // repeated value is an InvalidArgument error that names the parameter.
  absl::StatusOr<std::string> GetString(const std::string& key,
                                        const std::string& fallback) const;
  absl::StatusOr<bool> GetBool(const std::string& key, bool fallback) const;
  absl::StatusOr<double> GetDouble(const std::string& key,
                                   double fallback) const;
  absl::StatusOr<long long> GetInt(const std::string& key,
                                   long long fallback) const;
  // Every value given for `key` (none when absent).
  std::vector<std::string> GetAll(const std::string& key) const;
  // The graph's inputs and outputs, which a transform keeps as they are.
  std::set<std::string> Endpoints() const;
};

using TransformFn = absl::Status (*)(const tensorflow::GraphDef& in,
                                     const TransformContext& context,
                                     tensorflow::GraphDef* out);

// The same, rewriting `graph` in place, so that nodes are moved rather than
// copied (a large model's weights are most of its bytes). On failure the
// graph may be left half rewritten; the runner keeps a copy when it must
// recover it.
using TransformInPlaceFn = absl::Status (*)(tensorflow::GraphDef* graph,
                                            const TransformContext& context);

struct OwnTransform {
  const char* name;
  TransformFn fn;
  const char* params;   // "name=default, ..." as shown by list_transforms()
  const char* summary;  // one line
  TransformInPlaceFn in_place = nullptr;  // what the runner calls, when set
};

// The copying form of an in-place transform, for callers that keep the input.
template <TransformInPlaceFn F>
absl::Status CopyThenRun(const tensorflow::GraphDef& in,
                         const TransformContext& context,
                         tensorflow::GraphDef* out) {
  *out = in;
  return F(out, context);
}

// leangraph's own transforms, in registration order.
const std::vector<OwnTransform>& OwnTransforms();

// Adds a transform to OwnTransforms() during static initialisation; use the
// macro below at namespace scope in the transform's own file (its library
// must be alwayslink, or the linker drops the unreferenced registrar).
struct TransformRegistrar {
  explicit TransformRegistrar(const OwnTransform& transform);
};

#define LEANGRAPH_REGISTER_TRANSFORM(name, fn, params, summary) \
  static const ::leangraph::TransformRegistrar                  \
      leangraph_registrar_##fn({name, fn, params, summary})

#define LEANGRAPH_REGISTER_IN_PLACE_TRANSFORM(name, fn, params, summary) \
  static const ::leangraph::TransformRegistrar leangraph_registrar_##fn(  \
      {name, ::leangraph::CopyThenRun<fn>, params, summary, fn})

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_TRANSFORM_CONTEXT_H_
