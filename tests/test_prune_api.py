"""leangraph.prune and `leangraph prune` on a small model trained on scikit-learn's digits."""

import json
import re

import keras
import numpy as np
import pytest
from keras import layers

import leangraph
from leangraph.cli import main
from leangraph.prune import distill as D
from leangraph.prune import groups as G


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images[..., None] / 16.0).astype("float32"), data.target.astype("int64")


@pytest.fixture(scope="module")
def teacher(digits):
    x, y = digits
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 1), name="image")
    h = layers.Conv2D(32, 3, padding="same", use_bias=False, name="c1")(i)
    h = layers.BatchNormalization(name="c1_bn")(h)
    h = layers.ReLU()(h)
    h = layers.Conv2D(64, 3, padding="same", use_bias=False, name="c2")(h)
    h = layers.BatchNormalization(name="c2_bn")(h)
    h = layers.ReLU()(h)
    h = layers.MaxPooling2D()(h)
    h = layers.Conv2D(64, 3, padding="same", activation="relu", name="c3")(h)
    h = layers.GlobalAveragePooling2D()(h)
    model = keras.Model(i, layers.Dense(10, activation="softmax", name="probs")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def teacher_file(teacher, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "digits.keras"
    teacher.save(path)
    return path


@pytest.fixture(scope="module")
def data_file(digits, tmp_path_factory):
    x, y = digits
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=x[:600], y=y[:600])
    return path


@pytest.mark.slow
def test_distillation_improves_over_no_fine_tuning(teacher, digits):
    x, y = digits
    # without the batch-norm refresh, so that the gain is distillation's alone
    pruned, report = leangraph.prune(teacher, x, y, target_macs=0.25, epochs=4, progress=False,
                                     recalibrate=False)
    assert report.macs_ratio <= 0.25
    assert report.accuracy_before > 0.8
    # cutting three quarters of the MACs costs a lot before fine-tuning ...
    assert report.accuracy_unfinetuned < report.accuracy_before - 0.2
    # ... and distillation wins most of it back
    assert report.accuracy_after > report.accuracy_unfinetuned + 0.2
    assert report.n_held_out == round(0.15 * len(x))
    assert pruned.count_params() < teacher.count_params()
    assert abs(D.score(pruned, x, y) - report.accuracy_after) < 0.1


@pytest.mark.slow
def test_distillation_without_labels_learns_from_the_teacher(teacher, digits):
    x, _ = digits
    _, report = leangraph.prune(teacher, x[:800], None, target_macs=0.3, epochs=3, alpha=0.5,
                                criterion="fpgm", progress=False, recalibrate=False)
    assert not report.labels
    assert report.accuracy_before == 1.0  # agreement of the original with itself
    assert report.accuracy_after > report.accuracy_unfinetuned + 0.1


@pytest.mark.parametrize("target", [0.3, 0.85])
def test_batch_norm_refresh_never_hurts_before_fine_tuning(teacher, digits, target):
    x, y = digits
    stale, fresh = [leangraph.prune(teacher, x, y, target_macs=target, epochs=0, progress=False,
                                    recalibrate=flag)[1].accuracy_unfinetuned
                    for flag in (False, True)]
    assert fresh >= stale
    if target == 0.85:  # a light cut: fresh statistics are clearly better here
        assert fresh > stale + 0.02


def test_recalibration_averages_batch_statistics_and_touches_nothing_else():
    i = keras.Input((4,))
    model = keras.Model(i, layers.Dense(2, name="d")(layers.BatchNormalization(name="bn")(i)))
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(128, 4)).astype("float32")
    kernel = model.get_layer("d").kernel.numpy().copy()
    gamma = model.get_layer("bn").gamma.numpy().copy()
    assert D.recalibrate_batch_norms(model, x, batches=2, batch_size=64) == 2
    np.testing.assert_allclose(model.get_layer("bn").moving_mean.numpy(), x.mean(axis=0),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model.get_layer("d").kernel.numpy(), kernel)
    np.testing.assert_array_equal(model.get_layer("bn").gamma.numpy(), gamma)
    assert model.get_layer("bn").momentum == 0.99


def test_time_budget_stops_fine_tuning(teacher, digits):
    x, y = digits
    _, report = leangraph.prune(teacher, x, y, target_macs=0.5, epochs=50, seconds=0.5,
                                progress=False)
    assert "time budget" in report.distill["stopped"]
    assert report.distill["epochs"] < 50


