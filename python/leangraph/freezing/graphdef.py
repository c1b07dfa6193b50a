"""Freezing a GraphDef that is already frozen: choosing its inputs and outputs, pinning shapes."""

from leangraph import graphs
from leangraph.errors import FreezeError
from leangraph.freezing.clean import _tensor_infos
from leangraph.freezing.frozen import FrozenGraph
from leangraph.freezing.placeholders import IteratorOutputs, choose_inputs, is_dataset_op
from leangraph.freezing.shapes import _merge_shape, _normalize_input_shapes
from leangraph.runner import import_graph


def _pin_placeholders(graph_def, names, input_shapes, batch_size):
    """{placeholder: shape} to pin: input_shapes as given, else the batch filled in."""
    shapes = _tensor_infos(graph_def, names)
    overrides = _normalize_input_shapes(input_shapes, names)
    pinned = {}
    for info in shapes:
        shape = _merge_shape(info.shape, overrides.get(info.name), batch_size, info.name) \
            if info.shape is not None or info.name in overrides else None
        if shape is not None and shape != info.shape:
            pinned[info.name] = shape
    return pinned


def _set_shapes(graph_def, pinned):
    for node in graph_def.node:
        if node.name in pinned:
            proto = node.attr["shape"].shape
            proto.Clear()
            for dim in pinned[node.name]:
                proto.dim.add().size = -1 if dim is None else dim


def split_names(names):
    """A list of names from 'a,b' or a sequence; None stays None."""
    if names is None:
        return None
    items = names.split(",") if isinstance(names, str) else names
    return [str(n).strip() for n in items if str(n).strip()]


def _default_outputs(graph_def):
    """The graph's sinks, less the ops of a tf.data pipeline (MakeIterator has no output)."""
    sinks = set(graphs.default_outputs(graph_def))
    return [n.name for n in graph_def.node if n.name in sinks and not is_dataset_op(n.op)]


def _output_nodes(graph_def, names):
    """(graph_def, node names of the outputs); a tensor other than ':0' gets an Identity
    to read it, added to a copy of the graph."""
    from tensorflow.core.framework import attr_value_pb2, graph_pb2

    nodes = {n.name for n in graph_def.node}
    missing = [n for n in names if graphs.node_name(n) not in nodes]
    if missing:
        raise FreezeError(f"--outputs: not nodes of the graph: {', '.join(missing)}")
    result, extra = [], []
    for name in names:
        node, sep, port = name.rpartition(":")
        if not (sep and port.isdigit()) or port == "0":
            result.append(graphs.node_name(name))
            continue
        reader = f"{node}_{port}"
        while reader in nodes:
            reader += "_"
        nodes.add(reader)
        extra.append((reader, name))
        result.append(reader)
    if extra:
        dtypes = {name: _import(graph_def).get_tensor_by_name(name).dtype for _, name in extra}
        copy = graph_pb2.GraphDef()
        copy.CopyFrom(graph_def)
        for reader, name in extra:
            new = copy.node.add(name=reader, op="Identity", input=[name])
            new.attr["T"].CopyFrom(attr_value_pb2.AttrValue(
                type=dtypes[name].as_datatype_enum))
        graph_def = copy
    return graph_def, result


def _import(graph_def):
    return import_graph(graph_def, FreezeError)


def _freeze_graph(graph_def, input_shapes, batch_size, output_names, inputs=None, feeds=None,
                  source="graph", notes=(), data_inputs=()):
    """A frozen GraphDef read at `output_names` (node or tensor names; default: its
    sinks), fed at the inputs leangraph.freezing.placeholders chooses."""
    out_names = split_names(output_names)
    defaulted = out_names is None
    if defaulted:
        out_names = _default_outputs(graph_def)
    if not out_names:
        raise FreezeError("the graph has no outputs (no node that nothing consumes)")
    graph_def, out_names = _output_nodes(graph_def, out_names)
    shape_names = (list(input_shapes) if isinstance(input_shapes, dict) else []) \
        + list(data_inputs or ())
    try:
        chosen = choose_inputs(graph_def, out_names, split_names(inputs), feeds, shape_names)
    except IteratorOutputs as exc:
        if not (defaulted and exc.others):
            raise
        # A sink that reads the iterator itself is the training script's (deepbrain's
        # `pred` multiplies `prob` by ones_like of the labels): without --outputs, the
        # outputs below it that do not are the model's.
        out_names = exc.others
        chosen = choose_inputs(graph_def, out_names, split_names(inputs), feeds, shape_names)
        notes = list(notes) + [
            f"the graph's sink(s) {', '.join(exc.readers)} read a tf.data iterator "
            f"({exc.tensor}) directly, which a frozen graph cannot run: the outputs are "
            f"{', '.join(out_names)} instead (--outputs chooses others)"]
    graph_def, in_names = chosen.graph_def, chosen.inputs
    if isinstance(input_shapes, dict):
        unknown = [k for k in input_shapes if k not in in_names]
        if unknown:
            raise FreezeError(
                f"--input-shape names {', '.join(unknown)}, which "
                f"{'is' if len(unknown) == 1 else 'are'} not an input of the model; its "
                f"inputs are: {', '.join(in_names) or '(none)'}")
    _set_shapes(graph_def, _pin_placeholders(graph_def, in_names, input_shapes, batch_size))
    infos = _tensor_infos(graph_def, in_names + out_names)
    return FrozenGraph(graph_def=graph_def, inputs=infos[:len(in_names)],
                       outputs=infos[len(in_names):], source=source,
                       notes=list(notes) + chosen.notes)
