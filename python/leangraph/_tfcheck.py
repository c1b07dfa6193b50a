"""Checks, before anything loads TensorFlow's libraries, that the installed TF fits."""

from importlib import metadata

from leangraph._version import TF_SERIES
from leangraph.errors import VersionError

_DISTRIBUTIONS = ("tensorflow-cpu", "tensorflow", "tf-nightly", "tensorflow-intel")


def installed_tf_version():
    for name in _DISTRIBUTIONS:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_tf_version():
    """Raises VersionError unless a TF of the pinned series is installed."""
    version = installed_tf_version()
    if version is None:
        raise VersionError(
            f"leangraph needs TensorFlow {TF_SERIES}.*, and none is installed: "
            f"pip install 'tensorflow-cpu=={TF_SERIES}.*'"
        )
    if not (version == TF_SERIES or version.startswith(TF_SERIES + ".")):
        raise VersionError(
            f"leangraph was built for TensorFlow {TF_SERIES}.* (its C++ code is bound "
            f"to that ABI) but TensorFlow {version} is installed: "
            f"pip install 'tensorflow-cpu=={TF_SERIES}.*', or rebuild leangraph "
            "against this TensorFlow"
        )
    return version


def load_native():
    """Imports leangraph._native with an actionable error when it cannot load."""
    version = check_tf_version()
    # TF's Python package loads libtensorflow_{framework,cc}.so.2 first, so the
    # extension binds to the very copies TF itself uses (and a development build
    # in the source tree finds them without an rpath).
    import tensorflow  # noqa: F401

    try:
        from leangraph import _native
    except ImportError as exc:
        raise VersionError(
            f"leangraph's native module failed to load against TensorFlow {version}: "
            f"{exc}. Reinstall leangraph built against this TensorFlow."
        ) from exc
    if _native.TF_VERSION != version:
        raise VersionError(
            f"leangraph's native module was built against TensorFlow {_native.TF_VERSION} "
            f"but {version} is installed; rebuild leangraph (pip install --no-build-isolation .)"
        )
    return _native
