#include "native/transforms/quantize_int8/options.h"

#include <cmath>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tensorflow/core/framework/node_def.pb.h"

namespace leangraph {
namespace quantize_int8 {

using graph_util::Edge;

std::string TensorKey(const std::string& name) {
  Edge edge = graph_util::ParseEdge(name);
  return absl::StrCat(edge.node, ":", edge.port);
}

absl::StatusOr<Ranges> ParseRanges(const std::string& text) {
  Ranges ranges;
  for (absl::string_view entry : absl::StrSplit(text, ';', absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    const size_t eq = entry.rfind('=');
    std::vector<std::string> bounds;
    if (eq != absl::string_view::npos) {
      bounds = absl::StrSplit(entry.substr(eq + 1), ',');
    }
    Range range;
    if (eq == absl::string_view::npos || eq == 0 || bounds.size() != 2 ||
        !absl::SimpleAtof(absl::StripAsciiWhitespace(bounds[0]), &range.lo) ||
        !absl::SimpleAtof(absl::StripAsciiWhitespace(bounds[1]), &range.hi)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "quantize_int8: malformed range '", entry,
          "' (expected tensor=min,max; entries separated by ';')"));
    }
    const std::string name(absl::StripAsciiWhitespace(entry.substr(0, eq)));
    if (!std::isfinite(range.lo) || !std::isfinite(range.hi) ||
        range.lo > range.hi) {
      return absl::InvalidArgumentError(
          absl::StrCat("quantize_int8: the range of '", name, "' is [",
                       range.lo, ", ", range.hi,
                       "], which is not a finite interval"));
    }
    ranges[TensorKey(name)] = range;
  }
  return ranges;
}

std::optional<Range> Lookup(const Ranges& ranges, const Edge& edge) {
  const auto it = ranges.find(absl::StrCat(edge.node, ":", edge.port));
  if (it == ranges.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<Options> ReadOptions(const TransformContext& context) {
  Options options;
  auto text = context.GetString("ranges", "");
  if (!text.ok()) return text.status();
  auto probes = context.GetBool("probes", false);
  if (!probes.ok()) return probes.status();
  options.probes = *probes;
  // Probes shift nothing unless asked (shifts=true): the bias correction fits
  // each unit's error in the graph as it will run, unsigned hand-overs included.
  auto shifts = context.GetBool("shifts", !*probes);
  if (!shifts.ok()) return shifts.status();
  options.shifts = *shifts;
  auto pad_inputs = context.GetBool("pad_inputs", false);
  if (!pad_inputs.ok()) return pad_inputs.status();
  options.pad_inputs = *pad_inputs;
  auto weight_bits = context.GetInt("weight_bits", 8);
  if (!weight_bits.ok()) return weight_bits.status();
  if (*weight_bits != 7 && *weight_bits != 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quantize_int8: weight_bits must be 8 or 7 (for CPUs without VNNI), got ", *weight_bits));
  }
  options.weight_bits = static_cast<int>(*weight_bits);
  if (text->empty()) {
    return absl::InvalidArgumentError(
        "quantize_int8 needs ranges=\"tensor=min,max;...\" (leangraph.calibrate "
        "computes them)");
  }
  auto ranges = ParseRanges(*text);
  if (!ranges.ok()) return ranges.status();
  options.ranges = *std::move(ranges);
  for (const std::string& value : context.GetAll("exclude")) {
    for (absl::string_view name : absl::StrSplit(value, ',', absl::SkipWhitespace())) {
      options.exclude.insert(std::string(absl::StripAsciiWhitespace(name)));
    }
  }
  return options;
}

absl::Status CheckGraph(const tensorflow::GraphDef& graph,
                        const graph_util::GraphIndex& index, const Options& options) {
  for (const tensorflow::NodeDef& node : graph.node()) {
    if (node.op() == "VariableV2" || node.op() == "VarHandleOp" ||
        node.op() == "Variable" || node.op() == "ReadVariableOp") {
      return absl::FailedPreconditionError(absl::StrCat(
          "quantize_int8: the graph is not frozen (", node.op(), " '",
          node.name(), "'); freeze it first (leangraph.freeze)"));
    }
  }
  for (const auto& [name, range] : options.ranges) {
    const Edge edge = graph_util::ParseEdge(name);
    if (index.Find(edge.node) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "quantize_int8: ranges name '", name,
          "', which is not in the graph (were they calibrated on another graph?)"));
    }
  }
  for (const std::string& name : options.exclude) {
    if (index.Find(name) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "quantize_int8: exclude names '", name, "', which is not in the graph"));
    }
  }
  return absl::OkStatus();
}

}  // namespace quantize_int8
}  // namespace leangraph
