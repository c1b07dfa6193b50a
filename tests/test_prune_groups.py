"""Channel groups on hand-built models, each with its exact expected groups."""

import keras
import numpy as np
import pytest
from keras import layers

from leangraph import PruneError
from leangraph.prune import groups as G


def _groups(model):
    graph = G.ChannelGraph(model)
    return graph, {g.producers: (g.channels if g.prunable else "frozen") for g in graph.groups}


def _inputs_removed(graph, group_producer, channel, reader):
    """Which input channels of `reader` go when `channel` of `group_producer` goes."""
    root = graph.units.find(int(graph.records[group_producer].out_ids[channel]))
    mask = graph.mask(graph.records[reader].in_ids, {root})
    return np.flatnonzero(~mask).tolist()


def residual_block():
    i = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="stem")(i)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU()(x)
    y = layers.Conv2D(8, 3, padding="same", name="c1")(x)
    y = layers.BatchNormalization(name="c1_bn")(y)
    y = keras.ops.relu(y)
    y = layers.Conv2D(8, 3, padding="same", name="c2")(y)
    z = layers.ReLU()(x + y)  # a keras.ops add: model.layers does not list it
    z = layers.GlobalAveragePooling2D()(z)
    return keras.Model(i, layers.Dense(3, name="head")(z))


def test_residual_block():
    graph, groups = _groups(residual_block())
    assert groups == {("c1",): 8, ("c2", "stem"): 8, ("head",): "frozen"}
    assert set(graph.group_of("stem").consumers) == {"c1", "head", "stem_bn"}
    assert "model output 'head'" in graph.group_of("head").frozen[0]
    assert graph.unsupported == []


def test_concatenation_segments_at_offsets():
    i = keras.Input((6, 6, 2))
    a = layers.Conv2D(4, 1, name="a")(i)
    b = layers.Conv2D(6, 1, name="b")(i)
    c = layers.Concatenate()([a, b])
    d = layers.Conv2D(5, 1, name="d")(c)
    e = layers.Conv2D(10, 1, name="e")(i)
    s = layers.Add()([c, e])  # couples e's channels with a's and b's, position by position
    f = layers.Conv2D(3, 1, name="f")(s)
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(layers.Concatenate()([d, f])))
    graph, groups = _groups(keras.Model(i, out))
    assert groups == {("a", "b", "e"): 10, ("d",): 5, ("f",): 3, ("head",): "frozen"}
    assert _inputs_removed(graph, "a", 0, "d") == [0]
    assert _inputs_removed(graph, "b", 0, "d") == [4]
    assert _inputs_removed(graph, "b", 1, "f") == [5]
    assert _inputs_removed(graph, "e", 4, "d") == [4]
    # head reads concat(d, f): f's channel 2 is head's input 5 + 2
    assert _inputs_removed(graph, "f", 2, "head") == [7]


def test_concatenation_without_add_keeps_inputs_apart():
    i = keras.Input((6, 6, 2))
    a = layers.Conv2D(4, 1, name="a")(i)
    b = layers.Conv2D(6, 1, name="b")(i)
    d = layers.Conv2D(5, 1, name="d")(layers.Concatenate()([a, b]))
    out = layers.Dense(2, name="head")(layers.GlobalMaxPooling2D()(d))
    _, groups = _groups(keras.Model(i, out))
    assert groups == {("a",): 4, ("b",): 6, ("d",): 5, ("head",): "frozen"}


def test_depthwise_and_separable_block():
    i = keras.Input((8, 8, 3))
    p = layers.Conv2D(8, 1, name="p")(i)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(p)
    x = layers.BatchNormalization(name="dw_bn")(x)
    x = layers.Activation("relu6")(x)
    q = layers.Conv2D(6, 1, name="q")(x)
    s = layers.SeparableConv2D(4, 3, padding="same", depth_multiplier=3, name="sep")(q)
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(s))
    graph, groups = _groups(keras.Model(i, out))
    assert groups == {("p",): 8, ("q",): 6, ("sep",): 4, ("head",): "frozen"}
    assert set(graph.group_of("p").consumers) == {"dw", "dw_bn", "q"}
    # depth_multiplier 2: input channel k feeds outputs 2k and 2k+1
    assert _inputs_removed(graph, "p", 3, "q") == [6, 7]
    assert _inputs_removed(graph, "p", 3, "dw") == [3]
    # the separable conv's depthwise half sits in q's group, its pointwise half makes sep's
    assert "sep" in graph.group_of("q").consumers


