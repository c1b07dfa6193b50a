// CPU facts and thread pinning for the timer (Linux).
#ifndef LEANGRAPH_NATIVE_BENCH_CPU_H_
#define LEANGRAPH_NATIVE_BENCH_CPU_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace leangraph {

// "0,2-3" -> {0, 2, 3} (sorted, unique). InvalidArgument on bad syntax.
absl::StatusOr<std::vector<int>> ParseCpuList(const std::string& text);
// {0, 2, 3} -> "0,2-3", the kernel's Cpus_allowed_list format.
std::string FormatCpuList(const std::vector<int>& cpus);

// The CPUs the calling thread may currently run on.
std::vector<int> AllowedCpus();

// Restricts the calling thread (and every thread it creates from now on) to
// `cpus`. InvalidArgument naming the CPU when one is not available here.
absl::Status PinCallingThread(const std::vector<int>& cpus);

struct ThreadAffinity {
  int tid = 0;
  std::string name;  // the kernel's comm, e.g. "tf_inter_op"
  std::string cpus;  // Cpus_allowed_list as the kernel reports it
};
// Every thread of this process, from /proc/self/task/*/status.
std::vector<ThreadAffinity> ReadThreadAffinities();
int CurrentThreadId();

// AVX512_BF16 or AMX-BF16, by cpuid; false when LEANGRAPH_FAKE_NO_BF16=1 (so
// tests can exercise the refusal on any machine).
bool CpuSupportsBf16();

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_BENCH_CPU_H_
