// The timer: loads a GraphDef into a TF session (pinned, with the requested
// thread pools and precision), feeds it and measures Session::Run latencies.
// Used by the leangraph_bench binary and, in-process, by leangraph.benchmark.
//
// Thread pools. TensorFlow gives every session of a process the same
// intra-op pool (where oneDNN runs); the timer's sessions run their ops in
// the calling thread or, for wide graphs or when asked, on one inter-op pool
// they share (BenchOptions::inter_op_threads). Each pool is sized and pinned
// by whoever created it first
// (TF_OVERRIDE_GLOBAL_THREADPOOL would give each session an intra-op pool of
// its own, but A and B on different threads compare less fairly). So a
// chosen thread count or CPU pinning is honoured only in a process whose
// first session is the timer's: the leangraph_bench binary, which pins
// itself before TensorFlow starts (BenchOptions::owns_process). In a process
// that shares the pools (a Python caller) such a request is refused with the
// way out, and reports give the pool's size and the threads' affinity as
// they are.
#ifndef LEANGRAPH_NATIVE_BENCH_RUNNER_H_
#define LEANGRAPH_NATIVE_BENCH_RUNNER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "native/bench/cpu.h"
#include "native/bench/stats.h"
#include "tensorflow/core/framework/graph.pb.h"

