"""leangraph.freeze(): every kind of model in, a clean GraphDef out that computes the same."""

import importlib
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

import graph_builders
import leangraph
from leangraph import graphs
from leangraph.cli import main as cli_main

keras = pytest.importorskip("keras")

TOLERANCE = 1e-5
# TF's "Optimizing for Deployment" recipe, verbatim.
DEPLOY = (
    "strip_unused_nodes(type=float) remove_nodes(op=Identity, op=CheckNumerics) "
    "fold_constants(ignore_errors=true) fold_batch_norms fold_old_batch_norms"
)
RESOURCE_OPS = {"VarHandleOp", "ReadVariableOp", "VariableV2", "Variable", "AssignVariableOp",
                "ResourceGather", "VarIsInitializedOp"}
CONTRACTIONS = {"Conv2D", "DepthwiseConv2dNative", "MatMul"}


def assert_clean(graph_def, frozen=None):
    """No control edge, NoOp, variable/resource op, or node the outputs do not need."""
    nodes = {n.name: n for n in graph_def.node}
    control = [(n.name, i) for n in graph_def.node for i in n.input if i.startswith("^")]
    assert control == []
    assert [n.name for n in graph_def.node if n.op == "NoOp"] == []
    assert [n.op for n in graph_def.node if n.op in RESOURCE_OPS] == []
    assert [n.name for n in graph_def.node
            if any(v.type == types_pb2.DT_RESOURCE for v in n.attr.values())] == []
    if frozen is not None:
        needed, pending = set(), [t.name for t in frozen.outputs] + [t.name for t in frozen.inputs]
        while pending:
            name = pending.pop()
            if name not in needed:
                needed.add(name)
                pending.extend(graphs.node_name(i) for i in nodes[name].input)
        assert set(nodes) == needed
        for info in frozen.inputs:
            assert nodes[info.name].op == "Placeholder"
        for info in frozen.outputs:
            assert nodes[info.name].op == "Identity"


def run_frozen(frozen, feeds):
    """Runs a FrozenGraph; feeds maps input names to arrays."""
    return leangraph.run(frozen.graph_def, feeds, [t.name for t in frozen.outputs])


def unfolded_batch_norms(graph_def):
    """Mul nodes fed directly by a convolution or MatMul: what fold_batch_norms folds."""
    nodes = {n.name: n for n in graph_def.node}
    return [
        n.name for n in graph_def.node
        if n.op == "Mul" and any(
            nodes.get(graphs.node_name(i)) is not None
            and nodes[graphs.node_name(i)].op in CONTRACTIONS for i in n.input)
    ]


# ---------------------------------------------------------------------------
# keras.applications (small inputs, one build per session)
# ---------------------------------------------------------------------------

APPLICATIONS = {
    "Xception": (71, 71, 3),
    "MobileNetV2": (32, 32, 3),
    "ResNet50": (32, 32, 3),
}


