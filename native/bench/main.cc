// leangraph_bench: times a frozen GraphDef in a TF session. Run with --help.
#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/text_format.h"
#include "native/bench/cpu.h"
#include "native/graph_check.h"
#include "native/bench/npy.h"
#include "native/bench/runner.h"
#include "tensorflow/core/framework/graph.pb.h"

namespace leangraph {
namespace {

constexpr char kUsage[] = R"(usage: leangraph-bench --graph G.pb [options]

Times Session::Run of a frozen GraphDef (.pb binary, .pbtxt text).
  --graph FILE               the graph (A, with --compare)
  --compare FILE             graph B: A and B run in pairs, in randomized ABBA
                             blocks; the speed-up is the Hodges-Lehmann estimate
                             of the per-pair ratios with a Wilcoxon interval
  --input NAME:SHAPE:DTYPE   e.g. input:1,299,299,3:float32 (repeatable); data
                             is seeded uniform random in [0,1) (or --zeros)
  --input-npy NAME=FILE.npy  feed a NumPy array (repeatable)
  --zeros                    generated inputs are zeros instead of random
  --seed N                   seed of the generated inputs and the pair order (0)
  --output NAME              a fetched node (repeatable; default: the nodes
                             nothing consumes)
  --intra-op-threads N       0 = TensorFlow's default (one per CPU); A and B
                             share this process's pools, made to these sizes
  --inter-op-threads N       0 = automatic: ops run in the calling thread
                             when at most 2 convs/matmuls can run at once
                             (steadier: TF's pool makes per-session choices),
                             else on TF's default pool; -1 = always in the
                             calling thread; N = a pool of N threads
  --cpus LIST                pin the process and every TF thread, e.g. 0,1 or 0-3
  --precision fp32|bf16      bf16: oneDNN's automatic bf16 rewrite
  --compare-precision P      with --compare: B's precision (default: --precision)
  --warmup N                 untimed runs after the first (10)
  --runs N                   timed runs (100); with --target-ci, the least
                             number of pairs
  --max-time S               stop timing after S seconds
  --target-ci H              with --compare: keep timing pairs until the 95 %
                             interval of the speed-up is within +-H (relative,
                             e.g. 0.03), or --max-time (default 60) passes
  --burst N                  with --compare: each sample is the fastest of N
                             runs, A's and B's interleaved (default: about 5 ms
                             of runs, from the warm-up; 1 for graphs of 5 ms+)
  --sessions N               with --compare: sessions of each graph, session s
                             of A against session s of B, the interval widened
                             by their disagreement (default: 12, fewer for
                             graphs of over 85 MiB or slow to load; 1 with
                             ops in the calling thread when A and B hold
                             2 MiB or less together, or over 512 MiB)
  --batch N                  examples per run, for throughput and unknown
                             leading dimensions
  --profile                  time per op type and top nodes (traced runs,
                             after and apart from the timed ones)
  --profile-runs N, --top N  traced runs (10), nodes listed (10)
  --no-overhead              skip measuring the timer's overhead
  --json                     print the report as JSON on stdout
Images (--image-dir DIR [--preprocess NAME]) are decoded by the `leangraph-bench`
console script, which passes them on as --input-npy.
)";

absl::StatusOr<tensorflow::GraphDef> LoadGraph(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("graph file not found: ", path));
  const std::string bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  tensorflow::GraphDef graph;
  const bool text = absl::EndsWith(path, ".pbtxt") || absl::EndsWith(path, ".txt") ||
                    absl::EndsWith(path, ".prototxt");
  const bool parsed = text ? google::protobuf::TextFormat::ParseFromString(bytes, &graph)
                           : bytes.size() < (size_t{1} << 31) &&
                                 graph.ParseFromArray(bytes.data(),
                                                      static_cast<int>(bytes.size()));
  if (!parsed) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is not a ", text ? "text" : "binary",
        " GraphDef (corrupt, truncated, or the wrong format for its suffix)"));
  }
  // Writers leave out attributes at their op's default (TF's SavedModel writer
  // and leangraph.save_graph do); TF's import puts them back, and so does this.
  AddMissingDefaults(&graph);
  return graph;
}

