// The table of leangraph's own transforms. Each entry's function lives in its
// own file; the runner finds them here by name.
#include "native/transform_context.h"

namespace leangraph {

const std::vector<OwnTransform>& OwnTransforms() {
  static const auto* table = new std::vector<OwnTransform>{
  };
  return *table;
}

}  // namespace leangraph
