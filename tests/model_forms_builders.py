"""Builders of the model forms TF users hold, each tiny and made here.

Every builder writes into a folder it is given and returns what a user would pass
to leangraph (a path) plus what the test needs to know (names, shapes).
"""

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1


def tf1_checkpoint(folder, prefix_is_folder=True, stale_state=True):
    """A TF1 Saver checkpoint of a 2-layer MLP trained one Adam step: the graph holds
    Adam slots, gradients and a `training` flag; the `checkpoint` state file names the
    author's home folder. With prefix_is_folder the files are `folder/.meta`,
    `folder/.index`, `folder/.data-00000-of-00001`. Returns (model folder, output, x,
    the outputs on x at inference, computed in the training session)."""
    folder.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(3)
        x = v1.placeholder(tf.float32, [None, 6], name="features")
        labels = v1.placeholder(tf.float32, [None, 3], name="labels")
        training = v1.placeholder_with_default(False, [], name="is_training")
        init = v1.random_normal_initializer(stddev=0.5, seed=3)
        w1 = v1.get_variable("hidden/kernel", [6, 8], initializer=init)
        b1 = v1.get_variable("hidden/bias", [8], initializer=v1.zeros_initializer())
        hidden = tf.nn.relu(tf.matmul(x, w1) + b1)
        hidden = tf.cond(training, lambda: tf.nn.dropout(hidden, rate=0.5), lambda: hidden)
        w2 = v1.get_variable("logits/kernel", [8, 3], initializer=init)
        logits = tf.matmul(hidden, w2, name="logits")
        tf.nn.softmax(logits, name="probs")
        loss = v1.losses.softmax_cross_entropy(labels, logits)
        step = v1.train.AdamOptimizer(0.01).minimize(loss)
        saver = v1.train.Saver()
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            rng = np.random.default_rng(0)
            session.run(step, {x: rng.normal(size=(4, 6)),
                               labels: np.eye(3)[rng.integers(0, 3, 4)]})
            sample = rng.normal(size=(5, 6)).astype(np.float32)
            expected = session.run("probs:0", {x: sample})
            prefix = str(folder) + "/" if prefix_is_folder else str(folder / "model.ckpt")
            saver.save(session, prefix)
    if stale_state:
        gone = "/home/author/experiments/run7/" + ("" if prefix_is_folder else "model.ckpt")
        (folder / "checkpoint").write_text(
            f'model_checkpoint_path: "{gone}"\nall_model_checkpoint_paths: "{gone}"\n')
    return folder, "probs", sample, expected


def flags_iterator_graph(path):
    """A TF1 frozen graph whose inputs are PlaceholderWithDefault ops (`img`, `training`,
    `keep_prob`) fed by default from a tf.data iterator over a string Placeholder (the
    file names), as TF1 training scripts exported them. Returns (path, output, x, the
    outputs on x with training False and keep_prob 1)."""
    rng = np.random.default_rng(1)
    graph = tf.Graph()
    with graph.as_default():
        files = v1.placeholder(tf.string, [None], name="filenames")
        dataset = tf.data.Dataset.from_tensor_slices(files).map(
            lambda f: tf.reshape(tf.strings.to_number(tf.strings.split(f, ",")), [4, 4, 1]))
        iterator = v1.data.make_initializable_iterator(dataset.batch(1))
        batch = iterator.get_next()
        img = v1.placeholder_with_default(batch, [None, 4, 4, 1], name="img")
        training = v1.placeholder_with_default(True, [], name="training")
        keep_prob = v1.placeholder_with_default(0.5, [], name="keep_prob")
        kernel = tf.constant(rng.normal(size=(3, 3, 1, 4)).astype(np.float32))
        conv = tf.nn.relu(tf.nn.conv2d(img, kernel, 1, "SAME"))
        # The flag picks batch statistics in training, moving ones otherwise.
        mean, var = tf.nn.moments(conv, [0, 1, 2])
        moving_mean = tf.constant(rng.uniform(0, 0.5, 4).astype(np.float32))
        moving_var = tf.constant(rng.uniform(0.5, 1.5, 4).astype(np.float32))
        mean, var = tf.cond(training, lambda: (mean, var), lambda: (moving_mean, moving_var))
        normed = tf.nn.batch_normalization(conv, mean, var, None, None, 1e-3)
        dropped = tf.nn.dropout(normed, rate=1 - keep_prob)
        flat = tf.reshape(dropped, [-1, 64])
        weights = tf.constant(rng.normal(size=(64, 2)).astype(np.float32) * 0.2)
        tf.identity(tf.matmul(flat, weights), name="scores")
        sample = rng.normal(size=(1, 4, 4, 1)).astype(np.float32)
        with v1.Session(graph=graph) as session:
            expected = session.run("scores:0", {img: sample, training: False, keep_prob: 1.0})
    tf.io.write_graph(graph.as_graph_def(), str(path.parent), path.name, as_text=False)
    return path, "scores", sample, expected


