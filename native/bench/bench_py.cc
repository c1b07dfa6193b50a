#include "native/bench/bench_py.h"

#include <climits>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "native/bench/cpu.h"
#include "native/bench/runner.h"
#include "native/bench/stats.h"
#include "native/status_error.h"
#include "pybind11/stl.h"

namespace py = pybind11;

namespace leangraph {
namespace {

// (name, dtype or "", shape or None, data bytes or None): an input as Python
// prepares it. Arrays cross as bytes, so no numpy ABI is involved.
using PyInput = std::tuple<std::string, std::string, std::optional<std::vector<int64_t>>,
                           std::optional<py::bytes>>;

absl::StatusOr<tensorflow::GraphDef> Parse(const std::string& bytes, const char* which) {
  tensorflow::GraphDef graph;
  if (bytes.size() >= static_cast<size_t>(INT_MAX) ||
      !graph.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("graph ", which, " is not a serialized GraphDef under 2 GiB"));
  }
  return graph;
}

BenchOptions MakeOptions(const std::vector<PyInput>& inputs,
                         const std::vector<std::string>& outputs, int64_t runs,
                         int64_t warmup, double max_time, int intra, int inter,
                         const std::vector<int>& cpus, const std::string& precision,
                         uint64_t seed, int64_t batch, bool profile, bool overhead) {
  BenchOptions o;
  for (const auto& [name, dtype, shape, data] : inputs) {
    InputSpec spec;
    spec.name = name;
    spec.dtype = dtype;
    if (shape) {
      spec.shape = *shape;
      spec.has_shape = true;
    }
    if (data) {
      spec.data = std::string(*data);  // copied while the GIL is held
      spec.has_data = true;
    }
    o.inputs.push_back(std::move(spec));
  }
  o.outputs = outputs;
  o.runs = runs;
  o.warmup = warmup;
  o.max_time_s = max_time;
  o.intra_op_threads = intra;
  o.inter_op_threads = inter;
  o.cpus = cpus;
  o.precision = precision;
  o.seed = seed;
  o.batch = batch;
  o.profile = profile;
  o.measure_overhead = overhead;
  return o;
}

std::string BenchRun(const std::string& graph_bytes, const std::vector<PyInput>& inputs,
                     const std::vector<std::string>& outputs, int64_t runs, int64_t warmup,
                     double max_time, int intra, int inter, const std::vector<int>& cpus,
                     const std::string& precision, uint64_t seed, int64_t batch,
                     bool profile, bool overhead) {
  const BenchOptions options = MakeOptions(inputs, outputs, runs, warmup, max_time, intra,
                                           inter, cpus, precision, seed, batch, profile,
                                           overhead);
  absl::StatusOr<std::string> json;
  {
    // The timed runs take seconds to minutes; other Python threads go on.
    // (The timer's own thread count is what --cpus pins, not these.)
    py::gil_scoped_release release;
    absl::StatusOr<tensorflow::GraphDef> graph = Parse(graph_bytes, "");
    absl::StatusOr<BenchReport> report =
        graph.ok() ? RunBenchmark(*graph, options) : absl::StatusOr<BenchReport>(graph.status());
    json = report.ok() ? absl::StatusOr<std::string>(ReportToJson(*report))
                       : absl::StatusOr<std::string>(report.status());
  }
  ThrowIfError(json.status(), ErrorKind::kBenchmark);
  return *json;
}

std::string BenchCompare(const std::string& a_bytes, const std::string& b_bytes,
                         const std::vector<PyInput>& inputs,
                         const std::vector<std::string>& outputs, int64_t runs,
                         int64_t warmup, double max_time, int intra, int inter,
                         const std::vector<int>& cpus, const std::string& precision,
                         uint64_t seed, int64_t batch, bool profile, bool overhead,
                         const std::string& precision_b) {
  BenchOptions options = MakeOptions(inputs, outputs, runs, warmup, max_time, intra, inter,
                                     cpus, precision, seed, batch, profile, overhead);
  options.precision_b = precision_b;
  absl::StatusOr<std::string> json;
  {
    // As in BenchRun: long native work, no Python objects touched.
    py::gil_scoped_release release;
    absl::StatusOr<tensorflow::GraphDef> a = Parse(a_bytes, "A");
    absl::StatusOr<tensorflow::GraphDef> b =
        a.ok() ? Parse(b_bytes, "B") : absl::StatusOr<tensorflow::GraphDef>(a.status());
    absl::StatusOr<CompareReport> report =
        b.ok() ? RunCompare(*a, *b, options) : absl::StatusOr<CompareReport>(b.status());
    json = report.ok() ? absl::StatusOr<std::string>(CompareToJson(*report))
                       : absl::StatusOr<std::string>(report.status());
  }
  ThrowIfError(json.status(), ErrorKind::kBenchmark);
  return *json;
}

std::string BenchStats(const std::vector<double>& samples_ms, int64_t batch) {
  if (batch < 1) {
    ThrowIfError(absl::InvalidArgumentError("batch must be at least 1"),
                 ErrorKind::kBenchmark);
  }
  return StatsToJson(ComputeStats(samples_ms, batch));
}

std::tuple<size_t, size_t, double> MedianCiForPython(size_t n) {
  const MedianInterval ci = MedianCi95(n);
  return {ci.lo, ci.hi, ci.coverage};
}

std::pair<double, double> RatioCiForPython(const std::vector<double>& a,
                                           const std::vector<double>& b, uint64_t seed,
                                           int resamples) {
  if (a.size() != b.size() || a.empty()) {
    ThrowIfError(absl::InvalidArgumentError(
                     "the two samples must be non-empty and of the same length (pairs)"),
                 ErrorKind::kBenchmark);
  }
  const RatioInterval ci = MedianRatioCi95(a, b, seed, resamples);
  return {ci.lo, ci.hi};
}

}  // namespace

