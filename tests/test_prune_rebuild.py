"""The rebuilt model computes what the original computes with the removed channels' readers zeroed."""

import keras
import numpy as np
import pytest
from keras import layers

import leangraph
from leangraph.prune import criteria as C
from leangraph.prune import groups as G
from leangraph.prune import rebuild as R


def _everything_model():
    """Residual add, depthwise (multiplier 2), separable, concatenation, SE multiply, flatten."""
    i = keras.Input((8, 8, 3), name="img")
    x = layers.Conv2D(8, 3, padding="same", name="stem")(i)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU()(x)
    y = layers.Conv2D(8, 3, padding="same", name="c1")(x)
    y = layers.BatchNormalization(name="c1_bn")(y)
    y = keras.ops.relu(y)
    y = layers.Conv2D(8, 3, padding="same", name="c2")(y)
    z = x + y
    d = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(z)
    d = layers.BatchNormalization(name="dw_bn")(d)
    s = layers.SeparableConv2D(6, 3, padding="same", name="sep")(d)
    c = layers.Concatenate()([s, z])
    se = layers.GlobalAveragePooling2D(keepdims=True)(c)
    se = layers.Dense(4, activation="relu", name="se1")(se)
    se = layers.Dense(14, activation="sigmoid", name="se2")(se)
    c = layers.Multiply()([c, se])
    f = layers.Flatten()(layers.MaxPooling2D(4)(c))
    h = layers.Dense(6, activation="tanh", name="hidden")(f)
    return keras.Model(i, layers.Dense(5, activation="softmax", name="head")(h))


