"""Verdicts on real data: optimize --data, the held-out split, gates by output kind, and no
calibrated result on invented inputs."""

import json

import numpy as np
import pytest

from leangraph.errors import LeangraphError, UsageError
from leangraph.optimize import optimize

N = 96


def _mlp(path):
    """A small classifier whose real inputs lie in [0, 50]: optimize invents [-1, 1]."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    h = keras.layers.Dense(32, activation="relu")(inputs)
    h = keras.layers.Dense(32, activation="relu")(h)
    outputs = keras.layers.Dense(4, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.save(path)
    return model


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verdicts")
    model = _mlp(folder / "mlp.keras")
    x = np.random.default_rng(1).uniform(0, 50, (N, 8)).astype(np.float32)
    y = model.predict(x, verbose=0).argmax(-1)
    np.savez(folder / "data.npz", x=x, y=y)
    return folder


def _run(model, out, **kwargs):
    kwargs = {"runs": 3, "progress": False, "precisions": "fp32,int8", **kwargs}
    return optimize(model, outdir=out, **kwargs)


def test_int8_calibrated_on_invented_inputs_is_wrong_on_real_ones(real, int8_anywhere):
    """Why the rule exists: calibrated and checked on invented inputs int8 looks right."""
    from leangraph import freeze, quantize, runner

    frozen = freeze(str(real / "mlp.keras"))
    name, out = frozen.inputs[0].name, frozen.outputs[0].name
    invented = np.random.default_rng(0).uniform(-1, 1, (64, 1, 8)).astype(np.float32)
    real_x = np.load(real / "data.npz")["x"]
    graph = quantize(frozen.graph_def, invented[:, 0]).graph_def
    from leangraph.metrics import sqnr_db

    def sqnr(x):
        want = [runner.run(frozen.graph_def, {name: e[None]}, [out])[0] for e in x]
        got = [runner.run(graph, {name: e[None]}, [out])[0] for e in x]
        return sqnr_db(np.concatenate(want), np.concatenate(got))

    assert sqnr(invented[:16, 0]) >= 20 > sqnr(real_x[:16])


def test_without_data_int8_is_timed_but_never_the_result(real, tmp_path, int8_anywhere):
    report = _run(real / "mlp.keras", tmp_path / "o", images=8)
    int8 = report.variant("int8")
    assert int8.status == "speed only" and int8.latency is not None
    assert int8.reason.startswith("speed only: calibrated and verified on invented inputs; "
                                  "give --data to make it a candidate")
    assert "× the frozen graph's speed" in int8.reason
    assert report.result is not None and report.result != "int8"
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    assert data["verification"]["invented"] is True
    assert data["verification"]["n_verification"] == 8
    assert data["verification"]["n_calibration"] == 0
    text = (tmp_path / "o" / "report.md").read_text()
    assert "## What this verdict rests on" in text and "on invented inputs" in text
    assert "on invented inputs" in report.verdict()
    # The result's status says what it rests on, in the table and in report.json.
    assert "passed (result) on invented inputs" in report.table()
    assert "int8: speed only: calibrated" in report.table() and "only: speed only" not in text
    row = next(v for v in data["variants"] if v["name"] == report.result)
    assert row["verification"]["invented"] is True


def test_with_data_int8_is_calibrated_on_one_part_and_gated_on_the_other(real, tmp_path,
                                                                          int8_anywhere):
    report = _run(real / "mlp.keras", tmp_path / "o", data=real / "data.npz",
                  precisions="int8")
    assert report.result == "int8", report.table()
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    info = data["verification"]
    assert info == {**info, "invented": False, "n_verification": 24, "n_calibration": 72,
                    "split_seed": 0, "labels": [data["settings"]["outputs"][0]["name"]]}
    row = next(v for v in data["variants"] if v["name"] == "int8")
    assert row["quantization"]["calibration"]["samples"] == 72
    gates = {c["gate"]: c for c in row["verification"]["outputs"]}
    assert gates["top-1 agreement"]["passed"] and gates["SQNR"]["value"] >= 20
    assert row["verification"]["scores"][0]["metric"] == "accuracy"
    assert "24 held-out example(s)" in report.verdict()
    text = (tmp_path / "o" / "report.md").read_text()
    assert "calibration never saw the verification examples" in text


def test_too_few_examples_make_int8_speed_only(real, tmp_path, int8_anywhere):
    x = np.load(real / "data.npz")["x"][:20]
    report = _run(real / "mlp.keras", tmp_path / "o", data=x)
    int8 = report.variant("int8")
    assert int8.status == "speed only"
    assert int8.reason.startswith("speed only: too few examples to hold out (20 given, "
                                  "32 needed)")
    assert report.variant("frozen").verified_on == 20  # fp32 is verified on all of them
    assert "passed on 20 example(s) of the examples given" in report.verdict()


def test_int8_alone_without_data_is_refused_naming_data(real, tmp_path):
    with pytest.raises(UsageError, match="give --data"):
        _run(real / "mlp.keras", tmp_path / "o", precisions="int8")
    assert not (tmp_path / "o").exists()


def test_bad_data_is_refused_in_one_line(real, tmp_path):
    with pytest.raises(LeangraphError, match="takes shape \\(N, 8\\)") as caught:
        _run(real / "mlp.keras", tmp_path / "o", data=np.zeros((40, 7), np.float32))
    assert "\n" not in str(caught.value)


def _two_heads(path):
    """Two inputs (token ids and floats), two outputs: a sigmoid and a regression head."""
    import keras

    keras.utils.set_random_seed(0)
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    extra = keras.Input((3,), name="extra")
    h = keras.layers.Flatten()(keras.layers.Embedding(50, 4)(tokens))
    h = keras.layers.Concatenate()([h, extra])
    h = keras.layers.Dense(16, activation="relu")(h)
    yes = keras.layers.Dense(1, activation="sigmoid", name="yes")(h)
    value = keras.layers.Dense(2, name="value")(h)
    keras.Model([tokens, extra], [yes, value]).save(path)


def test_a_two_input_two_output_model_gates_every_output_by_its_kind(tmp_path):
    _two_heads(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    arrays = {"tokens": rng.integers(0, 50, (40, 6)), "extra": rng.normal(size=(40, 3))}
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(arrays).batch(8)  # the API's Dataset form
    report = _run(tmp_path / "m.keras", tmp_path / "o", data=dataset, precisions="fp32")
    assert report.ok, report.table()
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    assert data["verification"]["source"] == "a tf.data.Dataset"
    assert data["verification"]["n_verification"] == 16
    kinds = data["settings"]["output_kinds"]
    assert sorted(kinds.values()) == ["binary", "regression"]
    frozen = next(v for v in data["variants"] if v["name"] == "frozen")
    assert sorted(c["name"] for c in frozen["verification"]["outputs"]) == sorted(kinds)
    lossy = next(v for v in data["variants"] if v["name"] == "quantize_weights")
    gates = {(c["name"], c["gate"]) for c in lossy["verification"]["outputs"]}
    yes = next(n for n, k in kinds.items() if k == "binary")
    value = next(n for n, k in kinds.items() if k == "regression")
    assert gates == {(yes, "class agreement"), (yes, "SQNR"), (value, "max relative error"),
                     (value, "SQNR")}


def _time_major(path):
    """A time-major graph: sequences (T, 1, 2) of any length T, their lengths, a state."""
    import tensorflow as tf

    from leangraph import graphs

    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        seq = tf.compat.v1.placeholder(tf.float32, [None, 1, 2], name="seq")
        lengths = tf.compat.v1.placeholder(tf.int32, [1], name="lengths")
        state = tf.compat.v1.placeholder(tf.float32, [1, 5], name="state")
        steps = tf.cast(lengths, tf.float32)[:, None]
        mean = tf.reduce_sum(seq, axis=0) / steps
        w = tf.constant(rng.normal(size=(2, 5)).astype(np.float32))
        tf.tanh(tf.matmul(mean, w) + state, name="next_state")
    graphs.save_graph(graph.as_graph_def(), path)


def test_a_time_major_graph_through_the_folder_form(tmp_path, int8_anywhere):
    _time_major(tmp_path / "rnn.pb")
    folder = tmp_path / "examples"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, steps in enumerate((3, 7, 5, 4)):
        np.savez(folder / f"{i}.npz", seq=rng.normal(size=(steps, 1, 2)),
                 lengths=np.array([steps]), state=rng.normal(size=(1, 5)))
    report = _run(tmp_path / "rnn.pb", tmp_path / "o", data=folder)
    assert report.ok, report.table()
    assert report.variant("frozen").verified_on == 4
    int8 = report.variant("int8")  # built from the files, but 4 are too few to hold out
    assert int8.status == "speed only", int8.reason
    assert int8.reason.startswith("speed only: too few examples to hold out (4 given, 32 needed)")
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    assert data["verification"]["source"].startswith("4 example file(s)")
    assert data["settings"]["output_kinds"] == {"next_state": "regression"}


def _time_major_files(folder, count, loud=()):
    """count example files of lengths 2..8; those in `loud` ten times louder."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        steps = 2 + i % 7
        seq = rng.normal(size=(steps, 1, 2)) * (10 if i in loud else 1)
        np.savez(folder / f"{i:02d}.npz", seq=seq, lengths=np.array([steps]),
                 state=rng.normal(size=(1, 5)))
    return folder


