"""leangraph.freeze(): Keras, SavedModel, tf.function, frozen graph or TF1 checkpoint in,
a clean frozen GraphDef out.

The pieces live in leangraph.freezing: which form a path is and loading Keras files
(files), TF1 checkpoints (checkpoint), choosing a TF1 graph's inputs among its
placeholders, flags and feeds (placeholders, graphdef), the Keras dropout state
inference does without (keras_state), names and shapes (shapes) and the cleaning
described next (clean).

TensorFlow's `convert_variables_to_constants_v2` does the freezing; what it leaves
behind is then cleaned, in Python, because it blocks TF's own transforms: the
returned `Identity` carries a control edge from a `NoOp` that depends on every
weight read, so `fold_batch_norms` matches nothing. After cleaning, the graph has
one `Placeholder` per input, named after the input, one `Identity` per output,
named after the output, weights as plain `Const` nodes, no control edge whose
source is only a constant, no `NoOp` sink, no variable or resource op, and
nothing the outputs do not need.
"""

from pathlib import Path

from leangraph import graphs
from leangraph.errors import FreezeError
from leangraph.freezing import keras_state
from leangraph.freezing.checkpoint import load_checkpoint
from leangraph.freezing.clean import _check_clean, _clean, _tensor_infos
from leangraph.freezing.ends import select_ends
from leangraph.freezing.files import _file_kind, _load_keras_file, load_keras
from leangraph.freezing.frozen import FrozenGraph
from leangraph.freezing.graphdef import _freeze_graph, _pin_placeholders, split_names
from leangraph.freezing.savedmodel import _saved_model_function, _saved_model_v1
from leangraph.freezing import tf_keras
from leangraph.freezing.shapes import (
    TensorInfo,
    _check_batch_size,
    _fmt,
    _merge_shape,
    _normalize_input_shapes,
    _output_names,
    _parse_shape,
    _unique,
    _valid_node_name,
)


__all__ = ["FrozenGraph", "TensorInfo", "freeze", "load_keras"]

# convert_variables_to_constants_v2's own two steps, without its costly last one.
_DIRECT_STEPS = ("_FunctionConverterDataInEager", "_replace_variables_by_constants")


# ---------------------------------------------------------------------------
# Tracing: everything becomes (ConcreteFunction, input names, output names)
# ---------------------------------------------------------------------------

def _keras_input_names(model):
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict):
        import keras

        flat_keys = keras.tree.flatten({k: k for k in struct})
        return [str(k) for k in flat_keys]
    names = []
    for i, tensor in enumerate(model.inputs):
        history = getattr(tensor, "_keras_history", None)
        operation = getattr(history, "operation", None)
        name = getattr(operation, "name", None) or getattr(tensor, "name", None)
        names.append(name or f"input_{i}")
    return names


def _keras_output_names(model, count):
    struct = getattr(model, "_outputs_struct", None)
    if isinstance(struct, dict):
        import keras

        return [str(k) for k in keras.tree.flatten({k: k for k in struct})]
    names = []
    for i, tensor in enumerate(getattr(model, "outputs", None) or []):
        history = getattr(tensor, "_keras_history", None)
        operation = getattr(history, "operation", None)
        names.append(getattr(operation, "name", None) or f"output_{i}")
    if len(names) != count:
        names = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
    return names


def _is_functional(model):
    try:
        return bool(model.inputs)
    except (AttributeError, ValueError):
        return False