def dynamic_rnn_gru(path, units=5, features=3, head="einsum"):
    """A TF1 frozen dynamic_rnn GRU graph: time-major input `frames` (T, N, features)
    of unknown T and N, `seq_lengths` int32 (N,), an initial state `state0` (1, N, units)
    and a `keep_prob` scalar of unknown rank. Its dense head after the loop is an Einsum
    (no op int8 quantizes outside the loop) or, with head="matmul", a MatMul over the
    time steps reshaped to rows. Returns (path, output)."""
    from tensorflow.python.ops import control_flow_util

    rng = np.random.default_rng(2)
    graph = tf.Graph()
    # TF1 built dynamic_rnn as a v1 while frame (Enter/Exit/NextIteration, TensorArrayV3);
    # TF 2 would build a functional While here unless told otherwise.
    was_v2 = control_flow_util.ENABLE_CONTROL_FLOW_V2
    v1.disable_control_flow_v2()
    try:
        return _dynamic_rnn_gru(path, units, features, rng, graph, head)
    finally:
        if was_v2:
            v1.enable_control_flow_v2()


def _dynamic_rnn_gru(path, units, features, rng, graph, head):
    with graph.as_default():
        frames = v1.placeholder(tf.float32, [None, None, features], name="frames")
        lengths = v1.placeholder(tf.int32, [None], name="seq_lengths")
        state0 = v1.placeholder(tf.float32, [1, None, units], name="state0")
        keep_prob = v1.placeholder_with_default(1.0, None, name="keep_prob")
        cell = _GRUCell(units, features, keep_prob)
        outputs, _ = v1.nn.dynamic_rnn(cell, frames, sequence_length=lengths,
                                       initial_state=state0[0], time_major=True,
                                       dtype=tf.float32)
        dense = tf.constant(rng.normal(size=(units, 2)).astype(np.float32))
        if head == "matmul":
            rows = tf.matmul(tf.reshape(outputs, [-1, units]), dense)
            logits = tf.reshape(rows, tf.concat([tf.shape(outputs)[:2], [2]], 0))
        else:
            logits = tf.einsum("tnu,uk->tnk", outputs, dense)
        tf.identity(logits, name="logits")
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            frozen = v1.graph_util.convert_variables_to_constants(
                session, graph.as_graph_def(), ["logits"])
    tf.io.write_graph(frozen, str(path.parent), path.name, as_text=False)
    return path, "logits"


class _GRUCell:
    """The GRU cell dynamic_rnn steps (Keras 3 left TF without tf.compat.v1's cells),
    with dropout on its output at `keep_prob`."""

    def __init__(self, units, features, keep_prob):
        init = v1.random_normal_initializer(stddev=0.4, seed=4)
        self.gates = v1.get_variable("gru/gates", [features + units, 2 * units], initializer=init)
        self.candidate = v1.get_variable("gru/candidate", [features + units, units],
                                         initializer=init)
        self.state_size = self.output_size = units
        self.keep_prob = keep_prob

    def zero_state(self, batch, dtype):
        return tf.zeros([batch, self.state_size], dtype)

    def __call__(self, x, h, scope=None):
        r, z = tf.split(tf.sigmoid(tf.matmul(tf.concat([x, h], 1), self.gates)), 2, axis=1)
        c = tf.tanh(tf.matmul(tf.concat([x, r * h], 1), self.candidate))
        h = z * h + (1 - z) * c
        return tf.nn.dropout(h, rate=1 - self.keep_prob), h


