"""Checks that the installed TensorFlow fits the one this build was compiled against.

The release comes from _build_info.py, which the build writes from what its
repository rule found; nothing here names a TF release by hand. The same
major.minor is required before TF's libraries load (import time). A different
patch release is accepted once per process, when the native module is first
needed, and only after the extension's hand-declared TF symbols resolve and a
tiny transform gives what TF's own transform_graph gives.
"""

import contextlib
import ctypes
import os
import re
import sys
import warnings

from leangraph.errors import VersionError

# Distributions that install the `tensorflow` package; `tensorflow` and
# `tensorflow-cpu` are the two the extras name.
DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tf-nightly", "tf-nightly-cpu")

# Releases that passed the patch-release check in this process.
_VETTED = set()

# Small enough to run on every first native call, yet it exercises TF's
# registry, parser and a folding session: a Const + Const folded into Mul's input.
# Every attribute is spelled out, because leangraph fills in defaulted ones and
# TF's own transform_graph does not.
_PROBE_GRAPH = """
node { name: "x" op: "Placeholder" attr { key: "dtype" value { type: DT_FLOAT } }
  attr { key: "shape" value { shape { dim { size: 2 } } } } }
node { name: "a" op: "Const" attr { key: "dtype" value { type: DT_FLOAT } }
  attr { key: "value" value { tensor { dtype: DT_FLOAT tensor_shape { dim { size: 2 } }
    float_val: 1 float_val: 2 } } } }
node { name: "b" op: "Const" attr { key: "dtype" value { type: DT_FLOAT } }
  attr { key: "value" value { tensor { dtype: DT_FLOAT tensor_shape { dim { size: 2 } }
    float_val: 3 float_val: 4 } } } }
node { name: "c" op: "AddV2" input: "a" input: "b" attr { key: "T" value { type: DT_FLOAT } } }
node { name: "d" op: "Identity" input: "c" attr { key: "T" value { type: DT_FLOAT } } }
node { name: "y" op: "Mul" input: "x" input: "d" attr { key: "T" value { type: DT_FLOAT } } }
"""
_PROBE_TRANSFORMS = (
    "remove_nodes(op=Identity) fold_constants(ignore_errors=true) strip_unused_nodes "
    "sort_by_execution_order"
)


def build_info():
    """leangraph._build_info (written by the build), or None in an unbuilt source tree."""
    try:
        from leangraph import _build_info
    except ImportError:
        return None
    return _build_info


def _require_build_info():
    info = build_info()
    if info is None:
        raise VersionError(
            "leangraph/_build_info.py is missing, so this leangraph was never built: "
            "make dev (source tree) or pip install --no-build-isolation ."
        )
    return info


def series(version):
    """(major, minor) of a version string such as '2.21.0' or '2.22.0rc1'; None if unparsable."""
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _series_text(version):
    major_minor = series(version)
    return f"{major_minor[0]}.{major_minor[1]}" if major_minor else str(version)


def installed_tf():
    """[(distribution, version)] of every installed TF distribution, found without importing TF."""
    from importlib import metadata

    found = []
    for name in DISTRIBUTIONS:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return found


def _distribution_of(version):
    found = installed_tf()
    for distribution, found_version in found:
        if found_version == version:
            return distribution
    return found[0][0] if found else "tensorflow-cpu"


def running_tf_version():
    """tf.__version__: the code that really loaded, whichever distribution put it there."""
    import tensorflow as tf

    return tf.__version__


def _wrong_series(built, distribution, version):
    wanted = _series_text(built)
    return VersionError(
        f"leangraph was built against TensorFlow {built} and runs on TensorFlow {wanted}.x "
        f"only, but {distribution} {version} is installed: pip install "
        f"'{distribution}=={wanted}.*', or build leangraph from its sdist against "
        f"TensorFlow {version} (pip install --no-build-isolation leangraph-*.tar.gz)"
    )


def check_tf_version():
    """Raises VersionError unless a TF of the build's major.minor is installed; returns its version.

    Runs at import, before TF's libraries load: a mismatched TF would otherwise
    fail later with an obscure undefined-symbol error.
    """
    info = build_info()
    found = installed_tf()
    wanted = _series_text(info.TF_VERSION) if info else "2"
    if not found:
        raise VersionError(
            f"leangraph needs TensorFlow {wanted}, and no TensorFlow is installed: "
            "pip install 'leangraph[cpu]' (tensorflow-cpu) or 'leangraph[tensorflow]' "
            "(the tensorflow wheel, with GPU support)"
        )
    if len(found) > 1:
        names = " and ".join(f"{d} {v}" for d, v in found)
        warnings.warn(
            f"{names} are installed: they share one tensorflow/ folder, so the one "
            "installed last wins and uninstalling either breaks the other; keep one "
            "(pip uninstall, then reinstall the one you keep)",
            RuntimeWarning, stacklevel=2)
    if info is None:
        return found[0][1]
    for distribution, version in found:
        if series(version) == series(info.TF_VERSION):
            return version
    distribution, version = found[0]
    raise _wrong_series(info.TF_VERSION, distribution, version)


