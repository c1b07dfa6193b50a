"""--inputs, --outputs and --feed for the model forms whose ends are declared (Keras,
SavedModel, tf.function): outputs pick a subset, inputs must be the model's own."""

from leangraph.errors import FreezeError
from leangraph.freezing.graphdef import split_names
from leangraph.freezing.placeholders import prune


def select_ends(frozen, inputs=None, outputs=None, feeds=None):
    """`frozen` read at `outputs` only; `inputs` checked against its inputs; no feeds."""
    if feeds:
        raise FreezeError(
            f"--feed sets placeholders of a TF1 graph or checkpoint; this {frozen.source} "
            f"model's inputs are {', '.join(frozen.input_names)} and it has no other "
            "placeholders")
    inputs = split_names(inputs)
    if inputs is not None:
        wanted = [n.split(":")[0] for n in inputs]
        if sorted(wanted) != sorted(frozen.input_names):
            raise FreezeError(
                f"--inputs {','.join(inputs)}: a {frozen.source} model's inputs are its own: "
                f"{', '.join(frozen.input_names)}")
        order = {name: i for i, name in enumerate(wanted)}
        frozen.inputs = sorted(frozen.inputs, key=lambda t: order[t.name])
    outputs = split_names(outputs)
    if outputs is None:
        return frozen
    wanted = [n.split(":")[0] for n in outputs]
    missing = [n for n in wanted if n not in frozen.output_names]
    if missing:
        raise FreezeError(
            f"--outputs names {', '.join(missing)}, not an output of the model; its outputs "
            f"are: {', '.join(frozen.output_names)}")
    frozen.graph_def, _ = prune(frozen.graph_def, wanted, frozen.input_names)
    positions = [frozen.output_names.index(n) for n in wanted]
    frozen.outputs = [frozen.outputs[i] for i in positions]
    if frozen.keras_model is not None:
        frozen.keras_model = _keras_outputs(frozen, positions)
    return frozen


def _keras_outputs(frozen, positions):
    """The Keras model reading only the chosen outputs (it stays the reference), or None
    when it cannot (a subclassed model): then the frozen graph is the reference."""
    import keras

    model = frozen.keras_model
    try:
        outputs = keras.tree.flatten(model.outputs)
        if len(outputs) != len(positions) or positions != list(range(len(outputs))):
            model = keras.Model(model.inputs, [outputs[i] for i in positions],
                                name=model.name)
    except (AttributeError, ValueError, TypeError, IndexError):
        frozen.notes.append("--outputs picks outputs of a Keras model without declared "
                            "outputs: the frozen graph is the reference")
        return None
    return model
