"""The one data reader: the user's examples for verification and calibration, checked.

Every command that verifies or calibrates (optimize, tune, prune, the API)
reads its `--data` here, so every form is read once and checked the same way
against the model's inputs. A source may be:

- an `.npz` whose arrays are named after the model's inputs, with an optional
  `y` (labels of the first output) or `y_<output>`; for a one-input model, one
  array under any name;
- an `.npy` (a one-input model);
- a folder of JPEG/PNG images, read with leangraph.images' preprocessing;
- a folder of `.npy`/`.npz` files, one example per file, each fed as is (for
  inputs whose arrays disagree on axis 0: time-major sequences and the like);
- in Python also an array, a dict {input: array}, an (x, y) pair or a
  tf.data.Dataset.

In stacked forms the examples lie along axis 0. Every input's name, dtype,
rank and shape are checked, and NaN, Inf and empty data refused, each in one
line that names the problem. Integer inputs keep their dtype.
"""

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leangraph.errors import DataError, LeangraphError
from leangraph.images import IMAGE_SUFFIXES, load_images


#: Fewer examples than this: no held-out split, so nothing calibrated can be verified.
MIN_SPLIT = 32
#: The least number of examples held out for verification once there is a split.
MIN_HELD_OUT = 16
DEFAULT_VERIFY_SAMPLES = 512
DEFAULT_CALIBRATION_SAMPLES = 128
SPLIT_SEED = 0
_LABEL = "y"


class PerExample:
    """One input's examples when they cannot be stacked: one array per example, fed as is.

    `x[i:i + 1]` is example i itself (not a batch of one made here), so the
    runners that feed example by example take this where they take an array.
    """

    def __init__(self, arrays):
        self.arrays = list(arrays)

    def __len__(self):
        return len(self.arrays)

    def __getitem__(self, index):
        if isinstance(index, slice):
            chosen = self.arrays[index]
            if index.step in (None, 1) and len(chosen) == 1:
                return chosen[0]
            return PerExample(chosen)
        if isinstance(index, (list, np.ndarray)):
            return PerExample([self.arrays[int(i)] for i in index])
        return self.arrays[index]

    @property
    def dtype(self):
        return self.arrays[0].dtype if self.arrays else None


@dataclass
class Data:
    """Examples for every model input, in the model's input order, and labels if given.

    arrays: one per input, N examples each (an array stacked on axis 0, or a
    PerExample). labels: {output name: array of N labels}. source: what was
    read, in words (for the report).
    """

    arrays: list
    source: str
    labels: dict = field(default_factory=dict)
    per_example: bool = False
    #: "arrays", "images" (a folder of images) or "files" (one example per file)
    kind: str = "arrays"

    @property
    def count(self):
        return len(self.arrays[0]) if self.arrays else 0

    def take(self, indices):
        """The examples at `indices` (labels too)."""
        indices = np.asarray(indices, dtype=np.int64)
        arrays = [x[indices] for x in self.arrays]
        labels = {k: v[indices] for k, v in self.labels.items()}
        return Data(arrays, self.source, labels, self.per_example, self.kind)


@dataclass
class Split:
    """Which examples calibrate and which verify (indices into the data).

    calibration is None when there are too few examples to hold any out
    (`held_out` False): then verification is every example.
    """

    verification: np.ndarray
    calibration: np.ndarray = None
    seed: int = SPLIT_SEED

    @property
    def held_out(self):
        return self.calibration is not None


def split(n, verify_samples=DEFAULT_VERIFY_SAMPLES,
          calibration_samples=DEFAULT_CALIBRATION_SAMPLES, seed=SPLIT_SEED):
    """The seeded split of n examples: max(16, ceil(n/4)) held out for verification (at
    most verify_samples), up to calibration_samples of the rest for calibration.

    Below MIN_SPLIT examples nothing is held out: every example verifies and
    none calibrates (a calibrated variant then cannot be verified on unseen data).
    """
    if n < MIN_SPLIT:
        return Split(np.arange(n), None, seed)
    held = min(max(MIN_HELD_OUT, math.ceil(n / 4)), int(verify_samples))
    order = np.random.default_rng(seed).permutation(n)
    rest = order[held:]
    return Split(np.sort(order[:held]), np.sort(rest[:int(calibration_samples)]), seed)


