"""Which form a model path holds, judged by content, and loading Keras files safely."""

import json
import zipfile
from pathlib import Path

from leangraph.errors import FreezeError, UnsafeModelError
from leangraph.freezing.checkpoint import is_checkpoint


_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_GRAPH_SUFFIXES = {".pb", ".pbtxt", ".prototxt"}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


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
    """'keras', 'h5', 'json', 'savedmodel', 'graph' or 'checkpoint' (TF1), judged by
    content, not only the name."""
    path = Path(path)
    if not path.exists():
        if is_checkpoint(path):
            return "checkpoint"
        raise FreezeError(f"model not found: {path}")
    if path.is_dir():
        if any((path / name).is_file() for name in _SAVED_MODEL_FILES):
            return "savedmodel"
        if is_checkpoint(path):
            return "checkpoint"
        raise FreezeError(
            f"{path} is a directory but not a SavedModel (no saved_model.pb in it) and not "
            "a TF1 checkpoint (no checkpoint or .index file)"
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
    if is_checkpoint(path):
        return "checkpoint"
    raise FreezeError(
        f"{path} is not a model: expected a .keras archive, a full-model .h5, an "
        "architecture .json (with weights), a SavedModel directory, a frozen .pb/.pbtxt "
        "or a TF1 checkpoint (.meta, prefix or folder)"
    )


def _load_keras_file(path, kind, weights, unsafe):
    import keras

    config = _keras_config(path, kind)
    if kind == "h5" and config is None:
        raise FreezeError(
            f"{path} holds weights only (no model_config): build the model in code, load "
            "these weights into it and pass the model object to leangraph (or save it with "
            "model.save('model.keras')); or give its architecture .json with these weights "
            "(model=('model.json', 'weights.h5'); on the command line ARCH.json --weights W.h5)"
        )
    if kind == "json" and not isinstance(config, dict):
        raise FreezeError(f"{path} is JSON but not a Keras model architecture")
    if not unsafe:
        _refuse_unsafe(config, str(path))
    try:
        if kind == "json":
            model = keras.saving.deserialize_keras_object(config, safe_mode=not unsafe)
        else:
            model = keras.saving.load_model(path, compile=False, safe_mode=not unsafe,
                                            custom_objects=_keras_operations(config)
                                            if kind == "h5" else None)
    except ValueError as exc:
        if "safe_mode" in str(exc):
            raise UnsafeModelError(
                f"{path}: Keras refuses to load it in safe mode, because loading runs "
                f"code from the file ({exc}). Pass unsafe=True only for a trusted file."
            ) from None
        raise FreezeError(f"cannot load {path} as a Keras model: {_first_part(exc)}") from None
    except Exception as exc:  # Keras raises many types on a bad file
        raise FreezeError(
            f"cannot load {path} as a Keras model: {type(exc).__name__}: {_first_part(exc)}"
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


#: The recurrent layers tf.keras 2 saves with a `time_major` argument Keras 3 does not take.
_RECURRENT = ("LSTM", "GRU", "SimpleRNN")


def _without_time_major(base):
    """`base` (keras.layers.LSTM, ...) reading a tf.keras 2 config: `time_major` False, which
    every tf.keras 2 recurrent layer writes and Keras 3 refuses, is dropped (the layer
    computes the same); True, which Keras 3 cannot run, is refused naming the layer."""

    class Legacy(base):
        @classmethod
        def from_config(cls, config):
            config = dict(config)
            if config.pop("time_major", False):
                raise ValueError(f"{base.__name__} '{config.get('name')}' is time-major "
                                 "(time_major=True), which Keras 3 cannot run")
            return super().from_config(config)

    Legacy.__name__ = Legacy.__qualname__ = base.__name__
    return Legacy


def _first_part(exc):
    """Keras's message without the object config it appends (a subclassed model's whole
    config, pages long), on one line."""
    text = str(exc).split("Full object config:")[0].split("config={")[0]
    return " ".join(text.split()) or type(exc).__name__


def _keras_operations(config):
    """{class name: Keras class} for what Keras's legacy .h5 reader cannot read by itself,
    though they are Keras's own classes, not code from the file: the ops a Keras 3
    functional model stores as layers (an Embedding's mask_zero saves a `NotEqual`), and
    tf.keras 2's recurrent layers with their `time_major` argument."""
    from keras.src.ops import core, math, nn
    from keras.src.ops import numpy as knp
    from keras.src.ops.operation import Operation

    names = set()

    def walk(item):
        if isinstance(item, dict):
            if isinstance(item.get("class_name"), str):
                names.add(item["class_name"])
            for value in item.values():
                walk(value)
        elif isinstance(item, list):
            for value in item:
                walk(value)

    walk(config)
    import keras

    found = {}
    for name in sorted(names):
        if name in _RECURRENT:
            found[name] = _without_time_major(getattr(keras.layers, name))
            continue
        if hasattr(keras.layers, name):
            continue  # a layer of that name (Add, Softmax, ...) is what the file means
        for module in (knp, nn, math, core):
            cls = getattr(module, name, None)
            if isinstance(cls, type) and issubclass(cls, Operation):
                found[name] = cls
                break
    return found


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
    if kind in ("savedmodel", "graph", "checkpoint"):
        what = {"savedmodel": "a SavedModel", "graph": "a frozen GraphDef",
                "checkpoint": "a TF1 checkpoint"}[kind]
        raise FreezeError(
            f"{path_or_model} is {what}, not a Keras file; use leangraph.freeze() or "
            "leangraph.load_model()"
        )
    return _load_keras_file(Path(path_or_model), kind, weights, unsafe)
