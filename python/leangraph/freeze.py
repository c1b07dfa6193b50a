"""leangraph.freeze(): Keras, SavedModel or tf.function in, a clean frozen GraphDef out.

TensorFlow's `convert_variables_to_constants_v2` does the freezing; what it leaves
behind is then cleaned here, in Python, because it blocks TF's own transforms: the
returned `Identity` carries a control edge from a `NoOp` that depends on every
weight read, so `fold_batch_norms` matches nothing. After cleaning, the graph has
one `Placeholder` per input, named after the input, one `Identity` per output,
named after the output, weights as plain `Const` nodes, no control edge whose
source is only a constant, no `NoOp` sink, no variable or resource op, and
nothing the outputs do not need.
"""

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from leangraph import graphs
from leangraph.errors import FreezeError, UnsafeModelError, UsageError

# Ops that must not survive a freeze: they need a session with initialized state.
_STATEFUL_RESOURCE_OPS = {
    "VarHandleOp", "ReadVariableOp", "AssignVariableOp", "AssignAddVariableOp",
    "AssignSubVariableOp", "ResourceGather", "ResourceGatherNd", "VarIsInitializedOp",
    "Variable", "VariableV2", "VariableV3", "Assign", "AssignAdd", "AssignSub",
    "HashTable", "HashTableV2", "MutableHashTable", "MutableHashTableV2",
    "MutableHashTableOfTensors", "MutableHashTableOfTensorsV2", "MutableDenseHashTable",
    "MutableDenseHashTableV2", "LookupTableImportV2", "LookupTableFindV2",
    "InitializeTableV2", "InitializeTableFromTextFileV2",
}
# Ops that only pass a value (or nothing) along: a control edge from one of them,
# when everything upstream is constant, orders nothing.
_PASS_THROUGH_OPS = {"Identity", "NoOp", "Snapshot"}
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_GRAPH_SUFFIXES = {".pb", ".pbtxt", ".prototxt"}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
# convert_variables_to_constants_v2's own two steps, without its costly last one.
_DIRECT_STEPS = ("_FunctionConverterDataInEager", "_replace_variables_by_constants")
_NODE_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/>]*$")


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output.

    name: the NODE name (the tensor is name + ":0"); dtype: numpy dtype name;
    shape: tuple of ints, None for an unknown dimension (None for unknown rank).
    """

    name: str
    dtype: str
    shape: tuple

    @property
    def tensor(self):
        return self.name + ":0"

    def shape_text(self):
        """'1,299,299,3'; an unknown dimension prints as -1."""
        if self.shape is None:
            return "?"
        return ",".join("-1" if d is None else str(d) for d in self.shape)

    def to_dict(self):
        return {"name": self.name, "dtype": self.dtype,
                "shape": None if self.shape is None else list(self.shape)}


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


# ---------------------------------------------------------------------------
# Keras loading (safe mode)
# ---------------------------------------------------------------------------

def _read_head(path, size=8):
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError as exc:
        raise FreezeError(f"cannot read {path}: {exc.strerror}") from None


def _lambda_layers(config):
    """Names of layers in a Keras config whose code is stored as Python bytecode.

    Keras 3 writes a lambda as {"class_name": "__lambda__", ...}; Keras 2 (legacy
    .h5/.json) as a Lambda layer with function_type "lambda".
    """
    found = []

    def walk(item, layer):
        if isinstance(item, dict):
            if item.get("class_name") == "Lambda" and isinstance(item.get("config"), dict):
                layer = item["config"].get("name", "Lambda")
                cfg = item["config"]
                if "lambda" in (cfg.get("function_type"), cfg.get("output_shape_type")):
                    found.append(layer)
            if item.get("class_name") == "__lambda__":
                found.append(layer or "(a lambda outside any layer)")
            for value in item.values():
                walk(value, layer)
        elif isinstance(item, (list, tuple)):
            for value in item:
                walk(value, layer)

    walk(config, None)
    return sorted(set(found))


def _refuse_unsafe(config, origin):
    names = _lambda_layers(config)
    if names:
        layers = ", ".join(f"'{n}'" for n in names)
        raise UnsafeModelError(
            f"{origin} stores Python bytecode (a lambda, in layer {layers}); loading it "
            "runs code from the file. Pass unsafe=True (--unsafe) only if you trust "
            "where the file came from."
        )


def _keras_config(path, kind):
    """The model's config as stored in the file, to inspect before Keras loads it."""
    try:
        if kind == "keras":
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        if kind == "h5":
            import h5py

            with h5py.File(path, "r") as handle:
                raw = handle.attrs.get("model_config")
                if raw is None:
                    return None
                return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise FreezeError(f"{path} is not a readable Keras model: {exc}") from None


