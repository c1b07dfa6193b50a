"""The one way leangraph runs a graph in a TensorFlow session: native checks first.

TensorFlow's kernels trust their operands. A malformed graph (a range input
given as a vector where an int8 kernel reads a scalar, a fused-op list a
kernel does not know, a rewired input) does not raise there: it aborts or
crashes the process. Every graph leangraph runs for results (leangraph.run,
calibration, verification, optimize's reference, prune's scoring, the
timers) therefore goes through `check()` first, the same C++ checks the
transforms and the timer run, and only then reaches `tf.import_graph_def`.
"""

import numpy as np

from leangraph import graphs
from leangraph._tfcheck import load_native
from leangraph.errors import GraphError, LeangraphError, UsageError


def check(graph, error=GraphError):
    """Raises `error` (one line, naming the node) unless the native checks accept the graph.

    graph: anything graphs.load_graph accepts. The checks are those of
    native/graph_check.cc: op registry, attributes, edges and dtypes, Const
    contents, and the operand contracts of the int8 kernels.
    """
    data = graphs.serialize(graph)
    try:
        load_native().check_graph(data)
    except LeangraphError as exc:
        if isinstance(exc, error):
            raise
        raise error(str(exc)) from None


def import_graph(graph, error=GraphError, checked=False):
    """A new tf.Graph holding `graph`, imported after the native checks.

    TF's import runs every op's shape function, and some of those CHECK-fail (abort
    the process) on attributes a malformed graph gets wrong (MaxPool's shape function
    on an unknown data_format), so a graph is checked before TF imports it too.
    checked: True when the caller ran `check` on exactly this graph already.
    """
    import tensorflow as tf

    graph_def = graphs.load_graph(graph) if not hasattr(graph, "node") else graph
    if not checked:
        check(graph_def, error)
    tf_graph = tf.Graph()
    with tf_graph.as_default():
        try:
            tf.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.OpError) as exc:
            raise error(f"TensorFlow cannot import the graph: {_message(exc)}") from None
    return tf_graph


def session(tf_graph, graph_def, error=GraphError, config=None):
    """A tf.compat.v1.Session over `tf_graph`, whose GraphDef is `graph_def`, after the
    native checks on it: for the TF1 loaders, which restore variables into a graph TF
    itself built (a checkpoint's meta graph, a SavedModel's), so it cannot go through
    `import_graph`."""
    import tensorflow as tf

    check(graph_def, error)
    return tf.compat.v1.Session(graph=tf_graph, config=config)


class Runner:
    """One checked, imported graph in one session; `run` may be called many times.

    error: the LeangraphError subclass raised for a graph TF cannot import or
    run (GraphError by default; calibration raises QuantizeError).
    config: a tf.compat.v1.ConfigProto for the session, or None.
    checked: True when the caller ran `check` on exactly this graph already.
    """

    def __init__(self, graph, config=None, error=GraphError, checked=False):
        import tensorflow as tf

        graph_def = graphs.load_graph(graph) if not hasattr(graph, "node") else graph
        self.graph_def = graph_def
        self._error = error
        self._tf_errors = (ValueError, tf.errors.OpError)
        self.graph = import_graph(graph_def, error, checked)
        # import_graph checked graph_def already.
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)

    def run(self, fetches, feeds):
        """session.run with leangraph's errors: fetches and feed keys are tensor names
        (or tf.Tensor objects of this graph)."""
        try:
            return self.session.run(fetches, feeds)
        except self._tf_errors as exc:
            raise self._error(f"running the graph failed: {_message(exc)}") from None

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _message(exc):
    text = getattr(exc, "message", None) or str(exc)
    return " ".join(text.split())


def run(graph, feeds, outputs=None):
    """Runs the graph once and returns the outputs as numpy arrays, in order.

    feeds: {node or tensor name: array}. outputs: node or tensor names; by
    default the nodes nothing consumes. Timing belongs to leangraph.benchmark.
    """
    graph_def = graphs.load_graph(graph)
    if outputs is None:
        outputs = graphs.default_outputs(graph_def)
    elif isinstance(outputs, str):
        outputs = [outputs]
    names = {n.name for n in graph_def.node}
    for name in list(feeds) + list(outputs):
        if graphs.node_name(name) not in names:
            raise GraphError(f"'{name}' is not a node of the graph")
    feed_dict = {graphs.tensor_name(k): np.asarray(v) for k, v in feeds.items()}
    with Runner(graph_def) as runner:
        return runner.run([graphs.tensor_name(o) for o in outputs], feed_dict)


def outputs_per_example(graph, input_names, output_names, examples, config=None):
    """Runs a batch-1 graph on every example in one session; one array per output.

    examples: one array per input, examples stacked on axis 0."""
    fetches = [graphs.tensor_name(n) for n in output_names]
    feeds = [graphs.tensor_name(n) for n in input_names]
    results = [[] for _ in output_names]
    with Runner(graph, config=config) as runner:
        for i in range(len(examples[0])):
            values = runner.run(fetches, {f: x[i:i + 1] for f, x in zip(feeds, examples)})
            for slot, value in zip(results, values):
                slot.append(np.asarray(value))
    return [join_examples(r) for r in results]


def join_examples(parts):
    """One output's values over examples run one at a time, as one array: stacked on axis
    0; where the examples were of different sizes (a fully convolutional model fed images
    of several shapes), each example's values as rows of its last axis (the classes or
    features), so every position is compared, scored and gated as a row. UsageError when
    even the last axes disagree."""
    parts = [np.asarray(p) for p in parts]
    try:
        return np.concatenate(parts)
    except ValueError:
        pass
    lasts = {p.shape[-1] if p.ndim else 1 for p in parts}
    if len(lasts) != 1:
        shapes = sorted({p.shape for p in parts})
        raise UsageError(f"the outputs of the examples disagree in shape beyond axis 0 and in "
                         f"their last axis ({', '.join(map(str, shapes[:4]))}), so they cannot "
                         "be compared together")
    return np.concatenate([p.reshape(-1, p.shape[-1]) for p in parts])