def test_se_block_multiply():
    i = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="c")(i)
    x = layers.BatchNormalization(name="c_bn")(x)
    x = layers.Activation("swish")(x)
    se = layers.GlobalAveragePooling2D(keepdims=True)(x)
    se = layers.Conv2D(2, 1, activation="relu", name="reduce")(se)
    se = layers.Conv2D(8, 1, activation="sigmoid", name="expand")(se)
    x = layers.Multiply()([x, se])
    x = layers.Conv2D(4, 1, name="project")(x)
    out = layers.Dense(3, name="head")(layers.GlobalAveragePooling2D()(x))
    graph, groups = _groups(keras.Model(i, out))
    assert groups == {("c", "expand"): 8, ("reduce",): 2, ("project",): 4, ("head",): "frozen"}


def test_se_block_with_reshape_keeps_channels():
    i = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="c")(i)
    se = layers.GlobalAveragePooling2D()(x)
    se = layers.Reshape((1, 1, 8), name="se_reshape")(se)  # keeps the last axis
    se = layers.Conv2D(2, 1, activation="relu", name="reduce")(se)
    se = layers.Conv2D(8, 1, activation="sigmoid", name="expand")(se)
    x = layers.Multiply()([x, se])
    out = layers.Dense(3, name="head")(layers.GlobalAveragePooling2D()(x))
    graph, groups = _groups(keras.Model(i, out))
    assert groups == {("c", "expand"): 8, ("reduce",): 2, ("head",): "frozen"}
    assert graph.unsupported == []


def test_flatten_to_dense_channels_last_mapping():
    i = keras.Input((3, 3, 1))
    c = layers.Conv2D(4, 1, name="c")(i)
    f = layers.Flatten()(c)
    h = layers.Dense(6, activation="relu", name="hidden")(f)
    out = layers.Dense(3, activation="softmax", name="head")(h)
    graph, groups = _groups(keras.Model(i, out))
    assert groups == {("c",): 4, ("hidden",): 6, ("head",): "frozen"}
    # channel 1 appears once per spatial position, 4 channels apart
    assert _inputs_removed(graph, "c", 1, "hidden") == [1 + 4 * p for p in range(9)]


def test_shared_layer_is_one_group():
    i = keras.Input((8, 8, 3))
    shared = layers.Conv2D(6, 3, padding="same", name="shared")
    a = shared(layers.Conv2D(4, 1, name="a")(i))
    b = shared(layers.Conv2D(4, 1, name="b")(i))
    x = layers.Concatenate()([a, b])
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(x))
    graph, groups = _groups(keras.Model(i, out))
    # one kernel reads both branches, so a's and b's channels go together
    assert groups == {("a", "b"): 4, ("shared",): 6, ("head",): "frozen"}
    assert len(graph.records["shared"].calls) == 2
    # both copies of the shared output are one channel class: head's input k and 6 + k
    assert _inputs_removed(graph, "shared", 2, "head") == [2, 8]


def test_nested_model_is_flattened():
    inner_in = keras.Input((8, 8, 8))
    y = layers.Conv2D(6, 3, padding="same", name="inner_conv")(inner_in)
    y = layers.BatchNormalization(name="inner_bn")(y)
    inner = keras.Model(inner_in, layers.ReLU()(y), name="inner")
    i = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 1, name="a")(i)
    x = inner(x)
    x = layers.Conv2D(4, 1, name="b")(x)
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(x))
    graph, groups = _groups(keras.Model(i, out))
    assert groups == {("a",): 8, ("inner_conv",): 6, ("b",): 4, ("head",): "frozen"}
    assert set(graph.group_of("a").consumers) == {"inner_conv"}


