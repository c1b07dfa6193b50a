#include "native/bench/cpu.h"

#include <dirent.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace leangraph {

absl::StatusOr<std::vector<int>> ParseCpuList(const std::string& text) {
  std::set<int> cpus;
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad CPU list '", text, "': ", why, " (expected e.g. 0,1 or 0-3,6)"));
  };
  if (absl::StripAsciiWhitespace(text).empty()) return bad("it is empty");
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    part = absl::StripAsciiWhitespace(part);
    std::vector<absl::string_view> ends = absl::StrSplit(part, '-');
    int first = 0, last = 0;
    if (ends.size() == 1 && absl::SimpleAtoi(ends[0], &first)) {
      last = first;
    } else if (ends.size() != 2 || !absl::SimpleAtoi(ends[0], &first) ||
               !absl::SimpleAtoi(ends[1], &last)) {
      return bad(absl::StrCat("'", part, "' is not a CPU number or range"));
    }
    if (first < 0 || last < first) {
      return bad(absl::StrCat("'", part, "' is not a valid range"));
    }
    if (last >= CPU_SETSIZE) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown CPU id ", last, " in '", text, "' (CPU ids stop at ", CPU_SETSIZE - 1, ")"));
    }
    for (int c = first; c <= last; ++c) cpus.insert(c);
  }
  return std::vector<int>(cpus.begin(), cpus.end());
}

std::string FormatCpuList(const std::vector<int>& cpus) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    parts.push_back(j == i ? absl::StrCat(cpus[i])
                           : absl::StrCat(cpus[i], "-", cpus[j]));
    i = j + 1;
  }
  return absl::StrJoin(parts, ",");
}

std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> out;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return out;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) out.push_back(c);
  }
  return out;
}

absl::Status PinCallingThread(const std::vector<int>& cpus) {
  if (cpus.empty()) return absl::InvalidArgumentError("no CPU to pin to");
  // Checked against the online CPUs rather than the current mask, so that a
  // caller can widen a mask it narrowed before (e.g. to restore it).
  const long configured = sysconf(_SC_NPROCESSORS_CONF);
  for (const int c : cpus) {
    if (c < 0 || c >= CPU_SETSIZE || (configured > 0 && c >= configured)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown CPU id ", c, ": this machine has CPUs 0-",
          configured - 1, " (this process may use ",
          FormatCpuList(AllowedCpus()), ")"));
    }
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  for (const int c : cpus) CPU_SET(c, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot pin to CPUs ", FormatCpuList(cpus), ": ", std::strerror(errno),
        " (this process may use ", FormatCpuList(AllowedCpus()), ")"));
  }
  return absl::OkStatus();
}

int CurrentThreadId() { return static_cast<int>(syscall(SYS_gettid)); }

namespace {

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

std::vector<ThreadAffinity> ReadThreadAffinities() {
  std::vector<ThreadAffinity> out;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return out;
  while (const dirent* entry = readdir(dir)) {
    int tid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &tid)) continue;
    const std::string base = absl::StrCat("/proc/self/task/", tid);
    std::ifstream status(base + "/status");
    if (!status) continue;  // the thread ended meanwhile
    ThreadAffinity t;
    t.tid = tid;
    t.name = ReadFirstLine(base + "/comm");
    std::string line;
    while (std::getline(status, line)) {
      absl::string_view rest = line;
      if (absl::ConsumePrefix(&rest, "Cpus_allowed_list:")) {
        t.cpus = std::string(absl::StripAsciiWhitespace(rest));
        break;
      }
    }
    out.push_back(std::move(t));
  }
  closedir(dir);
  std::sort(out.begin(), out.end(),
            [](const ThreadAffinity& a, const ThreadAffinity& b) {
              return a.tid < b.tid;
            });
  return out;
}

bool CpuSupportsBf16() {
  const char* fake = std::getenv("LEANGRAPH_FAKE_NO_BF16");
  if (fake != nullptr && std::strcmp(fake, "1") == 0) return false;
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  // Leaf 7 subleaf 0, EDX bit 22: AMX-BF16.
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool amx_bf16 = (edx >> 22) & 1u;
  const unsigned max_subleaf = eax;
  bool avx512_bf16 = false;
  if (max_subleaf >= 1) {
    // Leaf 7 subleaf 1, EAX bit 5: AVX512_BF16.
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    avx512_bf16 = (eax >> 5) & 1u;
  }
  return amx_bf16 || avx512_bf16;
#else
  return false;
#endif
}

}  // namespace leangraph
