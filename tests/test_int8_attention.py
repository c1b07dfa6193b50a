"""int8 takes a MultiHeadAttention's projections: Keras 3's EinsumDense freezes to a
BatchMatMulV2 of the [B, T, C] activation by a Const [C, D] matrix, which the rewrite (Conv2D,
DepthwiseConv2dNative, MatMul) left float; quantize makes each a MatMul between two Reshapes."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def attention(tmp_path_factory):
    import keras

    from leangraph import freeze

    keras.utils.set_random_seed(0)
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(40, 16)(tokens)
    h = keras.layers.LayerNormalization()(h + keras.layers.MultiHeadAttention(2, 8)(h, h))
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling1D()(h))
    path = tmp_path_factory.mktemp("attention") / "mha.keras"
    keras.Model(tokens, out).save(path)
    return freeze(str(path))


def _tokens(n, seed):
    return np.random.default_rng(seed).integers(0, 40, (n, 12)).astype(np.int32)


def _run(graph, frozen, x):
    from leangraph import runner

    name, out = frozen.inputs[0].name, frozen.outputs[0].name
    return np.concatenate([runner.run(graph, {name: e[None]}, [out])[0] for e in x])


def test_batch_matmuls_by_a_const_matrix_become_matmuls_computing_the_same(attention):
    from leangraph.quantization.prepare import batch_matmuls_as_matmuls, fold_constant_weights

    graph = fold_constant_weights(attention.graph_def)  # the weights' Reshapes made Consts
    ops = [n.op for n in graph.node]
    assert ops.count("BatchMatMulV2") == 4 and "MatMul" in ops  # query, key, value, output
    rewritten = batch_matmuls_as_matmuls(graph)
    after = [n.op for n in rewritten.node]
    assert "BatchMatMulV2" not in after and after.count("MatMul") == ops.count("MatMul") + 4
    x = _tokens(4, 0)
    np.testing.assert_allclose(_run(rewritten, attention, x), _run(graph, attention, x),
                               rtol=1e-5, atol=1e-6)
    assert batch_matmuls_as_matmuls(rewritten) is rewritten


def test_int8_quantizes_the_attention_projections(attention, int8_anywhere):
    from leangraph import quantize
    from leangraph.metrics import agreement, sqnr_db

    result = quantize(attention.graph_def, _tokens(48, 1))
    projections = [l for l in result.layers
                   if any(p in l.name for p in ("query", "key", "value", "attention_output"))]
    assert len(projections) == 4 and all(l.precision == "int8" for l in projections)
    x = _tokens(16, 2)
    want, got = _run(attention.graph_def, attention, x), _run(result.graph_def, attention, x)
    assert sqnr_db(want, got) >= 20 and agreement(got, want, "classes") >= 0.9


def _loop_with_a_batch_matmul():
    """A TF 1 while loop whose body multiplies a [1, 4, 8] state by a Const reshaped."""
    import tensorflow as tf

    tf.compat.v1.disable_control_flow_v2()
    try:
        g = tf.Graph()
        with g.as_default():
            x = tf.compat.v1.placeholder(tf.float32, [1, 4, 8], name="x")
            w = np.random.default_rng(0).normal(size=(64,)).astype(np.float32) * 0.2

            def body(i, h):
                return i + 1, tf.nn.relu(tf.matmul(h, tf.reshape(tf.constant(w), [8, 8])))

            _, h = tf.compat.v1.while_loop(lambda i, h: i < 3, body, [tf.constant(0), x])
            tf.identity(h, name="out")
        return g.as_graph_def()
    finally:
        tf.compat.v1.enable_control_flow_v2()


def test_a_batch_matmul_in_a_while_loop_is_left_as_it_is():
    """New Consts in a loop frame would need the frame's control input (without it the
    session refuses the graph): the loop's nodes are neither folded nor rewritten."""
    from leangraph import runner
    from leangraph.quantization.prepare import batch_matmuls_as_matmuls, fold_constant_weights

    graph = _loop_with_a_batch_matmul()
    assert any(n.op == "BatchMatMulV2" and n.name.startswith("while/") for n in graph.node)
    assert batch_matmuls_as_matmuls(fold_constant_weights(graph)) is graph
    x = np.ones((1, 4, 8), np.float32)
    assert runner.run(graph, {"x": x}, ["out"])[0].shape == (1, 4, 8)
