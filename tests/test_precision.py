"""evaluate(), to_bfloat16 on the digits reference model, and TF's 8-bit weights."""

import numpy as np
import pytest
import tensorflow as tf

import graph_builders
import leangraph
from leangraph import precision
from leangraph.pipeline import precisions
from leangraph.errors import LeangraphError
from leangraph.reference_model import reference_model

# TensorFlow's DataType enum values, as stored in GraphDef attrs.
DT_FLOAT, DT_BFLOAT16 = 1, 14


@pytest.fixture(scope="session")
def digits():
    return reference_model()


@pytest.fixture(scope="session")
def digits_bf16(digits):
    return precision.to_bfloat16(digits.graph_def)


def _linear_graph(offset=(0.0, 0.0, 0.0), batch=None):
    """input [batch, 3] -> + offset -> output: argmax is the largest input column."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [batch, 3], name="input")
        tf.identity(x + tf.constant(np.asarray(offset, np.float32)), name="output")
    return graph.as_graph_def()


X = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0.8, 0]], np.float32)


def test_evaluate_matches_hand_computed_accuracy():
    # top-1 classes are 0, 1, 2, 1; labels 0, 1, 2, 2 -> 3 of 4 right.
    result = leangraph.evaluate(_linear_graph(), X, [0, 1, 2, 2])
    assert result.accuracy == pytest.approx(0.75)
    assert result.n == 4
    assert result.top1_agreement is None and result.max_abs_diff is None


def test_evaluate_against_a_reference_graph():
    # The reference adds 1.5 to column 2, so its top-1 is class 2 on every
    # row; ours is 0, 1, 2, 1 -> by hand they agree on 1 row of 4.
    ref = _linear_graph(offset=(0, 0, 1.5))
    result = leangraph.evaluate(_linear_graph(), X, y=[0, 1, 2, 1], reference=ref, batch_size=3)
    assert result.accuracy == pytest.approx(1.0)
    assert result.top1_agreement == pytest.approx(0.25)
    assert result.max_abs_diff == pytest.approx(1.5)
    assert result.max_rel_diff == pytest.approx(1.5 / 2.5)  # largest |reference| is 1 + 1.5


def test_evaluate_pads_the_last_batch_of_a_fixed_batch_graph():
    result = leangraph.evaluate(_linear_graph(batch=3), X, [0, 1, 2, 0], batch_size=32)
    assert result.n == 4
    assert result.accuracy == pytest.approx(0.75)


def test_evaluate_accepts_one_hot_labels():
    one_hot = np.eye(3)[[0, 1, 2, 2]]
    assert leangraph.evaluate(_linear_graph(), X, one_hot).accuracy == pytest.approx(0.75)


def test_evaluate_rejects_bad_data():
    with pytest.raises(LeangraphError, match="4 examples but y has 3"):
        leangraph.evaluate(_linear_graph(), X, [0, 1, 2])
    with pytest.raises(LeangraphError, match="at least one example"):
        leangraph.evaluate(_linear_graph(), X[:0])
    with pytest.raises(LeangraphError, match="shape"):
        leangraph.evaluate(_linear_graph(), X, reference=_two_output_graph())


def _two_output_graph():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="input")
        tf.identity(x[:, :2], name="output")
    return graph.as_graph_def()


def test_reference_model_is_accurate_and_cached(digits):
    assert digits.accuracy > 0.95
    assert len(digits.x_test) == len(digits.y_test) > 300
    assert digits.x_test.shape[1:] == (32, 32, 3)
    ops = {n.op for n in digits.graph_def.node}
    assert {"Conv2D", "DepthwiseConv2dNative", "AddV2", "MaxPool", "MatMul"} <= ops
    again = reference_model()
    assert again.graph_path == digits.graph_path and again.accuracy == digits.accuracy


def test_to_bfloat16_is_registered():
    info = {t.name: t for t in leangraph.list_transforms()}
    assert info["to_bfloat16"].origin == "leangraph"


def test_to_bfloat16_converts_compute_and_keeps_float_edges(digits, digits_bf16):
    nodes = {n.name: n for n in digits_bf16.node}
    for node in digits_bf16.node:
        if node.op in ("Conv2D", "DepthwiseConv2dNative", "MatMul"):
            assert node.attr["T"].type == DT_BFLOAT16, node.name
    assert nodes["input"].attr["dtype"].type == DT_FLOAT
    output = nodes[digits.output_name]
    assert output.attr["T"].type == DT_FLOAT
    # Casts only where a bf16 region meets a float one: never a round trip.
    casts = [n for n in digits_bf16.node if n.op == "Cast"]
    assert casts
    for cast in casts:
        producer = nodes[cast.input[0].split(":")[0]]
        assert producer.op != "Cast", f"{cast.name} casts a cast"
    input_casts = [c for c in casts if c.input[0] in ("input", "input:0")]
    assert len(input_casts) == 1
    assert input_casts[0].attr["DstT"].type == DT_BFLOAT16


def test_to_bfloat16_stores_every_weight_as_bf16(digits, digits_bf16):
    nodes = {n.name: n for n in digits_bf16.node}

    def source(name):
        node = nodes[name.split(":")[0]]
        while node.op == "Identity":
            node = nodes[node.input[0].split(":")[0]]
        return node

    for node in digits_bf16.node:
        if node.op in ("Conv2D", "DepthwiseConv2dNative", "MatMul"):
            weights = source(node.input[1])
            assert weights.op == "Const"
            assert weights.attr["dtype"].type == DT_BFLOAT16
            assert weights.attr["value"].tensor.dtype == DT_BFLOAT16
    before = len(digits.graph_def.SerializeToString())
    after = len(digits_bf16.SerializeToString())
    # The batch-norm statistics still feed float Rsqrt chains in a raw Keras
    # freeze; the conv and dense weights (most of the bytes) are halved.
    assert after < 0.75 * before


def test_to_bfloat16_accuracy_within_half_a_point(digits, digits_bf16):
    result = leangraph.evaluate(digits_bf16, digits.x_test, digits.y_test,
                                reference=digits.graph_def)
    assert 100 * (digits.accuracy - result.accuracy) <= 0.5
    assert result.top1_agreement >= 0.99
    # Really computed in bf16: close to fp32, but not bit-identical.
    assert 0 < result.max_abs_diff < 0.15


def test_grappler_bf16_config_runs_and_agrees(digits):
    config = precision.grappler_bf16_config(threads=2)
    assert config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 == 1
    x = digits.x_test[:64]
    result = leangraph.evaluate(digits.graph_def, x, reference=digits.graph_def,
                                session_config=config)
    assert result.top1_agreement >= 0.98


def test_quantize_weights_shrinks_the_file_and_keeps_accuracy(digits):
    ends = ([digits.input_name], [digits.output_name])
    quantized, config, _ = precisions.choose("int8-weights").build(digits.graph_def, ends)
    assert config is None
    assert "Dequantize" in {n.op for n in quantized.node}
    assert len(quantized.SerializeToString()) < len(digits.graph_def.SerializeToString())
    result = leangraph.evaluate(quantized, digits.x_test, digits.y_test)
    assert 100 * (digits.accuracy - result.accuracy) <= 1.0


def test_unknown_precision_is_named():
    with pytest.raises(LeangraphError, match="unknown precision 'fp8'.*bf16"):
        precisions.choose("fp8")


def test_fake_no_bf16_is_honoured(monkeypatch):
    from leangraph import hardware

    monkeypatch.setenv("LEANGRAPH_FAKE_NO_BF16", "1")
    assert hardware.cpu_supports_bf16() is False


def test_to_bfloat16_keeps_swish_hard_swish_and_layer_norm_in_one_region(modern_blocks_graph):
    """No cast pair around each activation of EfficientNet/MobileNetV3/ConvNeXt-style blocks."""
    deployed = leangraph.transform(modern_blocks_graph, leangraph.recipe("deploy", modern_blocks_graph))
    low = precision.to_bfloat16(deployed)
    types = {}
    for n in low.node:
        if n.op in ("DepthwiseConv2dNative", "Conv2D", "Sigmoid", "RealDiv", "SquaredDifference",
                    "Rsqrt", "Erfc", "MatMul"):
            types.setdefault(n.op, set()).add(n.attr["T"].type)
    assert types.pop("Erfc") == {tf.float32.as_datatype_enum}  # scalar bf16 kernel: kept fp32
    assert len(types) == 7
    assert all(t == {tf.bfloat16.as_datatype_enum} for t in types.values()), types
    # The input, both sides of Erfc, and the output: nothing else crosses.
    assert sum(n.op == "Cast" for n in low.node) == 4
    x = np.random.default_rng(0).normal(size=(1, 10, 10, 8)).astype(np.float32)
    (ref,) = leangraph.run(deployed, {"input": x})
    (out,) = leangraph.run(low, {"input": x})
    assert np.abs(out - ref).max() <= 3e-2 * np.abs(ref).max()


def test_to_bfloat16_runs_the_fused_layer_norm_in_bf16():
    """An encoder block's deploy graph: its `_MklLayerNorm`s and projections in one bf16
    region with the MatMuls around them."""
    frozen = graph_builders.keras_encoder_block_graph(batch=64, steps=64)
    deployed = leangraph.transform(frozen, leangraph.recipe("deploy", frozen))
    low = precision.to_bfloat16(deployed)
    norms = [n for n in low.node if n.op == "_MklLayerNorm"]
    assert len(norms) == 2
    assert all(n.attr["T"].type == tf.bfloat16.as_datatype_enum for n in norms)
    assert all(n.attr["T"].type == tf.bfloat16.as_datatype_enum for n in low.node
               if n.op == "MatMul")
    x = np.random.default_rng(0).normal(size=(64, 64, 16)).astype(np.float32)
    (ref,) = leangraph.run(deployed, {"input": x})
    (out,) = leangraph.run(low, {"input": x})
    assert np.abs(out - ref).max() <= 3e-2 * np.abs(ref).max()


def test_to_bfloat16_looks_through_the_identity_n_of_swish(modern_blocks_graph):
    inlined = leangraph.transform(modern_blocks_graph, "inline_grouped_convs")
    assert any(n.op == "IdentityN" for n in inlined.node)
    low = precision.to_bfloat16(inlined)
    assert not any(n.op == "IdentityN" for n in low.node)
    sigmoid = next(n for n in low.node if n.op == "Sigmoid")
    assert sigmoid.attr["T"].type == tf.bfloat16.as_datatype_enum
    x = np.random.default_rng(1).normal(size=(1, 10, 10, 8)).astype(np.float32)
    (ref,) = leangraph.run(modern_blocks_graph, {"input": x})
    (out,) = leangraph.run(low, {"input": x})
    assert np.abs(out - ref).max() <= 3e-2 * np.abs(ref).max()


def test_quantize_weights_keeps_all_zero_tensors_finite():
    """TF's quantize_weights turns a large all-zero constant into NaN; leangraph keeps it float."""
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 64], name="input")
        zeros = tf.constant(np.zeros((64, 32), np.float32), name="zeros")
        w = tf.constant(np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32),
                        name="w")
        tf.identity(tf.matmul(x, zeros) + tf.matmul(x, w), name="out")
    graph = g.as_graph_def()
    raw = leangraph.transform(graph, "quantize_weights")
    feed = {"input": np.ones((1, 64), np.float32)}
    assert np.isnan(leangraph.run(raw, feed)[0]).all()  # TF's own result
    fixed = precision.quantize_weights(graph)
    ops = {n.name: n.op for n in fixed.node}
    assert ops["zeros"] == "Const" and ops["w"] == "Dequantize"
    assert not any(name.startswith("zeros_quantized") for name in ops)
    (out,) = leangraph.run(fixed, feed)
    (ref,) = leangraph.run(graph, feed)
    assert np.isfinite(out).all()
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()


