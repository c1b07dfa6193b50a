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
