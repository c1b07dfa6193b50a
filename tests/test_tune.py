"""leangraph.tune: the accuracy budget holds, bf16 falls back cleanly, trials are recorded."""

import json

import numpy as np
import pytest

from leangraph import cli, graphs
from leangraph.errors import LeangraphError
from leangraph.reference_model import reference_model
from leangraph.tune import Trial, TuneResult, tune

MARKER = "test_only_fast_but_wrong"


@pytest.fixture(scope="session")
def digits():
    return reference_model()


@pytest.fixture(scope="session")
def data(digits):
    return digits.x_test[:120], digits.y_test[:120]


@pytest.fixture(scope="session")
def wrong_graph(digits):
    """The digits model with every weight tensor perturbed: cheap to run, wrong answers."""
    from tensorflow.python.framework import tensor_util

    graph = digits.graph_def
    rng = np.random.default_rng(0)
    for node in graph.node:
        if node.op != "Const" or node.attr["dtype"].type != 1:
            continue
        value = tensor_util.MakeNdarray(node.attr["value"].tensor)
        if value.size < 64:
            continue
        noisy = value + rng.normal(0, 3 * (np.abs(value).mean() + 1e-3), value.shape)
        node.attr["value"].tensor.CopyFrom(
            tensor_util.make_tensor_proto(noisy.astype(np.float32)))
    marker = graph.node.add()
    marker.name, marker.op = MARKER, "NoOp"
    return graph


def fake_timer(graph_def, session_config, threads, feeds):
    """The wrong candidate is 100x faster; more threads help a little."""
    wrong = any(n.name == MARKER for n in graph_def.node)
    return (0.1 if wrong else 10.0) / threads ** 0.1


def test_fast_but_wrong_candidate_never_wins(data, wrong_graph, digits):
    x, y = data
    result = tune(digits.graph_path, x, y, max_accuracy_drop=0.5, recipes=["none"],
                  precisions=["fp32"], threads=[1, 2], candidates={"wrong": wrong_graph},
                  timer=fake_timer, log=lambda line: None)
    wrong = [t for t in result.trials if t.model == "wrong"]
    assert len(wrong) == 2  # small space: every configuration measured
    assert all(not t.feasible and t.accuracy_drop > 0.5 for t in wrong)
    assert result.best.model == "original"
    assert result.best.feasible and result.best.accuracy_drop <= 0.5
    assert result.best.threads == 2
    # With the budget lifted, the same search picks it: the budget made the difference.
    lifted = tune(digits.graph_path, x, y, max_accuracy_drop=100, recipes=["none"],
                  precisions=["fp32"], threads=[1, 2], candidates={"wrong": wrong_graph},
                  timer=fake_timer, log=lambda line: None)
    assert lifted.best.model == "wrong"


def test_tpe_search_respects_the_budget(data, wrong_graph, digits):
    x, y = data
    result = tune(digits.graph_path, x, y, max_accuracy_drop=0.5, n_trials=8,
                  recipes=["none"], precisions=["fp32", "int8-weights"], threads=[1, 2, 3],
                  candidates={"wrong": wrong_graph}, timer=fake_timer, log=lambda line: None)
    assert len(result.trials) == 8  # 12 configurations > 8 trials: TPE sampled them
    assert result.best.model == "original"
    for t in result.trials:
        if t.model == "wrong":
            assert not t.feasible


def test_bf16_without_cpu_support_keeps_fp32(monkeypatch, data, digits):
    monkeypatch.setenv("LEANGRAPH_FAKE_NO_BF16", "1")
    lines = []
    x, y = data
    result = tune(digits.graph_path, x, y, recipes=["none"], precisions=["bf16"],
                  threads=[1], timer=fake_timer, log=lines.append)
    assert result.best.precision == "fp32"
    assert {t.precision for t in result.trials} == {"fp32"}
    assert any("AVX512_BF16" in m and "fp32 is kept" in m for m in result.messages)
    assert any("AVX512_BF16" in line for line in lines)


