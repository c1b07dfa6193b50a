"""Resolving TF 1 conds on constant predicates: once freezing sets a `training` flag to
False (or --feed sets one), every lowered tf.cond it steers (Switch ... Merge) always
takes the same branch. The branch taken is wired straight through, the other one is
removed, and the Merge becomes the taken branch's tensor, so the transforms after it see
plain ops (a batch norm between a conv and its Merge folds into the conv).

TensorFlow's Grappler does this too, but only when a session runs the graph; the graph
leangraph writes and rewrites still holds both branches. Only conds outside while loops
are resolved (a loop's own Switch is its exit test), and a cond whose Switch is a control
input, whose Merge index is read, or which would remove an output, is left as it is.
"""

from leangraph import graphs

_SWITCHES = ("Switch", "RefSwitch")
_MERGES = ("Merge", "RefMerge")
_PASS = ("Identity", "Snapshot")


def _split(endpoint):
    name, _, port = endpoint.lstrip("^").partition(":")
    return name, int(port) if port else 0


def _constant_bool(nodes, endpoint):
    """The value of a scalar bool Const the endpoint reads (through Identity), or None."""
    from tensorflow.python.framework import tensor_util

    name, _ = _split(endpoint)
    node = nodes.get(name)
    while node is not None and node.op in _PASS and node.input:
        node = nodes.get(_split(node.input[0])[0])
    if node is None or node.op != "Const" or node.attr["dtype"].type != 10:  # DT_BOOL
        return None
    value = tensor_util.MakeNdarray(node.attr["value"].tensor)
    return bool(value) if value.size == 1 else None


def resolve_constant_switches(graph_def, outputs):
    """(graph_def, number of Switches resolved). outputs: the tensors that must survive."""
    from tensorflow.core.framework import graph_pb2

    loops = graphs.loop_nodes(graph_def)
    nodes = {n.name: n for n in graph_def.node}
    taken = {}  # switch name -> the port its constant predicate always takes
    for node in graph_def.node:
        if node.op in _SWITCHES and node.name not in loops and len(node.input) >= 2:
            value = _constant_bool(nodes, node.input[1])
            if value is not None:
                taken[node.name] = 1 if value else 0
    if not taken:
        return graph_def, 0
    # A Switch someone waits on by a control edge, or whose Merge's index is read: left as is.
    for node in graph_def.node:
        for endpoint in node.input:
            if endpoint.startswith("^") and endpoint[1:] in taken:
                taken.pop(endpoint[1:])
    replace, dead = {}, set()
    for name, port in taken.items():
        data = nodes[name].input[0]
        replace[f"{name}:{port}"] = data
        dead.add(f"{name}:{1 - port}")

    def endpoint_key(endpoint):
        name, port = _split(endpoint)
        return f"{name}:{port}"

    # Deadness flows forward: a node with a dead data or control input is dead, except a
    # Merge, which is dead only when every input is; a Merge with one live input is that input.
    consumers = {}
    for node in graph_def.node:
        for endpoint in node.input:
            consumers.setdefault(_split(endpoint)[0], []).append(node)
    dead_nodes = set()
    merges = {}
    changed = True
    while changed:
        changed = False
        for node in graph_def.node:
            if node.name in dead_nodes or node.name in loops:
                continue
            inputs = [i for i in node.input]
            is_dead = [endpoint_key(i) in dead or _split(i)[0] in dead_nodes for i in inputs]
            if node.op in _MERGES:
                data = [(i, d) for i, d in zip(inputs, is_dead) if not i.startswith("^")]
                live = [i for i, d in data if not d]
                if data and not live:
                    dead_nodes.add(node.name)
                    changed = True
                elif len(live) == 1 and len(data) > 1 and node.name not in merges:
                    merges[node.name] = live[0]
                    changed = True
            elif any(is_dead):
                dead_nodes.add(node.name)
                changed = True
    for name in list(merges):
        readers = consumers.get(name, ())
        if any(_split(i)[0] == name and _split(i)[1] == 1 for r in readers for i in r.input):
            return graph_def, 0  # a Merge's value_index is read: leave the graph alone
    kept_outputs = {graphs.node_name(o) for o in outputs}
    if kept_outputs & dead_nodes:
        return graph_def, 0

    def rewired(endpoint):
        control = endpoint.startswith("^")
        name, port = _split(endpoint)
        key = f"{name}:{port}"
        for _ in range(64):  # a chain of Switches resolves in a few steps
            if key not in replace:
                break
            endpoint = replace[key]
            name, port = _split(endpoint)
            key = f"{name}:{port}"
        if control:
            return "^" + name
        return name if port == 0 else f"{name}:{port}"

    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.name in dead_nodes:
            continue
        copy = out.node.add()
        copy.CopyFrom(node)
        inputs = []
        for endpoint in node.input:
            if endpoint.startswith("^") and _split(endpoint)[0] in dead_nodes:
                continue
            new = rewired(endpoint)
            if new not in inputs or not new.startswith("^"):
                inputs.append(new)
        del copy.input[:]
        copy.input.extend(inputs)
        if node.name in merges:
            # The Merge keeps its name (an output may be it) as the taken branch's tensor.
            live = rewired(merges[node.name])
            controls = [i for i in inputs if i.startswith("^")]
            copy.op = "Identity"
            del copy.input[:]
            copy.input.extend([live] + controls)
            if "N" in copy.attr:
                del copy.attr["N"]
    return out, len(taken)
