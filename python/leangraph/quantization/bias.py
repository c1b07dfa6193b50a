"""Bias correction of an 8-bit rewrite: each unit's mean error per output channel, measured
on the check samples against the float graph, taken out of its bias.

Fitted unit after unit, upstream first, in one session of the probed rewrite whose biases
are fed (runs.StepwiseRunner); leangraph.quantize keeps the corrections where they improve
the outputs on other samples.
"""

from contextlib import contextmanager

import numpy as np

from leangraph import graphs
from leangraph.quantization.calibrate import _Session
from leangraph.quantization.runs import StepwiseRunner, run_all
from leangraph.quantization.units import depths, quantized_units, readers
from leangraph.quantization.values import Parts, row_blocks

#: Bias correction takes a channel's mean 8-bit error from at least this many of its values.
_MIN_VALUES_PER_CHANNEL = 8
_DT_FLOAT = 1  # types_pb2.DT_FLOAT


def _upstream(graph_def, units, at=None):
    """{unit: bit mask of the other units (by position in `units`) whose output reaches it}.

    at: {unit: the node whose inputs count instead of the unit's own (a Sum-fused unit's
    add, which its summand reaches too)}."""
    index = {c: i for i, c in enumerate(units)}
    nodes = {n.name: n for n in graph_def.node}
    depth = depths(graph_def)
    reach = {}
    for name in sorted(depth, key=depth.get):
        mask = 0
        for i in nodes[name].input:
            if not i.startswith("^"):
                source = graphs.node_name(i)
                mask |= reach.get(source, 0) | (1 << index[source] if source in index else 0)
        reach[name] = mask
    at = at or {}
    return {c: reach.get(at.get(c, c), 0) & ~(1 << index[c]) for c in units}


def _bias_targets(probe, ends):
    """{contraction: (8-bit node, its bias Const, the float tensor its unit ends at)} of a
    probed rewrite, for the units with a float Const bias whose end the probes show."""
    by = {n.name: n for n in probe.node}
    after = readers(probe)
    out = {}
    for contraction, (_, name) in quantized_units(probe).items():
        node = by[name]
        fused = [f.decode() for f in node.attr["fused_ops"].list.s]
        end = ends.get(contraction)
        if "Sum" in fused:
            # It ends at the add (or the Relu after it), whose probe bears that name: its
            # bias takes the sum's mean error, what reaches it through the summand included
            # (fitted after the summand's producer).
            end = next((r.name for r in after.get(name, ()) if r.op == "Dequantize"
                        and r.input[0] in (name, name + ":0")), None)
        bias = by.get(graphs.node_name(node.input[2])) if len(node.input) > 2 else None
        if ("BiasAdd" in fused and bias is not None and bias.op == "Const"
                and bias.attr["dtype"].type == _DT_FLOAT and end in by):
            out[contraction] = (name, bias.name, end)
    return out


def _left_to_readers(graph_def, targets, ends):
    """The bias-free units of `targets` whose mean error their readers' corrections take up.

    A contraction with no bias of its own in the float graph (a separable conv's
    depthwise half) whose every reader is a 1x1 Conv2D, itself corrected, hands its
    mean error e on linearly: the reader's output carries W^T e, a constant per output
    channel, which the reader's own correction (fitted after its inputs') removes with
    the rest. Its bias then stays one value (zero, or an unsigned hand-over's shift)
    instead of a vector of C floats: NASNetMobile's 160 depthwise biases were 0.3
    points of its int8 file."""
    by_name = {n.name: n for n in graph_def.node}
    after_all = readers(graph_def, control=True)
    out = []
    for c in targets:
        node = by_name.get(c)
        if node is None or ends.get(c) != c:
            continue
        after = after_all.get(c, [])
        if after and all(r.op == "Conv2D" and r.name in targets and not r.name == c
                         and graphs.node_name(r.input[0]) == c and _is_pointwise(r, by_name)
                         for r in after):
            out.append(c)
    return out


