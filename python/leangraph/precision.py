"""Precision changes and the accuracy they cost.

evaluate() measures a graph against labels and/or a reference graph;
to_bfloat16(), bf16_graph(), quantize_weights(), quantize_nodes() and int8_graph() make
the graphs that the precisions of pipeline/precisions.py (the one registry) build.
"""

from dataclasses import asdict, dataclass

import numpy as np

from leangraph import graphs, metrics
from leangraph.errors import GraphError, UsageError
from leangraph.pipeline.data import PerExample
from leangraph.quantization import quantize
from leangraph.quantization.int8 import DEFAULT_MIN_SQNR_DB
from leangraph.quantization.prepare import output_heads
from leangraph.runner import Runner, join_examples
from leangraph.transform import transform


@dataclass(frozen=True)
class EvalResult:
    """What evaluate() measured over `n` examples.

    accuracy: fraction (0..1) of top-1 predictions equal to the labels (None
        without labels). top1_agreement: fraction of examples whose top-1 class
        matches the reference graph's (None without a reference).
    max_abs_diff: largest |output - reference output| over every element.
    max_rel_diff: max_abs_diff divided by the largest |reference output|, so it
        is not dominated by elements that are nearly zero.
    """

    accuracy: float | None
    top1_agreement: float | None
    max_abs_diff: float | None
    max_rel_diff: float | None
    n: int

    def to_dict(self):
        return asdict(self)


def grappler_bf16_config(threads=None):
    """A session ConfigProto with Grappler's oneDNN bf16 auto mixed precision on."""
    import tensorflow as tf
    from tensorflow.core.protobuf import rewriter_config_pb2

    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = (
        rewriter_config_pb2.RewriterConfig.ON
    )
    if threads:
        config.intra_op_parallelism_threads = int(threads)
        config.inter_op_parallelism_threads = 1
    return config


def to_bfloat16(graph, exclude_ops=(), exclude_nodes=(), inputs=None, outputs=None,
                zero_bias="tiny", allow_io_ops=False):
    """The graph with its float compute rewritten to bf16 (the `to_bfloat16` transform).

    zero_bias: "tiny" (default) stores an all-zero bias after a convolution or
    matmul as 2^-126, so Grappler keeps the BiasAdd and fuses it and the
    activation into the contraction's oneDNN kernel (it deletes adds of exact
    zeros); "exact" keeps the zeros.
    """
    params = [f"exclude_op={op}" for op in exclude_ops]
    params += [f"exclude_node={name}" for name in exclude_nodes]
    if zero_bias != "tiny":
        params.append(f"zero_bias={zero_bias}")
    step = f"to_bfloat16({', '.join(params)})" if params else "to_bfloat16"
    return transform(graph, step, inputs=inputs, outputs=outputs, allow_io_ops=allow_io_ops)


def quantize_weights(graph, minimum_size=1024, inputs=None, outputs=None, allow_io_ops=False):
    """TF's quantize_weights: 8-bit weights in the file, dequantized at load (float compute).

    TF gives a tensor whose elements are all equal to zero (an unused bias of
    2048 channels, as in ConvNeXt) the range [0, FLT_MIN], which Dequantize
    turns into NaN; such tensors keep their float constant.
    """
    graph = graphs.load_graph(graph)
    # TF's quantize_weights leaves Dequantize without its defaulted `narrow_range`,
    # which the timer's graph check refuses; the last step writes the defaults out.
    quantized = transform(
        graph, f"quantize_weights(minimum_size={int(minimum_size)}) add_default_attributes",
        inputs=inputs, outputs=outputs, allow_io_ops=allow_io_ops,
    )
    return restore_float_constants(graph, quantized)


#: {op: the inputs that are its weights}: what 8-bit weights are for. A constant only these
#: read (through _PASS_THROUGH ops) is a weight; TF's quantize_weights takes any float
#: constant of 1024 values or more.
_WEIGHT_INPUTS = {
    "Conv2D": (1,), "Conv3D": (1,), "DepthwiseConv2dNative": (1,), "_FusedConv2D": (1,),
    "Conv2DBackpropInput": (1,), "Conv3DBackpropInputV2": (1,), "MatMul": (0, 1),
    "_FusedMatMul": (0, 1), "BatchMatMul": (0, 1), "BatchMatMulV2": (0, 1),
    "BatchMatMulV3": (0, 1), "Einsum": (0, 1), "Gather": (0,), "GatherV2": (0,),
}
#: Ops that hand a weight on as it is (their input 0; any input of a Merge).
_PASS_THROUGH = ("Identity", "Snapshot", "Switch", "Merge", "Enter", "Reshape", "ExpandDims",
                 "Squeeze", "Transpose")


def weight_constants(graph_def):
    """The Const nodes that are weights: read, through Identity, Switch, Merge, Enter or a
    reshape, only as the weights of a convolution or matmul or the table of a lookup."""
    readers = {}
    for node in graph_def.node:
        for index, edge in enumerate(node.input):
            if not edge.startswith("^"):
                readers.setdefault(graphs.node_name(edge), []).append((node, index))

    def weight(name, seen):
        found = readers.get(name, [])
        for node, index in found:
            if node.op in _PASS_THROUGH and (index == 0 or node.op == "Merge"):
                if node.name in seen or not weight(node.name, seen | {node.name}):
                    return False
            elif index not in _WEIGHT_INPUTS.get(node.op, ()):
                return False
        return bool(found)

    return {n.name for n in graph_def.node if n.op == "Const" and weight(n.name, {n.name})}


