"""leangraph.summarize(): what TF's summarize_graph prints, plus multiply-accumulates."""

import shlex
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from leangraph import graphs
from leangraph.freeze import FrozenGraph, TensorInfo, freeze
from leangraph.runner import import_graph


_VARIABLE_OPS = {"Variable", "VariableV2", "VarHandleOp"}
# _MklNativeFusedConv2D: the bf16 conv with a residual sum that to_bfloat16 writes.
_CONV_OPS = {"Conv2D", "_FusedConv2D", "_MklNativeFusedConv2D", "Conv3D"}
_MATMUL_OPS = {"MatMul", "_FusedMatMul"}
_BATCH_MATMUL_OPS = {"BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"}
_BACKPROP_INPUT_OPS = {"Conv2DBackpropInput", "Conv3DBackpropInputV2"}
_DEPTHWISE_OPS = {"DepthwiseConv2dNative", "_FusedDepthwiseConv2dNative"}
_MODEL_MAGIC = (b"PK\x03\x04", b"\x89HDF\r\n\x1a\n")


@dataclass
class GraphSummary:
    """The facts summarize() finds; str() is a human table, to_dict() is JSON-ready."""

    inputs: list
    outputs: list
    op_counts: dict
    node_count: int
    control_edges: int
    const_params: int
    const_bytes: int
    variable_params: int
    macs: int
    macs_by_op: dict
    batch: int
    bench_command: str
    macs_unknown: list = field(default_factory=list)

    def to_dict(self):
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "node_count": self.node_count,
            "op_counts": dict(self.op_counts),
            "control_edges": self.control_edges,
            "const_params": self.const_params,
            "const_bytes": self.const_bytes,
            "variable_params": self.variable_params,
            "batch": self.batch,
            "macs": self.macs,
            "macs_by_op": dict(self.macs_by_op),
            "macs_unknown": list(self.macs_unknown),
            "bench_command": self.bench_command,
        }

    def __str__(self):
        lines = []
        for title, infos in (("Inputs", self.inputs), ("Outputs", self.outputs)):
            lines.append(f"{title} ({len(infos)}):")
            width = max((len(t.name) for t in infos), default=0)
            for info in infos:
                shape = "unknown rank" if info.shape is None else "[" + ", ".join(
                    "?" if d is None else str(d) for d in info.shape) + "]"
                lines.append(f"  {info.name:<{width}}  {info.dtype:<8}  {shape}")
        lines.append(
            f"Found {self.const_params:,} const parameters ({_bytes(self.const_bytes)}), "
            f"{self.variable_params:,} variable parameters, and "
            f"{self.control_edges:,} control edges"
        )
        lines.append(f"Op types ({self.node_count:,} nodes):")
        width = max((len(op) for op in self.op_counts), default=0)
        for op, count in self.op_counts.items():
            lines.append(f"  {op:<{width}}  {count:>6,}")
        lines.append(f"Multiply-accumulates per example: {self.macs:,} ({_si(self.macs)})")
        width = max((len(op) for op in self.macs_by_op), default=0)
        for op, macs in self.macs_by_op.items():
            lines.append(f"  {op:<{width}}  {macs:>15,}")
        if self.macs_unknown:
            shown = ", ".join(self.macs_unknown[:5])
            more = f" and {len(self.macs_unknown) - 5} more" if len(self.macs_unknown) > 5 else ""
            lines.append(f"  not counted (shapes unknown): {shown}{more}")
        lines.append("To time it:")
        lines.append(f"  {self.bench_command}")
        return "\n".join(lines)


def _bytes(count):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"  # pragma: no cover


def _si(count):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return str(count)


def _dims(shape_proto):
    if shape_proto.unknown_rank:
        return None
    return tuple(None if d.size < 0 else d.size for d in shape_proto.dim)


def _product(dims):
    total = 1
    for dim in dims:
        total *= dim
    return total


def _dtype_name(enum):
    import tensorflow as tf

    try:
        return tf.as_dtype(enum).name
    except TypeError:
        return f"dtype{enum}"