def _file_kind(path):
    """'keras', 'h5', 'json' or 'savedmodel', judged by content, not only the name."""
    path = Path(path)
    if not path.exists():
        raise FreezeError(f"model not found: {path}")
    if path.is_dir():
        if any((path / name).is_file() for name in _SAVED_MODEL_FILES):
            return "savedmodel"
        raise FreezeError(
            f"{path} is a directory but not a SavedModel (no saved_model.pb in it)"
        )
    head = _read_head(path)
    if head.startswith(_ZIP_MAGIC):
        return "keras"
    if head.startswith(_HDF5_MAGIC):
        return "h5"
    if head.lstrip()[:1] == b"{":
        return "json"
    if path.name in _SAVED_MODEL_FILES:
        raise FreezeError(f"{path} is part of a SavedModel; pass its directory, {path.parent}")
    if path.suffix in _GRAPH_SUFFIXES:
        return "graph"
    raise FreezeError(
        f"{path} is not a model: expected a .keras archive, a full-model .h5, an "
        "architecture .json (with weights), a SavedModel directory or a frozen .pb/.pbtxt"
    )


def _load_keras_file(path, kind, weights, unsafe):
    import keras

    config = _keras_config(path, kind)
    if kind == "h5" and config is None:
        raise FreezeError(
            f"{path} holds weights only (no model_config); pass the architecture too: "
            "model=('model.json', 'weights.h5')"
        )
    if kind == "json" and not isinstance(config, dict):
        raise FreezeError(f"{path} is JSON but not a Keras model architecture")
    if not unsafe:
        _refuse_unsafe(config, str(path))
    try:
        if kind == "json":
            model = keras.saving.deserialize_keras_object(config, safe_mode=not unsafe)
        else:
            model = keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except ValueError as exc:
        if "safe_mode" in str(exc):
            raise UnsafeModelError(
                f"{path}: Keras refuses to load it in safe mode, because loading runs "
                f"code from the file ({exc}). Pass unsafe=True only for a trusted file."
            ) from None
        raise FreezeError(f"cannot load {path} as a Keras model: {exc}") from None
    except Exception as exc:  # Keras raises many types on a bad file
        raise FreezeError(
            f"cannot load {path} as a Keras model: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(model, keras.Model):
        raise FreezeError(f"{path} holds a {type(model).__name__}, not a Keras model")
    if weights is not None:
        _load_weights(model, weights)
    elif kind == "json":
        raise FreezeError(
            f"{path} is an architecture only; pass its weights too: "
            "model=('arch.json', 'weights.h5') or weights='weights.h5'"
        )
    return model


def _load_weights(model, weights):
    path = Path(weights)
    if not path.is_file():
        raise FreezeError(f"weights file not found: {path}")
    if not _read_head(path).startswith(_HDF5_MAGIC):
        raise FreezeError(f"{path} is not an HDF5 weights file")
    try:
        model.load_weights(str(path))
    except Exception as exc:  # shape mismatches, missing layers, bad suffix
        raise FreezeError(f"cannot load weights {path} into the model: {exc}") from None


def load_keras(path_or_model, unsafe=False, weights=None):
    """A keras.Model from a model, a .keras / full-model .h5 file, or an architecture.

    path_or_model: a keras.Model (returned as is); a path to a `.keras` archive or a
    legacy full-model `.h5`; a path to an architecture `.json` together with
    `weights=` (an `.h5` / `.weights.h5` file); or a tuple `(arch.json, weights.h5)`.
    The file type is judged by its content.

    Safe mode: a file whose config stores Python bytecode (a `Lambda` layer wrapping
    a lambda) raises UnsafeModelError, because loading it runs code from the file,
    unless `unsafe=True`. Any other failure raises FreezeError.
    """
    try:
        import keras
    except ImportError:  # pragma: no cover - keras ships with tensorflow
        raise FreezeError("Keras is not installed") from None
    if isinstance(path_or_model, keras.Model):
        if weights is not None:
            _load_weights(path_or_model, weights)
        return path_or_model
    if isinstance(path_or_model, tuple):
        if len(path_or_model) != 2:
            raise FreezeError("a model tuple must be (architecture.json, weights.h5)")
        if weights is not None:
            raise FreezeError("weights given twice: in the model tuple and as weights=")
        path_or_model, weights = path_or_model
    if not isinstance(path_or_model, (str, Path)):
        raise TypeError(
            f"expected a keras.Model or a path, got {type(path_or_model).__name__}"
        )
    kind = _file_kind(path_or_model)
    if kind in ("savedmodel", "graph"):
        what = "a SavedModel" if kind == "savedmodel" else "a frozen GraphDef"
        raise FreezeError(
            f"{path_or_model} is {what}, not a Keras file; use leangraph.freeze() or "
            "leangraph.load_model()"
        )
    return _load_keras_file(Path(path_or_model), kind, weights, unsafe)


# ---------------------------------------------------------------------------
# Names and shapes
# ---------------------------------------------------------------------------

def _valid_node_name(name, fallback):
    name = re.sub(r"[^A-Za-z0-9_.\-/>]", "_", str(name)).strip("/")
    if not name:
        return fallback
    if not _NODE_NAME.match(name):
        name = "_" + name if name[0] in "_-/>" else name
        name = ("n" + name) if not _NODE_NAME.match(name) else name
    return name


def _unique(names):
    seen, result = set(), []
    for name in names:
        candidate, k = name, 1
        while candidate in seen:
            candidate = f"{name}_{k}"
            k += 1
        seen.add(candidate)
        result.append(candidate)
    return result


def _parse_shape(shape, what):
    """A tuple of ints/None from a tuple, list, TensorShape or '1,299,299,3'."""
    if isinstance(shape, str):
        parts = [p.strip() for p in shape.split(",")] if shape.strip() else []
        dims = []
        for part in parts:
            if part in ("?", "-1", "None", "none", ""):
                dims.append(None)
            elif part.isdigit():
                dims.append(int(part))
            else:
                raise FreezeError(f"bad dimension '{part}' in the shape of {what}")
        return tuple(dims)
    if hasattr(shape, "as_list"):
        shape = shape.as_list()
    try:
        dims = list(shape)
    except TypeError:
        raise FreezeError(
            f"the shape of {what} must be a sequence of ints, got {shape!r}"
        ) from None
    result = []
    for dim in dims:
        if dim is None or (isinstance(dim, int) and dim == -1):
            result.append(None)
        elif isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0:
            result.append(int(dim))
        elif hasattr(dim, "__index__") and int(dim) >= 0:
            result.append(int(dim))
        else:
            raise FreezeError(f"bad dimension {dim!r} in the shape of {what}")
    return tuple(result)


def _normalize_input_shapes(input_shapes, names):
    """{input name: shape}; a bare shape is accepted for a one-input model."""
    if input_shapes is None:
        return {}
    if not isinstance(input_shapes, dict):
        if len(names) != 1:
            raise FreezeError(
                f"the model has {len(names)} inputs ({', '.join(names)}); give "
                "input_shapes as a dict {name: shape}"
            )
        return {names[0]: _parse_shape(input_shapes, names[0])}
    unknown = [k for k in input_shapes if k not in names]
    if unknown:
        raise FreezeError(
            f"input_shapes names {', '.join(map(str, unknown))}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not an input of the model; "
            f"its inputs are: {', '.join(names)}"
        )
    return {k: _parse_shape(v, k) for k, v in input_shapes.items()}


def _check_batch_size(batch_size):
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive int or None, got {batch_size!r}")
    return batch_size


def _merge_shape(model_shape, override, batch_size, name):
    """The shape to trace with: the override, else the model's with the batch filled."""
    if override is not None:
        if model_shape is not None and len(override) != len(model_shape):
            raise FreezeError(
                f"input '{name}' has rank {len(model_shape)} ({_fmt(model_shape)}), "
                f"but input_shapes gives rank {len(override)} ({_fmt(override)})"
            )
        if model_shape is not None:
            for want, have in zip(override, model_shape):
                if want is not None and have is not None and want != have:
                    raise FreezeError(
                        f"input_shapes gives '{name}' the shape {_fmt(override)}, "
                        f"incompatible with the model's {_fmt(model_shape)}"
                    )
        return tuple(override)
    if model_shape is None:
        raise FreezeError(f"the shape of input '{name}' is unknown; pass input_shapes")
    shape = list(model_shape)
    if shape and shape[0] is None and batch_size is not None:
        shape[0] = batch_size
    return tuple(shape)


def _fmt(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


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


def _saved_model_v1_session(path, signature, graph):
    import tensorflow as tf

    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
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

def _split(endpoint):
    """('node', port) for 'node:port' / 'node'; control inputs are not passed here."""
    head, sep, port = endpoint.rpartition(":")
    if sep and port.isdigit():
        return head, int(port)
    return endpoint, 0


def _constant_only(nodes):
    """Names of nodes whose value (or completion) depends on constants alone."""
    memo = {}

    def visit(name):
        if name in memo:
            return memo[name]
        memo[name] = False  # cycles (loops) are not constant
        node = nodes.get(name)
        if node is None:
            return False
        if node.op == "Const":
            result = True
        elif node.op in _PASS_THROUGH_OPS:
            result = all(visit(graphs.node_name(i)) for i in node.input)
        else:
            result = False
        memo[name] = result
        return result

    return {name for name in nodes if visit(name)}


def _referenced_functions(graph_def):
    library = {f.signature.name: f for f in graph_def.library.function}
    if not library:
        return set()

    def from_attrs(attrs):
        for value in attrs.values():
            if value.HasField("func"):
                yield value.func.name
            if value.HasField("list"):
                for func in value.list.func:
                    yield func.name

    pending = []
    for node in graph_def.node:
        if node.op in library:
            pending.append(node.op)
        pending.extend(from_attrs(node.attr))
    used = set()
    while pending:
        name = pending.pop()
        if name in used or name not in library:
            continue
        used.add(name)
        for node in library[name].node_def:
            if node.op in library:
                pending.append(node.op)
            pending.extend(from_attrs(node.attr))
    return used


def _clean(graph_def, inputs, outputs, placeholder_shapes):
    """Rewrites a freshly frozen GraphDef into the clean form (see the module doc).

    inputs: [(placeholder node, wanted name)]; outputs: [(tensor, wanted name,
    dtype enum)]; placeholder_shapes: {placeholder node: shape tuple} to pin.
    """
    from tensorflow.core.framework import attr_value_pb2, graph_pb2

    nodes = {n.name: n for n in graph_def.node}

    # 1. Control edges from constant-only sources (the weight reads and the NoOp
    #    gathering them) order nothing; every other control edge is kept.
    constant = _constant_only(nodes)
    for node in graph_def.node:
        kept = [i for i in node.input if not (i.startswith("^") and i[1:] in constant)]
        if len(kept) != len(node.input):
            del node.input[:]
            node.input.extend(kept)

    # 2. Results: the function's return Identity adds nothing but its remaining
    #    control edges (side effects such as asserts), which move to the output.
    sources = []
    for tensor, name, dtype in outputs:
        node = nodes[_split(tensor)[0]]
        controls = []
        if node.op == "Identity" and node.input and not node.input[0].startswith("^"):
            tensor = node.input[0]
            controls = [i for i in node.input[1:] if i.startswith("^")]
        sources.append((tensor, name, dtype, controls))

    # 3. Weight reads: Identity(Const) -> the Const itself, so that transforms
    #    matching Conv2D(x, Const) see the weights directly.
    alias = {}
    for node in graph_def.node:
        if (node.op == "Identity" and len(node.input) == 1
                and not node.input[0].startswith("^")):
            source, port = _split(node.input[0])
            if port == 0 and nodes.get(source) is not None and nodes[source].op == "Const":
                alias[node.name] = source

    def resolve(endpoint):
        if endpoint.startswith("^"):
            base = endpoint[1:]
            return "^" + alias.get(base, base)
        name, port = _split(endpoint)
        if name in alias and port == 0:
            return alias[name]
        return endpoint

    for node in graph_def.node:
        rewired = [resolve(i) for i in node.input]
        if rewired != list(node.input):
            del node.input[:]
            node.input.extend(rewired)
    sources = [(resolve(t), n, d, [resolve(c) for c in cs]) for t, n, d, cs in sources]

    # 4. Prune to what the outputs need; keep every declared input.
    keep = set()
    pending = [graphs.node_name(t) for t, _, _, cs in sources for t in [t] + cs]
    pending += [p for p, _ in inputs]
    while pending:
        name = pending.pop()
        if name in keep or name not in nodes:
            continue
        keep.add(name)
        pending.extend(graphs.node_name(i) for i in nodes[name].input)

    # 5. Names: inputs and outputs get the wanted names; an internal node that
    #    already has one of them moves aside.
    wanted = {name for _, name in inputs} | {name for _, name, _, _ in sources}
    renames = {}
    taken = set(keep) | wanted
    for name in sorted(keep):
        if name in wanted and name not in {p for p, w in inputs if p == w}:
            k, candidate = 1, f"{name}_1"
            while candidate in taken:
                k += 1
                candidate = f"{name}_{k}"
            taken.add(candidate)
            renames[name] = candidate
    for placeholder, name in inputs:
        if placeholder != name:
            renames[placeholder] = name

    def rename(endpoint):
        control = endpoint.startswith("^")
        base = endpoint[1:] if control else endpoint
        name, port = _split(base)
        if name not in renames:
            return endpoint
        new = renames[name]
        if control:
            return "^" + new
        return new if (":" not in base) else f"{new}:{port}"

    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    for node in graph_def.node:
        if node.name not in keep:
            continue
        copy = out.node.add()
        copy.CopyFrom(node)
        copy.name = renames.get(node.name, node.name)
        del copy.input[:]
        copy.input.extend(rename(i) for i in node.input)
        if node.name in placeholder_shapes:
            shape = placeholder_shapes[node.name]
            proto = copy.attr["shape"].shape
            proto.Clear()
            for dim in shape:
                proto.dim.add().size = -1 if dim is None else dim
    for tensor, name, dtype, controls in sources:
        node = out.node.add()
        node.name = name
        node.op = "Identity"
        node.input.append(rename(tensor))
        node.input.extend(sorted(set(rename(c) for c in controls)))
        node.attr["T"].CopyFrom(attr_value_pb2.AttrValue(type=dtype))

    # 6. Colocation hints may name nodes that are gone or renamed.
    present = {n.name for n in out.node}
    for node in out.node:
        if "_class" not in node.attr:
            continue
        hints = []
        for raw in node.attr["_class"].list.s:
            text = raw.decode("utf-8", "replace")
            if text.startswith("loc:@"):
                target = renames.get(text[5:], text[5:])
                if target in present and target != node.name:
                    hints.append(("loc:@" + target).encode())
        if hints:
            del node.attr["_class"].list.s[:]
            node.attr["_class"].list.s.extend(hints)
        else:
            del node.attr["_class"]

    # 7. Only the functions still called.
    used = _referenced_functions(_with_library(out, graph_def))
    for func in graph_def.library.function:
        if func.signature.name in used:
            out.library.function.add().CopyFrom(func)
    for grad in graph_def.library.gradient:
        if grad.function_name in used:
            out.library.gradient.add().CopyFrom(grad)
    return out


def _with_library(nodes_from, library_from):
    """A GraphDef view with the nodes of one and the function library of another."""
    from tensorflow.core.framework import graph_pb2

    view = graph_pb2.GraphDef()
    view.node.extend(nodes_from.node)
    view.library.CopyFrom(library_from.library)
    return view


def _check_clean(graph_def):
    from tensorflow.core.framework import types_pb2

    bad = sorted({n.op for n in graph_def.node if n.op in _STATEFUL_RESOURCE_OPS})
    resource = sorted(
        n.name for n in graph_def.node
        if any(v.type == types_pb2.DT_RESOURCE for v in n.attr.values())
    )
    if bad or resource:
        what = ", ".join(bad) if bad else f"resource tensors ({', '.join(resource[:5])})"
        raise FreezeError(
            f"the model keeps state that cannot be frozen into constants: {what} "
            "(lookup tables and other resources need a session to initialize them)"
        )


def _tensor_infos(graph_def, names):
    """TensorInfo for ':0' of each node, with shapes from TF's shape inference."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.OpError) as exc:
            raise FreezeError(f"the frozen graph does not import cleanly: {exc}") from None
    infos = []
    for name in names:
        tensor = graph.get_tensor_by_name(name + ":0")
        shape = None if tensor.shape.rank is None else tuple(tensor.shape.as_list())
        infos.append(TensorInfo(name, tensor.dtype.name, shape))
    return infos


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
        if kind == "graph":
            if weights is not None:
                raise FreezeError("weights= applies to a Keras architecture, not a frozen graph")
            return "graph", graphs.load_graph(model), None, None
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
    from tensorflow.python.eager.polymorphic_function.concrete_function import ConcreteFunction

    if isinstance(model, ConcreteFunction):
        return "concrete", model, None, None
    if isinstance(model, tf.types.experimental.PolymorphicFunction):
        if getattr(model, "input_signature", None) is not None:
            # Its signature decides the trace; shapes are pinned like a ConcreteFunction's.
            return "concrete", model.get_concrete_function(), None, None
        return "function", model, None, None
    raise TypeError(
        "freeze() takes a keras.Model, a path (.keras, .h5, .json, SavedModel directory, "
        ".pb/.pbtxt), an (arch.json, weights.h5) tuple, a GraphDef, a tf.function or a "
        "ConcreteFunction; got "
        f"{type(model).__name__}"
    )


def freeze(model, input_shapes=None, batch_size=1, output_names=None, signature=None,
           unsafe=False, weights=None):
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

    Keras models are called with training=False: batch norms use their moving
    statistics and dropout is off. Returns a FrozenGraph.
    """
    batch_size = _check_batch_size(batch_size)
    kind, function, keras_model, keep_alive = _resolve(model, weights, signature, unsafe)
    if kind == "graph":
        return _freeze_graph(function, input_shapes, batch_size, output_names)
    if kind == "savedmodel-v1":
        return _freeze_v1(model, signature, function, input_shapes, batch_size, output_names)
    if kind == "keras":
        concrete = _trace_keras(keras_model, input_shapes, batch_size)
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
    source = "keras" if kind == "keras" else "savedmodel" if keep_alive is not None \
        else "function"
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
    )


def _pin_placeholders(graph_def, names, input_shapes, batch_size):
    """{placeholder: shape} to pin: input_shapes as given, else the batch filled in."""
    shapes = _tensor_infos(graph_def, names)
    overrides = _normalize_input_shapes(input_shapes, names)
    pinned = {}
    for info in shapes:
        shape = _merge_shape(info.shape, overrides.get(info.name), batch_size, info.name) \
            if info.shape is not None or info.name in overrides else None
        if shape is not None and shape != info.shape:
            pinned[info.name] = shape
    return pinned


def _set_shapes(graph_def, pinned):
    for node in graph_def.node:
        if node.name in pinned:
            proto = node.attr["shape"].shape
            proto.Clear()
            for dim in pinned[node.name]:
                proto.dim.add().size = -1 if dim is None else dim


def _freeze_graph(graph_def, input_shapes, batch_size, output_names):
    """A frozen GraphDef as given: its Placeholders are the inputs, its sinks the outputs
    (or output_names, which here select nodes rather than rename them)."""
    in_names = graphs.default_inputs(graph_def)
    if output_names is None:
        out_names = graphs.default_outputs(graph_def)
    else:
        out_names = [n.strip() for n in (output_names.split(",") if isinstance(output_names, str)
                                         else output_names) if str(n).strip()]
        present = {n.name for n in graph_def.node}
        missing = [n for n in out_names if graphs.node_name(n) not in present]
        if missing:
            raise FreezeError(f"output_names: not nodes of the graph: {', '.join(missing)}")
    if not out_names:
        raise FreezeError("the graph has no outputs (no node that nothing consumes)")
    _set_shapes(graph_def, _pin_placeholders(graph_def, in_names, input_shapes, batch_size))
    infos = _tensor_infos(graph_def, in_names + out_names)
    return FrozenGraph(graph_def=graph_def, inputs=infos[:len(in_names)],
                       outputs=infos[len(in_names):], source="graph")


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


def _output_names(given, default_names, in_names, count):
    if given is None:
        names = [_valid_node_name(n, f"output_{i}") for i, n in enumerate(default_names)]
        return _unique(in_names + names)[len(in_names):]
    if isinstance(given, str):
        given = [n for n in given.split(",") if n.strip()]
    names = [str(n).strip() for n in given]
    if len(names) != count:
        raise FreezeError(
            f"output_names has {len(names)} names but the model has {count} outputs "
            f"({', '.join(default_names)})"
        )
    bad = [n for n in names if not _NODE_NAME.match(n)]
    if bad:
        raise FreezeError(f"output_names: not valid node names: {', '.join(bad)}")
    if len(set(names)) != len(names):
        raise FreezeError(f"output_names repeats a name: {', '.join(names)}")
    clash = sorted(set(in_names) & set(names))
    if clash:
        raise FreezeError(f"output_names reuse input names: {', '.join(clash)}")
    return names
