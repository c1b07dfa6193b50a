"""The digits reference model: a small network with a real, held-out accuracy.

ImageNet weights cannot be downloaded here, so every precision change is
judged against this model instead: an Xception-style CNN (separable
convolutions, batch norms, residual adds, max pooling, global average pooling,
a dense softmax head) trained on scikit-learn's bundled 8x8 digits, upsampled
to 32x32x3. Training is seeded and takes well under a minute on two cores; the
result is cached under $LEANGRAPH_CACHE (default ~/.cache/leangraph) in a
folder named by a hash of everything that determines it, so a change to the
recipe below builds a new model instead of serving a stale one.
"""

import hashlib
import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leangraph import graphs, metrics, runner
from leangraph._extras import require


#: Bump when the data, architecture or training changes in a way the source
#: hash below would not see (e.g. a library behaviour that matters).
_RECIPE_VERSION = 1
_SIZE = 32
_TEST_FRACTION = 0.2
_EPOCHS = 20
_BATCH = 32

INPUT_NAME = "input"


@dataclass
class ReferenceModel:
    """The cached model and its data; `accuracy` is fp32 held-out accuracy (0..1)."""

    graph_path: Path  # frozen fp32 GraphDef, batch dimension left open
    keras_path: Path
    x_test: np.ndarray
    y_test: np.ndarray
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    accuracy: float = 0.0
    output_name: str = ""
    input_name: str = INPUT_NAME

    @property
    def graph_def(self):
        return graphs.load_graph(self.graph_path)


def cache_dir():
    """$LEANGRAPH_CACHE, or ~/.cache/leangraph."""
    root = os.environ.get("LEANGRAPH_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "leangraph"


def digits_data(size=_SIZE, seed=0):
    """(x_train, y_train, x_test, y_test): digits in [0, 1], size x size x 3, fixed split."""
    load_digits = require("sklearn.datasets", "the digits reference model").load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    factor = size // 8
    if factor * 8 != size:
        raise ValueError(f"size must be a multiple of 8, got {size}")
    # Nearest-neighbour upsampling keeps the data exact and the code obvious.
    images = images.repeat(factor, axis=1).repeat(factor, axis=2)
    images = np.repeat(images[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(len(labels) * _TEST_FRACTION))
    test, train = order[:n_test], order[n_test:]
    return images[train], labels[train], images[test], labels[test]


def build_model(size=_SIZE, seed=0):
    """The untrained Xception-style network (Keras functional model)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3), name=INPUT_NAME)
    # Layers are named as in keras.applications.Xception.
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="block1_conv1")(inputs)
    x = layers.BatchNormalization(momentum=0.9, name="block1_conv1_bn")(x)
    x = layers.Activation("relu", name="block1_conv1_act")(x)
    # Entry flow: residual blocks that halve the resolution and widen.
    for block, filters in enumerate((64, 128, 256), start=2):
        b = f"block{block}_"
        shortcut = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False,
                                 name=b + "shortcut")(x)
        shortcut = layers.BatchNormalization(momentum=0.9, name=b + "shortcut_bn")(shortcut)
        x = layers.Activation("relu", name=b + "sepconv1_act")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False,
                                   name=b + "sepconv1")(x)
        x = layers.BatchNormalization(momentum=0.9, name=b + "sepconv1_bn")(x)
        x = layers.Activation("relu", name=b + "sepconv2_act")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False,
                                   name=b + "sepconv2")(x)
        x = layers.BatchNormalization(momentum=0.9, name=b + "sepconv2_bn")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=b + "pool")(x)
        x = layers.Add(name=b + "add")([x, shortcut])
    # Exit flow: two wide separable convolutions, as Xception's (1536, 2048).
    for i, filters in enumerate((512, 768), start=1):
        b = f"block5_sepconv{i}"
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=b)(x)
        x = layers.BatchNormalization(momentum=0.9, name=b + "_bn")(x)
        x = layers.Activation("relu", name=b + "_act")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="digits")


def _fingerprint():
    import keras
    import tensorflow as tf

    parts = [
        str(_RECIPE_VERSION),
        inspect.getsource(digits_data),
        inspect.getsource(build_model),
        inspect.getsource(_train),
        inspect.getsource(freeze),
        f"{_SIZE} {_TEST_FRACTION} {_EPOCHS} {_BATCH}",
        tf.__version__,
        keras.__version__,
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _train(model, x, y, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=_EPOCHS, batch_size=_BATCH, shuffle=True, verbose=0)
    return model


def freeze(model, size=_SIZE):
    """Frozen fp32 GraphDef with input Placeholder `input` (batch dimension open)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    fn = tf.function(lambda x: model(x, training=False))
    spec = tf.TensorSpec((None, size, size, 3), tf.float32, name=INPUT_NAME)
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(spec))
    return frozen.graph.as_graph_def()


def reference_model(cache=None, rebuild=False):
    """The trained digits model, built on first use and cached on disk.

    Returns a ReferenceModel: the frozen graph's path, the Keras file, the
    held-out split and the fp32 accuracy measured on it.
    """
    folder = Path(cache) if cache is not None else cache_dir()
    folder = folder / f"digits-{_fingerprint()}"
    meta_path = folder / "meta.json"
    x_train, y_train, x_test, y_test = digits_data()
    if rebuild or not meta_path.exists():
        _build(folder, x_train, y_train, x_test, y_test)
    meta = json.loads(meta_path.read_text())
    return ReferenceModel(
        graph_path=folder / "model.pb",
        keras_path=folder / "model.keras",
        x_test=x_test,
        y_test=y_test,
        x_train=x_train,
        y_train=y_train,
        accuracy=meta["accuracy"],
        output_name=meta["output"],
    )


def _build(folder, x_train, y_train, x_test, y_test):
    model = _train(build_model(), x_train, y_train)
    graph_def = freeze(model)
    output = graphs.default_outputs(graph_def)[0]
    probabilities = runner.run(graph_def, {INPUT_NAME: x_test}, [output])[0]
    accuracy = metrics.accuracy(probabilities, y_test, "classes")
    folder.mkdir(parents=True, exist_ok=True)
    keras_tmp = folder / "model.tmp.keras"
    model.save(keras_tmp)
    os.replace(keras_tmp, folder / "model.keras")
    graphs.save_graph(graph_def, folder / "model.pb")
    # Written last: its presence means the folder is complete.
    meta = {"accuracy": accuracy, "output": output, "n_test": int(len(y_test))}
    graphs.atomic_write(folder / "meta.json", json.dumps(meta, indent=2).encode())


def write_demo(folder):
    """Writes the digits model (model.keras) and its held-out examples with their labels
    (digits.npz: x, y) into `folder`, for `make demo-data`: optimize --data on real data."""
    import shutil

    reference = reference_model()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(reference.keras_path, folder / "model.keras")
    buffer = folder / "digits.tmp.npz"
    np.savez(buffer, x=reference.x_test, y=reference.y_test)
    os.replace(buffer, folder / "digits.npz")
    return folder / "model.keras", folder / "digits.npz"


if __name__ == "__main__":
    import sys

    for path in write_demo(sys.argv[1] if len(sys.argv) > 1 else "leangraph-demo-data"):
        print(f"wrote {path}")
