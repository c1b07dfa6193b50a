"""leangraph: freeze, rewrite, verify and time TensorFlow graphs for fast CPU inference."""

from leangraph._tfcheck import check_tf_version as _check_tf_version

# Before anything loads TensorFlow's libraries: a mismatched TF would fail later
# with an obscure undefined-symbol error instead of this actionable one.
_check_tf_version()

from leangraph._version import __version__  # noqa: E402
from leangraph.errors import (  # noqa: E402
    BenchmarkError,
    FreezeError,
    GraphError,
    LeangraphError,
    TransformError,
    UnsafeModelError,
    VersionError,
)
from leangraph.execute import run  # noqa: E402
from leangraph.graphs import load_graph, save_graph  # noqa: E402
from leangraph.transform import (  # noqa: E402
    TransformInfo,
    list_transforms,
    parse_transforms,
    transform,
)

__all__ = [
    "BenchmarkError",
    "FreezeError",
    "GraphError",
    "LeangraphError",
    "TransformError",
    "TransformInfo",
    "UnsafeModelError",
    "VersionError",
    "__version__",
    "list_transforms",
    "load_graph",
    "parse_transforms",
    "run",
    "save_graph",
    "transform",
]
