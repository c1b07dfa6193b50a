#include "native/bench/runner.h"

#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/ascii.h"
#include "native/bench/json.h"
#include "native/edge.h"
#include "native/graph_check.h"
#include "tensorflow/core/common_runtime/device.h"
#include "tensorflow/core/common_runtime/device_mgr.h"
#include "tensorflow/core/framework/node_def.pb.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/step_stats.pb.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.pb.h"
#include "tensorflow/core/protobuf/config.pb.h"
#include "tensorflow/core/protobuf/rewriter_config.pb.h"
#include "tensorflow/core/public/session.h"

namespace leangraph {
namespace {

using Clock = std::chrono::steady_clock;
namespace tf = ::tensorflow;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct DtypeInfo {
  const char* name;
  tf::DataType type;
  int size;
};

const std::vector<DtypeInfo>& Dtypes() {
  static const auto* dtypes = new std::vector<DtypeInfo>{
      {"float32", tf::DT_FLOAT, 4}, {"float64", tf::DT_DOUBLE, 8},
      {"float16", tf::DT_HALF, 2},  {"int8", tf::DT_INT8, 1},
      {"int16", tf::DT_INT16, 2},   {"int32", tf::DT_INT32, 4},
      {"int64", tf::DT_INT64, 8},   {"uint8", tf::DT_UINT8, 1},
      {"uint16", tf::DT_UINT16, 2}, {"bool", tf::DT_BOOL, 1},
  };
  return *dtypes;
}

const DtypeInfo* FindDtype(tf::DataType type) {
  for (const DtypeInfo& d : Dtypes()) {
    if (d.type == type) return &d;
  }
  return nullptr;
}

std::string SupportedDtypes() {
  std::vector<std::string> names;
  for (const DtypeInfo& d : Dtypes()) names.push_back(d.name);
  return absl::StrJoin(names, ", ");
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::vector<std::string> dims;
  for (const int64_t d : shape) dims.push_back(d < 0 ? "?" : absl::StrCat(d));
  return absl::StrCat("[", absl::StrJoin(dims, ","), "]");
}

// The node `name` names, as given when it is not a well-formed tensor name;
// *bad_port when it names an output other than 0.
std::string StripPort0(const std::string& name, bool* bad_port) {
  const EdgeView edge = ParseEdge(name);
  *bad_port = false;
  if (!edge.valid || edge.control) return name;
  *bad_port = edge.port != 0;
  return std::string(edge.node);
}

bool IsPlaceholder(const tf::NodeDef& node) {
  return node.op() == "Placeholder" || node.op() == "PlaceholderWithDefault";
}

struct Prepared {
  std::vector<std::pair<std::string, tf::Tensor>> feeds;
  std::vector<std::string> fetches;
  std::vector<ResolvedInput> inputs;
  std::vector<std::string> outputs;
  int64_t batch = 1;
};

void FillTensor(tf::Tensor* t, bool zeros, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::uniform_int_distribution<int> small(0, 9);
  std::uniform_int_distribution<int> byte(0, 255);
  const int64_t n = t->NumElements();
  switch (t->dtype()) {
#define LG_FILL(DT, T, EXPR)                                  \
  case DT: {                                                  \
    auto flat = t->flat<T>();                                 \
    for (int64_t i = 0; i < n; ++i) flat(i) = zeros ? T(0) : (EXPR); \
    break;                                                    \
  }
    LG_FILL(tf::DT_FLOAT, float, unit(rng))
    LG_FILL(tf::DT_DOUBLE, double, static_cast<double>(unit(rng)))
    LG_FILL(tf::DT_HALF, Eigen::half, Eigen::half(unit(rng)))
    LG_FILL(tf::DT_INT8, int8_t, static_cast<int8_t>(small(rng)))
    LG_FILL(tf::DT_INT16, int16_t, static_cast<int16_t>(small(rng)))
    LG_FILL(tf::DT_INT32, int32_t, small(rng))
    LG_FILL(tf::DT_INT64, int64_t, small(rng))
    LG_FILL(tf::DT_UINT8, uint8_t, static_cast<uint8_t>(byte(rng)))
    LG_FILL(tf::DT_UINT16, uint16_t, static_cast<uint16_t>(byte(rng)))
    LG_FILL(tf::DT_BOOL, bool, small(rng) % 2 == 1)
#undef LG_FILL
    default:
      break;
  }
}

// Everything about feeds and fetches is checked here, against the graph's
// own attributes, so that TensorFlow never sees a feed it would refuse with a
// CHECK failure.
absl::StatusOr<Prepared> Prepare(const tf::GraphDef& graph,
                                 const BenchOptions& options) {
  std::map<std::string, const tf::NodeDef*> nodes;
  std::vector<std::string> placeholders;
  for (const tf::NodeDef& node : graph.node()) {
    nodes[node.name()] = &node;
    if (IsPlaceholder(node)) placeholders.push_back(node.name());
  }
  const std::string known = placeholders.empty()
                                ? std::string("none")
                                : absl::StrJoin(placeholders, ", ");
  Prepared out;
  std::vector<InputSpec> specs;
  std::set<std::string> named;
  for (const InputSpec& spec : options.inputs) {
    bool bad_port = false;
    InputSpec s = spec;
    s.name = StripPort0(spec.name, &bad_port);
    const auto it = nodes.find(s.name);
    if (it == nodes.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", spec.name, "' is not a node of the graph; its Placeholders are: ",
          known));
    }
    if (!IsPlaceholder(*it->second)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", spec.name, "' is a ", it->second->op(),
          ", not a Placeholder; the graph's Placeholders are: ", known));
    }
    if (bad_port) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", spec.name, "': a Placeholder has only output 0"));
    }
    if (!named.insert(s.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("input '", s.name, "' is given twice"));
    }
    specs.push_back(std::move(s));
  }
  // Required Placeholders nobody named are fed generated data.
  for (const std::string& name : placeholders) {
    if (named.count(name) == 0 && nodes[name]->op() == "Placeholder") {
      InputSpec s;
      s.name = name;
      specs.push_back(std::move(s));
    }
  }

  for (size_t index = 0; index < specs.size(); ++index) {
    const InputSpec& spec = specs[index];
    const tf::NodeDef& node = *nodes[spec.name];
    const auto dtype_attr = node.attr().find("dtype");
    if (dtype_attr == node.attr().end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("Placeholder '", spec.name, "' has no dtype attribute"));
    }
    const DtypeInfo* graph_dtype = FindDtype(dtype_attr->second.type());
    if (graph_dtype == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", spec.name, "' has dtype ",
          tf::DataType_Name(dtype_attr->second.type()),
          ", which the timer cannot feed (supported: ", SupportedDtypes(), ")"));
    }
    if (!spec.dtype.empty()) {
      const std::string given = CanonicalDtype(spec.dtype);
      if (given.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "input '", spec.name, "': unknown dtype '", spec.dtype,
            "' (supported: ", SupportedDtypes(), ")"));
      }
      if (given != graph_dtype->name) {
        return absl::InvalidArgumentError(absl::StrCat(
            "dtype mismatch for input '", spec.name, "': the graph's Placeholder is ",
            graph_dtype->name, " but ", given, " was given"));
      }
    }
    // The Placeholder's static shape: -1 for unknown dimensions; no entry
    // at all for unknown rank.
    bool rank_known = false;
    std::vector<int64_t> graph_shape;
    const auto shape_attr = node.attr().find("shape");
    if (shape_attr != node.attr().end() &&
        !shape_attr->second.shape().unknown_rank()) {
      rank_known = true;
      for (const auto& dim : shape_attr->second.shape().dim()) {
        graph_shape.push_back(dim.size());
      }
    }
    std::vector<int64_t> shape;
    if (spec.has_shape) {
      shape = spec.shape;
    } else if (!rank_known) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", spec.name,
          "' has an unknown shape in the graph; give it, e.g. --input ",
          spec.name, ":1,224,224,3:", graph_dtype->name));
    } else {
      shape = graph_shape;
      for (size_t d = 0; d < shape.size(); ++d) {
        if (shape[d] >= 0) continue;
        if (d == 0) {
          shape[d] = options.batch > 0 ? options.batch : 1;
        } else {
          return absl::InvalidArgumentError(absl::StrCat(
              "input '", spec.name, "' has shape ", ShapeText(graph_shape),
              " with an unknown dimension ", d,
              "; give the full shape, e.g. --input ", spec.name, ":SHAPE:",
              graph_dtype->name));
        }
      }
    }
    for (const int64_t d : shape) {
      if (d < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "input '", spec.name, "': negative dimension in ", ShapeText(shape)));
      }
    }
    if (rank_known) {
      bool fits = shape.size() == graph_shape.size();
      for (size_t d = 0; fits && d < shape.size(); ++d) {
        fits = graph_shape[d] < 0 || graph_shape[d] == shape[d];
      }
      if (!fits) {
        return absl::InvalidArgumentError(absl::StrCat(
            "shape mismatch for input '", spec.name, "': the graph's Placeholder is ",
            ShapeText(graph_shape), " but ", ShapeText(shape), " was given"));
      }
    }
    if (options.batch > 0 && !shape.empty() && shape[0] != options.batch) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", spec.name, "' has batch dimension ", shape[0], " (shape ",
          ShapeText(shape), ") but --batch ", options.batch, " was asked for"));
    }
    tf::TensorShape tensor_shape;
    const absl::Status shape_ok = tf::TensorShape::BuildTensorShape(shape, &tensor_shape);
    if (!shape_ok.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", spec.name, "': invalid shape ", ShapeText(shape), ": ",
          shape_ok.message()));
    }
    const int64_t bytes = tensor_shape.num_elements() * graph_dtype->size;
    constexpr int64_t kMaxInputBytes = int64_t{8} << 30;
    if (bytes > kMaxInputBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", spec.name, "' of shape ", ShapeText(shape), " would take ",
          bytes >> 20, " MiB; the timer refuses inputs over 8 GiB"));
    }
    if (spec.has_data && static_cast<int64_t>(spec.data.size()) != bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", spec.name, "': ", spec.data.size(), " data bytes given, but ",
          ShapeText(shape), " of ", graph_dtype->name, " needs ", bytes));
    }
    tf::Tensor tensor(graph_dtype->type, tensor_shape);
    if (spec.has_data) {
      if (bytes > 0) {
        std::memcpy(const_cast<char*>(tensor.tensor_data().data()),
                    spec.data.data(), spec.data.size());
      }
    } else {
      FillTensor(&tensor, options.zeros, options.seed + index);
    }
    ResolvedInput resolved;
    resolved.name = spec.name;
    resolved.dtype = graph_dtype->name;
    resolved.shape = shape;
    resolved.source = !spec.source.empty() ? spec.source
                      : spec.has_data      ? "array"
                      : options.zeros      ? "zeros"
                                           : absl::StrCat("random(seed=", options.seed + index, ")");
    out.inputs.push_back(std::move(resolved));
    out.feeds.emplace_back(spec.name + ":0", std::move(tensor));
  }

  if (options.batch > 0) {
    out.batch = options.batch;
  } else if (!out.inputs.empty() && !out.inputs[0].shape.empty()) {
    out.batch = std::max<int64_t>(out.inputs[0].shape[0], 1);
  }

  if (options.outputs.empty()) {
    std::set<std::string> consumed;
    for (const tf::NodeDef& node : graph.node()) {
      for (const std::string& input : node.input()) {
        consumed.insert(std::string(InputNode(input)));
      }
    }
    static const auto* never = new std::set<std::string>{
        "Const", "NoOp", "Placeholder", "PlaceholderWithDefault", "Assign",
        "AssignVariableOp"};
    for (const tf::NodeDef& node : graph.node()) {
      if (consumed.count(node.name()) || never->count(node.op())) continue;
      const tf::OpDef* op_def = nullptr;
      if (tf::OpRegistry::Global()->LookUpOpDef(node.op(), &op_def).ok() &&
          op_def->output_arg_size() == 0) {
        continue;
      }
      out.outputs.push_back(node.name());
    }
    if (out.outputs.empty()) {
      return absl::InvalidArgumentError(
          "the graph has no output node (every node is consumed or a "
          "Const/Placeholder); name one with --output");
    }
  } else {
    const absl::Status found = CheckEndpoints(graph, options.outputs, "output");
    if (!found.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          found.message(), " (outputs are node names, e.g. --output logits)"));
    }
    out.outputs = options.outputs;
  }
  for (const std::string& name : out.outputs) {
    out.fetches.push_back(name.find(':') == std::string::npos ? name + ":0" : name);
  }
  return out;
}