absl::StatusOr<InputSpec> ParseInputFlag(const std::string& value) {
  // NAME:SHAPE:DTYPE; the name itself may contain ':' (a tensor name).
  const size_t last = value.rfind(':');
  const size_t middle = last == std::string::npos ? std::string::npos
                                                  : value.rfind(':', last - 1);
  if (last == std::string::npos || middle == std::string::npos || middle == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--input '", value, "' is not NAME:SHAPE:DTYPE (e.g. input:1,224,224,3:float32)"));
  }
  InputSpec spec;
  spec.name = value.substr(0, middle);
  spec.dtype = value.substr(last + 1);
  spec.has_shape = true;
  const std::string shape = value.substr(middle + 1, last - middle - 1);
  for (const absl::string_view dim : absl::StrSplit(shape, ',', absl::SkipEmpty())) {
    int64_t d = 0;
    if (!absl::SimpleAtoi(dim, &d) || d < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--input '", value, "': '", dim, "' is not a dimension (a number >= 0)"));
    }
    spec.shape.push_back(d);
  }
  if (CanonicalDtype(spec.dtype).empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--input '", value, "': unknown dtype '", spec.dtype,
        "' (float32, float64, float16, int8, int16, int32, int64, uint8, uint16, bool)"));
  }
  return spec;
}

absl::StatusOr<InputSpec> ParseNpyFlag(const std::string& value) {
  const size_t eq = value.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == value.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--input-npy '", value, "' is not NAME=FILE.npy"));
  }
  const std::string path = value.substr(eq + 1);
  absl::StatusOr<NpyArray> array = ReadNpy(path);
  if (!array.ok()) return array.status();
  InputSpec spec;
  spec.name = value.substr(0, eq);
  spec.dtype = array->dtype;
  spec.shape = array->shape;
  spec.has_shape = true;
  spec.data = std::move(array->data);
  spec.has_data = true;
  spec.source = "npy:" + path;
  return spec;
}

template <typename T>
absl::Status ParseNumber(const std::string& flag, const std::string& value, T* out) {
  if (!absl::SimpleAtoi(value, out)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " needs a whole number, got '", value, "'"));
  }
  return absl::OkStatus();
}

struct Cli {
  std::string graph, compare;
  bool json = false;
  BenchOptions options;
};

absl::StatusOr<Cli> ParseArgs(int argc, char** argv, bool* help) {
  Cli cli;
  cli.options.all_threads = true;
  // The first session of this process is the timer's: it sizes the
  // process-wide pools with --intra-op-threads / --inter-op-threads, under
  // the --cpus mask set before TensorFlow starts.
  cli.options.owns_process = true;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    std::string value;
    bool has_value = false;
    const size_t eq = flag.find('=');
    if (absl::StartsWith(flag, "--") && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_value = true;
    }
    const auto next = [&]() -> absl::StatusOr<std::string> {
      if (has_value) return value;
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
      }
      return std::string(argv[++i]);
    };
    absl::Status status;
    if (flag == "-h" || flag == "--help") {
      *help = true;
      return cli;
    } else if (flag == "--json") {
      cli.json = true;
    } else if (flag == "--profile") {
      cli.options.profile = true;
    } else if (flag == "--zeros") {
      cli.options.zeros = true;
    } else if (flag == "--no-overhead") {
      cli.options.measure_overhead = false;
    } else if (flag == "--image-dir") {
      // Decoding and preprocessing images is policy that lives in Python
      // (leangraph.images); the console script turns it into --input-npy.
      return absl::UnimplementedError(
          "--image-dir is handled by the `leangraph-bench` console script; the "
          "bare binary takes the decoded images as --input-npy NAME=FILE.npy");
    } else {
      absl::StatusOr<std::string> v = next();
      if (!v.ok()) return v.status();
      if (flag == "--graph") {
        cli.graph = *v;
      } else if (flag == "--compare") {
        cli.compare = *v;
      } else if (flag == "--input") {
        absl::StatusOr<InputSpec> spec = ParseInputFlag(*v);
        if (!spec.ok()) return spec.status();
        cli.options.inputs.push_back(std::move(*spec));
      } else if (flag == "--input-npy") {
        absl::StatusOr<InputSpec> spec = ParseNpyFlag(*v);
        if (!spec.ok()) return spec.status();
        cli.options.inputs.push_back(std::move(*spec));
      } else if (flag == "--output") {
        for (const absl::string_view name : absl::StrSplit(*v, ',', absl::SkipEmpty())) {
          cli.options.outputs.emplace_back(name);
        }
      } else if (flag == "--intra-op-threads") {
        status = ParseNumber(flag, *v, &cli.options.intra_op_threads);
      } else if (flag == "--inter-op-threads") {
        status = ParseNumber(flag, *v, &cli.options.inter_op_threads);
      } else if (flag == "--cpus") {
        absl::StatusOr<std::vector<int>> cpus = ParseCpuList(*v);
        if (!cpus.ok()) return cpus.status();
        cli.options.cpus = *cpus;
      } else if (flag == "--precision") {
        cli.options.precision = *v;
      } else if (flag == "--compare-precision") {
        cli.options.precision_b = *v;
      } else if (flag == "--warmup") {
        status = ParseNumber(flag, *v, &cli.options.warmup);
      } else if (flag == "--runs") {
        status = ParseNumber(flag, *v, &cli.options.runs);
      } else if (flag == "--max-time") {
        if (!absl::SimpleAtod(*v, &cli.options.max_time_s) || cli.options.max_time_s <= 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("--max-time needs seconds > 0, got '", *v, "'"));
        }
      } else if (flag == "--target-ci") {
        if (!absl::SimpleAtod(*v, &cli.options.target_ci) || !(cli.options.target_ci > 0) ||
            cli.options.target_ci >= 1) {
          return absl::InvalidArgumentError(absl::StrCat(
              "--target-ci needs a relative half-width in (0, 1), e.g. 0.03; got '", *v, "'"));
        }
      } else if (flag == "--burst") {
        status = ParseNumber(flag, *v, &cli.options.burst);
        if (status.ok() && cli.options.burst < 1) {
          return absl::InvalidArgumentError(
              absl::StrCat("--burst needs a number of runs >= 1, got '", *v, "'"));
        }
      } else if (flag == "--sessions") {
        status = ParseNumber(flag, *v, &cli.options.sessions);
        if (status.ok() && (cli.options.sessions < 1 || cli.options.sessions > kMaxSessions)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "--sessions needs a number of sessions from 1 to ", kMaxSessions, ", got '", *v,
              "'"));
        }
      } else if (flag == "--batch") {
        status = ParseNumber(flag, *v, &cli.options.batch);
      } else if (flag == "--seed") {
        status = ParseNumber(flag, *v, &cli.options.seed);
      } else if (flag == "--profile-runs") {
        status = ParseNumber(flag, *v, &cli.options.profile_runs);
      } else if (flag == "--top") {
        status = ParseNumber(flag, *v, &cli.options.top_n);
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown flag '", flag, "' (see --help)"));
      }
    }
    if (!status.ok()) return status;
  }
  if (cli.graph.empty()) {
    return absl::InvalidArgumentError("--graph is required (see --help)");
  }
  if (cli.options.burst > 0 && cli.compare.empty()) {
    return absl::InvalidArgumentError("--burst applies to --compare only");
  }
  if (cli.options.sessions > 0 && cli.compare.empty()) {
    return absl::InvalidArgumentError("--sessions applies to --compare only");
  }
  if (cli.options.target_ci > 0 && cli.compare.empty()) {
    return absl::InvalidArgumentError("--target-ci applies to --compare only");
  }
  return cli;
}

