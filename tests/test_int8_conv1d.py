"""int8 takes Keras 3's Conv1D: its kernel reaches the Conv2D through an ExpandDims of the
Const (and its bias through a Squeeze), which the rewrite, taking Const weights only, left
float; quantize folds such reshaped Consts first and drops the float kernels they read."""

import json

import numpy as np
import pytest


def _audio(path):
    import keras

    keras.utils.set_random_seed(0)
    wave = keras.Input((256, 1), name="waveform")
    h = keras.layers.Conv1D(8, 9, strides=2, activation="relu")(wave)
    h = keras.layers.MaxPooling1D(2)(h)
    h = keras.layers.Conv1D(16, 5, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    keras.Model(wave, keras.layers.Dense(4, activation="softmax", name="sound")(h)).save(path)


def _waves(n, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(256) / 8000
    f = rng.uniform(200, 1200, (n, 1))
    return (np.sin(2 * np.pi * f * t) * rng.uniform(0.2, 1, (n, 1)))[..., None].astype(np.float32)


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conv1d")
    _audio(folder / "audio.keras")
    np.savez(folder / "audio.npz", waveform=_waves(64, 1))
    return folder


def test_fold_constant_weights_makes_a_conv1d_kernel_a_const(audio):
    from leangraph import freeze
    from leangraph.quantization.prepare import fold_constant_weights

    graph = freeze(str(audio / "audio.keras")).graph_def
    by_name = {n.name: n for n in graph.node}
    convs = [n for n in graph.node if n.op == "Conv2D"]
    assert len(convs) == 2 and all(by_name[c.input[1].split(":")[0]].op == "ExpandDims"
                                   for c in convs)
    folded = fold_constant_weights(graph)
    after = {n.name: n for n in folded.node}
    for conv in convs:
        kernel = after[conv.input[1].split(":")[0]]
        assert kernel.op == "Const" and len(kernel.attr["value"].tensor.tensor_shape.dim) == 4
    assert len(folded.node) < len(graph.node)  # the 3-D kernels and their axes are gone
    assert fold_constant_weights(folded) is folded  # nothing left to fold


def test_int8_quantizes_every_conv1d(audio, int8_anywhere):
    from leangraph import freeze, quantize

    frozen = freeze(str(audio / "audio.keras"))
    result = quantize(frozen.graph_def, _waves(32, 2))
    convs = [l for l in result.layers if l.op == "Conv2D"]
    assert len(convs) == 2 and all(l.precision == "int8" for l in convs), result.layers
    assert result.int8_mac_share > 0.99 and result.output_sqnr_db >= 20
    assert result.graph_def.ByteSize() < frozen.graph_def.ByteSize()  # no float kernel left


def test_optimize_gates_int8_of_a_conv1d_model_on_held_out_examples(audio, tmp_path,
                                                                   int8_anywhere):
    from leangraph.optimize import optimize

    report = optimize(audio / "audio.keras", outdir=tmp_path / "o", runs=2, progress=False,
                      precisions="fp32,int8", data=audio / "audio.npz")
    assert report.variant("int8").status.startswith("passed"), report.variant("int8").reason
    row = next(v for v in json.loads((tmp_path / "o" / "report.json").read_text())["variants"]
               if v["name"] == "int8")
    assert row["quantization"]["int8_mac_share"] > 0.9
    assert all(c["passed"] for c in row["verification"]["outputs"])
