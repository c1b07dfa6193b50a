#include "native/edge.h"

#include "absl/strings/numbers.h"

namespace leangraph {

EdgeView ParseEdge(std::string_view text) {
  EdgeView edge;
  if (!text.empty() && text.front() == '^') {
    edge.control = true;
    text.remove_prefix(1);
  }
  const size_t colon = text.rfind(':');
  if (colon != std::string_view::npos && !edge.control) {
    int port = 0;
    if (absl::SimpleAtoi(text.substr(colon + 1), &port) && port >= 0) {
      edge.port = port;
      text = text.substr(0, colon);
    }
  }
  edge.node = text;
  edge.valid = !text.empty() && text.find(':') == std::string_view::npos;
  return edge;
}

}  // namespace leangraph