def test_every_trial_is_recorded_with_table_and_plot(tmp_path, data, digits):
    x, y = data
    record = tmp_path / "trials.json"
    result = tune(digits.graph_path, x, y, recipes=["none"], precisions=["fp32", "int8-weights"],
                  threads=[1], timer=fake_timer, record=record, log=lambda line: None)
    saved = json.loads(record.read_text())
    assert len(saved["trials"]) == len(result.trials) == 2
    assert {t["precision"] for t in saved["trials"]} == {"fp32", "int8-weights"}
    assert saved["best"]["number"] == result.best.number
    table = result.table()
    assert "precision" in table and "fp32" in table
    png = result.plot(tmp_path / "pareto.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pareto_front_drops_dominated_points():
    def trial(n, ms, acc):
        return Trial(n, "original", "none", "fp32", 1, latency_ms=ms, accuracy=acc,
                     metric="accuracy", score=acc,
                     accuracy_drop=100 * (0.9 - acc), feasible=True)

    a, b, c, d = trial(0, 10, 0.90), trial(1, 5, 0.89), trial(2, 6, 0.88), trial(3, 20, 0.95)
    result = TuneResult(a, a, [a, b, c, d], 0.5)
    assert [t.number for t in result.pareto()] == [1, 0, 3]  # c is slower and worse than b


def test_unknown_names_fail_before_any_work(data, digits):
    x, y = data
    with pytest.raises(LeangraphError, match="unknown precision 'fp4'"):
        tune(digits.graph_path, x, y, precisions=["fp4"], timer=fake_timer)
    with pytest.raises(LeangraphError, match="unknown recipe 'nope'"):
        tune(digits.graph_path, x, y, recipes=["nope"], timer=fake_timer)


def test_cli_tune_writes_trials_plot_and_best(tmp_path, data, digits, capsys):
    x, y = data
    npz = tmp_path / "data.npz"
    np.savez(npz, x=x[:40], y=y[:40])
    out = tmp_path / "out"
    rc = cli.main([
        "tune", str(digits.graph_path), "--data", str(npz), "--max-accuracy-drop", "0.5",
        "--recipes", "none", "--precisions", "fp32", "--threads", "1", "--trials", "2",
        "--out", str(out),
    ])
    assert rc == 0
    assert "best: original/none/fp32/t1" in capsys.readouterr().out
    assert json.loads((out / "trials.json").read_text())["trials"]
    assert (out / "pareto.png").stat().st_size > 0
    assert len(graphs.load_graph(out / "best.pb").node) == len(digits.graph_def.node)


def test_cli_tune_reports_bad_data(tmp_path, digits, capsys):
    npz = tmp_path / "data.npz"
    np.savez(npz, images=np.zeros((2, 32, 32, 5), np.float32))  # 5 channels, not 3
    rc = cli.main(["tune", str(digits.graph_path), "--data", str(npz)])
    assert rc == 1
    assert "--data: input 'input' takes shape (N, 32, 32, 3)" in capsys.readouterr().err


def test_int8_weights_trials_run_on_the_real_timer(data, digits):
    """quantize_weights output carries the defaulted attributes the timer's checks need."""
    x, y = data
    result = tune(digits.graph_path, x[:40], y[:40], recipes=["none"],
                  precisions=["fp32", "int8-weights"], threads=[1], log=lambda line: None)
    int8 = [t for t in result.trials if t.precision == "int8-weights"]
    assert len(int8) == 1 and int8[0].error is None, int8[0].error
    assert int8[0].latency_ms > 0


def test_sampler_never_times_a_configuration_twice(data, digits):
    """TPE re-suggests measured points; those are skipped, and the budget buys new ones."""
    x, y = data
    lines = []
    result = tune(digits.graph_path, x, y, recipes=["none", "tf-deploy", "deploy"],
                  precisions=["fp32", "int8-weights"], threads=[1, 2], n_trials=5,
                  timer=fake_timer, log=lines.append, seed=3)
    keys = [t.key for t in result.trials]
    assert len(keys) == len(set(keys)) == 5
    assert all(t.repeat_of is None for t in result.trials)


def test_a_winner_on_other_threads_is_said(data, digits):
    x, y = data
    lines = []
    # fake_timer: one thread is never faster, so a slower-on-more-threads timer is used here.
    result = tune(digits.graph_path, x, y, recipes=["none"], precisions=["fp32"], threads=[1, 2],
                  timer=lambda g, c, threads, f: 5.0 * threads, log=lines.append)
    assert result.best.threads == 1 and result.baseline.threads == 2
    assert any("1 intra-op thread(s), the fp32 baseline on 2" in m for m in result.messages)


def test_grappler_bf16_is_timed_by_the_same_timer(monkeypatch, digits):
    """bf16-grappler trials go through the C++ timer (precision="bf16"), not a Python loop."""
    from leangraph import bench
    from leangraph.precision import grappler_bf16_config
    from leangraph.tune import session_timer

    calls = []

    class Result:
        p50_ms = 1.5

    monkeypatch.setattr(bench, "benchmark", lambda *a, **k: calls.append(k) or Result())
    feeds = {"input": digits.x_test[:1]}
    assert session_timer(digits.graph_def, grappler_bf16_config(), 1, feeds) == 1.5
    assert session_timer(digits.graph_def, None, 2, feeds) == 1.5
    assert [c["precision"] for c in calls] == ["bf16", "fp32"]
    assert [c["threads"] for c in calls] == [1, 2]


def _int_input_classifier():
    """tokens (int32) -> one-hot sum -> logits: class = whether token 3 appears."""
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        tokens = tf.compat.v1.placeholder(tf.int32, [None, 5], name="tokens")
        hot = tf.reduce_sum(tf.one_hot(tokens, 8), axis=1)
        w = np.zeros((8, 2), np.float32)
        w[:, 0], w[3, 1] = 0.5, 3.0
        tf.identity(tf.matmul(hot, tf.constant(w)), name="logits")
    return g.as_graph_def()


def test_an_integer_input_is_fed_in_its_own_dtype():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 8, (30, 5))  # int64 from numpy; the Placeholder is int32
    y = (x == 3).any(axis=1).astype(np.int64)
    result = tune(_int_input_classifier(), x, y, recipes=["none"], precisions=["fp32"],
                  threads=[1], timer=lambda g, c, threads, f: 1.0, log=lambda line: None)
    assert result.best.accuracy == pytest.approx(1.0)
    with pytest.raises(LeangraphError,
                       match="x: input 'tokens' takes int32 \\(integers\\), but the data holds"):
        tune(_int_input_classifier(), x + 0.5, y, recipes=["none"], precisions=["fp32"],
             threads=[1], timer=lambda g, c, threads, f: 1.0, log=lambda line: None)