def check_source(source, what="--data"):
    """Refuses a path that does not exist or a folder with nothing to read, before any work."""
    if not isinstance(source, (str, os.PathLike)):
        return
    path = Path(source)
    if not path.exists():
        raise DataError(f"{what}: {path} does not exist")
    if path.is_dir():
        usable = IMAGE_SUFFIXES + (".npy", ".npz")
        if not any(p.is_file() and p.suffix.lower() in usable for p in path.iterdir()):
            raise DataError(f"{what}: {path} holds no images and no .npy/.npz examples")


def sample(n, verify_samples=DEFAULT_VERIFY_SAMPLES, seed=SPLIT_SEED):
    """Verification examples when calibration has its own: up to verify_samples of the n,
    seeded. Fewer than MIN_HELD_OUT verify nothing calibrated (`held_out` False)."""
    order = np.random.default_rng(seed).permutation(n)
    chosen = np.sort(order[:int(verify_samples)])
    return Split(chosen, np.arange(0) if n >= MIN_HELD_OUT else None, seed)


def too_few_note(n, needed=MIN_SPLIT):
    """Why a calibrated variant is only timed when the data is too small to split."""
    return f"speed only: too few examples to hold out ({n} given, {needed} needed)"


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------

def read(source, inputs, outputs=(), *, what="--data", preprocessing="none", limit=None):
    """Data for a model with these inputs (and outputs, for labels), from any form.

    inputs / outputs: objects with .name, .dtype (numpy name) and .shape (a
    tuple, None for unknown dimensions; the first is the batch). preprocessing:
    the mode for an image folder (leangraph.images). limit: read at most this
    many examples. Raises DataError naming what does not fit.
    """
    inputs, outputs = list(inputs), list(outputs)
    if isinstance(source, (str, os.PathLike)):
        data = _read_path(Path(source), inputs, outputs, what, preprocessing, limit)
    else:
        data = _read_object(source, inputs, outputs, what)
    if limit is not None and not data.per_example:
        data = data.take(np.arange(min(int(limit), data.count)))
    check(data, inputs, what)
    _check_labels(data, outputs, what)
    return data


def _read_path(path, inputs, outputs, what, preprocessing, limit):
    if not path.exists():
        raise DataError(f"{what}: {path} does not exist")
    if path.is_dir():
        return _read_folder(path, inputs, outputs, what, preprocessing, limit)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _from_arrays({"x": _load_npy(path, what)}, inputs, outputs, what, str(path))
    if suffix == ".npz":
        return _from_arrays(_load_npz(path, what), inputs, outputs, what, str(path))
    raise DataError(f"{what}: {path} is not an .npz, an .npy or a folder of images or "
                    ".npy/.npz examples")


def _load_npy(path, what):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{what}: cannot read {path} as .npy: {exc}") from None


