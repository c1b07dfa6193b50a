#include "native/transform_runner.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "native/graph_check.h"
#include "native/status_error.h"
#include "native/tf_graph_transforms.h"
#include "native/transform_context.h"
#include "native/transforms/graph_util.h"

namespace leangraph {
namespace {

namespace gt = ::tensorflow::graph_transforms;

// Parameters of TensorFlow's transforms, as documented for TF 2.21 (every
// transform also takes ignore_errors). The registry itself only has names.
const std::map<std::string, std::string>& TfParamDocs() {
  static const auto* docs = new std::map<std::string, std::string>{
      {"fold_constants",
       "clear_output_shapes=true, exclude_op, exclude_node, "
       "max_constant_size_in_bytes"},
      {"strip_unused_nodes", "type, shape, name, type_for_name, shape_for_name"},
      {"remove_nodes", "op (repeatable), repeatable=false"},
      {"quantize_weights", "minimum_size=1024"},
      {"round_weights", "num_steps=256"},
      {"quantize_nodes", "input_min, input_max, fallback_min, fallback_max"},
      {"insert_logging",
       "op, prefix, show_op, show_name, message, first_n, summarize"},
      {"rename_op", "old_op_name, new_op_name"},
      {"rename_node", "old_node_name, new_node_name"},
      {"rename_attribute", "old_attribute_name, new_attribute_name, op_name"},
      {"remove_attribute", "attribute_name, op_name"},
      {"set_device", "device, if_default=false"},
      {"sparsify_gather", "input_checkpoint, group_init_node"},
      {"freeze_requantization_ranges", "min_max_log_file, min_percentile, max_percentile"},
  };
  return *docs;
}

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

const OwnTransform* FindOwn(const std::string& name) {
  for (const OwnTransform& own : OwnTransforms()) {
    if (name == own.name) return &own;
  }
  return nullptr;
}

bool IsTfTransform(const std::string& name) {
  return gt::GetTransformRegistry()->count(name) > 0;
}

absl::Status StepError(size_t index, const std::string& name,
                       const absl::Status& status) {
  absl::Status named(status.code(), absl::StrCat("step ", index + 1, " (",
                                                 name, "): ", status.message()));
  status.ForEachPayload([&named](absl::string_view url, const absl::Cord& data) {
    named.SetPayload(url, data);
  });
  return named;
}

// TF's transforms read defaulted attributes without checking that they are
// there (a missing one aborts), so each step gets them filled in first, as
// TF's own graph import would. Cheap: it adds nothing to a node that has them.
void PrepareForStep(tensorflow::GraphDef* graph) { AddMissingDefaults(graph); }

// Seconds since `start`: LEANGRAPH_TRANSFORM_TIMES=1 prints each step's time
// to stderr, to see where a chain spends it.
double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

absl::Status RunOwn(const OwnTransform& own, const TransformStep& step,
                    const std::vector<std::string>& inputs,
                    const std::vector<std::string>& outputs,
                    tensorflow::GraphDef* graph) {
  TransformContext context{step.name, inputs, outputs, step.params};
  absl::StatusOr<bool> ignore_errors = context.GetBool("ignore_errors", false);
  if (!ignore_errors.ok()) return ignore_errors.status();
  if (own.in_place != nullptr) {
    // An in-place transform may have changed the graph before it failed, so
    // the original is kept only where a failure is to be ignored.
    std::optional<tensorflow::GraphDef> original;
    if (*ignore_errors) original = *graph;
    const absl::Status status = own.in_place(graph, context);
    if (!status.ok()) {
      if (!original) return status;
      *graph = std::move(*original);
      return absl::OkStatus();
    }
    // As the copying form below leaves them: library and versions present.
    graph->mutable_library();
    graph->mutable_versions();
    graph_util::DropDanglingColocations(graph);
    return gt::IsGraphValid(*graph);
  }
  tensorflow::GraphDef result;
  const absl::Status status = own.fn(*graph, context, &result);
  if (!status.ok()) return *ignore_errors ? absl::OkStatus() : status;
  // A transform that rewrites the library (inline_grouped_convs) says so by
  // setting one; the others build nodes only and keep the input's.
  if (!result.has_library()) *result.mutable_library() = std::move(*graph->mutable_library());
  *result.mutable_versions() = graph->versions();
  graph_util::DropDanglingColocations(&result);
  const absl::Status valid = gt::IsGraphValid(result);
  if (!valid.ok()) return valid;
  *graph = std::move(result);
  return absl::OkStatus();
}

}  // namespace

std::vector<TransformInfo> ListTransforms() {
  std::vector<TransformInfo> all;
  for (const auto& [name, unused] : *gt::GetTransformRegistry()) {
    const auto doc = TfParamDocs().find(name);
    all.push_back({name, "tensorflow",
                   doc == TfParamDocs().end() ? "" : doc->second, ""});
  }
  for (const OwnTransform& own : OwnTransforms()) {
    all.push_back({own.name, "leangraph", own.params, own.summary});
  }
  std::sort(all.begin(), all.end(),
            [](const TransformInfo& a, const TransformInfo& b) {
              return a.name < b.name;
            });
  return all;
}

std::vector<std::string> ClosestTransforms(const std::string& name,
                                           size_t limit) {
  std::vector<std::pair<size_t, std::string>> scored;
  for (const TransformInfo& info : ListTransforms()) {
    size_t distance = EditDistance(name, info.name);
    // A name that contains the query (or the reverse) is a near miss too.
    if (info.name.find(name) != std::string::npos ||
        name.find(info.name) != std::string::npos) {
      distance = std::min<size_t>(distance, 2);
    }
    scored.emplace_back(distance, info.name);
  }
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> names;
  for (const auto& [distance, known] : scored) {
    if (names.size() == limit) break;
    names.push_back(known);
  }
  return names;
}

absl::StatusOr<tensorflow::GraphDef> RunTransforms(
    const tensorflow::GraphDef& graph, const std::vector<TransformStep>& steps,
    const std::vector<std::string>& inputs,
    const std::vector<std::string>& outputs) {
  return RunTransforms(tensorflow::GraphDef(graph), steps, inputs, outputs);
}

absl::StatusOr<tensorflow::GraphDef> RunTransforms(
    tensorflow::GraphDef&& graph, const std::vector<TransformStep>& steps,
    const std::vector<std::string>& inputs,
    const std::vector<std::string>& outputs) {
  // Every name is checked before anything runs, so a typo in the last step
  // does not cost the time of the first ones.
  for (size_t i = 0; i < steps.size(); ++i) {
    if (FindOwn(steps[i].name) == nullptr && !IsTfTransform(steps[i].name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "step ", i + 1, ": unknown transform '", steps[i].name,
          "'; closest known: ",
          absl::StrJoin(ClosestTransforms(steps[i].name, 3), ", ")));
    }
  }
  const bool report_times = std::getenv("LEANGRAPH_TRANSFORM_TIMES") != nullptr;
  auto start = std::chrono::steady_clock::now();
  tensorflow::GraphDef current = std::move(graph);
  PrepareForStep(&current);
  absl::Status status = AsGraphError(CheckGraph(current));
  if (!status.ok()) return status;
  status = CheckEndpoints(current, inputs, "input");
  if (!status.ok()) return status;
  status = CheckEndpoints(current, outputs, "output");
  if (!status.ok()) return status;
  if (report_times) std::fprintf(stderr, "leangraph: check %.3f s\n", Seconds(start));

