"""leangraph.summarize(): summarize_graph's facts and multiply-accumulates counted by hand."""

import json
import shlex

import numpy as np
import pytest
import tensorflow as tf

import graph_builders
import leangraph
from leangraph import graphs
from leangraph.cli import main as cli_main

keras = pytest.importorskip("keras")


def hand_model():
    """Two convolutions, one depthwise, one dense: MACs countable by hand."""
    keras.utils.set_random_seed(31)
    inputs = keras.Input((8, 8, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)         # 8x8x4 out, 3x3x3 window
    x = keras.layers.DepthwiseConv2D(3, padding="valid")(x)       # 6x6x4 out, 3x3 window
    x = keras.layers.Conv2D(6, 1, activation="relu")(x)           # 6x6x6 out, 1x1x4 window
    x = keras.layers.Flatten()(x)                                 # 216
    outputs = keras.layers.Dense(5, name="logits")(x)             # 216 -> 5
    return keras.Model(inputs, outputs)


HAND_MACS = {
    "Conv2D": 8 * 8 * 4 * (3 * 3 * 3) + 6 * 6 * 6 * (1 * 1 * 4),  # 6912 + 864
    "DepthwiseConv2dNative": 6 * 6 * 4 * (3 * 3),                 # 1296
    "MatMul": 216 * 5,                                            # 1080
}


@pytest.fixture(scope="module")
def hand():
    return hand_model()


@pytest.mark.parametrize("batch", [1, 3, None])
def test_macs_equal_the_hand_count(hand, batch):
    frozen = leangraph.freeze(hand, batch_size=batch)
    summary = leangraph.summarize(frozen)
    assert summary.macs_by_op == HAND_MACS
    assert summary.macs == sum(HAND_MACS.values()) == 10152
    assert summary.macs_unknown == []
    assert summary.batch == (batch or 1)


def test_transpose_conv_and_batch_matmul_macs():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2, 4, 4, 2], name="x")
        kernel = tf.constant(np.ones((2, 2, 3, 2), np.float32))  # [kh, kw, out, in]
        up = tf.nn.conv2d_transpose(x, kernel, [2, 8, 8, 3], strides=2, name="up")
        seq = tf.reshape(up, [2, 64, 3])
        tf.matmul(seq, tf.constant(np.ones((2, 3, 7), np.float32)), name="bmm")
    summary = leangraph.summarize(graph.as_graph_def())
    assert summary.batch == 2
    # per example: |dY| * kh * kw * out = 32 * 2 * 2 * 3 ; |O| * K = 64 * 7 * 3
    assert summary.macs_by_op == {"Conv2DBackpropInput": 384, "BatchMatMulV2": 1344}
    assert summary.macs == 384 + 1344


def test_unknown_shapes_are_listed_not_guessed():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, None, name="x")
        tf.matmul(x, tf.constant(np.ones((3, 2), np.float32)), name="mm")
    summary = leangraph.summarize(graph.as_graph_def())
    assert summary.macs == 0
    assert summary.macs_unknown == ["mm"]
    assert summary.inputs[0].shape is None
    assert "not counted" in str(summary)


def test_parameters_control_edges_and_ops():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        w = tf.constant(np.ones((4, 3), np.float32), name="w")       # 12 x 4 bytes
        k = tf.constant(np.int32(7), name="k")                       # 1 x 4 bytes
        with tf.control_dependencies([k]):
            y = tf.matmul(x, w, name="y")
        tf.identity(y, name="out")
    summary = leangraph.summarize(graph.as_graph_def())
    assert (summary.const_params, summary.const_bytes) == (13, 52)
    assert summary.control_edges == 1
    assert summary.op_counts == {"Const": 2, "Identity": 1, "MatMul": 1, "Placeholder": 1}
    assert summary.node_count == 5
    assert [(t.name, t.dtype, t.shape) for t in summary.inputs] == [("x", "float32", (1, 4))]
    assert [(t.name, t.dtype, t.shape) for t in summary.outputs] == [("out", "float32", (1, 3))]
    assert summary.macs == 12