int Fail(const absl::Status& status) {
  std::cerr << "leangraph-bench: error: " << status.message() << "\n";
  return 2;
}

int Main(int argc, char** argv) {
  // TF's INFO logs (oneDNN notices, profiler sessions) would bury the report.
  setenv("TF_CPP_MIN_LOG_LEVEL", "2", /*overwrite=*/0);
  bool help = false;
  absl::StatusOr<Cli> cli = ParseArgs(argc, argv, &help);
  if (help) {
    std::cout << kUsage;
    return 0;
  }
  if (!cli.ok()) return Fail(cli.status());
  // Pinned first, before TensorFlow starts any thread, so that every thread
  // of the process inherits the mask (the runner checks them all).
  if (!cli->options.cpus.empty()) {
    const absl::Status pinned = PinCallingThread(cli->options.cpus);
    if (!pinned.ok()) return Fail(pinned);
  }
  absl::StatusOr<tensorflow::GraphDef> a = LoadGraph(cli->graph);
  if (!a.ok()) return Fail(a.status());
  std::string report;
  bool affinity_ok = true;
  if (!cli->compare.empty()) {
    absl::StatusOr<tensorflow::GraphDef> b = LoadGraph(cli->compare);
    if (!b.ok()) return Fail(b.status());
    absl::StatusOr<CompareReport> result = RunCompare(*a, *b, cli->options);
    if (!result.ok()) return Fail(result.status());
    report = cli->json ? CompareToJson(*result) : CompareToText(*result);
    affinity_ok = !result->a.affinity_checked || result->a.affinity_ok;
  } else {
    absl::StatusOr<BenchReport> result = RunBenchmark(*a, cli->options);
    if (!result.ok()) return Fail(result.status());
    report = cli->json ? ReportToJson(*result) : ReportToText(*result);
    affinity_ok = !result->affinity_checked || result->affinity_ok;
  }
  std::cout << report << (cli->json ? "\n" : "");
  if (!affinity_ok) {
    std::cerr << "leangraph-bench: warning: some threads ran outside --cpus "
                 "(see the threads in --json)\n";
    return 3;
  }
  return 0;
}

}  // namespace
}  // namespace leangraph

int main(int argc, char** argv) { return leangraph::Main(argc, argv); }
