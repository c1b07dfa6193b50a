"""int8 and bf16 in optimize keep the layer that makes an output's logits float: an 8-bit
unit rounds its result to 256 levels of its calibrated range, bf16 to 8 significant bits,
and before a softmax that flips classes nearly tied (a segmentation's edge pixels)."""

import json

import numpy as np
import pytest

N = 96


def _segmenter(path):
    """Per-pixel classes from a 1x1 conv head whose logits span [-10, 10], while classes 0
    and 1 differ by m, 0.02 <= |m| <= 0.1, on most pixels: the head's 8-bit output (step
    about 0.08) ties or flips them, its float output does not."""
    import keras

    image = keras.Input((4, 4, 4), name="image")
    hidden = keras.layers.Conv2D(4, 1, activation="relu", name="hidden")(image)
    mask = keras.layers.Conv2D(3, 1, activation="softmax", name="mask")(hidden)
    model = keras.Model(image, mask)
    model.get_layer("hidden").set_weights([np.eye(4, dtype=np.float32)[None, None],
                                           np.zeros(4, np.float32)])
    head = np.zeros((4, 3), np.float32)
    head[0, 0] = head[3, 0] = 1.0  # l0 = base + max(-m, 0)
    head[0, 1] = head[1, 1] = 1.0  # l1 = base + max(m, 0)
    head[2, 2] = 20.0  # l2 = 20 s - 10: class 2 where s = 1
    model.get_layer("mask").set_weights([head[None, None], np.array([0, 0, -10], np.float32)])
    model.save(path)


def _pixels(n, rng):
    m = rng.choice([-1, 1], (n, 4, 4)) * rng.uniform(0.02, 0.1, (n, 4, 4))
    base = rng.uniform(0.5, 1.0, (n, 4, 4))
    s = (rng.random((n, 4, 4)) < 0.1).astype(np.float64)
    return np.stack([base, np.maximum(m, 0), s, np.maximum(-m, 0)], -1).astype(np.float32)


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    folder = tmp_path_factory.mktemp("heads")
    _segmenter(folder / "seg.keras")
    np.savez(folder / "seg.npz", image=_pixels(N, np.random.default_rng(0)))
    return folder


def test_output_heads_are_the_layers_before_a_softmax_or_sigmoid(segmenter):
    from leangraph import freeze
    from leangraph.quantization.prepare import output_heads

    frozen = freeze(str(segmenter / "seg.keras"))
    heads = output_heads(frozen.graph_def, [o.name for o in frozen.outputs])
    assert len(heads) == 1
    (conv, (output, activation)), = heads.items()
    assert "mask" in conv and "hidden" not in conv and output == frozen.outputs[0].name
    assert activation == "Softmax"


def test_8_bit_logits_flip_near_ties_and_float_ones_do_not(segmenter, int8_anywhere):
    from leangraph import freeze, quantize, runner
    from leangraph.metrics import agreement as agree

    frozen = freeze(str(segmenter / "seg.keras"))
    name, out = frozen.inputs[0].name, frozen.outputs[0].name
    x = np.load(segmenter / "seg.npz")["image"]
    held, calibration = x[:24], x[24:]

    def agreement(graph):
        want = [runner.run(frozen.graph_def, {name: e[None]}, [out])[0] for e in held]
        got = [runner.run(graph, {name: e[None]}, [out])[0] for e in held]
        return agree(np.concatenate(got), np.concatenate(want), "classes")

    plain = quantize(frozen.graph_def, calibration, min_sqnr_db=None)
    heads = quantize(frozen.graph_def, calibration, min_sqnr_db=None, float_heads=True)
    kept = {l.name: l.reason for l in heads.fallback_layers}
    assert len(kept) == 1 and "makes the logits of output" in next(iter(kept.values()))
    assert not plain.fallback_layers and len(heads.int8_layers) == 1
    assert agreement(plain.graph_def) < 0.97 and agreement(heads.graph_def) == 1.0


def test_int8_passes_its_held_out_gate_on_a_segmentation_output(segmenter, tmp_path,
                                                                int8_anywhere):
    from leangraph.optimize import optimize

    report = optimize(segmenter / "seg.keras", outdir=tmp_path / "o", runs=2, progress=False,
                      precisions="fp32,int8", data=segmenter / "seg.npz")
    int8 = report.variant("int8")
    assert int8.status.startswith("passed"), int8.reason
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    row = next(v for v in data["variants"] if v["name"] == "int8")
    checks = {c["gate"]: c for c in row["verification"]["outputs"]}
    assert checks["top-1 agreement"]["passed"] and checks["top-1 agreement"]["value"] >= 0.99
    assert "makes the logits of output" in row["description"]


