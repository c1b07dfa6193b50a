"""Optional features import their packages through require(), so a missing extra is a
one-line error that says what to install, never a bare ModuleNotFoundError."""

import importlib

from leangraph.errors import MissingExtraError

# module -> (distribution, extra that brings it)
_EXTRAS = {
    "optuna": ("optuna", "tune"),
    "PIL": ("pillow", "images"),
    "sklearn": ("scikit-learn", "reference"),
    "mlxtend": ("mlxtend", "reference"),
    "sqlalchemy": ("sqlalchemy", "tune"),
    "psycopg": ("psycopg[binary]", "tune"),
}


def require(module, feature):
    """Imports `module` (under a key of _EXTRAS) for `feature`, or raises MissingExtraError."""
    distribution, extra = _EXTRAS[module.split(".")[0]]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{feature} needs {distribution}, which is not installed ({exc}): "
            f"pip install 'leangraph[{extra}]'"
        ) from None
