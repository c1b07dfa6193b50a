"""Shared tune studies on a real PostgreSQL server that these tests start themselves.

Workers are real `leangraph tune` processes. Their timer is the real one behind
a short sleep (set in the child only), so a trial lasts about a second and a
worker can be killed in the middle of one.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import pg
from leangraph import cli, graphs
from leangraph.reference_model import reference_model

SPACE = {("original", r, "fp32", t) for r in ("none", "tf-deploy") for t in (1, 2)}
SEARCH = ["--recipes", "none,tf-deploy", "--precisions", "fp32", "--threads", "1,2",
          "--trials", "4", "--heartbeat", "1"]

# The child's timer sleeps first, so a trial is long enough to be killed in.
BOOT = """
import importlib, os, sys, time
tune = importlib.import_module("leangraph.tune")
real = tune.session_timer
def slow(*args, **kwargs):
    time.sleep(float(os.environ["LEANGRAPH_TEST_TIMER_DELAY"]))
    return real(*args, **kwargs)
tune.session_timer = slow
from leangraph import cli
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    digits = reference_model()
    folder = tmp_path_factory.mktemp("search")
    data = folder / "data.npz"
    np.savez(data, x=digits.x_test[:60], y=digits.y_test[:60])
    return str(digits.graph_path), str(data), folder


trials_of = pg.trials_of


def study_names(url):
    import optuna

    from leangraph.search.storage import close_storage, open_storage

    storage = open_storage(url)
    try:
        return {s.study_name for s in optuna.get_all_study_summaries(storage)}
    finally:
        close_storage(storage)


def fake_timer(graph_def, session_config, threads, feeds):
    return 5.0 / threads + 0.001 * len(graph_def.node)


class Worker:
    def __init__(self, files, url, study, name, *extra, delay=1.0):
        model, data, folder = files
        self.log = folder / f"{study}-{name}.log"
        self.out = folder / f"{study}-{name}"
        env = {**os.environ, "LEANGRAPH_TEST_TIMER_DELAY": str(delay),
               "TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(self.log, "wb") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", BOOT, "tune", model, "--data", data, *SEARCH,
                 "--storage", url, "--study", study, "--out", str(self.out), *extra],
                stdout=sink, stderr=subprocess.STDOUT, env=env)

    def finish(self, timeout=150):
        rc = self.proc.wait(timeout=timeout)
        text = self.log.read_text()
        assert rc == 0, text[-3000:]
        return text


def ran(text):
    return int(re.search(r"ran (\d+) of the (\d+) trials", text).group(1))


def best_line(text):
    return re.search(r"^best: .*$", text, re.M).group(0)


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def caught(proc, predicate, timeout, what):
    """Wait until `predicate` holds, and return with `proc` stopped (SIGSTOP) while it still does.

    Checking and then killing a running worker races with it: its trial may end
    in between. A stopped worker writes nothing more, so the state seen after
    stopping it is the state it dies in.
    """
    def holds_once_stopped():
        if not predicate():
            return None
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.3)  # a write already sent lands before the second look
        value = predicate()
        if not value:
            proc.send_signal(signal.SIGCONT)
        return value

    return wait_until(holds_once_stopped, timeout, what)


def measured(trials):
    """COMPLETE, non-repeat trials by configuration."""
    by_key = {}
    for t in trials:
        if t.state.name == "COMPLETE" and t.user_attrs["result"]["repeat_of"] is None:
            key = tuple(t.params[n] for n in ("model", "recipe", "precision", "threads"))
            by_key.setdefault(key, []).append(t)
    return by_key


def assert_every_configuration_once(trials):
    by_key = measured(trials)
    assert set(by_key) == SPACE
    assert all(len(v) == 1 for v in by_key.values()), {k: len(v) for k, v in by_key.items()}
    states = {t.state.name for t in trials}
    assert "RUNNING" not in states and "WAITING" not in states


def running_trial_of(url, name, pid):
    try:
        trials = trials_of(url, name)
    except KeyError:
        return None
    for t in trials:
        run = t.user_attrs.get("run", {})
        if t.state.name == "RUNNING" and run.get("worker", "").endswith(f":{pid}") \
                and run.get("phase") == "running" and not t.user_attrs.get("result"):
            return t.number
    return None


