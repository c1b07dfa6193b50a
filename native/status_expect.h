// What a test expects of an absl::Status: refused with a message that has every fragment,
// or accepted. One definition for every test of a check (graph_check, int8_check).
#ifndef LEANGRAPH_NATIVE_STATUS_EXPECT_H_
#define LEANGRAPH_NATIVE_STATUS_EXPECT_H_

#include <cstdio>
#include <initializer_list>
#include <string>

#include "absl/status/status.h"

namespace leangraph_test {

// The status is an error whose message has every fragment; says on stderr what is off.
inline bool RefusedWith(const absl::Status& status,
                        std::initializer_list<std::string> fragments) {
  if (status.ok()) {
    std::fprintf(stderr, "  accepted, but should not have been\n");
    return false;
  }
  const std::string message(status.message());
  for (const std::string& fragment : fragments) {
    if (message.find(fragment) == std::string::npos) {
      std::fprintf(stderr, "  message lacks '%s': %s\n", fragment.c_str(), message.c_str());
      return false;
    }
  }
  return true;
}

// The status is OK; prints the message when it is not.
inline bool AcceptedWith(const absl::Status& status) {
  if (!status.ok()) std::fprintf(stderr, "  %s\n", std::string(status.message()).c_str());
  return status.ok();
}

}  // namespace leangraph_test

#endif  // LEANGRAPH_NATIVE_STATUS_EXPECT_H_
