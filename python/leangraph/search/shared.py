"""tune's search as one worker of a study that many processes share.

Every worker is a plain process that runs the same objective against the same
Optuna study (Optuna's storage does the sharing; there is no scheduler here).
The maker of a study records what it was made from and queues the fp32
baseline first (and, for a space no larger than the trial budget, every
configuration); any number of workers then join it. A configuration is timed
once study-wide; a worker that samples one measured elsewhere records a
repeat. Heartbeats mark a killed worker's trial failed, and
RetryHeartbeatStaleTrialCallback queues it again for whichever worker comes
next.
"""

import contextlib
import dataclasses
import os
import socket
import time

from leangraph.errors import LeangraphError
from leangraph.search.storage import (
    StorageError,
    data_fingerprint,
    graph_fingerprint,
    masked,
    HostLock,
)
from leangraph.search.base import SharedStudyBase, fail_stale, quiet
from leangraph.search.trials import Trial, TuneResult, best_of

READY = "leangraph_ready"
PARAMS = ("model", "recipe", "precision", "threads")
PENALTY = 1e9  # what an over-budget or failed trial tells the sampler
_MEASURED = [f.name for f in dataclasses.fields(Trial) if f.name != "number"]


def trial_of(frozen):
    """The Trial a finished study trial recorded (None if it recorded none)."""
    measured = frozen.user_attrs.get("result")
    if not measured:
        return None
    return Trial(frozen.number, **{name: measured.get(name) for name in _MEASURED})


def trial_phase(frozen):
    """running, idle (waiting for others, measures nothing) or done."""
    if frozen.user_attrs.get("result"):
        return "done"
    return frozen.user_attrs.get("run", {}).get("phase")


