"""Choosing a TF1 graph's inputs: Placeholders, PlaceholderWithDefault flags and feeds.

TF1 graphs rarely take their data through plain Placeholders alone. Their
`training` or `keep_prob` flags are PlaceholderWithDefault ops, their images often
default to a tf.data iterator fed from a string Placeholder of file names, and some
scalars must be given a value. This module turns such a graph into one whose inputs
are plain Placeholders:

- a PlaceholderWithDefault the user names (in `inputs`, or by giving it a shape) is
  an input; one the user does not name keeps its default;
- a scalar bool Placeholder or PlaceholderWithDefault that is not an input (a
  training flag, whatever its name) is set to False;
- `feeds` ({name: value}) turn placeholders into constants;
- any other placeholder the outputs need is an input when the user chose no inputs,
  and otherwise an error that names --feed;
- whatever the outputs no longer need (dataset iterators, string handles, training
  placeholders) is dropped, and the notes list it.
"""

from dataclasses import dataclass, field

import numpy as np

from leangraph import graphs
from leangraph.freezing.branches import resolve_constant_switches
from leangraph.errors import FreezeError
from leangraph.runner import import_graph


_PLACEHOLDERS = ("Placeholder", "PlaceholderWithDefault")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class IteratorOutputs(FreezeError):
    """Outputs that read a tf.data iterator themselves, not through an input.

    readers: those outputs; others: the outputs that do not, and the nearest nodes below
    a reader that do not (what a user would give as --outputs instead); tensor: the
    iterator tensor a reader reads."""

    def __init__(self, message, readers, others, tensor):
        super().__init__(message)
        self.readers, self.others, self.tensor = list(readers), list(others), tensor


@dataclass
class ChosenInputs:
    """The rewritten graph, its input nodes in order, and what was decided about the rest."""

    graph_def: object
    inputs: list
    notes: list = field(default_factory=list)


def is_dataset_op(op):
    """Whether an op belongs to a tf.data pipeline or iterator (it needs a session to
    initialize it, so a frozen inference graph cannot keep it)."""
    return "Iterator" in op or op.endswith("Dataset") or op.endswith("DatasetV2")


def _dtype(node):
    from tensorflow.python.framework import dtypes

    return dtypes.as_dtype(node.attr["dtype"].type)


def _rank(node):
    """The placeholder's declared rank; None when unknown."""
    if "shape" not in node.attr or node.attr["shape"].shape.unknown_rank:
        return None
    return len(node.attr["shape"].shape.dim)


def _is_flag(node):
    # TF1 code often declares its training flag with no shape at all
    # (tf.placeholder(tf.bool), as musicnn's checkpoints do): a bool of unknown rank
    # is a flag too.
    return _dtype(node).name == "bool" and _rank(node) in (0, None)


def parse_feeds(feeds):
    """{name: value text} from a dict, or from 'NAME=VALUE' strings (repeated --feed)."""
    if not feeds:
        return {}
    if isinstance(feeds, dict):
        return {str(k): v for k, v in feeds.items()}
    parsed = {}
    for item in feeds:
        name, sep, value = str(item).partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise FreezeError(f"--feed {item!r}: expected NAME=VALUE, e.g. keep_prob=1.0")
        if name in parsed:
            raise FreezeError(f"--feed gives '{name}' twice")
        parsed[name] = value.strip()
    return parsed


def _feed_value(node, value):
    """The feed as a numpy value of the placeholder's dtype: a scalar, or a vector when
    the value is a comma-separated list (a shape such as dim=128,128,128)."""
    dtype = _dtype(node)
    parts = value.split(",") if isinstance(value, str) and "," in value else None
    items = parts if parts is not None else np.ravel(value).tolist() if not isinstance(
        value, str) and np.ndim(value) else None
    rank = _rank(node)
    want = 0 if items is None else 1
    if rank is not None and rank != want:
        raise FreezeError(
            f"--feed {node.name}: the placeholder has shape {_shape_text(node)}; --feed gives "
            "a scalar or a comma-separated vector (name it in --inputs to feed it data)")
    if rank == 1:
        size = node.attr["shape"].shape.dim[0].size
        if size >= 0 and size != len(items):
            raise FreezeError(f"--feed {node.name}: {len(items)} values for shape "
                              f"{_shape_text(node)}")
    try:
        if items is None:
            return _scalar(dtype, value)
        return np.asarray([_scalar(dtype, item) for item in items],
                          dtype=dtype.as_numpy_dtype if not dtype.name == "string" else object)
    except (TypeError, ValueError):
        raise FreezeError(
            f"--feed {node.name}={value}: not a {dtype.name} value") from None


