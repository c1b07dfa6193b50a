"""Every model form a TF user holds: TF1 checkpoints, PlaceholderWithDefault
flags and iterator inputs, dynamic_rnn with unknown lengths, Keras 3 recurrent layers
with dropout, tf.keras-2 SavedModels and tf.cond on a flag. Each fixture is built here."""

import numpy as np
import pytest

import model_forms_builders as build
from leangraph import cli, freeze, graphs
from leangraph.errors import FreezeError
from leangraph.runner import run


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    return tmp_path_factory.mktemp("forms")


@pytest.fixture(scope="module")
def checkpoint(forms):
    return build.tf1_checkpoint(forms / "tagger")


@pytest.fixture(scope="module")
def flags(forms):
    return build.flags_iterator_graph(forms / "unet.pb")


@pytest.fixture(scope="module")
def gru(forms):
    path, output = build.dynamic_rnn_gru(forms / "segmenter.pb")
    return path, output, build.rnn_data(forms / "segmenter_data")


def _one_line_error(capsys, argv):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def _placeholders(graph_def):
    return sorted(n.name for n in graph_def.node if n.op == "Placeholder")


# --- TF1 checkpoints ---------------------------------------------------------------

def test_checkpoint_folder_as_prefix_with_stale_state_file(checkpoint):
    folder, output, x, expected = checkpoint
    frozen = freeze(folder, outputs=output, batch_size=None)
    assert frozen.source == "checkpoint" and frozen.input_names == ["features"]
    assert _placeholders(frozen.graph_def) == ["features"]
    ops = {n.op for n in frozen.graph_def.node}
    assert not ops & {"VarHandleOp", "VariableV2", "ApplyAdam", "ResourceApplyAdam", "SaveV2"}
    assert not any("Adam" in n.name or n.name.startswith("gradients")
                   for n in frozen.graph_def.node)
    notes = " ".join(frozen.notes)
    assert "/home/author/experiments/run7/" in notes and "is_training to False" in notes
    got = run(frozen.graph_def, {"features": x}, [output])[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_checkpoint_folder_prefix_by_its_dot_files(checkpoint):
    folder, output, x, expected = checkpoint
    for model in (folder / ".meta", folder / ".index"):
        frozen = freeze(model, outputs=output, batch_size=None)
        np.testing.assert_allclose(run(frozen.graph_def, {"features": x}, [output])[0],
                                   expected, rtol=1e-5, atol=1e-6)


def test_checkpoint_by_meta_file_and_by_prefix(forms):
    folder, output, x, expected = build.tf1_checkpoint(forms / "named", prefix_is_folder=False,
                                                       stale_state=False)
    for model in (folder / "model.ckpt.meta", folder / "model.ckpt", folder,
                  folder / "model.ckpt.index", folder / "model.ckpt.data-00000-of-00001"):
        frozen = freeze(model, outputs=output, batch_size=None)
        np.testing.assert_allclose(run(frozen.graph_def, {"features": x}, [output])[0],
                                   expected, rtol=1e-5, atol=1e-6)


def test_checkpoint_drops_output_shapes_that_import_refuses(forms, monkeypatch):
    folder, output, x, expected = build.tf1_checkpoint(forms / "shapes")
    import tensorflow as tf

    calls = []

    original = tf.compat.v1.train.import_meta_graph

    def refusing(meta, **kwargs):
        # What TF says of a graph whose _output_shapes contradict it: refuse while any
        # is left, as an importer validating them would.
        calls.append(sum("_output_shapes" in n.attr for n in meta.graph_def.node))
        if calls[-1]:
            raise ValueError("Node 'logits' has an _output_shapes attribute inconsistent "
                             "with the GraphDef for output #0")
        return original(meta, **kwargs)

    monkeypatch.setattr(tf.compat.v1.train, "import_meta_graph", refusing)
    frozen = freeze(folder, outputs=output, batch_size=None)
    assert calls[0] > 0 and calls[-1] == 0
    assert any("_output_shapes" in note for note in frozen.notes)
    np.testing.assert_allclose(run(frozen.graph_def, {"features": x}, [output])[0], expected,
                               rtol=1e-5, atol=1e-6)


def test_checkpoint_without_outputs_lists_candidates(checkpoint, capsys, tmp_path):
    err = _one_line_error(capsys, ["freeze", str(checkpoint[0]), "-o", str(tmp_path / "m.pb")])
    assert "--outputs" in err and "probs" in err and "Adam" not in err
    err = _one_line_error(capsys, ["freeze", str(checkpoint[0]), "-o", str(tmp_path / "m.pb"),
                                   "--outputs", "nope"])
    assert "nope" in err


@pytest.mark.slow
def test_checkpoint_through_optimize_data(checkpoint, tmp_path):
    from leangraph.optimize import optimize

    folder, output, _, _ = checkpoint
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "data.npz", features=rng.normal(size=(40, 6)).astype(np.float32))
    report = optimize(folder, outdir=tmp_path / "out", data=tmp_path / "data.npz",
                      outputs=output, runs=2, progress=False)
    assert report.ok and (tmp_path / "out" / "optimized.pb").is_file()
    assert report.variant(report.result).verified_on == 16  # the held-out examples