def _const_size(node):
    """(elements, bytes) of a Const node's value, read from its shape and dtype."""
    import tensorflow as tf

    tensor = node.attr["value"].tensor
    dims = _dims(tensor.tensor_shape) or ()
    elements = _product(dims)
    dtype = tf.as_dtype(tensor.dtype)
    if dtype == tf.string:
        return elements, sum(len(s) for s in tensor.string_val)
    return elements, elements * dtype.size


def _shape(tensor):
    """The static shape as a tuple of ints, or None when any dimension is unknown."""
    if tensor.shape.rank is None:
        return None
    dims = tensor.shape.as_list()
    return None if any(d is None for d in dims) else tuple(dims)


def _op_macs(op):
    """Multiply-accumulates of one op at the graph's shapes; None if a shape is unknown."""
    kind = op.type
    if kind in _CONV_OPS:
        out, kernel = _shape(op.outputs[0]), _shape(op.inputs[1])
        if out is None or kernel is None:
            return None
        return _product(out) * _product(kernel[:-1])  # window x input channels per group
    if kind in _DEPTHWISE_OPS:
        out, kernel = _shape(op.outputs[0]), _shape(op.inputs[1])
        if out is None or kernel is None:
            return None
        return _product(out) * _product(kernel[:-2])
    if kind in _MATMUL_OPS:
        out, a = _shape(op.outputs[0]), _shape(op.inputs[0])
        if out is None or a is None:
            return None
        inner = a[0] if op.get_attr("transpose_a") else a[1]
        return _product(out) * inner
    if kind in _BATCH_MATMUL_OPS:
        out, a = _shape(op.outputs[0]), _shape(op.inputs[0])
        if out is None or a is None:
            return None
        inner = a[-2] if op.get_attr("adj_x") else a[-1]
        return _product(out) * inner
    if kind in _BACKPROP_INPUT_OPS:
        grad, kernel = _shape(op.inputs[2]), _shape(op.inputs[1])
        if grad is None or kernel is None:
            return None
        return _product(grad) * _product(kernel[:-1])
    return 0


def _shape_graph(graph_def, batch):
    """The graph imported into a tf.Graph for shape inference (after the native checks),
    unknown batch pinned."""
    copy = graphs.graph_pb2().GraphDef()
    copy.CopyFrom(graph_def)
    for node in copy.node:
        if node.op == "Placeholder" and "shape" in node.attr:
            shape = node.attr["shape"].shape
            if not shape.unknown_rank and shape.dim and shape.dim[0].size < 0:
                shape.dim[0].size = batch
    return import_graph(copy)


def _bench_command(graph_path, inputs, outputs):
    parts = ["leangraph-bench", "--graph", str(graph_path)]
    for info in inputs:
        dims = list(info.shape) if info.shape is not None else []
        if dims and dims[0] is None:
            dims[0] = 1
        shape = ",".join("-1" if d is None else str(d) for d in dims)
        parts += ["--input", f"{info.name}:{shape}:{info.dtype}"]
    if outputs:
        parts += ["--output", ",".join(t.name for t in outputs)]
    return " ".join(shlex.quote(p) for p in parts)


def _as_graph_def(graph, freeze_kwargs):
    """(GraphDef, path to name in the bench command) for any supported input."""
    if isinstance(graph, FrozenGraph):
        return graph.graph_def, None
    if isinstance(graph, (str, Path)):
        path = Path(graph)
        if path.is_dir() or (path.is_file() and _looks_like_model(path)):
            return freeze(path, **freeze_kwargs).graph_def, None
        return graphs.load_graph(path), path
    if hasattr(graph, "SerializeToString") or isinstance(graph, (bytes, bytearray, memoryview)):
        return graphs.load_graph(graph), None
    return freeze(graph, **freeze_kwargs).graph_def, None


def _looks_like_model(path):
    if path.suffix in (".pb", ".pbtxt", ".txt", ".prototxt"):
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        return False
    return head.startswith(_MODEL_MAGIC) or head.lstrip()[:1] == b"{"


