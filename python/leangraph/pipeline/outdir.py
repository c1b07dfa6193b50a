"""OUTDIR: a staging folder beside it, moved in by renames, with signals held meanwhile.

Nothing is ever written into OUTDIR directly: an interrupt at any point leaves
either the previous run's files or this run's, never a mix or a partial file.
"""

import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from leangraph import graphs
from leangraph.errors import UsageError

ARTIFACTS = ("optimized.pb", "optimized_savedmodel", "report.md", "report.json", "latency.png")


class Interrupted(KeyboardInterrupt):
    """optimize() was stopped by a signal (SIGINT or SIGTERM); nothing was written to OUTDIR."""

    def __init__(self, signum):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


@contextmanager
def sigterm_raises():
    """SIGTERM raises Interrupted (like SIGINT's KeyboardInterrupt), so clean-up code runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    old = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextmanager
def signals_deferred():
    """Holds SIGINT/SIGTERM while the finished files are renamed into OUTDIR.

    The renames are each atomic; deferring the signals keeps the set of them
    from being cut in half. A signal that arrived is raised as Interrupted after.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []

    def defer(signum, frame):
        pending.append(signum)

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in saved:
        signal.signal(s, defer)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
        for s in pending:
            if saved[s] is not signal.SIG_IGN:
                raise Interrupted(s)


def check_outdir(outdir, model_path):
    """Refuses an OUTDIR that would overwrite the input model (or is not a folder)."""
    if model_path is not None and graphs.same_file(outdir, model_path):
        raise UsageError(f"OUTDIR {outdir} is the input model; refusing to overwrite it")
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"OUTDIR {outdir} exists and is not a directory")
    if model_path is None:
        return
    model_path = Path(model_path)
    resolved_model = model_path.resolve()
    for name in ARTIFACTS:
        target = (outdir / name).resolve()
        if target == resolved_model or target in resolved_model.parents:
            raise UsageError(
                f"writing {outdir / name} would overwrite the input model {model_path}; "
                "choose another OUTDIR"
            )


def make_staging(outdir):
    outdir = outdir.resolve()  # "." has no name and no parent of its own
    outdir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{outdir.name}.leangraph-", suffix=".tmp",
                                 dir=outdir.parent))


def commit(staging, outdir, names):
    """Moves the finished artifacts from `staging` into OUTDIR with renames only.

    A new OUTDIR is the staging folder itself, renamed (one atomic step). In an
    existing OUTDIR each artifact replaces its old version by rename; an old
    artifact that this run did not produce (e.g. a previous optimized.pb when no
    variant passed now) is removed so the folder never mixes two runs' results.
    """
    with signals_deferred():
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        if not outdir.exists():
            os.rename(staging, outdir)
            return
        trash = staging / ".replaced"
        trash.mkdir()
        for name in ARTIFACTS:
            target = outdir / name
            source = staging / name
            exists = target.exists() or target.is_symlink()
            # A file replaces a file in one step; anything else is moved aside first.
            plain_swap = name in names and source.is_file() and target.is_file() \
                and not target.is_symlink()
            if exists and not plain_swap:
                os.rename(target, trash / name)
            if name in names:
                os.replace(source, target)
        shutil.rmtree(staging, ignore_errors=True)