bool IsHeavyOp(const std::string& op) {
  return absl::StrContains(op, "Conv") || absl::StrContains(op, "MatMul");
}

// inter_op_threads resolved for these graphs (the widest of them).
BenchOptions WithInterOpMode(const BenchOptions& asked, int width) {
  BenchOptions o = asked;
  o.ops_in_calling_thread =
      asked.inter_op_threads < 0 || (asked.inter_op_threads == 0 && width <= kMaxInlineWidth);
  return o;
}

absl::Status CheckOptions(const BenchOptions& o) {
  if (o.precision != "fp32" && o.precision != "bf16") {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown precision '", o.precision, "' (fp32 or bf16)"));
  }
  if (o.precision == "bf16" && !CpuSupportsBf16()) {
    return absl::FailedPreconditionError(
        "bf16 was requested but this CPU has neither AVX512_BF16 nor AMX-BF16, "
        "so oneDNN would emulate bf16 slower than fp32; use --precision fp32");
  }
  if (o.runs < 0 || o.warmup < 0 || o.max_time_s < 0 || o.batch < 0 || o.burst < 0 ||
      o.intra_op_threads < 0 || o.inter_op_threads < -1 || o.profile_runs < 0 ||
      o.top_n < 0) {
    return absl::InvalidArgumentError(
        "runs, warmup, max_time, batch, burst, thread counts and profile counts must "
        "not be negative (but inter-op threads -1: every op in the calling thread)");
  }
  if (o.sessions < 0 || o.sessions > kMaxSessions) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sessions per graph must be 1 to ", kMaxSessions, " (0: automatic); got ", o.sessions));
  }
  if (o.runs == 0 && o.max_time_s <= 0) {
    return absl::InvalidArgumentError("runs must be at least 1 (or give a max_time)");
  }
  if (!(o.target_ci >= 0 && o.target_ci < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "target_ci is a relative half-width in [0, 1), e.g. 0.03; got ", o.target_ci));
  }
  if (!o.owns_process &&
      (o.intra_op_threads > 0 || o.inter_op_threads > 0 || !o.cpus.empty())) {
    return absl::FailedPreconditionError(
        "a chosen thread count or CPU pinning needs a process of its own: this one shares "
        "TensorFlow's process-wide thread pools, sized and placed by whoever made them "
        "first; use the leangraph-bench binary (leangraph.bench.benchmark_in_child / "
        "compare_in_child)");
  }
  return absl::OkStatus();
}

