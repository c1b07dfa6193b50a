"""Model inputs for `leangraph optimize`: real images from a folder, or seeded random ones.

Images are read with Pillow, converted to RGB (or grayscale for a one-channel
model), resized to the model's input and put through the model family's
preprocessing:

    tf     (Xception, Inception, MobileNet, NASNet)  x / 127.5 - 1, range [-1, 1]
    caffe  (ResNet50, VGG16/19)  RGB -> BGR, minus the ImageNet BGR means, no scaling
    torch  (DenseNet)  x / 255, minus the ImageNet means, divided by their stddevs
    none   (EfficientNet, ConvNeXt, RegNet: they rescale inside the model)  raw 0..255

Random inputs are seeded random *pixels* (uniform 0..255) put through the same
preprocessing, so their range matches what the model expects.
"""

from pathlib import Path

import numpy as np

from leangraph._extras import require
from leangraph.errors import LeangraphError


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

_CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _tf_mode(x):
    return x / 127.5 - 1.0


def _caffe_mode(x):
    if x.shape[-1] != 3:
        raise LeangraphError("caffe preprocessing needs 3-channel (RGB) inputs")
    return x[..., ::-1] - _CAFFE_BGR_MEAN


def _torch_mode(x):
    if x.shape[-1] != 3:
        raise LeangraphError("torch preprocessing needs 3-channel (RGB) inputs")
    return (x / 255.0 - _TORCH_MEAN) / _TORCH_STD


def _no_preprocessing(x):
    return x


#: Preprocessing functions by name: float32 pixels 0..255 (N, H, W, C) -> model input.
PREPROCESSORS = {
    "tf": _tf_mode,
    "caffe": _caffe_mode,
    "torch": _torch_mode,
    "none": _no_preprocessing,
}

# Model (family) name prefixes -> preprocessing; the longest matching prefix wins.
_FAMILIES = {
    "xception": "tf",
    "inception": "tf",  # inception_v3, inception_resnet_v2
    "mobilenet": "tf",  # MobileNet, MobileNetV2
    "nasnet": "tf",
    "resnet50": "caffe",
    "resnet101": "caffe",
    "resnet152": "caffe",
    "resnet": "caffe",
    "vgg": "caffe",
    "densenet": "torch",
    "efficientnet": "none",
    "convnext": "none",
    "regnet": "none",
    # MobileNetV3 rescales inside the model; the ResNet V2s use tf mode, unlike ResNet50.
    "mobilenetv3": "none",
    "resnet50v2": "tf",
    "resnet101v2": "tf",
    "resnet152v2": "tf",
}


def preprocessing_names():
    """Every name --preprocess accepts: the modes and the model families."""
    return sorted(set(PREPROCESSORS) | set(_FAMILIES))


def resolve_preprocessing(name):
    """The mode ("tf", "caffe", "torch", "none") for a mode or model-family name.

    Raises LeangraphError naming the accepted values for an unknown name.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key in PREPROCESSORS:
        return key
    mode = family_preprocessing(key)
    if mode is None:
        raise LeangraphError(
            f"unknown preprocessing '{name}'; use one of: {', '.join(preprocessing_names())}"
        )
    return mode


def family_preprocessing(model_name):
    """The preprocessing mode for a Keras model name (e.g. 'xception'), or None if unknown."""
    if not model_name:
        return None
    key = str(model_name).strip().lower()
    best = None
    for prefix in _FAMILIES:
        if key.startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return _FAMILIES[best] if best else None


def preprocess(pixels, mode):
    """Applies a preprocessing mode (or family name) to float pixels in 0..255."""
    fn = PREPROCESSORS[resolve_preprocessing(mode)]
    return np.ascontiguousarray(fn(np.asarray(pixels, dtype=np.float32)), dtype=np.float32)


def _image_shape(shape):
    """(height, width, channels) from an NHWC input shape; raises for anything else."""
    if shape is None or len(shape) != 4:
        raise LeangraphError(
            f"image inputs need a 4-D NHWC model input, this model's input has shape {shape}"
        )
    _, height, width, channels = shape
    if height is None or width is None:
        raise LeangraphError(
            f"the model input {tuple(shape)} has no fixed height/width; freeze it with a fixed "
            "input shape to use images"
        )
    if channels not in (1, 3):
        raise LeangraphError(f"image inputs need 1 or 3 channels, the model input has {channels}")
    return int(height), int(width), int(channels)


def list_images(image_dir, what="--image-dir"):
    """The JPEG/PNG files directly inside `image_dir`, sorted by name.

    what: how the folder was named to the user (an option), for the errors."""
    folder = Path(image_dir)
    if not folder.is_dir():
        raise LeangraphError(f"{what} {folder} is not a directory")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise LeangraphError(f"no .jpg/.jpeg/.png images in {what} {folder}")
    return files


def load_images(image_dir, shape, preprocessing="none", limit=None, what="--image-dir"):
    """Reads, resizes and preprocesses the images in `image_dir`.

    shape: the model's NHWC input shape (batch dimension ignored). limit: read at
    most this many (the first by name). Returns (float32 array (N, H, W, C),
    list of file paths). An unreadable image raises LeangraphError naming it.
    """
    require("PIL", "reading images")
    from PIL import Image, UnidentifiedImageError

    height, width, channels = _image_shape(shape)
    files = list_images(image_dir, what)
    if limit is not None:
        files = files[: int(limit)]
    batch = np.empty((len(files), height, width, channels), dtype=np.float32)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as image:
                image = image.convert("RGB" if channels == 3 else "L")
                if image.size != (width, height):
                    image = image.resize((width, height), Image.BILINEAR)
                pixels = np.asarray(image, dtype=np.float32)
        except (UnidentifiedImageError, OSError) as exc:
            raise LeangraphError(f"cannot read image {path}: {exc}") from None
        batch[i] = pixels.reshape(height, width, channels)
    return preprocess(batch, preprocessing), files


def random_images(shape, count, preprocessing="none", seed=0):
    """`count` seeded random pixel images (uniform 0..255), preprocessed, for an NHWC input."""
    height, width, channels = _image_shape(shape)
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0.0, 255.0, size=(int(count), height, width, channels)).astype(np.float32)
    return preprocess(pixels, preprocessing)


def random_inputs(shape, dtype, count, seed=0):
    """Seeded random examples for a non-image input: floats uniform in [-1, 1], ints in [0, 10)."""
    if shape is None or any(d is None for d in shape[1:]):
        raise LeangraphError(f"cannot make inputs for an input of unknown shape {shape}")
    rng = np.random.default_rng(seed)
    dims = (int(count),) + tuple(int(d) for d in shape[1:])
    try:
        kind = np.dtype(dtype)
    except TypeError:
        raise LeangraphError(f"cannot make random inputs of dtype {dtype}") from None
    if np.issubdtype(kind, np.floating):
        return rng.uniform(-1.0, 1.0, size=dims).astype(kind)
    if np.issubdtype(kind, np.integer):
        return rng.integers(0, 10, size=dims).astype(kind)
    if kind == np.bool_:
        return rng.integers(0, 2, size=dims).astype(np.bool_)
    raise LeangraphError(f"cannot make random inputs of dtype {dtype}")
