"""leangraph's own transforms on real frozen Keras graphs: `deploy` keeps the numbers and leaves no batch norm.

The hand-built cases with exact node lists live in native/transforms/own_transforms_test.cc.
"""

import collections

import numpy as np
import pytest
import tensorflow as tf

import graph_builders
import leangraph
from leangraph import graphs

OWN = ["fold_keras_batch_norms", "fuse_bias_add", "strip_freeze_artifacts", "remove_identity_chains",
       "inline_grouped_convs", "fuse_matmul_reshape", "fuse_layer_norm"]

# (architecture, input size, every batch norm follows a contraction)
APPLICATIONS = [
    ("MobileNet", 32, True),
    ("MobileNetV2", 32, True),
    ("ResNet50", 32, True),
    ("EfficientNetB0", 32, True),
    ("Xception", 71, True),
    # Its pre-activation batch norms follow a Concat: they stay Mul/Add.
    ("DenseNet121", 32, False),
]


@pytest.fixture(scope="session")
def frozen_apps():
    """Frozen applications, built once per session on first use."""
    cache = {}

    def get(name, size):
        if name not in cache:
            cache[name] = graph_builders.keras_application_graph(name, size)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def separable_deconv_dense_graph():
    return graph_builders.keras_separable_deconv_dense_graph()


def _deploy(graph_def):
    return leangraph.transform(graph_def, leangraph.recipe("deploy", graph_def))


def _ops(graph_def):
    return collections.Counter(n.op for n in graph_def.node)


def _assert_same_outputs(before, after, shape, seed=0):
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    outputs = graphs.default_outputs(before)
    assert graphs.default_outputs(after) == outputs
    expected = leangraph.run(before, {"input": x}, outputs)
    actual = leangraph.run(after, {"input": x}, outputs)
    for e, a in zip(expected, actual):
        scale = float(np.max(np.abs(e)))
        assert scale > 0
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * scale)


def _batch_norm_leftovers(graph_def):
    """Nodes a batch norm leaves behind when it is not folded."""
    return [
        n.name
        for n in graph_def.node
        if n.op == "Rsqrt" or n.op.startswith("FusedBatchNorm")
        or (n.op in ("Mul", "Add", "AddV2", "Sub") and "batchnorm/" in n.name)
    ]


def test_own_transforms_are_listed():
    listed = {t.name: t for t in leangraph.list_transforms()}
    for name in OWN:
        assert listed[name].origin == "leangraph"
        assert listed[name].summary


@pytest.mark.slow
@pytest.mark.parametrize("name,size,foldable", APPLICATIONS, ids=[a[0] for a in APPLICATIONS])
def test_deploy_keeps_outputs_of_keras_applications(frozen_apps, name, size, foldable):
    frozen = frozen_apps(name, size)
    assert _batch_norm_leftovers(frozen), "the frozen graph should contain batch norms"
    deployed = _deploy(frozen)
    _assert_same_outputs(frozen, deployed, (1, size, size, 3))
    ops = _ops(deployed)
    assert ops["Rsqrt"] == 0
    assert not any(op.startswith("FusedBatchNorm") for op in ops)
    assert ops["NoOp"] == 0
    if foldable:
        assert _batch_norm_leftovers(deployed) == []
        assert ops["Mul"] <= _ops(frozen)["Mul"] - len(
            [n for n in frozen.node if n.op == "Mul" and n.name.endswith("batchnorm/mul_1")]
        )
    assert len(deployed.node) < len(frozen.node)


def test_deploy_folds_separable_transposed_and_dense_batch_norms(separable_deconv_dense_graph):
    frozen = separable_deconv_dense_graph
    deployed = _deploy(frozen)
    _assert_same_outputs(frozen, deployed, (1, 12, 12, 3))
    assert _batch_norm_leftovers(deployed) == []
    ops = _ops(deployed)
    assert ops["Mul"] == 0 and ops["AddV2"] == 0
    # Every contraction ends in exactly one BiasAdd.
    contractions = [n for n in deployed.node
                    if n.op in ("Conv2D", "Conv2DBackpropInput", "MatMul")]
    readers = collections.Counter(graphs.node_name(i) for n in deployed.node for i in n.input
                                  if n.op == "BiasAdd")
    assert all(readers[n.name] == 1 for n in contractions)


