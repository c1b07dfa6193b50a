// leangraph._native: the Python face of the C++ core. Policy (defaults, file
// handling, reports) lives in Python; this file only converts arguments and
// statuses. Graphs cross the boundary as serialized bytes so that Python's
// protobuf runtime and TF's C++ one never share objects.
#include <climits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "native/bench/bench_py.h"
#include "native/graph_check.h"
#include "native/status_error.h"
#include "native/tf_graph_transforms.h"
#include "native/transform_params.h"
#include "native/transform_runner.h"
#include "pybind11/pybind11.h"
#include "pybind11/stl.h"

namespace py = pybind11;

namespace leangraph {
namespace {

absl::StatusOr<tensorflow::GraphDef> ParseGraph(const char* data, size_t size) {
  // Protobuf cannot represent a message of 2 GiB or more.
  if (size >= static_cast<size_t>(INT_MAX)) {
    return AsGraphError(absl::InvalidArgumentError(
        "the graph is 2 GiB or larger, beyond protobuf's limit; store large "
        "weights outside the GraphDef"));
  }
  tensorflow::GraphDef graph;
  if (!graph.ParseFromArray(data, static_cast<int>(size))) {
    return AsGraphError(absl::InvalidArgumentError(
        "the data is not a serialized GraphDef (protobuf parsing failed: "
        "corrupt or truncated)"));
  }
  return graph;
}

absl::StatusOr<tensorflow::GraphDef> ParseGraph(const std::string& bytes) {
  return ParseGraph(bytes.data(), bytes.size());
}

absl::Status TooLarge() {
  return absl::InternalError(
      "the transformed graph could not be serialized (2 GiB or larger?)");
}

// Takes the bytes object itself, not a std::string, and writes the result
// straight into the returned one: a large model's graph is then copied once
// each way (parse, serialize) rather than three times.
py::bytes Transform(const py::bytes& graph_bytes, const std::string& transforms,
                    const std::vector<std::string>& inputs,
                    const std::vector<std::string>& outputs) {
  char* data = nullptr;
  Py_ssize_t size = 0;
  if (PyBytes_AsStringAndSize(graph_bytes.ptr(), &data, &size) != 0) {
    throw py::error_already_set();
  }
  absl::StatusOr<tensorflow::GraphDef> transformed;
  size_t result_size = 0;
  {
    // Transforms such as fold_constants run a whole TF session; other
    // Python threads keep running meanwhile. `graph_bytes` is immutable and
    // held by the caller, so its buffer stays valid without the GIL.
    py::gil_scoped_release release;
    absl::StatusOr<std::vector<TransformStep>> steps = ParseTransforms(transforms);
    absl::StatusOr<tensorflow::GraphDef> graph =
        steps.ok() ? ParseGraph(data, static_cast<size_t>(size))
                   : absl::StatusOr<tensorflow::GraphDef>(steps.status());
    transformed =
        graph.ok() ? RunTransforms(*std::move(graph), *steps, inputs, outputs)
                   : std::move(graph);
    if (transformed.ok()) {
      result_size = transformed->ByteSizeLong();
      if (result_size >= static_cast<size_t>(INT_MAX)) transformed = TooLarge();
    }
  }
  ThrowIfError(transformed.status(), ErrorKind::kTransform);
  py::object result = py::reinterpret_steal<py::object>(
      PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(result_size)));
  if (!result) throw py::error_already_set();
  bool written = false;
  {
    // Nothing else can see the new bytes object yet.
    py::gil_scoped_release release;
    written = transformed->SerializeToArray(PyBytes_AS_STRING(result.ptr()),
                                            static_cast<int>(result_size));
    // Freed here too, not while holding the GIL.
    tensorflow::GraphDef().Swap(&*transformed);
  }
  if (!written) ThrowIfError(TooLarge(), ErrorKind::kTransform);
  return py::reinterpret_steal<py::bytes>(result.release());
}

using ParsedStep = std::pair<std::string, TransformParams>;

std::vector<ParsedStep> ParseForPython(const std::string& text) {
  absl::StatusOr<std::vector<TransformStep>> steps = ParseTransforms(text);
  ThrowIfError(steps.status(), ErrorKind::kTransform);
  std::vector<ParsedStep> out;
  for (TransformStep& step : *steps) {
    out.emplace_back(std::move(step.name), std::move(step.params));
  }
  return out;
}

std::vector<ParsedStep> TfParseForPython(const std::string& text) {
  tensorflow::graph_transforms::TransformParameters params;
  ThrowIfError(tensorflow::graph_transforms::ParseTransformParameters(text, &params),
               ErrorKind::kTransform);
  return {params.begin(), params.end()};
}

void CheckGraphBytes(const std::string& graph_bytes) {
  absl::Status status;
  {
    py::gil_scoped_release release;
    absl::StatusOr<tensorflow::GraphDef> graph = ParseGraph(graph_bytes);
    // Checked as TF will import it: with the attributes it fills in.
    if (graph.ok()) AddMissingDefaults(&*graph);
    status = graph.ok() ? CheckGraph(*graph) : graph.status();
    status = AsGraphError(status);
  }
  ThrowIfError(status, ErrorKind::kTransform);
}

py::list ListForPython() {
  py::list out;
  for (const TransformInfo& info : ListTransforms()) {
    out.append(py::make_tuple(info.name, info.origin, info.params, info.summary));
  }
  return out;
}

}  // namespace
}  // namespace leangraph

