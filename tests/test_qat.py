"""Quantization-aware fine-tuning: fake quantization that matches the int8 graph, trained
through by the distillation trainer, and prune's int8-ready policy around it."""

import keras
import numpy as np
import pytest
from keras import layers

import leangraph
from leangraph.errors import QuantizeError
from leangraph.prune import int8 as A
from leangraph.prune import distill as D
from leangraph.quantization import qat
from leangraph.quantization.int8 import quantize, sqnr_db


# Trains a small Keras model and fine-tunes it through fake quantization.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images[..., None] / 16.0).astype("float32"), data.target.astype("int64")


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    i = keras.Input((8, 8, 1), name="image")
    h = layers.Conv2D(16, 3, padding="same", use_bias=False, name="c1")(i)
    h = layers.BatchNormalization(name="c1_bn")(h)
    h = layers.ReLU()(h)
    h = layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(h)
    h = layers.SeparableConv2D(24, 3, padding="same", activation="relu", name="sep")(h)
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(i, layers.Dense(10, name="logits")(h))


@pytest.fixture(scope="module")
def trained(digits):
    x, y = digits
    model = _model()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:1200], y[:1200], epochs=4, batch_size=32, verbose=0)
    return model


def test_fake_quantization_computes_what_the_int8_graph_computes(trained, digits):
    x, _ = digits
    from leangraph.quantization import cpu_has_vnni

    bits = 8 if cpu_has_vnni() else 7  # what quantize picks on this CPU
    fake = qat.FakeQuant(trained, x[:256], weight_bits=bits)
    assert [l.name for l in fake.layers] == ["c1", "dw", "sep", "logits"]
    lo, hi = fake.ranges["dw"]
    assert lo >= 0 and hi > 0  # a ReLU output: rounded unsigned
    frozen = leangraph.freeze(trained, batch_size=64)
    graph = leangraph.transform(frozen.graph_def, leangraph.recipe("deploy", frozen.graph_def))
    # The simulation rounds as the rewrite does; a bias correction and the depthwise
    # equalization are on top of that.
    int8 = quantize(graph, x[:256], min_sqnr_db=None, require_int8_cpu=False,
                    bias_correction=False, equalize=False).graph_def
    xb = x[1200:1264]
    got = leangraph.run(int8, {frozen.input_names[0]: xb})[0]
    floats = np.asarray(trained(xb, training=False))
    simulated = fake.predict(xb)
    if bits == 8:
        # The simulation computes what the int8 graph computes (to float rounding), far
        # closer than the float model does.
        assert sqnr_db(got, simulated) > 80 > sqnr_db(got, floats) + 20
    else:
        # Without VNNI oneDNN also halves signed-input weights itself, which no
        # simulation rounds alike; modelling the 7-bit kernels still brings it closer
        # (measured on an AVX2 EPYC: 36.2 dB against 32.8 with 8-bit kernels).
        plain = qat.FakeQuant(trained, x[:256]).predict(xb)
        assert sqnr_db(got, simulated) > sqnr_db(got, plain) + 2
    # Kernels are rounded per output channel to at most 255 levels.
    mapping = dict((id(v), np.asarray(value)) for v, value in fake.kernel_mapping())
    w = mapping[id(trained.get_layer("c1").kernel)]
    assert all(len(np.unique(w[..., k])) <= 255 for k in range(w.shape[-1]))
    assert not np.array_equal(w, trained.get_layer("c1").kernel.numpy())
    # Nothing of the model itself changed: the wrapping ends with the call.
    assert np.allclose(np.asarray(trained(xb, training=False)), floats)


def test_distillation_through_fake_quantization_trains_the_float_weights(trained, digits):
    x, y = digits
    student = keras.models.clone_model(trained)
    student.set_weights(trained.get_weights())
    before = [w.copy() for w in student.get_weights()]
    fake = qat.FakeQuant(student, x[:256])
    config = D.DistillConfig(epochs=2, learning_rate=1e-4, progress=False, patience=5)
    result = D.distill(student, trained, x[:1000], x[1000:1300], y[:1000], y[1000:1300], config,
                       fake_quant=fake)
    # Scored through the rounding, and the best epoch is kept.
    assert result.best_score >= result.initial_score
    assert len(result.history) == 2
    after = student.get_weights()
    changed = [not np.array_equal(a, b) for a, b in zip(before, after)]
    assert any(changed)
    # The kernels stay float (not snapped to the grid), and the batch norm's
    # moving statistics (non-trainable) moved with the training batches.
    kernel = student.get_layer("c1").kernel.numpy()
    assert not np.allclose(kernel, np.asarray(qat.round_kernel(kernel, (0, 1, 2))), atol=1e-7)
    bn_before = trained.get_layer("c1_bn").moving_mean.numpy()
    if result.best_score > result.initial_score:
        assert not np.array_equal(student.get_layer("c1_bn").moving_mean.numpy(), bn_before)


def test_fake_quantization_refuses_what_it_cannot_round():
    i = keras.Input((4,))
    no_contraction = keras.Model(i, layers.ReLU()(i))
    with pytest.raises(QuantizeError, match="no Conv2D, DepthwiseConv2D, SeparableConv2D or Dense"):
        qat.FakeQuant(no_contraction, np.ones((2, 4), np.float32))
    with pytest.raises(QuantizeError, match="needs calibration inputs"):
        qat.FakeQuant(_model(), np.zeros((0, 8, 8, 1), np.float32))
    with pytest.raises(QuantizeError, match="not finite"):
        qat.FakeQuant(_model(), np.full((2, 8, 8, 1), np.inf, np.float32))


@pytest.mark.parametrize("after_qat, kept", [(0.95, True), (0.0, False)])
def test_int8_ready_fine_tunes_only_over_budget_and_keeps_only_a_gain(trained, digits,
                                                                       monkeypatch, after_qat,
                                                                       kept):
    x, y = digits
    model = keras.models.clone_model(trained)
    model.set_weights(trained.get_weights())
    weights = [w.copy() for w in model.get_weights()]
    config = D.DistillConfig(epochs=1, progress=False)
    reference = D.predict(trained, x[1200:1400])
    # Within budget: nothing is fine-tuned.
    monkeypatch.setattr(A, "int8_score", lambda *a, **k: D.score(model, x[1200:1400], y[1200:1400]))
    info = A.int8_ready(model, trained, x[:600], x[1200:1400], y[:600], y[1200:1400], reference,
                        config, max_drop=0.5, qat_epochs=1)
    assert info["qat"] is None and "within the budget" in info["decision"]
    # Over budget: a post-training int8 score of 0 lost far more than 0.5 points.
    scores = iter([0.0, after_qat])
    monkeypatch.setattr(A, "int8_score", lambda *a, **k: next(scores))
    info = A.int8_ready(model, trained, x[:600], x[1200:1400], y[:600], y[1200:1400], reference,
                        config, max_drop=0.5, qat_epochs=1)
    assert info["qat"] is not None and info["qat"]["post_training_after"] == after_qat
    if not kept:  # the weights from before the fine-tune are back, exactly
        assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    assert ("did not help" in info["decision"]) != kept
    with pytest.raises(leangraph.LeangraphError, match="int8_max_drop must be >= 0"):
        A.int8_ready(model, trained, x[:60], x[60:90], y[:60], y[60:90], reference, config,
                     max_drop=-1)


def test_fake_quantization_refuses_other_weight_bits(trained, digits):
    with pytest.raises(leangraph.QuantizeError, match="weight_bits must be 8 or 7"):
        qat.FakeQuant(trained, digits[0][:8], weight_bits=6)
