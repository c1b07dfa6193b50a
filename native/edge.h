// The one parser of tensor and input names ("node", "node:port", "^node"),
// shared by the graph checks, the transforms and the timer, so they agree on
// what a name means.
#ifndef LEANGRAPH_NATIVE_EDGE_H_
#define LEANGRAPH_NATIVE_EDGE_H_

#include <string_view>

namespace leangraph {

// One entry of NodeDef.input, or a tensor name. `node` points into the parsed
// text, which must outlive it.
struct EdgeView {
  std::string_view node;
  int port = 0;
  bool control = false;  // "^node": a control edge, which has no port
  // False for an empty node name or a ':' left in it: a port that is not a
  // non-negative int ("a:x", "a:-1", "a:1:2", "^a:1"), which TensorFlow's
  // own parser would read differently.
  bool valid = true;
};

// "^name" -> name, control; "name:3" -> name, port 3; "name" -> name, port 0.
EdgeView ParseEdge(std::string_view text);

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_EDGE_H_