void RegisterBench(py::module_& m) {
  m.def("bench_run", &BenchRun, py::arg("graph"), py::arg("inputs"), py::arg("outputs"),
        py::arg("runs"), py::arg("warmup"), py::arg("max_time"), py::arg("intra"),
        py::arg("inter"), py::arg("cpus"), py::arg("precision"), py::arg("seed"),
        py::arg("batch"), py::arg("profile"), py::arg("overhead"),
        "Times a serialized GraphDef; returns the report as JSON.");
  m.def("bench_compare", &BenchCompare, py::arg("a"), py::arg("b"), py::arg("inputs"),
        py::arg("outputs"), py::arg("runs"), py::arg("warmup"), py::arg("max_time"),
        py::arg("intra"), py::arg("inter"), py::arg("cpus"), py::arg("precision"),
        py::arg("seed"), py::arg("batch"), py::arg("profile"), py::arg("overhead"),
        py::arg("precision_b") = "",
        "Times two graphs interleaved; returns the comparison as JSON.");
  m.def("bench_stats", &BenchStats, py::arg("samples_ms"), py::arg("batch") = 1,
        "The timer's statistics of latencies (ms), as JSON.");
  m.def("median_ci95", &MedianCiForPython, py::arg("n"),
        "(lo, hi, coverage): 0-based order statistics bounding the median.");
  m.def("median_ratio_ci95", &RatioCiForPython, py::arg("a"), py::arg("b"),
        py::arg("seed") = 0, py::arg("resamples") = 2000,
        "Paired-bootstrap 95% interval of median(a) / median(b).");
  m.def("cpu_supports_bf16", &CpuSupportsBf16,
        "AVX512_BF16 or AMX-BF16 (false when LEANGRAPH_FAKE_NO_BF16=1).");
  m.def("allowed_cpus", &AllowedCpus, "CPUs the calling thread may run on.");
}

}  // namespace leangraph