// Stops a benchmark between runs when options.interrupted says so, asking
// at most every 100 ms so that a Python caller pays one GIL round trip per
// tenth of a second, not per run.
class InterruptPoll {
 public:
  explicit InterruptPoll(const BenchOptions& o) : check_(o.interrupted) {}
  absl::Status Poll() {
    if (!check_) return absl::OkStatus();
    const Clock::time_point now = Clock::now();
    if (now - last_ < std::chrono::milliseconds(100)) return absl::OkStatus();
    last_ = now;
    if (check_()) return absl::CancelledError("the benchmark was interrupted");
    return absl::OkStatus();
  }

 private:
  std::function<bool()> check_;
  Clock::time_point last_ = Clock::now();
};

struct SessionHandle {
  std::unique_ptr<tf::Session> session;
  double init_ms = 0;
  std::string intra_op_pool;
  int intra_op_pool_size = 0;
};

// The size of the intra-op pool the session's CPU device computes on, read
// from the device itself (so a shared pool's real size is reported, not the
// thread count the options asked for).
int IntraOpPoolSize(tf::Session* session) {
  const tf::DeviceMgr* devices = nullptr;
  if (!session->LocalDeviceManager(&devices).ok() || devices == nullptr) return 0;
  for (tf::Device* device : devices->ListDevices()) {
    if (device->device_type() != "CPU") continue;
    const tf::DeviceBase::CpuWorkerThreads* workers = device->tensorflow_cpu_worker_threads();
    if (workers != nullptr) return workers->num_threads;
  }
  return 0;
}

absl::StatusOr<SessionHandle> CreateSession(const tf::GraphDef& graph,
                                            const BenchOptions& o) {
  // Ops in the calling thread (TF's negative inter-op setting; the kernels
  // still split their work over the intra-op pool) where the graph leaves
  // a pool nothing to run beside them (kMaxInlineWidth). Why: on a pool,
  // TF's executor hands each op it measured as expensive to a pool thread
  // and runs the others inline, a choice each session makes from its own
  // runs; two sessions of one small CNN then differed by up to 20 %,
  // steadily for a whole compare (its first and second halves' ratios
  // correlated 0.95 over 20 compares) and only 83 % of 30 self-compares'
  // intervals covered 1.0 (sd of their ratios 3.3 %); inline, in the same
  // run, 97 % (sd 1.2 %). Where a pool is used, A and B share the
  // process's: with a pool per session, a self-compare on a loaded 2-core
  // machine came out up to 1.6x "faster" one way, session after session.
  tf::SessionOptions session_options;
  tf::ConfigProto& config = session_options.config;
  config.set_intra_op_parallelism_threads(o.intra_op_threads);
  config.set_inter_op_parallelism_threads(o.ops_in_calling_thread ? -1 : o.inter_op_threads);
  config.set_use_per_session_threads(false);
  if (o.precision == "bf16") {
    config.mutable_graph_options()
        ->mutable_rewrite_options()
        ->set_auto_mixed_precision_onednn_bfloat16(tf::RewriterConfig::ON);
  }
  SessionHandle handle;
  handle.intra_op_pool = PerSessionIntraOpPools() ? "per-session" : "global";
  const Clock::time_point start = Clock::now();
  tf::Session* raw = nullptr;
  absl::Status status = tf::NewSession(session_options, &raw);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("TensorFlow could not create a session: ", status.message()));
  }
  handle.session.reset(raw);
  status = handle.session->Create(graph);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TensorFlow refused the graph: ", status.message()));
  }
  handle.init_ms = MsSince(start);
  handle.intra_op_pool_size = IntraOpPoolSize(handle.session.get());
  return handle;
}

absl::StatusOr<double> RunOnce(tf::Session* session, const Prepared& p,
                               const tf::RunOptions* run_options = nullptr,
                               tf::RunMetadata* metadata = nullptr) {
  std::vector<tf::Tensor> outputs;
  const Clock::time_point start = Clock::now();
  const absl::Status status =
      run_options != nullptr
          ? session->Run(*run_options, p.feeds, p.fetches, {}, &outputs, metadata)
          : session->Run(p.feeds, p.fetches, {}, &outputs);
  const double ms = MsSince(start);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("running the graph failed: ", status.message()));
  }
  return ms;
}

// Restores the calling thread's affinity when the benchmark ends, so a
// Python caller's thread is not left pinned.
class ScopedPin {
 public:
  absl::Status Pin(const std::vector<int>& cpus) {
    if (cpus.empty()) return absl::OkStatus();
    CPU_ZERO(&saved_);
    if (sched_getaffinity(0, sizeof(saved_), &saved_) != 0) {
      return absl::InternalError("cannot read this thread's CPU affinity");
    }
    const absl::Status status = PinCallingThread(cpus);
    active_ = status.ok();
    return status;
  }
  ~ScopedPin() {
    if (active_) sched_setaffinity(0, sizeof(saved_), &saved_);
  }

 private:
  cpu_set_t saved_;
  bool active_ = false;
};

std::set<int> ThreadIds() {
  std::set<int> ids;
  for (const ThreadAffinity& t : ReadThreadAffinities()) ids.insert(t.tid);
  return ids;
}