# --- PlaceholderWithDefault flags and iterator inputs -------------------------------

def test_flags_graph_needs_its_inputs_named(flags, capsys, tmp_path):
    err = _one_line_error(capsys, ["freeze", str(flags[0]), "-o", str(tmp_path / "m.pb")])
    assert "img" in err and "--inputs" in err and "iterator" in err


def test_flags_graph_named_input_becomes_a_placeholder(flags):
    path, output, x, expected = flags
    frozen = freeze(path, input_shapes={"img": (1, 4, 4, 1)}, feeds=["keep_prob=1"])
    assert frozen.input_names == ["img"] and _placeholders(frozen.graph_def) == ["img"]
    ops = {n.op for n in frozen.graph_def.node}
    assert "PlaceholderWithDefault" not in ops and not any("Iterator" in op for op in ops)
    notes = " ".join(frozen.notes)
    assert "training to False" in notes and "keep_prob=1" in notes
    assert "filenames" in notes and "IteratorGetNext" in notes
    np.testing.assert_allclose(run(frozen.graph_def, {"img": x}, [output])[0], expected,
                               rtol=1e-5, atol=1e-5)


def test_flag_named_as_input_is_fed(flags):
    path, output, x, expected = flags
    frozen = freeze(path, inputs="img,training", feeds={"keep_prob": 1.0})
    assert frozen.input_names == ["img", "training"]
    assert _placeholders(frozen.graph_def) == ["img", "training"]
    got = run(frozen.graph_def, {"img": x, "training": False}, [output])[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_data_names_choose_flags_and_defaults(flags, forms):
    path, output, x, expected = flags
    frozen = freeze(path, feeds=["keep_prob=1"], data_inputs=["img", "y"])
    assert frozen.input_names == ["img"]
    cond = build.cond_flag_graph(forms / "named_cond.pb")[0]
    assert freeze(cond, data_inputs=["x", "use_relu"]).input_names == ["x", "use_relu"]


@pytest.mark.slow
def test_flags_graph_through_optimize_data(flags, tmp_path):
    from leangraph.optimize import optimize

    rng = np.random.default_rng(6)
    np.savez(tmp_path / "d.npz", img=rng.normal(size=(40, 4, 4, 1)).astype(np.float32))
    report = optimize(flags[0], outdir=tmp_path / "out", data=tmp_path / "d.npz", runs=2,
                      feeds=["keep_prob=1"], progress=False)
    assert report.ok and report.variant(report.result).verified_on == 16
    assert any("training to False" in note for note in report.notes)
    assert "--feed keep_prob=1" in report.commands[1]  # the run as the user gave it


def test_an_input_cut_in_at_an_iterator_output(capsys, tmp_path):
    import tensorflow as tf

    from leangraph import graphs

    graph = tf.Graph()
    with graph.as_default():
        files = tf.compat.v1.placeholder(tf.float32, [None, 3], name="rows")
        dataset = tf.data.Dataset.from_tensor_slices((files, files)).batch(1)
        iterator = tf.compat.v1.data.make_initializable_iterator(dataset)
        x, label = iterator.get_next()
        tf.identity(x * 3.0 + 1.0, name="y")
    graphs.save_graph(graph.as_graph_def(), tmp_path / "it.pb")
    err = _one_line_error(capsys, ["freeze", str(tmp_path / "it.pb"), "-o",
                                   str(tmp_path / "m.pb"), "--outputs", "y"])
    assert "--inputs IteratorGetNext:0" in err
    frozen = freeze(tmp_path / "it.pb", inputs="IteratorGetNext:0", outputs="y")
    assert frozen.input_names == ["IteratorGetNext"]
    assert _placeholders(frozen.graph_def) == ["IteratorGetNext"]
    assert not any("Iterator" in n.op or "Dataset" in n.op for n in frozen.graph_def.node)
    got = run(frozen.graph_def, {"IteratorGetNext": np.ones((1, 3), np.float32)}, ["y"])[0]
    np.testing.assert_array_equal(got, np.full((1, 3), 4.0))
    # cut at the labels only, y still reads the iterator: refused, not left to fail later
    with pytest.raises(FreezeError, match="iterator"):
        freeze(tmp_path / "it.pb", inputs="IteratorGetNext:1", outputs="y")
    both = freeze(tmp_path / "it.pb", inputs="IteratorGetNext:0,IteratorGetNext:1",
                  outputs="y")
    assert both.input_names == ["IteratorGetNext", "IteratorGetNext_1"]


def test_an_output_that_reads_the_iterator_itself_is_named(capsys, tmp_path):
    """As deepbrain's graph.pb: the image comes through a PlaceholderWithDefault, but the
    sink reads the iterator's labels itself. Named as an output, the error names it and
    what to give instead; left to the defaults, the outputs below it are taken, said in
    a note."""
    import tensorflow as tf

    from leangraph import graphs

    graph = tf.Graph()
    with graph.as_default():
        rows = tf.compat.v1.placeholder(tf.float32, [None, 3], name="rows")
        dataset = tf.data.Dataset.from_tensor_slices((rows, rows)).batch(1)
        x, label = tf.compat.v1.data.make_initializable_iterator(dataset).get_next()
        img = tf.compat.v1.placeholder_with_default(x, [None, 3], name="img")
        prob = tf.identity(img * 3.0 + 1.0, name="prob")
        tf.identity(tf.ones_like(label) * prob, name="pred")
    graphs.save_graph(graph.as_graph_def(), tmp_path / "it.pb")
    err = _one_line_error(capsys, ["freeze", str(tmp_path / "it.pb"), "-o",
                                   str(tmp_path / "m.pb"), "--inputs", "img",
                                   "--outputs", "pred"])
    assert err.endswith(
        "output(s) pred read a tf.data iterator (IteratorGetNext:1) directly, not through an "
        "input, which a frozen graph cannot run: leave pred out of --outputs (e.g. --outputs "
        "prob), or cut an input in at that tensor, e.g. --inputs IteratorGetNext:1"), err
    for outputs in ("prob", None):
        frozen = freeze(tmp_path / "it.pb", inputs="img", outputs=outputs)
        assert frozen.output_names == ["prob"]
        got = run(frozen.graph_def, {"img": np.ones((1, 3), np.float32)}, ["prob"])[0]
        np.testing.assert_array_equal(got, np.full((1, 3), 4.0))
    assert (
        "the graph's sink(s) pred read a tf.data iterator (IteratorGetNext:1) directly, which "
        "a frozen graph cannot run: the outputs are prob instead (--outputs chooses others)"
        in frozen.notes), frozen.notes


def test_feed_a_vector(capsys, tmp_path):
    import tensorflow as tf

    from leangraph import graphs

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 6], name="x")
        dim = tf.compat.v1.placeholder(tf.int32, [2], name="dim")
        tf.identity(tf.reshape(x, dim) * 2.0, name="y")
    graphs.save_graph(graph.as_graph_def(), tmp_path / "g.pb")
    frozen = freeze(tmp_path / "g.pb", feeds=["dim=2,3"])
    assert frozen.input_names == ["x"] and frozen.outputs[0].shape == (2, 3)
    got = run(frozen.graph_def, {"x": np.arange(6, dtype=np.float32)[None]}, ["y"])[0]
    np.testing.assert_array_equal(got, 2 * np.arange(6).reshape(2, 3))
    err = _one_line_error(capsys, ["freeze", str(tmp_path / "g.pb"), "-o",
                                   str(tmp_path / "m.pb"), "--feed", "dim=2,3,1"])
    assert "3 values" in err


