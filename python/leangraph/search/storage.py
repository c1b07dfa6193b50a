"""Opening a study's storage, the facts a study records, and the host-wide timing lock.

A storage is named by one string: `postgresql://user:password@host:port/db`,
`mysql://...` (with a MySQL driver installed), `sqlite:///path/to/file.db`, or
a plain file path, which is an Optuna journal file. Every refusal is a
StorageError whose one line names the problem; the password never appears in
it.
"""

import contextlib
import fcntl
import hashlib
import os
import platform
import re
import socket
import tempfile
import time
import warnings
from pathlib import Path

from leangraph import hardware
from leangraph._version import __version__
from leangraph.errors import StorageError


DEFAULT_MAX_RETRY = 3


def masked(url):
    """The URL with its password replaced by ***, for messages and reports."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", str(url))


def _kind(url):
    """'rdb' or 'journal', after checking what can be checked without connecting."""
    if "://" not in url:
        path = Path(url)
        if path.is_dir():
            raise StorageError(f"storage {url} is a folder; a journal storage is a file path")
        if not path.parent.is_dir():
            raise StorageError(f"journal storage {url}: folder {path.parent} does not exist")
        return "journal"
    scheme = url.split("://", 1)[0].lower()
    dialect = scheme.split("+", 1)[0]
    if dialect not in ("postgresql", "mysql", "sqlite"):
        hint = " (SQLAlchemy spells it postgresql://)" if dialect == "postgres" else ""
        raise StorageError(
            f"unsupported storage URL scheme '{scheme}://'{hint}; use postgresql://, mysql://, "
            "sqlite:/// or a journal file path")
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
        raise StorageError(f"malformed storage URL {masked(url)}: {exc}") from None
    if dialect == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise StorageError(f"storage URL {url} names no database file "
                               "(sqlite:///relative.db or sqlite:////absolute/path.db)")
        folder = Path(parsed.database).parent
        if not folder.is_dir():
            raise StorageError(f"storage URL {url}: folder {folder} does not exist")
    else:
        if not parsed.host:
            raise StorageError(f"storage URL {masked(url)} names no host")
        if not parsed.database:
            raise StorageError(f"storage URL {masked(url)} names no database "
                               f"({dialect}://user:password@host:port/DATABASE)")
    return "rdb"


def _driver_url(url):
    """postgresql:// and mysql:// with an explicit driver, so the error for a missing
    one names the package to install."""
    scheme, rest = url.split("://", 1)
    if scheme.lower() == "postgresql":
        return "postgresql+psycopg://" + rest
    if scheme.lower() == "mysql":
        for module, driver in (("MySQLdb", "mysqldb"), ("pymysql", "pymysql")):
            try:
                __import__(module)
            except ImportError:
                continue
            return f"mysql+{driver}://" + rest
        raise StorageError("mysql:// needs a MySQL driver: pip install PyMySQL (or mysqlclient)")
    return url


def _reason(exc):
    """The driver's own words, on one line, without the password."""
    original = getattr(exc, "orig", None) or exc
    text = " ".join(str(original).split())
    text = re.sub(r"^connection failed: ", "", text)
    text = re.sub(r"\(Background on this error at: \S+\)", "", text).strip()
    lowered = text.lower()
    if "password authentication failed" in lowered or "access denied" in lowered:
        user = re.search(r'for user "?([^"\s]+)"?', text)
        return "wrong password" + (f" for user {user.group(1)}" if user else "") + f" ({text})"
    if "connection refused" in lowered or "could not connect" in lowered \
            or "timeout expired" in lowered or "can't connect" in lowered:
        return f"server unreachable ({text})"
    return text


def open_storage(url, *, heartbeat=None, grace=None, max_retry=DEFAULT_MAX_RETRY):
    """An Optuna storage for `url`, connected and checked.

    heartbeat: seconds between a running trial's heartbeats (RDB storages only);
    a trial whose last heartbeat is older than `grace` seconds (default three
    heartbeats) belongs to a dead worker: it is failed and retried, up to
    max_retry times, as a new trial with the same parameters.
    """
    import optuna

    url = str(url).strip()
    if not url:
        raise StorageError("empty storage URL")
    kind = _kind(url)
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(url))
        except OSError as exc:
            raise StorageError(f"cannot open journal storage {url}: {exc.strerror or exc}") from None
    import sqlalchemy

    engine_kwargs = {"pool_pre_ping": True}
    if url.lower().startswith("postgresql"):
        # A firewalled host would otherwise hang for the OS's TCP timeout (minutes).
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    options = {}
    if heartbeat:
        grace = grace or 3 * int(heartbeat)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        options = {"heartbeat_interval": int(heartbeat), "grace_period": int(grace),
                   "heartbeat_stale_trial_callback": retry}
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(_driver_url(url), engine_kwargs=engine_kwargs,
                                                  **options)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            # Two workers that meet an empty database create its tables at once;
            # the loser sees the winner's half-made schema and tries again.
            _dispose_unfinished(exc)
            if attempt == 2:
                raise
            time.sleep(0.5 + attempt)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            _dispose_unfinished(exc)
            raise StorageError(f"cannot open storage {masked(url)}: {_reason(exc)}") from None
        except ImportError as exc:
            raise StorageError(f"cannot open storage {masked(url)}: missing driver ({exc})") from None
    raise AssertionError("unreachable")