# Console scripts import the package before their main() can catch anything.
@contextlib.contextmanager
def stderr_closed():
    """File descriptor 2 on /dev/null for the block: for the lines TensorFlow's C++ writes
    where no log level reaches (while its libraries load, before absl is initialised; oneDNN's
    own ERROR lines)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_CONSOLE_SCRIPTS = ("leangraph", "leangraph-bench")


def check_at_import():
    """check_tf_version(), but in the console scripts a one-line error instead of a traceback."""
    try:
        return check_tf_version()
    except VersionError as exc:
        script = os.path.basename(sys.argv[0]) if sys.argv else ""
        if script in _CONSOLE_SCRIPTS:
            raise SystemExit(f"{script}: error: {exc}") from None
        raise


def _symbol_name(mangled):
    # Itanium mangling after the namespace: <length><identifier>; enough to name it.
    match = re.search(r"graph_transforms(\d+)", mangled)
    if not match:
        return mangled
    start = match.end()
    return "tensorflow::graph_transforms::" + mangled[start:start + int(match.group(1))]


def missing_symbols(info, library_path=None):
    """The hand-declared TF symbols of info.TF_SYMBOLS that libtensorflow_cc.so.2 lacks."""
    if library_path is None:
        import tensorflow as tf

        library_path = os.path.join(tf.sysconfig.get_lib(), "libtensorflow_cc.so.2")
    library = ctypes.CDLL(library_path)
    missing = []
    for symbol in info.TF_SYMBOLS:
        try:
            library[symbol]
        except AttributeError:
            missing.append(_symbol_name(symbol))
    return missing


def tf_reference_transform(graph_bytes, inputs, outputs, transforms):
    """TF's own transform_graph, through the Python binding the TF wheel ships."""
    from tensorflow.python.util import _pywrap_transform_graph

    return _pywrap_transform_graph.TransformGraphWithStringInputs(
        graph_bytes, ",".join(inputs), ",".join(outputs), transforms
    )


def transform_mismatch(native):
    """None when the native runner and TF's own transform_graph agree on the probe graph."""
    from google.protobuf import text_format
    from tensorflow.core.framework import graph_pb2

    probe = text_format.Parse(_PROBE_GRAPH, graph_pb2.GraphDef()).SerializeToString()
    try:
        ours = graph_pb2.GraphDef.FromString(
            native.transform(probe, _PROBE_TRANSFORMS, ["x"], ["y"]))
        theirs = graph_pb2.GraphDef.FromString(
            tf_reference_transform(probe, ["x"], ["y"], _PROBE_TRANSFORMS))
    except Exception as exc:  # noqa: BLE001 - any failure means "not verified"
        return f"the probe transform failed ({type(exc).__name__}: {exc})"
    if ours != theirs:
        return (f"the probe transform gave {len(ours.node)} nodes where TensorFlow's own "
                f"transform_graph gave {len(theirs.node)} (or different ones)")
    return None


def _refuse_patch(info, version, why):
    return VersionError(
        f"leangraph was built against TensorFlow {info.TF_VERSION} and TensorFlow {version} "
        f"failed its compatibility check: {why}. pip install "
        f"'{_distribution_of(version)}=={info.TF_VERSION}', or build leangraph from its sdist "
        f"against TensorFlow {version} (pip install --no-build-isolation leangraph-*.tar.gz)"
    )


def load_native():
    """Imports leangraph._native with an actionable error when it cannot load or does not fit."""
    check_tf_version()
    # TF's Python package loads libtensorflow_{framework,cc}.so.2 first, so the
    # extension binds to the very copies TF itself uses (and a development build
    # in the source tree finds them without an rpath).
    import tensorflow as tf

    info = _require_build_info()
    version = running_tf_version()
    if series(version) != series(info.TF_VERSION):
        raise _wrong_series(info.TF_VERSION, _distribution_of(version), version)
    other_patch = version != info.TF_VERSION and version not in _VETTED
    if other_patch:
        # Before the import: a missing symbol would otherwise surface as an
        # ImportError that names a mangled symbol and no remedy.
        if int(tf.sysconfig.CXX11_ABI_FLAG) != int(info.CXX11_ABI):
            raise _refuse_patch(info, version, "its libstdc++ string ABI differs")
        missing = missing_symbols(info)
        if missing:
            raise _refuse_patch(info, version, "it lacks " + ", ".join(missing))
    try:
        from leangraph import _native
    except ImportError as exc:
        raise VersionError(
            f"leangraph's native module failed to load against TensorFlow {version}: "
            f"{exc}. Reinstall leangraph built against this TensorFlow."
        ) from exc
    if _native.TF_VERSION != info.TF_VERSION:
        raise VersionError(
            f"leangraph's native module was built against TensorFlow {_native.TF_VERSION} but "
            f"_build_info.py says {info.TF_VERSION} (a stale build?): rebuild leangraph "
            "(make dev, or pip install --no-build-isolation .)"
        )
    if other_patch:
        why = transform_mismatch(_native)
        if why:
            raise _refuse_patch(info, version, why)
        _VETTED.add(version)
    return _native
