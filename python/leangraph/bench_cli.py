"""The `leangraph-bench` console script: runs the C++ timer binary with this argv.

The binary is installed with the wheel as leangraph/bin/leangraph_bench; in a
source tree it is Bazel's bazel-bin/native/bench/leangraph_bench.
"""

import importlib.util
import os
import sys
from pathlib import Path

from leangraph import graphs, images
from leangraph.errors import LeangraphError
from leangraph.pipeline.model import load_model
from leangraph.safety import require_safe


_INSTALLED = Path(__file__).resolve().parent / "bin" / "leangraph_bench"
_DEV_TREE = Path(__file__).resolve().parents[2] / "bazel-bin" / "native" / "bench" / "leangraph_bench"


def find_binary():
    """The timer binary's path, or None when neither the wheel nor a build has it."""
    for candidate in (_INSTALLED, _DEV_TREE):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _environment():
    env = dict(os.environ)
    # TF logs oneDNN notices at load time, before the binary can quiet them.
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # The binary's rpath finds TF beside leangraph in site-packages; this also
    # covers other layouts (e.g. a source tree run against a venv's TF).
    spec = importlib.util.find_spec("tensorflow")
    if spec is not None and spec.submodule_search_locations:
        tf_dir = list(spec.submodule_search_locations)[0]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (tf_dir, env.get("LD_LIBRARY_PATH", "")) if p
        )
    return env


_GRAPH_FLAGS = ("--graph", "--compare")


def _graph_paths(args):
    """The values of --graph/--compare, in either "--flag X" or "--flag=X" form."""
    paths = []
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if flag in _GRAPH_FLAGS:
            if eq:
                paths.append(value)
            elif i + 1 < len(args):
                paths.append(args[i + 1])
    return paths


def _refuse_unsafe(paths):
    """An error message when a graph would act on the machine when run, else None.

    The policy lives in leangraph.safety (Python), so the binary is checked from
    here rather than carrying a second copy of it.
    """
    for path in paths:
        try:
            require_safe(path, what=path)
        except LeangraphError as exc:
            return str(exc)
    return None


def _take_flag(args, flag):
    """Removes `flag VALUE` / `flag=VALUE` from args; returns (value or None, args)."""
    rest, value, i = [], None, 0
    while i < len(args):
        name, eq, inline = args[i].partition("=")
        if name == flag:
            if eq:
                value = inline
            elif i + 1 < len(args):
                value = args[i + 1]
                i += 1
            else:
                raise ValueError(f"{flag} needs a value")
        else:
            rest.append(args[i])
        i += 1
    return value, rest


def _images_as_npy(args):
    """Turns --image-dir DIR [--preprocess NAME] into --input-npy NAME=FILE for the binary.

    The first BATCH images of DIR (by name; BATCH is the Placeholder's fixed batch
    dimension, else --batch, else every image) are decoded, resized to the
    model's input and preprocessed (default: none), then handed to the binary as
    one array through an in-memory file that survives the exec.
    """
    image_dir, args = _take_flag(args, "--image-dir")
    preprocessing, args = _take_flag(args, "--preprocess")
    if image_dir is None:
        if preprocessing is not None:
            raise ValueError("--preprocess applies to --image-dir only")
        return args
    import numpy as np

    paths = _graph_paths(args)
    if not paths:
        raise ValueError("--image-dir needs --graph")
    graph_def = graphs.load_graph(paths[0])
    placeholders = [n for n in graph_def.node if n.op == "Placeholder"]
    if len(placeholders) != 1:
        raise ValueError(f"--image-dir needs a graph with one input; this one has {len(placeholders)}")
    node = placeholders[0]
    shape = [d.size if d.size >= 0 else None for d in node.attr["shape"].shape.dim]
    batch_flag = _take_flag(list(args), "--batch")[0]
    limit = shape[0] if shape and shape[0] else (int(batch_flag) if batch_flag else None)
    pixels, _ = images.load_images(image_dir, shape, preprocessing or "none", limit=limit)
    fd = os.memfd_create("leangraph-images", 0)
    with os.fdopen(fd, "wb", closefd=False) as handle:
        np.save(handle, pixels.astype(np.float32))
    os.set_inheritable(fd, True)
    return [*args, "--input-npy", f"{node.name}=/proc/self/fd/{fd}"]


_GRAPH_SUFFIXES = (".pb", ".pbtxt", ".graphdef")


def _models_as_graphs(args):
    """Turns --graph/--compare values that are models (.keras, .h5, a SavedModel folder, ...)
    into their frozen graphs, handed to the binary through in-memory files; a .pb stays."""
    out = list(args)
    for i, arg in enumerate(out):
        flag, eq, value = arg.partition("=")
        if flag not in _GRAPH_FLAGS:
            continue
        if not eq:
            if i + 1 >= len(out):
                continue
            value = out[i + 1]
        path = Path(value)
        if value.startswith("/proc/self/fd/") or (path.is_file() and path.suffix in _GRAPH_SUFFIXES):
            continue
        if not path.exists():
            continue  # the binary names the missing file
        frozen = load_model(value)
        fd = os.memfd_create("leangraph-graph", 0)
        with os.fdopen(fd, "wb", closefd=False) as handle:
            handle.write(frozen.graph_def.SerializeToString())
        os.set_inheritable(fd, True)
        if eq:
            out[i] = f"{flag}=/proc/self/fd/{fd}"
        else:
            out[i + 1] = f"/proc/self/fd/{fd}"
    return out


def main(argv=None):
    """Replaces this process with the binary; returns 2 when it cannot be found.

    --graph and --compare take any model form leangraph.load_model() takes; a
    model is frozen first.

    Graphs holding file-system, process or Python-calling ops are refused
    (exit 2) unless --allow-io-ops is given.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _models_as_graphs(args)
    except Exception as exc:  # leangraph's own errors name the problem
        if not isinstance(exc, (LeangraphError, OSError)):
            raise
        print(f"leangraph-bench: error: {exc}", file=sys.stderr)
        return 2
    if "--allow-io-ops" in args:
        args = [a for a in args if a != "--allow-io-ops"]
    else:
        problem = _refuse_unsafe(_graph_paths(args))
        if problem is not None:
            print(f"leangraph-bench: error: {problem}", file=sys.stderr)
            return 2
    try:
        args = _images_as_npy(args)
    except (ValueError, OSError) as exc:
        print(f"leangraph-bench: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # leangraph's own errors (bad images, graph) name the problem
        if not isinstance(exc, LeangraphError):
            raise
        print(f"leangraph-bench: error: {exc}", file=sys.stderr)
        return 2
    binary = find_binary()
    if binary is None:
        print(
            "leangraph-bench: error: the timer binary is missing (expected "
            f"{_INSTALLED}); reinstall leangraph, or `bazel build //native/bench:leangraph_bench` "
            "in a source tree",
            file=sys.stderr,
        )
        return 2
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(str(binary), [str(binary), *args], _environment())
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