def test_deploy_puts_a_sequence_dense_layers_bias_and_relu_next_to_its_matmul():
    """Keras 3 lowers Dense on a sequence to MatMul -> Reshape -> BiasAdd -> Relu and an
    attention projection to BatchMatMulV2 -> Reshape -> AddV2; Grappler fuses neither."""
    frozen = graph_builders.keras_encoder_block_graph()
    deployed = _deploy(frozen)
    _assert_same_outputs(frozen, deployed, (2, 6, 16))

    def reader_ops(name):
        return [n.op for n in deployed.node if name in (graphs.node_name(i) for i in n.input)]

    def weighted(graph_def):
        named = {n.name: n for n in graph_def.node}
        return [n for n in graph_def.node if n.op == "BatchMatMulV2"
                and named[graphs.node_name(n.input[1])].op == "Const"]

    # The query, key, value and output projections, as deploy without this step leaves them.
    without = leangraph.transform(
        frozen, leangraph.recipe("deploy", frozen).replace("fuse_matmul_reshape ", ""))
    assert len(weighted(without)) == 4 and weighted(deployed) == []
    matmuls = [n for n in deployed.node if n.op == "MatMul"]
    # Dense 32 (Relu), Dense 16, the sigmoid head and the four projections: each MatMul is
    # read by its BiasAdd alone, and the activations sit right behind them.
    assert len(matmuls) == 7
    assert all(reader_ops(n.name) == ["BiasAdd"] for n in matmuls)
    after_bias = collections.Counter(op for n in deployed.node if n.op == "BiasAdd"
                                     for op in reader_ops(n.name))
    assert after_bias["Relu"] == 1 and after_bias["Sigmoid"] == 1
    assert _ops(deployed)["BiasAdd"] == len(matmuls)


def test_deploy_fuses_keras_layer_normalization_of_a_large_tensor(modern_blocks_graph):
    """Keras 3's LayerNormalization freezes to eleven ops; deploy makes each one
    `_MklLayerNorm` where the tensor has 65536 elements or more ([64, 64, 16] here). The
    kernel's fixed cost is more than a small tensor's ops take: those stay."""
    frozen = graph_builders.keras_encoder_block_graph(batch=64, steps=64)
    deployed = _deploy(frozen)
    _assert_same_outputs(frozen, deployed, (64, 64, 16))
    ops = _ops(deployed)
    assert ops["_MklLayerNorm"] == 2
    assert ops["Mean"] == ops["Rsqrt"] == ops["SquaredDifference"] == ops["Neg"] == 0
    for small in (graph_builders.keras_encoder_block_graph(), modern_blocks_graph):
        ops = _ops(_deploy(small))
        assert ops["_MklLayerNorm"] == 0 and ops["Rsqrt"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("MobileNetV2", 32), ("Xception", 71)])
def test_deploy_is_idempotent(frozen_apps, name, size):
    once = _deploy(frozen_apps(name, size))
    twice = _deploy(once)
    assert [(n.name, n.op, list(n.input)) for n in twice.node] == [
        (n.name, n.op, list(n.input)) for n in once.node
    ]
    assert twice.SerializeToString(deterministic=True) == once.SerializeToString(deterministic=True)


def test_deploy_inlines_keras_grouped_convs_and_drops_pass_throughs(modern_blocks_graph):
    """Keras runs grouped Conv2D as jit_compile'd calls; deploy makes them plain oneDNN convs."""
    frozen = modern_blocks_graph
    assert _ops(frozen)["StatefulPartitionedCall"] == 3
    assert len(frozen.library.function) == 3
    assert _ops(frozen)["IdentityN"] == 1 and _ops(frozen)["StopGradient"] == 1
    deployed = _deploy(frozen)
    _assert_same_outputs(frozen, deployed, (1, 10, 10, 8))
    ops = _ops(deployed)
    assert not any("Call" in op for op in ops)
    assert len(deployed.library.function) == 0
    # groups == channels (x1 and x2 outputs per group) is depthwise; groups=4 stays a grouped Conv2D.
    assert ops["DepthwiseConv2dNative"] == 2 and ops["Conv2D"] == 1
    for op in ("NoOp", "IdentityN", "StopGradient"):
        assert ops[op] == 0, op
    # The batch norms after the grouped convs fold into them (a BiasAdd keeps the add's name).
    assert [n.name for n in deployed.node if "batch_normalization" in n.name
            and n.op in ("Mul", "Add", "AddV2", "Sub", "Rsqrt")] == []
    assert ops["BiasAdd"] >= 3


def test_tf_fold_batch_norms_leaves_keras_batch_norms(keras_cnn_graph):
    """Why these transforms exist: TF's recipe folds none of a frozen Keras 3 graph's batch norms."""
    tf_deployed = leangraph.transform(keras_cnn_graph, leangraph.recipe("tf-deploy", keras_cnn_graph))
    assert len(_batch_norm_leftovers(tf_deployed)) > 0
    assert _batch_norm_leftovers(_deploy(keras_cnn_graph)) == []


