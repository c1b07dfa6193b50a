"""What freeze() returns: a clean GraphDef plus what it takes and returns.

Here, below both freeze.py and the freezing steps that build it, so that no step has to
import the driver.
"""

from dataclasses import dataclass, field

from leangraph import graphs


@dataclass
class FrozenGraph:
    """The result of freeze(): a clean GraphDef plus what it takes and returns."""

    graph_def: object
    inputs: list
    outputs: list
    keras_model: object = None
    #: where it came from: "keras", "savedmodel", "savedmodel-v1", "graph" or "function"
    source: str = "keras"
    notes: list = field(default_factory=list)

    def save(self, path, as_text=None):
        """Writes the GraphDef atomically (text for .pbtxt) and returns the Path."""
        return graphs.save_graph(self.graph_def, path, as_text=as_text)

    @property
    def input_names(self):
        return [t.name for t in self.inputs]

    @property
    def output_names(self):
        return [t.name for t in self.outputs]