def _scalar(dtype, value):
    text = str(value).strip().lower() if isinstance(value, str) else value
    if dtype.is_bool:
        if isinstance(text, str):
            if text not in _TRUE + _FALSE:
                raise ValueError(text)
            return np.bool_(text in _TRUE)
        return np.bool_(bool(text))
    if dtype.name == "string":
        return np.bytes_(str(value).strip().encode())
    return np.asarray(float(text) if dtype.is_floating else int(text),
                      dtype=dtype.as_numpy_dtype)


def _shape_text(node):
    rank = _rank(node)
    if rank is None:
        return "unknown rank"
    dims = [d.size for d in node.attr["shape"].shape.dim]
    return "(" + ", ".join("?" if d < 0 else str(d) for d in dims) + ")"


def _describe(node):
    return f"{node.name} ({node.op}, {_dtype(node).name} {_shape_text(node)})"


def _default_text(nodes, node):
    source = nodes.get(graphs.node_name(node.input[0])) if node.input else None
    if source is not None and source.op == "Const":
        from tensorflow.python.framework import tensor_util

        value = tensor_util.MakeNdarray(source.attr["value"].tensor)
        if value.size == 1:
            return f"{node.name}={value.reshape(()).item()}"
    return node.name


def _lookup(nodes, names, what):
    """Node names for `names` (node or tensor names); a missing one is an error."""
    found = []
    placeholders = sorted(n.name for n in nodes.values() if n.op in _PLACEHOLDERS)
    for name in names:
        node = graphs.node_name(name)
        if node not in nodes:
            raise FreezeError(
                f"{what} names '{name}', which is not a node of the graph; its placeholders "
                f"are: {', '.join(placeholders) or '(none)'}")
        found.append(node)
    return found


def choose_inputs(graph_def, outputs, inputs=None, feeds=None, shape_names=()):
    """A ChosenInputs for `graph_def` read at `outputs` (node or tensor names).

    inputs: what to feed, in order: Placeholder or PlaceholderWithDefault nodes, or
        any other tensor, where a new Placeholder is cut in (see cut_at_tensors); None
        lets the graph's plain Placeholders that the outputs need be the inputs.
    feeds: {placeholder: value} set as constants (--feed NAME=VALUE).
    shape_names: names given a shape (--input-shape) or values (the data's arrays): a
        PlaceholderWithDefault or a bool flag among them is an input too.
    """
    from tensorflow.core.framework import graph_pb2

    nodes = {n.name: n for n in graph_def.node}
    feeds = parse_feeds(feeds)
    explicit = inputs is not None
    _lookup(nodes, inputs or [], "--inputs")
    cut = [name for name in inputs or [] if nodes[graphs.node_name(name)].op not in _PLACEHOLDERS]
    notes = []
    if cut:
        graph_def, renamed = cut_at_tensors(graph_def, cut)
        nodes = {n.name: n for n in graph_def.node}
        inputs = [renamed.get(name, name) for name in inputs]
        notes.append("new Placeholder input(s) cut in at " + ", ".join(
            f"{name} ({renamed[name]})" for name in cut))
    chosen = [graphs.node_name(name) for name in inputs or []]
    for name in _lookup(nodes, feeds, "--feed"):
        if nodes[name].op not in _PLACEHOLDERS:
            raise FreezeError(f"--feed names '{name}', a {nodes[name].op} op, not a placeholder")
        if name in chosen:
            raise FreezeError(f"'{name}' is both in --inputs and in --feed; choose one")
    for name in shape_names:
        node = nodes.get(name)
        named = node is not None and (node.op == "PlaceholderWithDefault" or (
            node.op == "Placeholder" and _is_flag(node)))
        if named and name not in chosen and name not in feeds:
            chosen.append(name)

    flags, kept_defaults, unfed, found, datasets = [], [], [], [], {}
    # (node, the PlaceholderWithDefault it is the default of, the output it is read for,
    # the edge it is read by)
    pending = [(graphs.node_name(o), None, graphs.node_name(o), o) for o in outputs]
    seen, direct = set(), {}
    while pending:
        name, via, output, edge = pending.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        node = nodes[name]
        if name in chosen or name in feeds:
            continue
        if node.op in _PLACEHOLDERS and _is_flag(node):
            flags.append(name)
            continue
        if node.op == "Placeholder":
            (unfed if explicit else found).append(name)
            continue
        if node.op == "PlaceholderWithDefault":
            kept_defaults.append(name)
            via = via or name
        elif is_dataset_op(node.op):
            datasets.setdefault(via, []).append(name)
            if via is None:
                direct.setdefault(output, graphs.tensor_name(edge.lstrip("^")))
            continue
        pending.extend((graphs.node_name(i), via, output, i) for i in node.input)

    if datasets:
        _refuse_dataset(datasets, direct, _clean_outputs(nodes, direct, outputs, chosen, feeds))
    if unfed:
        described = ", ".join(_describe(nodes[n]) for n in sorted(unfed))
        raise FreezeError(
            f"the outputs need {described}, which is not fed: add it to --inputs or give it "
            f"a value with --feed {sorted(unfed)[0]}=VALUE")
    graph_order = {n.name: i for i, n in enumerate(graph_def.node)}
    if not explicit:  # then the graph's order, as for plain Placeholders
        chosen = sorted(chosen + found, key=graph_order.get)

    out = graph_pb2.GraphDef()
    out.CopyFrom(graph_def)
    for node in out.node:
        if node.name in chosen and node.op == "PlaceholderWithDefault":
            node.op = "Placeholder"
            del node.input[:]
        elif node.name in kept_defaults:
            dtype = node.attr["dtype"].type
            node.op = "Identity"
            for attr in ("dtype", "shape"):
                del node.attr[attr]
            node.attr["T"].type = dtype
        elif node.name in flags:
            _make_const(node, np.bool_(False))
        elif node.name in feeds:
            _make_const(node, _feed_value(nodes[node.name], feeds[node.name]))

    if flags:
        notes.append(f"set the bool flag(s) {', '.join(sorted(flags))} to False (inference); "
                     "name one in --inputs to feed it, or give --feed NAME=true")
    defaults = [_default_text(nodes, nodes[n]) for n in sorted(kept_defaults)]
    if defaults:
        notes.append(f"PlaceholderWithDefault {', '.join(defaults)} keep(s) the default; name "
                     "it in --inputs to make it an input, or set it with --feed NAME=VALUE")
    if feeds:
        notes.append("fed as constants: " + ", ".join(f"{k}={v}" for k, v in feeds.items()))
    out, resolved = resolve_constant_switches(out, outputs)
    if resolved:
        notes.append(f"{resolved} tf.cond switch(es) on constant predicates resolved: the "
                     "branch not taken is removed, the other wired straight through")
    out, stripped = prune(out, outputs, chosen)
    if stripped:
        shown = ", ".join(stripped[:8]) + (f" and {len(stripped) - 8} more"
                                           if len(stripped) > 8 else "")
        notes.append(f"stripped input paths the outputs do not need: {shown}")
    return ChosenInputs(graph_def=out, inputs=chosen, notes=notes)