def test_quantize_weights_keeps_what_is_not_a_weight_float():
    """TF's quantize_weights takes every float constant of 1024 values or more, a batch norm's
    moving variance too: 8-bit steps of a variance spanning 1e-6 to 300, through the Rsqrt
    after it, wreck the outputs (musicnn's tagger: 1 dB SQNR). Only weights go to 8 bits."""
    from leangraph.metrics import sqnr_db

    rng = np.random.default_rng(0)
    channels = 1536
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 64], name="input")
        w = tf.constant(rng.normal(size=(64, channels)).astype(np.float32) * 0.1, name="w")
        h = tf.matmul(x, tf.identity(w, name="w/read"))
        variance = np.exp(rng.uniform(np.log(1e-6), np.log(300.0), channels))
        mean = rng.normal(size=channels) * 0.01
        h = (h - tf.constant(mean.astype(np.float32), name="moving_mean")) * tf.math.rsqrt(
            tf.constant(variance.astype(np.float32), name="moving_variance") + 1e-3)
        tf.identity(h, name="out")
    graph = g.as_graph_def()
    feed = {"input": rng.normal(size=(8, 64)).astype(np.float32)}
    (ref,) = leangraph.run(graph, feed)
    (raw,) = leangraph.run(leangraph.transform(graph, "quantize_weights"), feed)
    assert sqnr_db(ref, raw) < 15  # TF's own
    assert precision.weight_constants(graph) == {"w"}
    fixed = precision.quantize_weights(graph)
    ops = {n.name: n.op for n in fixed.node}
    assert ops["w"] == "Dequantize"
    assert ops["moving_variance"] == ops["moving_mean"] == "Const"
    (out,) = leangraph.run(fixed, feed)
    assert sqnr_db(ref, out) > 30


