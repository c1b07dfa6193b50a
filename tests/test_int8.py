"""quantize_int8 and leangraph.quantize: the exact rewrite per pattern, numerics against
float, calibration, per-layer fallback, the kernels oneDNN really runs, and bad input."""

import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

import leangraph
from leangraph import quantization as Q
from leangraph.quantization.calibrate import input_feeds

RNG = np.random.default_rng(7)


def _c(value):
    return tf.constant(np.asarray(value, dtype=np.float32))


def _graph(build, shape=(1, 12, 12, 8)):
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape, name="input")
        build(x)
    return graph.as_graph_def()


def _conv_bias_relu(x, relu="relu", scale=0.2):
    y = tf.nn.conv2d(x, _c(RNG.normal(size=(3, 3, 8, 16)) * scale), 1, "SAME", name="conv")
    y = tf.nn.bias_add(y, _c(RNG.normal(size=16) * 0.1), name="bias")
    if relu == "relu":
        y = tf.nn.relu(y, name="act")
    elif relu == "relu6":
        y = tf.nn.relu6(y, name="act")
    tf.identity(y, name="output")


def _samples(n=8, shape=(12, 12, 8), positive=False):
    x = np.random.default_rng(3).standard_normal((n,) + shape).astype(np.float32)
    return np.abs(x) if positive else x


def _quantize(graph_def, x, **kwargs):
    # oneDNN's int8 kernels run without VNNI too (slower): correctness is
    # tested on any x86-64 CPU.
    return Q.quantize(graph_def, x, min_sqnr_db=None, require_int8_cpu=False, **kwargs)


# The weights a graph needs to compute right on this CPU (see quantize's weight_bits).
_WEIGHT_BITS = 8 if Q.cpu_has_vnni() else 7
# Without VNNI oneDNN keeps less of the weights (it halves signed-input ones
# itself; unsigned-input Conv2D weights are stored in 7 bits): the bounds on
# the error of the larger graphs below are looser there (measured on an AVX2
# EPYC: the Relu6 conv 9.5 % against 5 %, the LSTM's outputs 18 dB against 25).
_LOOSE = not Q.cpu_has_vnni()


def _rel_err(graph_def, qgraph, x, output="output"):
    ref = np.concatenate([leangraph.run(graph_def, {"input": e[None]}, [output])[0] for e in x])
    got = np.concatenate([leangraph.run(qgraph, {"input": e[None]}, [output])[0] for e in x])
    return float(np.abs(ref - got).max() / np.abs(ref).max())


def _ops(graph_def):
    return Counter(n.op for n in graph_def.node if n.op != "Const")


def test_conv_bias_relu_becomes_one_fused_kernel():
    g = _graph(_conv_bias_relu)
    res = _quantize(g, _samples(1))
    q = res.graph_def
    assert _ops(q) == Counter({"Placeholder": 1, "QuantizeV2": 1, "_FusedQuantizedConv2D": 1,
                               "Dequantize": 1, "Identity": 1})
    conv = next(n for n in q.node if n.op == "_FusedQuantizedConv2D")
    assert conv.name == "conv_int8"
    assert [s.decode() for s in conv.attr["fused_ops"].list.s] == ["BiasAdd", "Relu", "Requantize"]
    assert conv.attr["out_type"].type == tf.quint8.as_datatype_enum
    assert conv.attr["Tinput"].type == tf.qint8.as_datatype_enum  # the input is signed
    assert conv.attr["padding"].s == b"SAME"
    # The Dequantize takes the Relu's name, so its readers are untouched.
    dq = next(n for n in q.node if n.op == "Dequantize")
    assert dq.name == "act" and dq.input[0] == "conv_int8"
    # The rewrite's constants have short names of their own; the conv reads them.
    nodes = {n.name: n for n in q.node}
    weights = nodes[conv.input[1]]
    assert weights.op == "Const" and weights.attr["dtype"].type == tf.qint8.as_datatype_enum
    assert all(len(nodes[i].name) <= len("q99/smax") for i in conv.input[1:] if i in nodes)
    assert _rel_err(g, q, _samples(1)) < 0.03


def test_conv_without_relu_is_signed_and_relu6_caps_the_range():
    g = _graph(lambda x: _conv_bias_relu(x, relu=None))
    res = _quantize(g, _samples(1))
    q = res.graph_def
    conv = next(n for n in q.node if n.op == "_FusedQuantizedConv2D")
    assert [s.decode() for s in conv.attr["fused_ops"].list.s] == ["BiasAdd", "Requantize"]
    # Only a float reader (the graph output): no shift, the signed [-m, m] keeps headroom.
    assert conv.attr["out_type"].type == tf.qint8.as_datatype_enum
    dq = next(n for n in q.node if n.name == "bias")
    assert dq.op == "Dequantize" and dq.attr["mode"].s == b"SCALED"
    assert _rel_err(g, q, _samples(1)) < 0.03

    g6 = _graph(lambda x: _conv_bias_relu(x, relu="relu6", scale=1.0))
    q6 = _quantize(g6, _samples(1))
    nodes = {n.name: n for n in q6.graph_def.node}
    top = nodes[nodes["conv_int8"].input[-1]]  # the requantized output's maximum
    assert tf.make_ndarray(top.attr["value"].tensor) == pytest.approx(6.0)
    out = leangraph.run(q6.graph_def, {"input": _samples(1)}, ["output"])[0]
    assert out.max() <= 6.0 + 1e-5
    assert _rel_err(g6, q6.graph_def, _samples(1)) < (0.12 if _LOOSE else 0.05)


def _separable_chain(x):
    # Keras' SeparableConv2D: depthwise (no bias) -> pointwise + bias -> relu,
    # then a second pointwise conv reading the first's 8-bit output.
    y = tf.nn.relu(x, name="pre")
    y = tf.nn.depthwise_conv2d(y, _c(RNG.normal(size=(3, 3, 8, 1)) * 0.3), [1, 1, 1, 1], "SAME", name="dw")
    y = tf.nn.conv2d(y, _c(RNG.normal(size=(1, 1, 8, 16)) * 0.3), 1, "SAME", name="pw")
    y = tf.nn.bias_add(y, _c(RNG.normal(size=16) * 0.1), name="pw_bias")
    y = tf.nn.relu(y, name="pw_relu")
    y = tf.nn.max_pool2d(y, 2, 2, "SAME", name="pool")
    y = tf.nn.conv2d(y, _c(RNG.normal(size=(1, 1, 16, 4)) * 0.3), 1, "SAME", name="head")
    tf.identity(y, name="output")


def _pointwise_on_the_input(x):
    # A 1x1 conv reading a float tensor of either sign: u8 (shifted) input,
    # weights of unequal channel scales.
    w = RNG.normal(size=(1, 1, 8, 16)) * RNG.uniform(0.2, 2.0, 16)
    y = tf.nn.conv2d(x, _c(w), 1, "SAME", name="conv")
    tf.identity(tf.nn.bias_add(y, _c(RNG.normal(size=16) * 0.1), name="bias"), name="output")


def _stored(q, node):
    """The stored 8-bit weights of a quantized node and the ranges the kernel reads with them."""
    by_name = {n.name: n for n in q.node}
    w = tf.make_ndarray(by_name[node.input[1]].attr["value"].tensor).astype(np.int32)
    r = tf.make_ndarray(by_name[node.input[-4 if "Conv" in node.op else -1]].attr["value"].tensor)
    return w, r


def _sqnr_on(graph_def, qgraph, x):
    ref = np.concatenate([leangraph.run(graph_def, {"input": e[None]}, ["output"])[0] for e in x])
    got = np.concatenate([leangraph.run(qgraph, {"input": e[None]}, ["output"])[0] for e in x])
    return Q.sqnr_db(ref, got)


def test_conv_weights_take_7_bits_without_vnni_so_the_kernels_do_not_saturate(monkeypatch):
    g = _graph(_pointwise_on_the_input)
    x = np.random.default_rng(5).uniform(-1, 1, (8, 12, 12, 8)).astype(np.float32)
    # The default matches this CPU, so what the graph computes here is right
    # (8-bit weights on an AVX2-only CPU gave 25 dB on this graph's like).
    default = _quantize(g, x)
    assert default.weight_bits == (8 if Q.cpu_has_vnni() else 7)
    assert _sqnr_on(g, default.graph_def, x) > 33.0

    seven = _quantize(g, x, weight_bits=7)
    conv = next(n for n in seven.graph_def.node if n.op == "_FusedQuantizedConv2D")
    w, r = _stored(seven.graph_def, conv)
    assert (np.abs(w).max(axis=(0, 1, 2)) == 63).all()
    by_name = {n.name: n for n in g.node}
    float_w = tf.make_ndarray(by_name[by_name["conv"].input[1]].attr["value"].tensor)
    # Each channel's range, as the kernel reads q * r / 127: max|w| * 127 / 63.
    np.testing.assert_allclose(r, np.abs(float_w).max(axis=(0, 1, 2)) * 127 / 63, rtol=1e-6)
    assert _sqnr_on(g, seven.graph_def, x) > 33.0
    assert seven.to_dict()["weight_bits"] == 7 and any("7 bits" in n for n in seven.notes)

    monkeypatch.setenv("LEANGRAPH_FAKE_NO_VNNI", "1")
    assert _quantize(g, x).weight_bits == 7


