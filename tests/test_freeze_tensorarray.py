"""A TF1 checkpoint whose outputs come out of a v1 dynamic_rnn (TensorArrayV3 handles
entering a while loop as DT_RESOURCE) freezes: a TensorArray is made anew on every run,
so it is not state (chiron's basecaller checkpoint). A variable handle still is."""

import numpy as np
import pytest
import tensorflow as tf

from leangraph import freeze
from leangraph.errors import FreezeError
from leangraph.freezing.clean import _check_clean
from leangraph.runner import run

v1 = tf.compat.v1


def _rnn_checkpoint(folder):
    from tensorflow.python.ops import control_flow_util

    was_v2 = control_flow_util.ENABLE_CONTROL_FLOW_V2
    v1.disable_control_flow_v2()
    try:
        graph = tf.Graph()
        with graph.as_default():
            x = v1.placeholder(tf.float32, [2, 6, 3], name="signal")
            lengths = v1.placeholder(tf.int32, [2], name="lengths")
            w = v1.get_variable("w", [3 + 4, 4],
                                initializer=v1.random_normal_initializer(seed=1))

            def step(t, h, out):
                h = tf.tanh(tf.matmul(tf.concat([x[:, t], h], 1), w))
                return t + 1, h, out.write(t, h)

            out = tf.TensorArray(tf.float32, size=6)
            _, _, out = tf.while_loop(lambda t, *_: t < 6, step,
                                      (tf.constant(0), tf.zeros([2, 4]), out))
            mask = tf.sequence_mask(lengths, 6, dtype=tf.float32)
            tf.identity(tf.transpose(out.stack(), [1, 0, 2]) * mask[..., None], name="logits")
            saver = v1.train.Saver()
            feeds = {x: np.random.default_rng(0).normal(size=(2, 6, 3)).astype(np.float32),
                     lengths: np.array([6, 4], np.int32)}
            with v1.Session(graph=graph) as session:
                session.run(v1.global_variables_initializer())
                expected = session.run("logits:0", feeds)
                saver.save(session, str(folder / "model.ckpt"))
        return folder, {"signal": feeds[x], "lengths": feeds[lengths]}, expected
    finally:
        if was_v2:
            v1.enable_control_flow_v2()


def test_a_checkpoint_with_tensorarrays_in_a_while_loop_freezes(tmp_path):
    folder, feeds, expected = _rnn_checkpoint(tmp_path)
    frozen = freeze(str(folder), outputs="logits")
    ops = {n.op for n in frozen.graph_def.node}
    assert "TensorArrayV3" in ops and "Enter" in ops
    (got,) = run(frozen.graph_def, feeds, ["logits"])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_a_variable_handle_is_still_state():
    graph = tf.Graph()
    with graph.as_default():
        handle = v1.placeholder(tf.resource, [], name="handle")
        tf.identity(handle, name="passed")
    with pytest.raises(FreezeError, match="keeps state"):
        _check_clean(graph.as_graph_def())
