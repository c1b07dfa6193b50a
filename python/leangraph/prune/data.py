"""prune's examples: checked against the Keras model's one input and output, and split
into fine-tuning and held-out parts."""

import numpy as np

from leangraph.errors import PruneError
from leangraph.freeze import TensorInfo, load_keras
from leangraph.images import resolve_preprocessing
from leangraph.metrics import parse_kind
from leangraph.pipeline import data as data_reader
from leangraph.prune.scoring import Scoring


def check_data(model, x, y, scoring=None):
    """x as float32 and y as the labels the output's kind takes (prune.scoring; class
    indices for a classifier), or None; or a one-line PruneError."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise PruneError(f"the model has {len(model.inputs)} inputs and {len(model.outputs)} "
                         "outputs; pruning needs one of each")
    x = np.asarray(x)
    want = tuple(model.inputs[0].shape[1:])
    got = tuple(x.shape[1:])
    if x.ndim != len(want) + 1 or any(w is not None and w != g for w, g in zip(want, got)):
        raise PruneError(f"data x has examples of shape {got} but the model takes "
                         f"{tuple('?' if w is None else w for w in want)}")
    if len(x) < 8:
        raise PruneError(f"data x has {len(x)} examples; at least 8 are needed "
                         "(15 % are held out)")
    if not np.issubdtype(x.dtype, np.number):
        raise PruneError(f"data x has dtype {x.dtype}; numbers are needed")
    x = x.astype(np.float32, copy=False)
    if y is None:
        return x, None
    scoring = scoring or Scoring.for_model(model, y)
    return x, scoring.check_labels(y, len(x), model.outputs[0].shape[-1])


def split(n, holdout, seed):
    """(train indices, held-out indices): a seeded shuffle, `holdout` of it held out."""
    if not 0.0 < holdout < 1.0:
        raise PruneError(f"holdout must be in (0, 1), got {holdout}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * holdout)))
    return order[n_val:], order[:n_val]


def read_data(model, source, preprocess="none", unsafe=False):
    """(the Keras model, x, y or None): --data read by the one reader (pipeline.data)
    against the model's one input and its first output's labels."""
    model = load_keras(model, unsafe=unsafe)
    if len(model.inputs) != 1:
        raise PruneError(f"the model has {len(model.inputs)} inputs; pruning needs one")

    def info(tensor):
        return TensorInfo(tensor.name, str(getattr(tensor, "dtype", None) or "float32"),
                          tuple(tensor.shape))

    data = data_reader.read(source, [info(model.inputs[0])], [info(model.outputs[0])],
                            preprocessing=resolve_preprocessing(preprocess))
    return model, data.arrays[0], data.labels.get(model.outputs[0].name)


def output_kind(items, model):
    """The kind --output-kind sets for the model's one output (KIND or NAME=KIND, NAME the
    output layer's name), or None."""

    if not items:
        return None
    if len(items) > 1:
        raise PruneError("--output-kind: the model has one output; give one kind")
    name, sep, kind = items[0].rpartition("=")
    layer = model.outputs[0]._keras_history.operation.name
    if sep and name.strip() not in (layer, model.outputs[0].name):
        raise PruneError(f"--output-kind: no output '{name}' (the output: {layer})")
    return parse_kind(kind)
