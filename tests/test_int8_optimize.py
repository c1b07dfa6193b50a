"""The int8 variant of `leangraph optimize`: built, gated, reported; 7-bit weights without VNNI,
skipped without 8-bit kernels."""

import json

import numpy as np
import pytest

import graph_builders
from leangraph import hardware
from leangraph.optimize import optimize
from leangraph.pipeline.verify import MIN_SQNR_DB, gate_failure, output_sqnr


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("int8model") / "cnn.keras"
    graph_builders.keras_cnn_model().save(path)
    return path


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    """40 examples (16 held out, 24 calibrate): int8 is a candidate only with real data."""
    from leangraph.images import random_images

    path = tmp_path_factory.mktemp("int8data") / "data.npz"
    np.savez(path, x=random_images((1, 24, 24, 3), 40, "tf", seed=5))
    return path


def _variant(report, name):
    return next(v for v in report.variants if v.name == name)


def test_int8_variant_is_built_gated_and_reported(model_path, data_path, tmp_path,
                                                  int8_anywhere):
    report = optimize(model_path, outdir=tmp_path / "o", precisions="fp32,int8",
                      data=data_path, runs=4, progress=False)
    v = _variant(report, "int8")
    assert v.precision == "int8" and v.eligible
    assert v.status == "passed", v.reason
    assert v.latency is not None and v.sqnr_db is not None and v.sqnr_db > MIN_SQNR_DB
    layers = v.quantization["layers"]
    kept = {layer["name"]: layer for layer in layers if layer["precision"] != "int8"}
    # Only the layer that makes the softmax's logits stays float (8-bit logits flip near ties).
    assert [(k["op"], "makes the logits of output" in k["reason"]) for k in kept.values()] == [
        ("MatMul", True)], kept
    assert {layer["op"] for layer in layers} == {"Conv2D", "DepthwiseConv2dNative", "MatMul"}
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    row = next(r for r in data["variants"] if r["name"] == "int8")
    assert 0.99 < row["quantization"]["int8_mac_share"] < 1.0
    text = (tmp_path / "o" / "report.md").read_text()
    assert "oneDNN's int8 kernels" in text
    # The claimed speed-up is re-measured in interleaved pairs against the frozen graph
    # (unless the frozen graph itself won, which a loaded machine can make it on this
    # tiny model: then there is nothing to confirm).
    confirmed = data["settings"]["confirmed"]
    if data["result"] == "frozen":
        assert confirmed is None
        return
    assert confirmed["a"] == "frozen" and confirmed["b"] == data["result"]
    lo, hi = confirmed["speedup_ci95"]
    assert lo <= confirmed["speedup"] <= hi and confirmed["pairs"] >= 20
    # A tiny model runs inline in one session of each graph; the report says how many.
    assert confirmed["sessions"] == 1 and confirmed["between_sessions_sd"] is None
    assert any("interleaved pairs" in note for note in report.notes)