def _load_npz(path, what):
    try:
        with np.load(path, allow_pickle=False) as loaded:
            return {k: loaded[k] for k in loaded.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{what}: cannot read {path} as .npz: {exc}") from None


def _read_folder(folder, inputs, outputs, what, preprocessing, limit):
    files = sorted(p for p in folder.iterdir() if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    arrays = [p for p in files if p.suffix.lower() in (".npy", ".npz")]
    if images and arrays:
        raise DataError(f"{what}: {folder} holds both images and .npy/.npz files; keep one kind")
    if images:
        if len(inputs) != 1:
            raise DataError(f"{what}: a folder of images feeds a one-input model; this one has "
                            f"{len(inputs)} inputs ({_names(inputs)})")
        try:
            x, read_files = load_images(folder, inputs[0].shape, preprocessing, limit, what)
        except LeangraphError as exc:
            raise DataError(str(exc)) from None
        return Data([x], f"{len(read_files)} image(s) from {folder}, preprocessing "
                         f"{preprocessing}", kind="images")
    if not arrays:
        raise DataError(f"{what}: {folder} holds no images and no .npy/.npz examples")
    if limit is not None:
        arrays = arrays[:int(limit)]
    per_input = [[] for _ in inputs]
    labels = {}
    for path in arrays:
        loaded = ({"x": _load_npy(path, what)} if path.suffix.lower() == ".npy"
                  else _load_npz(path, what))
        one = _from_arrays(loaded, inputs, outputs, what, str(path), stacked=False)
        for slot, x in zip(per_input, one.arrays):
            slot.append(x)
        for name, y in one.labels.items():
            y = np.asarray(y)
            labels.setdefault(name, []).append(y if y.ndim and y.shape[0] == 1 else y[None])
    if any(len(v) != len(arrays) for v in labels.values()):
        raise DataError(f"{what}: some files in {folder} hold labels and some do not")
    return Data([PerExample(a) for a in per_input], f"{len(arrays)} example file(s) from "
                f"{folder}, each fed as is", {k: np.concatenate(v) for k, v in labels.items()},
                per_example=True, kind="files")


def _read_object(source, inputs, outputs, what):
    if _is_dataset(source):
        return _from_dataset(source, inputs, outputs, what)
    if isinstance(source, Data):
        return source
    if isinstance(source, tuple) and len(source) == 2:
        x, y = source
        arrays = dict(x) if isinstance(x, dict) else {"x": x}
        if y is not None:
            arrays[_LABEL] = y
        return _from_arrays(arrays, inputs, outputs, what, "the examples given")
    if isinstance(source, dict):
        return _from_arrays(dict(source), inputs, outputs, what, "the examples given")
    if isinstance(source, (list, tuple)) and len(source) == len(inputs) and len(inputs) > 1:
        return _from_arrays({i.name: x for i, x in zip(inputs, source)}, inputs, outputs,
                            what, "the examples given")
    return _from_arrays({"x": source}, inputs, outputs, what, "the examples given")


def _is_dataset(source):
    return type(source).__module__.startswith("tensorflow") and hasattr(source, "element_spec")


def _from_dataset(dataset, inputs, outputs, what):
    """Every element of a tf.data.Dataset: x, (x, y) or a dict; batched or not."""
    parts = {}
    for element in dataset.as_numpy_iterator():
        if isinstance(element, tuple) and len(element) == 2:
            x, y = element
            arrays = dict(x) if isinstance(x, dict) else {"x": x}
            arrays[_LABEL] = y
        elif isinstance(element, dict):
            arrays = dict(element)
        else:
            arrays = {"x": element}
        matched = _match(arrays, inputs, outputs, what, "the Dataset")
        for key, value in matched.items():
            value = np.asarray(value)
            info = next((i for i in inputs if i.name == key), None)
            if info is not None and info.shape is not None and value.ndim == len(info.shape) - 1:
                value = value[None]  # an unbatched element is one example
            elif info is None and value.ndim == 0:
                value = value[None]
            parts.setdefault(key, []).append(value)
    if not parts:
        raise DataError(f"{what}: the Dataset is empty")
    stacked = {}
    for key, values in parts.items():
        try:
            stacked[key] = np.concatenate(values)
        except ValueError:
            raise DataError(f"{what}: the Dataset's elements for '{key}' disagree in shape "
                            f"({values[0].shape[1:]} and others)") from None
    return _from_arrays(stacked, inputs, outputs, what, "a tf.data.Dataset")


def _names(infos):
    return ", ".join(i.name for i in infos)


def _label_keys(outputs):
    return {f"{_LABEL}_{o.name}": o.name for o in outputs}


def _match(arrays, inputs, outputs, what, source):
    """{input name or label key: array}: arrays named after the inputs, or the one array
    of a one-input model under any name; labels under y / y_<output>."""
    by_label = _label_keys(outputs)
    labels = {k: v for k, v in arrays.items() if k == _LABEL or k in by_label}
    rest = {k: v for k, v in arrays.items() if k not in labels}
    names = {i.name for i in inputs}
    if set(rest) >= names:
        extra = sorted(set(rest) - names)
        if extra:
            raise DataError(f"{what}: {source} has array(s) {', '.join(extra)} that name no "
                            f"input of the model (inputs: {_names(inputs)})")
        return {**{k: rest[k] for k in names}, **labels}
    if len(inputs) == 1 and len(rest) == 1:
        return {inputs[0].name: next(iter(rest.values())), **labels}
    missing = sorted(names - set(rest))
    scalars = [i.name for i in inputs if i.name in missing and (i.shape is None or not i.shape)]
    hint = (f"; a scalar such as {scalars[0]} can be set instead with --feed "
            f"{scalars[0]}=VALUE" if scalars else "")
    raise DataError(f"{what}: {source} has no array for input(s) {', '.join(missing)} "
                    f"(it has: {', '.join(sorted(arrays)) or 'none'}; the model's inputs: "
                    f"{_names(inputs)}){hint}")


def _from_arrays(arrays, inputs, outputs, what, source, stacked=True):
    matched = _match(arrays, inputs, outputs, what, source)
    by_label = _label_keys(outputs)
    labels = {}
    for key, value in matched.items():
        if key == _LABEL:
            if not outputs:
                continue
            labels[outputs[0].name] = np.asarray(value)
        elif key in by_label:
            labels[by_label[key]] = np.asarray(value)
    return Data([np.asarray(matched[i.name]) for i in inputs], source, labels,
                per_example=not stacked)


# ---------------------------------------------------------------------------
# checking
# ---------------------------------------------------------------------------

def check(data, inputs, what="--data"):
    """Casts each input's examples to its dtype and checks rank, shape and values.

    Stacked arrays must match the model's shape after the batch axis; an
    example fed as is must match it whole. A dimension the model leaves
    unknown takes any size. Raises DataError naming the input and the problem.
    """
    if data.count == 0:
        raise DataError(f"{what}: no examples (the data is empty)")
    for k, (info, x) in enumerate(zip(inputs, data.arrays)):
        if len(x) != data.count:
            raise DataError(f"{what}: input '{info.name}' has {len(x)} examples, "
                            f"'{inputs[0].name}' has {data.count}")
        if isinstance(x, PerExample):
            x.arrays = [_checked(info, a, what, f" in example {i}", whole=True)
                        for i, a in enumerate(x.arrays)]
        else:
            data.arrays[k] = _checked(info, x, what, "", whole=False)
    return data


def _checked(info, x, what, where, whole):
    x = np.asarray(x)
    x = _as_dtype(info, x, what, where)
    shape = info.shape
    if shape is not None:
        if x.ndim != len(shape):
            lead = "" if whole else "N examples of "
            raise DataError(
                f"{what}: input '{info.name}' takes rank {len(shape)} ({lead}shape "
                f"{_shape_text(shape[0:] if whole else (None,) + tuple(shape[1:]))}), but the "
                f"data{where} has rank {x.ndim} (shape {x.shape})")
        dims = range(len(shape)) if whole else range(1, len(shape))
        for d in dims:
            if shape[d] is not None and shape[d] != x.shape[d]:
                raise DataError(
                    f"{what}: input '{info.name}' takes shape "
                    f"{_shape_text(shape if whole else (None,) + tuple(shape[1:]))}, but the "
                    f"data{where} has {x.shape} (axis {d}: {x.shape[d]}, not {shape[d]})")
    if x.size == 0:
        raise DataError(f"{what}: input '{info.name}' has empty examples{where} "
                        f"(shape {x.shape})")
    if x.dtype.kind in "fc" and not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x.reshape(len(x), -1) if x.ndim else x.reshape(1, 1)))
        at = "" if whole else f" in example {int(bad[0][0])}"
        raise DataError(f"{what}: input '{info.name}' holds NaN or Inf{where}{at}")
    return x