void RecordAffinity(const BenchOptions& o, const std::set<int>& before,
                    BenchReport* report) {
  const int self = CurrentThreadId();
  for (ThreadAffinity& t : ReadThreadAffinities()) {
    // A shared intra-op pool's threads predate the session and carry no
    // telling name, so then every thread is listed, as it is.
    if (o.all_threads || !PerSessionIntraOpPools() || before.count(t.tid) == 0 ||
        t.tid == self) {
      report->threads.push_back(std::move(t));
    }
  }
  report->affinity_checked = !o.cpus.empty();
  if (report->affinity_checked) {
    const std::string want = FormatCpuList(o.cpus);
    report->affinity_ok = !report->threads.empty();
    for (const ThreadAffinity& t : report->threads) {
      if (t.cpus != want) report->affinity_ok = false;
    }
  }
}

// The op type from a step-stats timeline label "name = Op(inputs)".
std::string OpFromLabel(const std::string& label) {
  const size_t eq = label.find(" = ");
  if (eq == std::string::npos) return "";
  const size_t paren = label.find('(', eq);
  return label.substr(eq + 3, paren == std::string::npos ? std::string::npos
                                                         : paren - eq - 3);
}

absl::Status Profile(tf::Session* session, const Prepared& p,
                     const tf::GraphDef& graph, const BenchOptions& o,
                     BenchReport* report) {
  std::map<std::string, std::string> op_of;
  for (const tf::NodeDef& node : graph.node()) op_of[node.name()] = node.op();
  std::map<std::string, std::pair<std::string, double>> node_ms;
  tf::RunOptions run_options;
  run_options.set_trace_level(tf::RunOptions::FULL_TRACE);
  const int runs = std::max(o.profile_runs, 1);
  InterruptPoll poll(o);
  for (int i = 0; i < runs; ++i) {
    if (absl::Status s = poll.Poll(); !s.ok()) return s;
    tf::RunMetadata metadata;
    const absl::StatusOr<double> ms = RunOnce(session, p, &run_options, &metadata);
    if (!ms.ok()) return ms.status();
    for (const auto& device : metadata.step_stats().dev_stats()) {
      for (const auto& stats : device.node_stats()) {
        if (stats.node_name() == "_SOURCE" || stats.node_name() == "_SINK") continue;
        auto& entry = node_ms[stats.node_name()];
        if (entry.first.empty()) {
          entry.first = OpFromLabel(stats.timeline_label());
          if (entry.first.empty()) {
            const auto it = op_of.find(stats.node_name());
            entry.first = it == op_of.end() ? "?" : it->second;
          }
        }
        entry.second +=
            static_cast<double>(stats.op_end_rel_micros() - stats.op_start_rel_micros()) /
            1000.0;
      }
    }
  }
  double total = 0;
  std::map<std::string, ProfileRow> by_op;
  std::vector<ProfileRow> nodes;
  for (const auto& [name, entry] : node_ms) {
    const double ms = entry.second / runs;
    total += ms;
    ProfileRow& row = by_op[entry.first];
    row.name = entry.first;
    row.op = entry.first;
    row.ms += ms;
    row.count += 1;
    nodes.push_back({name, entry.first, ms, 0, 1});
  }
  const auto by_time = [](const ProfileRow& a, const ProfileRow& b) {
    return a.ms != b.ms ? a.ms > b.ms : a.name < b.name;
  };
  for (auto& [op, row] : by_op) {
    row.percent = total > 0 ? 100.0 * row.ms / total : 0;
    report->by_op_type.push_back(row);
  }
  std::sort(report->by_op_type.begin(), report->by_op_type.end(), by_time);
  std::sort(nodes.begin(), nodes.end(), by_time);
  if (nodes.size() > static_cast<size_t>(o.top_n)) nodes.resize(o.top_n);
  for (ProfileRow& row : nodes) row.percent = total > 0 ? 100.0 * row.ms / total : 0;
  report->top_nodes = std::move(nodes);
  report->has_profile = true;
  report->profile_runs = runs;
  return absl::OkStatus();
}

// The median latency of a Placeholder -> Identity graph: what one
// Session::Run costs the timer before any real op runs.
absl::StatusOr<double> MeasureOverhead(const BenchOptions& o) {
  tf::GraphDef graph;
  tf::NodeDef* input = graph.add_node();
  input->set_name("overhead_input");
  input->set_op("Placeholder");
  (*input->mutable_attr())["dtype"].set_type(tf::DT_FLOAT);
  (*input->mutable_attr())["shape"].mutable_shape()->add_dim()->set_size(1);
  tf::NodeDef* identity = graph.add_node();
  identity->set_name("overhead_output");
  identity->set_op("Identity");
  identity->add_input("overhead_input");
  (*identity->mutable_attr())["T"].set_type(tf::DT_FLOAT);
  BenchOptions empty = o;
  empty.precision = "fp32";
  empty.inputs.clear();
  empty.outputs = {"overhead_output"};
  empty.batch = 0;
  absl::StatusOr<Prepared> prepared = Prepare(graph, empty);
  if (!prepared.ok()) return prepared.status();
  absl::StatusOr<SessionHandle> handle = CreateSession(graph, empty);
  if (!handle.ok()) return handle.status();
  std::vector<double> samples;
  constexpr int kWarmup = 5, kRuns = 100;
  for (int i = 0; i < kWarmup + kRuns; ++i) {
    const absl::StatusOr<double> ms = RunOnce(handle->session.get(), *prepared);
    if (!ms.ok()) return ms.status();
    if (i >= kWarmup) samples.push_back(*ms);
  }
  return ComputeStats(samples, 1).p50;
}

double PeakRssMb() {
  rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // KiB on Linux
}

struct Candidate {
  const tf::GraphDef* graph;
  Prepared prepared;
  SessionHandle handle;
  BenchReport report;
  std::vector<SessionHandle> more;  // RunCompare's sessions after the first

  tf::Session* SessionAt(int s) const {
    return s == 0 ? handle.session.get() : more[static_cast<size_t>(s - 1)].session.get();
  }
};

// Creates the session and runs it once (Grappler works here); warm-up runs
// follow unless `warm` is false (RunCompare interleaves them itself).
absl::Status Start(Candidate* c, const BenchOptions& o, bool warm = true) {
  absl::StatusOr<SessionHandle> handle = CreateSession(*c->graph, o);
  if (!handle.ok()) return handle.status();
  c->handle = std::move(*handle);
  BenchReport& r = c->report;
  r.init_ms = c->handle.init_ms;
  r.intra_op_pool = c->handle.intra_op_pool;
  r.intra_op_pool_size = c->handle.intra_op_pool_size;
  r.inputs = c->prepared.inputs;
  r.outputs = c->prepared.outputs;
  r.batch = c->prepared.batch;
  r.warmup = o.warmup;
  r.precision = o.precision;
  r.intra_op_threads = o.intra_op_threads;
  r.inter_op_threads = o.inter_op_threads;
  r.ops_in_calling_thread = o.ops_in_calling_thread;
  r.cpus = o.cpus.empty() ? "" : FormatCpuList(o.cpus);
  const absl::StatusOr<double> first = RunOnce(c->handle.session.get(), c->prepared);
  if (!first.ok()) return first.status();
  r.first_run_ms = *first;
  if (!warm) return absl::OkStatus();
  InterruptPoll poll(o);
  for (int64_t i = 0; i < o.warmup; ++i) {
    if (absl::Status s = poll.Poll(); !s.ok()) return s;
    const absl::StatusOr<double> ms = RunOnce(c->handle.session.get(), c->prepared);
    if (!ms.ok()) return ms.status();
  }
  return absl::OkStatus();
}

