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


def main(argv=None):
    """Replaces this process with the binary; returns 2 when it cannot be found."""
    args = sys.argv[1:] if argv is None else list(argv)
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
