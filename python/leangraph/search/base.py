"""What every shared study's worker does the same way, whichever command made the study:
open the storage, refuse to make a study that exists, wait for one to be ready and check
that this host may join it, hand the storage back, and time holding the host-wide lock.

tune's SharedStudy (search.shared) and prune's PruneStudy (prune.shared) build on it;
each names the command that makes its studies, for the messages.
"""

import contextlib
import os
import socket
import warnings

from leangraph.search.storage import (
    StorageError,
    close_storage,
    environment,
    incompatibility,
    masked,
    open_storage,
    timing_lock,
    wait_for_study,
)

MODES = ("create", "worker", "resume")


@contextlib.contextmanager
def quiet():
    import optuna

    with warnings.catch_warnings():
        # Heartbeats and fail_stale_trials are marked experimental; they are the
        # documented way to survive dead workers, so the notice is noise here.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def fail_stale(study):
    """Fails (and queues again) the trials of dead workers: those whose heartbeats
    stopped, and, on this host, those whose process is gone. The second catches a
    worker killed before its trial's first heartbeat, which Optuna never calls stale."""
    import optuna

    with quiet():
        optuna.storages.fail_stale_trials(study)
        host = socket.gethostname()
        for frozen in study.get_trials(deepcopy=False,
                                       states=(optuna.trial.TrialState.RUNNING,)):
            worker = (frozen.user_attrs.get("run") or {}).get("worker") or ""
            name, _, pid = worker.rpartition(":")
            if name != host or not pid.isdigit() or alive(int(pid)):
                continue
            try:
                study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
            except (ValueError, RuntimeError):
                continue  # another worker failed it first
            optuna.storages.RetryHeartbeatStaleTrialCallback()(study, frozen)


class SharedStudyBase:
    """One worker's storage and study name. COMMAND: the command that makes such studies;
    READY: the user attribute its maker sets once the study is complete."""

    COMMAND = None
    READY = None

    def __init__(self, storage, name, url, mode, heartbeat=None):
        self.storage, self.name, self.url, self.mode = storage, name, str(url), mode
        self.heartbeat = heartbeat
        self.study = None
        self._here = environment()

    @classmethod
    def connect(cls, url, name, mode, *, heartbeat=10, **storage_options):
        """(storage, heartbeat or None: journal files keep none) for a worker in `mode`;
        in "create" mode a study of that name must not exist yet."""
        import optuna

        if mode not in MODES:
            raise StorageError(f"unknown shared-study mode '{mode}'")
        if not name:
            raise StorageError("a shared search needs a study name (--study NAME)")
        storage = open_storage(url, heartbeat=heartbeat, **storage_options)
        if not isinstance(storage, optuna.storages.RDBStorage):
            heartbeat = None
        if mode == "create":
            try:
                storage.get_study_id_from_name(name)
            except KeyError:
                return storage, heartbeat
            close_storage(storage)
            raise StorageError(f"study '{name}' already exists in {masked(url)}: join it with "
                               "--worker, continue it with --resume, or pick another --study")
        return storage, heartbeat

    def join(self, wait, made_here):
        """The study once its maker has made it ready (waiting up to `wait` seconds), after
        checking that COMMAND made it (`made_here(user_attrs)`) and that this host's CPU and
        versions may join it."""
        study = wait_for_study(self.storage, self.name, wait, ready_key=self.READY,
                               command=self.COMMAND)
        recorded = study.user_attrs
        if not made_here(recorded):
            raise StorageError(f"study '{self.name}' was not made by {self.COMMAND}")
        why = incompatibility(recorded.get("environment", {}), self._here)
        if why:
            raise StorageError(f"refusing to join study '{self.name}': {why}")
        return study

    def close(self):
        close_storage(self.storage)

    def timed(self, fn):
        """`fn` run holding the host-wide timing lock: no two workers on a host time at once."""
        def locked(*args, **kwargs):
            with timing_lock():
                return fn(*args, **kwargs)
        return locked