def test_7_bit_weights_are_for_conv2d_reading_unsigned_inputs_only():
    # Signed inputs (oneDNN shifts them itself, with halved weights) and the
    # depthwise and matmul kernels do not saturate: they keep 8 bits.
    g = _graph(_separable_chain)
    res = _quantize(g, _samples(), weight_bits=7)
    q = res.graph_def
    units = {n.name: n for n in q.node if n.op in Q.int8.QUANTIZED_OPS}
    assert set(units) == {"dw_int8", "pw_int8", "head_int8"}
    for name, node in units.items():
        peak = int(np.abs(_stored(q, node)[0]).max())
        unsigned = node.attr["Tinput"].type == tf.quint8.as_datatype_enum
        assert peak == (63 if node.op == "_FusedQuantizedConv2D" and unsigned else 127), name
    assert units["head_int8"].attr["Tinput"].type == tf.quint8.as_datatype_enum  # a pooled Relu
    # A signed-input conv keeps 8 bits under weight_bits=7.
    signed = _quantize(_graph(_conv_bias_relu), _samples(), weight_bits=7).graph_def
    conv = next(n for n in signed.node if n.op == "_FusedQuantizedConv2D")
    assert conv.attr["Tinput"].type == tf.qint8.as_datatype_enum
    assert int(np.abs(_stored(signed, conv)[0]).max()) == 127


@pytest.mark.parametrize("bits", [6, 9, True, "8"])
def test_weight_bits_other_than_7_or_8_are_refused(bits):
    g = _graph(_pointwise_on_the_input)
    with pytest.raises(leangraph.QuantizeError, match="weight_bits"):
        _quantize(g, _samples(), weight_bits=bits)


def test_the_transform_refuses_other_weight_bits():
    g = _graph(_pointwise_on_the_input)
    calibration = Q.calibrate(g, _samples())
    with pytest.raises(leangraph.LeangraphError, match="weight_bits must be 8 or 7"):
        leangraph.transform(g, f'quantize_int8(ranges="{calibration.to_param()}", weight_bits=6)')


def test_chained_units_pass_8bit_tensors_and_relu_folds_into_quantize():
    g = _graph(_separable_chain)
    q = _quantize(g, _samples(4)).graph_def
    ops = _ops(q)
    # One QuantizeV2 at the entry (the Relu before it is its clamp), one
    # Dequantize at the exit; the depthwise, pointwise, pool and head stay 8-bit.
    assert ops == Counter({"Placeholder": 1, "QuantizeV2": 1, "_FusedQuantizedDepthwiseConv2D": 1,
                           "_FusedQuantizedConv2D": 2, "QuantizedMaxPool": 1, "Dequantize": 1,
                           "Identity": 1})
    quant = next(n for n in q.node if n.op == "QuantizeV2")
    assert quant.input[0] == "input" and quant.attr["T"].type == tf.quint8.as_datatype_enum
    dw = next(n for n in q.node if n.op == "_FusedQuantizedDepthwiseConv2D")
    assert [s.decode() for s in dw.attr["fused_ops"].list.s] == ["BiasAdd", "Requantize"]
    pw = next(n for n in q.node if n.name == "pw_int8")
    # It reads the depthwise output's range from the constants that conv requantizes to.
    assert pw.input[0] == "dw_int8" and pw.input[3:5] == dw.input[-2:]
    # The depthwise output only the 1x1 conv reads is handed over unsigned (shifted
    # by its minimum through the two biases): oneDNN runs unsigned inputs faster.
    assert dw.attr["out_type"].type == tf.quint8.as_datatype_enum
    assert pw.attr["Tinput"].type == tf.quint8.as_datatype_enum
    pool = next(n for n in q.node if n.op == "QuantizedMaxPool")
    assert pool.input[0] == "pw_int8"
    head = next(n for n in q.node if n.name == "head_int8")
    assert head.input[0] == pool.name
    assert _rel_err(g, q, _samples(4)) < 0.05


def _residual_blocks(x):
    # An identity block (the summand is the block input after a Relu) and a
    # projection block (the summand is a conv without Relu: signed).
    a = tf.nn.relu(x, name="a")
    y = tf.nn.conv2d(a, _c(RNG.normal(size=(1, 1, 8, 8)) * 0.3), 1, "SAME", name="c1")
    y = tf.nn.relu(tf.nn.bias_add(y, _c(RNG.normal(size=8) * 0.1)), name="r1")
    y = tf.nn.conv2d(y, _c(RNG.normal(size=(3, 3, 8, 8)) * 0.2), 1, "SAME", name="c2")
    y = tf.nn.bias_add(y, _c(RNG.normal(size=8) * 0.1), name="b2")
    out1 = tf.nn.relu(tf.add(y, a, name="add1"), name="out1")
    short = tf.nn.conv2d(out1, _c(RNG.normal(size=(1, 1, 8, 16)) * 0.3), 1, "SAME", name="proj")
    short = tf.nn.bias_add(short, _c(RNG.normal(size=16) * 0.1), name="proj_b")
    y = tf.nn.conv2d(out1, _c(RNG.normal(size=(3, 3, 8, 16)) * 0.2), 1, "SAME", name="c3")
    y = tf.nn.bias_add(y, _c(RNG.normal(size=16) * 0.1), name="b3")
    out2 = tf.nn.relu(tf.add(y, short, name="add2"), name="out2")
    tf.identity(out2, name="output")


def test_residual_add_and_relu_fold_into_the_conv_as_a_sum():
    g = _graph(_residual_blocks)
    x = _samples(4)
    q = _quantize(g, x).graph_def
    c2 = next(n for n in q.node if n.name == "c2_int8")
    assert [s.decode() for s in c2.attr["fused_ops"].list.s] == ["BiasAdd", "Sum", "Relu", "Requantize"]
    assert c2.attr["Tsummand"].type == tf.quint8.as_datatype_enum
    # input, filter, bias, summand, then the ranges of input, filter, summand, output
    assert c2.input[3] == "a_quantized" and c2.input[8:10] == ["a_quantized:1", "a_quantized:2"]
    # The Relu before it is the clamp of an unsigned QuantizeV2 of its input.
    assert next(n for n in q.node if n.name == "a_quantized").input[0] == "input"
    assert c2.input[0] == "c1_int8"
    # The block output feeds the next block's convs as an 8-bit tensor.
    assert next(n for n in q.node if n.name == "c3_int8").input[0] == "c2_int8"
    # The projection block's summand is a conv without Relu (signed, which the
    # kernel reads wrongly): it is handed on shifted by its minimum, unsigned,
    # and the fused conv takes the shift back through its bias.
    proj, c3 = (next(n for n in q.node if n.name == name) for name in ("proj_int8", "c3_int8"))
    assert proj.attr["out_type"].type == tf.quint8.as_datatype_enum
    assert [s.decode() for s in proj.attr["fused_ops"].list.s] == ["BiasAdd", "Requantize"]
    assert c3.input[3] == "proj_int8"
    assert [s.decode() for s in c3.attr["fused_ops"].list.s] == ["BiasAdd", "Sum", "Relu", "Requantize"]
    assert {"add1", "out1", "a", "add2"}.isdisjoint(n.name for n in q.node)
    assert _ops(q)["AddV2"] == 0 and _ops(q)["Dequantize"] == 1
    assert _rel_err(g, q, x) < 0.05


@pytest.mark.parametrize("depthwise", [False, True])
def test_zero_pad_becomes_explicit_padding(depthwise):
    def build(x):
        y = tf.pad(x, [[0, 0], [1, 2], [2, 1], [0, 0]], name="pad")
        if depthwise:
            y = tf.nn.depthwise_conv2d(y, _c(RNG.normal(size=(3, 3, 8, 2)) * 0.3), [1, 2, 2, 1],
                                       "VALID", name="conv")
        else:
            y = tf.nn.conv2d(y, _c(RNG.normal(size=(3, 3, 8, 8)) * 0.2), 2, "VALID", name="conv")
        tf.identity(y, name="output")

    g = _graph(build)
    q = _quantize(g, _samples(2)).graph_def
    assert "Pad" not in _ops(q)
    conv = next(n for n in q.node if n.name == "conv_int8")
    assert conv.attr["padding"].s == b"EXPLICIT"
    assert list(conv.attr["explicit_paddings"].list.i) == [0, 0, 1, 2, 2, 1, 0, 0]
    assert _rel_err(g, q, _samples(2)) < 0.03


def test_a_zero_pad_before_a_pool_runs_on_the_8bit_tensor():
    # ResNet's stem: conv + Relu, ZeroPadding2D, a VALID 3x3/2 MaxPool, then convs.
    rng = np.random.default_rng(35)  # its own, as in _xception_exit

    def build(x):
        y = tf.nn.conv2d(x, _c(rng.normal(size=(3, 3, 8, 8)) * 0.3), 1, "SAME", name="stem")
        y = tf.nn.relu(tf.nn.bias_add(y, _c(rng.normal(size=8) * 0.1)), name="stem_act")
        y = tf.pad(y, [[0, 0], [1, 1], [1, 1], [0, 0]], name="pool_pad")
        y = tf.nn.max_pool2d(y, 3, 2, "VALID", name="pool")
        y = tf.nn.conv2d(y, _c(rng.normal(size=(1, 1, 8, 8)) * 0.3), 1, "SAME", name="head")
        tf.identity(tf.nn.relu(y), name="output")

    g = _graph(build)
    x = _samples(4)
    q = _quantize(g, x).graph_def
    node = {n.name: n for n in q.node}
    ops = _ops(q)
    # Bitcast to uint8, Pad, Bitcast back, QuantizedMaxPool: no Dequantize, float
    # MaxPool or QuantizeV2 between the convs (TF pads quint8 itself 50x slower).
    assert ops["MaxPool"] == 0 and ops["QuantizedMaxPool"] == 1 and ops["Bitcast"] == 2
    assert ops["QuantizeV2"] == 1 and ops["Dequantize"] == 1  # the input's, the output's
    assert node["pool_pad_int8/padded"].attr["T"].type == tf.uint8.as_datatype_enum
    assert node["pool_int8"].input[0] == "pool_pad_int8"
    assert node["head_int8"].input[0] == "pool_int8"
    assert _rel_err(g, q, x) < 0.05