def _randomize(model, seed=0):
    """Non-zero biases, batch-norm betas and statistics: zeroing filters alone would not do."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        value = rng.normal(size=v.shape).astype("float32") * 0.5
        if v.path.endswith("moving_variance"):
            value = np.abs(value) + 0.5
        v.assign(value)


@pytest.fixture
def model():
    m = _everything_model()
    _randomize(m)
    return m


def _random_plan(graph, seed, share=0.5):
    rng = np.random.default_rng(seed)
    scores = {r: float(rng.random()) for g in graph.groups for r in g.roots.tolist()}
    keep = {g.index: max(1, int(g.channels * share)) for g in graph.prunable_groups}
    return R.plan_from_scores(graph, scores, keep)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rebuild_equals_zeroed_readers(model, seed):
    graph = G.ChannelGraph(model)
    plan = _random_plan(graph, seed)
    assert plan.removed
    pruned = R.rebuild(plan)
    x = np.random.default_rng(seed + 10).normal(size=(6, 8, 8, 3)).astype("float32")
    expected = R.zeroed_copy(plan).predict(x, verbose=0)
    got = pruned.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # the channels did matter: the unmodified original differs
    assert np.abs(model.predict(x, verbose=0) - expected).max() > 1e-3
    assert pruned.count_params() < model.count_params()
    assert pruned.get_layer("stem").filters == int(plan.out_mask("stem").sum())


def test_rebuild_macs_match_a_fresh_analysis(model):
    graph = G.ChannelGraph(model)
    plan = _random_plan(graph, 3)
    pruned = R.rebuild(plan)
    assert G.ChannelGraph(pruned).macs() == plan.macs() < graph.macs()


def test_pruned_model_saves_reloads_and_freezes(model, tmp_path):
    graph = G.ChannelGraph(model)
    pruned = R.rebuild(_random_plan(graph, 4))
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    again = keras.models.load_model(path)
    x = np.random.default_rng(5).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(again.predict(x, verbose=0), pruned.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)
    frozen = leangraph.freeze(path, batch_size=2)
    out = leangraph.run(frozen.graph_def, {frozen.inputs[0].name: x})[0]
    np.testing.assert_allclose(out, pruned.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


def test_nested_model_rebuilds_flat():
    inner_in = keras.Input((8, 8, 8))
    y = layers.Conv2D(6, 3, padding="same", name="inner_conv")(inner_in)
    y = layers.BatchNormalization(name="inner_bn")(y)
    inner = keras.Model(inner_in, layers.ReLU()(y), name="inner")
    i = keras.Input((8, 8, 3))
    x = inner(layers.Conv2D(8, 1, name="a")(i))
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(i, out)
    _randomize(model, 7)
    graph = G.ChannelGraph(model)
    plan = _random_plan(graph, 7)
    pruned = R.rebuild(plan)
    assert not any(isinstance(layer, keras.Model) for layer in pruned.layers)
    x = np.random.default_rng(8).normal(size=(3, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(pruned.predict(x, verbose=0),
                               R.zeroed_copy(plan).predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_se_reshape_rebuilds_with_the_new_channel_count():
    i = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="c")(i)
    x = layers.BatchNormalization(name="c_bn")(x)
    se = layers.GlobalAveragePooling2D()(x)
    se = layers.Reshape((1, 1, 8), name="se_reshape")(se)
    se = layers.Conv2D(2, 1, activation="relu", name="reduce")(se)
    se = layers.Conv2D(8, 1, activation="sigmoid", name="expand")(se)
    x = layers.Multiply()([x, se])
    model = keras.Model(i, layers.Dense(3, name="head")(layers.GlobalAveragePooling2D()(x)))
    _randomize(model, 9)
    graph = G.ChannelGraph(model)
    plan = _random_plan(graph, 9)
    pruned = R.rebuild(plan)
    kept = int(plan.out_mask("c").sum())
    assert kept < 8
    assert tuple(pruned.get_layer("se_reshape").target_shape) == (1, 1, kept)
    x = np.random.default_rng(9).normal(size=(3, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(pruned.predict(x, verbose=0),
                               R.zeroed_copy(plan).predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_frozen_groups_are_never_pruned():
    i = keras.Input((6, 6, 3))
    a = layers.Conv2D(8, 1, name="a")(i)
    frozen = layers.Reshape((12, 6, 4))(a)  # moves channels: a stays whole
    b = layers.Conv2D(8, 1, name="b")(frozen)
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(b))
    model = keras.Model(i, out)
    graph = G.ChannelGraph(model)
    # the highest possible pressure: every score equal, keep one channel where allowed
    scores = {}
    plan = R.plan_from_scores(graph, scores, {g.index: 1 for g in graph.prunable_groups})
    pruned = R.rebuild(plan)
    assert pruned.get_layer("a").filters == 8
    assert pruned.get_layer("head").units == 2
    assert pruned.get_layer("b").filters == 1


@pytest.mark.parametrize("criterion", ["l2", "fpgm", "taylor"])
def test_criteria_score_every_removable_channel(model, criterion):
    graph = G.ChannelGraph(model)
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype("float32")
    scores = C.scores(graph, criterion, x)
    for group in graph.prunable_groups:
        values = [scores.get(r) for r in group.roots.tolist()]
        assert all(v is not None and np.isfinite(v) and v >= 0 for v in values)
        assert len(set(values)) > 1  # scores tell channels apart


def test_l2_prefers_the_larger_filter():
    i = keras.Input((4, 4, 2))
    a = layers.Conv2D(4, 1, name="a")(i)
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(a))
    model = keras.Model(i, out)
    kernel = np.ones((1, 1, 2, 4), dtype="float32")
    kernel[..., 2] = 5.0
    kernel[..., 0] = 0.1
    model.get_layer("a").kernel.assign(kernel)
    model.get_layer("head").kernel.assign(np.ones((4, 2), dtype="float32"))
    graph = G.ChannelGraph(model)
    scores = C.l2_scores(graph)
    plan = R.plan_from_scores(graph, scores, {graph.group_of("a").index: 1})
    assert plan.out_mask("a").tolist() == [False, False, True, False]