def restore_float_constants(original, quantized):
    """The 8-bit constants TF's quantize_weights made that should stay float, put back:

    - those whose [min, max] is empty or not finite (restore_degenerate_ranges);
    - those that are not weights (weight_constants): a batch norm's moving variance spans
      1e-28 to 374 in musicnn's tagger, and 8-bit steps of it, through the Rsqrt after it,
      took the outputs to 1 dB SQNR (bench/results/2026-12-06-zen4-real_models.md); they are
      vectors, a small part of the file.
    """
    weights = weight_constants(original)
    before = {n.name for n in original.node if n.op == "Const"}
    return restore_degenerate_ranges(original, quantized, extra={
        n.name for n in quantized.node
        if n.op == "Dequantize" and n.name in before and n.name not in weights})


def restore_degenerate_ranges(original, quantized, extra=()):
    """Puts back the float Const of every Dequantize whose [min, max] is empty or not finite,
    and of those named in `extra`."""
    import tensorflow as tf

    before = {n.name: n for n in original.node if n.op == "Const"}
    nodes = {n.name: n for n in quantized.node}

    def scalar(name):
        node = nodes.get(graphs.node_name(name))
        if node is None or node.op != "Const":
            return None
        value = tf.make_ndarray(node.attr["value"].tensor)
        return float(value.reshape(-1)[0]) if value.size == 1 else None

    restore = {}
    for node in quantized.node:
        if node.op != "Dequantize" or node.name not in before or len(node.input) < 3:
            continue
        low, high = scalar(node.input[1]), scalar(node.input[2])
        if node.name in extra or (low is not None and high is not None and (
                not (np.isfinite(low) and np.isfinite(high)) or high - low < 1e-30)):
            restore[node.name] = [graphs.node_name(i) for i in node.input[:3]]
    if not restore:
        return quantized
    helpers = {name for names in restore.values() for name in names}
    result = tf.compat.v1.GraphDef()
    result.CopyFrom(quantized)
    del result.node[:]
    for node in quantized.node:
        if node.name in restore:
            result.node.add().CopyFrom(before[node.name])
        elif node.name not in helpers:
            result.node.add().CopyFrom(node)
    return result


def quantize_nodes(graph, inputs=None, outputs=None):
    """TF's eight-bit recipe (quantize_weights + quantize_nodes): 8-bit compute where TF has ops.

    The input shape is left open (strip_unused_nodes is not run), so the graph
    keeps a free batch dimension.
    """
    steps = [
        "add_default_attributes",
        "fold_constants(ignore_errors=true)",
        "fold_batch_norms",
        "fold_old_batch_norms",
        "quantize_weights",
        "quantize_nodes",
        "sort_by_execution_order",
    ]
    return transform(graph, steps, inputs=inputs, outputs=outputs)


def bf16_graph(graph, ends, allow_io_ops=False):
    """The one bf16 rewrite (tune's and optimize's): to_bfloat16, with the layers that make
    an output's logits (before its softmax or sigmoid) left fp32, as int8 leaves them: bf16
    logits flip classes nearly tied (the model zoo's transformer, 1 of 40 held-out examples).

    ends: (input names, output names). Returns (graph_def, the fp32 layers kept).
    """
    graph = graphs.load_graph(graph)
    heads = bf16_heads(graph, ends[1])
    return to_bfloat16(graph, exclude_nodes=heads, inputs=ends[0], outputs=ends[1],
                       allow_io_ops=allow_io_ops), heads


def bf16_heads(graph_def, outputs):
    """The layers bf16_graph keeps fp32: those making an output's logits."""
    return sorted(name for name, (_, activation) in output_heads(graph_def, outputs).items()
                  if activation)


def int8_graph(graph, ends, calibration, min_sqnr_db=DEFAULT_MIN_SQNR_DB, weight_bits=None):
    """The one calibrated int8 rewrite (tune's and optimize's): leangraph.quantize with the
    output heads kept float. calibration: one array per input of ends[0], examples on axis
    0, or pipeline.data.PerExample (one example a file). Returns the QuantizeResult."""
    if not calibration or len(calibration[0]) == 0:
        raise UsageError("int8 needs calibration examples")
    inputs, outputs = ends
    return quantize(graph, calibration_samples(inputs, calibration), inputs=inputs,
                    outputs=outputs, min_sqnr_db=min_sqnr_db, weight_bits=weight_bits,
                    float_heads=True)


def calibration_samples(inputs, samples):
    """What leangraph.quantize takes: one input's stacked array, {input: stacked array}, or,
    where any input's examples are fed one file each (pipeline.data.PerExample), a list
    of {input: array}, one example each as it is."""
    if any(isinstance(s, PerExample) for s in samples):
        return [{name: s[i] if isinstance(s, PerExample) else s[i:i + 1]
                 for name, s in zip(inputs, samples)} for i in range(len(samples[0]))]
    feeds = dict(zip(inputs, samples))
    return feeds if len(feeds) > 1 else samples[0]


