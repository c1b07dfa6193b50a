"""The model prune and low-rank factorisation start from: a Keras model as given, or loaded
from its file (the channel and low-rank drivers both take either)."""

import numpy as np

from leangraph.freeze import load_keras


def load(model, unsafe):
    """`model` itself when it is a Keras model, else the model its path holds."""
    import keras

    if isinstance(model, keras.Model):
        return model
    return load_keras(model, unsafe=unsafe)


def count_params(model):
    """Every weight of the model, trainable or not."""
    return int(sum(int(np.prod(v.shape)) for v in model.weights))
