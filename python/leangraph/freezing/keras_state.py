"""Keras 3 state that a frozen inference graph does without: dropout's SeedGenerator.

Keras 3's recurrent layers (LSTM, GRU, SimpleRNN, and Bidirectional around them)
draw their dropout masks from a `keras.random.SeedGenerator` even when called with
training=False, and each draw advances the generator's state variable. The trace
therefore holds `AssignVariableOp`s on that state, which no constant can replace,
while the outputs at inference never use the masks. Those updates, and only those
(matched by the variable's handle, not by name), are dropped; every other
stateful op still stops the freeze. The result is verified against Keras itself.
"""
from leangraph import graphs


_UPDATES = ("AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp")


def seed_generators(model):
    """Every SeedGenerator the Keras model's layers own."""
    found = []
    try:
        layers = list(model._flatten_layers(include_self=True, recursive=True))
    except (AttributeError, TypeError):
        return found
    for layer in layers:
        for generator in getattr(layer, "_seed_generators", None) or []:
            if generator not in found:
                found.append(generator)
    return found


def seed_state_inputs(model, concrete):
    """Names of the traced function's captured inputs that are a SeedGenerator's state."""
    handles = set()
    for generator in seed_generators(model):
        state = getattr(generator, "state", None)
        variable = getattr(state, "value", state)
        handle = getattr(variable, "handle", None)
        if handle is not None:
            handles.add(id(handle))
    if not handles:
        return set()
    return {internal.op.name for external, internal in concrete.graph.captures
            if id(external) in handles}


def drop_seed_updates(graph_def, state_inputs):
    """(graph_def without the updates of those state inputs, how many were dropped)."""
    if not state_inputs:
        return graph_def, 0
    dropped = {n.name for n in graph_def.node
               if n.op in _UPDATES and n.input and graphs.node_name(n.input[0]) in state_inputs}
    if not dropped:
        return graph_def, 0
    kept = [n for n in graph_def.node if n.name not in dropped]
    del graph_def.node[:]
    for node in kept:
        inputs = [i for i in node.input if not (i.startswith("^") and i[1:] in dropped)]
        if len(inputs) != len(node.input):
            del node.input[:]
            node.input.extend(inputs)
        graph_def.node.add().CopyFrom(node)
    return graph_def, len(dropped)


def note(count):
    return (f"dropped {count} update(s) of Keras's dropout SeedGenerator state: the random "
            "draws advance it even at training=False, but inference does not use them")