def summarize(graph, graph_path=None, **freeze_kwargs):
    """Summarizes a frozen graph: inputs, outputs, op counts, parameters and MACs.

    graph: a GraphDef, serialized bytes, a `.pb`/`.pbtxt` path, a FrozenGraph, or
        a model freeze() accepts (a Keras model or file, a SavedModel directory),
        which is frozen first with `freeze_kwargs` (unsafe=, input_shapes=, ...).
    graph_path: the path written into `bench_command` (default: the path given,
        else "model.pb").

    Inputs are the Placeholders; outputs, as TF's summarize_graph finds them, the
    nodes nothing consumes that are not Const/NoOp/Placeholder/Assign.
    const_params / const_bytes: elements and bytes of every Const value;
    control_edges: the number of `^name` inputs.

    Multiply-accumulates come from the static shapes TF's shape inference gives
    after importing the graph (an unknown leading dimension of a Placeholder is
    taken as 1). For output O, filter W and input X:
      Conv2D / Conv3D:        |O| * kh * kw (* kd) * W.in      (W = [kh, kw, in/groups, out])
      DepthwiseConv2dNative:  |O| * kh * kw                    (W = [kh, kw, in, multiplier])
      MatMul:                 |O| * K                          (K: A's inner dimension)
      BatchMatMul(V2/V3):     |O| * K
      Conv2DBackpropInput:    |dY| * kh * kw * W[2]            (dY: the op's input 2)
    where |T| is the number of elements of T. Fused variants (_FusedConv2D,
    _MklNativeFusedConv2D,
    _FusedMatMul) count like their base op; other ops count 0. The total over the
    graph's batch is divided by the batch (the first Placeholder's leading
    dimension) to give `macs` per example. Ops whose shapes stay unknown are not
    counted and are listed in `macs_unknown`.
    """
    graph_def, given_path = _as_graph_def(graph, freeze_kwargs)
    graph_path = graph_path or given_path or "model.pb"

    placeholders = [n for n in graph_def.node if n.op == "Placeholder"]
    inputs = [
        TensorInfo(n.name, _dtype_name(n.attr["dtype"].type), _dims(n.attr["shape"].shape))
        for n in placeholders
    ]
    batch = 1
    if inputs and inputs[0].shape and inputs[0].shape[0] is not None and inputs[0].shape[0] > 0:
        batch = inputs[0].shape[0]

    tf_graph = _shape_graph(graph_def, batch)
    outputs = []
    for name in graphs.default_outputs(graph_def):
        op = tf_graph.get_operation_by_name(name)
        if op.outputs:
            tensor = op.outputs[0]
            shape = None if tensor.shape.rank is None else tuple(tensor.shape.as_list())
            outputs.append(TensorInfo(name, tensor.dtype.name, shape))
        else:
            outputs.append(TensorInfo(name, "none", ()))

    counts = Counter(n.op for n in graph_def.node)
    op_counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    control_edges = sum(1 for n in graph_def.node for i in n.input if i.startswith("^"))
    const_params = const_bytes = variable_params = 0
    for node in graph_def.node:
        if node.op == "Const":
            elements, size = _const_size(node)
            const_params += elements
            const_bytes += size
        elif node.op in _VARIABLE_OPS:
            dims = _dims(node.attr["shape"].shape)
            if dims and all(d is not None for d in dims):
                variable_params += _product(dims)

    totals, unknown = Counter(), []
    for op in tf_graph.get_operations():
        macs = _op_macs(op)
        if macs is None:
            unknown.append(op.name)
        elif macs:
            totals[op.type] += macs
    per_example = {op: total // batch for op, total in totals.items()}
    macs_by_op = dict(sorted(per_example.items(), key=lambda kv: (-kv[1], kv[0])))

    return GraphSummary(
        inputs=inputs,
        outputs=outputs,
        op_counts=op_counts,
        node_count=len(graph_def.node),
        control_edges=control_edges,
        const_params=const_params,
        const_bytes=const_bytes,
        variable_params=variable_params,
        macs=sum(macs_by_op.values()),
        macs_by_op=macs_by_op,
        batch=batch,
        bench_command=_bench_command(graph_path, inputs, outputs),
        macs_unknown=unknown,
    )