def test_naive_freeze_shows_its_control_edges(hand):
    naive = graph_builders.freeze_keras(hand, (1, 8, 8, 3))
    clean = leangraph.freeze(hand).graph_def
    assert leangraph.summarize(naive).control_edges > 0
    assert leangraph.summarize(clean).control_edges == 0
    assert leangraph.summarize(naive).macs == leangraph.summarize(clean).macs


def test_bench_command_and_outputs(tmp_path, hand):
    path = leangraph.freeze(hand, batch_size=None).save(tmp_path / "hand model.pb")
    summary = leangraph.summarize(path)
    assert [t.name for t in summary.outputs] == ["logits"]
    argv = shlex.split(summary.bench_command)
    assert argv == ["leangraph-bench", "--graph", str(path),
                    "--input", "pixels:1,8,8,3:float32", "--output", "logits"]
    assert leangraph.summarize(hand, graph_path="x.pb").bench_command.split()[2] == "x.pb"


def test_to_dict_and_str(hand):
    summary = leangraph.summarize(leangraph.freeze(hand))
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["macs"] == 10152
    assert data["inputs"] == [{"name": "pixels", "dtype": "float32", "shape": [1, 8, 8, 3]}]
    assert data["macs_by_op"] == HAND_MACS
    assert data["op_counts"] == summary.op_counts
    text = str(summary)
    for expected in ("pixels", "logits", "10,152", "DepthwiseConv2dNative", "leangraph-bench",
                     "0 control edges"):
        assert expected in text


def test_summarize_errors(tmp_path):
    with pytest.raises(leangraph.GraphError, match="not found"):
        leangraph.summarize(tmp_path / "missing.pb")
    (tmp_path / "junk.pb").write_bytes(b"\x07\xff\xfe garbage")
    with pytest.raises(leangraph.GraphError):
        leangraph.summarize(tmp_path / "junk.pb")


def test_cli_summarize(tmp_path, capsys, hand):
    hand.save(tmp_path / "hand.keras")
    assert cli_main(["summarize", str(tmp_path / "hand.keras"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["macs"] == 10152
    assert data["control_edges"] == 0

    graphs.save_graph(graph_builders.conv_bn_graph(), tmp_path / "conv.pbtxt")
    assert cli_main(["summarize", str(tmp_path / "conv.pbtxt")]) == 0
    out = capsys.readouterr().out
    assert "Multiply-accumulates per example" in out
    assert f"--graph {tmp_path / 'conv.pbtxt'}" in out

    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda t: t + 1.0)])
    model.save(tmp_path / "lambda.keras")
    assert cli_main(["summarize", str(tmp_path / "lambda.keras")]) == 1
    assert "runs code from the file" in capsys.readouterr().err
    assert cli_main(["summarize", str(tmp_path / "lambda.keras"), "--unsafe"]) == 0
    assert cli_main(["summarize", str(tmp_path / "nothing.pb")]) == 1
    assert "not found" in capsys.readouterr().err


def test_a_bf16_conv_with_its_residual_sum_counts_its_macs():
    """to_bfloat16 writes a conv + residual add + relu as one _MklNativeFusedConv2D; its MACs
    are the conv's, as in the fp32 graph."""
    import keras

    import leangraph

    inputs = keras.Input((16, 16, 8))
    conv = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    model = keras.Model(inputs, keras.layers.ReLU()(keras.layers.Add()([conv, inputs])))
    frozen = leangraph.freeze(model)
    deploy = leangraph.transform(frozen.graph_def, leangraph.recipe("deploy", frozen.graph_def))
    bf16 = leangraph.transform(deploy, "to_bfloat16")
    assert "_MklNativeFusedConv2D" in {n.op for n in bf16.node}
    assert leangraph.summarize(bf16).macs == leangraph.summarize(deploy).macs == 16 * 16 * 8 * 9 * 8
