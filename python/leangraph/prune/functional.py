"""Walking a Keras 3 functional model: its nodes in order, and replaying them on new
inputs (nested models inlined), which channel pruning and low-rank rebuilding share."""

from leangraph.errors import PruneError


def functional(model):
    """The functional graph behind a Functional or built Sequential model."""
    import keras
    from keras.src.models.functional import Functional

    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:
            raise PruneError(f"Sequential model '{model.name}' is not built: give it an Input "
                             "or call it once")
        return graph
    if isinstance(model, Functional):
        return model
    raise PruneError(f"model '{model.name}' ({type(model).__name__}) is a subclassed model; "
                     "only functional and Sequential models can be pruned")


def ordered_nodes(graph):
    """The graph's nodes in an order where every input is computed first."""
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if node.operation is not None and not node.is_input:
                yield node


def input_name(tensor):
    return tensor._keras_history.operation.name


def new_inputs(graph):
    import keras

    return [keras.Input(batch_shape=tuple(t.shape), dtype=t.dtype, name=input_name(t))
            for t in graph.inputs]


def replay(graph, inputs, operation_fn, expand_nested=True):
    """Calls `operation_fn(op)` for each node of `graph` on `inputs`; returns the outputs.

    Nested functional models are walked into, so the result is one flat graph.
    """
    import keras

    tensors = {id(x): y for x, y in zip(graph.inputs, inputs)}
    for node in ordered_nodes(graph):
        op = node.operation
        args, kwargs = node.arguments.fill_in(tensors)
        if expand_nested and isinstance(op, keras.Model) and _is_graph_model(op):
            inner = functional(op)
            outputs = replay(inner, keras.tree.flatten(args), operation_fn, expand_nested)
        else:
            outputs = operation_fn(op)(*args, **kwargs)
        for x, y in zip(node.outputs, keras.tree.flatten(outputs)):
            tensors[id(x)] = y
    outputs = [tensors[id(x)] for x in graph.outputs]
    return outputs[0] if len(outputs) == 1 else outputs


def _is_graph_model(model):
    try:
        functional(model)
    except PruneError:
        return False
    return True


def flatten_model(model):
    """The model as one functional graph with nested models inlined (same layer objects)."""
    import keras

    graph = functional(model)
    if not any(isinstance(op, keras.Model) and _is_graph_model(op) for op in graph.operations):
        return graph
    inputs = new_inputs(graph)
    outputs = replay(graph, inputs, lambda op: op)
    try:
        return keras.Model(single(inputs), outputs, name=graph.name)
    except ValueError as exc:  # layer names must be unique once the nesting is gone
        raise PruneError(f"cannot flatten the nested models of '{graph.name}': {exc}") from None


def single(tensors):
    """One tensor as itself: a one-element list would make Keras warn on every call."""
    return tensors[0] if len(tensors) == 1 else tensors