int64_t RunLimit(const BenchOptions& o) {
  // With only a time limit, the sample may grow up to this many runs.
  return o.runs > 0 ? o.runs : int64_t{10'000'000};
}

absl::Status Finish(Candidate* c, const BenchOptions& o, double overhead_ms) {
  BenchReport& r = c->report;
  r.stats = ComputeStats(r.samples_ms, r.batch);
  r.overhead_ms = overhead_ms;
  if (o.profile) {
    const absl::Status status =
        Profile(c->handle.session.get(), c->prepared, *c->graph, o, &r);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace

bool PerSessionIntraOpPools() {
  const char* value = std::getenv("TF_OVERRIDE_GLOBAL_THREADPOOL");
  if (value == nullptr) return false;
  const std::string v = absl::AsciiStrToLower(value);
  return v == "1" || v == "true";
}

int ParallelWidth(const tf::GraphDef& graph) {
  std::map<std::string, int, std::less<>> index;
  for (int i = 0; i < graph.node_size(); ++i) index.emplace(graph.node(i).name(), i);
  auto producer = [&](const std::string& input) {  // -1: not in the graph
    const auto found = index.find(InputNode(input));
    return found == index.end() ? -1 : found->second;
  };
  // level[i]: the highest heavy-op level at or above node i; -1 unknown.
  std::vector<int> level(graph.node_size(), -1);
  std::vector<char> visiting(graph.node_size(), 0);
  std::map<int, int> per_level;
  for (int root = 0; root < graph.node_size(); ++root) {
    if (level[root] >= 0) continue;
    // Iterative depth-first walk over inputs (graphs can be deep).
    std::vector<std::pair<int, int>> stack = {{root, 0}};
    visiting[root] = 1;
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      const tf::NodeDef& def = graph.node(node);
      if (next < def.input_size()) {
        const int in = producer(def.input(next++));
        if (in < 0 || level[in] >= 0 || visiting[in] ||
            graph.node(in).op() == "NextIteration") {
          continue;
        }
        visiting[in] = 1;
        stack.emplace_back(in, 0);
        continue;
      }
      int above = 0;
      for (const std::string& input : def.input()) {
        const int in = producer(input);
        if (in >= 0) above = std::max(above, level[in]);
      }
      level[node] = above;
      if (IsHeavyOp(def.op())) {
        level[node] = above + 1;
        ++per_level[level[node]];
      }
      visiting[node] = 0;
      stack.pop_back();
    }
  }
  int width = 0;
  for (const auto& [unused, count] : per_level) width = std::max(width, count);
  return width;
}

std::string CanonicalDtype(const std::string& name) {
  static const auto* aliases = new std::map<std::string, std::string>{
      {"float", "float32"}, {"double", "float64"}, {"half", "float16"},
      {"f4", "float32"},    {"f8", "float64"},     {"int", "int32"},
      {"long", "int64"},
  };
  const auto alias = aliases->find(name);
  const std::string canonical = alias == aliases->end() ? name : alias->second;
  for (const DtypeInfo& d : Dtypes()) {
    if (canonical == d.name) return canonical;
  }
  return "";
}

absl::StatusOr<BenchReport> RunBenchmark(const tf::GraphDef& graph,
                                         const BenchOptions& asked) {
  absl::Status status = CheckOptions(asked);
  if (status.ok()) status = CheckGraph(graph);
  if (status.ok()) status = CheckShapes(graph);
  if (!status.ok()) return status;
  const int width = ParallelWidth(graph);
  const BenchOptions o = WithInterOpMode(asked, width);
  Candidate c{&graph, {}, {}, {}};
  absl::StatusOr<Prepared> prepared = Prepare(graph, o);
  if (!prepared.ok()) return prepared.status();
  c.prepared = std::move(*prepared);

  ScopedPin pin;
  status = pin.Pin(o.cpus);
  if (!status.ok()) return status;
  // Threads that exist now are not the session's.
  const std::set<int> before = ThreadIds();
  status = Start(&c, o);
  if (!status.ok()) return status;
  const int64_t limit = RunLimit(o);
  InterruptPoll poll(o);
  const Clock::time_point start = Clock::now();
  while (static_cast<int64_t>(c.report.samples_ms.size()) < limit) {
    status = poll.Poll();
    if (!status.ok()) return status;
    const absl::StatusOr<double> ms = RunOnce(c.handle.session.get(), c.prepared);
    if (!ms.ok()) return ms.status();
    c.report.samples_ms.push_back(*ms);
    if (o.max_time_s > 0 && MsSince(start) >= o.max_time_s * 1000.0) break;
  }
  RecordAffinity(o, before, &c.report);
  double overhead = 0;
  if (o.measure_overhead) {
    const absl::StatusOr<double> measured = MeasureOverhead(o);
    if (!measured.ok()) return measured.status();
    overhead = *measured;
  }
  status = Finish(&c, o, overhead);
  if (!status.ok()) return status;
  c.report.peak_rss_mb = PeakRssMb();
  c.report.parallel_width = width;
  return std::move(c.report);
}

int AutoSessions(const BenchOptions& o, const tf::GraphDef& a, const tf::GraphDef& b) {
  const double bytes = static_cast<double>(a.ByteSizeLong() + b.ByteSizeLong());
  const double fit = std::floor(kSessionBytesBudget / bytes);
  // Inline, one session is a sound fallback (its interval misses only the
  // sessions' offsets), so small graphs and graphs too big for
  // kMinPoolSessions copies get one; on the pool one session is not, and
  // kMinPoolSessions is the floor.
  if (o.ops_in_calling_thread && (bytes <= kInlineSessionsFromBytes || fit < kMinPoolSessions)) {
    return 1;
  }
  int sessions = static_cast<int>(
      std::clamp(fit, double{kMinPoolSessions}, double{kPoolSessions}));
  if (o.target_ci <= 0 && o.runs > 0) {
    sessions = static_cast<int>(std::clamp<int64_t>(o.runs / 4, 1, sessions));
  }
  return sessions;
}

absl::StatusOr<CompareReport> RunCompare(const tf::GraphDef& a,
                                         const tf::GraphDef& b,
                                         const BenchOptions& asked) {
  // Both graphs run the same way: on a pool if either needs one.
  const int width_a = ParallelWidth(a), width_b = ParallelWidth(b);
  BenchOptions o = WithInterOpMode(asked, std::max(width_a, width_b));
  const bool auto_sessions = o.sessions == 0;
  if (auto_sessions) o.sessions = AutoSessions(o, a, b);
  BenchOptions ob = o;
  if (!o.precision_b.empty()) ob.precision = o.precision_b;
  absl::Status status = CheckOptions(o);
  if (status.ok()) status = CheckOptions(ob);
  if (!status.ok()) return status;
  Candidate ca{&a, {}, {}, {}};
  Candidate cb{&b, {}, {}, {}};
  for (Candidate* c : {&ca, &cb}) {
    const char* which = c == &ca ? "A" : "B";
    status = CheckGraph(*c->graph);
    if (status.ok()) status = CheckShapes(*c->graph);
    absl::StatusOr<Prepared> prepared =
        status.ok() ? Prepare(*c->graph, o) : absl::StatusOr<Prepared>(status);
    if (!prepared.ok()) {
      return absl::Status(prepared.status().code(),
                          absl::StrCat("graph ", which, ": ", prepared.status().message()));
    }
    c->prepared = std::move(*prepared);
    c->report.label = which;
  }
  ScopedPin pin;
  status = pin.Pin(o.cpus);
  if (!status.ok()) return status;
  const std::set<int> before = ThreadIds();
  // Which session is made first is a seeded coin too, so that whatever
  // creation order does (memory placement, a pool's first user) is not
  // always A's; the warm-ups then alternate, so both start the timed pairs
  // equally warm.
  const bool a_created_first = AFirstInPair(o.seed ^ 0x5EC0u, 0);
  for (Candidate* c : a_created_first ? std::vector<Candidate*>{&ca, &cb}
                                      : std::vector<Candidate*>{&cb, &ca}) {
    status = Start(c, c == &ca ? o : ob, /*warm=*/false);
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat("graph ", c->report.label, ": ", status.message()));
    }
  }
  // The other sessions, A's and B's made alternately, each run once; an
  // automatic count also keeps their making within kSessionSetupBudgetMs.
  if (auto_sessions && o.sessions > kMinPoolSessions) {
    const double pair_ms = ca.report.init_ms + ca.report.first_run_ms + cb.report.init_ms +
                           cb.report.first_run_ms;
    if (pair_ms > 0) {
      o.sessions = static_cast<int>(std::clamp(std::floor(kSessionSetupBudgetMs / pair_ms),
                                               double{kMinPoolSessions}, double{o.sessions}));
      ob.sessions = o.sessions;
    }
  }
  InterruptPoll make_poll(o);
  for (int s = 1; s < o.sessions; ++s) {
    status = make_poll.Poll();
    if (!status.ok()) return status;
    for (Candidate* c : a_created_first ? std::vector<Candidate*>{&ca, &cb}
                                        : std::vector<Candidate*>{&cb, &ca}) {
      absl::StatusOr<SessionHandle> handle = CreateSession(*c->graph, c == &ca ? o : ob);
      absl::StatusOr<double> first =
          handle.ok() ? RunOnce(handle->session.get(), c->prepared)
                      : absl::StatusOr<double>(handle.status());
      if (!first.ok()) {
        return absl::Status(first.status().code(), absl::StrCat("graph ", c->report.label,
                                                                ": ", first.status().message()));
      }
      c->more.push_back(std::move(*handle));
    }
  }
  // The warm-up's run times (both graphs', after the first round) choose
  // the burst, from their median.
  std::vector<double> warm_ms = {ca.report.first_run_ms, cb.report.first_run_ms};
  {
    InterruptPoll warm_poll(o);
    for (int64_t i = 0; i < o.warmup; ++i) {
      status = warm_poll.Poll();
      if (!status.ok()) return status;
      if (i == 0) warm_ms.clear();  // the first runs (Grappler's) say little
      for (int s = 0; s < o.sessions; ++s) {
        for (Candidate* c : (i + s) % 2 == 0 ? std::vector<Candidate*>{&ca, &cb}
                                             : std::vector<Candidate*>{&cb, &ca}) {
          const absl::StatusOr<double> ms = RunOnce(c->SessionAt(s), c->prepared);
          if (!ms.ok()) {
            return absl::Status(ms.status().code(), absl::StrCat("graph ", c->report.label,
                                                                 ": ", ms.status().message()));
          }
          warm_ms.push_back(*ms);
        }
      }
    }
  }
  CompareReport out;
  out.burst_auto = o.burst == 0;
  std::sort(warm_ms.begin(), warm_ms.end());
  out.burst = o.burst > 0 ? o.burst : AutoBurst(Percentile(warm_ms, 50));
  out.a_created_first = a_created_first;
  out.seed = o.seed;
  out.target_ci = o.target_ci;
  out.sessions = o.sessions;
  StopRule rule;
  rule.sessions = o.sessions;
  rule.target_half_width = o.target_ci;
  rule.runs = o.runs;
  rule.min_pairs = std::max<int64_t>(o.runs, 6);
  rule.max_time_s = o.max_time_s > 0 ? o.max_time_s
                    : o.target_ci > 0 ? kDefaultTargetMaxTime
                                      : 0;
  std::vector<double> log_ratios;
  InterruptPoll poll(o);
  const Clock::time_point start = Clock::now();
  for (uint64_t pair = 0;; ++pair) {
    status = poll.Poll();
    if (!status.ok()) return status;
    // A pair's runs interleave, AB BA AB ... from the pair's coin, so that
    // both graphs' fastest runs come from the same few milliseconds.
    const bool a_first = AFirstInPair(o.seed, pair);
    const int session = SessionOfPair(pair, o.sessions);
    double fastest[2] = {0, 0};
    for (int64_t k = 0; k < out.burst; ++k) {
      if (k > 0) {
        status = poll.Poll();
        if (!status.ok()) return status;
      }
      const bool a_now = (k % 2 == 0) == a_first;
      for (Candidate* c : a_now ? std::vector<Candidate*>{&ca, &cb}
                                : std::vector<Candidate*>{&cb, &ca}) {
        const absl::StatusOr<double> ms = RunOnce(c->SessionAt(session), c->prepared);
        if (!ms.ok()) {
          return absl::Status(ms.status().code(), absl::StrCat("graph ", c->report.label,
                                                               ": ", ms.status().message()));
        }
        double& best = fastest[c == &ca ? 0 : 1];
        best = k == 0 ? *ms : std::min(best, *ms);
        out.order.push_back(c == &ca ? 'A' : 'B');
      }
    }
    ca.report.samples_ms.push_back(fastest[0]);
    cb.report.samples_ms.push_back(fastest[1]);
    out.a_first.push_back(a_first);
    const double a_ms = ca.report.samples_ms.back(), b_ms = cb.report.samples_ms.back();
    log_ratios.push_back(a_ms > 0 && b_ms > 0 ? std::log(a_ms / b_ms) : 0.0);
    out.stop = DecideStop(rule, log_ratios, MsSince(start) / 1000.0);
    if (out.stop != StopReason::kContinue) break;
  }
  RecordAffinity(o, before, &ca.report);
  cb.report.threads = ca.report.threads;
  cb.report.affinity_checked = ca.report.affinity_checked;
  cb.report.affinity_ok = ca.report.affinity_ok;
  double overhead = 0;
  if (o.measure_overhead) {
    const absl::StatusOr<double> measured = MeasureOverhead(o);
    if (!measured.ok()) return measured.status();
    overhead = *measured;
  }
  for (Candidate* c : {&ca, &cb}) {
    status = Finish(c, c == &ca ? o : ob, overhead);
    if (!status.ok()) return status;
    c->report.peak_rss_mb = PeakRssMb();
  }
  ca.report.parallel_width = width_a;
  cb.report.parallel_width = width_b;
  out.paired = ComparePairs(ca.report.samples_ms, cb.report.samples_ms, out.a_first, 0.95,
                            o.sessions);
  out.target_met = o.target_ci > 0 && out.paired.half_width <= o.target_ci;
  out.a = std::move(ca.report);
  out.b = std::move(cb.report);
  return out;
}