def test_matmul_dequantizes_in_the_kernel():
    def build(x):
        y = tf.reshape(x, [1, -1])
        y = tf.matmul(y, _c(RNG.normal(size=(12 * 12 * 8, 10)) * 0.05), name="dense")
        y = tf.nn.bias_add(y, _c(RNG.normal(size=10)), name="dense_bias")
        tf.identity(y, name="output")

    g = _graph(build)
    q = _quantize(g, _samples(2)).graph_def
    mm = next(n for n in q.node if n.op == "_QuantizedMatMul")
    assert mm.name == "dense_bias"  # float out: it simply takes the last node's name
    assert [s.decode() for s in mm.attr["fused_ops"].list.s] == ["BiasAdd", "Dequantize"]
    assert "Dequantize" not in _ops(q)
    assert _rel_err(g, q, _samples(2)) < 0.03


def test_exclusions_and_idempotence():
    g = _graph(_separable_chain)
    x = _samples(2)
    res = _quantize(g, x, exclude=["head"])
    assert "head" in {n.name for n in res.graph_def.node if n.op == "Conv2D"}
    head = next(l for l in res.layers if l.name == "head")
    assert head.precision == "fp32" and "excluded" in head.reason

    first = _quantize(g, x, exclude_first=True)
    assert "dw" in {n.name for n in first.graph_def.node if n.op == "DepthwiseConv2dNative"}

    again = _quantize(res.graph_def, x, exclude=["head"]).graph_def
    key = lambda gd: sorted(n.SerializeToString(deterministic=True) for n in gd.node)  # noqa: E731
    assert key(again) == key(res.graph_def)


def _twin_pools(x):
    # Two bias-free convs of one width (each unit is given a zero bias) and the same
    # pooling written twice, as Keras' NASNet has it: each pool gets its own QuantizeV2.
    for side in ("left", "right"):
        y = tf.nn.conv2d(x, _c(RNG.normal(size=(3, 3, 8, 16)) * 0.2), 1, "SAME", name=f"{side}_conv")
        p = tf.nn.avg_pool2d(x, 3, 1, "SAME", name=f"{side}_pool")
        p = tf.nn.conv2d(p, _c(RNG.normal(size=(1, 1, 8, 16)) * 0.2), 1, "SAME", name=f"{side}_pw")
        tf.identity(y + 0.0, name=f"{side}_a")
        tf.identity(p, name=f"{side}_b")


@pytest.mark.parametrize("build,outputs", [
    (_residual_blocks, None), (_separable_chain, None),
    (_twin_pools, ["left_a", "left_b", "right_a", "right_b"]),
    # a summand's float reader, ordered before the fusion by a control edge
    (lambda x: _two_identity_blocks(x), ["output", "side"]),
], ids=["sums", "shifted-depthwise-and-maxpool", "avgpools", "ordered-summand-reader"])
def test_readers_take_a_requantized_range_from_its_constants_which_the_kernel_outputs(build, outputs):
    g = _graph(build)
    q = _quantize(g, _samples(4), outputs=outputs).graph_def
    fetch = [(outputs or ["output"])[0]]
    (ref,), (got,) = (leangraph.run(gd, {"input": _samples(1)}, fetch) for gd in (g, q))
    assert Q.sqnr_db(ref, got) > 25.0
    by_name = {n.name: n for n in q.node}
    producers = [n for n in q.node if n.op in ("_FusedQuantizedConv2D", "_FusedQuantizedDepthwiseConv2D",
                                               "QuantizedMaxPool", "QuantizedAvgPool")]
    assert producers
    # Only a QuantizeV2's range is read from its outputs: qint8's is -128/127 of the input range.
    for node in q.node:
        for edge in node.input:
            source, _, port = edge.lstrip("^").partition(":")
            assert port not in ("1", "2") or by_name[source].op == "QuantizeV2", (node.name, edge)
    # What the kernels output as their range is, to the bit, the constants read instead.
    fetches = [f"{p.name}:{port}" for p in producers for port in (1, 2)]
    got = leangraph.run(q, {"input": _samples(1)}, fetches)
    for p, lo, hi in zip(producers, got[0::2], got[1::2]):
        data = [i for i in p.input if not i.startswith("^")]  # a summand's reader comes first
        names = data[-2:] if p.op.startswith("_Fused") else data[1:3]
        while not all(by_name[n.split(":")[0]].op == "Const" for n in names):  # a pool of a pool
            names = by_name[names[0].split(":")[0]].input[1:3]
        want = [tf.make_ndarray(by_name[n].attr["value"].tensor) for n in names]
        assert np.array_equal(lo, want[0]) and np.array_equal(hi, want[1]), p.name


def test_a_vector_of_one_value_is_stored_as_that_value():
    g = _graph(_twin_pools)  # bias-free convs: zero biases
    q = _quantize(g, _samples(4), bias_correction=False).graph_def
    by_name = {n.name: n for n in q.node}
    conv = next(n for n in q.node if n.name == "left_conv_int8")
    bias = by_name[conv.input[2]].attr["value"].tensor
    assert not bias.tensor_content and list(bias.float_val) == [0.0]
    assert [d.size for d in bias.tensor_shape.dim] == [16]
    np.testing.assert_array_equal(tf.make_ndarray(bias), np.zeros(16, np.float32))
    weights_range = by_name[conv.input[5]].attr["value"].tensor  # 16 different values
    assert len(weights_range.tensor_content) == 16 * 4
    assert _rel_err(g, q, _samples(2), output="left_a") < 0.05


def test_identical_nodes_of_the_rewrite_are_one():
    g = _graph(_twin_pools)
    x = _samples(4)
    outputs = ["left_a", "left_b", "right_a", "right_b"]
    # Without bias correction, which may give either zero bias its own offsets.
    res = _quantize(g, x, outputs=outputs, bias_correction=False)
    unmerged = Q.int8._transform(g, res.calibration, set(), False, None, outputs, res.weight_bits)

    def zero_biases(gd):
        by_name = {n.name: n for n in gd.node}
        return {u.input[2] for u in gd.node if u.op == "_FusedQuantizedConv2D"
                and not tf.make_ndarray(by_name[u.input[2]].attr["value"].tensor).any()}

    assert len(zero_biases(unmerged)) == 2 and len(zero_biases(res.graph_def)) == 1
    assert _ops(unmerged)["QuantizeV2"] > _ops(res.graph_def)["QuantizeV2"]
    assert _ops(res.graph_def)["AvgPool"] + _ops(res.graph_def)["QuantizedAvgPool"] == 1
    assert len(res.int8_layers) == 4
    for name in outputs:
        want = leangraph.run(unmerged, {"input": x[:1]}, [name])[0]
        np.testing.assert_array_equal(leangraph.run(res.graph_def, {"input": x[:1]}, [name])[0], want)


def test_calibration_ranges_of_a_known_tensor():
    g = _graph(_conv_bias_relu)
    x = _samples(6)
    x[2, 0, 0, 0] = 40.0  # one outlier
    minmax = Q.calibrate(g, x)
    assert minmax.ranges["input:0"] == (pytest.approx(float(x.min())), pytest.approx(40.0))
    pct = Q.calibrate(g, x, method="percentile", percentile=99.0)
    lo, hi = pct.ranges["input:0"]
    assert hi < 10.0 and lo < 0
    expected_hi = np.mean([np.percentile(s, 99.0) for s in x])
    assert hi == pytest.approx(expected_hi, rel=1e-5)
    kl = Q.calibrate(g, x, method="kl")
    assert 0 < kl.ranges["input:0"][1] < 40.0
    # The Relu's output is non-negative: its range stays unsigned.
    assert minmax.ranges["act:0"][0] == 0.0
    assert pct.ranges["act:0"][0] == 0.0


def test_sqnr_of_values_that_overflowed_is_minus_infinity():
    ref = np.array([1.0, -2.0, 3.0])
    assert Q.sqnr_db(ref, ref) == float("inf")
    assert Q.sqnr_db(ref, ref + 0.1) == pytest.approx(10 * np.log10(14.0 / 0.03))
    # A tensor gone to inf or beyond float64 in the int8 graph: the worst, not a crash.
    assert Q.sqnr_db(ref, np.array([1.0, np.inf, 3.0])) == float("-inf")
    assert Q.sqnr_db(ref * 1e-200, np.array([1e300, 0.0, 0.0])) == float("-inf")
    assert Q.sqnr_db(np.zeros(3), ref) == float("-inf")


def test_low_sqnr_layers_fall_back_to_float():
    g = _graph(_separable_chain)
    x = _samples(4)
    cal = Q.calibrate(g, x)
    # The pointwise conv requantizes to a range 1000 times too wide: a few
    # levels are left, its output SQNR collapses, and it alone goes back to
    # float (what reads it only inherits the error).
    ranges = dict(cal.ranges)
    lo, hi = ranges["pw_relu:0"]
    ranges["pw_relu:0"] = (lo, hi * 1000)
    bad = Q.Calibration(ranges=ranges, method="minmax", samples=cal.samples)
    strict = Q.quantize(g, x, calibration=bad, min_sqnr_db=20.0, require_int8_cpu=False)
    fallback = {l.name: l for l in strict.fallback_layers}
    assert set(fallback) == {"pw"}
    assert "SQNR" in fallback["pw"].reason
    assert {l.name for l in strict.int8_layers} == {"dw", "head"}
    assert strict.rounds == 2
    loose = Q.quantize(g, x, calibration=bad, min_sqnr_db=None, require_int8_cpu=False)
    assert not loose.fallback_layers
    assert strict.output_sqnr_db > loose.output_sqnr_db + 10