@pytest.mark.slow
def test_a_cpu_without_8bit_kernels_keeps_fp32(model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("LEANGRAPH_FAKE_NO_INT8", "1")
    report = optimize(model_path, outdir=tmp_path / "o", precisions="fp32,int8", images=2,
                      runs=2, progress=False)
    v = _variant(report, "int8")
    assert v.status == "skipped" and "neither VNNI" in v.reason and "AVX2" in v.reason
    assert report.result != "int8"
    assert (tmp_path / "o" / "optimized.pb").exists()


@pytest.mark.slow
@pytest.mark.skipif(not hardware.cpu_has_avx2(), reason="without AVX2 and VNNI no int8 variant is built")
def test_a_cpu_without_vnni_builds_int8_with_7bit_weights(model_path, data_path, tmp_path,
                                                          monkeypatch):
    monkeypatch.setenv("LEANGRAPH_FAKE_NO_VNNI", "1")
    report = optimize(model_path, outdir=tmp_path / "o", precisions="fp32,int8",
                      data=data_path, runs=2, progress=False)
    v = _variant(report, "int8")
    assert v.status == "passed", v.reason
    assert v.quantization["weight_bits"] == 7 and "7 bits" in v.description
    text = (tmp_path / "o" / "report.md").read_text()
    assert "any x86-64 CPU with AVX2 or VNNI" in text and "needs a CPU with VNNI" not in text


@pytest.mark.slow
def test_int8_weight_bits_7_makes_a_graph_for_cpus_without_vnni(model_path, data_path, tmp_path,
                                                                int8_anywhere):
    from leangraph.cli import main

    out = tmp_path / "o"
    code = main(["optimize", str(model_path), "-o", str(out), "--precision", "fp32,int8",
                 "--data", str(data_path), "--runs", "2", "--no-progress",
                 "--int8-weight-bits", "7"])
    assert code == 0
    data = json.loads((out / "report.json").read_text())
    row = next(r for r in data["variants"] if r["name"] == "int8")
    assert row["status"] == "passed" and row["quantization"]["weight_bits"] == 7
    assert "any x86-64 CPU with AVX2 or VNNI" in (out / "report.md").read_text()


def test_a_bad_int8_weight_bits_is_refused_before_any_work(model_path, tmp_path):
    from leangraph.errors import UsageError

    with pytest.raises(UsageError, match="--int8-weight-bits: weight_bits must be 8 or 7, got 6"):
        optimize(model_path, outdir=tmp_path / "o", precisions="fp32,int8", images=2,
                 runs=2, progress=False, int8_weight_bits=6)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_calibration_dir_is_used(model_path, tmp_path, int8_anywhere):
    from PIL import Image

    folder = tmp_path / "calib"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    report = optimize(model_path, outdir=tmp_path / "o", precisions="fp32,int8", images=2,
                      runs=2, progress=False, calibration_dir=folder)
    v = _variant(report, "int8")
    assert "calibration inputs" in v.description
    assert v.quantization["calibration"]["samples"] == 3
    assert any("int8 calibrated on 3 example(s) (3 image(s) from" in note
               for note in report.notes)
    # Verified on invented inputs only: timed, not a candidate.
    assert v.status == "speed only" and "invented inputs" in v.reason


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_a_bad_calibration_dir_is_named_as_such(model_path, tmp_path, make):
    from leangraph.errors import LeangraphError

    folder = tmp_path / "calib"
    if make == "empty":
        folder.mkdir()
    with pytest.raises(LeangraphError, match="--calibration-dir:? .*calib"):
        optimize(model_path, outdir=tmp_path / "o", precisions="fp32,int8", images=2,
                 runs=2, progress=False, calibration_dir=folder)
    assert not (tmp_path / "o").exists()


def test_sqnr_gate_definition():
    ref = [np.array([[1.0, 2.0, 3.0]])]
    assert output_sqnr(ref, ref) == float("inf")
    noisy = [ref[0] + 0.01]
    db = output_sqnr(noisy, ref)
    assert db == pytest.approx(10 * np.log10(14.0 / (3 * 1e-4)))
    assert gate_failure("sqnr", "int8", 0.0, None, 1e-4, db) is None
    assert "below" in gate_failure("sqnr", "int8", 0.0, None, 1e-4, 10.0)
    assert "NaN" in gate_failure("sqnr", "int8", float("inf"), None, 1e-4, 50.0)


@pytest.mark.slow
def test_a_near_tie_reference_gates_low_precision_on_sqnr(tmp_path, int8_anywhere):
    import keras

    # Untrained and nearly uniform softmax: top-1 flips on any rounding.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(50, kernel_initializer=keras.initializers.RandomNormal(stddev=1e-4))(x)
    outputs = keras.layers.Softmax()(x)
    path = tmp_path / "tie.keras"
    keras.Model(inputs, outputs).save(path)
    report = optimize(path, outdir=tmp_path / "o", precisions="fp32,int8", images=4, runs=2,
                      progress=False)
    v = _variant(report, "int8")
    assert v.gate == "sqnr"
    assert any("SQNR" in note and "instead" in note for note in report.notes)
    assert "output SQNR against the reference" in (tmp_path / "o" / "report.md").read_text()
