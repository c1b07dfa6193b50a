"""Cleaning a freshly frozen GraphDef into leangraph's form (see leangraph.freeze)."""

from leangraph import graphs
from leangraph.errors import FreezeError
from leangraph.freezing.shapes import TensorInfo
from leangraph.runner import import_graph


# Ops that must not survive a freeze: they need a session with initialized state.
_STATEFUL_RESOURCE_OPS = {
    "VarHandleOp", "ReadVariableOp", "AssignVariableOp", "AssignAddVariableOp",
    "AssignSubVariableOp", "ResourceGather", "ResourceGatherNd", "VarIsInitializedOp",
    "Variable", "VariableV2", "VariableV3", "Assign", "AssignAdd", "AssignSub",
    "HashTable", "HashTableV2", "MutableHashTable", "MutableHashTableV2",
    "MutableHashTableOfTensors", "MutableHashTableOfTensorsV2", "MutableDenseHashTable",
    "MutableDenseHashTableV2", "LookupTableImportV2", "LookupTableFindV2",
    "InitializeTableV2", "InitializeTableFromTextFileV2",
}
# Ops that only pass a value (or nothing) along: a control edge from one of them,
# when everything upstream is constant, orders nothing.
_PASS_THROUGH_OPS = {"Identity", "NoOp", "Snapshot"}


def _split(endpoint):
    """('node', port) for 'node:port' / 'node'; control inputs are not passed here."""
    head, sep, port = endpoint.rpartition(":")
    if sep and port.isdigit():
        return head, int(port)
    return endpoint, 0


def _constant_only(nodes):
    """Names of nodes whose value (or completion) depends on constants alone."""
    memo = {}

    def visit(name):
        if name in memo:
            return memo[name]
        memo[name] = False  # cycles (loops) are not constant
        node = nodes.get(name)
        if node is None:
            return False
        if node.op == "Const":
            result = True
        elif node.op in _PASS_THROUGH_OPS:
            result = all(visit(graphs.node_name(i)) for i in node.input)
        else:
            result = False
        memo[name] = result
        return result

    return {name for name in nodes if visit(name)}


def _referenced_functions(graph_def):
    library = {f.signature.name: f for f in graph_def.library.function}
    if not library:
        return set()

    def from_attrs(attrs):
        for value in attrs.values():
            if value.HasField("func"):
                yield value.func.name
            if value.HasField("list"):
                for func in value.list.func:
                    yield func.name

    pending = []
    for node in graph_def.node:
        if node.op in library:
            pending.append(node.op)
        pending.extend(from_attrs(node.attr))
    used = set()
    while pending:
        name = pending.pop()
        if name in used or name not in library:
            continue
        used.add(name)
        for node in library[name].node_def:
            if node.op in library:
                pending.append(node.op)
            pending.extend(from_attrs(node.attr))
    return used