namespace {

void WriteStats(const Stats& s, JsonWriter& w) {
  w.Key("count").Value(s.count);
  w.Key("min_ms").Value(s.min);
  w.Key("p10_ms").Value(s.p10);
  w.Key("p50_ms").Value(s.p50);
  w.Key("p90_ms").Value(s.p90);
  w.Key("p99_ms").Value(s.p99);
  w.Key("max_ms").Value(s.max);
  w.Key("mean_ms").Value(s.mean);
  w.Key("stddev_ms").Value(s.stddev);
  w.Key("median_ci95_ms").BeginArray().Value(s.median_ci_lo).Value(s.median_ci_hi).EndArray();
  w.Key("median_ci95_coverage").Value(s.median_ci_coverage);
  w.Key("median_ci95_method").Value("order statistics (binomial, distribution-free)");
  w.Key("throughput").Value(s.throughput);
  w.Key("throughput_definition").Value("batch * 1000 / p50_ms (examples/s)");
}

void WriteProfileRows(const std::vector<ProfileRow>& rows, bool by_op, JsonWriter& w) {
  w.BeginArray();
  for (const ProfileRow& row : rows) {
    w.BeginObject();
    if (by_op) {
      w.Key("op").Value(row.op);
      w.Key("count").Value(row.count);
    } else {
      w.Key("name").Value(row.name);
      w.Key("op").Value(row.op);
    }
    w.Key("ms").Value(row.ms);
    w.Key("percent").Value(row.percent);
    w.EndObject();
  }
  w.EndArray();
}

void WriteReport(const BenchReport& r, JsonWriter& w) {
  w.BeginObject();
  WriteStats(r.stats, w);
  w.Key("samples_ms").Array(r.samples_ms);
  w.Key("batch").Value(r.batch);
  w.Key("warmup").Value(r.warmup);
  w.Key("precision").Value(r.precision);
  w.Key("init_ms").Value(r.init_ms);
  w.Key("first_run_ms").Value(r.first_run_ms);
  w.Key("overhead_ms").Value(r.overhead_ms);
  w.Key("peak_rss_mb").Value(r.peak_rss_mb);
  w.Key("intra_op_threads").Value(r.intra_op_threads);
  w.Key("inter_op_threads").Value(r.inter_op_threads);
  w.Key("ops_in_calling_thread").Value(r.ops_in_calling_thread);
  w.Key("parallel_width").Value(r.parallel_width);
  w.Key("intra_op_pool").Value(r.intra_op_pool);
  w.Key("intra_op_pool_size").Value(r.intra_op_pool_size);
  w.Key("cpus");
  if (r.cpus.empty()) w.Null(); else w.Value(r.cpus);
  w.Key("inputs").BeginArray();
  for (const ResolvedInput& in : r.inputs) {
    w.BeginObject();
    w.Key("name").Value(in.name);
    w.Key("dtype").Value(in.dtype);
    w.Key("shape").Array(in.shape);
    w.Key("source").Value(in.source);
    w.EndObject();
  }
  w.EndArray();
  w.Key("outputs").Array(r.outputs);
  w.Key("threads").BeginArray();
  for (const ThreadAffinity& t : r.threads) {
    w.BeginObject();
    w.Key("tid").Value(t.tid);
    w.Key("name").Value(t.name);
    w.Key("cpus_allowed_list").Value(t.cpus);
    w.EndObject();
  }
  w.EndArray();
  w.Key("affinity_ok");
  if (r.affinity_checked) w.Value(r.affinity_ok); else w.Null();
  w.Key("profile");
  if (r.has_profile) {
    w.BeginObject();
    w.Key("runs").Value(r.profile_runs);
    w.Key("by_op_type");
    WriteProfileRows(r.by_op_type, true, w);
    w.Key("top_nodes");
    WriteProfileRows(r.top_nodes, false, w);
    w.EndObject();
  } else {
    w.Null();
  }
  w.EndObject();
}

}  // namespace