def test_pairs_that_find_the_winner_slower_overrule_it(monkeypatch, data, digits):
    """The trials say int8-weights on 1 thread wins; the confirming pairs (on 1 thread) say
    it is slower than the baseline graph there: the baseline graph on 1 thread wins."""
    import importlib
    import types

    from leangraph import bench

    tune_module = importlib.import_module("leangraph.tune")

    def fake_session_timer(graph_def, session_config, threads, feeds, **kwargs):
        int8 = any(n.op == "Dequantize" for n in graph_def.node)
        return (0.5 if int8 else 1.0) * threads

    monkeypatch.setattr(tune_module, "session_timer", fake_session_timer)
    pairs = []

    def fake_compare(a, b, feeds, **kwargs):
        pairs.append(kwargs.get("threads"))
        return types.SimpleNamespace(speedup=0.85, speedup_ci95=(0.8, 0.9), pairs=20,
                                     target_met=True)

    monkeypatch.setattr(bench, "compare", fake_compare)
    x, y = data
    lines = []
    result = tune(digits.graph_path, x, y, recipes=["none"], precisions=["fp32", "int8-weights"],
                  threads=[1, 2], log=lines.append)
    assert pairs == [1]
    assert (result.best.precision, result.best.threads) == ("fp32", 1)
    assert result.confirmed["overruled"].endswith("/int8-weights/t1")
    assert any("its lead in the trials was the thread count" in line for line in lines)
    assert not any(n.op == "Dequantize" for n in result.best_graph.node)


def _two_in_two_out(reg_scale=1.0):
    """a (N, 4) float and b (N, 3) float -> 'cls' (softmax over 3) and 'reg' (N, 1).
    reg_scale multiplies the regression head only."""
    import tensorflow as tf

    rng = np.random.default_rng(5)
    w = rng.normal(0, 1, (7, 3)).astype(np.float32)
    v = rng.normal(0, 1, (7, 1)).astype(np.float32) * reg_scale
    g = tf.Graph()
    with g.as_default():
        a = tf.compat.v1.placeholder(tf.float32, [None, 4], name="a")
        b = tf.compat.v1.placeholder(tf.float32, [None, 3], name="b")
        both = tf.concat([a, b], axis=1)
        tf.nn.softmax(tf.matmul(both, tf.constant(w)), name="cls")
        tf.identity(tf.matmul(both, tf.constant(v)), name="reg")
    return g.as_graph_def()