def test_nested_model_with_clashing_names_is_a_clear_error():
    inner_in = keras.Input((8, 8, 4))
    inner = keras.Model(inner_in, layers.Conv2D(4, 1, name="conv")(inner_in), name="inner")
    i = keras.Input((8, 8, 3))
    x = inner(layers.Conv2D(4, 1, name="conv")(i))
    model = keras.Model(i, layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(PruneError, match="cannot flatten the nested models.*\"conv\" is used 2"):
        G.ChannelGraph(model)


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(PruneError, match="subclassed model"):
        G.ChannelGraph(Net())


def test_sequential_model():
    model = keras.Sequential([
        keras.Input((6, 6, 1)), layers.Conv2D(4, 3, name="c1"), layers.ReLU(),
        layers.Conv2D(5, 3, name="c2"), layers.Flatten(), layers.Dense(2, name="head"),
    ])
    _, groups = _groups(model)
    assert groups == {("c1",): 4, ("c2",): 5, ("head",): "frozen"}


class Scale(layers.Layer):
    def call(self, x):
        return x * 2.0


@pytest.mark.parametrize("blocker", ["reshape", "lambda", "custom", "grouped", "softmax",
                                     "channels_first"])
def test_unsupported_structures_freeze_their_groups(blocker):
    i = keras.Input((4, 4, 4))
    a = layers.Conv2D(8, 1, name="a")(i)
    if blocker == "reshape":
        x = layers.Reshape((8, 4, 4))(a)  # moves channels
    elif blocker == "lambda":
        x = layers.Lambda(lambda t: t * 2.0)(a)
    elif blocker == "custom":
        x = Scale(name="scale")(a)
    elif blocker == "grouped":
        x = layers.Conv2D(8, 1, groups=2, name="grouped")(a)
    elif blocker == "softmax":
        x = layers.Softmax()(a)
    else:
        x = layers.MaxPooling2D(1, data_format="channels_first")(a)
    b = layers.Conv2D(4, 1, name="b")(x)
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(b))
    graph, groups = _groups(keras.Model(i, out))
    assert groups[("a",)] == "frozen"
    assert groups[("b",)] == 4
    assert len(graph.unsupported) == 1
    assert graph.group_of("a").frozen  # the reason names the layer
    if blocker == "grouped":
        assert ("grouped",) not in groups


def test_model_input_and_output_channels_are_never_removable():
    i = keras.Input((4, 4, 3))
    a = layers.Conv2D(8, 1, name="a")(i)
    out = layers.Add()([a, layers.Conv2D(8, 1, name="b")(i)])
    graph, groups = _groups(keras.Model(i, out))
    assert groups == {("a", "b"): "frozen"}
    assert graph.prunable_groups == []


def test_broadcast_channel_operand_does_not_couple():
    i = keras.Input((4, 4, 3))
    a = layers.Conv2D(8, 1, name="a")(i)
    gate = layers.Conv2D(1, 1, activation="sigmoid", name="gate")(i)  # one channel: broadcast
    x = a * gate + 1.0
    out = layers.Dense(2, name="head")(layers.GlobalAveragePooling2D()(x))
    _, groups = _groups(keras.Model(i, out))
    assert groups[("a",)] == 8


def test_macs_and_prunable_share():
    graph, _ = _groups(residual_block())
    # stem 8*8*9*3*8, c1 and c2 8*8*9*8*8, head 8*3
    assert graph.macs() == 64 * 27 * 8 + 2 * 64 * 72 * 8 + 24
    assert graph.prunable_share() == 1.0
    stem_root = graph.units.find(int(graph.records["stem"].out_ids[0]))
    assert graph.macs({stem_root}) == 64 * 27 * 7 + 64 * 72 * 7 + 64 * 72 * 7 + 21