def _trace_keras(model, input_shapes, batch_size):
    """Traces model(x, training=False) with named, fixed-shape TensorSpecs."""
    import keras
    import tensorflow as tf

    if _is_functional(model):
        raw_names = _keras_input_names(model)
        model_shapes = [tuple(t.shape) for t in model.inputs]
        dtypes = [str(getattr(t, "dtype", "float32")) for t in model.inputs]
        structure = getattr(model, "_inputs_struct", None)
    else:
        # A subclassed model has no symbolic inputs: the shapes come from the
        # caller, or from the shape the model was built with.
        if input_shapes is None:
            built = getattr(model, "_build_shapes_dict", None) or {}
            shape = next(iter(built.values()), None) if len(built) == 1 else None
            if shape is not None and len(shape) > 0:
                # the batch it happened to be built with is not the one to freeze
                input_shapes = {"input": (batch_size,) + tuple(shape)[1:]}
            else:
                raise FreezeError(
                    "a subclassed Keras model has no declared inputs; pass input_shapes, "
                    "e.g. input_shapes={'input': (1, 224, 224, 3)}"
                )
        if not isinstance(input_shapes, dict):
            input_shapes = {"input": input_shapes}
        raw_names = list(input_shapes)
        model_shapes = [None] * len(raw_names)
        dtypes = ["float32"] * len(raw_names)
        structure = None
        if len(raw_names) > 1:
            structure = dict(zip(raw_names, raw_names))

    names = _unique([_valid_node_name(n, f"input_{i}") for i, n in enumerate(raw_names)])
    overrides = _normalize_input_shapes(input_shapes, raw_names)
    if not _is_functional(model):
        # a subclassed model's shapes are the caller's, batch included unless unknown
        overrides = {k: tuple(batch_size if (i == 0 and d is None) else d for i, d in enumerate(v))
                     for k, v in overrides.items()}
    specs = []
    for raw, name, model_shape, dtype in zip(raw_names, names, model_shapes, dtypes):
        shape = _merge_shape(model_shape, overrides.get(raw), batch_size, raw)
        specs.append(tf.TensorSpec(shape, tf.as_dtype(dtype), name=name))

    def call(*flat):
        if len(flat) == 1 and not isinstance(structure, dict):
            args = flat[0]
        elif structure is not None:
            args = keras.tree.pack_sequence_as(structure, list(flat))
        else:
            args = list(flat)
        return model(args, training=False)

    try:
        concrete = tf.function(call).get_concrete_function(*specs)
    except FreezeError:
        raise
    except Exception as exc:  # shape errors from the model's own layers
        shapes = ", ".join(f"{s.name}{_fmt(s.shape.as_list())}" for s in specs)
        raise FreezeError(
            f"tracing the Keras model with inputs {shapes} failed: {type(exc).__name__}: {exc}"
        ) from None
    return concrete


def _trace_function(fn, input_shapes):
    """A tf.function without an input_signature, traced by argument name."""
    import inspect

    import tensorflow as tf

    if not input_shapes or not isinstance(input_shapes, dict):
        raise FreezeError(
            "a tf.function without an input_signature needs input_shapes as a dict "
            "{argument name: shape or tf.TensorSpec}"
        )
    params = list(inspect.signature(fn.python_function).parameters)
    unknown = [k for k in input_shapes if k not in params]
    if unknown:
        raise FreezeError(
            f"input_shapes names {', '.join(unknown)}, not an argument of the function "
            f"(its arguments: {', '.join(params)})"
        )
    specs = {}
    for name, shape in input_shapes.items():
        if isinstance(shape, tf.TensorSpec):
            specs[name] = tf.TensorSpec(shape.shape, shape.dtype, name=name)
        else:
            specs[name] = tf.TensorSpec(_parse_shape(shape, name), tf.float32, name=name)
    try:
        concrete = fn.get_concrete_function(**specs)
    except Exception as exc:
        raise FreezeError(f"tracing the tf.function failed: {type(exc).__name__}: {exc}") from None
    return concrete


_CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")


def _inline_calls(graph_def, input_names, output_names):
    """The graph with every function call inlined, cleaned again.

    A SavedModel's graph calls its model through StatefulPartitionedCall;
    the transforms match patterns inside one graph, so a call hides everything
    from them. TF's inline_partitionedcall transform leaves these calls alone;
    Grappler's function inlining, as TF's freezer runs it with aggressive
    inlining, does not.
    """
    if not any(n.op in _CALL_OPS for n in graph_def.node):
        return graph_def
    import tensorflow as tf
    from tensorflow.python.framework import convert_to_constants as ctc

    def imported():
        tf.compat.v1.import_graph_def(graph_def, name="")

    try:
        wrapped = tf.compat.v1.wrap_function(imported, [])
        pruned = wrapped.prune(
            [wrapped.graph.get_tensor_by_name(n + ":0") for n in input_names],
            [wrapped.graph.get_tensor_by_name(n + ":0") for n in output_names])
        data = ctc._FunctionConverterDataInEager(func=pruned, lower_control_flow=True,
                                                 aggressive_inlining=True)
        inlined, _ = ctc._replace_variables_by_constants(converter_data=data)
    except Exception as exc:  # noqa: BLE001 - TF raises many types here
        raise FreezeError(
            f"inlining the model's function calls failed: {type(exc).__name__}: {exc}"
        ) from None
    cleaned = _clean(inlined, [(t.op.name, n) for t, n in zip(pruned.inputs, input_names)],
                     [(t.name, n, t.dtype.as_datatype_enum)
                      for t, n in zip(pruned.outputs, output_names)], {})
    # Inlining leaves colocation hints naming the call's argument nodes, which are
    # gone; a frozen inference graph needs no colocation at all.
    for node in cleaned.node:
        if "_class" in node.attr:
            del node.attr["_class"]
    return cleaned