@pytest.fixture(scope="module")
def two_heads():
    rng = np.random.default_rng(6)
    a = rng.normal(0, 1, (64, 4)).astype(np.float32)
    b = rng.normal(0, 1, (64, 3)).astype(np.float32)
    ref = graphs.load_graph(_two_in_two_out())
    from leangraph.runner import run

    cls, reg = run(ref, {"a": a, "b": b}, ["cls", "reg"])
    # Measured targets: the model's own answer plus noise, so its MAE is not zero.
    y_reg = reg + rng.normal(0, 0.5, reg.shape).astype(np.float32)
    return {"a": a, "b": b, "y_cls": cls.argmax(-1), "y_reg": y_reg}


def test_every_output_is_held_to_its_own_budget(two_heads):
    """A candidate whose class head is right but whose regression head is 30 % too large:
    accuracy alone would let it win; the regression output's MAE budget does not."""
    x = {"a": two_heads["a"], "b": two_heads["b"]}
    y = {"cls": two_heads["y_cls"], "reg": two_heads["y_reg"]}
    lines = []
    result = tune(_two_in_two_out(), x, y, recipes=["none"], precisions=["fp32"], threads=[1],
                  candidates={"scaled": _two_in_two_out(1.3)}, log=lines.append,
                  timer=lambda g, c, t, feeds: 1.0)
    scaled = next(t for t in result.trials if t.model == "scaled")
    assert scaled.metric == "accuracy" and scaled.score == pytest.approx(1.0)
    assert not scaled.feasible
    assert "output 'reg': MAE" in scaled.note and "over the budget (+10 %)" in scaled.note
    assert result.best.model == "original"
    assert any("cls (classes), reg (regression)" in line for line in lines)
    # With the MAE budget lifted, the same candidate is within it.
    lifted = tune(_two_in_two_out(), x, y, recipes=["none"], precisions=["fp32"],
                  threads=[1], candidates={"scaled": _two_in_two_out(1.3)},
                  max_mae_increase=10.0, log=lambda line: None,
                  timer=lambda g, c, t, feeds: 1.0)
    assert next(t for t in lifted.trials if t.model == "scaled").feasible


def test_without_labels_every_output_is_gated_by_its_kind(two_heads):
    """No labels: the trials rank on the first output's agreement, and every output
    (the regression head too) passes its kind's gate against the original."""
    x = {"a": two_heads["a"], "b": two_heads["b"]}
    result = tune(_two_in_two_out(), x, recipes=["none"], precisions=["fp32"], threads=[1],
                  candidates={"scaled": _two_in_two_out(1.3)}, log=lambda line: None,
                  timer=lambda g, c, t, feeds: 1.0)
    scaled = next(t for t in result.trials if t.model == "scaled")
    assert scaled.metric == "top-1 agreement" and scaled.score == pytest.approx(1.0)
    assert not scaled.feasible
    assert "output 'reg' (regression): max relative error" in scaled.note
    gates = {(c["name"], c["gate"]) for c in scaled.checks}
    assert {("cls", "top-1 agreement"), ("reg", "max relative error"),
            ("reg", "SQNR")} <= gates


def test_a_regression_output_ranks_on_sqnr_without_labels(two_heads):
    x = {"a": two_heads["a"], "b": two_heads["b"]}
    result = tune(_two_in_two_out(), x, recipes=["none"], precisions=["fp32"], threads=[1],
                  output_name="reg", log=lambda line: None, timer=lambda g, c, t, feeds: 1.0)
    assert result.baseline.metric == "SQNR dB" and result.baseline.shown_score() == "exact"
    assert result.best.accuracy is None