def test_bad_inputs_and_feeds_are_one_line(flags, gru, capsys, tmp_path):
    out = str(tmp_path / "m.pb")
    err = _one_line_error(capsys, ["freeze", str(gru[0]), "-o", out,
                                   "--inputs", "frames,seq_lengths"])
    assert "state0" in err and "--feed state0=" in err
    err = _one_line_error(capsys, ["freeze", str(flags[0]), "-o", out, "--inputs", "img",
                                   "--feed", "keep_prob=high"])
    assert "keep_prob" in err and "float" in err
    err = _one_line_error(capsys, ["freeze", str(flags[0]), "-o", out, "--inputs", "img",
                                   "--feed", "scores=1"])
    assert "not a placeholder" in err
    err = _one_line_error(capsys, ["freeze", str(flags[0]), "-o", out, "--inputs", "nothing"])
    assert "nothing" in err and "img" in err


def test_output_given_as_a_tensor_of_a_multi_output_node():
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        tf.split(x * 2.0, 2, axis=1, name="halves")
    original = graph.as_graph_def()
    frozen = freeze(original, outputs="halves:1")
    assert frozen.output_names == ["halves_1"] and frozen.outputs[0].shape == (1, 2)
    assert not any(n.name == "halves_1" for n in original.node)  # the caller's graph is intact
    got = run(frozen.graph_def, {"x": np.arange(4, dtype=np.float32)[None]}, ["halves_1"])[0]
    np.testing.assert_array_equal(got, [[4.0, 6.0]])