def _dispose_unfinished(exc):
    """Closes the connections of the RDBStorage whose __init__ raised `exc`.

    Its engine is made before the tables are (and its pool keeps the connection that
    tried), but the half-made storage is never returned, so nobody could dispose of
    it: the connection stayed open until the garbage collector found it."""
    import optuna

    tb = exc.__traceback__
    while tb is not None:
        unfinished = tb.tb_frame.f_locals.get("self")
        if isinstance(unfinished, optuna.storages.RDBStorage):
            engine = getattr(unfinished, "engine", None)
            if engine is not None:
                engine.dispose()
            return
        tb = tb.tb_next


def cpu_facts():
    """The CPU model and the ISA flags that decide TensorFlow's kernels."""
    flags = hardware.cpu_flags()
    return {"cpu": hardware.cpu_model(), "isa": sorted(f for f in hardware.ISA_FLAGS if f in flags),
            "flags": " ".join(sorted(flags))}


def environment():
    """What a study records about where it was made, and what a worker compares."""
    import tensorflow as tf

    facts = cpu_facts()
    return {
        "host": socket.gethostname(),
        "cpu": facts["cpu"],
        "isa": facts["isa"],
        "cpu_flags": facts["flags"],
        "logical_cpus": os.cpu_count(),
        "leangraph": __version__,
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
    }


def incompatibility(recorded, here):
    """Why a worker here must not join a study made in `recorded`, or None."""
    if recorded.get("cpu") != here["cpu"] or recorded.get("isa") != here["isa"]:
        return (f"it was made on CPU '{recorded.get('cpu')}' "
                f"[{' '.join(recorded.get('isa') or [])}] but this worker runs on "
                f"'{here['cpu']}' [{' '.join(here['isa'])}]: latencies from different CPUs are "
                "never ranked together; start a new study on this CPU")
    for name in ("tensorflow", "leangraph"):
        if recorded.get(name) != here[name]:
            return (f"it was made with {name} {recorded.get(name)}, this worker has "
                    f"{here[name]}")
    return None


def graph_fingerprint(graphs_by_name):
    """sha256 over the named graphs, independent of protobuf map order."""
    digest = hashlib.sha256()
    for name in sorted(graphs_by_name):
        digest.update(name.encode() + b"\0")
        digest.update(graphs_by_name[name].SerializeToString(deterministic=True))
    return digest.hexdigest()


def data_fingerprint(x, y=None):
    """sha256 of examples and labels: arrays, lists of arrays (one per input, or the
    examples of a folder of one-example files) and {name: array}, in order."""
    import numpy as np

    digest = hashlib.sha256()

    def add(value):
        if value is None:
            digest.update(b"none")
        elif isinstance(value, dict):
            for name in sorted(value):
                digest.update(str(name).encode() + b"\0")
                add(value[name])
        elif isinstance(value, (list, tuple)) or hasattr(value, "arrays"):
            items = value.arrays if hasattr(value, "arrays") else value
            digest.update(f"[{len(items)}]".encode())
            for item in items:
                add(item)
        else:
            array = np.ascontiguousarray(value)
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(array.tobytes())

    add(x)
    add(y)
    return digest.hexdigest()


def lock_path():
    folder = os.environ.get("LEANGRAPH_LOCK_DIR") or tempfile.gettempdir()
    return Path(folder) / "leangraph-timing.lock"


def _open_lock(path):
    try:
        # World-writable, so workers of different users on one host share it.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        with contextlib.suppress(OSError):  # the umask narrows the mode; only the owner widens it
            os.fchmod(fd, 0o666)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY)  # flock needs no write access
    except OSError as exc:
        raise StorageError(f"cannot open the timing lock {path}: {exc.strerror}") from None
    return fd


class HostLock:
    """One host's workers: many may build and score at once (shared), a timing runs
    alone (exclusive), so no timing measures another worker's load. An flock dies
    with its process, so a killed worker never leaves it held."""

    def __init__(self, path=None):
        self.path = Path(path or lock_path())
        self._fd = None

    @contextlib.contextmanager
    def shared(self):
        fd = _open_lock(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._fd = fd
            yield
        finally:
            self._fd = None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextlib.contextmanager
    def exclusive(self):
        if self._fd is None:
            with timing_lock(self.path):
                yield
            return
        # Inside shared(): flock converts the same lock (it lets go of the shared
        # one first, so two workers converting at once cannot deadlock).
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_SH)


@contextlib.contextmanager
def timing_lock(path=None):
    """The host-wide lock held alone, for one timing."""
    path = Path(path or lock_path())
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def wait_for_study(storage, name, wait, *, ready_key, command):
    """The study `name` once its maker has set `ready_key`, waiting up to `wait` seconds.
    command: the command that makes such studies ("leangraph tune"), for the message."""
    import optuna

    deadline = time.monotonic() + max(0.0, float(wait))
    seen = False
    while True:
        try:
            study_id = storage.get_study_id_from_name(name)
            seen = True
            if storage.get_study_user_attrs(study_id).get(ready_key):
                return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            pass
        if time.monotonic() >= deadline:
            what = "is still being set up" if seen else "does not exist"
            raise StorageError(f"study '{name}' {what} after waiting {wait:g} s "
                               f"(start one with `{command} --storage URL --study NAME`)")
        time.sleep(0.5)


def close_storage(storage):
    """Hands back the storage's database connections (a pooled engine keeps them
    open until it is disposed; a dropped one leaves them to the garbage collector)."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        storage.remove_session()
        engine.dispose()
