"""Reading a SavedModel: its signatures (TF2 functions, or a TF1 v1 SavedModel's serving
graph, checked by the native checks before TF's loader runs it) for leangraph.freeze."""

from pathlib import Path

from leangraph import graphs
from leangraph.errors import FreezeError
from leangraph.freezing.shapes import _valid_node_name
from leangraph.runner import session as checked_session


def _pick_signature(path, available, signature):
    available = sorted(available)
    if signature is None:
        if "serving_default" in available:
            return "serving_default"
        if len(available) == 1:
            return available[0]
        if not available:
            raise FreezeError(f"the SavedModel {path} has no signatures to freeze")
        raise FreezeError(
            f"the SavedModel {path} has no serving_default signature; choose one with "
            f"signature=: {', '.join(available)}"
        )
    if signature not in available:
        raise FreezeError(
            f"the SavedModel {path} has no signature '{signature}'; available: "
            f"{', '.join(available) or '(none)'}"
        )
    return signature


def _saved_model_function(path, signature):
    """(ConcreteFunction, the loaded object) through TF 2's object-graph loader."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    signature = _pick_signature(path, loaded.signatures.keys(), signature)
    # Keep the loaded object alive: the function's captured variables belong to it.
    return loaded.signatures[signature], loaded


def _saved_model_v1(path, signature):
    """(frozen GraphDef, [(placeholder, name)], [(tensor, name, dtype enum)]) by TF's v1 loader.

    TF 2's object-graph loader has to rebuild every saved Python object, and
    fails on some it cannot (a Keras 2 optimizer's slots without tf-keras
    installed). The v1 loader restores only the graph and the variables,
    which is all inference needs; the signature names the tensors.
    """
    import logging

    import tensorflow as tf

    graph = tf.Graph()
    logger = logging.getLogger("tensorflow")
    level = logger.level
    # The v1 loader and converter each log a deprecation notice that tells the user to
    # call tf.saved_model.load, which is exactly what failed.
    logger.setLevel(max(level, logging.ERROR))
    try:
        return _saved_model_v1_session(path, signature, graph)
    finally:
        logger.setLevel(level)


def _serving_graph_def(path):
    """The GraphDef of the SavedModel's serving meta graph, read from saved_model.pb,
    so the native checks see it before TF's loader runs it (empty where it cannot be
    read: the loader then says why)."""
    from tensorflow.core.framework import graph_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    except (OSError, ValueError, RuntimeError):
        return graph_pb2.GraphDef()
    for meta in saved.meta_graphs:
        if "serve" in meta.meta_info_def.tags:
            return meta.graph_def
    return graph_pb2.GraphDef()


def _saved_model_v1_session(path, signature, graph):
    import tensorflow as tf

    with graph.as_default(), checked_session(graph, _serving_graph_def(path),
                                             FreezeError) as session:
        try:
            meta = tf.compat.v1.saved_model.loader.load(
                session, [tf.saved_model.SERVING], str(path))
        except Exception as exc:  # TF raises many types on a bad SavedModel
            raise FreezeError(
                f"cannot load the SavedModel {path}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None
        available = [k for k in meta.signature_def if not k.startswith("__")]
        sig = meta.signature_def[_pick_signature(path, available, signature)]
        inputs = [(sig.inputs[k].name, k) for k in sorted(sig.inputs)]
        outputs = [(sig.outputs[k].name, k, sig.outputs[k].dtype) for k in sorted(sig.outputs)]
        from tensorflow.python.framework import convert_to_constants

        try:
            graph_def = convert_to_constants.convert_variables_to_constants_from_session_graph(
                session, graph.as_graph_def(), [graphs.node_name(t) for t, _, _ in outputs])
        except Exception as exc:
            raise FreezeError(
                f"converting the SavedModel's variables to constants failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    placeholders = [(graphs.node_name(t), _valid_node_name(k, "input")) for t, k in inputs]
    return graph_def, placeholders, outputs
