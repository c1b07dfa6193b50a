"""optimize's inputs: the model in any form (the embedded default too), invented
examples when there is no --data, and the Keras side of verification.
"""

import numpy as np

from leangraph import images as image_inputs
from leangraph.errors import UsageError
from leangraph.freezing.shapes import require_known_shapes
from leangraph.pipeline import evidence
from leangraph.pipeline.model import Model, load_model
from leangraph.pipeline.settings import DEFAULT_MODEL, DEFAULT_MODEL_SIZE, DEFAULT_SEED


# Keras runs the verification inputs in batches this small: a big model's activations
# for a batch of 16 at 299x299 take gigabytes.
KERAS_BATCH = 4


def as_list(outputs, names):
    """Keras outputs (array, list or dict) as a list in the frozen graph's output order."""
    if isinstance(outputs, dict):
        if set(outputs) >= set(names):
            return [np.asarray(outputs[n]) for n in names]
        return [np.asarray(v) for v in outputs.values()]
    if isinstance(outputs, (list, tuple)):
        return [np.asarray(v) for v in outputs]
    return [np.asarray(outputs)]


def keras_x(examples, start=0, stop=None):
    parts = [x[start:stop] for x in examples]
    return parts[0] if len(parts) == 1 else parts


def load_any_model(model, unsafe, progress, signature=None, input_shapes=None, weights=None,
                ends=None, batch_size=1):
    """A pipeline.model.Model for any form; None means the embedded default."""
    if model is None:
        import keras

        # Seeded so a rerun (and the reproduce commands) get the same random weights.
        keras.utils.set_random_seed(DEFAULT_SEED)
        progress.note(f"no MODEL given: using the embedded default, {DEFAULT_MODEL}, "
                      f"{DEFAULT_MODEL_SIZE}×{DEFAULT_MODEL_SIZE}×3, seeded random weights")
        km = keras.applications.Xception(weights=None,
                                         input_shape=(DEFAULT_MODEL_SIZE, DEFAULT_MODEL_SIZE, 3))
        loaded = load_model(km, batch_size=1)
        return Model(frozen=loaded.frozen, keras_model=km,
                     label=f"Keras Xception ({DEFAULT_MODEL_SIZE}×{DEFAULT_MODEL_SIZE}, "
                           "weights=None)")
    return load_model(model, unsafe=unsafe, signature=signature, batch_size=batch_size,
                      input_shapes=input_shapes, weights=weights, **(ends or {}))


def describe_inputs(frozen):
    return ", ".join(f"{t.name} {t.dtype}[{t.shape_text()}]" for t in frozen.inputs)


def make_inputs(frozen, keras_model, count, preprocessing, notes):
    """Invented inputs: (list of arrays, one per graph input, N examples each; description;
    preprocessing mode)."""
    require_known_shapes(frozen.inputs)
    images = [is_image(info) for info in frozen.inputs]
    mode = evidence.preprocessing_mode(preprocessing, keras_model)
    if not preprocessing and any(images):
        unknown_family(keras_model, mode, notes)
    arrays = []
    for i, info in enumerate(frozen.inputs):
        try:
            numeric = np.dtype(info.dtype).kind in "biuf"
        except TypeError:
            numeric = False
        if not numeric:
            raise UsageError(
                f"input '{info.name}' takes {info.dtype} values ({describe_inputs(frozen)}): "
                "optimize makes and loads numeric inputs only; export a signature that takes "
                "the decoded tensor (e.g. the image after decode_jpeg and resize)")
        if images[i]:
            arrays.append(image_inputs.random_images(info.shape, count, mode,
                                                     seed=DEFAULT_SEED + i))
        else:
            arrays.append(image_inputs.random_inputs(info.shape, info.dtype, count,
                                                     seed=DEFAULT_SEED + i))
    if all(images):
        what = f"seeded random pixels, preprocessing {mode}"
    elif any(images):
        what = f"seeded random pixels (preprocessing {mode}) and seeded random values"
    else:
        what = "seeded random values (floats in [-1, 1], integers in [0, 10))"
    return arrays, what, mode


def unknown_family(keras_model, mode, notes):
    name = getattr(keras_model, "name", None)
    if image_inputs.family_preprocessing(name) is None:
        # Raw 0..255 pixels would saturate most models and hide differences.
        notes.append(f"no known preprocessing for model '{name}': image inputs are "
                     f"scaled to [-1, 1] ({mode} mode); pass --preprocess NAME to choose")


def is_image(info):
    """Whether optimize makes an input's examples as images: float NHWC with 1 or 3 channels."""
    shape = info.shape
    try:
        floating = np.issubdtype(np.dtype(info.dtype), np.floating)
    except TypeError:
        return False
    return shape is not None and len(shape) == 4 and shape[-1] in (1, 3) and floating
