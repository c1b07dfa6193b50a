"""Preparing a float graph for the int8 rewrite: the Consts a contraction reads through a
reshape folded into Consts (fold_constant_weights), a batch matmul by a Const matrix made a
MatMul (batch_matmuls_as_matmuls), and the layers that make an output's logits
and of a regression output (output_heads), which `quantize(float_heads=True)` keeps float."""

import numpy as np

from leangraph import graphs

#: The ops the int8 rewrite quantizes.
_CONTRACTIONS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")

_BATCH_MATMULS = ("BatchMatMulV2", "BatchMatMul")
#: Ops that only reshape: a Const through these is a constant a contraction can take.
_RESHAPES = ("ExpandDims", "Reshape", "Squeeze", "Identity", "Transpose")


def _control_flow_nodes(graph_def):
    """The nodes in a TF 1 while-loop frame or cond branch, where new Consts would need
    the frame's control input (int8 leaves them float anyway)."""
    return set(graphs.loop_frames(graph_def)) | set(graphs.branch_nodes(graph_def))


def fold_constant_weights(graph_def):
    """The graph with each conv/matmul's weights and each BiasAdd's bias made a Const where
    they are a Const reshaped (Keras 3's Conv1D: its kernel through ExpandDims, its bias
    through Squeeze), so the int8 rewrite, which takes Const weights, can take the layer.
    The graph itself when there is none."""
    from tensorflow.python.framework import tensor_util

    by_name = {n.name: n for n in graph_def.node}

    def value(endpoint, depth=0):
        node = by_name.get(graphs.node_name(endpoint))
        if node is None or depth > 16 or graphs.tensor_name(endpoint) != f"{node.name}:0":
            return None
        if node.op == "Const":
            return tensor_util.MakeNdarray(node.attr["value"].tensor)
        data = [i for i in node.input if not i.startswith("^")]
        if node.op not in _RESHAPES or not data:
            return None
        args = [value(i, depth + 1) for i in data]
        if any(a is None for a in args):
            return None
        x = args[0]
        try:
            if node.op == "ExpandDims":
                return np.expand_dims(x, int(args[1]))
            if node.op == "Reshape":
                return x.reshape([int(d) for d in np.ravel(args[1])])
            if node.op == "Squeeze":
                dims = tuple(int(d) for d in node.attr["squeeze_dims"].list.i)
                return np.squeeze(x, axis=dims or None)
            if node.op == "Transpose":
                return np.transpose(x, [int(d) for d in np.ravel(args[1])])
        except (ValueError, IndexError, TypeError, np.exceptions.AxisError):
            return None
        return x  # Identity

    folded = {}
    control_flow = _control_flow_nodes(graph_def)
    for node in graph_def.node:
        if node.name in control_flow:
            continue  # a Const there needs the frame's control input: left as it is
        if node.op in _CONTRACTIONS + _BATCH_MATMULS + ("BiasAdd",) and len(node.input) > 1:
            producer = by_name.get(graphs.node_name(node.input[1]))
            if producer is not None and producer.op in _RESHAPES and producer.name not in folded:
                array = value(node.input[1])
                if array is not None:
                    folded[producer.name] = array
    if not folded:
        return graph_def
    out = graphs.graph_pb2().GraphDef()
    out.CopyFrom(graph_def)
    for node in out.node:
        if node.name in folded:
            proto = tensor_util.make_tensor_proto(folded[node.name])
            name, device = node.name, node.device
            node.Clear()
            node.name, node.op, node.device = name, "Const", device
            node.attr["dtype"].type = proto.dtype
            node.attr["value"].tensor.CopyFrom(proto)
    # What only the folded nodes read (the float kernel, the axis) goes with them.
    reads = {}
    for node in out.node:
        for i in node.input:
            reads[graphs.node_name(i)] = reads.get(graphs.node_name(i), 0) + 1
    pending = [(i, 0) for name in folded for i in by_name[name].input]  # not in `reads`
    unread = set()
    while pending:
        endpoint, counted = pending.pop()
        name = graphs.node_name(endpoint)
        reads[name] = reads.get(name, 0) - counted
        if reads[name] <= 0 and name in by_name and name not in folded and name not in unread:
            unread.add(name)
            pending.extend((i, 1) for i in by_name[name].input)
    if unread:
        kept = [n for n in out.node if n.name not in unread]
        del out.node[:]
        out.node.extend(kept)
    return out


#: What a head's logits may pass through on their way to a graph output.
_HEAD_ACTIVATIONS = ("Softmax", "LogSoftmax", "Sigmoid")
_HEAD_PASS_THROUGH = ("Identity", "BiasAdd", "Add", "AddV2", "Reshape", "Squeeze", "ExpandDims")