def _shape_text(shape):
    return "(" + ", ".join("N" if d is None and i == 0 else "?" if d is None else str(d)
                           for i, d in enumerate(shape)) + ")"


def _as_dtype(info, x, what, where):
    try:
        want = np.dtype(info.dtype)
    except TypeError:
        raise DataError(f"{what}: input '{info.name}' takes {info.dtype} values, which "
                        "leangraph cannot feed from arrays") from None
    if x.dtype == want:
        return x
    if x.dtype.kind not in "biuf":
        raise DataError(f"{what}: input '{info.name}' takes {want.name}, but the data{where} "
                        f"is {x.dtype}")
    if want.kind in "iub":
        if x.dtype.kind == "f":
            if not np.all(np.isfinite(x)) or not np.array_equal(x, np.round(x)):
                raise DataError(f"{what}: input '{info.name}' takes {want.name} (integers), "
                                f"but the data{where} holds fractions ({x.dtype})")
        info_range = np.iinfo(want) if want.kind in "iu" else None
        if info_range is not None and x.size and (x.min() < info_range.min
                                                 or x.max() > info_range.max):
            raise DataError(f"{what}: input '{info.name}' takes {want.name}, but the data"
                            f"{where} holds values outside its range")
    elif want.kind != "f":
        raise DataError(f"{what}: input '{info.name}' takes {want.name}, but the data{where} "
                        f"is {x.dtype}")
    return x.astype(want)