def test_mac_share_and_report():
    g = _graph(_separable_chain)
    res = _quantize(g, _samples(2), exclude=["head"])
    total = sum(l.macs for l in res.layers)
    head = next(l for l in res.layers if l.name == "head")
    assert res.int8_mac_share == pytest.approx(1 - head.macs / total)
    assert json.dumps(res.to_dict())


_ONEDNN_SCRIPT = r"""
import sys, numpy as np, leangraph
graph = leangraph.load_graph(sys.argv[1])
x = np.random.default_rng(0).standard_normal((1, 12, 12, 8)).astype(np.float32)
leangraph.run(graph, {"input": x}, ["output"])
"""


@pytest.mark.slow
def test_onednn_runs_every_conv_on_an_int8_kernel(tmp_path):
    g = _graph(_separable_chain)
    path = tmp_path / "int8.pb"
    leangraph.save_graph(_quantize(g, _samples(2)).graph_def, str(path))
    env = dict(os.environ, ONEDNN_VERBOSE="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", _ONEDNN_SCRIPT, str(path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    convs = [l for l in proc.stdout.splitlines() if ",exec," in l and ",convolution," in l]
    assert len(convs) == 3, proc.stdout[-3000:]
    for line in convs:
        assert "src:u8" in line or "src:s8" in line, line
        assert "wei:s8" in line, line


_RELOAD_SCRIPT = r"""
import sys, numpy as np, tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
fn = loaded.signatures["serving_default"]
x = np.load(sys.argv[2])
out = list(fn(tf.constant(x)).values())[0].numpy()
np.save(sys.argv[3], out)
"""


@pytest.mark.slow
def test_int8_savedmodel_reloads_in_a_fresh_process(tmp_path):
    from leangraph.optimize import export_savedmodel

    g = _graph(_separable_chain)
    q = _quantize(g, _samples(2)).graph_def
    export_savedmodel(q, ["input"], ["output"], str(tmp_path / "sm"))
    x = _samples(1)
    np.save(tmp_path / "x.npy", x)
    proc = subprocess.run([sys.executable, "-c", _RELOAD_SCRIPT, str(tmp_path / "sm"),
                           str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = leangraph.run(q, {"input": x}, ["output"])[0]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "ranges, message",
    [
        ("nosuch:0=0,1", "not in the graph"),
        ("input:0=nan,1", "not a finite interval"),
        ("input:0=2,1", "not a finite interval"),
        ("input:0=1", "malformed range"),
        ("", "needs ranges"),
    ],
)
def test_bad_ranges_are_clear_errors(ranges, message):
    g = _graph(_conv_bias_relu)
    with pytest.raises(leangraph.TransformError, match=message):
        leangraph.transform(g, f'quantize_int8(ranges="{ranges}")')


def test_a_graph_that_is_not_frozen_is_refused():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="input")
        v = tf.compat.v1.get_variable("w", initializer=np.ones((4, 2), np.float32), use_resource=True)
        tf.matmul(x, v, name="output")
    with pytest.raises(leangraph.LeangraphError, match="not frozen"):
        leangraph.transform(graph.as_graph_def(), 'quantize_int8(ranges="input:0=0,1")')


def test_bad_calibration_data(tmp_path):
    g = _graph(_conv_bias_relu)
    with pytest.raises(leangraph.QuantizeError, match="shape"):
        Q.calibrate(g, np.zeros((2, 12, 12, 3), np.float32))
    bad = _samples(2)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(leangraph.QuantizeError, match="NaN"):
        Q.calibrate(g, bad)
    with pytest.raises(leangraph.QuantizeError, match="no examples"):
        Q.calibrate(g, np.zeros((0, 12, 12, 8), np.float32))
    with pytest.raises(leangraph.QuantizeError, match="constant .*'input' is 0"):
        Q.quantize(g, np.zeros((3, 12, 12, 8), np.float32), require_int8_cpu=False)
    Q.calibrate(g, np.zeros((1, 12, 12, 8), np.float32) + np.arange(8, dtype=np.float32))
    with pytest.raises(leangraph.QuantizeError, match="not an input"):
        Q.calibrate(g, {"other": _samples(1)})
    with pytest.raises(leangraph.QuantizeError, match="unknown calibration method"):
        Q.calibrate(g, _samples(1), method="magic")
    with pytest.raises(leangraph.QuantizeError, match="not in the graph"):
        Q.quantize(g, _samples(1), exclude=["nosuch"], require_int8_cpu=False)


def test_a_cpu_without_vnni_takes_7_bits_and_one_without_8bit_kernels_is_refused(monkeypatch):
    g = _graph(_conv_bias_relu)
    monkeypatch.setenv("LEANGRAPH_FAKE_NO_VNNI", "1")
    # AVX2 alone has oneDNN int8 kernels faster than fp32 (Zen 3: Xception 1.84x).
    assert Q.cpu_supports_int8() == Q.cpu_has_avx2()
    if Q.cpu_has_avx2():
        assert Q.quantize(g, _samples(2), min_sqnr_db=None).weight_bits == 7
    monkeypatch.setenv("LEANGRAPH_FAKE_NO_INT8", "1")
    assert not Q.cpu_supports_int8() and not Q.cpu_has_avx2()
    with pytest.raises(leangraph.QuantizeError, match=r"neither VNNI \(.*\) nor AVX2"):
        Q.quantize(g, _samples(1))


def test_graph_checks_refuse_int8_kernels_that_would_crash_or_overread():
    q = _quantize(_graph(_residual_blocks), _samples(2)).graph_def
    # A constant summand: TF's kernel dies on it (a segfault, measured).
    crash = type(q)()
    crash.CopyFrom(q)
    c2 = next(n for n in crash.node if n.name == "c2_int8")
    weights = next(n for n in crash.node if n.name == c2.input[1])
    summand = crash.node.add()
    summand.CopyFrom(weights)
    summand.name = "const_summand"
    summand.attr["dtype"].type = tf.quint8.as_datatype_enum
    summand.attr["value"].tensor.CopyFrom(
        tf.make_tensor_proto(np.ones((1, 12, 12, 8), np.uint8), dtype=tf.quint8))
    c2.input[3] = "const_summand"
    with pytest.raises(leangraph.GraphError, match="summand of its Sum fusion is a Const"):
        leangraph.transform(crash, "sort_by_execution_order")
    with pytest.raises(leangraph.LeangraphError, match="summand"):
        leangraph.benchmark(crash, runs=1, warmup=0)
    # Per-channel filter ranges shorter than the channels are read past their end.
    short = type(q)()
    short.CopyFrom(q)
    c1 = next(n for n in short.node if n.name == "c1_int8")
    wmin = next(n for n in short.node if n.name == c1.input[5])  # its filter's channel ranges
    wmin.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(-np.ones(3, np.float32)))
    with pytest.raises(leangraph.GraphError, match="holds 3 values; it needs 1 or one per output"):
        leangraph.transform(short, "sort_by_execution_order")


def _two_identity_blocks(x, late_reader=False):
    def block(inp, tag):
        y = tf.nn.conv2d(inp, _c(RNG.normal(size=(1, 1, 8, 8)) * 0.3), 1, "SAME", name=f"{tag}a")
        y = tf.nn.relu(tf.nn.bias_add(y, _c(RNG.normal(size=8) * 0.1)), name=f"{tag}a_relu")
        y = tf.nn.conv2d(y, _c(RNG.normal(size=(3, 3, 8, 8)) * 0.2), 1, "SAME", name=f"{tag}b")
        y = tf.nn.bias_add(y, _c(RNG.normal(size=8) * 0.1), name=f"{tag}b_bias")
        return tf.nn.relu(tf.add(y, inp, name=f"{tag}add"), name=f"{tag}out")

    out1 = block(tf.nn.relu(x, name="a"), "k1")
    out2 = block(out1, "k2")
    if late_reader:
        # Reads block 2's summand after block 2: that fusion would overwrite it first.
        tf.concat([out2, out1], axis=3, name="output")
    else:
        tf.identity(out2, name="output")
        tf.multiply(out1, 2.0, name="side")  # a float reader of the 8-bit summand


def test_summand_readers_run_before_the_fused_conv():
    g = _graph(_two_identity_blocks)
    x = _samples(2)
    res = Q.quantize(g, x, min_sqnr_db=None, require_int8_cpu=False, outputs=["output", "side"])
    q = res.graph_def
    k2b = next(n for n in q.node if n.name == "k2b_int8")
    assert b"Sum" in k2b.attr["fused_ops"].list.s and k2b.input[3] == "k1b_int8"
    # The Dequantize the float reader reads is ordered before the fusion that
    # accumulates into the summand's buffer.
    dq = next(n for n in q.node if n.op == "Dequantize" and n.name == "k1out")
    assert "^" + dq.name in k2b.input
    for name in ("output", "side"):
        assert _rel_err(g, q, x, output=name) < 0.05

    late = _graph(lambda t: _two_identity_blocks(t, late_reader=True))
    lq = _quantize(late, x).graph_def
    assert b"Sum" in next(n for n in lq.node if n.name == "k1b_int8").attr["fused_ops"].list.s
    assert b"Sum" not in next(n for n in lq.node if n.name == "k2b_int8").attr["fused_ops"].list.s
    assert _rel_err(late, lq, x) < 0.05


def _inverted_residuals(x):
    # MobileNetV2's blocks: expand 1x1 + Relu6, depthwise + Relu6, linear
    # project 1x1; from the second block on, a linear add of the block input.
    def block(inp, tag, residual):
        y = tf.nn.conv2d(inp, _c(RNG.normal(size=(1, 1, 8, 24)) * 0.3), 1, "SAME", name=f"{tag}e")
        y = tf.nn.relu6(tf.nn.bias_add(y, _c(RNG.normal(size=24) * 0.1)), name=f"{tag}e_act")
        y = tf.nn.depthwise_conv2d(y, _c(RNG.normal(size=(3, 3, 24, 1)) * 0.3), [1, 1, 1, 1],
                                   "SAME", name=f"{tag}d")
        y = tf.nn.relu6(tf.nn.bias_add(y, _c(RNG.normal(size=24) * 0.1)), name=f"{tag}d_act")
        y = tf.nn.conv2d(y, _c(RNG.normal(size=(1, 1, 24, 8)) * 0.2), 1, "SAME", name=f"{tag}p")
        y = tf.nn.bias_add(y, _c(RNG.normal(size=8) * 0.1), name=f"{tag}p_bias")
        return tf.add(y, inp, name=f"{tag}add") if residual else y

    y1 = block(x, "k1", False)
    y2 = block(y1, "k2", True)
    y3 = block(y2, "k3", True)
    head = tf.nn.conv2d(y3, _c(RNG.normal(size=(1, 1, 8, 16)) * 0.3), 1, "SAME", name="head")
    tf.identity(head, name="output")
    tf.identity(y3, name="features")  # a float reader of a shifted tensor


def test_linear_residual_adds_run_in_the_conv_shifted_unsigned():
    g = _graph(_inverted_residuals)
    x = _samples(4)
    res = Q.quantize(g, x, min_sqnr_db=None, require_int8_cpu=False, outputs=["output", "features"])
    q = res.graph_def
    node = {n.name: n for n in q.node}

    def fused(name):
        return [s.decode() for s in node[name].attr["fused_ops"].list.s]

    # Block 1's linear output y1 is read by a 1x1 conv and an add's summand:
    # it is handed on as y1 - min(y1), unsigned.
    assert node["k1p_int8"].attr["out_type"].type == tf.quint8.as_datatype_enum
    assert fused("k1p_int8") == ["BiasAdd", "Requantize"]
    # Block 2's add runs in its project conv, summing the shifted y1; its
    # result, also read by a 1x1 conv and a summand, is handed on shifted too.
    assert fused("k2p_int8") == ["BiasAdd", "Sum", "Relu", "Requantize"]
    assert node["k2p_int8"].input[3] == "k1p_int8"
    assert node["k2p_int8"].attr["out_type"].type == tf.quint8.as_datatype_enum
    assert node["k2e_int8"].input[0] == "k1p_int8" and node["k3e_int8"].input[0] == "k2p_int8"
    assert "k2add" not in node
    # y3 is also a graph output: its float reader gets a MIN_FIRST Dequantize, whose
    # zero sits at the shift.
    assert node["k3add"].op == "Dequantize" and node["k3add"].attr["mode"].s == b"MIN_FIRST"
    assert node["k3add"].input[0] == "k3p_int8" and node["head_int8"].input[0] == "k3p_int8"
    assert _ops(q)["AddV2"] == 0 and _ops(q)["Dequantize"] == 2
    # The shifts are exact algebra: both outputs agree with float.
    for name in ("output", "features"):
        assert _rel_err(g, q, x, output=name) < 0.05
    # Probe graphs compare every unit's output with float: nothing is shifted.
    probes = leangraph.transform(
        g, f'quantize_int8(ranges="{res.calibration.to_param()}", probes=true)',
        inputs=["input"], outputs=["output", "features"])
    pnode = {n.name: n for n in probes.node}
    assert pnode["k1p_int8"].attr["out_type"].type == tf.qint8.as_datatype_enum
    assert pnode["k2add"].op == "AddV2"


def test_graph_checks_refuse_a_signed_sum_fusion():
    g = _graph(_inverted_residuals)
    q = type(g)()
    q.CopyFrom(Q.quantize(g, _samples(2), min_sqnr_db=None, require_int8_cpu=False,
                          outputs=["output", "features"]).graph_def)
    # With a qint8 output TensorFlow's kernel wants a float summand and aborts.
    next(n for n in q.node if n.name == "k2p_int8").attr["out_type"].type = tf.qint8.as_datatype_enum
    with pytest.raises(leangraph.GraphError, match="signed output or summand"):
        leangraph.transform(q, "sort_by_execution_order")


def _swish_pointwise(x):
    # A swish output (either sign, its minimum about -0.28) read only by a 1x1 conv.
    y = tf.nn.conv2d(x, _c(RNG.normal(size=(3, 3, 8, 16)) * 0.3), 1, "SAME", name="c1")
    y = tf.nn.bias_add(y, _c(RNG.normal(size=16) * 0.1), name="c1_bias")
    s = tf.multiply(y, tf.sigmoid(y), name="swish")
    z = tf.nn.conv2d(s, _c(RNG.normal(size=(1, 1, 16, 8)) * 0.3), 1, "SAME", name="p")
    tf.identity(tf.nn.bias_add(z, _c(RNG.normal(size=8) * 0.1), name="p_bias"), name="output")


def test_a_float_tensor_of_either_sign_read_by_1x1_convs_is_quantized_from_its_minimum():
    g = _graph(_swish_pointwise)
    x = _samples(4)
    res = _quantize(g, x)
    q = {n.name: n for n in res.graph_def.node}
    quantize = q["swish_quantized"]
    assert quantize.op == "QuantizeV2" and quantize.attr["mode"].s == b"MIN_FIRST"
    assert quantize.attr["T"].type == tf.quint8.as_datatype_enum
    lo, hi = res.calibration.ranges["swish:0"] if "swish:0" in res.calibration.ranges else \
        res.calibration.ranges["swish"]
    assert lo < 0 < hi
    # The conv reads it as unsigned over [0, max - min].
    p = q["p_int8"]
    assert p.attr["Tinput"].type == tf.quint8.as_datatype_enum
    assert p.input[0] == "swish_quantized"
    assert tf.make_ndarray(q[p.input[3]].attr["value"].tensor) == 0.0
    top = tf.make_ndarray(q[p.input[4]].attr["value"].tensor)
    assert float(top) == pytest.approx(hi - lo, rel=1e-5)
    assert _rel_err(g, res.graph_def, x) < 0.05


def test_layers_whose_conversions_cost_more_than_they_save_can_stay_float():
    g = _graph(_swish_pointwise)
    x = _samples(4)
    # c1: 165888 MACs; its input is quantized (1152 values) and its output dequantized
    # for the swish (2304): 48 MACs per value. p: 18432 MACs over 2304 + 1152: 5.3.
    res = _quantize(g, x, min_macs_per_conversion=40)
    by_name = {l.name: l for l in res.layers}
    assert by_name["c1"].precision == "int8"
    assert by_name["p"].precision == "fp32"
    assert by_name["p"].reason.startswith("8-bit would not pay: 5 MACs per value converted")
    assert "p_int8" not in {n.name for n in res.graph_def.node}
    assert _rel_err(g, res.graph_def, x) < 0.05
    both = _quantize(g, x, min_macs_per_conversion=64)
    assert [l.precision for l in both.layers] == ["fp32", "fp32"]
    assert "48 MACs per value" in {l.name: l for l in both.layers}["c1"].reason
    # Off (the default): both run in 8 bits and a note says what they convert.
    plain = _quantize(g, x)
    assert [l.precision for l in plain.layers] == ["int8", "int8"]
    assert any(n.startswith("2 of 2 8-bit layers convert") for n in plain.notes)
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(leangraph.QuantizeError, match="min_macs_per_conversion must be"):
            _quantize(g, x, min_macs_per_conversion=bad)


def _xception_entry(x):
    # Xception's entry-flow block: a separable conv (no activation) max-pooled, plus a
    # strided 1x1 projection; the block output is read by the next block's Relu and add.
    def block(inp, tag):
        r = tf.nn.conv2d(inp, _c(RNG.normal(size=(1, 1, 8, 8)) * 0.3), 2, "SAME", name=f"{tag}r")
        r = tf.nn.bias_add(r, _c(RNG.normal(size=8) * 0.1), name=f"{tag}r_bias")
        h = tf.nn.relu(inp, name=f"{tag}relu")
        h = tf.nn.depthwise_conv2d(h, _c(RNG.normal(size=(3, 3, 8, 1)) * 0.3), [1, 1, 1, 1],
                                   "SAME", name=f"{tag}d")
        h = tf.nn.conv2d(h, _c(RNG.normal(size=(1, 1, 8, 8)) * 0.3), 1, "SAME", name=f"{tag}p")
        h = tf.nn.bias_add(h, _c(RNG.normal(size=8) * 0.1), name=f"{tag}p_bias")
        h = tf.nn.max_pool2d(h, 3, 2, "SAME", name=f"{tag}pool")
        return tf.add(h, r, name=f"{tag}add")

    def middle(inp, tag):  # an identity residual, its input read by a Relu and the add
        h = tf.nn.relu(inp, name=f"{tag}relu")
        h = tf.nn.depthwise_conv2d(h, _c(RNG.normal(size=(3, 3, 8, 1)) * 0.3), [1, 1, 1, 1],
                                   "SAME", name=f"{tag}d")
        h = tf.nn.conv2d(h, _c(RNG.normal(size=(1, 1, 8, 8)) * 0.3), 1, "SAME", name=f"{tag}p")
        h = tf.nn.bias_add(h, _c(RNG.normal(size=8) * 0.1), name=f"{tag}p_bias")
        return tf.add(h, inp, name=f"{tag}add")

    y = block(x, "b1")
    y = middle(y, "m1")
    y = block(y, "b2")
    head = tf.nn.conv2d(y, _c(RNG.normal(size=(1, 1, 8, 4)) * 0.3), 1, "SAME", name="head")
    tf.identity(head, name="output")


def test_a_max_pool_passes_a_shift_on_so_the_residual_add_runs_in_the_conv():
    g = _graph(_xception_entry, shape=(1, 16, 16, 8))
    x = _samples(4, shape=(16, 16, 8))
    q = _quantize(g, x).graph_def
    node = {n.name: n for n in q.node}
    # b1's pooled separable conv is handed on shifted through the 8-bit MaxPool and
    # summed into the projection conv, whose result is shifted on to b2.
    assert node["b1p_int8"].attr["out_type"].type == tf.quint8.as_datatype_enum
    assert node["b1pool_int8"].op == "QuantizedMaxPool"
    r = node["b1r_int8"]
    assert [s.decode() for s in r.attr["fused_ops"].list.s] == ["BiasAdd", "Sum", "Relu", "Requantize"]
    assert r.input[3] == "b1pool_int8"
    # The identity residual sums the shifted block output (read by its Relu too).
    assert node["m1p_int8"].input[3] == "b1r_int8"
    assert node["b2r_int8"].input[0] == "m1p_int8" and node["b2r_int8"].input[3] == "b2pool_int8"
    # The Relus read the block outputs through MIN_FIRST Dequantizes (absorbed into the
    # unsigned QuantizeV2 of the depthwise conv's input).
    for add in ("b1add", "m1add"):
        assert node[add].op == "Dequantize" and node[add].attr["mode"].s == b"MIN_FIRST"
    assert _ops(q)["AddV2"] == 0
    assert _rel_err(g, q, x) < 0.05


def _xception_exit(x):
    # Xception's exit block: a max-pooled separable conv plus a strided 1x1 projection,
    # their sum read straight away (no Relu) by a depthwise conv with padding. Weights of
    # its own generator, so the graphs of the tests after it stay as they were.
    rng = np.random.default_rng(35)
    r = tf.nn.conv2d(x, _c(rng.normal(size=(1, 1, 8, 8)) * 0.3), 2, "SAME", name="xr")
    r = tf.nn.bias_add(r, _c(rng.normal(size=8) * 0.1), name="xr_bias")
    h = tf.nn.relu(x, name="xrelu")
    h = tf.nn.depthwise_conv2d(h, _c(rng.normal(size=(3, 3, 8, 1)) * 0.3), [1, 1, 1, 1], "SAME",
                               name="xd")
    h = tf.nn.conv2d(h, _c(rng.normal(size=(1, 1, 8, 8)) * 0.3), 1, "SAME", name="xp")
    h = tf.nn.bias_add(h, _c(rng.normal(size=8) * 0.1), name="xp_bias")
    h = tf.nn.max_pool2d(h, 3, 2, "SAME", name="xpool")
    y = tf.add(h, r, name="xadd")
    y = tf.nn.depthwise_conv2d(y, _c(rng.normal(size=(3, 3, 8, 1)) * 0.3), [1, 1, 1, 1], "SAME",
                               name="yd")
    y = tf.nn.conv2d(y, _c(rng.normal(size=(1, 1, 8, 8)) * 0.3), 1, "SAME", name="yp")
    y = tf.nn.relu(tf.nn.bias_add(y, _c(rng.normal(size=8) * 0.1)), name="yp_act")
    tf.identity(y, name="output")


def test_a_linear_sum_read_by_a_padded_conv_runs_in_the_conv_and_is_requantized_exactly():
    g = _graph(_xception_exit, shape=(1, 16, 16, 8))
    x = _samples(4, shape=(16, 16, 8))
    q = _quantize(g, x).graph_def
    node = {n.name: n for n in q.node}
    # The add runs in the projection conv, summing the 8-bit pool; the depthwise conv,
    # whose padding cannot hold a shift, reads the sum's MIN_FIRST Dequantize quantized
    # signed: one Dequantize and no float add left where there were two and one.
    r = node["xr_int8"]
    assert [s.decode() for s in r.attr["fused_ops"].list.s] == ["BiasAdd", "Sum", "Relu", "Requantize"]
    assert r.input[3] == "xpool_int8" and r.attr["out_type"].type == tf.quint8.as_datatype_enum
    assert node["xadd"].op == "Dequantize" and node["xadd"].attr["mode"].s == b"MIN_FIRST"
    quantized = node["xadd_quantized"]
    assert quantized.op == "QuantizeV2" and quantized.input[0] == "xadd"
    assert quantized.attr["T"].type == tf.qint8.as_datatype_enum
    assert node["yd_int8"].input[0] == "xadd_quantized"
    assert _ops(q)["AddV2"] == 0 and _ops(q)["Dequantize"] == 2  # the sum's, the output's
    # The sum's 8-bit grid is the signed one's (steps of m/127, a shift of whole
    # steps), so quantizing what the Dequantize gives rounds nothing more.
    m = max(abs(float(tf.make_ndarray(node[quantized.input[i]].attr["value"].tensor)))
            for i in (1, 2))
    sums = np.concatenate([leangraph.run(q, {"input": e[None]}, ["xadd"])[0] for e in x])
    assert np.abs(sums * 127 / m - np.round(sums * 127 / m)).max() < 1e-3
    assert _rel_err(g, q, x) < 0.05


@pytest.mark.parametrize("stride, padding", [(1, "SAME"), (2, "SAME"), (2, "VALID")])
def test_a_conv_reading_a_swish_can_get_it_padded_in_float_then_shifted(stride, padding):
    def build(x):
        y = tf.nn.conv2d(x, _c(RNG.normal(size=(1, 1, 8, 16)) * 0.3), 1, "SAME", name="e")
        y = tf.nn.bias_add(y, _c(RNG.normal(size=16) * 0.1), name="e_bias")
        s = tf.multiply(y, tf.sigmoid(y), name="swish")
        d = tf.nn.depthwise_conv2d(s, _c(RNG.normal(size=(3, 3, 16, 1)) * 0.3),
                                   [1, stride, stride, 1], padding, name="d")
        tf.identity(tf.nn.relu(tf.nn.bias_add(d, _c(RNG.normal(size=16) * 0.1))), name="output")

    g = _graph(build, shape=(1, 13, 13, 8))
    x = _samples(4, shape=(13, 13, 8))
    calibration = Q.calibrate(g, x)
    q = leangraph.transform(
        g, f'quantize_int8(ranges="{calibration.to_param()}", pad_inputs=true, '
           f'weight_bits={_WEIGHT_BITS})', inputs=["input"], outputs=["output"])
    if padding == "SAME":  # by default a SAME conv reads it signed, unpadded
        plain = _quantize(g, x).graph_def
        d = next(n for n in plain.node if n.name == "d_int8")
        assert d.attr["Tinput"].type == tf.qint8.as_datatype_enum and d.attr["padding"].s == b"SAME"
    node = {n.name: n for n in q.node}
    d = node["d_int8"]
    assert d.attr["Tinput"].type == tf.quint8.as_datatype_enum and d.attr["padding"].s == b"VALID"
    assert node["swish_quantized"].attr["mode"].s == b"MIN_FIRST"
    assert ("swish_quantized/padded" in node) == (padding == "SAME")
    # The padding holds the shift too, so the correction is exact at the borders.
    assert _rel_err(g, q, x) < 0.03


def test_a_while_loop_stays_float_and_the_rest_is_quantized():
    """A frozen LSTM's cell matmuls run once per step inside a TF 1 while frame: a session
    cannot fetch them to calibrate (it failed with "Retval[0] has already been set"), so
    they stay float with the reason, and the layers outside the loop are quantized."""
    import keras

    keras.utils.set_random_seed(0)
    tokens = keras.Input((6,), dtype="int32")
    h = keras.layers.LSTM(8)(keras.layers.Embedding(20, 8)(tokens))
    h = keras.layers.Dense(16, activation="relu")(h)
    model = keras.Model(tokens, keras.layers.Dense(3)(h))
    frozen = leangraph.freeze(model)
    graph = leangraph.transform(frozen.graph_def, leangraph.recipe("deploy", frozen.graph_def))
    loop = leangraph.graphs.loop_nodes(graph)
    assert any(n.op == "MatMul" and n.name in loop for n in graph.node)
    from leangraph.quantization.calibrate import observed_tensors

    observed = observed_tensors(graph)
    assert observed and all(leangraph.graphs.node_name(t) not in loop for t in observed)
    samples = np.random.default_rng(0).integers(0, 20, (8, 6)).astype(np.int32)
    result = Q.quantize(graph, samples, require_int8_cpu=False)
    by_name = {l.name: l for l in result.layers}
    in_loop = [l for name, l in by_name.items() if name in loop]
    assert in_loop and all(l.precision == "fp32" and "while loop" in l.reason for l in in_loop)
    outside = [l for name, l in by_name.items() if name not in loop]
    assert len(outside) == 2 and all(l.precision == "int8" for l in outside)
    want = model(samples, training=False).numpy()
    got = np.concatenate([leangraph.run(result.graph_def, {frozen.input_names[0]: x[None]})[0]
                          for x in samples])  # frozen at batch 1
    assert Q.sqnr_db(want, got) > (15 if _LOOSE else 25)


def _se_block(x, shared=False):
    # An SE block with two channels 300x larger than the rest (as EfficientNet's
    # batch norms make them): the 1x1 conv reading features * gate gets one
    # per-tensor scale over all of them.
    spread = np.full(16, 0.1)
    spread[[3, 11]] = 30.0
    f = tf.nn.conv2d(x, _c(RNG.normal(size=(3, 3, 8, 16)) * 0.2), 1, "SAME", name="feat_conv")
    f = tf.nn.relu(tf.nn.bias_add(f, _c(RNG.normal(size=16) * 0.1)), name="feat")
    f = tf.multiply(f, _c(spread), name="feat_scaled")
    s = tf.reduce_mean(f, axis=[1, 2], keepdims=True, name="squeeze")
    s = tf.nn.conv2d(s, _c(RNG.normal(size=(1, 1, 16, 16)) * 0.1), 1, "SAME", name="excite")
    g = tf.sigmoid(s, name="gate")
    p = tf.multiply(f, g, name="product")
    # The conv weighs the large channels down: every channel counts in its output.
    w = RNG.normal(size=(1, 1, 16, 8)) * 0.3
    w[:, :, [3, 11], :] /= 300.0
    w = _c(w)
    y = tf.nn.conv2d(p, w, 1, "SAME", name="project")
    tf.identity(y, name="output")
    if shared:  # another conv reads the same weights, on the unscaled features
        tf.identity(tf.nn.conv2d(f, w, 1, "SAME", name="other"), name="other_out")


def test_se_products_are_equalized_into_the_conv_weights():
    from leangraph.quantization import equalize as E

    g = _graph(_se_block)
    x = _samples(8)
    feeds = input_feeds(g, x)
    eq, convs = E.equalize(g, feeds)
    assert convs == ["project"]
    # The float graph computes the same; the product's channels above the 75th
    # percentile of their maxima now stop there.
    ref, got = (np.concatenate([leangraph.run(gd, {"input": e[None]}, ["output"])[0] for e in x])
                for gd in (g, eq))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    peaks = [np.abs(np.concatenate([leangraph.run(gd, {"input": e[None]}, ["product"])[0] for e in x]))
             .reshape(-1, 16).max(0) for gd in (g, eq)]
    assert peaks[0].max() / np.percentile(peaks[0], 75) > 4
    assert peaks[1].max() <= np.percentile(peaks[0], 75) * 1.001
    gate = next(n for n in eq.node if n.name == "product").input[1]
    assert next(n for n in eq.node if n.name == leangraph.graphs.node_name(gate)).op == "Mul"
    # ... and its int8 rewrite loses less.
    plain = _quantize(g, x, equalize=False)
    better = _quantize(g, x)
    assert better.equalized == ["project"] and plain.equalized == []
    assert better.output_sqnr_db > plain.output_sqnr_db + 3


def test_equalization_leaves_other_readers_of_the_weights_and_plain_graphs_alone():
    from leangraph.quantization import equalize as E

    g = _graph(lambda x: _se_block(x, shared=True))
    x = _samples(4)
    feeds = input_feeds(g, x)
    eq, convs = E.equalize(g, feeds)
    assert convs == ["project"]
    for out in ("output", "other_out"):
        want = leangraph.run(g, {"input": x[:1]}, [out])[0]
        np.testing.assert_allclose(leangraph.run(eq, {"input": x[:1]}, [out])[0], want,
                                   rtol=1e-4, atol=1e-4 * np.abs(want).max())
    # No SE product: the very graph comes back.
    plain = _graph(_conv_bias_relu)
    same, none = E.equalize(plain, input_feeds(plain, x))
    assert same is plain and none == []


def test_an_equalization_that_loses_is_measured_and_dropped(monkeypatch):
    from leangraph.quantization import equalize as E

    g = _graph(_se_block)
    x = _samples(8)
    kept = _quantize(g, x)
    assert kept.equalized == ["project"]
    note = next(n for n in kept.notes if "equalized" in n)
    assert "kept without" not in note

    def misleading(graph_def, found, feeds):
        # Claims channel 0 is the outlier: its weights then set every output
        # channel's 8-bit scale, and the other channels round to nothing.
        peaks = np.ones(16)
        peaks[0] = 1e4
        return [(peaks, 1)] * len(found)

    monkeypatch.setattr(E, "_peaks", misleading)
    dropped = _quantize(g, x)
    assert dropped.equalized == [] and any("kept without" in n for n in dropped.notes)
    assert not any(n.name.endswith("/equalize") for n in dropped.graph_def.node)
    assert dropped.output_sqnr_db == pytest.approx(_quantize(g, x, equalize=False).output_sqnr_db)


def test_two_equalized_convs_sharing_weights_leave_no_copy_behind():
    from leangraph.quantization import equalize as E

    def twin(x):
        spread = np.full(16, 0.1)
        spread[[3, 11]] = 30.0
        f = tf.nn.relu(tf.nn.conv2d(x, _c(RNG.normal(size=(3, 3, 8, 16)) * 0.2), 1, "SAME"))
        f = tf.multiply(f, _c(spread), name="feat_scaled")
        w = _c(RNG.normal(size=(1, 1, 16, 8)) * 0.3)
        for side in ("left", "right"):
            s = tf.reduce_mean(f, axis=[1, 2], keepdims=True)
            g = tf.sigmoid(tf.nn.conv2d(s, _c(RNG.normal(size=(1, 1, 16, 16)) * 0.1), 1, "SAME"))
            tf.identity(tf.nn.conv2d(tf.multiply(f, g, name=f"{side}_product"), w, 1, "SAME",
                                     name=f"{side}_project"), name=f"{side}_out")

    g = _graph(twin)
    x = _samples(4)
    eq, convs = E.equalize(g, input_feeds(g, x))
    assert sorted(convs) == ["left_project", "right_project"]
    readers = Counter(leangraph.graphs.node_name(i) for n in eq.node for i in n.input)
    consts = [n.name for n in eq.node if n.op == "Const"]
    assert all(readers[name] for name in consts), "a weight copy left with no reader"
    for out in ("left_out", "right_out"):
        want = leangraph.run(g, {"input": x[:1]}, [out])[0]
        np.testing.assert_allclose(leangraph.run(eq, {"input": x[:1]}, [out])[0], want,
                                   rtol=1e-4, atol=1e-4 * np.abs(want).max())


def _separable_pair(x, reader="pointwise", spread=True, multiplier=1):
    # A 5x5 depthwise conv whose channels' weight ranges differ 30x, then the reader.
    # Its input is nearly constant: the rounded weights' steady offset per channel
    # is most of its 8-bit error.
    width = 8 * multiplier
    w = RNG.normal(size=(5, 5, 8, multiplier)) * (
        np.geomspace(0.02, 0.6, width).reshape(1, 1, 8, multiplier) if spread else 0.3)
    y = tf.nn.depthwise_conv2d(0.1 * tf.nn.relu(x) + 2.0, _c(w), [1, 1, 1, 1], "VALID", name="dw")
    if reader == "relu":
        y = tf.nn.relu(y, name="between")
    size = 3 if reader == "3x3" else 1
    y = tf.nn.conv2d(y, _c(RNG.normal(size=(size, size, width, 16)) * 0.3), 1, "SAME", name="pw")
    tf.identity(tf.nn.bias_add(y, _c(RNG.normal(size=16) * 0.1), name="pw_bias"), name="output")


def _filter(graph_def, conv):
    by = {n.name: n for n in graph_def.node}
    return tf.make_ndarray(by[leangraph.graphs.node_name(by[conv].input[1])].attr["value"].tensor)


@pytest.mark.parametrize("multiplier", [1, 2])
def test_a_separable_convs_depthwise_ranges_move_into_its_pointwise_conv(multiplier):
    from leangraph.quantization import equalize as E

    g = _graph(lambda x: _separable_pair(x, multiplier=multiplier))
    eq, convs = E.equalize_depthwise(g)
    assert convs == ["dw"]
    x = _samples(4)
    want = leangraph.run(g, {"input": x[:1]}, ["output"])[0]
    np.testing.assert_allclose(leangraph.run(eq, {"input": x[:1]}, ["output"])[0], want,
                               rtol=1e-4, atol=1e-5 * np.abs(want).max())
    width = 8 * multiplier
    before, after = (np.abs(_filter(gd, "dw")).reshape(25, width).max(0) for gd in (g, eq))
    assert before.max() / before.min() > 10
    assert len(set(after.tolist())) == 1 and after[0] == before.max()  # equal to the bit
    assert not np.array_equal(_filter(eq, "pw"), _filter(g, "pw"))
    # The rewrite then stores the depthwise conv's ranges as one number.
    q = _quantize(g, x).graph_def
    assert _sqnr_on(g, q, x[:2]) > 25
    by = {n.name: n for n in q.node}
    dw = by["dw_int8"]
    assert dw.op == "_FusedQuantizedDepthwiseConv2D"
    ranges = by[leangraph.graphs.node_name(dw.input[-4])].attr["value"].tensor
    assert list(ranges.float_val) == [pytest.approx(before.max())] and not ranges.tensor_content
    assert tf.make_ndarray(ranges).shape == (width,)
    plain = _quantize(g, x, equalize=False).graph_def
    plain_by = {n.name: n for n in plain.node}
    stored = plain_by[plain_by["dw_int8"].input[-4]].attr["value"].tensor
    assert tf.make_ndarray(stored).size == width and len(stored.tensor_content) == 4 * width


@pytest.mark.parametrize("reader", ["relu", "3x3"])
def test_depthwise_ranges_stay_where_a_reader_is_not_a_1x1_conv(reader):
    from leangraph.quantization import equalize as E

    g = _graph(lambda x: _separable_pair(x, reader=reader))
    same, none = E.equalize_depthwise(g)
    assert same is g and none == []


def test_a_depthwise_convs_mean_error_is_left_to_the_1x1_conv_after_it():
    # Positive inputs: the rounded depthwise weights add a steady offset per channel,
    # which the 1x1 conv carries on as a steady offset per output channel.
    g = _graph(lambda x: _separable_pair(x, spread=False))
    x = _samples(16, positive=True)
    plain = _quantize(g, x, bias_correction=False)
    fixed = _quantize(g, x)
    assert fixed.bias_corrected == ["pw_int8"]
    by = {n.name: n for n in fixed.graph_def.node}
    bias = by[leangraph.graphs.node_name(by["dw_int8"].input[2])].attr["value"].tensor
    assert len(bias.float_val) == 1 and not bias.tensor_content  # still one value
    for samples in (x[:8], _samples(24, positive=True)[16:]):
        before = _mean_error_per_channel(g, plain.graph_def, samples)
        assert _mean_error_per_channel(g, fixed.graph_def, samples) < 0.3 * before
    # Read by a 3x3 conv (borders see the offset only in part): corrected where it arises.
    g3 = _graph(lambda x: _separable_pair(x, reader="3x3", spread=False))
    assert sorted(_quantize(g3, x).bias_corrected) == ["dw_int8", "pw_int8"]


def test_bias_correction_fits_on_a_probe_that_hands_over_unsigned_as_the_graph_will():
    # The final graph hands the depthwise output to the 1x1 conv unsigned (shifted);
    # a probe without that rounds on another grid, so its mean errors are not the
    # graph's. With shifts=true the probe's output is the final graph's, to the bit.
    from leangraph.quantization import int8 as I
    from leangraph.quantization.calibrate import calibrate

    g = _graph(lambda x: _separable_pair(x, spread=False))
    x = _samples(8, positive=True)
    cal = calibrate(g, x)
    bits = _WEIGHT_BITS
    final, shifted, plain = (I._transform(g, cal, set(), probes, ["input"], ["output"], bits,
                                          shifts=shifts)
                             for probes, shifts in ((False, False), (True, True), (True, False)))
    types = [{n.name: n for n in q.node}["pw_int8"].attr["Tinput"].type
             for q in (final, shifted, plain)]
    assert types == [tf.quint8.as_datatype_enum] * 2 + [tf.qint8.as_datatype_enum]
    want = leangraph.run(final, {"input": x[:1]}, ["output"])[0]
    np.testing.assert_array_equal(leangraph.run(shifted, {"input": x[:1]}, ["output"])[0], want)
    assert not np.array_equal(leangraph.run(plain, {"input": x[:1]}, ["output"])[0], want)
    # ... and the correction fitted on it is kept.
    fixed = _quantize(g, _samples(16, positive=True))
    assert fixed.bias_corrected == ["pw_int8"]


def _mean_error_per_channel(graph_def, qgraph, x):
    ref = np.concatenate([leangraph.run(graph_def, {"input": e[None]}, ["output"])[0] for e in x])
    got = np.concatenate([leangraph.run(qgraph, {"input": e[None]}, ["output"])[0] for e in x])
    return float(np.abs((got - ref).reshape(-1, ref.shape[-1]).mean(0)).mean())


def test_bias_correction_takes_each_channels_mean_error_out():
    # Positive inputs: each output channel's rounded weights add a steady offset.
    g = _graph(lambda x: _conv_bias_relu(x, relu=None))
    x = _samples(16, positive=True)
    plain = _quantize(g, x, bias_correction=False)
    fixed = _quantize(g, x)
    assert plain.bias_corrected == [] and fixed.bias_corrected == ["conv_int8"]
    note = next(n for n in fixed.notes if n.startswith("bias correction"))
    assert "8 other sample(s)" in note and note.endswith("kept")
    assert _ops(fixed.graph_def) == _ops(plain.graph_def)
    held_out = _samples(24, positive=True)[16:]
    for samples in (x[:8], held_out):
        before = _mean_error_per_channel(g, plain.graph_def, samples)
        assert _mean_error_per_channel(g, fixed.graph_def, samples) < 0.3 * before
    assert fixed.to_dict()["bias_corrected"] == ["conv_int8"]


def test_bias_correction_fits_units_after_those_upstream_and_helps_a_deep_graph():
    from leangraph.quantization import bias

    g = _graph(_residual_blocks)
    masks = bias._upstream(g, ["c1", "c2", "proj", "c3"])
    assert masks == {"c1": 0, "c2": 0b1, "proj": 0b11, "c3": 0b11}
    g = _graph(_inverted_residuals)
    x = _samples(16)
    test = np.random.default_rng(11).standard_normal((8, 12, 12, 8)).astype(np.float32)
    plain = _quantize(g, x, bias_correction=False)
    fixed = _quantize(g, x)
    assert len(fixed.bias_corrected) == len(Q.quantized_units(fixed.graph_def))
    assert _sqnr_on(g, fixed.graph_def, test) > _sqnr_on(g, plain.graph_def, test)


def test_a_bias_correction_that_loses_is_measured_and_dropped(monkeypatch):
    from leangraph.quantization import bias as B
    from leangraph.quantization import int8 as I

    g = _graph(_separable_chain)
    x = _samples(8)  # no more samples: judged on the ones it was fitted on
    plain = _quantize(g, x, bias_correction=False)

    def wrong(graph_def, probe, ends, feeds, float_values, **_):
        by = {n.name: n for n in probe.node}
        return {name: np.full(tf.make_ndarray(by[bias].attr["value"].tensor).shape, 5.0,
                              np.float32)
                for name, bias, _ in B._bias_targets(probe, ends).values()}

    monkeypatch.setattr(I, "_correct_biases", wrong)
    dropped = _quantize(g, x)
    note = next(n for n in dropped.notes if n.startswith("bias correction"))
    assert "the same samples" in note and note.endswith("not kept")
    assert dropped.bias_corrected == []
    assert list(dropped.graph_def.node) == list(plain.graph_def.node)


def _own_conv_graph(shape):
    """conv -> bias -> relu with weights of its own seed (the module's RNG, which the
    graphs above draw from in order, is left alone)."""
    rng = np.random.default_rng(11)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape, name="input")
        y = tf.nn.conv2d(x, _c(rng.normal(size=(3, 3, 8, 16)) * 0.2), 1, "SAME", name="conv")
        y = tf.nn.bias_add(y, _c(rng.normal(size=16) * 0.1), name="bias")
        tf.identity(tf.nn.relu(y, name="act"), name="output")
    return graph.as_graph_def()