@pytest.fixture(scope="session")
def applications():
    built = {}

    def get(name):
        if name not in built:
            keras.utils.set_random_seed(11)
            model = getattr(keras.applications, name)(
                weights=None, input_shape=APPLICATIONS[name], classes=10
            )
            graph_builders._randomize_bn(model)
            built[name] = (model, leangraph.freeze(model))
        return built[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_application_matches_keras(applications, name):
    model, frozen = applications(name)
    x = np.random.default_rng(5).normal(size=(1,) + APPLICATIONS[name]).astype(np.float32)
    expected = model(x, training=False).numpy()
    (got,) = run_frozen(frozen, {frozen.inputs[0].name: x})
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    assert_clean(frozen.graph_def, frozen)
    assert frozen.inputs[0].shape == (1,) + APPLICATIONS[name]
    assert frozen.inputs[0].name == model.layers[0].name
    assert [t.name for t in frozen.outputs] == ["predictions"]
    assert frozen.outputs[0].shape == (1, 10)
    assert frozen.keras_model is model


@pytest.mark.slow
def test_tf_fold_batch_norms_folds_every_xception_batch_norm(applications):
    _, frozen = applications("Xception")
    before = unfolded_batch_norms(
        leangraph.transform(frozen.graph_def, "fold_constants(ignore_errors=true)"))
    assert len(before) == 40  # Xception: every conv is followed by a batch norm
    folded = leangraph.transform(frozen.graph_def, DEPLOY)
    assert unfolded_batch_norms(folded) == []


def test_tf_fold_batch_norms_works_only_on_the_clean_freeze():
    model = graph_builders.keras_cnn_model()
    x = np.random.default_rng(2).normal(size=(1, 24, 24, 3)).astype(np.float32)
    naive = leangraph.transform(graph_builders.freeze_keras(model, (1, 24, 24, 3)), DEPLOY)
    frozen = leangraph.freeze(model)
    clean = leangraph.transform(frozen.graph_def, DEPLOY)
    # The naive freeze's ^NoOp edges keep the weight reads alive: nothing folds.
    assert len(unfolded_batch_norms(naive)) >= 1
    assert unfolded_batch_norms(clean) == []
    assert sum(n.op == "Mul" for n in clean.node) < sum(n.op == "Mul" for n in naive.node)
    (got,) = leangraph.run(clean, {frozen.inputs[0].name: x}, [frozen.outputs[0].name])
    np.testing.assert_allclose(got, model(x, training=False).numpy(), atol=TOLERANCE)


# ---------------------------------------------------------------------------
# Functional, subclassed, files
# ---------------------------------------------------------------------------

def multi_io_model():
    keras.utils.set_random_seed(21)
    image = keras.Input((8, 8, 3), name="image")
    extra = keras.Input((5,), name="extra")
    x = keras.layers.Conv2D(4, 3, use_bias=False)(image)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Concatenate()([x, extra])
    x = keras.layers.Dense(16, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    scores = keras.layers.Dense(3, activation="softmax", name="scores")(x)
    value = keras.layers.Dense(1, name="value")(x)
    model = keras.Model([image, extra], [scores, value])
    graph_builders._randomize_bn(model)
    return model


@pytest.fixture(scope="module")
def multi_io():
    return multi_io_model()


@pytest.fixture(scope="module")
def multi_io_feeds():
    rng = np.random.default_rng(9)
    return {
        "image": rng.normal(size=(2, 8, 8, 3)).astype(np.float32),
        "extra": rng.normal(size=(2, 5)).astype(np.float32),
    }


def expected_multi_io(model, feeds):
    return [t.numpy() for t in model([feeds["image"], feeds["extra"]], training=False)]


def assert_same(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOLERANCE)


def test_multi_input_multi_output(multi_io, multi_io_feeds):
    frozen = leangraph.freeze(multi_io, batch_size=2)
    assert [(t.name, t.shape) for t in frozen.inputs] == [("image", (2, 8, 8, 3)), ("extra", (2, 5))]
    assert [(t.name, t.shape) for t in frozen.outputs] == [("scores", (2, 3)), ("value", (2, 1))]
    assert all(t.dtype == "float32" for t in frozen.inputs + frozen.outputs)
    assert_same(run_frozen(frozen, multi_io_feeds), expected_multi_io(multi_io, multi_io_feeds))
    assert_clean(frozen.graph_def, frozen)


def test_dict_inputs_and_outputs_keep_their_keys(multi_io_feeds):
    keras.utils.set_random_seed(22)
    a = keras.Input((5,), name="extra")
    b = keras.Input((3,), name="side")
    x = keras.layers.Concatenate()([a, b])
    model = keras.Model({"extra": a, "side": b},
                        {"logits": keras.layers.Dense(2)(x), "gate": keras.layers.Dense(1)(x)})
    frozen = leangraph.freeze(model)
    assert sorted(t.name for t in frozen.inputs) == ["extra", "side"]
    assert sorted(t.name for t in frozen.outputs) == ["gate", "logits"]
    feeds = {"extra": multi_io_feeds["extra"][:1], "side": np.ones((1, 3), np.float32)}
    expected = model(feeds, training=False)
    got = run_frozen(frozen, feeds)
    assert_same(got, [expected[t.name].numpy() for t in frozen.outputs])


def test_output_names_and_dynamic_batch(multi_io, multi_io_feeds):
    frozen = leangraph.freeze(multi_io, output_names=["probs", "v"], batch_size=None)
    assert [t.name for t in frozen.outputs] == ["probs", "v"]
    assert frozen.inputs[0].shape == (None, 8, 8, 3)
    assert_same(run_frozen(frozen, multi_io_feeds), expected_multi_io(multi_io, multi_io_feeds))
    with pytest.raises(leangraph.FreezeError, match="2 outputs"):
        leangraph.freeze(multi_io, output_names=["only_one"])
    with pytest.raises(leangraph.FreezeError, match="input names"):
        leangraph.freeze(multi_io, output_names=["image", "v"])


def test_input_shapes(multi_io, multi_io_feeds):
    frozen = leangraph.freeze(multi_io, input_shapes={"image": "3,8,8,3", "extra": (3, 5)})
    assert [t.shape for t in frozen.inputs] == [(3, 8, 8, 3), (3, 5)]
    with pytest.raises(leangraph.FreezeError, match="not an input.*image, extra"):
        leangraph.freeze(multi_io, input_shapes={"imagee": (1, 8, 8, 3)})
    with pytest.raises(leangraph.FreezeError, match="rank"):
        leangraph.freeze(multi_io, input_shapes={"image": (1, 8, 8)})
    with pytest.raises(leangraph.FreezeError, match="incompatible"):
        leangraph.freeze(multi_io, input_shapes={"image": (1, 9, 8, 3)})
    with pytest.raises(leangraph.FreezeError, match="dict"):
        leangraph.freeze(multi_io, input_shapes=(1, 8, 8, 3))
    with pytest.raises(leangraph.UsageError, match="batch_size"):
        leangraph.freeze(multi_io, batch_size=0)


class Residual(keras.Model):
    """A subclassed model: no symbolic inputs, BatchNorm and Dropout in call()."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(6)
        self.norm = keras.layers.BatchNormalization()
        self.drop = keras.layers.Dropout(0.4)
        self.head = keras.layers.Dense(2)

    def call(self, x, training=False):
        h = self.drop(self.norm(self.dense(x), training=training), training=training)
        return self.head(h) + x[:, :2]


def test_subclassed_model():
    keras.utils.set_random_seed(23)
    model = Residual()
    x = np.random.default_rng(3).normal(size=(4, 7)).astype(np.float32)
    model(x)
    graph_builders._randomize_bn(model)
    expected = model(x, training=False).numpy()
    frozen = leangraph.freeze(model, input_shapes={"features": (4, 7)})
    assert [t.name for t in frozen.inputs] == ["features"]
    assert [t.name for t in frozen.outputs] == ["output"]
    assert_same(run_frozen(frozen, {"features": x}), [expected])
    # Without input_shapes, the shape the model was built with, batch replaced.
    built = leangraph.freeze(model, batch_size=4)
    assert built.inputs[0].shape == (4, 7)
    assert_same(run_frozen(built, {built.inputs[0].name: x}), [expected])
    assert_clean(frozen.graph_def, frozen)


def test_subclassed_model_needs_shapes_when_unbuilt():
    with pytest.raises(leangraph.FreezeError, match="input_shapes"):
        leangraph.freeze(Residual())


def test_legacy_h5_keras_and_json_files(tmp_path, multi_io, multi_io_feeds):
    expected = expected_multi_io(multi_io, multi_io_feeds)
    multi_io.save(tmp_path / "model.h5")
    multi_io.save(tmp_path / "model.keras")
    (tmp_path / "arch.json").write_text(multi_io.to_json())
    multi_io.save_weights(tmp_path / "model.weights.h5")
    sources = [
        str(tmp_path / "model.h5"),
        tmp_path / "model.keras",
        (tmp_path / "arch.json", tmp_path / "model.weights.h5"),
    ]
    for source in sources:
        frozen = leangraph.freeze(source, batch_size=2)
        assert [t.name for t in frozen.outputs] == ["scores", "value"]
        assert_same(run_frozen(frozen, multi_io_feeds), expected)
        assert_clean(frozen.graph_def, frozen)
    frozen = leangraph.freeze(tmp_path / "arch.json", weights=tmp_path / "model.weights.h5")
    assert frozen.inputs[0].shape == (1, 8, 8, 3)


def test_saved_model_directory(tmp_path, multi_io, multi_io_feeds):
    multi_io.export(str(tmp_path / "sm"), verbose=False)
    frozen = leangraph.freeze(tmp_path / "sm", batch_size=2)
    assert sorted(t.name for t in frozen.inputs) == ["extra", "image"]
    assert [t.shape for t in frozen.inputs if t.name == "image"] == [(2, 8, 8, 3)]
    assert frozen.keras_model is None
    assert_same(run_frozen(frozen, multi_io_feeds), expected_multi_io(multi_io, multi_io_feeds))
    assert_clean(frozen.graph_def, frozen)
    serve = leangraph.freeze(tmp_path / "sm", signature="serve", batch_size=None)
    assert [t.shape for t in serve.inputs if t.name == "extra"] == [(None, 5)]
    with pytest.raises(leangraph.FreezeError, match="no signature 'predict'.*serve, serving_default"):
        leangraph.freeze(tmp_path / "sm", signature="predict")
    with pytest.raises(leangraph.FreezeError, match="not an input"):
        leangraph.freeze(tmp_path / "sm", input_shapes={"nothing": (1, 5)})


def test_tf_function_and_concrete_function():
    weights = tf.Variable(np.arange(6, dtype=np.float32).reshape(3, 2))

    @tf.function
    def scale(features, factor):
        return {"y": tf.matmul(features, weights) * factor}

    frozen = leangraph.freeze(scale, input_shapes={"features": (2, 3), "factor": ()})
    assert [(t.name, t.shape) for t in frozen.inputs] == [("features", (2, 3)), ("factor", ())]
    assert [(t.name, t.shape) for t in frozen.outputs] == [("y", (2, 2))]
    x = np.ones((2, 3), np.float32)
    (got,) = run_frozen(frozen, {"features": x, "factor": np.float32(2)})
    np.testing.assert_allclose(got, (x @ weights.numpy()) * 2)
    assert_clean(frozen.graph_def, frozen)

    concrete = scale.get_concrete_function(tf.TensorSpec([None, 3]), tf.TensorSpec([]))
    pinned = leangraph.freeze(concrete, batch_size=5)
    assert pinned.inputs[0].shape == (5, 3)
    assert pinned.outputs[0].shape == (5, 2)

    signed = tf.function(lambda x: tf.nn.relu(x) * weights[0, 1],
                         input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    frozen = leangraph.freeze(signed)
    assert [(t.name, t.shape) for t in frozen.inputs] == [("x", (1, 4))]
    with pytest.raises(leangraph.FreezeError, match="input_signature"):
        leangraph.freeze(tf.function(lambda x: x))


def test_public_converter_fallback_gives_the_same_graph(monkeypatch, multi_io):
    """freeze() calls TF's two conversion steps directly; without them, the public API."""
    from tensorflow.python.framework import convert_to_constants

    module = importlib.import_module("leangraph.freeze")
    direct = leangraph.freeze(multi_io)
    calls = []
    public = convert_to_constants.convert_variables_to_constants_v2
    monkeypatch.setattr(module, "_DIRECT_STEPS", ("_not_in_this_tensorflow",))
    monkeypatch.setattr(convert_to_constants, "convert_variables_to_constants_v2",
                        lambda func: calls.append(func) or public(func))
    fallback = leangraph.freeze(multi_io)
    assert len(calls) == 1
    assert sorted(n.name for n in fallback.graph_def.node) == sorted(
        n.name for n in direct.graph_def.node)
    assert fallback.inputs == direct.inputs and fallback.outputs == direct.outputs
    assert_clean(fallback.graph_def, fallback)


def test_control_edges_that_order_side_effects_are_kept():
    weights = tf.Variable([1.0, 2.0, 3.0])

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def checked(x):
        tf.debugging.assert_positive(x, message="x must be positive")
        return x * weights

    frozen = leangraph.freeze(checked)
    assert [n.op for n in frozen.graph_def.node if n.op == "Assert"] == ["Assert"]
    (got,) = run_frozen(frozen, {"x": np.ones((1, 3), np.float32)})
    np.testing.assert_allclose(got, [[1.0, 2.0, 3.0]])
    with pytest.raises(leangraph.GraphError, match="x must be positive"):
        run_frozen(frozen, {"x": -np.ones((1, 3), np.float32)})


def test_save_pb_and_pbtxt(tmp_path, multi_io):
    frozen = leangraph.freeze(multi_io)
    for name in ("model.pb", "model.pbtxt"):
        path = frozen.save(tmp_path / name)
        assert graphs.load_graph(path) == frozen.graph_def
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pb", "model.pbtxt"]
    assert (tmp_path / "model.pbtxt").read_text().startswith("node {")


# ---------------------------------------------------------------------------
# Safe mode and bad input
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lambda_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lambda")
    model = keras.Sequential([
        keras.Input((3,)), keras.layers.Lambda(lambda t: t * 2.0, name="doubler"),
    ])
    model.save(folder / "lambda.keras")
    model.save(folder / "lambda.h5")
    (folder / "lambda.json").write_text(model.to_json())
    model.save_weights(folder / "lambda.weights.h5")
    return folder


@pytest.mark.parametrize("name", ["lambda.keras", "lambda.h5"])
def test_lambda_refused_unless_unsafe(lambda_files, name):
    with pytest.raises(leangraph.UnsafeModelError, match="doubler.*runs code from the file"):
        leangraph.freeze(lambda_files / name)
    with pytest.raises(leangraph.UnsafeModelError):
        leangraph.load_keras(lambda_files / name)
    frozen = leangraph.freeze(lambda_files / name, unsafe=True)
    (got,) = run_frozen(frozen, {frozen.inputs[0].name: np.ones((1, 3), np.float32)})
    np.testing.assert_allclose(got, [[2.0, 2.0, 2.0]])


def test_lambda_in_architecture_json_refused(lambda_files):
    source = (lambda_files / "lambda.json", lambda_files / "lambda.weights.h5")
    with pytest.raises(leangraph.UnsafeModelError, match="runs code"):
        leangraph.freeze(source)
    assert leangraph.load_keras(source, unsafe=True).layers[-1].name == "doubler"


def test_bad_inputs(tmp_path, multi_io):
    with pytest.raises(leangraph.FreezeError, match="not found"):
        leangraph.freeze(tmp_path / "missing.keras")
    (tmp_path / "notes.keras").write_text("not a model at all")
    with pytest.raises(leangraph.FreezeError, match="is not a model"):
        leangraph.freeze(tmp_path / "notes.keras")
    graphs.save_graph(graph_builders.conv_bn_graph(), tmp_path / "graph.pb")
    with pytest.raises(leangraph.FreezeError, match="a frozen GraphDef, not a Keras file"):
        leangraph.load_keras(tmp_path / "graph.pb")
    (tmp_path / "empty").mkdir()
    with pytest.raises(leangraph.FreezeError, match="not a SavedModel"):
        leangraph.freeze(tmp_path / "empty")
    multi_io.save_weights(tmp_path / "only.weights.h5")
    with pytest.raises(leangraph.FreezeError, match="weights only"):
        leangraph.freeze(tmp_path / "only.weights.h5")
    (tmp_path / "arch.json").write_text(multi_io.to_json())
    with pytest.raises(leangraph.FreezeError, match="architecture only"):
        leangraph.freeze(tmp_path / "arch.json")
    with pytest.raises(leangraph.FreezeError, match="weights file not found"):
        leangraph.freeze((tmp_path / "arch.json", tmp_path / "nope.h5"))
    with pytest.raises(TypeError, match="keras.Model"):
        leangraph.freeze(42)
    with pytest.raises(leangraph.FreezeError, match="SavedModel"):
        leangraph.freeze(multi_io, signature="serving_default")
    multi_io.save(tmp_path / "model.keras")
    with pytest.raises(leangraph.FreezeError, match="SavedModel directory only"):
        leangraph.freeze(tmp_path / "model.keras", signature="serving_default")


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------

def test_cli_freeze(tmp_path, capsys, multi_io, multi_io_feeds, lambda_files):
    multi_io.save(tmp_path / "model.keras")
    out = tmp_path / "out" / "model.pb"
    code = cli_main([
        "freeze", str(tmp_path / "model.keras"), "-o", str(out),
        "--input-shape", "image:2,8,8,3", "--input-shape", "extra:2,5",
        "--output-names", "probs,v",
    ])
    assert code == 0
    assert "probs" in capsys.readouterr().out
    graph = graphs.load_graph(out)
    got = leangraph.run(graph, multi_io_feeds, ["probs", "v"])
    assert_same(got, expected_multi_io(multi_io, multi_io_feeds))

    assert cli_main(["freeze", str(tmp_path / "model.keras"), "-o",
                     str(tmp_path / "model.keras")]) == 1
    assert "refusing to overwrite the input" in capsys.readouterr().err
    assert cli_main(["freeze", str(lambda_files / "lambda.keras"), "-o", str(out)]) == 1
    assert "runs code from the file" in capsys.readouterr().err
    assert cli_main(["freeze", str(lambda_files / "lambda.keras"), "-o", str(out),
                     "--unsafe", "--batch-size", "none"]) == 0
    (placeholder,) = [n for n in graphs.load_graph(out).node if n.op == "Placeholder"]
    assert placeholder.attr["shape"].shape.dim[0].size == -1
    assert cli_main(["freeze", str(tmp_path / "model.keras"), "-o", str(out),
                     "--input-shape", "nothing:1,5"]) == 1
    assert "not an input" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_hides_tensorflow_logs_unless_asked(tmp_path):
    """TF's C++ INFO lines (the oneDNN notice on import, ...) stay out of the CLI's output."""
    import subprocess
    import sys

    graphs.save_graph(graph_builders.conv_bn_graph(), tmp_path / "graph.pb")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    command = [sys.executable, "-m", "leangraph", "summarize", str(tmp_path / "graph.pb")]
    quiet = subprocess.run(command, capture_output=True, text=True, env=env)
    loud = subprocess.run(command + ["--verbose"], capture_output=True, text=True, env=env)
    assert quiet.returncode == loud.returncode == 0, quiet.stderr[-2000:] + loud.stderr[-2000:]
    assert "I0000" not in quiet.stderr and "I0000" in loud.stderr


def test_load_model_takes_every_form(tmp_path, multi_io):
    """One object for every form; Keras-only parts only where there is Keras."""
    multi_io.save(tmp_path / "model.keras")
    graphs.save_graph(leangraph.freeze(multi_io).graph_def, tmp_path / "model.pb")
    keras_form = leangraph.load_model(tmp_path / "model.keras")
    graph_form = leangraph.load_model(tmp_path / "model.pb")
    in_memory = leangraph.load_model(multi_io)
    assert keras_form.is_keras and in_memory.is_keras and not graph_form.is_keras
    assert keras_form.source == "keras" and graph_form.source == "graph"
    assert graph_form.input_names == keras_form.input_names
    assert graph_form.output_names == keras_form.output_names
    assert graph_form.graph.graph_def is graph_form.graph.graph_def
    assert graph_form.file_bytes == (tmp_path / "model.pb").stat().st_size
    with pytest.raises(leangraph.UsageError, match="model not found"):
        leangraph.load_model(tmp_path / "missing.keras")
