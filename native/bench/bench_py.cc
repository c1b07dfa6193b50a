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

// Polled by the timer while the GIL is released: takes it back for a moment
// so that SIGINT's Python handler runs. The KeyboardInterrupt it raises stays
// set on this thread and is thrown once the timer has returned (Raise below).
bool PythonInterrupted() {
  py::gil_scoped_acquire gil;
  return PyErr_CheckSignals() != 0;
}

// With the GIL held again: a pending Python exception (KeyboardInterrupt)
// wins over the Cancelled status it caused.
void Raise(const absl::Status& status) {
  if (PyErr_Occurred() != nullptr) throw py::error_already_set();
  ThrowIfError(status, ErrorKind::kBenchmark);
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
  o.interrupted = PythonInterrupted;
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
  Raise(json.status());
  return *json;
}

std::string BenchCompare(const std::string& a_bytes, const std::string& b_bytes,
                         const std::vector<PyInput>& inputs,
                         const std::vector<std::string>& outputs, int64_t runs,
                         int64_t warmup, double max_time, int intra, int inter,
                         const std::vector<int>& cpus, const std::string& precision,
                         uint64_t seed, int64_t batch, bool profile, bool overhead,
                         const std::string& precision_b, double target_ci,
                         int64_t burst, int sessions) {
  BenchOptions options = MakeOptions(inputs, outputs, runs, warmup, max_time, intra, inter,
                                     cpus, precision, seed, batch, profile, overhead);
  options.precision_b = precision_b;
  options.target_ci = target_ci;
  options.burst = burst;
  options.sessions = sessions;
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
  Raise(json.status());
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

py::dict PairedRatioForPython(const std::vector<double>& a, const std::vector<double>& b,
                              const std::vector<bool>& a_first, double confidence,
                              int sessions) {
  if (a.size() != b.size() || a.empty() || (!a_first.empty() && a_first.size() != a.size())) {
    ThrowIfError(absl::InvalidArgumentError(
                     "a and b must be non-empty and of the same length (pairs), and a_first "
                     "empty or of that length"),
                 ErrorKind::kBenchmark);
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(a[i] > 0) || !(b[i] > 0)) {
      ThrowIfError(absl::InvalidArgumentError(absl::StrCat(
                       "pair ", i, " has a time that is not > 0 (", a[i], ", ", b[i], ")")),
                   ErrorKind::kBenchmark);
    }
  }
  if (!(confidence > 0 && confidence < 1)) {
    ThrowIfError(absl::InvalidArgumentError("confidence must be in (0, 1)"),
                 ErrorKind::kBenchmark);
  }
  if (sessions < 1 || sessions > kMaxSessions) {
    ThrowIfError(absl::InvalidArgumentError(
                     absl::StrCat("sessions must be 1 to ", kMaxSessions, "; got ", sessions)),
                 ErrorKind::kBenchmark);
  }
  const PairedRatio r = ComparePairs(a, b, a_first, confidence, sessions);
  py::dict out;
  out["pairs"] = r.pairs;
  out["speedup"] = r.speedup;
  out["ci"] = py::make_tuple(r.lo, r.hi);
  out["coverage"] = r.coverage;
  out["exact"] = r.exact;
  out["half_width"] = r.half_width;
  out["ratio_of_medians"] = r.ratio_of_medians;
  out["position_effect"] = r.has_position_effect ? py::object(py::float_(r.position_effect))
                                                 : py::object(py::none());
  out["sessions"] = r.sessions.sessions;
  out["between_sessions_sd"] = r.sessions.sd;
  out["between_sessions_widened"] = r.sessions.widened;
  return out;
}

std::vector<bool> PairOrderForPython(uint64_t pairs, uint64_t seed) {
  std::vector<bool> out;
  for (uint64_t i = 0; i < pairs; ++i) out.push_back(AFirstInPair(seed, i));
  return out;
}

std::pair<std::string, std::optional<double>> StopForPython(
    const std::vector<double>& log_ratios, double elapsed_s, int64_t runs, double max_time,
    double target_ci, int64_t min_pairs, int64_t check_every, int sessions) {
  StopRule rule;
  rule.sessions = sessions;
  rule.runs = runs;
  rule.max_time_s = max_time;
  rule.target_half_width = target_ci;
  rule.min_pairs = min_pairs;
  rule.check_every = check_every;
  double width = -1;
  const StopReason reason = DecideStop(rule, log_ratios, elapsed_s, &width);
  std::optional<double> half_width;
  if (width >= 0) half_width = width;
  return {StopReasonName(reason), half_width};
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
        py::arg("precision_b") = "", py::arg("target_ci") = 0.0, py::arg("burst") = 0,
        py::arg("sessions") = 0,
        "Times two graphs in randomized ABBA pairs; returns the comparison as JSON.");
  m.def("bench_stats", &BenchStats, py::arg("samples_ms"), py::arg("batch") = 1,
        "The timer's statistics of latencies (ms), as JSON.");
  m.def("median_ci95", &MedianCiForPython, py::arg("n"),
        "(lo, hi, coverage): 0-based order statistics bounding the median.");
  m.def("median_ratio_ci95", &RatioCiForPython, py::arg("a"), py::arg("b"),
        py::arg("seed") = 0, py::arg("resamples") = 2000,
        "Paired-bootstrap 95% interval of median(a) / median(b).");
  m.def("paired_ratio", &PairedRatioForPython, py::arg("a"), py::arg("b"),
        py::arg("a_first") = std::vector<bool>{}, py::arg("confidence") = 0.95,
        py::arg("sessions") = 1,
        "Hodges-Lehmann speed-up a/b of paired times with its Wilcoxon interval, widened "
        "by the session pairs' disagreement when sessions > 1 (dict).");
  m.def("session_of_pair", &SessionOfPair, py::arg("pair"), py::arg("sessions"),
        "The session pair that times pair `pair` of a compare.");
  m.def("student_t_quantile", &StudentTQuantile, py::arg("confidence"), py::arg("df"),
        "Two-sided Student t quantile for an integer df.");
  m.def("pair_order", &PairOrderForPython, py::arg("pairs"), py::arg("seed"),
        "Per pair, whether A runs first (the timer's randomized ABBA blocks).");
  m.def("stop_decision", &StopForPython, py::arg("log_ratios"), py::arg("elapsed_s"),
        py::arg("runs"), py::arg("max_time"), py::arg("target_ci"), py::arg("min_pairs") = 10,
        py::arg("check_every") = 10, py::arg("sessions") = 1,
        "(reason, half-width or None): the timer's stopping rule for a compare.");
  m.def("cpu_supports_bf16", &CpuSupportsBf16,
        "AVX512_BF16 or AMX-BF16 (false when LEANGRAPH_FAKE_NO_BF16=1).");
  m.def("allowed_cpus", &AllowedCpus, "CPUs the calling thread may run on.");
}

}  // namespace leangraph