def _is_pointwise(conv, by_name):
    """Whether a Conv2D's filter is a 1x1 constant and it reads its input once."""
    if len(conv.input) < 2 or graphs.node_name(conv.input[1]) == graphs.node_name(conv.input[0]):
        return False
    weights = by_name.get(graphs.node_name(conv.input[1]))
    if weights is None or weights.op != "Const":
        return False
    dims = [d.size for d in weights.attr["value"].tensor.tensor_shape.dim]
    return len(dims) == 4 and dims[:2] == [1, 1]


def _correct_biases(graph_def, probe, ends, feeds, float_values, leave_to_readers=True):
    """{8-bit node: its unit's mean 8-bit error per channel on `feeds`, to take from its bias}.

    probe: the probed rewrite of graph_def, made with shifts=true so that each unit's error is
    the one it has in the graph as it will run (unsigned hand-overs included). Fitted unit
    after unit in graph order, each once every unit upstream of it is corrected (a unit's
    error includes what reaches it from above, so correcting two in a row from one run
    would count that twice), in one session of the probed rewrite whose biases are fed, each
    run computing only what the units still to fit can change (runs.StepwiseRunner). A
    channel is corrected from at least _MIN_VALUES_PER_CHANNEL values of it; after a Relu or
    Relu6, from the values both graphs leave in its linear range. float_values: a
    FloatValues of graph_def on `feeds`. leave_to_readers: skip the units _left_to_readers
    names (each layer's own SQNR is measured with all corrected)."""
    with fitted_biases(graph_def, probe, ends, feeds, float_values,
                       leave_to_readers) as (corrected, _):
        return corrected


@contextmanager
def fitted_biases(graph_def, probe, ends, feeds, float_values, leave_to_readers=True):
    """Yields (_correct_biases' corrections, run): run(names) gives those tensors of the probe
    with the corrections in, as _with_biases writes them, over all of `feeds` (a
    values.Parts each), in the fit's own session (its biases fed) while it is open."""
    targets = _bias_targets(probe, ends)
    for c in _left_to_readers(graph_def, targets, ends) if leave_to_readers else ():
        del targets[c]
    if not targets:
        yield {}, lambda names: run_all(probe, names, feeds, as_parts=True)
        return
    editable = graphs.graph_pb2().GraphDef()
    editable.CopyFrom(probe)
    by = {n.name: n for n in editable.node}
    for name, _, _ in targets.values():
        # The kernels cache a constant bias on their first run; this one is fed.
        by[name].attr["is_bias_const"].b = False
    session = _Session(editable)
    try:
        corrected, written = _fit(graph_def, editable, targets, session, feeds, float_values)
        yield corrected, _corrected_run(probe, editable, session, feeds, corrected, written)
    finally:
        session.close()


def _fit(graph_def, editable, targets, session, feeds, float_values):
    """(the corrections, {bias tensor: its value as _with_biases writes it}) of `targets`
    ({contraction: (8-bit node, bias Const, end)}), fitted in `session` of `editable`."""
    from tensorflow.python.framework import tensor_util

    units = list(targets)
    position = {c: i for i, c in enumerate(units)}
    upstream = _upstream(graph_def, units, {c: end for c, (_, _, end) in targets.items()})
    by = {n.name: n for n in editable.node}
    bias = {c: tensor_util.MakeNdarray(by[b].attr["value"].tensor).astype(np.float32)
            for c, (_, b, _) in targets.items()}
    start = {c: b.copy() for c, b in bias.items()}
    names = [end + ":0" for _, _, end in targets.values()]
    want = float_values.get(names)
    float_ops = {n.name: n.op for n in graph_def.node}
    corrected, pending = {}, (1 << len(units)) - 1
    # Each run computes only what the units still pending can change (see runs).
    runner = StepwiseRunner(session, editable, [targets[c][1] for c in units], feeds)
    while pending:
        ready = [c for i, c in enumerate(units)
                 if pending >> i & 1 and not upstream[c] & pending]
        if not ready:
            break
        extra = {targets[c][1] + ":0": bias[c] for c in units}
        fetch = [targets[c][2] + ":0" for c in ready]
        fitted = ((1 << len(units)) - 1) & ~pending
        got = dict(zip(fetch, runner.run(fetch, extra, fitted)))
        for c in ready:
            pending &= ~(1 << position[c])
            end = targets[c][2]
            reference, value = want[end + ":0"], got[end + ":0"]
            if reference.shape != value.shape or reference.shape[-1:] != bias[c].shape:
                continue
            total, count = _error_sums(reference, value, float_ops.get(end))
            shift = np.where(count >= _MIN_VALUES_PER_CHANNEL,
                             total / np.maximum(count, 1), 0.0)
            if np.any(shift) and np.all(np.isfinite(shift)):
                bias[c] = (bias[c] - shift).astype(np.float32)
                # As a difference: the rewrite without probes folds other terms
                # into some biases (an unsigned input's shift).
                corrected[targets[c][0]] = start[c] - bias[c]
    written = {targets[c][1] + ":0": _as_written(start[c], corrected.get(targets[c][0], 0))
               for c in units}
    return corrected, written