def test_an_lstm_whose_only_layer_outside_its_loop_is_the_head_skips_int8_saying_why(
        tmp_path, int8_anywhere):
    """The LSTM's matmuls are in its while loop (left float) and its head makes the logits:
    no layer is left for int8, which is skipped in one line, not passed as a float graph."""
    import keras

    from leangraph.optimize import optimize

    keras.utils.set_random_seed(0)
    rows = keras.Input((6, 4), name="rows")
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.LSTM(8)(rows))
    keras.Model(rows, out).save(tmp_path / "lstm.keras")
    x = np.random.default_rng(0).normal(size=(40, 6, 4)).astype(np.float32)
    report = optimize(tmp_path / "lstm.keras", outdir=tmp_path / "o", runs=2, progress=False,
                      precisions="fp32,int8", data=x)
    int8 = report.variant("int8")
    assert int8.status == "skipped", (int8.status, int8.reason)
    assert int8.reason.startswith("no layer is left in int8: ") and "\n" not in int8.reason
    assert "layers (inside the while loop" in int8.reason
    assert "makes the logits of output" in int8.reason and int8.reason.endswith("fp32 is kept")
    assert report.result != "int8"


def test_bf16_keeps_the_logits_fp32_and_passes_where_bf16_logits_flip(tmp_path, monkeypatch):
    """Logits near 7 (bf16's step there: 1/32) whose two classes differ by 0.01 to 0.03:
    bf16 logits tie or flip them; the head in fp32 reads the same bf16 hidden values and
    keeps the difference."""
    import keras

    from leangraph import hardware
    from leangraph.optimize import optimize

    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: True)
    x = keras.Input((3,), name="x")
    hidden = keras.layers.Dense(3, activation="relu", name="hidden")(x)
    out = keras.layers.Dense(2, activation="softmax", name="out")(hidden)
    model = keras.Model(x, out)
    model.get_layer("hidden").set_weights([np.eye(3, dtype=np.float32), np.zeros(3, np.float32)])
    head = np.array([[1, 1], [0, 1], [1, 0]], np.float32)  # l0 = b + max(-m, 0), l1 = b + max(m, 0)
    model.get_layer("out").set_weights([head, np.zeros(2, np.float32)])
    model.save(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    m = rng.choice([-1, 1], 64) * rng.uniform(0.01, 0.03, 64)
    data = np.stack([rng.uniform(6, 8, 64), np.maximum(m, 0), np.maximum(-m, 0)], 1)
    report = optimize(tmp_path / "m.keras", outdir=tmp_path / "o", runs=2, progress=False,
                      precisions="fp32,bf16", data=data.astype(np.float32))
    bf16 = report.variant("bf16")
    assert bf16.status.startswith("passed"), bf16.reason
    assert "makes an output's logits" in bf16.description


def test_a_regression_head_is_kept_float_so_its_output_is_not_rounded_to_8_bits(
        tmp_path, int8_anywhere):
    """value = h0 - h1 + 40 h3 (h = relu(x), h3 = 1 on a tenth of the examples): the output
    spans [-0.5, 40], and rounded to 8 bits over that range it is coarse where most values
    lie within 0.5 of 0; the head float, only its input's 8-bit steps (1/255) are left."""
    import keras

    from leangraph import freeze, quantize, runner
    from leangraph.metrics import relative_error
    from leangraph.quantization.prepare import output_heads

    x = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(4, activation="relu", name="hidden")(x)
    value = keras.layers.Dense(1, name="value")(hidden)
    model = keras.Model(x, value)
    model.get_layer("hidden").set_weights([np.eye(4, dtype=np.float32), np.zeros(4, np.float32)])
    model.get_layer("value").set_weights([np.array([[1], [-1], [0], [40]], np.float32),
                                          np.zeros(1, np.float32)])
    model.save(tmp_path / "r.keras")
    frozen = freeze(str(tmp_path / "r.keras"))
    (head, (output, activation)), = output_heads(
        frozen.graph_def, [o.name for o in frozen.outputs]).items()
    assert "value" in head and activation is None
    rng = np.random.default_rng(0)
    samples = np.zeros((64, 4), np.float32)
    samples[:, :2] = rng.uniform(0, 0.5, (64, 2))
    samples[::10, 3] = 1.0
    result = quantize(frozen.graph_def, samples, min_sqnr_db=None, float_heads=True)
    kept = {l.name: l.reason for l in result.fallback_layers}
    assert list(kept) == [head] and "itself: in 8 bits it would be rounded" in kept[head]
    plain = quantize(frozen.graph_def, samples, min_sqnr_db=None)
    assert not plain.fallback_layers
    quiet = samples[samples[:, 3] == 0][:24]
    name, out = frozen.inputs[0].name, frozen.outputs[0].name

    def error(graph):
        want = [runner.run(frozen.graph_def, {name: e[None]}, [out])[0] for e in quiet]
        got = [runner.run(graph, {name: e[None]}, [out])[0] for e in quiet]
        return relative_error(np.concatenate(got), np.concatenate(want))

    assert error(result.graph_def) < 0.02 < 0.04 < error(plain.graph_def)  # 0.008, 0.055