# --- dynamic_rnn: unknown lengths, several inputs, time-major ------------------------

def test_dynamic_rnn_keeps_unknown_lengths(gru):
    path, output, _ = gru
    frozen = freeze(path)
    shapes = {t.name: t.shape for t in frozen.inputs}
    assert shapes["frames"] == (1, None, 3) and shapes["state0"] == (1, None, 5)
    assert "keep_prob" not in shapes
    assert any("keep_prob=1.0" in note for note in frozen.notes)
    open_batch = freeze(path, batch_size=None)
    assert {t.name: t.shape for t in open_batch.inputs}["frames"] == (None, None, 3)
    fixed = freeze(path, input_shapes={"frames": "9,2,3"})
    assert {t.name: t.shape for t in fixed.inputs}["frames"] == (9, 2, 3)


def test_unknown_shapes_without_data_name_every_input(gru, capsys, tmp_path):
    err = _one_line_error(capsys, ["optimize", str(gru[0]), "-o", str(tmp_path / "o"),
                                   "--no-progress"])
    assert "frames" in err and "state0" in err and "--data" in err


def test_a_shape_the_data_contradicts_is_one_line(gru, capsys, tmp_path):
    err = _one_line_error(capsys, ["optimize", str(gru[0]), "-o", str(tmp_path / "o"),
                                   "--no-progress", "--data", str(gru[2]),
                                   "--input-shape", "frames:5,2,3"])
    assert "frames" in err and "7" in err


@pytest.mark.slow
def test_dynamic_rnn_through_optimize_data(gru, tmp_path, int8_anywhere):
    from leangraph.optimize import optimize

    path, _, data = gru
    report = optimize(path, outdir=tmp_path / "out", data=data, runs=2, progress=False)
    # Both example files ran: verified_on counts them (not their 7 + 4 time steps).
    assert report.ok and report.variant(report.result).verified_on == 2
    assert "passed on 2 example(s) of 2 example file(s)" in report.verdict()
    # the v1 while frame goes through the recipes and bf16 without breaking
    status = {v.name: v.status for v in report.variants}
    assert status["deploy"] == status["tf-deploy"] == "passed", status
    assert status.get("bf16") != "FAILED", status
    # int8 leaves the loop body float and says so, naming the loop: its two MatMuls are
    # all the graph has (the head is an Einsum), so there is nothing to quantize.
    int8 = report.variant("int8")
    assert int8.status == "skipped"
    assert int8.reason == (
        "nothing to quantize: int8 leaves loop bodies and cond branches alone (float), and "
        "all 2 Conv2D/DepthwiseConv2dNative/MatMul ops are there: the while loop "
        "'rnn/while' (rnn/while/MatMul, rnn/while/MatMul_1)")
    assert f"int8: skipped: {int8.reason}" in report.table()


