"""The `leangraph-bench` console script: runs the C++ timer binary with this argv.

The binary is installed with the wheel as leangraph/bin/leangraph_bench; in a
source tree it is Bazel's bazel-bin/native/bench/leangraph_bench.
"""

import importlib.util
import os
import sys
from pathlib import Path

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
    from leangraph.errors import LeangraphError
    from leangraph.safety import require_safe

    for path in paths:
        try:
            require_safe(path, what=path)
        except LeangraphError as exc:
            return str(exc)
    return None


def main(argv=None):
    """Replaces this process with the binary; returns 2 when it cannot be found.

    Graphs holding file-system, process or Python-calling ops are refused
    (exit 2) unless --allow-io-ops is given.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if "--allow-io-ops" in args:
        args = [a for a in args if a != "--allow-io-ops"]
    else:
        problem = _refuse_unsafe(_graph_paths(args))
        if problem is not None:
            print(f"leangraph-bench: error: {problem}", file=sys.stderr)
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