  // The checks guard TensorFlow's transforms, which trust their input, and
  // the copying own transforms, written for checked input. The graph as
  // given is checked above. The in-place transforms (the deploy recipe's)
  // keep what the checks establish: they add only registered ops with
  // complete attributes and inputs of the right dtype, rename only to unused
  // names and rewire only to an upstream node, so no cycle appears (tests run
  // every chain step by step, checking each output). Their output is not
  // checked again; any other step's is, before the step that follows.
  bool checked = true;
  for (size_t i = 0; i < steps.size(); ++i) {
    const TransformStep& step = steps[i];
    start = std::chrono::steady_clock::now();
    if (i > 0) {
      PrepareForStep(&current);
      if (!checked) {
        status = AsGraphError(CheckGraph(current));
        if (!status.ok()) return StepError(i, step.name, status);
        checked = true;
      }
    }
    if (const OwnTransform* own = FindOwn(step.name)) {
      status = RunOwn(*own, step, inputs, outputs, &current);
      checked = checked && own->in_place != nullptr;
    } else {
      status = gt::TransformGraph(inputs, outputs, {{step.name, step.params}},
                                  &current);
      checked = false;
    }
    if (!status.ok()) return StepError(i, step.name, status);
    if (report_times) {
      std::fprintf(stderr, "leangraph: step %zu %s %.3f s\n", i + 1,
                   step.name.c_str(), Seconds(start));
    }
  }
  return current;
}

}  // namespace leangraph
