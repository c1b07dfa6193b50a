"""leangraph: freeze, rewrite, verify and time TensorFlow graphs for fast CPU inference."""

from leangraph._tfcheck import check_at_import as _check_tf_version

# Before anything loads TensorFlow's libraries: a mismatched TF would fail later
# with an obscure undefined-symbol error instead of this actionable one.
_check_tf_version()

from leangraph._version import __version__  # noqa: E402
from leangraph.bench import (  # noqa: E402
    BenchResult,
    CompareResult,
    benchmark,
    benchmark_keras,
    compare,
    cpu_supports_bf16,
)
from leangraph.errors import (  # noqa: E402
    BenchmarkError,
    FreezeError,
    GraphError,
    LeangraphError,
    OutputError,
    QuantizeError,
    PruneError,
    TransformError,
    UnsafeModelError,
    UsageError,
    VersionError,
)
from leangraph.runner import run  # noqa: E402
from leangraph.freeze import FrozenGraph, TensorInfo, freeze, load_keras  # noqa: E402
from leangraph.graph_view import Graph
from leangraph.graphs import load_graph, save_graph  # noqa: E402
from leangraph.optimize import OptimizeReport, optimize  # noqa: E402
from leangraph.pipeline.model import Model, load_model  # noqa: E402
from leangraph.precision import EvalResult, evaluate  # noqa: E402
from leangraph.quantization import (  # noqa: E402
    Calibration,
    QuantizeResult,
    calibrate,
    cpu_supports_int8,
    quantize,
)
from leangraph.recipes import RECIPES, recipe  # noqa: E402
from leangraph.safety import find_unsafe_ops, require_safe  # noqa: E402
from leangraph.summary import GraphSummary, summarize  # noqa: E402
from leangraph.transform import (  # noqa: E402
    TransformInfo,
    list_transforms,
    parse_transforms,
    transform,
)
from leangraph.tune import TuneResult, tune  # noqa: E402
# Binds the function over the subpackage's name: leangraph.prune(...) prunes; the
# modules stay importable as leangraph.prune.groups etc.
from leangraph.prune.api import PruneReport, prune  # noqa: E402

__all__ = [
    "benchmark",
    "benchmark_keras",
    "BenchmarkError",
    "BenchResult",
    "calibrate",
    "Calibration",
    "compare",
    "CompareResult",
    "cpu_supports_bf16",
    "cpu_supports_int8",
    "EvalResult",
    "evaluate",
    "find_unsafe_ops",
    "freeze",
    "FreezeError",
    "FrozenGraph",
    "Graph",
    "GraphError",
    "GraphSummary",
    "LeangraphError",
    "list_transforms",
    "load_graph",
    "load_keras",
    "optimize",
    "OptimizeReport",
    "OutputError",
    "prune",
    "PruneError",
    "PruneReport",
    "parse_transforms",
    "quantize",
    "QuantizeError",
    "QuantizeResult",
    "recipe",
    "RECIPES",
    "require_safe",
    "run",
    "save_graph",
    "summarize",
    "TensorInfo",
    "transform",
    "TransformError",
    "TransformInfo",
    "tune",
    "TuneResult",
    "UnsafeModelError",
    "UsageError",
    "load_model",
    "Model",
    "VersionError",
    "__version__",
]