def _check_labels(data, outputs, what):
    for name, y in list(data.labels.items()):
        if len(y) != data.count:
            raise DataError(f"{what}: {len(y)} labels for output '{name}', but "
                            f"{data.count} examples")
        if y.dtype.kind not in "biuf":
            raise DataError(f"{what}: the labels of output '{name}' are {y.dtype}, not numbers")
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise DataError(f"{what}: the labels of output '{name}' hold NaN or Inf")


def shapes_from_data(inputs, data):
    """Each input's shape with the dimensions the model leaves unknown taken from the data.

    For a model whose inputs are open (e.g. a SavedModel taking any sequence
    length): freezing it with these shapes fixes what the data fixes. Stacked
    examples keep the batch dimension as the model has it; an example fed as
    is gives every dimension. A dimension the examples disagree on stays None.
    """
    shapes = []
    for info, x in zip(inputs, data.arrays):
        if isinstance(x, PerExample):
            seen = [a.shape for a in x.arrays]
            known = seen[0] if info.shape is None else info.shape
            shapes.append(tuple(d if d is not None else
                                (seen[0][i] if all(s[i] == seen[0][i] for s in seen) else None)
                                for i, d in enumerate(known)))
            continue
        x = np.asarray(x)
        known = (None,) + x.shape[1:] if info.shape is None else info.shape
        shapes.append(tuple(d if d is not None or i == 0 else int(x.shape[i])
                            for i, d in enumerate(known)))
    return shapes


def holds_whole_examples(source):
    """Whether `source` is a folder of .npy/.npz files, whose examples are fed as is (no
    batch axis added): a model read with it is frozen with its leading dimensions open,
    since a time-major input's first one is not the batch."""
    if not isinstance(source, (str, os.PathLike)) or not Path(source).is_dir():
        return False
    return any(p.suffix.lower() in (".npy", ".npz") for p in Path(source).iterdir())


def named_inputs(source):
    """The array names an .npz (or a folder's first .npz) gives, without reading the arrays:
    a TF1 graph's PlaceholderWithDefault or flag that the data names is one of its inputs."""
    if not isinstance(source, (str, os.PathLike)):
        return list(source) if isinstance(source, dict) else []
    path = Path(source)
    if path.is_dir():
        path = next((p for p in sorted(path.iterdir()) if p.suffix.lower() == ".npz"), None)
    if path is None or path.suffix.lower() != ".npz" or not path.is_file():
        return []
    try:
        with np.load(path, allow_pickle=False) as archive:
            return list(archive.files)
    except (OSError, ValueError):
        return []  # read() reports what is wrong with the file
