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


def _defaulted_attrs(graph_def):
    """(node, attribute definition) for every attribute with a default that a node's
    registered op declares; nodes of unknown ops (function calls) give none."""
    from tensorflow.python.framework import op_def_registry

    defs = {}
    for node in graph_def.node:
        if node.op not in defs:
            defs[node.op] = op_def_registry.get(node.op)
        if defs[node.op] is not None:
            for attr in defs[node.op].attr:
                if attr.HasField("default_value"):
                    yield node, attr


def fill_default_attrs(graph_def):
    """Gives every node of a registered op the attributes it leaves at their defaults, in place.

    A file written without them (by save_graph, or by TensorFlow's own
    strip_default_attrs) reads back as the graph that was saved: graph checks
    and transforms see every attribute."""
    for node, attr in _defaulted_attrs(graph_def):
        if attr.name not in node.attr:
            node.attr[attr.name].CopyFrom(attr.default_value)
    return graph_def


def without_default_attrs(graph_def):
    """A copy without the attributes that equal their op's default: TensorFlow restores
    them on import, and a quantized graph's file is then a few percent smaller."""
    out = graph_pb2().GraphDef()
    out.CopyFrom(graph_def)
    for node, attr in list(_defaulted_attrs(out)):
        if attr.name in node.attr and node.attr[attr.name] == attr.default_value:
            del node.attr[attr.name]
    return out


def _parse_text(data, origin):
    from google.protobuf import text_format

    graph = graph_pb2().GraphDef()
    try:
        text_format.Merge(data.decode("utf-8") if isinstance(data, bytes) else data, graph)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise GraphError(f"{origin} is not a text GraphDef: {exc}") from None
    return fill_default_attrs(graph)


def _parse_binary(data, origin):
    from google.protobuf.message import DecodeError

    graph = graph_pb2().GraphDef()
    try:
        graph.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise GraphError(
            f"{origin} is not a serialized GraphDef (corrupt or truncated protobuf: {exc})"
        ) from None
    return fill_default_attrs(graph)


def load_graph(graph):
    """A GraphDef from a leangraph.Graph (or anything else holding one as .graph_def), a
    GraphDef (copied), serialized bytes, or a `.pb`/`.pbtxt` path."""
    if hasattr(graph, "graph_def") and not hasattr(graph, "node"):
        return graph.graph_def
    if hasattr(graph, "SerializeToString") and hasattr(graph, "node"):
        copy = graph_pb2().GraphDef()
        copy.CopyFrom(graph)
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
    if hasattr(graph, "graph_def") and hasattr(graph, "data") and not hasattr(graph, "node"):
        return graph.data  # a leangraph.Graph keeps its bytes
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
    """Writes a GraphDef atomically; text format for `.pbtxt` (or `as_text=True`).

    Attributes at their op's default are left out, as TensorFlow's SavedModel
    writer does; load_graph and TensorFlow itself put them back."""
    path = Path(path)
    graph_def = without_default_attrs(graph_def)
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


def tensor_name(endpoint):
    """'a' -> 'a:0'; 'a:1' stays: the name a session feeds or fetches."""
    return endpoint if ":" in endpoint else endpoint + ":0"


def ancestors(nodes, names):
    """Names of the nodes `names` need (themselves included, control inputs followed), in a
    {name: NodeDef} map; names not in it are skipped."""
    keep = set()
    pending = [node_name(n) for n in names]
    while pending:
        name = pending.pop()
        if name in keep or name not in nodes:
            continue
        keep.add(name)
        pending.extend(node_name(i) for i in nodes[name].input)
    return keep


def default_inputs(graph_def):
    """The Placeholders, in graph order."""
    return [n.name for n in graph_def.node if n.op in ("Placeholder",)]


def default_outputs(graph_def):
    """Nodes nothing consumes that could be results, in graph order."""
    consumed = {node_name(i) for n in graph_def.node for i in n.input}
    return [n.name for n in graph_def.node if n.name not in consumed and n.op not in _NOT_OUTPUTS]


def loop_nodes(graph_def):
    """Names of the nodes inside TF 1 while-loop frames (a frozen graph's lowered loops):
    everything an Enter reaches before an Exit. Their tensors take one value per
    iteration, so a session cannot fetch them."""
    consumers = {}
    for n in graph_def.node:
        for i in n.input:
            consumers.setdefault(node_name(i), []).append(n)
    inside = set()
    todo = [n for n in graph_def.node if n.op in ("Enter", "RefEnter")]
    while todo:
        node = todo.pop()
        if node.name in inside or node.op in ("Exit", "RefExit"):
            continue
        inside.add(node.name)
        todo.extend(consumers.get(node.name, ()))
    return inside


def loop_frames(graph_def):
    """{node inside a TF 1 while-loop frame: the loop's name}, over loop_nodes' nodes. The
    name is the frame's (an Enter's frame_name) less TF's "/while_context" suffix, e.g.
    "rnn/while"; a node two frames reach (nested loops) takes the first found."""
    consumers = {}
    for n in graph_def.node:
        for i in n.input:
            consumers.setdefault(node_name(i), []).append(n)
    frames = {}
    for enter in graph_def.node:
        if enter.op not in ("Enter", "RefEnter"):
            continue
        frame = enter.attr["frame_name"].s.decode(errors="replace")
        frame = frame[:-len("/while_context")] if frame.endswith("/while_context") else frame
        todo, seen = [enter], set()
        while todo:
            node = todo.pop()
            if node.name in seen or node.op in ("Exit", "RefExit"):
                continue
            seen.add(node.name)
            frames.setdefault(node.name, frame)
            todo.extend(consumers.get(node.name, ()))
    return frames


def branch_nodes(graph_def):
    """Names of the nodes inside TF 1 cond branches (a frozen graph's lowered tf.cond):
    everything a Switch outside a loop reaches before a Merge. The branch not taken
    leaves its tensors dead, so a session cannot fetch them."""
    consumers = {}
    for n in graph_def.node:
        for i in n.input:
            if not i.startswith("^"):
                consumers.setdefault(node_name(i), []).append(n)
    # A loop's own Switch (its exit test) is loop_nodes' business, not a branch.
    loops = loop_nodes(graph_def)
    inside = set()
    todo = [c for n in graph_def.node if n.op in ("Switch", "RefSwitch") and n.name not in loops
            for c in consumers.get(n.name, ())]
    while todo:
        node = todo.pop()
        if node.name in inside or node.op in ("Merge", "RefMerge", "Exit", "RefExit"):
            continue
        inside.add(node.name)
        todo.extend(consumers.get(node.name, ()))
    return inside