std::string ReportToJson(const BenchReport& report) {
  JsonWriter w;
  WriteReport(report, w);
  return w.str();
}

std::string StatsToJson(const Stats& stats) {
  JsonWriter w;
  w.BeginObject();
  WriteStats(stats, w);
  w.EndObject();
  return w.str();
}

std::string CompareToJson(const CompareReport& c) {
  JsonWriter w;
  w.BeginObject();
  w.Key("a");
  WriteReport(c.a, w);
  w.Key("b");
  WriteReport(c.b, w);
  w.Key("order").BeginArray();
  for (const char x : c.order) w.Value(std::string(1, x));
  w.EndArray();
  w.Key("pair_first").BeginArray();
  for (const bool a_first : c.a_first) w.Value(a_first ? "A" : "B");
  w.EndArray();
  w.Key("created_first").Value(c.a_created_first ? "A" : "B");
  w.Key("order_method")
      .Value(absl::StrCat("randomized ABBA blocks (AB BA or BA AB per two pairs), seed ", c.seed));
  w.Key("burst").Value(c.burst);
  w.Key("burst_method")
      .Value(absl::StrCat("each sample is the fastest of ", c.burst, " run",
                          c.burst == 1 ? "" : "s of a pair, interleaved with the other graph's",
                          c.burst_auto ? absl::StrFormat(" (automatic: about %.0f ms of runs)",
                                                         kAutoBurstMs)
                                       : std::string(" (as asked)")));
  const PairedRatio& p = c.paired;
  w.Key("pairs").Value(static_cast<int64_t>(p.pairs));
  w.Key("speedup").Value(p.speedup);
  w.Key("speedup_definition")
      .Value("exp(Hodges-Lehmann estimate of log(a_i / b_i)) over the timed pairs: how many "
             "times faster B is");
  w.Key("speedup_ci95").BeginArray().Value(p.lo).Value(p.hi).EndArray();
  w.Key("speedup_ci95_method")
      .Value(absl::StrCat(
          "Wilcoxon signed-rank interval of the per-pair log-ratios (",
          p.exact ? "exact" : "normal approximation", ")",
          c.sessions > 1
              ? absl::StrCat(", widened where the ", c.sessions,
                             " session pairs' estimates disagree more (t with ", c.sessions - 1,
                             " df on their Hodges-Lehmann estimates)")
              : std::string(),
          ", exponentiated"));
  w.Key("sessions").Value(static_cast<int64_t>(c.sessions));
  w.Key("between_sessions_sd");
  if (c.sessions > 1) w.Value(p.sessions.sd); else w.Null();
  w.Key("between_sessions_widened").Value(p.sessions.widened);
  w.Key("speedup_ci95_coverage").Value(p.coverage);
  w.Key("speedup_ci95_half_width").Value(p.half_width);
  w.Key("ratio_of_medians").Value(p.ratio_of_medians);
  w.Key("position_effect");
  if (p.has_position_effect) w.Value(p.position_effect); else w.Null();
  w.Key("position_effect_definition")
      .Value("exp((median log(a/b) where A ran first - median where B ran first) / 2): how "
             "many times slower the first run of a pair is; 1 = no bias");
  w.Key("target_ci");
  if (c.target_ci > 0) w.Value(c.target_ci); else w.Null();
  w.Key("target_met");
  if (c.target_ci > 0) w.Value(c.target_met); else w.Null();
  w.Key("stop_reason").Value(StopReasonName(c.stop));
  w.EndObject();
  return w.str();
}

