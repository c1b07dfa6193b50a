"""tf.keras 2 models (the tf_keras package): a model object and a .keras archive it wrote.

Found on textgenrnn (bench/results/2026-12-06-zen4-real_models-3.md): a package written for
TF 2.x Keras builds its model with tf_keras; leangraph refused the object ("freeze() takes a
keras.Model ...; got Functional") and Keras 3 misread its .keras archive ("Could not locate
class 'Functional'").
"""

import numpy as np
import pytest

import leangraph
from leangraph.cli import main as cli_main

tf_keras = pytest.importorskip("tf_keras")


def small_model():
    """Embedding + LSTM + a softmax and a second, linear head: what the char-level text
    models are made of, with two named outputs."""
    tokens = tf_keras.Input((12,), name="tokens")
    x = tf_keras.layers.Embedding(30, 8)(tokens)
    x = tf_keras.layers.LSTM(16)(x)
    x = tf_keras.layers.BatchNormalization()(x)
    probs = tf_keras.layers.Dense(30, activation="softmax", name="next_char")(x)
    score = tf_keras.layers.Dense(1, name="score")(x)
    model = tf_keras.Model(tokens, [probs, score])
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 2, w.shape).astype("float32")
                               for w in layer.get_weights()])
    return model


def tokens(n=4):
    return np.random.default_rng(1).integers(0, 30, (n, 12)).astype("float32")


def run(frozen, x):
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(frozen.graph_def, name="")
    names = [f"{o.name}:0" for o in frozen.outputs]
    with tf.compat.v1.Session(graph=graph) as session:
        return [session.run(names, {f"{frozen.inputs[0].name}:0": x[i:i + 1]})
                for i in range(len(x))]


def check_against(frozen, model):
    x = tokens()
    assert [i.name for i in frozen.inputs] == ["tokens"]
    assert [o.name for o in frozen.outputs] == ["next_char", "score"]
    want = model(x, training=False)
    got = run(frozen, x)
    for k in range(2):
        np.testing.assert_allclose(np.concatenate([g[k] for g in got]), want[k].numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_tf_keras_model_object_freezes_and_matches():
    model = small_model()
    frozen = leangraph.freeze(model)
    assert frozen.source == "tf_keras"
    check_against(frozen, model)


def test_tf_keras_archive_freezes_and_matches(tmp_path):
    model = small_model()
    path = tmp_path / "model.keras"
    model.save(path)
    frozen = leangraph.freeze(str(path))
    check_against(frozen, model)


def test_tf_keras_archive_with_an_unknown_class_is_one_clear_line(tmp_path, capsys):
    class Doubled(tf_keras.layers.Layer):
        def call(self, x):
            return 2 * x

    i = tf_keras.Input((3,))
    tf_keras.Model(i, Doubled()(i)).save(tmp_path / "custom.keras")
    code = cli_main(["freeze", str(tmp_path / "custom.keras"), "-o", str(tmp_path / "x.pb")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1, err
    assert "written by tf.keras" in err[0] and "Doubled (test_freeze_tf_keras)" in err[0]
    assert not (tmp_path / "x.pb").exists()