def cut_at_tensors(graph_def, tensors):
    """(graph_def with a new Placeholder in place of each tensor, {tensor: its name}).

    For a TF1 graph fed by a tf.data iterator with no placeholder in between: the
    input is cut in at the iterator's output (--inputs IteratorGetNext:0). The
    Placeholder takes the node's name for port 0 (the node moves aside, and goes when
    nothing else reads it) and `node_port` for another port.
    """
    from tensorflow.core.framework import graph_pb2

    graph = import_graph(graph_def, FreezeError)
    taken = {n.name for n in graph_def.node}
    renamed, moved, added = {}, {}, []
    for name in tensors:
        tensor = graph.get_tensor_by_name(graphs.tensor_name(name))
        node, port = tensor.op.name, tensor.value_index
        new = node if port == 0 else f"{node}_{port}"
        if port == 0 and node not in moved:
            aside = f"{node}_cut"
            while aside in taken:
                aside += "_"
            moved[node] = aside
            taken.add(aside)
        while new in taken and new != node:
            new += "_"
        taken.add(new)
        renamed[name] = new
        added.append((new, f"{node}:{port}", tensor.dtype, tensor.shape))

    def rewire(endpoint):
        control = endpoint.startswith("^")
        base = endpoint[1:] if control else endpoint
        source = graphs.node_name(base)
        port = base[len(source) + 1:] or "0"
        for new, cut, _, _ in added:
            if not control and f"{source}:{port}" == cut:
                return new
        if source in moved:
            return ("^" if control else "") + moved[source] + base[len(source):]
        return endpoint

    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        copy = out.node.add()
        copy.CopyFrom(node)
        copy.name = moved.get(node.name, node.name)
        del copy.input[:]
        copy.input.extend(rewire(i) for i in node.input)
    for new, _, dtype, shape in added:
        placeholder = out.node.add(name=new, op="Placeholder")
        placeholder.attr["dtype"].type = dtype.as_datatype_enum
        placeholder.attr["shape"].shape.CopyFrom(shape.as_proto())
    return out, renamed


