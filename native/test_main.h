// A minimal test harness: the wheel ships no gtest, and these tests need
// only named cases and failure messages.
#ifndef LEANGRAPH_NATIVE_TEST_MAIN_H_
#define LEANGRAPH_NATIVE_TEST_MAIN_H_

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace leangraph_test {

struct Case {
  const char* name;
  std::function<void()> body;
};

inline std::vector<Case>& Cases() {
  static std::vector<Case> cases;
  return cases;
}
inline int& Failures() {
  static int failures = 0;
  return failures;
}

struct Register {
  Register(const char* name, std::function<void()> body) {
    Cases().push_back({name, std::move(body)});
  }
};

}  // namespace leangraph_test

#define LG_TEST(name)                                                   \
  static void name();                                                   \
  static ::leangraph_test::Register register_##name(#name, &name);      \
  static void name()

#define LG_EXPECT(cond)                                                 \
  do {                                                                  \
    if (!(cond)) {                                                      \
      std::fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__,  \
                   #cond);                                              \
      ++::leangraph_test::Failures();                                   \
    }                                                                   \
  } while (0)

int main() {
  int failed_cases = 0;
  for (const auto& c : ::leangraph_test::Cases()) {
    const int before = ::leangraph_test::Failures();
    c.body();
    const bool ok = ::leangraph_test::Failures() == before;
    std::printf("[%s] %s\n", ok ? "  OK  " : "FAILED", c.name);
    if (!ok) ++failed_cases;
  }
  const int total = static_cast<int>(::leangraph_test::Cases().size());
  std::printf("%d passed, %d failed\n", total - failed_cases, failed_cases);
  return failed_cases == 0 ? 0 : 1;
}

#endif  // LEANGRAPH_NATIVE_TEST_MAIN_H_