def finished_trials(study):
    """Every measured trial, in order. A trial whose worker has measured it but not yet
    reported it COMPLETE counts: it is final, and every reader sees the same set."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
    found = [trial_of(frozen) for frozen in study.get_trials(deepcopy=False, states=states)]
    return sorted((t for t in found if t is not None), key=lambda t: t.number)


def result_of(study, trials=None):
    """A TuneResult (without the graph) of what the study holds now."""
    settings = study.user_attrs.get("settings")
    if settings is None:
        raise StorageError(f"study '{study.study_name}' was not made by leangraph tune")
    trials = finished_trials(study) if trials is None else trials
    baseline_key = tuple(settings["baseline"])
    baseline = next((t for t in trials if t.key == baseline_key and t.repeat_of is None
                     and t.latency_ms is not None), None)
    if baseline is None:
        raise StorageError(f"study '{study.study_name}' has no timed fp32 baseline yet "
                           "(its first trial has not finished)")
    return TuneResult(best_of(trials), baseline, trials, settings["max_accuracy_drop"])


class SharedStudy(SharedStudyBase):
    """One worker's handle on a shared study; pass it to tune(shared=...).

    mode "create" makes the study (it must not exist yet), "worker" joins one
    (waiting up to `wait` seconds for it to appear), "resume" continues one
    whose workers have all stopped. Open it with SharedStudy.open().
    """

    COMMAND = "leangraph tune"
    READY = READY

    def __init__(self, storage, name, url, mode, heartbeat=None):
        super().__init__(storage, name, url, mode, heartbeat)
        self.settings = None  # the study's, for a worker; what tune() must be called with
        self.sources = {}  # where the model and data came from (paths, --limit), recorded
        self.ran = []  # the trials this worker ran
        self.measuring_s = 0.0  # of which: building, scoring and timing, not the storage
        self._timed = None
        self._host_lock = HostLock()

    @classmethod
    def open(cls, url, name, *, mode="create", wait=60.0, heartbeat=10, grace=None,
             max_retry=3):
        storage, heartbeat = cls.connect(url, name, mode, heartbeat=heartbeat, grace=grace,
                                         max_retry=max_retry)
        shared = cls(storage, name, url, mode, heartbeat)
        if mode == "create":
            return shared
        try:
            study = shared.join(wait if mode == "worker" else 0,
                                lambda recorded: "settings" in recorded)
        except BaseException:
            shared.close()
            raise
        shared.study, shared.settings = study, dict(study.user_attrs["settings"])
        return shared

    def serialize_timing(self, timer):
        """`timer`, run holding the host-wide lock alone, its interval recorded."""
        def locked(*args, **kwargs):
            with self._host_lock.exclusive():
                start = time.time()
                try:
                    return timer(*args, **kwargs)
                finally:
                    self._timed = (start, time.time())
        return locked

    # -- making or checking the study ------------------------------------------------

    def _sampler(self, seed):
        import optuna

        # Workers with one seed would all sample the same sequence.
        if self.mode != "create":
            seed = (seed or 0) + 1 + os.getpid() % 100003
        with quiet():
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True)

    def _make(self, settings, space, choices, fingerprints):
        import optuna

        with quiet():
            try:
                study = optuna.create_study(storage=self.storage, study_name=self.name,
                                            direction="minimize",
                                            sampler=self._sampler(settings["seed"]))
            except optuna.exceptions.DuplicatedStudyError:
                raise StorageError(f"study '{self.name}' already exists in "
                                   f"{masked(self.url)}") from None
        try:
            study.set_user_attr("environment", self._here)
            study.set_user_attr("settings", settings)
            study.set_user_attr("choices", choices)
            study.set_user_attr("fingerprints", fingerprints)
            study.set_user_attr("sources", self.sources)
            baseline = tuple(settings["baseline"])
            study.enqueue_trial(dict(zip(PARAMS, baseline)))
            if settings["enumerated"]:
                for key in space:
                    if key != baseline:
                        study.enqueue_trial(dict(zip(PARAMS, key)))
            study.set_user_attr(READY, True)
        except BaseException:
            # Half a study would make workers wait for a setup that never ends.
            with contextlib.suppress(Exception):
                optuna.delete_study(study_name=self.name, storage=self.storage)
            raise
        return study

    def _check(self, choices, fingerprints):
        recorded = self.study.user_attrs
        if recorded.get("fingerprints", {}).get("model") != fingerprints["model"]:
            raise StorageError(f"refusing to join study '{self.name}': this worker's model "
                               "differs from the one the study was made from (sha256 "
                               f"{fingerprints['model'][:12]} vs "
                               f"{recorded.get('fingerprints', {}).get('model', '?')[:12]})")
        if recorded.get("fingerprints", {}).get("data") != fingerprints["data"]:
            raise StorageError(f"refusing to join study '{self.name}': this worker's data "
                               "differs from the study's (same file and --limit?)")
        if recorded.get("choices") != choices:
            raise StorageError(f"refusing to join study '{self.name}': this worker's search "
                               f"space {choices} differs from the study's "
                               f"{recorded.get('choices')}")

    # -- the worker ----------------------------------------------------------------

    def optimize(self, **kwargs):
        """Runs trials until the study is done, then the study's result (a TuneResult).
        The storage's connections are handed back at the end: a SharedStudy serves once."""
        try:
            return self._optimize(**kwargs)
        finally:
            self.close()

    def _optimize(self, *, space, baseline_key, measure, variant, models, recipes, precisions,
                  threads, x, y, input_names, output_names, max_accuracy_drop, n_trials, seed,
                  output_kinds=None,
                  batch_size, messages, log, record=None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        choices = {"model": list(models), "recipe": list(recipes),
                   "precision": list(precisions), "threads": [int(t) for t in threads]}
        fingerprints = {"model": graph_fingerprint(models), "data": data_fingerprint(x, y)}
        if self.study is None:
            settings = {
                "recipes": choices["recipe"], "precisions": choices["precision"],
                "threads": choices["threads"], "max_accuracy_drop": float(max_accuracy_drop),
                "n_trials": int(n_trials), "seed": int(seed), "batch_size": int(batch_size),
                "inputs": list(input_names), "outputs": list(output_names),
                "output_kinds": output_kinds,
                "baseline": list(baseline_key), "enumerated": len(space) <= n_trials,
            }
            self.study = self._make(settings, space, choices, fingerprints)
            self.settings = settings
        else:
            self._check(choices, fingerprints)
            self.study = optuna.load_study(study_name=self.name, storage=self.storage,
                                           sampler=self._sampler(seed))
        study, settings = self.study, self.settings
        enumerated, budget = settings["enumerated"], settings["n_trials"]
        here = self._here["host"]
        worker = f"{socket.gethostname()}:{os.getpid()}"

        def objective(ot):
            key = tuple(ot.suggest_categorical(name, choices[name]) for name in PARAMS)
            trials = study.get_trials(deepcopy=False, states=(
                optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING))
            frozen = next(t for t in trials if t.number == ot.number)
            system = frozen.system_attrs
            queued = "fixed_params" in system or "failed_trial" in system
            # Everything was queued up front: a sampled trial means the queue is empty,
            # so this worker only waits for the others (and for their retries).
            idle = enumerated and not queued
            # One attribute per write: every write is a round trip to the storage.
            ot.set_user_attr("run", {"phase": "idle" if idle else "running", "host": here,
                                     "worker": worker, "retry_of": system.get("failed_trial")})
            if frozen.user_attrs.get("result"):
                ot.set_user_attr("result", None)  # a retry inherits the dead trial's
            if idle:
                if self._settle(study, ot.number, enumerated, budget, len(space)):
                    study.stop()
                raise optuna.TrialPruned("idle: every configuration is measured or running")
            try:
                first = self._measured(study, key, ot.number, trials)
                if first is not None:
                    trial = Trial(ot.number, *key)
                    for name in _MEASURED[4:]:
                        setattr(trial, name, getattr(first, name))
                    trial.repeat_of = first.number
                else:
                    self._timed = None
                    started = time.perf_counter()
                    with self._host_lock.shared():  # no building while another worker times
                        trial = measure(ot.number, key)
                    self.measuring_s += time.perf_counter() - started
            except KeyboardInterrupt:
                # An interrupted trial is not stale (its worker said goodbye), so no
                # heartbeat check would queue it again: do it here.
                with quiet():
                    optuna.storages.RetryHeartbeatStaleTrialCallback()(study, frozen)
                raise
            measured = {name: getattr(trial, name) for name in _MEASURED}
            if first is None and self._timed:
                measured["timed"] = list(self._timed)
            ot.set_user_attr("result", measured)
            self.ran.append(trial)
            state = "error" if trial.error else ("ok" if trial.feasible else "over budget")
            latency = f"{trial.latency_ms:.3f} ms" if trial.latency_ms is not None else "-"
            again = f" (repeat of {trial.repeat_of})" if trial.repeat_of is not None else ""
            log(f"trial {trial.number} [{worker}]: {trial.label()}  {latency}  {trial.shown_score()}  "
                f"{state}{again}" + (f" ({trial.error})" if trial.error else ""))
            try:
                if self._settle(study, ot.number, enumerated, budget, len(space)):
                    study.stop()
            except KeyboardInterrupt:
                # The measurement is recorded: let the trial complete, then stop.
                interrupted.append(ot.number)
                study.stop()
            if not trial.feasible or trial.latency_ms is None:
                return PENALTY
            return trial.latency_ms

        interrupted = []
        if self.mode == "resume":
            fail_stale(study)
        callbacks = [optuna.study.MaxTrialsCallback(
            budget, states=(optuna.trial.TrialState.COMPLETE,))]
        started = time.perf_counter()
        # Waits for trials still running elsewhere: a dead worker's trial is failed and
        # queued again, and then the study is not finished after all.
        if self._settle(study, None, enumerated, budget, len(space), extra=0):
            log(f"study '{self.name}' is already finished; nothing to run")
        else:
            with quiet():
                study.optimize(objective, callbacks=callbacks, catch=())
        self.optimize_s = time.perf_counter() - started
        if interrupted:
            raise KeyboardInterrupt
        result = result_of(study)
        built = variant(result.best.model, result.best.recipe, result.best.precision)
        if isinstance(built, Exception):
            raise LeangraphError(f"the best trial's graph cannot be rebuilt here: {built}")
        result.best_graph, result.best_session_config = built[0], built[1]
        result.messages = list(messages)
        outside = (self.optimize_s - self.measuring_s) / max(1, len(self.ran))
        log(f"worker {worker} ran {len(self.ran)} of the {len(result.trials)} trials of study "
            f"'{self.name}' in {self.optimize_s:.2f} s, {1e3 * outside:.1f} ms per trial outside "
            "measuring (storage, sampling, waiting for others)")
        if record:
            result.save_json(record)
        return result

    def _measured(self, study, key, number, trials=None):
        """The trial that measured `key`, waiting while another worker measures it;
        None when nobody has (or the one who did died)."""
        import optuna

        while True:
            busy = False
            for frozen in trials or study.get_trials(deepcopy=False, states=(
                    optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)):
                if frozen.number == number or frozen.params.get("model") is None \
                        or trial_phase(frozen) == "idle":
                    continue
                if tuple(frozen.params.get(name) for name in PARAMS) != key:
                    continue
                trial = trial_of(frozen)
                if trial is not None and trial.repeat_of is None and \
                        frozen.state != optuna.trial.TrialState.FAIL:
                    return trial
                # Of two workers that drew the same configuration, the earlier trial
                # measures it and the later one waits, so neither waits for the other.
                if frozen.state == optuna.trial.TrialState.RUNNING and trial is None \
                        and frozen.number < number:
                    busy = True
            if not busy:
                return None
            trials = None
            time.sleep(self._poll())
            fail_stale(study)

    def _poll(self):
        return min(1.0, float(self.heartbeat or 1))

    def _done(self, study, enumerated, budget, space_size, extra=0):
        import optuna

        states = optuna.trial.TrialState
        if enumerated:
            return not study.get_trials(deepcopy=False, states=(states.WAITING,))
        finished = finished_trials(study)
        complete = len(study.get_trials(deepcopy=False, states=(states.COMPLETE,)))
        keys = {t.key for t in finished if t.repeat_of is None}
        return complete + extra >= budget or len(keys) >= space_size

    def _settle(self, study, number, enumerated, budget, space_size, extra=1):
        """True when the study is done and no other worker is still measuring.

        Waits while others measure (they may die: their trials are then failed
        and queued again, which makes the study not done). A trial that has
        recorded its measurement counts as finished, so two settling workers
        never wait for each other.
        """
        import optuna

        while True:
            if not self._done(study, enumerated, budget, space_size, extra=extra):
                return False
            if not self.heartbeat:
                # Without heartbeats a dead worker's trial never turns stale: waiting
                # for it could last forever.
                return True
            running = study.get_trials(deepcopy=False,
                                       states=(optuna.trial.TrialState.RUNNING,))
            busy = [t for t in running
                    if t.number != number and trial_phase(t) not in ("done", "idle")]
            if not busy:
                return True
            time.sleep(self._poll())
            fail_stale(study)