def _convert(concrete):
    """(frozen GraphDef, the function's input tensors that are still inputs).

    TensorFlow's convert_variables_to_constants_v2 ends by wrapping its GraphDef
    back into a ConcreteFunction, which costs more than the conversion itself
    (seconds on Xception) and is thrown away here; its two steps are called
    directly when this TensorFlow has them, the public function otherwise.
    """
    from tensorflow.python.framework import convert_to_constants as ctc

    if all(hasattr(ctc, step) for step in _DIRECT_STEPS):
        data = ctc._FunctionConverterDataInEager(func=concrete, lower_control_flow=True,
                                                 aggressive_inlining=False)
        graph_def, converted = ctc._replace_variables_by_constants(converter_data=data)
        captures = concrete.graph.internal_captures
        gone = {id(captures[i]) for i in converted}
        return graph_def, [t for t in concrete.inputs if id(t) not in gone]
    frozen = ctc.convert_variables_to_constants_v2(concrete)
    names = {t.name for t in frozen.inputs}
    return frozen.graph.as_graph_def(), [t for t in concrete.inputs if t.name in names]


def _structured_output_names(concrete, count):
    from tensorflow.python.util import nest

    try:
        paths = [p for p, _ in nest.flatten_with_joined_string_paths(concrete.structured_outputs)]
    except (TypeError, ValueError):
        paths = []
    if len(paths) != count:
        return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
    if paths == [""]:
        return ["output"]
    names = []
    for path in paths:
        name = path.replace("/", "_")
        names.append(f"output_{name}" if name[:1].isdigit() else name)
    return names


# ---------------------------------------------------------------------------
# Cleaning the frozen GraphDef
# ---------------------------------------------------------------------------
# ---------------------------------------------------------------------------
# freeze()
# ---------------------------------------------------------------------------

def _resolve(model, weights, signature, unsafe):
    """(kind, object, keras_model, keep_alive) for whatever `model` is."""
    import tensorflow as tf

    if isinstance(model, (str, Path)) or isinstance(model, tuple):
        kind = "keras" if isinstance(model, tuple) else _file_kind(model)
        if signature is not None and kind != "savedmodel":
            raise FreezeError("signature= applies to a SavedModel directory only")
        if isinstance(model, tuple):
            return "keras", None, load_keras(model, unsafe=unsafe, weights=weights), None
        if kind == "savedmodel":
            if weights is not None:
                raise FreezeError("weights= applies to a Keras architecture, not a SavedModel")
            try:
                concrete, loaded = _saved_model_function(model, signature)
            except FreezeError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of the object-graph load
                return "savedmodel-v1", f"{type(exc).__name__}: {exc}", None, None
            return "concrete", concrete, None, loaded
        if kind in ("graph", "checkpoint"):
            if weights is not None:
                raise FreezeError("weights= applies to a Keras architecture, not a frozen graph")
            if kind == "checkpoint":
                return "checkpoint", model, None, None
            return "graph", graphs.load_graph(model), None, None
        if kind == "keras" and weights is None and tf_keras.written_by_tf_keras(model):
            return "tf_keras", None, tf_keras.load_archive(model, unsafe), None
        return "keras", None, _load_keras_file(Path(model), kind, weights, unsafe), None
    if signature is not None:
        raise FreezeError("signature= applies to a SavedModel directory only")
    if hasattr(model, "SerializeToString") and hasattr(model, "node"):
        return "graph", graphs.load_graph(model), None, None
    try:
        import keras

        if isinstance(model, keras.Model):
            return "keras", None, load_keras(model, weights=weights), None
    except ImportError:  # pragma: no cover
        pass
    if tf_keras.is_tf_keras_model(model):
        if weights is not None:
            model.load_weights(weights)
        return "tf_keras", None, model, None
    from tensorflow.python.eager.polymorphic_function.concrete_function import ConcreteFunction

    if isinstance(model, ConcreteFunction):
        return "concrete", model, None, None
    if isinstance(model, tf.types.experimental.PolymorphicFunction):
        if getattr(model, "input_signature", None) is not None:
            # Its signature decides the trace; shapes are pinned like a ConcreteFunction's.
            return "concrete", model.get_concrete_function(), None, None
        return "function", model, None, None
    raise TypeError(
        "freeze() takes a keras.Model (or a tf_keras one), a path (.keras, .h5, .json, "
        "SavedModel directory, .pb/.pbtxt), an (arch.json, weights.h5) tuple, a GraphDef, "
        "a tf.function or a ConcreteFunction; got "
        f"{type(model).__name__}"
    )


