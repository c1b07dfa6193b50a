"""leangraph.Graph: one frozen graph, parsed at most once, with its endpoints and its
safety verdict (leangraph.safety) kept."""

from pathlib import Path

from leangraph import safety
from leangraph.graphs import (
    _TEXT_SUFFIXES,
    _parse_binary,
    atomic_write,
    default_inputs,
    default_outputs,
    load_graph,
    save_graph,
)


class Graph:
    """One frozen graph, parsed at most once: its bytes, its GraphDef, its endpoints and
    its safety verdict, each computed on first use and kept.

    Build it from anything load_graph accepts. The GraphDef is shared, not copied:
    treat it as read-only (a transform returns a new Graph's worth of GraphDef).
    """

    def __init__(self, graph, inputs=None, outputs=None):
        self._data = None
        self._graph_def = None
        if isinstance(graph, Graph):
            self._data, self._graph_def = graph._data, graph._graph_def
            inputs = inputs or graph._inputs
            outputs = outputs or graph._outputs
        elif isinstance(graph, (bytes, bytearray, memoryview)):
            self._data = bytes(graph)
        elif hasattr(graph, "SerializeToString") and hasattr(graph, "node"):
            self._graph_def = graph
        else:
            self._graph_def = load_graph(graph)
        self._inputs = list(inputs) if inputs else None
        self._outputs = list(outputs) if outputs else None
        self._unsafe = None

    @property
    def graph_def(self):
        if self._graph_def is None:
            self._graph_def = _parse_binary(self._data, "the graph's bytes")
        return self._graph_def

    @property
    def data(self):
        if self._data is None:
            self._data = self._graph_def.SerializeToString()
        return self._data

    @property
    def inputs(self):
        """Input node names: as given, else the Placeholders."""
        if self._inputs is None:
            self._inputs = default_inputs(self.graph_def)
        return list(self._inputs)

    @property
    def outputs(self):
        """Output node names: as given, else the nodes nothing consumes."""
        if self._outputs is None:
            self._outputs = default_outputs(self.graph_def)
        return list(self._outputs)

    @property
    def unsafe_ops(self):
        """[(node, op)] that can touch files, processes or Python (leangraph.safety)."""
        if self._unsafe is None:
            self._unsafe = safety.find_unsafe_ops(self.graph_def)
        return list(self._unsafe)

    def require_safe(self, allow_io_ops=False, what="this graph"):
        """Raises GraphError naming the unsafe nodes, unless allowed; scans once."""
        if allow_io_ops or not self.unsafe_ops:
            return self
        safety.require_safe(self.graph_def, what=what)
        return self

    @property
    def nbytes(self):
        return len(self.data)

    def save(self, path, as_text=None):
        """Writes the graph atomically (text for .pbtxt) and returns the Path."""
        path = Path(path)
        if (path.suffix in _TEXT_SUFFIXES) if as_text is None else as_text:
            return save_graph(self.graph_def, path, as_text=True)
        return atomic_write(path, self.data)

    def __len__(self):
        return len(self.graph_def.node)

    def __repr__(self):
        return f"Graph({len(self)} nodes, {self.nbytes} bytes, inputs={self.inputs}, " \
               f"outputs={self.outputs})"