def _untrained_conv_bn_relu():
    """Conv -> BatchNorm -> ReLU twice, untrained: every folded bias is exactly 0."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 8), name="input")
    x = inputs
    for _ in range(2):
        x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    frozen = leangraph.freeze(model).graph_def
    return leangraph.transform(frozen, leangraph.recipe("deploy", frozen))


def _bias_values(graph_def):
    nodes = {n.name: n for n in graph_def.node}
    return [tf.make_ndarray(nodes[n.input[1]].attr["value"].tensor).astype(np.float32)
            for n in graph_def.node if n.op == "BiasAdd"]


def test_to_bfloat16_keeps_zero_biases_fusable_and_results_identical():
    deployed = _untrained_conv_bn_relu()
    assert all(not b.any() for b in _bias_values(deployed))
    tiny = precision.to_bfloat16(deployed)
    exact = precision.to_bfloat16(deployed, zero_bias="exact")
    tiny_biases, exact_biases = _bias_values(tiny), _bias_values(exact)
    assert len(tiny_biases) == 2 and all((b == 2.0 ** -126).all() for b in tiny_biases)
    assert all(not b.any() for b in exact_biases)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 8)).astype(np.float32)
    (a,) = leangraph.run(tiny, {"input": x})
    (b,) = leangraph.run(exact, {"input": x})
    np.testing.assert_array_equal(a, b)
    with pytest.raises(leangraph.TransformError, match="zero_bias"):
        precision.to_bfloat16(deployed, zero_bias="small")


@pytest.mark.skipif(not leangraph.cpu_supports_bf16(), reason="needs a bf16 CPU for oneDNN's fusion")
def test_tiny_zero_bias_lets_grappler_fuse_the_relu():
    deployed = _untrained_conv_bn_relu()

    def op_types(graph):
        result = leangraph.benchmark(graph, runs=1, warmup=0, profile=True,
                                     measure_overhead=False)
        return {row["op"]: row["count"] for row in result.profile["by_op_type"]}

    exact = op_types(precision.to_bfloat16(deployed, zero_bias="exact"))
    tiny = op_types(precision.to_bfloat16(deployed))
    # Exact zeros: Grappler deletes the BiasAdds and the ReLUs run on their own.
    assert exact.get("Relu", 0) == 2
    assert tiny.get("Relu", 0) == 0
    assert sum(n for op, n in tiny.items() if "FusedConv2D" in op) == 2


def test_the_bf16_note_says_whether_the_cpu_or_the_model_is_why():
    from leangraph.pipeline.throughput import bf16_note, matmul_gflops

    slow = bf16_note(3.0, 2.0, {"float32": 250.0, "bfloat16": 140.0, "float16": 270.0})
    assert "no throughput advantage" in slow and "140 in bf16" in slow
    assert "(3.0 ms vs fp32 2.0 ms)" in slow
    fast = bf16_note(0.4, 0.2, {"float32": 150.0, "bfloat16": 820.0, "float16": 260.0})
    assert "not faster for this model" in fast and "no throughput advantage" not in fast
    assert "820 in bf16" in fast and "(0.40 ms vs fp32 0.20 ms)" in fast
    assert "(136.4 ms vs fp32 95.0 ms)" in bf16_note(136.4, 95.0, {"float32": 1.0, "bfloat16": 1.0,
                                                                    "float16": 1.0})
    rates = matmul_gflops(size=64, repeats=1)
    assert set(rates) == {"float32", "bfloat16", "float16"} and all(r > 0 for r in rates.values())


def test_every_precision_is_one_descriptor_of_one_ordered_registry():
    names = [p.name for p in precisions.PRECISIONS]
    assert names == ["fp32", "bf16", "bf16-grappler", "int8-weights", "int8", "int8-tf"]
    for name in names:
        assert precisions.choose(name).precision.name == name
    assert precisions.choose(" INT8@25 ").param == 25.0
    assert precisions.choose("int8").param == precision.DEFAULT_MIN_SQNR_DB
    # A suffix that is no threshold is not int8 with a parameter, and int8-tf is not int8.
    for bad in ("int8@", "int8@nan", "int8@inf", "int8@x", "int8-", "fp32@1", "bf16x"):
        with pytest.raises(LeangraphError, match="unknown precision"):
            precisions.choose(bad)
    assert precisions.choose("int8-tf").precision.calibrated
    assert not precisions.choose("int8-weights").precision.calibrated
    assert precisions.lossy("bf16") and not precisions.lossy("fp32")
    assert not precisions.lossy("no-such")
    # optimize's rows come from the same list, in its order.
    assert [p.name for p in precisions.PRECISIONS if p.variant] == ["bf16", "int8-weights", "int8"]
    assert precisions.result_names() == ("fp32", "bf16", "int8")


def test_a_calibrated_precision_without_examples_is_refused(digits):
    ends = ([digits.input_name], [digits.output_name])
    with pytest.raises(LeangraphError, match="int8 needs calibration examples"):
        precisions.choose("int8").build(digits.graph_def, ends)


def test_tune_and_optimize_build_bf16_the_same_way(digits, monkeypatch):
    """One bf16 rewrite: tune's build and optimize's derived variant are the same graph, the
    logits' layer left fp32 in both."""
    from leangraph.pipeline import variants

    graph = digits.graph_def
    ends = ([digits.input_name], [digits.output_name])
    built = precisions.choose("bf16").build(graph, ends)
    best = variants.graph_variant("frozen", "the graph", graph)
    row = variants.bf16_variant(variants.BuildContext(best=best, ends=ends,
                                                      precisions=("bf16",)))
    assert leangraph.load_graph(row.graph_def) == built.graph_def
    heads = precision.bf16_heads(graph, ends[1])
    assert heads and "fp32: " + heads[0] in row.description
    kept = {n.name: n for n in built.graph_def.node}[heads[0]]
    assert kept.attr["T"].type == DT_FLOAT
