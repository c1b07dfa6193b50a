#include "native/bench/cpu.h"

#include <sched.h>

#include <string>
#include <thread>
#include <vector>

#include "native/test_main.h"

LG_TEST(CpuListsParseAndFormat) {
  const auto parsed = leangraph::ParseCpuList("3,0,2-3");
  LG_EXPECT(parsed.ok() && *parsed == std::vector<int>({0, 2, 3}));
  LG_EXPECT(leangraph::FormatCpuList({0, 2, 3, 5, 6}) == "0,2-3,5-6");
  LG_EXPECT(leangraph::FormatCpuList({1}) == "1");
  for (const char* bad : {"", "a", "3-1", "-1", "1,,x", "0-", "5000"}) {
    LG_EXPECT(!leangraph::ParseCpuList(bad).ok());
  }
}

LG_TEST(UnknownCpuIsRefused) {
  const absl::Status status = leangraph::PinCallingThread({1000});
  LG_EXPECT(!status.ok());
  LG_EXPECT(std::string(status.message()).find("unknown CPU id 1000") != std::string::npos);
}

LG_TEST(ThreadsCreatedAfterPinningInheritTheMask) {
  const std::vector<int> before = leangraph::AllowedCpus();
  LG_EXPECT(!before.empty());
  const std::vector<int> one = {before.back()};
  LG_EXPECT(leangraph::PinCallingThread(one).ok());
  int child = 0;
  std::string child_cpus;
  std::thread worker([&] {
    child = leangraph::CurrentThreadId();
    for (const auto& t : leangraph::ReadThreadAffinities()) {
      if (t.tid == child) child_cpus = t.cpus;
    }
  });
  worker.join();
  LG_EXPECT(child != 0);
  LG_EXPECT(child_cpus == leangraph::FormatCpuList(one));
  std::string self_cpus;
  for (const auto& t : leangraph::ReadThreadAffinities()) {
    if (t.tid == leangraph::CurrentThreadId()) self_cpus = t.cpus;
  }
  LG_EXPECT(self_cpus == leangraph::FormatCpuList(one));
  LG_EXPECT(leangraph::PinCallingThread(before).ok());
  LG_EXPECT(leangraph::AllowedCpus() == before);
}

LG_TEST(Bf16CanBeFakedAway) {
  setenv("LEANGRAPH_FAKE_NO_BF16", "1", 1);
  LG_EXPECT(!leangraph::CpuSupportsBf16());
  unsetenv("LEANGRAPH_FAKE_NO_BF16");
}
