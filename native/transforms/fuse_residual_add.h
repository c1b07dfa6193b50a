// fuse_residual_add's rewrite, for to_bfloat16 to run on the graph it makes.
#ifndef LEANGRAPH_NATIVE_TRANSFORMS_FUSE_RESIDUAL_ADD_H_
#define LEANGRAPH_NATIVE_TRANSFORMS_FUSE_RESIDUAL_ADD_H_

#include <set>
#include <string>

#include "tensorflow/core/framework/graph.pb.h"

namespace leangraph {

// Each Conv2D + BiasAdd + same-shape residual Add (+ the Relu that alone
// reads it) in `graph` becomes one fused convolution (see
// fuse_residual_add.cc for the forms and when float32 is left alone). Nodes
// named in `endpoints` are never fused away; with `bfloat16_only`, float32
// ones stay too. Returns how many were fused.
int FuseResidualAdds(tensorflow::GraphDef* graph,
                     const std::set<std::string>& endpoints,
                     bool bfloat16_only = false);

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_TRANSFORMS_FUSE_RESIDUAL_ADD_H_
