// ParseEdge on the names TensorFlow writes and on the malformed ones the
// graph checks must refuse.
#include "native/edge.h"

#include <string>

#include "native/test_main.h"

namespace {

using leangraph::EdgeView;
using leangraph::ParseEdge;

bool Is(const EdgeView& edge, const std::string& node, int port, bool control, bool valid) {
  return edge.node == node && edge.port == port && edge.control == control &&
         edge.valid == valid;
}

LG_TEST(PlainNameIsPortZero) { LG_EXPECT(Is(ParseEdge("conv"), "conv", 0, false, true)); }

LG_TEST(PortIsSplitOff) {
  LG_EXPECT(Is(ParseEdge("conv:0"), "conv", 0, false, true));
  LG_EXPECT(Is(ParseEdge("split:12"), "split", 12, false, true));
  LG_EXPECT(Is(ParseEdge("scope/a_1:2"), "scope/a_1", 2, false, true));
}

LG_TEST(ControlEdgeHasNoPort) {
  LG_EXPECT(Is(ParseEdge("^init"), "init", 0, true, true));
  // A port on a control edge is not one TensorFlow accepts.
  LG_EXPECT(Is(ParseEdge("^init:1"), "init:1", 0, true, false));
}

LG_TEST(MalformedPortsAreInvalid) {
  LG_EXPECT(Is(ParseEdge("a:x"), "a:x", 0, false, false));
  LG_EXPECT(Is(ParseEdge("a:-1"), "a:-1", 0, false, false));
  LG_EXPECT(Is(ParseEdge("a:1:2"), "a:1", 2, false, false));
  LG_EXPECT(Is(ParseEdge("a:"), "a:", 0, false, false));
  LG_EXPECT(Is(ParseEdge("a:99999999999"), "a:99999999999", 0, false, false));
}

LG_TEST(EmptyNamesAreInvalid) {
  LG_EXPECT(Is(ParseEdge(""), "", 0, false, false));
  LG_EXPECT(Is(ParseEdge("^"), "", 0, true, false));
  LG_EXPECT(Is(ParseEdge(":0"), "", 0, false, false));
}

LG_TEST(NodeViewsTheText) {
  const std::string text = "layer/conv:3";
  const EdgeView edge = ParseEdge(text);
  LG_EXPECT(edge.node.data() == text.data());
  LG_EXPECT(edge.node.size() == 10);
}

}  // namespace
