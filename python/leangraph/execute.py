"""leangraph.run(): evaluate a frozen GraphDef in a TensorFlow session (for checks, not timing)."""

import numpy as np

from leangraph import graphs
from leangraph.errors import GraphError


def _tensor_name(name):
    return name if ":" in name else name + ":0"


def run(graph, feeds, outputs=None):
    """Runs the graph once and returns the outputs as numpy arrays, in order.

    feeds: {node or tensor name: array}. outputs: node or tensor names; by
    default the nodes nothing consumes. Timing belongs to leangraph.benchmark.
    """
    import tensorflow as tf

    graph_def = graphs.load_graph(graph)
    if outputs is None:
        outputs = graphs.default_outputs(graph_def)
    elif isinstance(outputs, str):
        outputs = [outputs]
    names = {n.name for n in graph_def.node}
    for name in list(feeds) + list(outputs):
        if graphs.node_name(name) not in names:
            raise GraphError(f"'{name}' is not a node of the graph")
    tf_graph = tf.Graph()
    with tf_graph.as_default():
        try:
            tf.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.OpError) as exc:
            raise GraphError(f"TensorFlow cannot import the graph: {exc}") from None
    feed_dict = {_tensor_name(k): np.asarray(v) for k, v in feeds.items()}
    with tf.compat.v1.Session(graph=tf_graph) as session:
        try:
            return session.run([_tensor_name(o) for o in outputs], feed_dict)
        except (ValueError, tf.errors.OpError) as exc:
            raise GraphError(f"running the graph failed: {exc}") from None
