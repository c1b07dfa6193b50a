"""leangraph.load_model(): every model form leangraph takes, as one object.

A Model is the frozen graph (what every variant derives from) plus, when the
source was Keras, the Keras model itself, whose `predict` is then the
reference every variant is verified against. Without Keras the frozen graph
is the reference.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from leangraph import graphs
from leangraph.errors import UsageError
from leangraph.freeze import FrozenGraph, freeze
from leangraph.freezing.checkpoint import is_checkpoint
from leangraph.graph_view import Graph


#: What each source form is called in reports.
SOURCES = {
    "keras": "Keras model",
    "tf_keras": "tf.keras 2 model (tf_keras)",
    "savedmodel": "SavedModel (object-graph load)",
    "savedmodel-v1": "SavedModel (TF's v1 loader)",
    "graph": "frozen GraphDef",
    "checkpoint": "TF1 checkpoint",
    "function": "tf.function",
}


@dataclass
class Model:
    """A loaded model: its frozen graph, its Keras model if any, and where it came from."""

    frozen: object
    label: str
    path: Path = None
    keras_model: object = None
    notes: list = field(default_factory=list)
    _graph: object = field(default=None, repr=False, compare=False)

    @property
    def source(self):
        return self.frozen.source

    @property
    def is_keras(self):
        return self.keras_model is not None

    @property
    def graph_def(self):
        return self.frozen.graph_def

    @property
    def graph(self):
        """The frozen graph as a leangraph.Graph (parsed and scanned at most once)."""
        if self._graph is None:
            self._graph = Graph(self.frozen.graph_def, self.input_names, self.output_names)
        return self._graph

    @property
    def inputs(self):
        return self.frozen.inputs

    @property
    def outputs(self):
        return self.frozen.outputs

    @property
    def input_names(self):
        return self.frozen.input_names

    @property
    def output_names(self):
        return self.frozen.output_names

    @property
    def file_bytes(self):
        """Size of the model file or folder, None for an in-memory model."""
        if self.path is None:
            return None
        if self.path.is_file():
            return self.path.stat().st_size
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def load_model(model, *, unsafe=False, weights=None, signature=None, input_shapes=None,
               batch_size=1, output_names=None, inputs=None, outputs=None, feeds=None,
               data_inputs=None):
    """A Model from any form: a `.keras`, `.h5` or architecture `.json` (with `weights=`)
    file, a SavedModel directory, a frozen `.pb`/`.pbtxt`, a GraphDef, a keras.Model,
    a tf.function or a ConcreteFunction.

    A SavedModel is loaded with TF 2's object-graph loader and, when that fails
    (a Keras 2 optimizer it cannot rebuild, ...), with TF's v1 loader and the
    signature's tensor names; its function calls are inlined. A TF1 checkpoint (a
    `.meta` file, a checkpoint prefix or its folder) is restored and frozen at
    `outputs`. `signature`, `input_shapes`, `batch_size`, `inputs`, `outputs` and
    `feeds`, `data_inputs` are as for leangraph.freeze().
    """
    if isinstance(model, Model):
        return model
    if isinstance(model, FrozenGraph):
        return Model(frozen=model, label="frozen graph", keras_model=model.keras_model,
                     notes=list(model.notes))
    path = None
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.exists():
            if not is_checkpoint(path):
                raise UsageError(f"model not found: {path}")
        model = path
    frozen = freeze(model, input_shapes=input_shapes, batch_size=batch_size,
                    output_names=output_names, signature=signature, unsafe=unsafe,
                    weights=weights, inputs=inputs, outputs=outputs, feeds=feeds,
                    data_inputs=data_inputs)
    if path is not None:
        label = str(path)
    else:
        label = getattr(model, "name", None) or SOURCES.get(frozen.source, "model")
    return Model(frozen=frozen, label=label, path=path, keras_model=frozen.keras_model,
                 notes=list(frozen.notes))


def graph_def_of(model):
    """A GraphDef from any model form; a model is frozen with a dynamic batch (tune measures
    accuracy in batches and times at its batch size)."""
    is_graph_file = (isinstance(model, (str, os.PathLike)) and Path(model).is_file()
                     and Path(model).suffix in (".pb", ".pbtxt", ".prototxt", ".txt"))
    if is_graph_file or hasattr(model, "node") or isinstance(model, (bytes, bytearray)):
        return graphs.load_graph(model)
    return load_model(model, batch_size=None).graph_def
