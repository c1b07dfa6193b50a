"""Channel equalization before the int8 rewrite: squeeze-and-excitation products, and the
depthwise halves of separable convs (equalize_depthwise, at the end).

An SE block multiplies its features by a per-channel gate, x * g with g of
shape [N, 1, 1, C], and a 1x1 conv reads the product. After batch norms the
product's channels can differ in range by 1000x (EfficientNetV2B0 with random
batch norms: channel maxima of median 0.27 and top 315), and one per-tensor
8-bit scale then rounds most channels to a few levels. The conv is linear in
each input channel, so channel c of the product may be divided by s_c and the
conv's weights of that input channel multiplied by it: the float graph computes
the same thing, the product's range shrinks to what most channels use, and the
per-output-channel int8 weights take up the difference.

s_c = max(1, m_c / t), m_c the channel's largest magnitude on the calibration
samples and t the 75th percentile of the m_c: only channels above it shrink.
The division goes onto the gate (a Mul of C numbers), not onto the product.
Channels scaled up in the weights then set their output channels' 8-bit weight
scales, so it is not always a gain: leangraph.quantize makes the plain rewrite
as well and keeps the one closer to float on the samples.
It lifts EfficientNetV2B0's logits SQNR by about 10 dB; what it gains per model and
the variants tried and not kept: bench/results/2026-12-02-cpu-unrecorded-int8_bench-coverage.md.
"""

import numpy as np

from leangraph import graphs
from leangraph.quantization.calibrate import _batches, _Session, static_batch


PERCENTILE = 75.0
#: A product whose largest channel is within this factor of t is left alone.
MIN_SPREAD = 4.0


def _readers(graph_def):
    out = {}
    for node in graph_def.node:
        for edge in node.input:
            out.setdefault(graphs.node_name(edge), []).append(node.name)
    return out


def candidates(graph_def):
    """(conv, product Mul) pairs: a float Conv2D with a constant filter that alone reads a
    Mul of two computed tensors. equalize() keeps those where an operand is one number
    per channel ([N, 1, 1, C]): a swish over a feature map has none."""
    by_name = {n.name: n for n in graph_def.node}
    readers = _readers(graph_def)
    loops = graphs.loop_nodes(graph_def)
    out = []
    for conv in graph_def.node:
        if conv.op != "Conv2D" or conv.name in loops or len(conv.input) < 2:
            continue
        product = by_name.get(graphs.node_name(conv.input[0]))
        weights = by_name.get(graphs.node_name(conv.input[1]))
        if conv.attr["data_format"].s not in (b"", b"NHWC"):
            continue
        if (product is None or weights is None or product.op != "Mul" or weights.op != "Const"
                or conv.input[0].startswith("^") or len(readers.get(product.name, ())) != 1
                or product.attr["T"].type != 1 or conv.attr["T"].type != 1):
            continue
        sources = [by_name.get(graphs.node_name(e)) for e in product.input[:2]]
        if any(s is None or s.op == "Const" for s in sources):
            continue
        out.append((conv, product))
    return out


def _peaks(graph_def, found, feeds):
    """[(the product's per-channel largest magnitude, its gate operand's index)] over all
    examples, one batch at a time (the products are never held for all of them); (None,
    None) where no operand is one number per channel."""
    tensors = []
    for _, product in found:
        tensors += [product.name + ":0", graphs.tensor_name(product.input[0]), graphs.tensor_name(product.input[1])]
    fixed = static_batch(graph_def)
    out = [None] * len(found)
    gates = [None] * len(found)
    session = _Session(graph_def)
    try:
        for index, batch in enumerate(_batches(feeds, fixed or 1, pad=fixed is not None)):
            values = session.run(tensors, batch)
            for k in range(len(found)):
                value, a, b = values[3 * k:3 * k + 3]
                if index == 0:
                    per_channel = [i for i, v in enumerate((a, b))
                                   if v.ndim == 4 and value.ndim == 4 and v.shape[1] == 1
                                   and v.shape[2] == 1 and v.shape[3] == value.shape[3]]
                    # Either operand of x * g carries the scale through; with two gates
                    # (the squeezed swish an SE block's second conv reads) the latter.
                    gates[k] = per_channel[-1] if per_channel else None
                if gates[k] is None:
                    continue
                peak = np.abs(value).reshape(-1, value.shape[3]).max(axis=0).astype(np.float64)
                out[k] = peak if out[k] is None else np.maximum(out[k], peak)
    finally:
        session.close()
    return list(zip(out, gates))