def test_int8_on_one_example_files_calibrates_on_one_part_and_is_gated_on_the_other(
        tmp_path, int8_anywhere, monkeypatch):
    """The folder form, time-major: int8 calibrates on the calibration split's files (each
    fed as is) and is gated on the held-out files, as for stacked data."""
    from leangraph import calibrate, freeze
    from leangraph.pipeline.data import split
    from leangraph.quantization import int8 as int8_module

    seen = []

    def recording(*args, **kwargs):
        seen.append(calibrate(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(int8_module, "calibrate", recording)
    _time_major(tmp_path / "rnn.pb")
    parts = split(40)
    folder = _time_major_files(tmp_path / "examples", 40)
    report = _run(tmp_path / "rnn.pb", tmp_path / "o", data=folder)
    int8 = report.variant("int8")
    assert int8.status == "passed" and int8.eligible, int8.reason
    assert int8.verified_on == len(parts.verification) == 16  # files, not time steps
    assert report.variant("frozen").verified_on == 16
    assert [l["name"] for l in int8.quantization["layers"] if l["precision"] == "int8"] \
        == ["MatMul"]
    gates = {c["gate"]: c for c in int8.verification["outputs"]}
    assert gates["SQNR"]["passed"] and gates["SQNR"]["value"] >= 20
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    info = data["verification"]
    assert info == {**info, "invented": False, "n_verification": 16, "n_calibration": 24,
                    "held_out": True, "split_seed": 0}
    # The ranges are those of the calibration split's files alone, run one by one.
    files = sorted(folder.iterdir())
    frozen = freeze(str(tmp_path / "rnn.pb"), batch_size=None)
    names = [t.name for t in frozen.inputs]

    def examples(indices):
        out = []
        for i in indices:
            with np.load(files[i]) as f:
                out.append({n: f[n].astype(np.int32 if n == "lengths" else np.float32)
                            for n in names})
        return out

    assert int8.quantization["calibration"]["samples"] == 24
    assert len(seen) == 1 and seen[0].samples == 24
    ranges = seen[0].ranges
    own = calibrate(frozen.graph_def, examples(parts.calibration)).ranges
    shared = sorted(set(ranges) & set(own))
    assert shared and all(ranges[k] == pytest.approx(own[k]) for k in shared)

    # One held-out file ten times louder than the rest: calibration never saw it, and the
    # gate on the held-out files catches what its range clips.
    loud = _time_major_files(tmp_path / "loud", 40, loud={int(parts.verification[3])})
    report = _run(tmp_path / "rnn.pb", tmp_path / "o2", data=loud)
    int8 = report.variant("int8")
    assert int8.status == "FAILED" and "max relative error" in int8.reason, int8.reason
    assert seen[-1].ranges == seen[0].ranges


def test_calibration_data_of_one_example_files(tmp_path, int8_anywhere):
    """--calibration-data in the folder form: int8 calibrates on its files alone, and every
    file of --data verifies."""
    _time_major(tmp_path / "rnn.pb")
    data = _time_major_files(tmp_path / "examples", 20)
    calibration = _time_major_files(tmp_path / "calibration", 10)
    report = _run(tmp_path / "rnn.pb", tmp_path / "o", data=data, calibration_data=calibration)
    int8 = report.variant("int8")
    assert int8.status == "passed", int8.reason
    assert int8.quantization["calibration"]["samples"] == 10
    assert int8.verified_on == report.variant("frozen").verified_on == 20
    info = json.loads((tmp_path / "o" / "report.json").read_text())["verification"]
    assert info["n_calibration"] == 10 and info["n_verification"] == 20
    assert info["calibration_source"].startswith("10 example file(s)")


def test_cli_output_kind_gate_and_labels_per_output(tmp_path, capsys):
    from leangraph.cli import main
    from leangraph.freeze import freeze

    _two_heads(tmp_path / "m.keras")
    outputs = [o.name for o in freeze(str(tmp_path / "m.keras")).outputs]
    yes, value = sorted(outputs, key=lambda n: "value" in n)
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, tokens=rng.integers(0, 50, (40, 6)), extra=rng.normal(size=(40, 3)),
             **{f"y_{yes}": rng.integers(0, 2, 40), f"y_{value}": rng.normal(size=(40, 2))})
    out = tmp_path / "o"
    code = main(["optimize", str(tmp_path / "m.keras"), "-o", str(out), "--data", str(data),
                 "--precision", "fp32", "--runs", "2", "--no-progress",
                 "--output-kind", f"{value}=multilabel", "--gate", f"{yes}=sqnr:300"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "passed on 16 held-out example(s)" in printed  # 40 examples: max(16, 40 / 4)
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["output_kinds"] == {yes: "binary", value: "multilabel"}
    lossy = next(v for v in report["variants"] if v["name"] == "quantize_weights")
    checks = {(c["name"], c["gate"]): c for c in lossy["verification"]["outputs"]}
    # --gate asked for 300 dB of SQNR on one output: no 8-bit variant gets that.
    assert checks[(yes, "SQNR")]["threshold"] == 300 and not checks[(yes, "SQNR")]["passed"]
    assert lossy["status"] == "FAILED" and (value, "label agreement") in checks
    frozen = next(v for v in report["variants"] if v["name"] == "frozen")
    metrics = {s["name"]: s["metric"] for s in frozen["verification"]["scores"]}
    assert metrics == {yes: "accuracy", value: "accuracy"}
    assert report["verification"]["labels"] == sorted([yes, value])
    assert "--data" in report["commands"][1]


def test_the_verdict_line_states_the_confirmed_speed_up():
    """The one-line verdict gives the speed-up the interleaved pairs measured against the
    frozen graph, beside the rounds' ratio to the reference, so a fast-looking round
    cannot stand alone as the claim."""
    from pathlib import Path

    from leangraph.pipeline.variants import Variant
    from leangraph.report import OptimizeReport

    int8 = Variant(name="int8", description="", kind="graph", precision="int8", speedup=41.98)
    settings = {"verification": {"invented": False, "held_out": True, "n_verification": 16,
                                 "source": "reviews.npy"},
                "confirmed": {"b": "int8", "speedup": 0.98, "speedup_ci95": [0.95, 1.0]}}
    report = OptimizeReport(model="m", outdir=Path("out"), settings=settings, environment={},
                            variants=[int8], result="int8")
    assert report.verdict() == ("result: int8 (int8, 41.98× the reference; 0.98× the frozen "
                                "graph [95 % CI 0.95, 1.00] in interleaved pairs), passed on "
                                "16 held-out example(s) of reviews.npy")
    settings["confirmed"] = None
    assert "interleaved" not in report.verdict()


def test_one_example_files_of_several_sizes_are_compared_position_by_position(tmp_path):
    """A fully convolutional model fed images of three sizes, one file each: every
    variant's outputs are compared row by row of their last axis (the classes), not
    refused as arrays that cannot be stacked."""
    import keras

    from leangraph.runner import join_examples

    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same",
                                                    activation="softmax")(inputs))
    model.save(tmp_path / "fcn.keras")
    folder = tmp_path / "examples"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k, (h, w) in enumerate([(20, 30), (16, 16), (24, 12)] * 3):
        np.save(folder / f"{k:02d}.npy", rng.uniform(0, 1, (1, h, w, 3)).astype("float32"))
    report = optimize(tmp_path / "fcn.keras", outdir=tmp_path / "out", data=folder, runs=3,
                      precisions="fp32", progress=False)
    assert report.result and report.variant(report.result).passed
    frozen = report.variant("frozen")
    assert frozen.verified_on == 9
    assert join_examples([np.zeros((1, 20, 30, 4)), np.zeros((1, 16, 16, 4))]).shape == \
        (20 * 30 + 16 * 16, 4)
    with pytest.raises(UsageError, match="disagree in shape beyond axis 0 and in their last"):
        join_examples([np.zeros((1, 2, 4)), np.zeros((1, 2, 5))])