def test_each_own_transform_keeps_outputs(keras_cnn_graph):
    current = keras_cnn_graph
    for name in OWN:
        current = leangraph.transform(current, name)
        _assert_same_outputs(keras_cnn_graph, current, (1, 24, 24, 3))
    assert _ops(current)["NoOp"] == 0


def _cond_graph():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2], name="input")
        pred = tf.compat.v1.placeholder(tf.bool, [], name="pred")
        y = tf.identity(tf.identity(x) * 2.0)
        out = tf.compat.v1.cond(pred, lambda: y + 1.0, lambda: tf.identity(y) - 1.0)
        tf.identity(out, name="output")
    return graph.as_graph_def()


def test_remove_identity_chains_keeps_tf_cond_working():
    graph_def = _cond_graph()
    result = leangraph.transform(graph_def, "remove_identity_chains", ["input", "pred"], ["output"])
    assert len(result.node) < len(graph_def.node)
    x = np.array([1.0, 2.0], np.float32)
    for pred, expected in ((True, [3.0, 5.0]), (False, [1.0, 3.0])):
        (out,) = leangraph.run(result, {"input": x, "pred": pred}, ["output"])
        np.testing.assert_allclose(out, expected)


def test_strip_freeze_artifacts_keeps_edges_that_order_stateful_ops():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2], name="input")
        c = tf.constant([1.0, 2.0], name="c")
        with tf.control_dependencies([c]):
            noise = tf.random.uniform([2], name="noise")
        with tf.control_dependencies([noise]):
            tf.identity(x + c, name="output")
    graph_def = graph.as_graph_def()
    result = leangraph.transform(graph_def, "strip_freeze_artifacts", ["input"], ["output"])
    by_name = {n.name: n for n in result.node}
    ordered_after_noise = [(n.name, i) for n in graph_def.node for i in n.input
                           if i == "^noise/RandomUniform"]
    assert ordered_after_noise
    for name, edge in ordered_after_noise:
        assert edge in by_name[name].input
    before = {n.name: list(n.input) for n in graph_def.node if n.op == "RandomUniform"}
    assert before
    for name, inputs in before.items():
        assert list(by_name[name].input) == inputs
    (out,) = leangraph.run(result, {"input": np.zeros(2, np.float32)}, ["output"])
    np.testing.assert_allclose(out, [1.0, 2.0])


def test_removed_nodes_leave_no_colocation_behind():
    """TF refuses to run a graph whose `_class` names a missing node; a frozen while loop
    colocates nodes with Identity nodes that remove_identity_chains takes out."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2], name="input")
        c = tf.constant([1.0, 2.0], name="c")
        tf.identity(x, name="id")
        tf.nn.relu(tf.identity(x, name="id2") + c, name="output")
    graph_def = graph.as_graph_def()
    by_name = {n.name: n for n in graph_def.node}
    by_name["output"].attr["_class"].list.s.extend([b"loc:@id2", b"loc:@c"])
    by_name["c"].attr["_class"].list.s.append(b"loc:@id")
    result = leangraph.transform(graph_def, "remove_identity_chains strip_unused_nodes",
                                 ["input"], ["output"])
    kept = {n.name: n for n in result.node}
    assert "id2" not in kept and "id" not in kept
    assert list(kept["output"].attr["_class"].list.s) == [b"loc:@c"]
    assert "_class" not in kept["c"].attr
    (out,) = leangraph.run(result, {"input": np.array([-3.0, 1.0], np.float32)}, ["output"])
    np.testing.assert_allclose(out, [0.0, 3.0])


def test_deploy_runs_a_frozen_keras_lstm():
    import keras

    keras.utils.set_random_seed(0)
    tokens = keras.Input((6,), dtype="int32")
    h = keras.layers.LSTM(4)(keras.layers.Embedding(20, 8)(tokens))
    model = keras.Model(tokens, keras.layers.Dense(2)(h))
    frozen = leangraph.freeze(model)
    assert any(n.op == "Enter" for n in frozen.graph_def.node)  # a lowered while loop
    result = leangraph.transform(frozen.graph_def, leangraph.recipe("deploy", frozen.graph_def))
    x = np.random.default_rng(0).integers(0, 20, (1, 6)).astype(np.int32)
    want = model(x, training=False).numpy()
    (got,) = leangraph.run(result, {frozen.input_names[0]: x})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