@pytest.mark.slow
def test_two_workers_share_one_study(server, files):
    url = server.url()
    first = Worker(files, url, "pair", "a")
    second = Worker(files, url, "pair", "b", "--worker", "--wait", "60")
    out_a, out_b = first.finish(), second.finish()
    trials = trials_of(url, "pair")
    assert_every_configuration_once(trials)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert ran(out_a) + ran(out_b) == len(complete) == len(SPACE)
    assert ran(out_a) >= 1 and ran(out_b) >= 1
    # The same best whichever worker reads it, and whatever `study show` reads later.
    assert best_line(out_a) == best_line(out_b)
    shown = subprocess.run([sys.executable, "-m", "leangraph", "study", "show", "--storage",
                            url, "--study", "pair"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert best_line(out_a).split(" 0.")[0].split()[-1] in best_line(shown.stdout)
    assert "Pareto front" in shown.stdout
    for t in complete:
        assert t.user_attrs["run"]["host"] and t.user_attrs["result"]["latency_ms"] > 0
        assert 0.0 <= t.user_attrs["result"]["accuracy"] <= 1.0
        assert t.user_attrs["result"]["error"] is None
    # One host: no two timings overlapped (the host-wide lock).
    spans = sorted(tuple(t.user_attrs["result"]["timed"]) for t in complete)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
    assert len({t.user_attrs["run"]["worker"] for t in complete}) == 2


@pytest.mark.slow
def test_sigkill_mid_trial_loses_nothing_and_is_retried(server, files):
    url = server.url()
    survivor = Worker(files, url, "kill", "survivor")
    # Slower trials, so the victim is caught in the middle of one.
    victim = Worker(files, url, "kill", "victim", "--worker", "--wait", "120", delay=2.0)

    def victim_mid_trial_after_a_finished_one():
        number = running_trial_of(url, "kill", victim.proc.pid)
        if number is None:
            return None
        done = [t for t in trials_of(url, "kill") if t.state.name == "COMPLETE"]
        return number if done else None

    killed = caught(victim.proc, victim_mid_trial_after_a_finished_one, 120,
                    "the victim mid-trial")
    before = {t.number: t.user_attrs["result"]["latency_ms"]
              for t in trials_of(url, "kill") if t.state.name == "COMPLETE"}
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    survivor.finish()
    trials = {t.number: t for t in trials_of(url, "kill")}
    assert trials[killed].state.name == "FAIL"
    for number, latency in before.items():  # nothing finished was lost
        assert trials[number].state.name == "COMPLETE"
        assert trials[number].user_attrs["result"]["latency_ms"] == latency
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1
    assert retries[0].state.name == "COMPLETE"
    assert retries[0].params == trials[killed].params
    assert retries[0].user_attrs["run"]["retry_of"] == killed
    assert str(victim.proc.pid) not in retries[0].user_attrs["run"]["worker"]
    assert_every_configuration_once(list(trials.values()))


@pytest.mark.slow
def test_resume_after_every_worker_stopped(server, files, capsys):
    url = server.url()
    only = Worker(files, url, "resume", "a")

    def two_done_one_running():
        if running_trial_of(url, "resume", only.proc.pid) is None:
            return False
        return sum(t.state.name == "COMPLETE" for t in trials_of(url, "resume")) >= 2

    caught(only.proc, two_done_one_running, 90, "two finished trials")
    only.proc.send_signal(signal.SIGKILL)
    only.proc.wait()
    assert {t.state.name for t in trials_of(url, "resume")} >= {"RUNNING", "WAITING"}
    model, data, folder = files
    # In this process: the dead worker's trial turns stale while it starts.
    assert cli.main(["tune", model, "--data", data, *SEARCH, "--storage", url, "--study",
                     "resume", "--resume", "--out", str(folder / "resumed")]) == 0
    assert "best: " in capsys.readouterr().out
    trials = trials_of(url, "resume")
    assert_every_configuration_once(trials)
    assert any(t.system_attrs.get("failed_trial") is not None
               for t in trials if t.state.name == "COMPLETE")


@pytest.fixture(scope="module")
def made_study(server, files):
    """A study made in this process, with a fake timer (every trial instant)."""
    from leangraph.search.shared import SharedStudy
    from leangraph.tune import tune

    model, data, _ = files
    digits = reference_model()
    shared = SharedStudy.open(server.url(), "made", mode="create", heartbeat=1)
    shared.sources = {"model": model, "data": data, "limit": 0}
    result = tune(model, digits.x_test[:60], digits.y_test[:60], recipes=["none", "tf-deploy"],
                  precisions=["fp32"], threads=[1, 2], n_trials=4, timer=fake_timer,
                  shared=shared, log=lambda line: None)
    return result


@pytest.mark.slow
def test_a_study_made_on_another_cpu_is_refused(server, files, made_study, monkeypatch, capsys,
                                                tmp_path):
    from leangraph.search import storage

    real = storage.cpu_facts()
    monkeypatch.setattr(storage, "cpu_facts",
                        lambda: {**real, "cpu": "Imaginary CPU 9000", "isa": ["avx2"]})
    model, data, _ = files
    out = tmp_path / "out"
    rc = cli.main(["tune", model, "--data", data, "--storage", server.url(), "--study", "made",
                   "--worker", "--wait", "0", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert len(err.splitlines()) == 1
    assert "refusing to join study 'made'" in err and "Imaginary CPU 9000" in err
    assert not out.exists()
    assert len(trials_of(server.url(), "made")) == 4  # the refused worker ran nothing


def _bad_urls(server):
    return {
        "scheme": ("postgres://u:p@127.0.0.1/db", "unsupported storage URL scheme 'postgres://'"),
        "no database": (f"postgresql://u:p@127.0.0.1:{server.port}", "names no database"),
        "unreachable": (server.url(port=pg.free_port()), "server unreachable"),
        "wrong password": (server.url(password="not-the-password"), "wrong password for user"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", ["scheme", "no database", "unreachable", "wrong password"])
def test_bad_storage_is_one_line_and_writes_nothing(server, files, case, capsys, tmp_path):
    url, words = _bad_urls(server)[case]
    model, data, _ = files
    out = tmp_path / "out"
    rc = cli.main(["tune", model, "--data", data, "--storage", url, "--study", f"bad-{case}",
                   "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert len(err.splitlines()) == 1, err
    assert err.startswith("leangraph tune: error:") and words in err, err
    assert "not-the-password" not in err and pg.PASSWORD not in err
    assert not out.exists()
    assert f"bad-{case}" not in study_names(server.url())


@pytest.mark.slow
def test_a_second_maker_of_the_same_study_is_refused(server, files, made_study, capsys):
    model, data, _ = files
    rc = cli.main(["tune", model, "--data", data, "--storage", server.url(), "--study", "made"])
    err = capsys.readouterr().err
    assert rc == 1 and "already exists" in err and "--worker" in err


@pytest.mark.slow
def test_study_show_and_export(server, files, made_study, capsys, tmp_path):
    out = tmp_path / "export"
    rc = cli.main(["study", "show", "--storage", server.url(), "--study", "made",
                   "--export", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert f"best: trial {made_study.best.number} {made_study.best.label()}" in text
    assert "Pareto front" in text and "4 COMPLETE" in text
    report = json.loads((out / "report.json").read_text())
    assert report["best"]["number"] == made_study.best.number
    assert report["verification"]["accuracy_checked"] is True
    assert pg.PASSWORD not in (out / "report.json").read_text()
    exported = graphs.load_graph(out / "best.pb")
    assert exported.SerializeToString(deterministic=True) == \
        made_study.best_graph.SerializeToString(deterministic=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging left


@pytest.mark.slow
def test_export_refuses_another_model(server, made_study, conv_bn_graph, capsys, tmp_path):
    other = tmp_path / "other.pb"
    graphs.save_graph(conv_bn_graph, other)
    out = tmp_path / "export"
    rc = cli.main(["study", "show", "--storage", server.url(), "--study", "made",
                   "--export", str(out), "--model", str(other)])
    assert rc == 1
    assert "is not the model study 'made' was made from" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_file_storages_hold_a_study_too(kind, files, tmp_path):
    from leangraph.search.shared import SharedStudy
    from leangraph.search.study import show
    from leangraph.tune import tune

    url = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else str(tmp_path / "j.log")
    model, _, _ = files
    digits = reference_model()
    shared = SharedStudy.open(url, "local", mode="create", heartbeat=1)
    result = tune(model, digits.x_test[:30], digits.y_test[:30], recipes=["none"],
                  precisions=["fp32"], threads=[1, 2], n_trials=2, timer=fake_timer,
                  shared=shared, log=lambda line: None)
    assert {t.threads for t in result.trials} == {1, 2}
    assert result.best.threads == 2  # fake_timer: more threads, less time
    assert f"best: trial {result.best.number}" in show(url, "local")


def test_a_space_larger_than_the_budget_is_sampled(tmp_path, files):
    from leangraph.search.shared import SharedStudy
    from leangraph.tune import tune

    url = f"sqlite:///{tmp_path / 'tpe.db'}"
    model, _, _ = files
    digits = reference_model()
    shared = SharedStudy.open(url, "tpe", mode="create", heartbeat=1)
    result = tune(model, digits.x_test[:30], digits.y_test[:30], recipes=["none", "tf-deploy"],
                  precisions=["fp32"], threads=[1, 2, 3], n_trials=4, timer=fake_timer,
                  shared=shared, log=lambda line: None)
    trials = trials_of(url, "tpe")
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4 == len(result.trials)  # --trials counts COMPLETE trials
    fresh = [t.key for t in result.trials if t.repeat_of is None]
    assert len(fresh) == len(set(fresh))  # a configuration drawn twice is timed once
    assert result.baseline.number == 0 and result.baseline.threads == 3


def test_ctrl_c_mid_trial_queues_it_again(tmp_path, files):
    from leangraph.search.shared import SharedStudy
    from leangraph.tune import tune

    url = f"sqlite:///{tmp_path / 'interrupt.db'}"
    model, _, _ = files
    digits = reference_model()
    calls = []

    def interrupting_timer(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return fake_timer(*args)

    def search(timer, mode):
        shared = SharedStudy.open(url, "ctrl-c", mode=mode, heartbeat=1)
        return tune(model, digits.x_test[:30], digits.y_test[:30], recipes=["none"],
                    precisions=["fp32"], threads=[1, 2, 3], n_trials=3, timer=timer,
                    shared=shared, log=lambda line: None)

    with pytest.raises(KeyboardInterrupt):
        search(interrupting_timer, "create")
    trials = trials_of(url, "ctrl-c")
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retry) == 1 and retry[0].state.name == "WAITING"
    result = search(fake_timer, "resume")
    assert {t.threads for t in result.trials} == {1, 2, 3}
    states = [t.state.name for t in trials_of(url, "ctrl-c")]
    assert states.count("COMPLETE") == 3 and "RUNNING" not in states and "WAITING" not in states


def test_host_lock_lets_builders_share_and_timings_run_alone(tmp_path):
    import fcntl

    from leangraph.search.storage import HostLock

    path = tmp_path / "timing.lock"
    worker = HostLock(path)

    def can(mode):
        fd = os.open(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    with worker.shared():
        assert can(fcntl.LOCK_SH)  # another worker may build meanwhile
        assert not can(fcntl.LOCK_EX)  # but not time
        with worker.exclusive():
            assert not can(fcntl.LOCK_SH)  # while this one times, nobody builds
        assert can(fcntl.LOCK_SH)
    assert can(fcntl.LOCK_EX)
    with worker.exclusive():  # timing outside a build holds it alone too
        assert not can(fcntl.LOCK_SH)


@pytest.mark.parametrize("error, raised", [("ProgrammingError", "ProgrammingError"),
                                           ("OperationalError", "StorageError")])
def test_a_storage_that_fails_while_made_closes_its_connections(tmp_path, monkeypatch, error,
                                                                raised):
    # Workers meeting an empty database race to make its tables: the loser's storage fails
    # inside optuna's RDBStorage after its engine connected. Its pool must be disposed of
    # then, not left to the garbage collector (a ResourceWarning, an open connection).
    import sqlalchemy
    from optuna.storages._rdb import models

    from leangraph.search import storage

    disposed = []
    real_dispose = sqlalchemy.engine.Engine.dispose
    monkeypatch.setattr(sqlalchemy.engine.Engine, "dispose",
                        lambda self, *a, **k: (disposed.append(self), real_dispose(self, *a, **k)))
    made = []

    def create_all(bind, *args, **kwargs):
        with bind.connect():  # the pool now holds a connection, as a real attempt's does
            made.append(bind)
        raise getattr(sqlalchemy.exc, error)("CREATE TABLE studies", {}, Exception("racing"))

    monkeypatch.setattr(models.BaseModel.metadata, "create_all", create_all)
    monkeypatch.setattr(storage.time, "sleep", lambda seconds: None)
    url = f"sqlite:///{tmp_path / 'race.db'}"
    with pytest.raises(storage.StorageError if raised == "StorageError"
                       else sqlalchemy.exc.ProgrammingError):
        storage.open_storage(url)
    assert made and all(any(e is m for e in disposed) for m in made)
    assert len(made) == (3 if raised == "ProgrammingError" else 1)  # the retries, each closed