def freeze(model, input_shapes=None, batch_size=1, output_names=None, signature=None,
           unsafe=False, weights=None, inputs=None, outputs=None, feeds=None,
           data_inputs=None):
    """Freezes a model for inference into a clean GraphDef.

    model: a keras.Model; a path to a `.keras` archive, a legacy full-model `.h5`,
        or an architecture `.json` (then `weights=` names its weights file, or pass
        `model=("arch.json", "weights.h5")`); a SavedModel directory; a tf.function
        (with an input_signature, or with input_shapes naming its arguments); or a
        ConcreteFunction.
    input_shapes: {input name: shape} (ints, None for unknown, or "1,224,224,3"),
        or a bare shape for a one-input model. A given shape is used as is,
        batch dimension included. A name that is not an input raises FreezeError.
    batch_size: fills the unknown leading dimension of every input not given in
        input_shapes; None keeps it dynamic.
    output_names: names for the outputs, in the model's output order; by default
        the Keras output names (dict keys, or the output layers' names), or the
        SavedModel signature's output keys.
    signature: the SavedModel signature to freeze (default serving_default).
    unsafe: allow loading Keras files that store Python bytecode (Lambda layers).
    inputs / outputs: node or tensor names ("a,b" or a list) to feed and to read. For a
        frozen graph or a TF1 checkpoint (a `.meta` file, a checkpoint prefix or its
        folder, which needs `outputs`) they choose the graph's ends: a named
        PlaceholderWithDefault becomes an input, unnamed ones keep their defaults, and
        scalar bool flags that are not inputs are set to False (see
        leangraph.freezing.placeholders). For other forms `outputs` picks a subset of
        the model's outputs and `inputs` must name its own inputs.
    feeds: {placeholder: scalar} (or ["name=value", ...]) frozen in as constants.
    data_inputs: the names the verification data gives values for; a TF1 graph's
        PlaceholderWithDefault or bool flag among them is an input (when `inputs` is
        not given).

    Keras models are called with training=False: batch norms use their moving
    statistics and dropout is off. Returns a FrozenGraph.
    """
    batch_size = _check_batch_size(batch_size)
    kind, function, keras_model, keep_alive = _resolve(model, weights, signature, unsafe)
    if kind == "graph":
        return _freeze_graph(function, input_shapes, batch_size, outputs or output_names,
                             inputs, feeds, data_inputs=data_inputs)
    if kind == "checkpoint":
        wanted = split_names(outputs or output_names)
        graph_def, notes = load_checkpoint(function, wanted)
        frozen = _freeze_graph(graph_def, input_shapes, batch_size, wanted, inputs, feeds,
                               source="checkpoint", notes=notes, data_inputs=data_inputs)
        _check_clean(frozen.graph_def)  # a lookup table the outputs read, ...
        return frozen
    if kind == "savedmodel-v1":
        frozen = _freeze_v1(model, signature, function, input_shapes, batch_size, output_names)
    else:
        frozen = _freeze_traced(kind, function, keras_model, keep_alive, input_shapes,
                                batch_size, output_names)
    return select_ends(frozen, inputs, outputs, feeds)


