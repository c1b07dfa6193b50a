"""prune's search as one worker of a study that many processes share.

The same storage, heartbeats and host-wide timing lock as `tune`'s shared
search (leangraph.search.storage): the first `leangraph prune --storage URL
--study NAME` makes the study, recording what it searches (the model, the data,
the settings, the CPU and the versions); any number of `--worker`s with the
same model, data and settings join it from any machine. `--trials` counts
COMPLETE trials study-wide. A killed worker's trial is failed by its stale
heartbeat (or, on its own host, by its missing process) and queued again with
the same keep ratios. Each process then fine-tunes the study's best candidate
and writes its own output; a candidate another worker found is rebuilt from
its recorded keep counts (the channel scores depend only on the model, data
and criterion, which every worker shares).
"""

import hashlib
import os
import socket

from leangraph.search.base import SharedStudyBase, fail_stale
from leangraph.search.storage import StorageError

READY = "leangraph_prune_ready"
KIND = "leangraph prune"


def model_fingerprint(model):
    """sha256 over a Keras model's architecture and weights."""
    digest = hashlib.sha256(model.to_json().encode())
    for weight in model.weights:
        digest.update(weight.path.encode() + b"\0")
        digest.update(weight.numpy().tobytes())
    return digest.hexdigest()


def worker_name():
    return f"{socket.gethostname()}:{os.getpid()}"


class PruneStudy(SharedStudyBase):
    """An Optuna study in a shared storage, for prune's search."""

    COMMAND = KIND
    READY = READY

    def __init__(self, url, name, *, mode="create", wait=60.0, heartbeat=10):
        storage, heartbeat = self.connect(url, name, mode, heartbeat=heartbeat)
        super().__init__(storage, name, url, mode, heartbeat)
        self.wait = float(wait)
        self.heartbeats = heartbeat is not None

    def attach(self, sampler, *, settings, fingerprints, enqueue=()):
        """The study, made (with `enqueue` queued first) or joined after checking that it
        searches the same model, data and settings on the same kind of CPU."""
        import optuna

        if self.mode == "create":
            study = optuna.create_study(storage=self.storage, study_name=self.name,
                                        direction="minimize", sampler=sampler)
            study.set_user_attr("kind", KIND)
            study.set_user_attr("settings", settings)
            study.set_user_attr("fingerprints", fingerprints)
            study.set_user_attr("environment", self._here)
            for params in enqueue:
                study.enqueue_trial(params)
            study.set_user_attr(READY, True)
        else:
            wait = self.wait if self.mode == "worker" else 0.0
            recorded = self.join(wait, lambda attrs: attrs.get("kind") == KIND).user_attrs
            for what in ("model", "data"):
                if recorded["fingerprints"].get(what) != fingerprints[what]:
                    raise StorageError(f"refusing to join study '{self.name}': it prunes another "
                                       f"{what} (fingerprints differ)")
            theirs = recorded["settings"]
            differ = sorted(k for k in set(theirs) | set(settings) if theirs.get(k) != settings.get(k))
            if differ:
                shown = ", ".join(f"{k} {theirs.get(k)!r} (here {settings.get(k)!r})" for k in differ)
                raise StorageError(f"refusing to join study '{self.name}': it searches with {shown}")
            study = optuna.load_study(study_name=self.name, storage=self.storage, sampler=sampler)
            if self.mode == "resume":
                fail_stale(study)
        self.study = study
        return study

    def records(self):
        """Every COMPLETE trial's recorded result (dicts), in trial order."""
        import optuna

        done = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        found = []
        for frozen in sorted(done, key=lambda t: t.number):
            result = frozen.user_attrs.get("result")
            if result:
                found.append(dict(result, number=frozen.number,
                                  keep={int(k): v for k, v in result["keep"].items()},
                                  worker=(frozen.user_attrs.get("run") or {}).get("worker"),
                                  retry_of=frozen.system_attrs.get("failed_trial")))
        return found


def encode_keep(keep):
    """Keep counts with string keys, as JSON (and so Optuna's user attrs) store them."""
    return {str(k): int(v) for k, v in keep.items()}