def test_report_lists_unsupported_layers(digits):
    x, y = digits
    i = keras.Input((8, 8, 1))
    a = layers.Conv2D(16, 3, padding="same", name="a")(i)
    r = layers.Reshape((16, 8, 8), name="reshape")(a)  # moves channels
    b = layers.Conv2D(16, 3, padding="same", activation="relu", name="b")(r)
    model = keras.Model(i, layers.Dense(10, activation="softmax", name="head")(
        layers.GlobalAveragePooling2D()(b)))
    pruned, report = leangraph.prune(model, x[:200], y[:200], target_macs=0.8, epochs=0,
                                     progress=False)
    assert pruned.get_layer("a").filters == 16
    assert pruned.get_layer("b").filters < 16
    assert [u[0] for u in report.unsupported] == ["reshape"]
    assert "`reshape` (Reshape)" in report.to_markdown()


@pytest.mark.parametrize("kwargs, message", [
    ({"target_macs": 1.5}, "target_macs must be in (0, 1)"),
    ({"target_macs": 0.0}, "target_macs must be in (0, 1)"),
    ({"max_accuracy_drop": -1.0}, "max_accuracy_drop must be in"),
    ({}, "exactly one of"),
    ({"target_macs": 0.5, "criterion": "l3"}, "unknown criterion"),
    ({"target_macs": 0.5, "temperature": 0.0}, "temperature must be > 0"),
    ({"target_macs": 0.001}, "out of reach"),
])
def test_bad_arguments(teacher, digits, kwargs, message):
    x, y = digits
    with pytest.raises(leangraph.PruneError, match=re.escape(message)):
        leangraph.prune(teacher, x[:100], y[:100], epochs=0, progress=False, **kwargs)


def test_bad_data(teacher, digits):
    x, y = digits
    with pytest.raises(leangraph.PruneError, match=r"shape \(8, 8, 3\) but the model takes"):
        leangraph.prune(teacher, np.repeat(x[:50], 3, axis=-1), y[:50], target_macs=0.5)
    with pytest.raises(leangraph.PruneError, match="span classes 0..11 but the model outputs 10"):
        leangraph.prune(teacher, x[:50], np.arange(50) % 12, target_macs=0.5)
    with pytest.raises(leangraph.PruneError, match=r"labels y hold 49 examples but x holds 50"):
        leangraph.prune(teacher, x[:50], y[:49], target_macs=0.5)
    with pytest.raises(leangraph.PruneError, match=r"labels y have shape \(50, 3\); expected"):
        leangraph.prune(teacher, x[:50], np.zeros((50, 3)), target_macs=0.5)


def test_nothing_prunable_is_an_error(digits):
    x, y = digits
    i = keras.Input((8, 8, 1))
    out = layers.Dense(10, activation="softmax")(layers.Flatten()(i))
    with pytest.raises(leangraph.PruneError, match="nothing to prune"):
        leangraph.prune(keras.Model(i, out), x[:50], y[:50], target_macs=0.5)