def test_cli_tune_takes_the_gate_options(tmp_path, two_heads, capsys):
    graph = tmp_path / "two.pb"
    graphs.save_graph(_two_in_two_out(), graph)
    npz = tmp_path / "data.npz"
    np.savez(npz, **two_heads)
    out = tmp_path / "out"
    rc = cli.main(["tune", str(graph), "--data", str(npz), "--recipes", "none",
                   "--precisions", "fp32,bf16", "--threads", "1", "--trials", "2",
                   "--output-kind", "reg=regression", "--gate", "reg=sqnr:30",
                   "--max-mae-increase", "0.2", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    record = json.loads((out / "trials.json").read_text())
    checks = record["baseline"]["checks"]
    assert {c["name"] for c in checks} == {"cls", "reg"}
    assert record["baseline"]["metric"] == "accuracy"
    rc = cli.main(["tune", str(graph), "--data", str(npz), "--output-kind", "nope=classes",
                   "-o", str(tmp_path / "bad")])
    assert rc != 0
    assert "no output 'nope' (the outputs: cls, reg)" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["tune", "prune"])
def test_tune_and_prune_flags_are_declared_once_as_their_drivers_keywords(command):
    """Every flag of tune and prune comes from an Option (pipeline.options.TUNE / PRUNE /
    PRUNE_GOAL, search.options.SHARED) whose keyword is a parameter of the driver; a parsed
    command line turns into the driver's keywords, converted (lists, counts) as declared."""
    import argparse
    import inspect

    from leangraph.commands import prune as prune_command
    from leangraph.commands import tune as tune_command
    from leangraph.pipeline import options
    from leangraph.prune.api import prune
    from leangraph.search.options import SHARED

    declared = {"tune": options.TUNE, "prune": options.PRUNE_GOAL + options.PRUNE + SHARED}
    driver = {"tune": tune, "prune": prune}[command]
    parameters = inspect.signature(driver).parameters
    for option in declared[command]:
        assert option.keyword is None or option.keyword in parameters, option.flags
    parser = argparse.ArgumentParser()
    {"tune": tune_command, "prune": prune_command}[command].add_parser(parser.add_subparsers())
    flags = {f for action in parser._subparsers._group_actions[0].choices[command]._actions
             for f in action.option_strings}
    ours = {f for o in declared[command] + options.IO + SHARED for f in o.flags}
    assert flags - ours <= {"-h", "--help", "--verbose"}, flags - ours
    if command == "tune":
        args = parser.parse_args(["tune", "m.pb", "--data", "d.npz", "--precisions",
                                  "fp32, int8@25", "--threads", "1,2", "--trials", "5",
                                  "--limit", "40", "--calibration-data", "c.npz"])
        got = options.keywords(options.TUNE, args)
        assert got["precisions"] == ["fp32", "int8@25"] and got["threads"] == [1, 2]
        assert got["n_trials"] == 5 and got["limit"] == 40 and got["x"] == "d.npz"
        assert got["calibration"] == "c.npz" and got["recipes"] is None
        args = parser.parse_args(["tune", "m.pb", "--data", "d.npz", "--threads", "1,0"])
        with pytest.raises(LeangraphError, match="--threads: must be at least 1, got 0"):
            options.keywords(options.TUNE, args)
    else:
        args = parser.parse_args(["prune", "m.keras", "--data", "d.npz", "--target-macs", "0.5",
                                  "--method", "lowrank", "--epochs", "2", "--storage",
                                  "sqlite:///s.db", "--study", "s"])
        got = options.keywords(declared["prune"], args, {"output_kind": lambda v: v})
        assert got["target_macs"] == 0.5 and got["max_accuracy_drop"] is None
        assert got["method"] == "lowrank" and got["epochs"] == 2 and got["n_trials"] == 12
        assert got["storage"] == "sqlite:///s.db" and got["study"] == "s"
        with pytest.raises(SystemExit):  # the goals are exclusive
            parser.parse_args(["prune", "m.keras", "--data", "d.npz", "--target-macs", "0.5",
                               "--max-accuracy-drop", "1"])


def test_a_winner_is_worth_it_only_faster_and_a_lossy_one_only_measurably_faster():
    from leangraph.pipeline.confirm import not_worth_it

    assert not_worth_it("fp32", (0.90, 0.98)) == "slower"
    assert not_worth_it("int8", (0.90, 0.98)) == "slower"
    assert not_worth_it("fp32", (0.97, 1.05)) is None  # a tie of exact graphs: either will do
    assert not_worth_it("int8@25", (0.97, 1.05)) == \
        "not measurably faster, and int8@25 changes the numbers"
    assert not_worth_it("bf16", (1.00, 1.10)) is not None  # the interval must clear 1
    assert not_worth_it("bf16", (1.01, 1.10)) is None
