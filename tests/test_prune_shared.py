"""`leangraph prune --storage URL --study NAME`: prune's search shared by worker processes
through a real PostgreSQL, surviving a worker killed mid-trial."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import pg

SEARCH = ["--max-accuracy-drop", "20", "--epochs", "1", "--heartbeat", "1"]


# Each test runs PostgreSQL and several prune workers, one killed mid-trial: minutes.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import keras
    from keras import layers
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images[..., None] / 16.0).astype("float32")[:300]
    y = digits.target.astype("int64")[:300]
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 1), name="image")
    h = layers.Conv2D(32, 3, padding="same", activation="relu", name="c1")(i)
    h = layers.Conv2D(32, 3, padding="same", activation="relu", name="c2")(h)
    h = layers.GlobalAveragePooling2D()(h)
    model = keras.Model(i, layers.Dense(10, activation="softmax", name="probs")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("prune-shared")
    model.save(folder / "m.keras")
    np.savez(folder / "d.npz", x=x, y=y)
    np.savez(folder / "other.npz", x=x[::-1].copy(), y=y[::-1].copy())
    return folder


class Worker:
    def __init__(self, folder, url, study, name, *extra, data="d.npz"):
        self.log = folder / f"{study}-{name}.log"
        self.out = folder / f"{study}-{name}"
        with open(self.log, "wb") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "leangraph", "prune", str(folder / "m.keras"),
                 "--data", str(folder / data), *SEARCH, "--storage", url, "--study", study,
                 "-o", str(self.out), *extra],
                stdout=sink, stderr=subprocess.STDOUT,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})

    def finish(self, timeout=300):
        rc = self.proc.wait(timeout=timeout)
        text = self.log.read_text()
        return rc, text

    def report(self):
        return json.loads((self.out / "report.json").read_text())


trials_of = pg.trials_of


def test_two_workers_share_one_prune_study_and_other_data_is_refused(server, files):
    url = server.url()
    maker = Worker(files, url, "share", "a", "--trials", "4")
    joiner = Worker(files, url, "share", "b", "--trials", "4", "--worker")
    (rc_a, log_a), (rc_b, log_b) = maker.finish(), joiner.finish()
    assert rc_a == 0, log_a[-3000:]
    assert rc_b == 0, log_b[-3000:]
    trials = trials_of(url, "share")
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    # --trials counts COMPLETE trials study-wide (each worker may finish the trial it was on).
    assert 4 <= len(complete) <= 5
    assert not [t for t in trials if t.state.name == "RUNNING"]
    workers = {t.user_attrs["run"]["worker"] for t in complete}
    assert len(workers) == 2  # both did work
    a, b = maker.report(), joiner.report()
    # Each reports the study as it was when it finished: the one that finished last saw every
    # trial (the other may have stopped while the last one was still running).
    last = max((a, b), key=lambda r: len(r["search"]["trials"]))
    assert len(last["search"]["trials"]) == len(complete)
    for r in (a, b):
        assert r["search"]["best"]["number"] in {t["number"] for t in r["search"]["trials"]}
    if len(a["search"]["trials"]) == len(b["search"]["trials"]):
        assert a["search"]["best"] == b["search"]["best"]  # the study's best, whoever reads it
    assert sorted(last["search"]["shared"]["workers"]) == sorted(workers)
    assert "***" in a["search"]["shared"]["storage"] and pg.PASSWORD not in json.dumps(a)
    # Its best is within budget and is what the output holds.
    assert a["search"]["best"]["accuracy_drop"] <= 20

    other = Worker(files, url, "share", "c", "--trials", "4", "--worker", data="other.npz")
    rc, log = other.finish()
    assert rc != 0
    assert "refusing to join study 'share': it prunes another data" in log
    assert not other.out.exists()
    # A study's name is taken once.
    again = Worker(files, url, "share", "d", "--trials", "4")
    rc, log = again.finish()
    assert rc != 0 and "study 'share' already exists" in log and not again.out.exists()


def test_a_worker_killed_mid_trial_loses_nothing_and_its_trial_runs_again(server, files):
    url = server.url()
    victim = Worker(files, url, "kill", "a", "--trials", "3")
    deadline = time.monotonic() + 240
    running = []

    def running_trials():
        try:
            return [t for t in trials_of(url, "kill")
                    if t.state.name == "RUNNING" and t.user_attrs.get("run")]
        except KeyError:
            return []

    # Checking and then killing races with the worker (its trial may end in between):
    # it is stopped (SIGSTOP) first and looked at again, and then it dies in that state.
    while time.monotonic() < deadline and not running:
        if running_trials():
            victim.proc.send_signal(signal.SIGSTOP)
            time.sleep(0.3)  # a write already sent lands before the second look
            running = running_trials()
            if not running:
                victim.proc.send_signal(signal.SIGCONT)
        time.sleep(0.2)
    assert running, victim.log.read_text()[-3000:]
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(timeout=30)
    killed = running[0].number
    rescuer = Worker(files, url, "kill", "b", "--trials", "3", "--resume")
    rc, log = rescuer.finish()
    assert rc == 0, log[-3000:]
    trials = trials_of(url, "kill")
    states = {t.number: t.state.name for t in trials}
    assert states[killed] == "FAIL"
    assert not [n for n, s in states.items() if s == "RUNNING"]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) >= 3
    retried = [t for t in complete if t.system_attrs.get("failed_trial") == killed]
    assert retried and retried[0].params == next(t for t in trials if t.number == killed).params
    assert rescuer.report()["search"]["best"]["accuracy_drop"] <= 20
