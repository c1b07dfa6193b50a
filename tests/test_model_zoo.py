"""Trained models of the zoo (bench/model_zoo.py) through `leangraph optimize --data`: a text
transformer over token ids and a U-Net with a per-pixel softmax, each with its own held-out
examples; every output is gated by its kind, int8 passes its held-out gate, a result is written."""

import importlib.util
import json
import pathlib

import pytest

ZOO = pathlib.Path(__file__).resolve().parent.parent / "bench" / "model_zoo.py"


def _zoo():
    spec = importlib.util.spec_from_file_location("model_zoo", ZOO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOSSY_GATE = {"classes": "top-1 agreement", "binary": "class agreement",
              "multilabel": "label agreement", "regression": "max relative error"}


@pytest.mark.slow
@pytest.mark.parametrize("name, epochs, kinds", [("transformer", 6, {"sentiment": "classes"}),
                                                 ("unet", 4, {"mask": "classes"})])
def test_a_zoo_model_is_optimized_on_its_data_with_every_output_gated_by_its_kind(
        name, epochs, kinds, tmp_path, int8_anywhere):
    from leangraph.cli import main

    model, data, trained = _zoo().build(name, tmp_path, examples=96, small=True, epochs=epochs)
    out = tmp_path / "out"
    code = main(["optimize", str(model), "--data", str(data), "-o", str(out), "--runs", "2",
                 "--no-progress", "--precision", "fp32,int8"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["result"] and (out / "optimized.pb").is_file()
    info = report["verification"]
    assert info["invented"] is False and info["n_verification"] == 24
    assert info["n_calibration"] == 72 and info["labels"] == sorted(kinds)
    assert report["settings"]["output_kinds"] == kinds
    for variant in report["variants"]:
        checks = variant["verification"]["outputs"]
        assert {c["name"] for c in checks} == set(kinds), variant["name"]
        assert all(c["kind"] == kinds[c["name"]] for c in checks)
        if variant["name"] in ("int8", "quantize_weights", "bf16"):
            gates = {(c["name"], c["gate"]) for c in checks}
            want = {(o, g) for o, k in kinds.items() for g in (LOSSY_GATE[k], "SQNR")}
            assert gates == want, variant["name"]
    int8 = next(v for v in report["variants"] if v["name"] == "int8")
    assert int8["status"].startswith("passed"), (int8["status"], int8.get("reason"), trained)
    assert all(c["passed"] for c in int8["verification"]["outputs"])
