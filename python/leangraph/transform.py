"""leangraph.transform(): TensorFlow's C++ graph transforms, and leangraph's own, in-process."""

from dataclasses import dataclass

from leangraph import graphs
from leangraph._tfcheck import load_native
from leangraph.errors import GraphError, TransformError
from leangraph.safety import require_safe


@dataclass(frozen=True)
class TransformInfo:
    name: str
    origin: str  # "tensorflow" or "leangraph"
    params: str  # "name=default, ..." where known
    summary: str


def _as_string(transforms):
    if isinstance(transforms, str):
        return transforms
    try:
        items = list(transforms)
    except TypeError:
        raise TypeError("transforms must be a string or a list of strings") from None
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"transforms must be strings, got {type(item).__name__}")
    return " ".join(items)


def _as_names(names, role):
    if names is None:
        return None
    if isinstance(names, str):
        names = [n for n in names.split(",") if n]
    names = [str(n) for n in names]
    for name in names:
        if not name.strip():
            raise TransformError(f"an empty {role} name was given")
    return names


def parse_transforms(transforms):
    """[(name, {param: [values]})] as the runner will see them; raises on bad syntax."""
    return load_native().parse_transforms(_as_string(transforms))


def transform(graph, transforms, inputs=None, outputs=None, allow_io_ops=False):
    """Applies graph transforms and returns a new `tf.compat.v1.GraphDef`.

    graph: a GraphDef, serialized bytes, or a path (`.pb` binary, `.pbtxt` text).
    transforms: one string in transform_graph syntax, or a list of such strings,
        e.g. ["fold_constants(ignore_errors=true)", "fold_batch_norms"]; TF's
        and leangraph's transforms mix freely.
    inputs / outputs: node names (a list or a comma-separated string); by
        default the Placeholders and the nodes nothing consumes.

    allow_io_ops: graphs holding ops that touch files, processes or Python
        (ReadFile, WriteFile, PyFunc, SaveV2, ...; see leangraph.safety) are
        refused unless this is true, because fold_constants executes constant
        subgraphs: it folds a ReadFile of a constant path into the file's bytes.

    The GIL is released while the native code runs. Raises TransformError
    (a ValueError) with TensorFlow's message, or a GraphError for a malformed
    or unsafe graph.
    """
    native = load_native()
    text = _as_string(transforms)
    is_bytes = isinstance(graph, (bytes, bytearray, memoryview))
    graph_def = None
    if not is_bytes or inputs is None or outputs is None or not allow_io_ops:
        # Parsed once here; serialized bytes go to the native side unparsed.
        graph_def = graph if hasattr(graph, "node") else graphs.load_graph(graph)
    data = bytes(graph) if is_bytes else graph_def.SerializeToString()
    if graph_def is not None and not graph_def.node and outputs is None:
        # Empty bytes, and many files that are not GraphDefs, parse as an empty
        # graph: transforming one is a mistake worth reporting. (With outputs
        # given, the native check names the missing output instead.)
        raise GraphError("the graph has no nodes (an empty file, or not a GraphDef?)")
    require_safe(graph_def, allow_io_ops, what="the graph to transform")
    inputs = _as_names(inputs, "input")
    outputs = _as_names(outputs, "output")
    if inputs is None:
        inputs = graphs.default_inputs(graph_def)
    if outputs is None:
        outputs = graphs.default_outputs(graph_def)
    result = native.transform(data, text, inputs, outputs)
    out = graphs.graph_pb2().GraphDef()
    out.ParseFromString(result)
    return out


def list_transforms():
    """Every transform available: all that TensorFlow registers plus leangraph's own."""
    return [TransformInfo(*row) for row in load_native().list_transforms()]