def equalize(graph_def, feeds, percentile=PERCENTILE):
    """(a copy of the graph with its SE products equalized, the convs that read them).

    feeds: {input tensor: examples}, as calibration takes them."""
    found = candidates(graph_def)
    if not found:
        return graph_def, []
    measured = _peaks(graph_def, found, feeds)
    out = graphs.graph_pb2().GraphDef()
    out.CopyFrom(graph_def)
    by_name = {n.name: n for n in out.node}
    readers = _readers(out)
    taken = set(by_name)
    done = []
    for (conv, product), (peak, gate_index) in zip(found, measured):
        if peak is None or peak.size < 2:  # no operand to scale for the price of C numbers
            continue
        top = float(np.percentile(peak, percentile))
        if not np.all(np.isfinite(peak)) or top <= 0 or peak.max() < MIN_SPREAD * top:
            continue
        scale = np.maximum(1.0, peak / top)
        filter_node = by_name[graphs.node_name(conv.input[1])]
        weights = _ndarray(filter_node)
        if weights.ndim != 4 or weights.shape[2] != scale.size:
            continue
        scaled = (weights * scale[None, None, :, None]).astype(np.float32)
        sharing = readers.get(filter_node.name, [])
        if len(sharing) > 1:  # another node reads these weights as they are: a copy
            sharing.remove(conv.name)  # (so the last reader scales the original, none is left over)
            filter_node = out.node.add()
            filter_node.CopyFrom(by_name[graphs.node_name(conv.input[1])])
            filter_node.name = _unique(conv.name + "/equalized_weights", taken)
            by_name[conv.name].input[1] = filter_node.name
        _set_value(filter_node, scaled)
        inverse = out.node.add()
        inverse.name = _unique(product.name + "/equalize", taken)
        inverse.op = "Const"
        inverse.attr["dtype"].type = 1
        _set_value(inverse, (1.0 / scale).astype(np.float32))
        gate = out.node.add()
        gate.name = _unique(product.name + "/equalized_gate", taken)
        gate.op = "Mul"
        gate.attr["T"].type = 1
        mul = by_name[product.name]
        gate.input.extend([mul.input[gate_index], inverse.name])
        if mul.device:
            gate.device = inverse.device = mul.device
        mul.input[gate_index] = gate.name
        done.append(conv.name)
    return (out if done else graph_def), done


def _unique(name, taken):
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    taken.add(candidate)
    return candidate


def _ndarray(node):
    from tensorflow.python.framework import tensor_util

    return tensor_util.MakeNdarray(node.attr["value"].tensor)


def _set_value(node, array):
    from tensorflow.python.framework import tensor_util

    node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(array))


def depthwise_candidates(graph_def):
    """[(depthwise conv, [the 1x1 Conv2Ds that read it])]: float NHWC depthwise convs with
    a constant filter of their own, whose output only 1x1 Conv2Ds with constant filters of
    their own read (Keras' SeparableConv2D; nothing between the halves)."""
    by_name = {n.name: n for n in graph_def.node}
    readers = _readers(graph_def)
    loops = graphs.loop_nodes(graph_def)

    def own_filter(node, dims):
        weights = by_name.get(graphs.node_name(node.input[1])) if len(node.input) > 1 else None
        if (weights is None or weights.op != "Const" or node.input[1].startswith("^")
                or len(readers.get(weights.name, ())) != 1 or weights.attr["dtype"].type != 1):
            return None
        shape = [d.size for d in weights.attr["value"].tensor.tensor_shape.dim]
        return weights if len(shape) == 4 and dims(shape) else None

    def plain(node):
        return (node.attr["T"].type == 1 and node.attr["data_format"].s in (b"", b"NHWC")
                and node.name not in loops)

    out = []
    for dw in graph_def.node:
        if dw.op != "DepthwiseConv2dNative" or not plain(dw) or not own_filter(dw, lambda s: True):
            continue
        after = [by_name[r] for r in readers.get(dw.name, ())]
        if after and all(r.op == "Conv2D" and plain(r) and r.input[0] in (dw.name, dw.name + ":0")
                         and own_filter(r, lambda s: s[:2] == [1, 1]) for r in after):
            out.append((dw, after))
    return out


def equalize_depthwise(graph_def):
    """(a copy of the graph whose separable convs' depthwise channels all share one weight
    range, the depthwise convs rescaled).

    Channel c of a depthwise filter is multiplied by f_c = R / m_c (m_c its largest
    magnitude, R the largest of all) and input channel c of the 1x1 convs after it divided
    by f_c: the float graph computes the same thing, the depthwise conv's 8-bit weights
    need one range instead of one per channel (the rewrite stores a vector of equal values
    as one number), and the 1x1 convs' per-output-channel scales take the difference:
    a smaller file at the same SQNR (bench/results/2026-12-04-zen3-int8_bench-coverage.md)."""
    found = depthwise_candidates(graph_def)
    if not found:
        return graph_def, []
    out = graphs.graph_pb2().GraphDef()
    out.CopyFrom(graph_def)
    by_name = {n.name: n for n in out.node}
    done = []
    for dw, after in found:
        dw_filter = by_name[graphs.node_name(dw.input[1])]
        weights = _ndarray(dw_filter).astype(np.float32)
        k0, k1, channels, multiplier = weights.shape
        flat = weights.reshape(k0 * k1, channels * multiplier)
        peak = np.abs(flat).max(axis=0)
        top = peak.max() if peak.size else 0.0
        pointwise = [by_name[graphs.node_name(r.input[1])] for r in after]
        arrays = [_ndarray(p).astype(np.float32) for p in pointwise]
        if (peak.size < 2 or not np.all(np.isfinite(flat)) or np.any(peak <= 0)
                or np.all(peak == top) or any(a.shape[2] != peak.size for a in arrays)):
            continue
        factor = top.astype(np.float64) / peak.astype(np.float64)
        scaled = (flat * factor).astype(np.float32)
        # Each channel's largest value set to exactly +-R: the ranges then match to the bit.
        at = np.abs(flat).argmax(axis=0)
        columns = np.arange(flat.shape[1])
        scaled[at, columns] = np.copysign(top, flat[at, columns]).astype(np.float32)
        rescaled = [(a / factor[None, None, :, None]).astype(np.float32) for a in arrays]
        if not all(np.all(np.isfinite(a)) for a in rescaled):
            continue
        _set_value(dw_filter, scaled.reshape(weights.shape))
        for node, array in zip(pointwise, rescaled):
            _set_value(node, array)
        done.append(dw.name)
    return (out if done else graph_def), done