std::string ReportToText(const BenchReport& r) {
  const Stats& s = r.stats;
  std::string out;
  absl::StrAppendFormat(&out, "inputs:      ");
  std::vector<std::string> ins;
  for (const ResolvedInput& in : r.inputs) {
    ins.push_back(absl::StrCat(in.name, " ", in.dtype, ShapeText(in.shape), " ", in.source));
  }
  absl::StrAppend(&out, absl::StrJoin(ins, "; "), "\n");
  absl::StrAppend(&out, "outputs:     ", absl::StrJoin(r.outputs, ", "), "\n");
  absl::StrAppendFormat(&out, "precision:   %s   batch: %d   threads: intra %d (0 = TF default), %s\n",
                        r.precision, r.batch, r.intra_op_threads,
                        r.ops_in_calling_thread
                            ? absl::StrCat("ops in the calling thread (at most ", r.parallel_width,
                                           " conv/matmul at a time)")
                            : absl::StrCat("inter-op pool of ",
                                           r.inter_op_threads > 0
                                               ? std::to_string(r.inter_op_threads)
                                               : std::string("TF's default size"),
                                           " (up to ", r.parallel_width,
                                           " convs/matmuls at a time)"));
  if (!r.cpus.empty()) {
    absl::StrAppendFormat(&out, "pinned to:   CPUs %s (%d threads checked: %s)\n", r.cpus,
                          r.threads.size(), r.affinity_ok ? "all match" : "MISMATCH");
  }
  absl::StrAppendFormat(&out, "init:        %.3f ms   first run: %.3f ms   warm-up runs: %d\n",
                        r.init_ms, r.first_run_ms, r.warmup);
  absl::StrAppendFormat(&out, "runs:        %d\n", s.count);
  absl::StrAppendFormat(&out, "latency ms:  min %.4f  p10 %.4f  p50 %.4f  p90 %.4f  p99 %.4f\n",
                        s.min, s.p10, s.p50, s.p90, s.p99);
  absl::StrAppendFormat(&out, "             mean %.4f  stddev %.4f  median 95%% CI [%.4f, %.4f] (coverage %.3f)\n",
                        s.mean, s.stddev, s.median_ci_lo, s.median_ci_hi, s.median_ci_coverage);
  absl::StrAppendFormat(&out, "throughput:  %.2f examples/s (batch * 1000 / p50)\n", s.throughput);
  absl::StrAppendFormat(&out, "overhead:    %.4f ms per run (empty graph)   peak RSS: %.1f MB\n",
                        r.overhead_ms, r.peak_rss_mb);
  if (r.has_profile) {
    absl::StrAppendFormat(&out, "\nSummary by op type (mean of %d traced runs)\n", r.profile_runs);
    absl::StrAppendFormat(&out, "  %-32s %6s %10s %7s\n", "op", "nodes", "ms", "%");
    for (const ProfileRow& row : r.by_op_type) {
      absl::StrAppendFormat(&out, "  %-32s %6d %10.4f %6.2f%%\n", row.op, row.count, row.ms,
                            row.percent);
    }
    absl::StrAppendFormat(&out, "\nTop %d nodes\n", r.top_nodes.size());
    for (const ProfileRow& row : r.top_nodes) {
      absl::StrAppendFormat(&out, "  %-48s %-24s %10.4f %6.2f%%\n", row.name, row.op, row.ms,
                            row.percent);
    }
  }
  return out;
}

std::string CompareToText(const CompareReport& c) {
  std::string out = "== A ==\n" + ReportToText(c.a) + "\n== B ==\n" + ReportToText(c.b);
  const PairedRatio& p = c.paired;
  absl::StrAppendFormat(&out,
                        "\nspeedup (A / B, Hodges-Lehmann of per-pair ratios): %.3fx  "
                        "95%% CI [%.3f, %.3f] (+-%.1f%%, Wilcoxon signed-rank, %d pairs in "
                        "randomized ABBA order)\n",
                        p.speedup, p.lo, p.hi, 100.0 * p.half_width, p.pairs);
  if (c.sessions > 1) {
    absl::StrAppendFormat(&out,
                          "%d sessions of each graph (ops %s): their "
                          "estimates' sd %.2f%%, interval %s\n",
                          c.sessions,
                          c.a.ops_in_calling_thread ? "in the calling thread" : "on the inter-op pool",
                          100.0 * p.sessions.sd,
                          p.sessions.widened ? "widened to cover it" : "wide enough as it was");
  }
  if (c.burst > 1) {
    absl::StrAppendFormat(&out,
                          "each sample (and the latencies above) is the fastest of %d "
                          "runs, interleaved AB BA ... with the other graph's%s\n",
                          c.burst, c.burst_auto ? " (automatic burst)" : "");
  }
  if (p.has_position_effect) {
    absl::StrAppendFormat(&out, "position effect: the first run of a pair is %.3fx the second\n",
                          p.position_effect);
  }
  if (c.target_ci > 0) {
    absl::StrAppendFormat(&out, "target +-%.1f%%: %s (stopped by %s)\n", 100.0 * c.target_ci,
                          c.target_met ? "met" : "NOT met", StopReasonName(c.stop));
  }
  return out;
}

}  // namespace leangraph
