"""tf.keras 2 models (the `tf_keras` package beside Keras 3): a model object, or a `.keras`
archive that tf.keras 2 wrote.

Keras 3 cannot read either: a tf_keras model is not a `keras.Model`, and Keras 3 looks for a
class 'Functional' of its own in a tf.keras 2 archive. Packages written for TF 2.x Keras build
their models this way (`import tf_keras`, or TF_USE_LEGACY_KERAS=1), so both are traced here
with tf_keras itself, called with training=False like every Keras model.
"""

import json
import sys
import zipfile

from leangraph.errors import FreezeError
from leangraph.freezing.shapes import (
    _fmt,
    _merge_shape,
    _normalize_input_shapes,
    _unique,
    _valid_node_name,
)


def is_tf_keras_model(obj):
    """True for a tf_keras (tf.keras 2) model; never imports tf_keras to find out."""
    module = sys.modules.get("tf_keras")
    return module is not None and isinstance(obj, module.Model)


def archive_keras_version(path):
    """The Keras version a `.keras` archive says wrote it, or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            return str(json.loads(archive.read("metadata.json")).get("keras_version"))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return None


def written_by_tf_keras(path):
    version = archive_keras_version(path)
    return bool(version) and version.split(".")[0].isdigit() and int(version.split(".")[0]) < 3


def _foreign_classes(path):
    """'Name (module)' for each class in an archive's config that is not Keras's own: what
    tf_keras cannot build unless the code that defines it was imported and registered."""
    found = set()

    def walk(item):
        if isinstance(item, dict):
            module = item.get("module")
            if isinstance(item.get("class_name"), str) and isinstance(module, str) and \
                    module.split(".")[0] not in ("keras", "tf_keras", "builtins"):
                found.add(f"{item['class_name']} ({module})")
            for value in item.values():
                walk(value)
        elif isinstance(item, list):
            for value in item:
                walk(value)

    try:
        with zipfile.ZipFile(path) as archive:
            walk(json.loads(archive.read("config.json")))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        pass
    return sorted(found)


def load_archive(path, unsafe):
    """The tf_keras model in a `.keras` archive that tf.keras 2 wrote."""
    version = archive_keras_version(path)
    try:
        import tf_keras
    except ImportError:
        raise FreezeError(
            f"{path} was written by tf.keras {version}, which Keras 3 cannot read; "
            "install tf_keras (pip install tf_keras) to load it"
        ) from None
    try:
        model = tf_keras.models.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as exc:  # tf_keras raises many types on a bad or foreign file
        text = " ".join(str(exc).split("Full object config:")[0].split()) or type(exc).__name__
        foreign = _foreign_classes(path)
        if foreign:
            raise FreezeError(
                f"cannot load {path} (written by tf.keras {version}): it uses classes that are "
                f"not Keras's own, {', '.join(foreign)}; pass the model object to "
                "leangraph.freeze/optimize from code that defines them, or save it as a "
                "SavedModel directory"
            ) from None
        raise FreezeError(
            f"cannot load {path} (written by tf.keras {version}) with tf_keras: "
            f"{type(exc).__name__}: {text}"
        ) from None
    if not isinstance(model, tf_keras.Model):
        raise FreezeError(f"{path} holds a {type(model).__name__}, not a Keras model")
    return model


def trace(model, input_shapes, batch_size):
    """model(x, training=False) as a ConcreteFunction with named, fixed-shape TensorSpecs;
    its outputs are a dict keyed by the model's output names, which name the frozen
    outputs."""
    import tensorflow as tf

    if not getattr(model, "inputs", None):
        raise FreezeError(
            "a subclassed tf_keras model has no declared inputs; save it as a SavedModel "
            "(model.save('dir')) and freeze the directory"
        )
    raw_names = list(getattr(model, "input_names", None) or
                     [f"input_{i}" for i in range(len(model.inputs))])
    names = _unique([_valid_node_name(n, f"input_{i}") for i, n in enumerate(raw_names)])
    overrides = _normalize_input_shapes(input_shapes, raw_names)
    specs = []
    for raw, name, tensor in zip(raw_names, names, model.inputs):
        shape = _merge_shape(tuple(tensor.shape), overrides.get(raw), batch_size, raw)
        specs.append(tf.TensorSpec(shape, tensor.dtype, name=name))
    out_names = list(getattr(model, "output_names", None) or [])

    def call(*flat):
        outs = model(flat[0] if len(flat) == 1 else list(flat), training=False)
        flat_outs = tf.nest.flatten(outs)
        if len(out_names) == len(flat_outs):
            return dict(zip(out_names, flat_outs))
        return flat_outs

    try:
        return tf.function(call).get_concrete_function(*specs)
    except Exception as exc:  # shape errors from the model's own layers
        shapes = ", ".join(f"{s.name}{_fmt(s.shape.as_list())}" for s in specs)
        raise FreezeError(f"tracing the tf_keras model with inputs {shapes} failed: "
                          f"{type(exc).__name__}: {exc}") from None