def output_heads(graph_def, outputs):
    """{contraction: (output name, its Softmax/Sigmoid op or None)} for each conv/matmul
    whose result becomes a graph output with nothing between but a bias, a reshape, an
    identity and at most one softmax or sigmoid: the layer that makes a classifier's
    logits (a segmentation's per pixel), or a regression output itself."""
    by_name = {n.name: n for n in graph_def.node}
    # What varies from run to run: what a source other than a Const (a placeholder) reaches;
    # the rest is constant (a bias reshaped, say).
    readers = {}
    for node in graph_def.node:
        for i in node.input:
            if not i.startswith("^"):
                readers.setdefault(graphs.node_name(i), []).append(node.name)
    varies = {n.name for n in graph_def.node if n.op != "Const"
              and not any(not i.startswith("^") for i in n.input)}
    pending = list(varies)
    while pending:
        for reader in readers.get(pending.pop(), ()):
            if reader not in varies:
                varies.add(reader)
                pending.append(reader)

    heads = {}
    for output in outputs:
        node = by_name.get(graphs.node_name(output))
        activated = None
        for _ in range(len(by_name)):
            if node is None:
                break
            if node.op in _CONTRACTIONS:
                heads.setdefault(node.name, (graphs.node_name(output), activated))
                break
            if node.op in _HEAD_ACTIVATIONS and not activated:
                activated = node.op
            elif node.op not in _HEAD_PASS_THROUGH:
                break
            sources = [by_name.get(graphs.node_name(i)) for i in node.input
                       if not i.startswith("^")]
            varying = [n for n in sources if n is None or n.name in varies]
            node = varying[0] if len(varying) == 1 else None
    return heads


def batch_matmuls_as_matmuls(graph_def):
    """The graph with each float BatchMatMulV2 of an activation (rank >= 3) by a Const matrix
    (Keras 3's EinsumDense: a MultiHeadAttention's query, key, value and output projections)
    as a MatMul between two Reshapes (to [-1, C], and back to the activation's leading
    dimensions), which the int8 rewrite takes. The graph itself when there is none."""
    from tensorflow.python.framework import tensor_util

    by_name = {n.name: n for n in graph_def.node}

    def const_matrix(endpoint):
        node = by_name.get(graphs.node_name(endpoint))
        if node is None or node.op != "Const" or graphs.tensor_name(endpoint) != f"{node.name}:0":
            return None
        shape = [d.size for d in node.attr["value"].tensor.tensor_shape.dim]
        return shape if len(shape) == 2 else None

    control_flow = _control_flow_nodes(graph_def)
    chosen = [n for n in graph_def.node
              if n.name not in control_flow and n.op in _BATCH_MATMULS and len(n.input) == 2
              and n.attr["T"].type == 1  # float32
              and not n.attr["adj_x"].b and not n.attr["adj_y"].b and const_matrix(n.input[1])]
    if not chosen:
        return graph_def
    out = graphs.graph_pb2().GraphDef()
    out.CopyFrom(graph_def)
    taken = set(by_name)

    def add(name, op, inputs, **attrs):
        while name in taken:
            name += "_"
        taken.add(name)
        node = out.node.add(name=name, op=op, input=inputs)
        for key, value in attrs.items():
            if isinstance(value, np.ndarray):
                node.attr[key].tensor.CopyFrom(tensor_util.make_tensor_proto(value))
            elif isinstance(value, bool):
                node.attr[key].b = value
            elif key == "N":
                node.attr[key].i = value
            else:
                node.attr[key].type = value
        return name

    replaced = {}
    for bmm in chosen:
        x, w = bmm.input[0], bmm.input[1]
        columns, width = const_matrix(w)
        scope = bmm.name
        flat = add(f"{scope}/flat", "Reshape", [
            x, add(f"{scope}/flat/shape", "Const", [], dtype=3,
                   value=np.array([-1, columns], np.int32))], T=1, Tshape=3)
        product = add(f"{scope}/matmul", "MatMul", [flat, w], T=1, transpose_a=False,
                      transpose_b=False)
        shape = add(f"{scope}/shape", "Shape", [x], T=1, out_type=3)
        const = lambda name, v: add(f"{scope}/{name}", "Const", [], dtype=3,  # noqa: E731
                                    value=np.array(v, np.int32))
        lead = add(f"{scope}/lead", "StridedSlice", [
            shape, const("lead/begin", [0]), const("lead/end", [-1]),
            const("lead/strides", [1])], T=3, Index=3)
        back = add(f"{scope}/back", "ConcatV2", [lead, const("width", [width]),
                                                 const("axis", 0)], T=3, N=2, Tidx=3)
        replaced[bmm.name] = (product, back)
    for node in out.node:
        if node.name in replaced:
            product, back = replaced[node.name]
            name, device = node.name, node.device
            node.Clear()
            node.name, node.op, node.device = name, "Reshape", device
            node.input.extend([product, back])
            node.attr["T"].type, node.attr["Tshape"].type = 1, 3
    return out