def test_examples_fed_one_by_one_calibrate_as_the_same_examples_stacked():
    """A list of {input: array}, each example fed whole (what --data's folder form gives):
    the same examples give the same ranges, checks and graph as when stacked."""
    g = _own_conv_graph((1, 12, 12, 8))
    x = _samples(10)
    stacked = Q.quantize(g, x, require_int8_cpu=False)
    one_by_one = Q.quantize(g, [{"input": e[None]} for e in x], require_int8_cpu=False)
    assert one_by_one.calibration.samples == 10
    assert one_by_one.calibration.ranges == stacked.calibration.ranges
    assert one_by_one.bias_corrected == stacked.bias_corrected
    assert one_by_one.output_sqnr_db == pytest.approx(stacked.output_sqnr_db)
    assert one_by_one.graph_def == stacked.graph_def  # (protobuf equality: attr maps unordered)
    for method in ("percentile", "kl"):
        want = Q.calibrate(g, x, method=method).ranges
        got = Q.calibrate(g, [{"input": e[None]} for e in x], method=method).ranges
        assert set(got) == set(want)
        assert all(got[k] == pytest.approx(want[k]) for k in want), method
    # Examples that cannot be stacked (sizes of their own) calibrate one run each.
    g_open = _own_conv_graph((1, None, None, 8))
    rng = np.random.default_rng(4)
    sizes = [(9, 12), (12, 7), (5, 5), (14, 10), (8, 8), (6, 13), (11, 11), (7, 9), (10, 6)]
    ragged = [{"input": rng.standard_normal((1, h, w, 8)).astype(np.float32)} for h, w in sizes]
    res = Q.quantize(g_open, ragged, require_int8_cpu=False)
    assert [l.name for l in res.int8_layers] == ["conv"]
    assert res.calibration.ranges["input:0"] == (
        pytest.approx(min(float(e["input"].min()) for e in ragged)),
        pytest.approx(max(float(e["input"].max()) for e in ragged)))
    assert res.output_sqnr_db > 25
    worst = max(_rel_err(g_open, res.graph_def, e["input"]) for e in ragged)
    assert worst < 0.05


def test_bad_examples_fed_one_by_one():
    g = _own_conv_graph((1, None, None, 8))
    good = {"input": _samples(1)}
    cases = [
        ([good, {"input": _samples(1)[0]}], "example 1 for 'input' has shape \\(12, 12, 8\\)"),
        ([good, {"other": _samples(1)}], "example 1 names 'other'"),
        ([good, {}], "example 1 gives no values for input\\(s\\) input"),
        ([good, {"input": np.full((1, 3, 3, 8), np.nan, np.float32)}], "example 1 .* NaN"),
        ([good, {"input": np.zeros((1, 0, 3, 8), np.float32)}], "example 1 .* empty"),
        ([good, {"input": np.array([["a"]])}], "example 1 .* not numeric"),
        ([{"input": np.ones((1, 4, 4, 8), np.float32)}] * 2, "constant"),
    ]
    for samples, message in cases:
        with pytest.raises(leangraph.QuantizeError, match=message):
            Q.quantize(g, samples, require_int8_cpu=False)