def _freeze_traced(kind, function, keras_model, keep_alive, input_shapes, batch_size,
                   output_names):
    """A FrozenGraph from a Keras model, a tf.function or a ConcreteFunction."""
    if kind == "keras":
        concrete = _trace_keras(keras_model, input_shapes, batch_size)
    elif kind == "tf_keras":
        concrete = tf_keras.trace(keras_model, input_shapes, batch_size)
        # the pipeline's Keras steps (predict as the reference, pruning) are Keras 3's
        keras_model = None
    elif kind == "function":
        concrete = _trace_function(function, input_shapes)
    else:
        concrete = function

    try:
        graph_def, input_tensors = _convert(concrete)
    except Exception as exc:  # TF raises many types on what it cannot convert
        raise FreezeError(
            f"converting variables to constants failed: {type(exc).__name__}: {exc}"
        ) from None
    notes = []
    if kind == "keras":
        graph_def, dropped = keras_state.drop_seed_updates(
            graph_def, keras_state.seed_state_inputs(keras_model, concrete))
        if dropped:
            notes.append(keras_state.note(dropped))
    source = kind if kind in ("keras", "tf_keras") else "savedmodel" \
        if keep_alive is not None else "function"
    del keep_alive
    placeholders = [t.op.name for t in input_tensors]

    placeholder_shapes = {}
    if kind == "concrete":
        # A ConcreteFunction cannot be retraced; pin the Placeholders' shapes instead
        # (ops below them still compute shapes at run time, so this is sound).
        overrides = _normalize_input_shapes(input_shapes, placeholders)
        for name, tensor in zip(placeholders, input_tensors):
            known = None if tensor.shape.rank is None else tuple(tensor.shape.as_list())
            pinned = _merge_shape(known, overrides.get(name), batch_size, name)
            if pinned != known:
                placeholder_shapes[name] = pinned

    out_tensors = [t for t in concrete.outputs if t is not None]
    if kind == "keras":
        default_names = _keras_output_names(keras_model, len(out_tensors))
    else:
        default_names = _structured_output_names(concrete, len(out_tensors))
    in_names = _unique([_valid_node_name(n, f"input_{i}") for i, n in enumerate(placeholders)])
    out_names = _output_names(output_names, default_names, in_names, len(out_tensors))

    cleaned = _clean(
        graph_def,
        list(zip(placeholders, in_names)),
        [(t.name, n, t.dtype.as_datatype_enum) for t, n in zip(out_tensors, out_names)],
        placeholder_shapes,
    )
    _check_clean(cleaned)
    infos = _tensor_infos(cleaned, in_names + out_names)
    return FrozenGraph(
        graph_def=cleaned,
        inputs=infos[: len(in_names)],
        outputs=infos[len(in_names):],
        keras_model=keras_model,
        source=source,
        notes=notes,
    )


def _freeze_v1(path, signature, why, input_shapes, batch_size, output_names):
    graph_def, placeholders, outputs = _saved_model_v1(path, signature)
    in_names = _unique([name for _, name in placeholders])
    placeholders = [(p, n) for (p, _), n in zip(placeholders, in_names)]
    default_names = [_valid_node_name(k, f"output_{i}") for i, (_, k, _) in enumerate(outputs)]
    out_names = _output_names(output_names, default_names, in_names, len(outputs))
    shapes = _pin_placeholders(graph_def, [p for p, _ in placeholders],
                               {p: input_shapes[n] for p, n in placeholders
                                if isinstance(input_shapes, dict) and n in input_shapes}
                               if isinstance(input_shapes, dict) else input_shapes, batch_size)
    cleaned = _clean(graph_def, placeholders,
                     [(t, n, d) for (t, _, d), n in zip(outputs, out_names)], shapes)
    cleaned = _inline_calls(cleaned, in_names, out_names)
    _check_clean(cleaned)
    infos = _tensor_infos(cleaned, in_names + out_names)
    return FrozenGraph(graph_def=cleaned, inputs=infos[:len(in_names)],
                       outputs=infos[len(in_names):], source="savedmodel-v1",
                       notes=[f"TF's object-graph loader failed ({why[:200]}); loaded with "
                              "TF's v1 loader and the signature's tensor names instead"])
