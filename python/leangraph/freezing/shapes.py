"""Names and shapes of a frozen graph's inputs and outputs, as freeze() checks them."""

import re
from dataclasses import dataclass

from leangraph.errors import FreezeError, UsageError

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


def require_known_shapes(inputs, what="invent inputs"):
    """Raises one UsageError naming every input whose shape is not fully known."""
    missing = [t for t in inputs if t.shape is None or any(d is None for d in t.shape)]
    if missing:
        listed = ", ".join(f"{t.name} ({t.shape_text().replace('-1', '?')})" for t in missing)
        raise UsageError(
            f"cannot {what} for input(s) of unknown shape: {listed}; give --data (its examples "
            "fix the lengths) or --input-shape NAME:SHAPE for each")