def _clean_outputs(nodes, direct, outputs, chosen, feeds):
    """Outputs that read no tf.data iterator except through an input: the other outputs,
    and the nodes an output in `direct` reads that do not reach the iterator themselves
    (deepbrain's `pred` multiplies `prob` by ones_like(the labels))."""

    def clean(start):
        todo, seen = [start], set()
        while todo:
            name = todo.pop()
            if name in seen or name not in nodes or name in chosen or name in feeds:
                continue
            seen.add(name)
            node = nodes[name]
            if is_dataset_op(node.op):
                return False
            if node.op not in _PLACEHOLDERS:
                todo.extend(graphs.node_name(i) for i in node.input)
        return True

    names = [graphs.node_name(o) for o in outputs]
    found = [o for o in names if o not in direct]
    # Below each reader, the nearest nodes that are clean (a few levels at most).
    todo, seen = list(direct), set()
    while todo and len(seen) < 64:
        name = todo.pop(0)
        if name in seen or name not in nodes or nodes[name].op in ("Const",) + _PLACEHOLDERS \
                or is_dataset_op(nodes[name].op):
            continue
        seen.add(name)
        if name not in direct and clean(name):
            if name not in found:
                found.append(name)
            continue
        todo.extend(graphs.node_name(i) for i in nodes[name].input if not i.startswith("^"))
    return found


def _refuse_dataset(datasets, direct=None, others=()):
    """One line: which defaults or which outputs read a tf.data iterator, and what to give.

    direct: {output: the iterator tensor it reads, not through any placeholder}; others:
    outputs that do not (see _clean_outputs)."""
    through = sorted(n for n in datasets if n is not None)
    ops = sorted({op for names in datasets.values() for op in names})[:3]
    if through:
        raise FreezeError(
            f"the default of PlaceholderWithDefault {', '.join(through)} comes from a tf.data "
            f"iterator ({', '.join(ops)}), which a frozen graph cannot run: name the inputs with "
            f"--inputs (e.g. --inputs {through[0]}) or set scalars with --feed NAME=VALUE")
    direct = direct or {}
    readers = sorted(direct)
    tensor = direct[readers[0]] if readers else f"{ops[0]}:0"
    leave = (f"leave {', '.join(readers)} out of --outputs (e.g. --outputs "
             f"{','.join(others)}), or " if readers and others else "")
    raise IteratorOutputs(
        f"output(s) {', '.join(readers) or 'the outputs'} read a tf.data iterator "
        f"({tensor}) directly, not through an input, which a frozen graph cannot run: "
        f"{leave}cut an input in at that tensor, e.g. --inputs {tensor}",
        readers, others if readers else (), tensor)


def _make_const(node, value):
    from tensorflow.python.framework import tensor_util

    del node.input[:]
    node.op = "Const"
    node.attr.clear()
    tensor = tensor_util.make_tensor_proto(value)
    node.attr["dtype"].type = tensor.dtype
    node.attr["value"].tensor.CopyFrom(tensor)


def prune(graph_def, outputs, inputs):
    """(graph with only what the outputs and inputs need, names of the input-path
    nodes dropped: placeholders and dataset ops)."""
    from tensorflow.core.framework import graph_pb2

    nodes = {n.name: n for n in graph_def.node}
    keep = graphs.ancestors(nodes, list(outputs) + list(inputs))
    stripped = [n.name for n in graph_def.node if n.name not in keep
                and (n.op in _PLACEHOLDERS or is_dataset_op(n.op))]
    if len(keep) == len(nodes):
        return graph_def, stripped
    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.node.extend(n for n in graph_def.node if n.name in keep)
    out.library.CopyFrom(graph_def.library)
    _drop_unused_functions(out)
    return out, stripped


def _function_refs(nodes):
    """Names of the library functions these nodes call: as their op, or in a func attribute."""
    refs = set()
    for node in nodes:
        refs.add(node.op)
        for value in node.attr.values():
            if value.HasField("func"):
                refs.add(value.func.name)
            refs.update(f.name for f in value.list.func)
    return refs


def _drop_unused_functions(graph_def):
    """Removes the library functions no kept node reaches, in place: a stripped tf.data
    input path leaves its map functions (with their file readers) behind otherwise."""
    functions = {f.signature.name: f for f in graph_def.library.function}
    if not functions:
        return
    used, pending = set(), [n for n in _function_refs(graph_def.node) if n in functions]
    while pending:
        name = pending.pop()
        if name in used:
            continue
        used.add(name)
        pending.extend(r for r in _function_refs(functions[name].node_def) if r in functions)
    kept = [f for name, f in functions.items() if name in used]
    gradients = [g for g in graph_def.library.gradient if g.function_name in used]
    del graph_def.library.function[:]
    graph_def.library.function.extend(kept)
    del graph_def.library.gradient[:]
    graph_def.library.gradient.extend(gradients)