@pytest.mark.slow
def test_dynamic_rnn_int8_quantizes_outside_the_loop_and_leaves_the_body_alone(forms, tmp_path,
                                                                              int8_anywhere):
    """A MatMul head after the loop: int8 calibrates it on the calibration split's files
    (each fed as is, time-major) and leaves the loop's MatMuls float, naming the loop."""
    from leangraph.optimize import optimize

    path, _ = build.dynamic_rnn_gru(forms / "segmenter_head.pb", head="matmul")
    data = build.rnn_data(forms / "segmenter_40", steps=tuple(3 + i % 6 for i in range(40)))
    report = optimize(path, outdir=tmp_path / "out", data=data, runs=2, progress=False,
                      precisions="fp32,int8")
    int8 = report.variant("int8")
    assert int8.status == "passed", int8.reason
    assert int8.verified_on == 16 and int8.quantization["calibration"]["samples"] == 24
    layers = {l["name"]: l for l in int8.quantization["layers"]}
    assert layers["MatMul"]["precision"] == "int8"
    for name in ("rnn/while/MatMul", "rnn/while/MatMul_1"):
        assert layers[name]["precision"] == "fp32"
        assert layers[name]["reason"].startswith("inside the while loop 'rnn/while', left alone")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "rnn/while/MatMul (inside the while loop 'rnn/while', left alone" in text


def test_a_conv3d_graph_keeps_working_and_int8_says_why_it_cannot(tmp_path, int8_anywhere):
    """A 3D U-Net's ops (Conv3D, Conv3DBackpropInputV2: deepbrain's): every variant runs,
    and the int8 row says in one line that none of its ops is one int8 rewrites."""
    import tensorflow as tf

    from leangraph import graphs
    from leangraph.optimize import optimize

    rng = np.random.default_rng(3)
    graph = tf.Graph()
    with graph.as_default():
        img = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 8, 1], name="img")
        w = tf.constant(rng.normal(size=(3, 3, 3, 1, 4)).astype(np.float32) * 0.5)
        down = tf.nn.relu(tf.nn.conv3d(img, w, [1, 2, 2, 2, 1], "SAME"))
        up_w = tf.constant(rng.normal(size=(3, 3, 3, 2, 4)).astype(np.float32) * 0.5)
        up = tf.nn.conv3d_transpose(down, up_w, tf.stack([tf.shape(img)[0], 8, 8, 8, 2]),
                                    [1, 2, 2, 2, 1], "SAME")
        tf.sigmoid(tf.reduce_sum(up, -1, keepdims=True), name="prob")
    graphs.save_graph(graph.as_graph_def(), tmp_path / "unet3d.pb")
    x = rng.uniform(0, 1, (6, 8, 8, 8, 1)).astype(np.float32)
    report = optimize(tmp_path / "unet3d.pb", outdir=tmp_path / "o", data=x, runs=2,
                      progress=False, precisions="fp32,int8")
    assert report.ok and report.variant("deploy").passed, report.table()
    int8 = report.variant("int8")
    assert int8.status == "skipped"
    assert int8.reason == (
        "no Conv2D/DepthwiseConv2dNative/MatMul for int8 to quantize in this graph (its "
        "Conv3D ×1, Conv3DBackpropInputV2 ×1 are ops quantize_int8 does not rewrite): it "
        "stays fp32")


# --- Keras 3 recurrent layers with dropout ------------------------------------------

@pytest.mark.parametrize("kind,suffix", [
    ("lstm", ".keras"), ("lstm", ".h5"),
    pytest.param("bigru", ".keras", marks=pytest.mark.slow),
    pytest.param("bigru", ".h5", marks=pytest.mark.slow)])
def test_keras_recurrent_with_dropout_freezes_equal(kind, suffix, forms):
    import keras

    path = build.keras_recurrent(kind, forms / f"text_{kind}{suffix}")
    tokens = np.load(build.token_data(forms / "tokens.npz"))["tokens"]
    frozen = freeze(path)
    assert any("SeedGenerator" in note for note in frozen.notes)
    model = frozen.keras_model
    want = model.predict(tokens, verbose=0)
    got = np.concatenate([run(frozen.graph_def, {"tokens": t[None]}, ["label"])[0]
                          for t in tokens])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert isinstance(model, keras.Model)