def rnn_data(folder, steps=(7, 4), batch=2, units=5, features=3):
    """The dynamic_rnn graph's data in --data's folder form: one .npz per example holding
    every input, time-major, each example of its own length."""
    rng = np.random.default_rng(5)
    folder.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(steps):
        np.savez(folder / f"{i}.npz",
                 frames=rng.normal(size=(t, batch, features)).astype(np.float32),
                 seq_lengths=np.array([t, max(1, t - 2)] + [t] * (batch - 2), np.int32),
                 state0=rng.normal(size=(1, batch, units)).astype(np.float32) * 0.1)
    return folder


def keras_recurrent(kind, path, dropout=0.3):
    """A Keras 3 text model with masking and dropout: Embedding(mask_zero) -> `kind`
    (lstm, gru, simple_rnn or bigru) -> Dense, saved to `path` (.keras or .h5)."""
    import keras

    keras.utils.set_random_seed(6)
    layers = keras.layers
    recurrent = {
        "lstm": lambda: layers.LSTM(6, dropout=dropout, recurrent_dropout=dropout),
        "gru": lambda: layers.GRU(6, dropout=dropout, recurrent_dropout=dropout),
        "simple_rnn": lambda: layers.SimpleRNN(6, dropout=dropout, recurrent_dropout=dropout),
        "bigru": lambda: layers.Bidirectional(layers.GRU(4, dropout=dropout,
                                                         recurrent_dropout=dropout)),
    }[kind]
    inputs = keras.Input((9,), dtype="int32", name="tokens")
    x = layers.Embedding(20, 4, mask_zero=True)(inputs)
    x = recurrent()(x)
    model = keras.Model(inputs, layers.Dense(2, name="label")(x), name=f"text_{kind}")
    model.save(path)
    return path


def token_data(path, count=6, length=9):
    rng = np.random.default_rng(7)
    tokens = rng.integers(1, 20, size=(count, length)).astype(np.int32)
    for row, pad in zip(tokens, rng.integers(0, 5, count)):
        row[length - pad:] = 0  # padding the mask hides
    np.savez(path, tokens=tokens)
    return path


_TF_KERAS_CHILD = r"""
import sys
import numpy as np
import tf_keras
folder, x_path, keras3_path, out_path = sys.argv[1:5]
tf_keras.utils.set_random_seed(8)
inputs = tf_keras.Input((5,), name="x")
hidden = tf_keras.layers.Dense(7, activation="relu")(inputs)
outs = [tf_keras.layers.Dense(n, name=f"head{n}")(hidden) for n in (1, 2, 3)]
model = tf_keras.Model(inputs, outs)
model.compile("adam", "mse")
model.save(folder, save_format="tf")
want = tf_keras.models.load_model(folder).predict(np.load(x_path), verbose=0)
try:
    tf_keras.models.load_model(keras3_path)
    refused = False
except Exception:
    refused = True
np.savez(out_path, *want, refused=refused)
"""