PYBIND11_MODULE(_native, m) {
  m.doc() = "leangraph's C++ core (TensorFlow graph transforms and timer).";

  // The Python classes are created once by leangraph.errors and live as long
  // as the interpreter, so plain handles (never released) are safe here.
  py::module_ errors = py::module_::import("leangraph.errors");
  static py::handle transform_error = py::object(errors.attr("TransformError")).release();
  static py::handle graph_error = py::object(errors.attr("GraphError")).release();
  static py::handle benchmark_error = py::object(errors.attr("BenchmarkError")).release();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const leangraph::StatusError& e) {
      py::handle type = transform_error;
      if (e.kind() == leangraph::ErrorKind::kBenchmark) type = benchmark_error;
      if (e.kind() == leangraph::ErrorKind::kGraph) type = graph_error;
      // Messages quote user input (node names, transform strings) that need
      // not be valid UTF-8; a strict decode would replace the error with a
      // UnicodeDecodeError.
      const std::string message = e.what();
      PyObject* text = PyUnicode_DecodeUTF8(
          message.data(), static_cast<Py_ssize_t>(message.size()), "backslashreplace");
      if (text == nullptr) return;
      PyObject* error = PyObject_CallOneArg(type.ptr(), text);
      Py_DECREF(text);
      if (error == nullptr) return;
      PyObject* code = PyLong_FromLong(e.code());
      if (code == nullptr || PyObject_SetAttrString(error, "code", code) != 0) {
        Py_XDECREF(code);
        Py_DECREF(error);
        return;
      }
      Py_DECREF(code);
      PyErr_SetObject(type.ptr(), error);
      Py_DECREF(error);
    }
  });

  // The wheel's release_version.h needs macros only TF's own build defines,
  // so the version comes from the repository rule.
  m.attr("TF_VERSION") = LEANGRAPH_TF_VERSION;

  m.def("transform", &leangraph::Transform, py::arg("graph"),
        py::arg("transforms"), py::arg("inputs"), py::arg("outputs"),
        "Applies a transform string to a serialized GraphDef; returns the "
        "serialized result.");
  m.def("parse_transforms", &leangraph::ParseForPython, py::arg("text"),
        "leangraph's parser: [(name, {param: [values]})].");
  m.def("tf_parse_transforms", &leangraph::TfParseForPython, py::arg("text"),
        "TensorFlow's own parser, for comparison in tests.");
  m.def("check_graph", &leangraph::CheckGraphBytes, py::arg("graph"),
        "Raises TransformError if the serialized graph is malformed.");
  m.def("list_transforms", &leangraph::ListForPython,
        "[(name, origin, params, summary)] for every transform, by name.");
  m.def("closest_transforms", &leangraph::ClosestTransforms, py::arg("name"),
        py::arg("limit") = 3);

  leangraph::RegisterBench(m);
}
