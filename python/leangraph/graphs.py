"""Reading, writing and inspecting GraphDefs: the one place that knows file formats."""

import os
import tempfile
from pathlib import Path

from leangraph.errors import GraphError, OutputError

# Ops that are never a graph's result, as summarize_graph treats them.
_NOT_OUTPUTS = {"Const", "NoOp", "Placeholder", "PlaceholderWithDefault", "Assign", "AssignVariableOp"}
_TEXT_SUFFIXES = {".pbtxt", ".txt", ".prototxt"}


def graph_pb2():
    from tensorflow.core.framework import graph_pb2 as module

    return module


def _parse_text(data, origin):
    from google.protobuf import text_format

    graph = graph_pb2().GraphDef()
    try:
        text_format.Merge(data.decode("utf-8") if isinstance(data, bytes) else data, graph)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise GraphError(f"{origin} is not a text GraphDef: {exc}") from None
    return graph


def _parse_binary(data, origin):
    from google.protobuf.message import DecodeError

    graph = graph_pb2().GraphDef()
    try:
        graph.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise GraphError(
            f"{origin} is not a serialized GraphDef (corrupt or truncated protobuf: {exc})"
        ) from None
    return graph


def load_graph(graph):
    """A GraphDef from a GraphDef, serialized bytes, or a `.pb`/`.pbtxt` path."""
    if hasattr(graph, "SerializeToString") and hasattr(graph, "node"):
        copy = graph_pb2().GraphDef()
        copy.ParseFromString(graph.SerializeToString())
        return copy
    if isinstance(graph, (bytes, bytearray, memoryview)):
        return _parse_binary(bytes(graph), "the given bytes")
    if isinstance(graph, (str, os.PathLike)):
        path = Path(graph)
        if path.is_dir():
            raise GraphError(
                f"{path} is a directory; for a SavedModel use leangraph.freeze() first"
            )
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise GraphError(f"graph file not found: {path}") from None
        except OSError as exc:
            raise GraphError(f"cannot read graph file {path}: {exc.strerror}") from None
        if path.suffix in _TEXT_SUFFIXES:
            return _parse_text(data, str(path))
        return _parse_binary(data, str(path))
    raise TypeError(
        f"expected a GraphDef, bytes or a path to a .pb/.pbtxt file, got {type(graph).__name__}"
    )


def serialize(graph):
    """Serialized bytes of anything load_graph accepts, parsing as little as possible."""
    if isinstance(graph, (bytes, bytearray, memoryview)):
        return bytes(graph)
    if hasattr(graph, "SerializeToString") and hasattr(graph, "node"):
        return graph.SerializeToString()
    return load_graph(graph).SerializeToString()


def atomic_write(path, data):
    """Writes bytes to `path` through a temp file in the same folder, fsync and rename.

    A crash or interrupt at any point leaves either the old file or the new one,
    never a partial file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc} ({exc.filename or path.parent})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return path


def save_graph(graph_def, path, as_text=None):
    """Writes a GraphDef atomically; text format for `.pbtxt` (or `as_text=True`)."""
    path = Path(path)
    if as_text is None:
        as_text = path.suffix in _TEXT_SUFFIXES
    if as_text:
        from google.protobuf import text_format

        data = text_format.MessageToString(graph_def).encode("utf-8")
    else:
        data = graph_def.SerializeToString()
    return atomic_write(path, data)


def same_file(a, b):
    """True when two paths name the same existing file (or the same path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def node_name(endpoint):
    """'^a' -> 'a', 'a:1' -> 'a'."""
    name = endpoint[1:] if endpoint.startswith("^") else endpoint
    head, sep, port = name.rpartition(":")
    return head if sep and port.isdigit() else name


def default_inputs(graph_def):
    """The Placeholders, in graph order."""
    return [n.name for n in graph_def.node if n.op in ("Placeholder",)]


def default_outputs(graph_def):
    """Nodes nothing consumes that could be results, in graph order."""
    consumed = {node_name(i) for n in graph_def.node for i in n.input}
    return [n.name for n in graph_def.node if n.name not in consumed and n.op not in _NOT_OUTPUTS]