def _placeholder_batch(graph_def, name):
    for node in graph_def.node:
        if node.name == name and "shape" in node.attr:
            shape = node.attr["shape"].shape
            if not shape.unknown_rank and shape.dim and shape.dim[0].size > 0:
                return int(shape.dim[0].size)
    return None


def _fixed_batch(graph_def, names):
    """The batch size the inputs' Placeholders fix (the first that fixes one), or None."""
    wanted = {graphs.node_name(n) for n in names}
    for node in graph_def.node:
        if node.name in wanted and "shape" in node.attr:
            shape = node.attr["shape"].shape
            if not shape.unknown_rank and shape.dim and shape.dim[0].size > 0:
                return int(shape.dim[0].size)
    return None


def predict(graph, arrays, input_names, output_names, batch_size=32, session_config=None):
    """A graph's outputs on examples, in batches of one checked session: one array per
    output, examples stacked on axis 0.

    arrays: one per input, examples on axis 0, or pipeline.data.PerExample
    (fed one example at a time, as is). A graph frozen for a fixed batch is fed
    that batch, the last one padded.
    """
    graph_def = graphs.load_graph(graph)
    if batch_size < 1:
        raise UsageError(f"batch_size must be positive, got {batch_size}")
    one_by_one = any(isinstance(a, PerExample) for a in arrays)
    fixed = None if one_by_one else _fixed_batch(graph_def, input_names)
    step = 1 if one_by_one else (fixed or batch_size)
    feeds = [graphs.tensor_name(n) for n in input_names]
    fetches = [graphs.tensor_name(n) for n in output_names]
    parts = [[] for _ in output_names]
    n = len(arrays[0])
    with Runner(graph_def, config=session_config) as runner:
        for start in range(0, n, step):
            batch = [a[start:start + step] for a in arrays]
            real = min(step, n - start)
            if fixed and real < fixed:
                batch = [np.concatenate([b, np.repeat(b[-1:], fixed - real, axis=0)])
                         for b in batch]
            values = runner.run(fetches, dict(zip(feeds, batch)))
            for slot, value in zip(parts, values):
                value = np.asarray(value)
                slot.append(value if one_by_one else value[:real])
    if not one_by_one:
        return [np.concatenate(p) for p in parts]
    return [join_examples(p) for p in parts]


def _ends(graph_def, input_name, output_name):
    """The one input and one output evaluate() measures: the given ones, or the graph's
    only Placeholder and its first output."""
    inputs = graphs.default_inputs(graph_def)
    outputs = graphs.default_outputs(graph_def)
    input_name = input_name or (inputs[0] if len(inputs) == 1 else None)
    if input_name is None:
        raise GraphError(f"the graph has {len(inputs)} Placeholders ({', '.join(inputs)}); "
                         "name the input")
    output_name = output_name or (outputs[0] if outputs else None)
    if output_name is None:
        raise GraphError("the graph has no output node; name the output")
    return input_name, output_name


def evaluate(graph, x, y=None, reference=None, batch_size=32, *, input_name=None,
             output_name=None, session_config=None, reference_session_config=None):
    """Runs `graph` on `x` and measures it.

    graph / reference: anything load_graph accepts (same input and output
    names). y: integer class labels (or one-hot rows) for accuracy. Without
    `y` and `reference` only n is meaningful. session_config lets a Grappler
    rewrite (e.g. grappler_bf16_config()) take part in what is measured.
    A graph frozen with a fixed batch size is fed that batch size.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 1 or len(x) == 0:
        raise UsageError("evaluate needs at least one example in x")
    if batch_size < 1:
        raise UsageError(f"batch_size must be positive, got {batch_size}")
    labels = None
    if y is not None:
        labels = np.asarray(y)
        if labels.ndim == 2:
            labels = metrics.class_labels(labels)
        labels = labels.reshape(-1)
        if len(labels) != len(x):
            raise UsageError(f"x has {len(x)} examples but y has {len(labels)} labels")
    graph_def = graphs.load_graph(graph)
    input_name, output_name = _ends(graph_def, input_name, output_name)
    out = predict(graph_def, [x], [input_name], [output_name], batch_size, session_config)[0]
    flat = out.reshape(len(out), -1)
    accuracy = None if labels is None else metrics.accuracy(flat, labels, "classes")
    agreement = max_abs = max_rel = None
    if reference is not None:
        ref = predict(reference, [x], [input_name], [output_name], batch_size,
                      reference_session_config)[0]
        if ref.shape != out.shape:
            raise UsageError(
                f"the graph's output has shape {out.shape}, the reference's {ref.shape}"
            )
        agreement = metrics.agreement(flat, ref.reshape(len(ref), -1), "classes")
        max_abs, max_rel = metrics.differences(out, ref)
    return EvalResult(accuracy, agreement, max_abs, max_rel, int(len(x)))