def test_keras_outputs_subset_keeps_keras_as_the_reference():
    import keras

    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(5, activation="relu")(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(n, name=f"head{n}")(hidden)
                                 for n in (1, 2, 3)])
    frozen = freeze(model, outputs="head3,head1")
    assert frozen.output_names == ["head3", "head1"]
    x = np.random.default_rng(9).normal(size=(1, 4)).astype(np.float32)
    want = frozen.keras_model.predict(x, verbose=0)
    got = run(frozen.graph_def, {"x": x}, frozen.output_names)
    assert [w.shape[-1] for w in want] == [3, 1]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    with pytest.raises(FreezeError, match="its own"):
        freeze(model, inputs="y")


def test_data_helpers_read_names_and_forms(tmp_path):
    from leangraph.pipeline.data import holds_whole_examples, named_inputs

    np.savez(tmp_path / "d.npz", img=np.zeros((2, 3)), y=np.zeros(2))
    assert named_inputs(tmp_path / "d.npz") == ["img", "y"]
    assert named_inputs(tmp_path) == ["img", "y"] and holds_whole_examples(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros(3))
    assert named_inputs(tmp_path / "x.npy") == []
    assert not holds_whole_examples(tmp_path / "d.npz")


def test_other_keras_state_is_still_refused():
    import keras

    from leangraph.freezing import keras_state

    class Counting(keras.layers.Layer):
        def build(self, shape):
            self.count = self.add_weight(shape=(), initializer="zeros", trainable=False)

        def call(self, x):
            self.count.assign_add(1.0)
            return x * 2.0

    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, Counting()(inputs))
    assert keras_state.seed_generators(model) == []
    with pytest.raises(FreezeError, match="AssignAddVariableOp|state"):
        freeze(model)


@pytest.mark.slow
def test_keras_lstm_through_optimize_data(forms, tmp_path):
    from leangraph.optimize import optimize

    path = build.keras_recurrent("lstm", forms / "opt_lstm.keras")
    report = optimize(path, outdir=tmp_path / "out", data=build.token_data(forms / "t.npz"),
                      runs=2, progress=False)
    assert report.ok and report.variant(report.result).verified_on == 6


# --- tf.keras-2 SavedModel, tf.cond on a flag ----------------------------------------

def test_tf_keras_savedmodel_with_three_outputs(forms):
    import keras

    # the other way round too: tf_keras refuses a Keras 3 .keras file, leangraph loads it
    inputs = keras.Input((5,), name="x")
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(forms / "k3.keras")
    x = np.random.default_rng(4).normal(size=(1, 5)).astype(np.float32)
    # tf_keras is a test dependency (requirements-nodeps.txt): its absence is a failure.
    made = build.tf_keras_savedmodel(forms / "tfk", x, forms / "k3.keras")
    assert made is not None, "tf_keras is not installed (make setup installs it)"
    folder, want, keras3_refused = made
    with pytest.raises(Exception):
        keras.models.load_model(folder)  # Keras 3 refuses it; leangraph must not
    frozen = freeze(folder)
    assert len(frozen.outputs) == 3
    got = run(frozen.graph_def, {frozen.input_names[0]: x}, frozen.output_names)
    for g, w in zip(got, sorted(want, key=lambda a: a.shape[-1])):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    picked = freeze(folder, outputs="head2")
    assert picked.output_names == ["head2"]
    with pytest.raises(FreezeError, match="head9"):
        freeze(folder, outputs="head9")
    with pytest.raises(FreezeError, match="--feed"):
        freeze(folder, feeds=["x=1"])
    assert keras3_refused
    assert freeze(forms / "k3.keras").input_names == ["x"]


def test_tf_keras_2_recurrent_h5_loads_and_a_time_major_one_is_named(forms):
    """tf.keras 2 writes `time_major` into every LSTM/GRU/SimpleRNN config, which Keras 3
    refuses (ethnicolr's census LSTM): False is dropped, and the frozen graph computes what
    tf_keras computed; True is refused in one line naming the layer."""
    x = np.random.default_rng(0).normal(size=(4, 7, 4)).astype(np.float32)
    made = build.tf_keras_rnn_h5(forms / "tfk_rnn", x)
    assert made is not None, "tf_keras is not installed (make setup installs it)"
    path, want, time_major = made
    frozen = freeze(path)
    got = np.concatenate([run(frozen.graph_def, {frozen.input_names[0]: x[i:i + 1]},
                              frozen.output_names)[0] for i in range(len(x))])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(FreezeError, match="LSTM 'major' is time-major") as refused:
        freeze(time_major)
    assert "\n" not in str(refused.value)