def _clean(graph_def, inputs, outputs, placeholder_shapes):
    """Rewrites a freshly frozen GraphDef into the clean form (see the module doc).

    inputs: [(placeholder node, wanted name)]; outputs: [(tensor, wanted name,
    dtype enum)]; placeholder_shapes: {placeholder node: shape tuple} to pin.
    """
    from tensorflow.core.framework import attr_value_pb2, graph_pb2

    nodes = {n.name: n for n in graph_def.node}

    # 1. Control edges from constant-only sources (the weight reads and the NoOp
    #    gathering them) order nothing; every other control edge is kept.
    constant = _constant_only(nodes)
    for node in graph_def.node:
        kept = [i for i in node.input if not (i.startswith("^") and i[1:] in constant)]
        if len(kept) != len(node.input):
            del node.input[:]
            node.input.extend(kept)

    # 2. Results: the function's return Identity adds nothing but its remaining
    #    control edges (side effects such as asserts), which move to the output.
    sources = []
    for tensor, name, dtype in outputs:
        node = nodes[_split(tensor)[0]]
        controls = []
        if node.op == "Identity" and node.input and not node.input[0].startswith("^"):
            tensor = node.input[0]
            controls = [i for i in node.input[1:] if i.startswith("^")]
        sources.append((tensor, name, dtype, controls))

    # 3. Weight reads: Identity(Const) -> the Const itself, so that transforms
    #    matching Conv2D(x, Const) see the weights directly.
    alias = {}
    for node in graph_def.node:
        if (node.op == "Identity" and len(node.input) == 1
                and not node.input[0].startswith("^")):
            source, port = _split(node.input[0])
            if port == 0 and nodes.get(source) is not None and nodes[source].op == "Const":
                alias[node.name] = source

    def resolve(endpoint):
        if endpoint.startswith("^"):
            base = endpoint[1:]
            return "^" + alias.get(base, base)
        name, port = _split(endpoint)
        if name in alias and port == 0:
            return alias[name]
        return endpoint

    for node in graph_def.node:
        rewired = [resolve(i) for i in node.input]
        if rewired != list(node.input):
            del node.input[:]
            node.input.extend(rewired)
    sources = [(resolve(t), n, d, [resolve(c) for c in cs]) for t, n, d, cs in sources]

    # 4. Prune to what the outputs need; keep every declared input.
    keep = graphs.ancestors(nodes, [t for t, _, _, cs in sources for t in [t] + cs]
                            + [p for p, _ in inputs])

    # 5. Names: inputs and outputs get the wanted names; an internal node that
    #    already has one of them moves aside.
    wanted = {name for _, name in inputs} | {name for _, name, _, _ in sources}
    renames = {}
    taken = set(keep) | wanted
    for name in sorted(keep):
        if name in wanted and name not in {p for p, w in inputs if p == w}:
            k, candidate = 1, f"{name}_1"
            while candidate in taken:
                k += 1
                candidate = f"{name}_{k}"
            taken.add(candidate)
            renames[name] = candidate
    for placeholder, name in inputs:
        if placeholder != name:
            renames[placeholder] = name

    def rename(endpoint):
        control = endpoint.startswith("^")
        base = endpoint[1:] if control else endpoint
        name, port = _split(base)
        if name not in renames:
            return endpoint
        new = renames[name]
        if control:
            return "^" + new
        return new if (":" not in base) else f"{new}:{port}"

    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    for node in graph_def.node:
        if node.name not in keep:
            continue
        copy = out.node.add()
        copy.CopyFrom(node)
        copy.name = renames.get(node.name, node.name)
        del copy.input[:]
        copy.input.extend(rename(i) for i in node.input)
        if node.name in placeholder_shapes:
            shape = placeholder_shapes[node.name]
            proto = copy.attr["shape"].shape
            proto.Clear()
            for dim in shape:
                proto.dim.add().size = -1 if dim is None else dim
    for tensor, name, dtype, controls in sources:
        node = out.node.add()
        node.name = name
        node.op = "Identity"
        node.input.append(rename(tensor))
        node.input.extend(sorted(set(rename(c) for c in controls)))
        node.attr["T"].CopyFrom(attr_value_pb2.AttrValue(type=dtype))

    # 6. Colocation hints: a frozen graph runs on one device, and a hint that names a
    #    node a later transform removes (a lowered while loop's Identity nodes, which
    #    TF's remove_nodes takes out) makes TF refuse the graph.
    for node in out.node:
        if "_class" in node.attr:
            del node.attr["_class"]

    # 7. Only the functions still called.
    used = _referenced_functions(_with_library(out, graph_def))
    for func in graph_def.library.function:
        if func.signature.name in used:
            out.library.function.add().CopyFrom(func)
    for grad in graph_def.library.gradient:
        if grad.function_name in used:
            out.library.gradient.add().CopyFrom(grad)
    return out


def _with_library(nodes_from, library_from):
    """A GraphDef view with the nodes of one and the function library of another."""
    from tensorflow.core.framework import graph_pb2

    view = graph_pb2.GraphDef()
    view.node.extend(nodes_from.node)
    view.library.CopyFrom(library_from.library)
    return view


# Ops that make a resource anew on every run (a TF1 dynamic_rnn's TensorArrays, a while
# loop's gradient stacks): no state outlives the run, so a frozen graph holds them fine.
_PER_RUN_RESOURCE_OPS = {"TensorArrayV3", "TensorArrayGradV3", "TensorArrayGradWithShape",
                         "StackV2"}
# Ops that pass a resource handle on unchanged (into, around and out of a v1 while loop).
_HANDLE_PASSING_OPS = {"Enter", "Exit", "Identity", "Switch", "Merge", "NextIteration"}


def _per_run_resource(node, by_name):
    """Whether `node` only passes on a handle that a per-run resource op made."""
    seen = set()
    while node is not None and node.name not in seen:
        seen.add(node.name)
        if node.op in _PER_RUN_RESOURCE_OPS:
            return True
        if node.op not in _HANDLE_PASSING_OPS:
            return False
        data = [i for i in node.input if not i.startswith("^")]
        if not data:
            return False
        # Merge's first input enters the loop; NextIteration's comes back round it.
        node = by_name.get(_split(data[0])[0])
    return False


def _check_clean(graph_def):
    from tensorflow.core.framework import types_pb2

    bad = sorted({n.op for n in graph_def.node if n.op in _STATEFUL_RESOURCE_OPS})
    by_name = {n.name: n for n in graph_def.node}
    resource = sorted(
        n.name for n in graph_def.node
        if any(v.type == types_pb2.DT_RESOURCE for v in n.attr.values())
        and not _per_run_resource(n, by_name)
    )
    if bad or resource:
        what = ", ".join(bad) if bad else f"resource tensors ({', '.join(resource[:5])})"
        raise FreezeError(
            f"the model keeps state that cannot be frozen into constants: {what} "
            "(lookup tables and other resources need a session to initialize them)"
        )


def _tensor_infos(graph_def, names):
    """TensorInfo for ':0' of each node, with shapes from TF's shape inference."""
    graph = import_graph(graph_def, FreezeError)
    infos = []
    for name in names:
        tensor = graph.get_tensor_by_name(name + ":0")
        shape = None if tensor.shape.rank is None else tuple(tensor.shape.as_list())
        infos.append(TensorInfo(name, tensor.dtype.name, shape))
    return infos
