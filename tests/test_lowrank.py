"""Low-rank factorisation (leangraph.prune.lowrank, `leangraph prune --method lowrank`)."""

import json

import keras
import numpy as np
import pytest
from keras import layers

import leangraph
from leangraph.cli import main
from leangraph.errors import PruneError
from leangraph.prune.lowrank import Factorable, lowrank
from leangraph.prune.lowrank import ranks as K
from leangraph.prune.lowrank.decompose import evbmf_rank


def _max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def _conv_model(**conv):
    keras.utils.set_random_seed(1)
    i = keras.Input((11, 11, 6), name="image")
    h = layers.Conv2D(10, **conv, name="conv")(i)
    return keras.Model(i, layers.ReLU(name="relu")(h))


def _dense_model(use_bias, sequence):
    keras.utils.set_random_seed(2)
    i = keras.Input((5, 12) if sequence else (12,), name="x")
    h = layers.Dense(20, use_bias=use_bias, activation="tanh", name="dense")(i)
    return keras.Model(i, layers.Dense(7, name="out")(h))


CASES = {
    "dense": lambda: _dense_model(True, False),
    "dense-no-bias": lambda: _dense_model(False, False),
    "dense-on-sequences": lambda: _dense_model(True, True),
    "1x1": lambda: _conv_model(kernel_size=1),
    "1x1-strided-biased-same": lambda: _conv_model(kernel_size=1, strides=2, padding="same"),
    "1x1-strided-valid-no-bias": lambda: _conv_model(kernel_size=1, strides=2, use_bias=False),
    "3x3": lambda: _conv_model(kernel_size=3, padding="same"),
    "3x3-strided-valid": lambda: _conv_model(kernel_size=3, strides=2),
    "3x3-strided-same-no-bias": lambda: _conv_model(kernel_size=3, strides=2, padding="same",
                                                     use_bias=False),
    "3x3-dilated": lambda: _conv_model(kernel_size=3, dilation_rate=2, padding="same"),
    "5x3-dilated-valid": lambda: _conv_model(kernel_size=(5, 3), dilation_rate=(1, 2)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_full_rank_computes_the_original(case):
    model = CASES[case]()
    f = Factorable(model)
    ranks = {name: site.decomposition.full_rank() for name, site in f.sites.items()}
    factorised = f.rebuild(ranks)
    x = np.random.default_rng(0).normal(size=(3,) + tuple(model.inputs[0].shape[1:]))
    x = x.astype("float32")
    assert _max_diff(model(x), factorised(x)) < 1e-5
    # Really factorised: every chosen layer became a chain of two or three layers.
    assert len(factorised.layers) == len(model.layers) + sum(
        2 if isinstance(r, tuple) else 1 for r in ranks.values())


def _set_low_rank(layer, rank, seed=0, noise=0.0):
    """Gives a Dense or conv layer a kernel of exactly `rank` (plus optional noise)."""
    rng = np.random.default_rng(seed)
    shape = tuple(layer.kernel.shape)
    c_in, c_out = int(np.prod(shape[:-1])), shape[-1]
    kernel = rng.normal(size=(c_in, rank)) @ rng.normal(size=(rank, c_out)) / np.sqrt(c_in * rank)
    kernel += noise * rng.normal(size=kernel.shape) / np.sqrt(c_in)
    layer.kernel.assign(kernel.reshape(shape).astype("float32"))


def test_truncated_svd_keeps_an_exactly_low_rank_layer():
    model = _dense_model(True, False)
    _set_low_rank(model.get_layer("dense"), 4)
    f = Factorable(model)
    x = np.random.default_rng(1).normal(size=(16, 12)).astype("float32")
    exact, cut = f.rebuild({"dense": 4}), f.rebuild({"dense": 2})
    inner = exact.get_layer("dense_lowrank")
    assert inner.units == 4 < min(12, 20)
    assert _max_diff(model(x), exact(x)) < 1e-5
    assert _max_diff(model(x), cut(x)) > 1e-3
    inputs = f.layer_inputs(x)["dense"]
    assert f.reconstruction_error("dense", 4, inputs) < 1e-5
    assert 0.05 < f.reconstruction_error("dense", 2, inputs) < 1.0


def test_evbmf_finds_the_rank_of_a_noisy_low_rank_matrix():
    rng = np.random.default_rng(3)
    signal = rng.normal(size=(120, 6)) @ rng.normal(size=(6, 80))
    assert evbmf_rank(signal + 0.1 * rng.normal(size=signal.shape)) == 6
    assert evbmf_rank(rng.normal(size=(60, 40))) <= 2  # pure noise: (almost) nothing


def _nested_shared_model():
    keras.utils.set_random_seed(4)
    inner_in = keras.Input((16,), name="block_in")
    inner_out = layers.Dense(24, activation="relu", name="block_dense")(inner_in)
    block = keras.Model(inner_in, inner_out, name="block")
    i = keras.Input((16,), name="x")
    shared = layers.Dense(16, activation="relu", name="shared")
    a = shared(i)
    b = shared(a)  # the same weights at two call sites
    h = layers.Concatenate(name="cat")([block(a), b])
    h = layers.Dense(32, name="wide")(h)
    return keras.Model(i, layers.Dense(5, activation="softmax", name="probs")(h), name="nested")


def test_nested_block_and_shared_layer():
    model = _nested_shared_model()
    f = Factorable(model)
    assert {"block_dense", "shared", "wide", "probs"} <= set(f.sites)
    assert len(f.sites["shared"].calls) == 2
    x = np.random.default_rng(5).normal(size=(8, 16)).astype("float32")
    ranks = {"shared": 5, "block_dense": 6, "wide": 7}
    factorised = f.rebuild(ranks)
    # The shared layer's factors are made once and called at both sites.
    names = [layer.name for layer in factorised.layers]
    assert names.count("shared_lowrank") == 1 and names.count("shared") == 1
    assert len(factorised.get_layer("shared_lowrank")._inbound_nodes) == 2
    # It equals the original with each kernel replaced by its rank-r approximation.
    expected = keras.models.clone_model(model)
    expected.set_weights(model.get_weights())
    for name, rank in ranks.items():
        layer = [lyr for lyr in _all_layers(expected) if lyr.name == name][0]
        approx = f.sites[name].decomposition.approximation(rank)
        layer.kernel.assign(approx.astype("float32"))
    assert _max_diff(expected(x), factorised(x)) < 1e-5
    assert _max_diff(model(x), factorised(x)) > 1e-4  # and the ranks did cut something


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def test_saved_model_reloads_and_freezes(tmp_path):
    from leangraph.runner import run

    model = _nested_shared_model()
    factorised = Factorable(model).rebuild({"shared": 8, "wide": 4})
    path = tmp_path / "factorised.keras"
    factorised.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(6).normal(size=(4, 16)).astype("float32")
    assert _max_diff(factorised(x), loaded(x)) < 1e-6
    frozen = leangraph.freeze(str(path), batch_size=4)
    out = run(frozen.graph_def, {frozen.input_names[0]: x}, frozen.output_names)[0]
    assert _max_diff(out, factorised(x)) < 1e-5
    assert any("wide_lowrank" in n.name for n in frozen.graph_def.node)


def test_bad_input_is_one_line():
    keras.utils.set_random_seed(7)
    i = keras.Input((8, 8, 4), name="image")
    h = layers.Conv2D(8, 3, padding="same", name="k3")(i)
    h = layers.DepthwiseConv2D(3, name="dw")(h)
    h = layers.Conv2D(8, 1, groups=2, name="grouped")(h)
    h = layers.Flatten()(h)
    model = keras.Model(i, layers.Dense(3, activation="softmax", name="probs")(h))
    f = Factorable(model)
    whole = {name: why for name, _, why in f.unsupported}
    assert set(whole) == {"dw", "grouped"} and "groups" in whole["grouped"]
    cases = [({"probs": 4}, "rank 4 for layer 'probs' (Dense 288->3) is above its full rank 3"),
             ({"k3": (5, 9)}, "above its full rank (4, 8)"),
             ({"k3": 3}, "takes a Tucker-2 rank"),
             ({"probs": 0}, "rank 0 for layer 'probs' (Dense 288->3) is below 1"),
             ({"dw": 2}, "layer 'dw' (DepthwiseConv2D) cannot be factorised"),
             ({"nope": 2}, "no layer 'nope'")]
    for ranks, message in cases:
        with pytest.raises(PruneError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
            f.rebuild(ranks)
        assert "\n" not in str(e.value)
    x = np.zeros((20, 8, 8, 4), dtype="float32")
    with pytest.raises(PruneError, match=r"data x has examples of shape \(8, 8, 3\)"):
        lowrank(model, x[..., :3], ranks={"k3": (2, 2)}, epochs=0, progress=False)
    # Asked for nothing it cannot do, the left-whole layers are named in the report.
    _, report = lowrank(model, x, ranks={"k3": (2, 3)}, epochs=0, progress=False)
    assert [u[0] for u in report.unsupported] == ["dw", "grouped"]
    row = {r["name"]: r for r in report.layers}["k3"]
    assert row["kept"] and row["rank"] == [2, 3] and row["macs_after"] < row["macs_before"]


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype("float32"), data.target.astype("int64")


@pytest.fixture(scope="module")
def mlp(digits):
    x, y = digits
    keras.utils.set_random_seed(0)
    i = keras.Input((64,), name="pixels")
    h = layers.Dense(384, activation="relu", name="d1")(i)
    h = layers.Dense(384, activation="relu", name="d2")(h)
    model = keras.Model(i, layers.Dense(10, activation="softmax", name="probs")(h), name="mlp")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    return model


def _costly(cost):
    """The C++ timer's verdict with `cost` times the candidate's time injected."""
    def timer(a, b, feeds, outputs):
        t = K.compare_graphs(a, b, feeds, outputs, runs=20, max_time=2.0)
        return K.Timing(t.speedup / cost, t.low / cost, t.high / cost, t.before_ms,
                        t.after_ms * cost, t.pairs)
    return timer


@pytest.mark.slow
def test_rank_selection_refuses_what_the_timer_says_is_slower(mlp, digits):
    x, y = digits
    kwargs = dict(max_accuracy_drop=5.0, batch=32, epochs=0, trial_epochs=0, progress=False,
                  energies=(0.5,))
    model, report = lowrank(mlp, x[:400], y[:400], timer=_costly(3.0), **kwargs)
    rows = {r["name"]: r for r in report.layers}
    assert not any(r["kept"] for r in rows.values())
    timed = [t for r in rows.values() for t in r["timed"]]
    assert timed and not any(t["pays"] for t in timed)
    # All measured, and none proven faster: the injected cost is on the candidate.
    assert all(t["timing"]["low"] <= 1.0 for t in timed)
    assert rows["d2"]["why_whole"] == "not measurably faster at any candidate rank"
    assert report.macs_after == report.macs_before and len(model.layers) == len(mlp.layers)
    # The same run without the injected cost keeps d2's factorisation (384x384 at batch 32
    # against a rank of at most half: several times fewer MACs, clearly faster).
    model, report = lowrank(mlp, x[:400], y[:400], timer=_costly(1.0), **kwargs)
    d2 = {r["name"]: r for r in report.layers}["d2"]
    assert d2["kept"] and d2["timing"]["low"] > 1.0
    assert d2["rank"] < 384 and model.get_layer("d2_lowrank").units == d2["rank"]


@pytest.mark.slow
def test_cli_lowrank_writes_model_and_report(mlp, digits, tmp_path, capsys):
    x, y = digits
    model_path, data = tmp_path / "mlp.keras", tmp_path / "digits.npz"
    mlp.save(model_path)
    np.savez(data, x=x[:500], y=y[:500])
    out = tmp_path / "out"
    assert main(["prune", str(model_path), "--data", str(data), "--method", "lowrank",
                 "--max-accuracy-drop", "2", "--batch", "32", "--epochs", "2",
                 "--energies", "0.5,0.7", "--trial-epochs", "2", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "leangraph prune" and report["method"] == "lowrank"
    # The levels given, each fine-tuned as long as asked before it was scored.
    levels = [level["level"] for level in report["search"].get("levels", [])]
    assert set(levels) <= {"energy 0.5", "energy 0.7", "evbmf"}
    assert report["source"] == str(model_path.resolve())
    rows = {r["name"]: r for r in report["layers"]}
    assert set(rows) == {"d1", "d2", "probs"}
    for row in rows.values():
        assert {"name", "kind", "rank", "kept", "macs_before", "macs_after", "timing",
                "reconstruction_error"} <= set(row)
    factorised = keras.models.load_model(out / "pruned.keras")
    kept = [r for r in rows.values() if r["kept"]]
    for row in kept:
        assert row["timing"]["low"] > 1.0 and 0 <= row["reconstruction_error"] < 1
        c_in, c_out = (int(c) for c in row["shape"].split("->"))
        assert factorised.get_layer(row["name"] + "_lowrank").units == row["rank"]
        assert row["rank"] < min(c_in, c_out)
    if kept:
        assert report["speed"]["speedup"] > 1.0
        assert report["accuracy_drop"] <= 2.0 + 1e-9
    else:  # the shared machine said nothing paid: then nothing may have changed
        assert report["macs_after"] == report["macs_before"]
    assert "low-rank factorisation" in (out / "report.md").read_text()


def test_tucker_and_pointwise_chosen_by_macs_target():
    keras.utils.set_random_seed(8)
    i = keras.Input((12, 12, 3), name="image")
    h = layers.Conv2D(32, 3, padding="same", activation="relu", name="stem")(i)
    h = layers.Conv2D(48, 3, strides=2, padding="same", activation="relu", name="k3")(h)
    h = layers.Conv2D(48, 1, activation="relu", name="p1")(h)
    h = layers.GlobalAveragePooling2D()(h)
    model = keras.Model(i, layers.Dense(4, activation="softmax", name="probs")(h))
    x = np.random.default_rng(9).normal(size=(40, 12, 12, 3)).astype("float32")
    calls = []

    def faster(a, b, feeds, outputs):  # every swap "pays": this test is about the plumbing
        calls.append(len(b.node))
        return K.Timing(2.0, 1.5, 2.5, 1.0, 0.5, 10)

    factorised, report = lowrank(model, x, target_macs=0.8, timer=faster, epochs=0,
                                 progress=False)
    rows = {r["name"]: r for r in report.layers}
    assert calls and rows["k3"]["kept"] and report.macs_ratio <= 0.8
    r_in, r_out = rows["k3"]["rank"]
    assert r_in < 32 and r_out < 48
    core = factorised.get_layer("k3_tucker_core")
    assert core.filters == r_out and core.strides == (2, 2) and core.kernel_size == (3, 3)
    assert factorised.get_layer("k3_tucker_in").filters == r_in
    assert report.macs_after == sum(r["macs_after"] for r in report.layers)
    # What the report says was kept is what the model holds.
    for name, row in rows.items():
        inner = "_tucker_in" if isinstance(row["rank"], list) else "_lowrank"
        assert (name + inner in [layer.name for layer in factorised.layers]) == row["kept"]


def test_both_prunes_channels_then_factorises(monkeypatch):
    keras.utils.set_random_seed(10)
    model = keras.Sequential([keras.Input((8, 8, 3), name="image"),
                              layers.Conv2D(32, 3, padding="same", activation="relu", name="c1"),
                              layers.Conv2D(64, 3, padding="same", activation="relu", name="c2"),
                              layers.GlobalAveragePooling2D(),
                              layers.Dense(64, activation="relu", name="fc"),
                              layers.Dense(3, activation="softmax", name="probs")], name="seq")
    x = np.random.default_rng(11).normal(size=(40, 8, 8, 3)).astype("float32")
    # Every swap "pays", so the test does not hang on this machine's timing.
    monkeypatch.setattr(K, "compare_graphs",
                        lambda a, b, feeds, outputs: K.Timing(2.0, 1.5, 2.5, 1.0, 0.5, 10))
    factorised, report = leangraph.prune(model, x, method="both", target_macs=0.5, epochs=0,
                                         progress=False)
    assert report.method == "both" and report.channels["kind"] == "leangraph prune"
    assert report.channels["macs_ratio"] <= np.sqrt(0.5) + 1e-9
    assert report.macs_before == report.channels["macs_before"]  # both against the original
    assert report.macs_ratio <= 0.5 and any(r["kept"] for r in report.layers)
    assert factorised.count_params() < model.count_params()
    assert factorised(x[:2]).shape == (2, 3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="svd", target_macs=0.5), "unknown method 'svd'"),
    (dict(method="lowrank", max_accuracy_drop=1.0, storage="sqlite:///s.db", study="s"),
     "a shared study is the channel search's"),
    (dict(method="lowrank", target_macs=0.5, max_accuracy_drop=1.0), "give exactly one"),
    (dict(method="lowrank", target_macs=1.5), "target_macs must be in"),
    (dict(method="channels", target_macs=0.5, energies=(0.3,)),
     "energies are the low-rank levels"),
    (dict(method="lowrank", target_macs=0.5, energies=(0.3, 1.5)), "energies must be shares"),
])
def test_bad_method_arguments(kwargs, message):
    model = _dense_model(True, False)
    x = np.zeros((20, 12), dtype="float32")
    with pytest.raises(PruneError, match=message):
        leangraph.prune(model, x, progress=False, **kwargs)


@pytest.mark.parametrize("flag, value, message", [
    ("--energies", "0.3,1.5", "--energies: each must be a share in (0, 1], got 1.5"),
    ("--energies", "0.3,x", "--energies: 'x' is not a number"),
    ("--trial-epochs", "0", "--trial-epochs: must be at least 1, got 0"),
])
def test_bad_lowrank_flags_are_one_line(tmp_path, capsys, flag, value, message):
    model_path, data = tmp_path / "m.keras", tmp_path / "d.npz"
    _dense_model(True, False).save(model_path)
    np.savez(data, x=np.zeros((20, 12), dtype="float32"))
    try:  # a converted list is checked by leangraph, a count by argparse (exit 2)
        code = main(["prune", str(model_path), "--data", str(data), "--method", "lowrank",
                     "--target-macs", "0.5", flag, value, "-o", str(tmp_path / "out")])
    except SystemExit as exc:
        code = exc.code
    assert code != 0
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_nothing_to_factorise_is_an_error():
    i = keras.Input((6, 6, 4), name="image")
    h = layers.DepthwiseConv2D(3, name="dw")(i)
    model = keras.Model(i, layers.GlobalAveragePooling2D()(h))
    with pytest.raises(PruneError, match=r"nothing to factorise.*dw \(DepthwiseConv2D"):
        lowrank(model, np.zeros((20, 6, 6, 4), "float32"), target_macs=0.5, progress=False)


def test_a_layer_stops_at_the_first_rank_no_faster_but_not_at_an_inconclusive_one():
    model = _dense_model(True, False)
    f = Factorable(model)
    x = np.zeros((4, 12), dtype="float32")
    verdicts = iter([K.Timing(1.10, 0.90, 1.30, 1.0, 0.9, 10),   # inconclusive: not kept
                     K.Timing(1.50, 1.30, 1.70, 1.0, 0.7, 10),   # faster: kept
                     K.Timing(0.95, 0.90, 1.01, 1.0, 1.05, 10),  # no faster: stop here
                     K.Timing(3.00, 2.00, 4.00, 1.0, 0.3, 10)])  # never asked for
    judge = K.Judge(model, x, 2, timer=lambda a, b, feeds, outputs: next(verdicts))
    candidates = {"dense": [(1, 0.3, "a"), (2, 0.5, "b"), (3, 0.7, "c"), (4, 0.9, "d")]}
    rows = K.paying_ranks(f, candidates, judge)["dense"]
    assert [(r["rank"], r["pays"]) for r in rows] == [(1, False), (2, True), (3, False)]
    # Levels: each layer at its smallest paying rank with that much energy, whole where none.
    paying = {"a": [{"rank": 8, "energy": 0.6, "source": "energy 0.5", "pays": True},
                    {"rank": 16, "energy": 0.85, "source": "energy 0.8, evbmf", "pays": True}],
              "b": [{"rank": 4, "energy": 0.75, "source": "energy 0.7", "pays": False}]}
    found = dict(K.levels(paying, (0.5, 0.8, 0.9)))
    assert {n: r["rank"] for n, r in found["energy 0.5"].items()} == {"a": 8}
    assert {n: r["rank"] for n, r in found["energy 0.8"].items()} == {"a": 16}
    assert "energy 0.9" not in found  # nothing pays there: no empty level
    assert "evbmf" not in found  # the same layers and ranks as energy 0.8: not tried twice


def test_a_factorised_pair_stays_8_bit_between_its_matmuls_and_matches_float(mlp, digits):
    """int8 of a factorised Dense: the rank-r MatMul requantizes straight into the second
    factor's, so no QuantizeV2 sits between them (each cost more than the matmul itself),
    and the result still computes what the float graph does."""
    from leangraph.prune.search import deploy_graph
    from leangraph.quantization.int8 import quantize
    from leangraph.runner import run

    x, _ = digits
    factorised = Factorable(mlp).rebuild({"d1": 16, "d2": 16})
    graph, name, outputs = deploy_graph(factorised, 16)
    q = quantize(graph, x[:128], outputs=outputs, require_int8_cpu=False, min_sqnr_db=None)
    by = {n.name: n for n in q.graph_def.node}
    matmuls = [n for n in q.graph_def.node if n.op == "_QuantizedMatMul"]
    assert len(matmuls) == 5
    requantized = [n for n in matmuls if n.attr["fused_ops"].list.s[-1] == b"Requantize"]
    # Both rank-r halves and both hidden layers hand on 8-bit; only the head dequantizes.
    assert len(requantized) == 4
    for node in requantized:
        readers = [n for n in q.graph_def.node if node.name in n.input]
        assert readers and all(r.op == "_QuantizedMatMul" for r in readers)
    assert sum(n.op == "QuantizeV2" for n in q.graph_def.node) == 1
    assert sum(n.op == "Dequantize" for n in q.graph_def.node) == 0
    lowrank_mm = next(n for n in requantized if "d1_lowrank" in n.name)
    assert by[lowrank_mm.name].attr["Tout"].type == 11  # qint8: no Relu between the factors
    batch = x[200:216]
    want = run(graph, {name: batch}, outputs)[0]
    got = run(q.graph_def, {name: batch}, outputs)[0]
    assert np.abs(got - want).max() < 0.05
    assert np.mean(got.argmax(-1) == want.argmax(-1)) >= 0.9


def test_with_int8_the_target_ranks_are_judged_on_int8_graphs(mlp, digits):
    """lowrank(int8=True) times the original and each candidate as leangraph.quantize writes
    them (a rank that pays in float need not pay in 8 bits); without int8, the float graphs."""
    x, y = digits
    timed = []

    def recording(a, b, feeds, outputs):
        timed.append([sorted({n.op for n in g.node if "Quantized" in n.op}) for g in (a, b)])
        return K.Timing(2.0, 1.5, 2.5, 1.0, 0.5, 10)

    kwargs = dict(target_macs=0.8, timer=recording, epochs=0, progress=False, energies=(0.5,))
    _, report = lowrank(mlp, x[:300], y[:300], int8=True, qat_epochs=0, **kwargs)
    assert timed and report.timed_as == "int8"
    assert all(a and b for a, b in timed), timed  # both sides 8-bit, every time
    assert "as leangraph.quantize writes it in int8" in report.to_markdown()
    timed.clear()
    _, report = lowrank(mlp, x[:300], y[:300], **kwargs)
    assert timed and report.timed_as == "fp32"
    assert not any(a or b for a, b in timed)