namespace leangraph {

// One fed input. Without data the timer fills a tensor (seeded uniform random
// values, or zeros) of `shape`, or of the Placeholder's static shape.
struct InputSpec {
  std::string name;          // node name; "node:0" is accepted
  std::string dtype;         // numpy dtype name; empty: the Placeholder's
  std::vector<int64_t> shape;
  bool has_shape = false;
  std::string data;          // raw C-order element bytes
  bool has_data = false;
  std::string source;        // for the report, e.g. "npy:x.npy"; default set
};

struct BenchOptions {
  std::vector<InputSpec> inputs;  // Placeholders not named here are filled
  std::vector<std::string> outputs;  // empty: nodes nothing consumes
  int intra_op_threads = 0;  // 0: TensorFlow's default
  // -1: every op runs in the calling thread; 0: so do they when at most
  // kMaxInlineWidth heavy ops can run at once (ParallelWidth), else on TF's
  // default inter-op pool; N: a pool of N threads. Pools are shared by the
  // timer's sessions. Why, in runner.cc (CreateSession).
  int inter_op_threads = 0;
  // Set by the timer from inter_op_threads and the graphs, not by callers.
  bool ops_in_calling_thread = false;
  std::vector<int> cpus;     // empty: no pinning
  std::string precision = "fp32";  // or "bf16"
  std::string precision_b;   // RunCompare only: B's precision; empty: the same
  int64_t warmup = 10;
  int64_t runs = 100;        // 0 with max_time_s > 0: as many as fit
  double max_time_s = 0;     // 0: no time limit
  // RunCompare only: time pairs until the speed-up's 95 % interval has at
  // most this relative half-width (e.g. 0.03); `runs` is then the least
  // number of pairs, and max_time_s (default kDefaultTargetMaxTime) the limit.
  double target_ci = 0;
  // RunCompare only: each timed sample is the fastest of this many runs (a
  // burst), A's and B's interleaved AB BA ...; 0: as many as last about
  // kAutoBurstMs (at most kMaxAutoBurst), from the warm-up's median. A
  // sub-millisecond graph's single runs scatter by +-20 % on a shared 2-vCPU
  // machine; bursts cut its interval at 60 pairs from +-5.5 % to +-3.4 %.
  int64_t burst = 0;
  // RunCompare only: sessions of each graph, session s of A timed against
  // session s of B (see SessionAwareInterval); 0: one where the ops run in
  // the calling thread, kPoolSessions (or fewer: see kSessionBytesBudget and
  // kSessionSetupBudgetMs) where they run on the inter-op pool.
  int sessions = 0;
  int64_t batch = 0;         // 0: the first input's leading dimension
  uint64_t seed = 0;
  bool zeros = false;        // fill generated inputs with zeros, not random
  bool profile = false;
  int profile_runs = 10;
  int top_n = 10;
  bool measure_overhead = true;
  // Report every thread of the process (the binary, which pinned itself
  // first) rather than only the threads the session created plus the caller.
  bool all_threads = false;
  // The binary: this process exists for the timer, which made (or makes
  // now) its thread pools, so thread counts and pinning can be honoured.
  bool owns_process = false;
  // Polled between runs, at most every ~100 ms; true stops the benchmark
  // with a Cancelled status (the Python binding raises KeyboardInterrupt).
  std::function<bool()> interrupted;
};

inline constexpr double kDefaultTargetMaxTime = 60.0;

// The most heavy ops (convolutions and matmuls, by op name) that a graph can
// run at once, counted level by level: a heavy op's level is one more than
// the highest level among the heavy ops it depends on (data or control;
// NextIteration back edges left out). A chain is 1 wide, a ResNet's
// projection shortcut beside its main branch 2, Inception and NASNet cells
// 3 or more; 0 without heavy ops.
int ParallelWidth(const tensorflow::GraphDef& graph);
// Up to this width the timer runs a graph's ops in the calling thread by
// default: measured on 2 cores, such graphs ran as fast inline as on TF's
// inter-op pool (ResNet50, Xception, DenseNet121, EfficientNetB0, 160x160)
// or faster (a small CNN, 0.17 against 0.31 ms), while NASNetMobile (17.0
// against 23.3 ms) and InceptionV3 (12.9 against 13.7 ms) need the pool.
inline constexpr int kMaxInlineWidth = 2;
// Sessions per graph when a compare runs on the inter-op pool. Each session
// settles on its own split of ops between the pool and the caller, so the
// interval needs several of them (SessionAwareInterval). Measured on the
// Inception-like graph of bench/timer_calibration.py, 20 self-compares of 60
// pairs each: 1 session per graph, 70 % of the intervals covered 1.0 (median
// half-width 2.7 %); 6, 100 % (5.0 %); 12, 95 % (3.4 %).
inline constexpr int kPoolSessions = 12;
// Each session holds its own copy of the graph's constants, so the automatic
// count is kept to what fits this many serialized graph bytes (A's and B's
// together), but at least kMinPoolSessions.
inline constexpr double kSessionBytesBudget = 2.0 * (1 << 30);
// ... and to as many as are made (NewSession, Create, first run) in about
// this long, judged from the first two.
inline constexpr double kSessionSetupBudgetMs = 30'000.0;
inline constexpr int kMinPoolSessions = 4;
inline constexpr int kMaxSessions = 64;
// Inline, sessions of one graph differ too once it holds megabytes of
// constants: a session's speed then stays off by a few per cent for all its
// runs. Measured on an AMX Xeon, K = 20 self-compares of 60 pairs: MobileNetV2
// 96x96 (14 MB) one session per graph covered 1.0 in 90 %, 0 % and 45 % of
// three runs (each compare's estimate off by up to 4 %), 6 sessions 100 %,
// 12 sessions 95 % (median half-width 2.3 %); the small CNN (0.25 MB) covered
// 95-100 % with one. So graphs of more than this many serialized bytes (A's
// and B's together) get several sessions inline as on the pool (but one
// where kSessionBytesBudget holds fewer than kMinPoolSessions copies).
inline constexpr double kInlineSessionsFromBytes = 2.0 * (1 << 20);
// Sessions per graph for a compare that did not ask (options.sessions 0),
// with options.ops_in_calling_thread resolved: one where ops run in the
// calling thread on graphs under kInlineSessionsFromBytes; else kPoolSessions
// as kSessionBytesBudget allows, and with a fixed number of pairs at least
// two AB BA blocks per session pair.
int AutoSessions(const BenchOptions& options, const tensorflow::GraphDef& a,
                 const tensorflow::GraphDef& b);


// Whether this process gives each session its own intra-op pool: TensorFlow's
// reading of TF_OVERRIDE_GLOBAL_THREADPOOL ("1"/"true", case-insensitive).
bool PerSessionIntraOpPools();

struct ResolvedInput {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string source;
};

struct ProfileRow {
  std::string name;  // node name, or op type in by_op_type
  std::string op;
  double ms = 0;     // mean per profiled run
  double percent = 0;
  int64_t count = 0; // nodes of this op type (by_op_type only)
};

struct BenchReport {
  std::string label;
  std::vector<double> samples_ms;
  Stats stats;
  double init_ms = 0;       // NewSession + Session::Create
  double first_run_ms = 0;  // first Session::Run (Grappler runs here)
  double overhead_ms = 0;   // median Run of a Placeholder->Identity graph
  double peak_rss_mb = 0;   // getrusage(RUSAGE_SELF).ru_maxrss
  int64_t batch = 1;
  int64_t warmup = 0;
  std::string precision;
  int intra_op_threads = 0;   // as asked (0: TF's default)
  int inter_op_threads = 0;
  bool ops_in_calling_thread = false;
  int parallel_width = 0;     // ParallelWidth of the graph
  int intra_op_pool_size = 0; // threads of the pool the session really uses
  std::string cpus;          // empty: not pinned
  std::string intra_op_pool; // "per-session" or "global" (shared process-wide)
  std::vector<ResolvedInput> inputs;
  std::vector<std::string> outputs;
  std::vector<ThreadAffinity> threads;
  bool affinity_checked = false;
  bool affinity_ok = false;
  bool has_profile = false;
  int profile_runs = 0;
  std::vector<ProfileRow> by_op_type;
  std::vector<ProfileRow> top_nodes;
};

struct CompareReport {
  BenchReport a, b;
  std::vector<char> order;    // 'A' / 'B' in the order the runs happened
  std::vector<bool> a_first;  // per pair: AFirstInPair(seed, i)
  bool a_created_first = true;  // a seeded coin as well
  PairedRatio paired;         // speed-up, interval, position effect
  uint64_t seed = 0;
  int64_t burst = 1;          // runs per sample (each sample their fastest)
  int sessions = 1;           // per graph; pair i in SessionOfPair(i, sessions)
  bool burst_auto = true;     // chosen by AutoBurst, not asked
  double target_ci = 0;       // 0: none asked
  bool target_met = false;
  StopReason stop = StopReason::kRuns;
};

absl::StatusOr<BenchReport> RunBenchmark(const tensorflow::GraphDef& graph,
                                         const BenchOptions& options);

// A and B in one process with the same options and inputs; after their
// warm-ups the timed runs come in pairs, randomized ABBA blocks seeded by
// options.seed, until DecideStop says so.
absl::StatusOr<CompareReport> RunCompare(const tensorflow::GraphDef& a,
                                         const tensorflow::GraphDef& b,
                                         const BenchOptions& options);

std::string ReportToJson(const BenchReport& report);
std::string CompareToJson(const CompareReport& report);
std::string StatsToJson(const Stats& stats);
// Human-readable tables, as the binary prints them.
std::string ReportToText(const BenchReport& report);
std::string CompareToText(const CompareReport& report);

// The numpy name of a supported dtype given by name ("float32", "float",
// "int64", ...); empty when not supported.
std::string CanonicalDtype(const std::string& name);

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_BENCH_RUNNER_H_