def tf_keras_savedmodel(folder, x, keras3_path):
    """A tf.keras-2 (tf_keras) SavedModel with three outputs, which Keras 3's load_model
    refuses, made in a child process: importing tf_keras registers its optimizers with TF
    for the rest of a process, which would hide what other tests check of TF alone.

    Returns (folder, tf_keras's outputs on x, whether tf_keras refused `keras3_path`),
    or None when tf_keras is not installed."""
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("tf_keras") is None:
        return None
    x_path, out_path = folder.parent / "tfk_x.npy", folder.parent / "tfk_out.npz"
    np.save(x_path, x)
    done = subprocess.run(
        [sys.executable, "-c", _TF_KERAS_CHILD, str(folder), str(x_path), str(keras3_path),
         str(out_path)], capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(out_path) as saved:
        want = [saved[f"arr_{i}"] for i in range(3)]
        return folder, want, bool(saved["refused"])


_TF_KERAS_RNN_CHILD = r"""
import sys
import numpy as np
import tf_keras
folder, x_path = sys.argv[1:3]
tf_keras.utils.set_random_seed(3)
inputs = tf_keras.Input((7, 4), name="seq")
hidden = tf_keras.layers.LSTM(6, return_sequences=True, name="lstm")(inputs)
hidden = tf_keras.layers.GRU(5, name="gru")(hidden)
model = tf_keras.Model(inputs, tf_keras.layers.Dense(3, activation="softmax")(hidden))
model.save(folder + "/rnn.h5")
np.save(folder + "/want.npy", model.predict(np.load(x_path), verbose=0))
inputs = tf_keras.Input((7, 4), name="seq")
major = tf_keras.layers.LSTM(6, time_major=True, name="major")(inputs)
tf_keras.Model(inputs, major).save(folder + "/time_major.h5")
"""


def tf_keras_rnn_h5(folder, x):
    """Keras 2 (tf_keras) .h5 files of recurrent layers, which store `time_major`: an LSTM
    and a GRU (rnn.h5, its outputs on x) and a time-major LSTM (time_major.h5), made in a
    child (see tf_keras_savedmodel). Returns (rnn.h5, outputs, time_major.h5), or None
    without tf_keras."""
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("tf_keras") is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "x.npy", x)
    done = subprocess.run([sys.executable, "-c", _TF_KERAS_RNN_CHILD, str(folder),
                           str(folder / "x.npy")], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    return folder / "rnn.h5", np.load(folder / "want.npy"), folder / "time_major.h5"


def cond_flag_graph(path):
    """A frozen graph with a tf.cond on a bool flag input, as a v2 function traces it
    (an If op, lowered to Switch/Merge by the freeze). Returns (path, x, the outputs
    on x with the flag False, and with it True)."""
    rng = np.random.default_rng(9)
    weights = tf.constant(rng.normal(size=(4, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x"),
                                  tf.TensorSpec([], tf.bool, name="use_relu")])
    def model(x, use_relu):
        y = tf.matmul(x, weights)
        return tf.cond(use_relu, lambda: tf.nn.relu(y), lambda: tf.tanh(y))

    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    frozen = convert_variables_to_constants_v2(model.get_concrete_function())
    tf.io.write_graph(frozen.graph.as_graph_def(), str(path.parent), path.name, as_text=False)
    sample = rng.normal(size=(1, 4)).astype(np.float32)
    return path, sample, model(sample, False).numpy(), model(sample, True).numpy()


def v1_cond_batch_norm(path):
    """A TF1 frozen graph of a conv whose batch norm a `training` PlaceholderWithDefault
    steers through v1 conds (Switch/Merge): batch statistics in training, the moving ones
    otherwise, as tf.compat.v1.layers.batch_normalization exported them. Returns (path,
    output, x, the output on x with training False)."""
    from tensorflow.python.ops import control_flow_util

    rng = np.random.default_rng(4)
    graph = tf.Graph()
    was_v2 = control_flow_util.ENABLE_CONTROL_FLOW_V2
    v1.disable_control_flow_v2()
    try:
        with graph.as_default():
            x = v1.placeholder(tf.float32, [None, 6, 6, 2], name="x")
            training = v1.placeholder_with_default(True, [], name="is_training")
            kernel = tf.constant(rng.normal(size=(3, 3, 2, 4)).astype(np.float32))
            conv = tf.nn.conv2d(x, kernel, 1, "SAME")
            moving_mean = tf.constant(rng.uniform(-0.5, 0.5, 4).astype(np.float32))
            moving_var = tf.constant(rng.uniform(0.5, 1.5, 4).astype(np.float32))
            batch_mean, batch_var = tf.nn.moments(conv, [0, 1, 2])
            mean = v1.cond(training, lambda: batch_mean, lambda: moving_mean)
            var = v1.cond(training, lambda: batch_var, lambda: moving_var)
            normed = tf.nn.batch_normalization(conv, mean, var, None, None, 1e-3)
            tf.nn.relu(normed, name="y")
            sample = rng.normal(size=(2, 6, 6, 2)).astype(np.float32)
            with v1.Session(graph=graph) as session:
                expected = session.run("y:0", {x: sample, training: False})
    finally:
        if was_v2:
            v1.enable_control_flow_v2()
    tf.io.write_graph(graph.as_graph_def(), str(path.parent), path.name, as_text=False)
    return path, "y", sample, expected