def _corrected_run(probe, editable, session, feeds, corrected, written):
    """fitted_biases' run(names): in the fit's session of `editable`, its biases fed as
    `written`, where none is shared (a fed Const changes every reader); else in a
    session of the probe with the corrections written in."""
    read_by = readers(editable, control=True)
    if any(len(read_by.get(graphs.node_name(b), ())) > 1 for b in written):
        return lambda names: run_all(_with_biases(probe, corrected), names, feeds, as_parts=True)
    return lambda names: run_all(editable, names, feeds, session=session, extra=written,
                                 as_parts=True)


def _as_written(bias, correction):
    """A bias less its correction, as _with_biases writes it into a graph."""
    return (bias - correction).astype(np.float32)


def _error_sums(reference, value, op):
    """(per channel: the sum of value - reference in float64, how many values it takes), over
    the values both leave in the linear range of `op` where it is a Relu or Relu6.
    reference, value: arrays, or values.Parts read as their joined arrays.

    In blocks of rows that stay in cache (a 147x147x128 end over 8 samples is 22M values:
    whole, each float64 temporary is 180 MB), added up row after row in the order a
    whole-array sum along axis 0 takes, so the sums are the same to the bit."""
    reference, value = Parts.of(reference), Parts.of(value)
    channels = reference.shape[-1]
    rows = max(1, (1 << 16) // max(channels, 1))
    total = np.zeros((1, channels))
    count = np.zeros(channels, np.int64)
    for a, b in zip(row_blocks(reference, channels, rows), row_blocks(value, channels, rows)):
        a, b = a.astype(np.float64), b.astype(np.float64)
        if op in ("Relu", "Relu6"):
            live = (a > 0) & (b > 0)
            if op == "Relu6":
                live &= (a < 6) & (b < 6)
            difference = np.where(live, b - a, 0.0)
            count += live.sum(0)
        else:
            difference = b - a
            count += len(a)
        total = np.add.reduce(np.concatenate([total, difference]), axis=0, keepdims=True)
    return total[0], count


def _with_biases(graph_def, corrected):
    """A copy of a rewrite whose 8-bit nodes named in `corrected` read their bias less that."""
    from tensorflow.python.framework import tensor_util

    out = graphs.graph_pb2().GraphDef()
    out.CopyFrom(graph_def)
    read_by = readers(out, control=True)
    by = {n.name: n for n in out.node}
    for name, values in sorted(corrected.items()):
        node = by.get(name)
        if node is None or len(node.input) < 3 or graphs.node_name(node.input[2]) not in by:
            continue
        const = by[graphs.node_name(node.input[2])]
        old = tensor_util.MakeNdarray(const.attr["value"].tensor)
        if const.op != "Const" or old.shape != values.shape:
            continue
        if len(read_by[const.name]) > 1:  # shared: the unit gets a Const of its own
            own = out.node.add()
            own.CopyFrom(const)
            own.name = f"{name}/corrected_bias"
            node.input[2] = own.name
            const = own
        const.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(_as_written(old, values)))
    return out