def test_cond_on_a_flag(forms):
    path, x, when_false, when_true = build.cond_flag_graph(forms / "cond.pb")
    frozen = freeze(path)
    assert frozen.input_names == ["x"] and any("use_relu" in n for n in frozen.notes)
    out = frozen.output_names[0]
    np.testing.assert_allclose(run(frozen.graph_def, {"x": x}, [out])[0], when_false,
                               rtol=1e-5, atol=1e-6)
    both = freeze(path, inputs="x,use_relu")
    assert both.input_names == ["x", "use_relu"]
    np.testing.assert_allclose(run(both.graph_def, {"x": x, "use_relu": True}, [out])[0],
                               when_true, rtol=1e-5, atol=1e-6)


def test_a_bool_flag_of_unknown_rank_is_a_flag_too(forms):
    """TF1 code declares its training flag as tf.placeholder(tf.bool), with no shape
    (musicnn's checkpoints do): it is set to False like a scalar one."""
    from leangraph import graphs

    path, x, when_false, _ = build.cond_flag_graph(forms / "cond_unranked.pb")
    graph = graphs.load_graph(path)
    flag = next(n for n in graph.node if n.name == "use_relu")
    flag.attr["shape"].shape.Clear()
    flag.attr["shape"].shape.unknown_rank = True
    graphs.save_graph(graph, path)
    frozen = freeze(path)
    assert frozen.input_names == ["x"] and any("use_relu" in n for n in frozen.notes)
    np.testing.assert_allclose(run(frozen.graph_def, {"x": x}, [frozen.output_names[0]])[0],
                               when_false, rtol=1e-5, atol=1e-6)


def test_int8_leaves_cond_branches_float():
    """Contractions inside a lowered tf.cond branch stay float (the branch not taken has
    dead tensors, which calibration cannot fetch); the ones outside are quantized."""
    import tensorflow as tf

    from leangraph import graphs
    from leangraph.quantization import quantize

    rng = np.random.default_rng(8)
    w = [tf.constant(rng.normal(size=(8, 8)).astype(np.float32) * 0.3) for _ in range(4)]

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
    def model(x):
        h = tf.nn.relu(tf.matmul(x, w[0]))
        # A predicate the data decides (a constant one is resolved when freezing).
        h = tf.cond(tf.reduce_sum(x) > 100.0, lambda: tf.nn.relu(tf.matmul(h, w[1])),
                    lambda: tf.nn.relu(tf.matmul(h, w[2])))
        return tf.matmul(h, w[3])

    frozen = freeze(freeze(model).graph_def)
    assert frozen.input_names == ["x"]
    branch = graphs.branch_nodes(frozen.graph_def)
    assert any(n.op == "MatMul" and n.name in branch for n in frozen.graph_def.node)
    samples = rng.normal(size=(8, 1, 8)).astype(np.float32).reshape(8, 8)
    result = quantize(frozen.graph_def, samples, require_int8_cpu=False)
    in_branch = [l for l in result.layers if l.name in branch]
    assert in_branch and all(l.precision == "fp32" and "cond branch" in l.reason
                             for l in in_branch)
    assert any(l.precision == "int8" for l in result.layers if l.name not in branch)
    want = model(samples[:1]).numpy()
    got = run(result.graph_def, {"x": samples[:1]}, frozen.output_names)[0]
    assert float(np.abs(got - want).max()) < 0.1 * float(np.abs(want).max())


@pytest.mark.slow
def test_cond_through_optimize_data_with_int8(forms, tmp_path):
    from leangraph.optimize import optimize

    path = build.cond_flag_graph(forms / "opt_cond.pb")[0]
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(40, 4)).astype(np.float32))
    report = optimize(path, outdir=tmp_path / "out", data=tmp_path / "d.npz", runs=2,
                      progress=False, precisions="fp32,int8")
    int8 = next(v for v in report.variants if v.name == "int8")
    assert report.ok and int8.status != "FAILED", int8.reason


# --- the flags exist wherever a model is loaded --------------------------------------

@pytest.mark.parametrize("command", ["freeze", "optimize", "summarize", "tune"])
def test_every_model_command_takes_inputs_outputs_and_feed(command):
    parser = cli.build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    for flag in ("--inputs", "--outputs", "--feed"):
        assert flag in sub._option_string_actions, (command, flag)