def test_cli_writes_model_and_report(teacher_file, data_file, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["prune", str(teacher_file), "--data", str(data_file), "--target-macs", "0.5",
               "--epochs", "2", "-o", str(out)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["pruned.keras", "report.json", "report.md"]
    report = json.loads((out / "report.json").read_text())
    assert report["macs_ratio"] <= 0.5
    assert report["n_held_out"] == 90
    model = keras.models.load_model(out / "pruned.keras")
    assert G.ChannelGraph(model).macs() == report["macs_after"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    assert "MACs" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--target-macs", "1.5"], "target_macs must be in (0, 1)"),
    (["--target-macs", "0.5", "--bad-y"], "span classes"),
    (["--target-macs", "0.5", "--bad-x"], "--data: input 'image' takes shape (N, 8, 8, 1)"),
])
def test_cli_bad_input_writes_nothing(teacher_file, digits, tmp_path, capsys, args, message):
    x, y = digits
    x, y = x[:100], y[:100]
    if "--bad-y" in args:
        y = y + 5
    if "--bad-x" in args:
        x = x[:, :4]
    data = tmp_path / "d.npz"
    np.savez(data, x=x, y=y)
    args = [a for a in args if not a.startswith("--bad")]
    out = tmp_path / "out"
    rc = main(["prune", str(teacher_file), "--data", str(data), "-o", str(out), *args])
    err = capsys.readouterr().err
    assert rc == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


@pytest.mark.slow
@pytest.mark.parametrize("budget", [0.0, 5.0])
def test_search_never_returns_a_candidate_over_its_budget(teacher, digits, budget):
    x, y = digits
    pruned, report = leangraph.prune(teacher, x[:600], y[:600], max_accuracy_drop=budget,
                                     n_trials=3, trial_epochs=1, epochs=1, progress=False)
    trials = report.search["trials"]
    assert len(trials) == 3
    for t in trials:
        assert t["feasible"] == (t["accuracy_drop"] <= budget)
        assert t["latency_ms"] > 0 and 0 < t["macs_ratio"] <= 1
    best = report.search["best"]
    assert best["accuracy_drop"] <= budget
    assert report.accuracy_drop <= budget + 1e-9
    if best["number"] >= 0:
        assert best in trials
    else:
        assert report.macs_ratio == 1.0  # nothing within budget: the model stays whole


@pytest.mark.slow
def test_cli_search_writes_trials_and_plot(teacher_file, data_file, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["prune", str(teacher_file), "--data", str(data_file), "--max-accuracy-drop", "5",
               "--trials", "2", "--epochs", "1", "-o", str(out)])
    assert rc == 0
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((out / "report.json").read_text())
    assert len(report["search"]["trials"]) == 2
    assert report["accuracy_drop"] <= 5
    assert capsys.readouterr().out.count("trial ") == 2


def test_cli_takes_an_image_folder(teacher_file, digits, tmp_path):
    from PIL import Image

    x, _ = digits
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(60):
        Image.fromarray((x[k, ..., 0] * 255).astype("uint8")).save(folder / f"{k}.png")
    out = tmp_path / "out"
    rc = main(["prune", str(teacher_file), "--data", str(folder), "--target-macs", "0.5",
               "--epochs", "1", "-o", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert not report["labels"]
    assert report["n_train"] + report["n_held_out"] == 60


@pytest.mark.slow
def test_optimize_stacks_its_steps_on_the_pruned_model(teacher_file, data_file, tmp_path):
    out = tmp_path / "pruned"
    assert main(["prune", str(teacher_file), "--data", str(data_file), "--target-macs", "0.5",
                 "--epochs", "1", "-o", str(out)]) == 0
    recorded = json.loads((out / "report.json").read_text())
    assert recorded["kind"] == "leangraph prune"
    assert recorded["source"] == str(teacher_file.resolve())
    # optimize finds the original through the prune report and times each step from it.
    opt = tmp_path / "opt"
    assert main(["optimize", str(out / "pruned.keras"), "--precision", "fp32,int8",
                 "--data", str(data_file), "--runs", "6", "--no-progress", "-o", str(opt)]) == 0
    report = json.loads((opt / "report.json").read_text())
    stacked = report["settings"]["stacked"]
    steps = stacked["steps"]
    names = [(s["a"], s["b"]) for s in steps]
    assert names[0] == ("baseline", "frozen")
    assert all(a[1] == b[0] for a, b in zip(names, names[1:]))  # a chain
    assert names[-1][1] == report["result"]
    assert stacked["product"] == pytest.approx(np.prod([s["speedup"] for s in steps]))
    assert stacked["end_to_end"]["a"] == "baseline" and stacked["end_to_end"]["b"] == report["result"]
    for s in steps + [stacked["end_to_end"]]:
        lo, hi = s["speedup_ci95"]
        assert 0 < lo <= s["speedup"] <= hi and s["pairs"] >= 20
    assert "step by step from the baseline" in (opt / "report.md").read_text()
    # An explicit baseline that is another model is said to be one, not timed.
    other = tmp_path / "other.keras"
    keras.Sequential([keras.Input((4,)), layers.Dense(2)]).save(other)
    opt2 = tmp_path / "opt2"
    assert main(["optimize", str(out / "pruned.keras"), "--baseline", str(other), "--precision",
                 "fp32", "--images", "4", "--runs", "4", "--no-progress", "-o", str(opt2)]) == 0
    report2 = json.loads((opt2 / "report.json").read_text())
    assert report2["settings"]["stacked"] is None
    assert any("are not the model's" in n for n in report2["notes"])


def test_cli_int8_ready_reports_post_training_int8(teacher_file, data_file, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["prune", str(teacher_file), "--data", str(data_file), "--target-macs", "0.5",
               "--epochs", "1", "--int8", "--int8-max-drop", "100", "-o", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    int8 = report["int8"]
    assert 0 <= int8["post_training"] <= 1 and int8["qat"] is None
    assert int8["float"] == pytest.approx(report["accuracy_after"])
    assert "within the budget" in int8["decision"] and "int8:" in capsys.readouterr().out
    assert "int8 (post-training, held out)" in (out / "report.md").read_text()


def _head_model(digits, head, loss, targets):
    """The digits convnet with another head, trained briefly on `targets`."""
    x, _ = digits
    keras.utils.set_random_seed(1)
    i = keras.Input((8, 8, 1))
    h = layers.Conv2D(32, 3, padding="same", activation="relu", name="h1")(i)
    h = layers.Conv2D(32, 3, padding="same", activation="relu", name="h2")(h)
    h = layers.GlobalAveragePooling2D()(h)
    model = keras.Model(i, head(h))
    model.compile(keras.optimizers.Adam(3e-3), loss)
    model.fit(x[:1200], targets[:1200], epochs=30, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def heads(digits):
    x, y = digits
    odd = (y % 2).astype("float32")[:, None]
    several = np.stack([y % 2, (y >= 5), np.isin(y, (2, 3, 5, 7))], axis=1).astype("float32")
    value = (y.astype("float32") / 9.0)[:, None]
    return {
        "binary": (_head_model(digits, layers.Dense(1, activation="sigmoid"),
                               "binary_crossentropy", odd), odd),
        "multilabel": (_head_model(digits, layers.Dense(3, activation="sigmoid"),
                                   "binary_crossentropy", several), several),
        "regression": (_head_model(digits, layers.Dense(1), "mse", value), value),
    }


@pytest.mark.parametrize("kind,metric", [("binary", "accuracy"), ("multilabel", "accuracy"),
                                         ("regression", "MAE")])
def test_each_output_kind_is_scored_and_distilled_by_its_kind(heads, digits, kind, metric):
    """A sigmoid head is scored by its thresholded classes and a linear one by MAE (argmax
    over one sigmoid column is always class 0), and fine-tuned by its own loss."""
    model, targets = heads[kind]
    x, _ = digits
    pruned, report = leangraph.prune(model, x[:1200], targets[:1200], target_macs=0.4,
                                     epochs=4, progress=False, seed=0)
    assert report.metric == metric
    assert report.distill["epochs"] > 0
    assert report.accuracy_after >= report.accuracy_unfinetuned  # the best weights are kept
    if kind == "regression":
        assert report.accuracy_before < 0  # -MAE: larger is better
        assert report.drop_unit == "% MAE"
        assert "| held-out MAE | MAE " in report.to_markdown()
    else:
        assert 0.75 < report.accuracy_before <= 1.0  # the teacher predicts its labels
        assert report.drop_unit == "points"


def test_a_regression_output_without_labels_is_held_to_sqnr(heads, digits):
    model, _ = heads["regression"]
    x, _ = digits
    _, report = leangraph.prune(model, x[:600], target_macs=0.6, epochs=2, progress=False)
    assert report.metric == "SQNR against the original"
    assert report.accuracy_before == 200.0  # the original against itself: exact
    assert report.drop_unit == "dB"


def test_output_kind_overrides_and_bad_labels_name_the_kind(heads, digits):
    model, targets = heads["binary"]
    x, _ = digits
    with pytest.raises(leangraph.PruneError, match="labels y of a binary output must be 0 or 1"):
        leangraph.prune(model, x[:100], targets[:100] * 2, target_macs=0.5, progress=False)
    model, targets = heads["regression"]
    with pytest.raises(leangraph.PruneError, match="unknown output kind 'ordinal'"):
        leangraph.prune(model, x[:100], targets[:100], target_macs=0.5, output_kind="ordinal")


@pytest.mark.parametrize("kind,width", [("binary", 1), ("multilabel", 3), ("regression", 1),
                                        ("classes", 4)])
def test_the_distillation_loss_of_each_kind_pulls_the_student_to_the_teacher(kind, width):
    """The loss is smallest where the student equals the teacher and its gradient is not
    zero elsewhere (a softmax over one sigmoid column gives 0 for any student)."""
    import tensorflow as tf

    from leangraph.prune.scoring import Scoring

    rng = np.random.default_rng(0)
    probabilities = kind in ("binary", "multilabel", "classes")
    raw = rng.uniform(0.1, 0.9, (16, width)).astype("float32")
    if kind == "classes":
        raw = raw / raw.sum(-1, keepdims=True)
    teacher = tf.constant(raw)
    scoring = Scoring(kind, labels=False, probabilities=probabilities)
    dummy = scoring.dummy_labels(16, width)
    same = float(scoring.loss(teacher, teacher, dummy, 4.0, 1.0))
    other = tf.Variable(np.roll(raw, 1, axis=0))
    with tf.GradientTape() as tape:
        apart = scoring.loss(other, teacher, dummy, 4.0, 1.0)
    grad = tape.gradient(apart, other)
    assert float(apart) > same + 1e-4
    assert float(tf.reduce_max(tf.abs(grad))) > 1e-4


def test_cli_prune_takes_the_output_kind(heads, digits, tmp_path, capsys):
    model, targets = heads["regression"]
    x, _ = digits
    path = tmp_path / "reg.keras"
    model.save(path)
    data = tmp_path / "data.npz"
    np.savez(data, x=x[:300], y=targets[:300])
    rc = main(["prune", str(path), "--data", str(data), "--target-macs", "0.6", "--epochs", "1",
               "--max-mae-increase", "0.5", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert re.search(r"held-out MAE MAE [0-9.]+ -> MAE [0-9.]+ \([+-][0-9.]+ % MAE\)", out)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["metric"] == "MAE" and report["drop_unit"] == "% MAE"
    rc = main(["prune", str(path), "--data", str(data), "--target-macs", "0.6",
               "--output-kind", "nope=binary", "-o", str(tmp_path / "bad")])
    assert rc != 0
    assert "--output-kind: no output 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
