"""Builders of small frozen graphs used across the tests (no downloads)."""

import numpy as np
import tensorflow as tf


def _const(value):
    return tf.constant(np.asarray(value, dtype=np.float32))


def conv_bn_graph():
    """A TF1-style graph exercising most of TF's transforms.

    input -> Pad -> Conv2D -> FusedBatchNorm (inference) -> Relu -> Identity
          -> atrous conv (SpaceToBatchND/Conv2D/BatchToSpaceND)
          -> Conv2D -> Mul(per-channel const) -> BiasAdd -> CheckNumerics
          -> MatMul -> Add -> output, plus duplicate constants and a device.
    """
    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 16, 16, 3], name="input")
        padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], name="pad")
        w1 = _const(rng.normal(size=(3, 3, 3, 8)) * 0.3)
        conv1 = tf.nn.conv2d(padded, w1, strides=1, padding="VALID", name="conv1")
        scale = _const(rng.uniform(0.5, 1.5, 8))
        offset = _const(rng.normal(size=8) * 0.1)
        mean = _const(rng.normal(size=8) * 0.1)
        var = _const(rng.uniform(0.5, 1.5, 8))
        bn, _, _ = tf.compat.v1.nn.fused_batch_norm(
            conv1, scale, offset, mean=mean, variance=var, is_training=False, name="bn1"
        )
        relu = tf.nn.relu(bn, name="relu1")
        ident = tf.identity(relu, name="ident")
        w2 = _const(rng.normal(size=(3, 3, 8, 8)) * 0.2)
        atrous = tf.nn.atrous_conv2d(ident, w2, rate=2, padding="SAME", name="atrous")
        with tf.device("/cpu:0"):
            w3 = _const(rng.normal(size=(1, 1, 8, 4)) * 0.3)
            conv3 = tf.nn.conv2d(atrous, w3, strides=1, padding="SAME", name="conv3")
        mul = tf.multiply(conv3, _const(rng.uniform(0.5, 1.5, 4)), name="bn_mul")
        bias = tf.nn.bias_add(mul, _const(rng.normal(size=4)), name="bias")
        checked = tf.debugging.check_numerics(bias, "bad", name="check")
        flat = tf.reshape(checked, [1, -1], name="flat")
        w4 = _const(rng.normal(size=(16 * 16 * 4, 10)) * 0.05)
        logits = tf.matmul(flat, w4, name="matmul")
        twice_a = tf.add(_const([1.0] * 10), _const([2.0] * 10), name="dup_a")
        twice_b = tf.add(_const([1.0] * 10), _const([2.0] * 10), name="dup_b")
        out = tf.add(logits, twice_a + twice_b, name="output")
        del out
    return graph.as_graph_def()


def freeze_keras(model, input_shape):
    """Frozen GraphDef of a Keras model, exactly as a naive TF 2 freeze makes it."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec(input_shape, tf.float32, name="input"))
    frozen = convert_variables_to_constants_v2(concrete)
    return frozen.graph.as_graph_def()


def keras_cnn_model():
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    _randomize_bn(model)
    return model


def _randomize_bn(model):
    """Non-trivial moving statistics, so folding a batch norm changes numbers."""
    import keras

    rng = np.random.default_rng(7)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                rng.normal(0, 0.1, beta.shape).astype("float32"),
                rng.normal(0, 0.1, mean.shape).astype("float32"),
                rng.uniform(0.5, 1.5, var.shape).astype("float32"),
            ])


def keras_cnn_graph():
    return freeze_keras(keras_cnn_model(), (1, 24, 24, 3))


def keras_mlp_graph():
    import keras

    keras.utils.set_random_seed(4)
    model = keras.Sequential([
        keras.Input((20,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(16, activation="tanh"),
        keras.layers.Dense(3),
    ])
    _randomize_bn(model)
    return freeze_keras(model, (1, 20))


def run_graph(graph_def, feeds, outputs):
    """Runs a GraphDef in a TF1 session; feeds maps tensor names to arrays."""
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run([o if ":" in o else o + ":0" for o in outputs], feeds)


def keras_application_graph(name, size):
    """A keras.applications architecture (weights=None, pooled features), frozen."""
    import keras

    keras.utils.set_random_seed(5)
    model = getattr(keras.applications, name)(
        weights=None, include_top=False, pooling="avg", input_shape=(size, size, 3)
    )
    _randomize_bn(model)
    return freeze_keras(model, (1, size, size, 3))


def keras_separable_deconv_dense_graph():
    """SeparableConv2D, Conv2DTranspose and Dense, each followed by BatchNormalization."""
    import keras

    keras.utils.set_random_seed(6)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.SeparableConv2D(8, 3, padding="same", depth_multiplier=2)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2DTranspose(6, 3, strides=2, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(10)(x)
    x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Dense(4)(x)
    model = keras.Model(inputs, outputs)
    _randomize_bn(model)
    return freeze_keras(model, (1, 12, 12, 3))


def keras_encoder_block_graph(batch=2, steps=6):
    """A Keras 3 post-norm encoder block on a [batch, steps, 16] sequence: 2-head
    self-attention (EinsumDense projections), a 16 -> 32 -> 16 Relu feed-forward block
    (Dense on a sequence: tensordot) and a sigmoid Dense head per step."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(8)
    inputs = keras.Input((steps, 16))
    a = layers.MultiHeadAttention(2, 8)(inputs, inputs)
    h = layers.LayerNormalization()(layers.Add()([inputs, a]))
    f = layers.Dense(32, activation="relu")(h)
    f = layers.Dense(16)(f)
    h = layers.LayerNormalization()(layers.Add()([h, f]))
    outputs = layers.Dense(3, activation="sigmoid")(h)
    model = keras.Model(inputs, outputs)
    return freeze_keras(model, (batch, steps, 16))


def keras_modern_blocks_graph():
    """What Keras freezes for newer architectures, small.

    Grouped Conv2D (depthwise by groups, as in ConvNeXt; two-channel groups,
    as in RegNet; groups with two outputs each) that Keras runs as
    jit_compile'd function calls; swish (behind tf.custom_gradient's
    IdentityN), hard-swish (RealDiv by 6), layer norm (StopGradient in its
    moments) and GELU (Erfc).
    """
    import keras

    keras.utils.set_random_seed(8)
    inputs = keras.Input((10, 10, 8))
    x = keras.layers.Conv2D(8, 3, padding="same", groups=8)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("swish")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", groups=4)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("hard_swish")(x)
    x = keras.layers.Conv2D(32, 3, padding="valid", groups=16)(x)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    x = keras.layers.Dense(24, activation="gelu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4)(x)
    model = keras.Model(inputs, outputs)
    _randomize_bn(model)
    return freeze_keras(model, (1, 10, 10, 8))