def test_feed_syntax_errors(capsys, flags, tmp_path):
    err = _one_line_error(capsys, ["freeze", str(flags[0]), "-o", str(tmp_path / "m.pb"),
                                   "--inputs", "img", "--feed", "keep_prob"])
    assert "NAME=VALUE" in err


def test_stripping_an_input_path_drops_the_functions_only_it_called():
    """deepbrain's graph: a tf.data map function (holding a TFRecordDataset) is called only
    from the iterator path; once that path is stripped, the function goes too, so the
    I/O check does not refuse the frozen graph for a function nothing runs."""
    from tensorflow.core.framework import graph_pb2

    from leangraph.freezing.placeholders import prune
    from leangraph.safety import find_unsafe_ops

    graph = graph_pb2.GraphDef()
    for name in ("reader_fn", "used_fn", "helper_fn"):
        graph.library.function.add().signature.name = name
    graph.library.function[0].node_def.add(name="r", op="TFRecordDataset")
    graph.library.function[1].node_def.add(name="h", op="helper_fn")
    graph.node.add(name="x", op="Placeholder")
    graph.node.add(name="y", op="used_fn", input=["x"])
    mapped = graph.node.add(name="dataset", op="MapDataset")
    mapped.attr["f"].func.name = "reader_fn"
    assert find_unsafe_ops(graph)
    out, stripped = prune(graph, ["y"], ["x"])
    assert "dataset" in stripped
    assert sorted(f.signature.name for f in out.library.function) == ["helper_fn", "used_fn"]
    assert not find_unsafe_ops(out)


def test_conds_on_a_frozen_flag_are_resolved(forms):
    """Freezing sets is_training to False; the v1 conds it steers take one branch for good,
    so the frozen graph holds neither Switch nor Merge, computes what the original does
    with the flag False, and its batch norm then folds into the conv."""
    from leangraph.transform import transform

    path, output, x, expected = build.v1_cond_batch_norm(forms / "v1_cond_bn.pb")
    original = graphs.load_graph(path)
    assert {"Switch", "Merge"} <= {n.op for n in original.node}
    frozen = freeze(path, inputs="x", outputs=output, batch_size=None)
    ops = {n.op for n in frozen.graph_def.node}
    assert not ops & {"Switch", "Merge"}, ops
    assert any("switch(es) on constant predicates resolved" in n for n in frozen.notes)
    np.testing.assert_allclose(run(frozen.graph_def, {"x": x}, [output])[0], expected,
                               rtol=1e-5, atol=1e-5)
    folded = transform(frozen.graph_def, "fold_constants(ignore_errors=true) "
                       "fold_batch_norms fold_old_batch_norms", ["x"], [output])
    assert not {"Rsqrt", "Mean"} & {n.op for n in folded.node}
    np.testing.assert_allclose(run(folded, {"x": x}, [output])[0], expected, rtol=1e-4,
                               atol=1e-4)


@pytest.mark.slow
def test_bigru_and_a_tf_keras_savedmodel_through_optimize_data(forms, tmp_path):
    """The Keras 3 Bidirectional GRU with masking and dropout (.h5) and the tf.keras-2
    SavedModel with three outputs go through optimize --data to a verified result, every
    output gated."""
    import json

    from leangraph.optimize import optimize

    gru = build.keras_recurrent("bigru", forms / "opt_bigru.h5")
    report = optimize(gru, outdir=tmp_path / "gru", data=build.token_data(forms / "t2.npz"),
                      runs=2, progress=False)
    assert report.ok and report.variant(report.result).verified_on == 6
    x = np.random.default_rng(9).normal(size=(40, 5)).astype(np.float32)
    made = build.tf_keras_savedmodel(forms / "tfk_opt", x[:1], forms / "k3_opt.keras")
    assert made is not None, "tf_keras is not installed (make setup installs it)"
    np.save(tmp_path / "x.npy", x)
    report = optimize(made[0], outdir=tmp_path / "sm", data=tmp_path / "x.npy", runs=2,
                      progress=False)
    assert report.ok
    written = json.loads((tmp_path / "sm" / "report.json").read_text())
    result = next(v for v in written["variants"] if v["name"] == written["result"])
    assert len({c["name"] for c in result["verification"]["outputs"]}) == 3
    assert result["verified_on"] == 16  # 40 examples: 16 held out
