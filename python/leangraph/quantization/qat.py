"""Fake quantization of a Keras model, as leangraph's int8 rewrite will compute it.

Quantization-aware fine-tuning trains the float weights through the rounding
the int8 graph will do, so they settle where that rounding costs least:

- every Conv2D / DepthwiseConv2D / SeparableConv2D / Dense kernel is rounded
  to 8 bits per output channel, symmetric (as `quantize_int8` stores it; a
  batch norm folded in later scales each channel, which scales its grid alike);
- every input of those layers is rounded to 8 bits per tensor, over the range
  calibrated on sample inputs: unsigned when it never goes negative, else
  symmetric signed (as the int8 kernels read it);
- every conv's output is rounded where the int8 graph requantizes it: after
  its own relu, or after the batch norm and relu that fold into it.

That is quantize(bias_correction=False, equalize=False): a bias correction shifts
the rewrite's biases by the mean error it measures, and the equalization of a
separable conv's depthwise channels rescales what its 1x1 half reads (the
depthwise weights round to the same integers), neither of which is modelled.

Gradients pass the rounding straight through (the straight-through
estimator). Kernels are substituted with Keras' StatelessScope, so the
model's own variables stay float and are what training updates; inputs are
rounded by wrapping the layers' call for as long as `inputs_rounded()` lasts.
"""

import contextlib

import numpy as np

from leangraph.errors import QuantizeError
from leangraph.quantization.int8 import check_weight_bits


_LEVELS_SIGNED = 127.0
_LEVELS_UNSIGNED = 255.0


def _contractions(model):
    import keras

    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
             keras.layers.Dense)
    # Grouped convs stay float in the int8 rewrite.
    return [layer for layer in model.layers if isinstance(layer, kinds)
            and not (isinstance(layer, keras.layers.Conv2D) and getattr(layer, "groups", 1) != 1)]


def _kernels(layer):
    """(variable, axes reduced for its per-output-channel scale) of a layer's kernels."""
    import keras

    if isinstance(layer, keras.layers.SeparableConv2D):
        return [(layer.depthwise_kernel, (0, 1)), (layer.pointwise_kernel, (0, 1, 2))]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [(layer.kernel, (0, 1))]  # [h, w, in, multiplier]: one scale per in*multiplier
    if isinstance(layer, keras.layers.Dense):
        return [(layer.kernel, (0,))]
    return [(layer.kernel, (0, 1, 2))]


def round_kernel(value, axes, levels=_LEVELS_SIGNED):
    """Symmetric 8-bit rounding per output channel (7-bit: levels=63), gradients
    straight through."""
    import tensorflow as tf

    scale = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(value), axis=axes, keepdims=True),
                                        1e-8))
    rounded = tf.clip_by_value(tf.round(value / scale * levels), -levels, levels) * scale / levels
    return value + tf.stop_gradient(rounded - value)


def _relu_like(layer):
    import keras

    if isinstance(layer, keras.layers.ReLU):
        return layer.negative_slope == 0 and not layer.threshold
    if isinstance(layer, keras.layers.Activation):
        return layer.get_config().get("activation") in ("relu", "relu6")
    return False


def _unit_ends(model, contractions):
    """{contraction: the layer whose output the int8 graph requantizes it at}: its own
    relu, or the batch norm and relu that follow it alone (they fold into it)."""
    import keras

    readers = {}
    for op in model.operations:
        for node in op._inbound_nodes:
            for tensor in node.input_tensors:
                readers.setdefault(id(tensor._keras_history.operation), []).append(op)
    ends = {}
    for layer in contractions:
        if isinstance(layer, keras.layers.Dense):
            continue  # the int8 matmul hands out float
        end = layer
        if layer.get_config().get("activation") in (None, "linear"):
            after = readers.get(id(end), [])
            if len(after) == 1 and isinstance(after[0], keras.layers.BatchNormalization):
                end = after[0]
            after = readers.get(id(end), [])
            if len(after) == 1 and _relu_like(after[0]):
                end = after[0]
        ends[layer.name] = end
    return ends


def round_output(value, lo, hi):
    """8-bit rounding of a unit's output: unsigned over [0, hi] when it never goes
    negative, else 255 levels over [lo, hi] (as a shifted output is stored)."""
    import tensorflow as tf

    if lo >= 0.0:
        return round_input(value, lo, hi)
    width = max(hi - lo, 1e-8)
    rounded = tf.clip_by_value(tf.round((value - lo) / width * _LEVELS_UNSIGNED), 0.0,
                               _LEVELS_UNSIGNED) * width / _LEVELS_UNSIGNED + lo
    return value + tf.stop_gradient(rounded - value)


def round_input(value, lo, hi):
    """8-bit rounding over a calibrated range [lo, hi], gradients straight through."""
    import tensorflow as tf

    if lo >= 0.0:
        top, levels, bottom = max(hi, 1e-8), _LEVELS_UNSIGNED, 0.0
    else:
        top, levels = max(abs(lo), abs(hi), 1e-8), _LEVELS_SIGNED
        bottom = -levels
    rounded = tf.clip_by_value(tf.round(value / top * levels), bottom, levels) * top / levels
    return value + tf.stop_gradient(rounded - value)


def _depthwise_half(layer, x):
    from keras import ops

    return ops.depthwise_conv(x, layer.depthwise_kernel, strides=layer.strides,
                              padding=layer.padding, data_format=layer.data_format,
                              dilation_rate=layer.dilation_rate)


def _separable(layer, x, middle):
    """A SeparableConv2D computed as the int8 graph does: depthwise, its output
    rounded to 8 bits, then the 1x1 conv, bias and activation."""
    from keras import ops

    mid = round_output(_depthwise_half(layer, x), *middle)
    out = ops.conv(mid, layer.pointwise_kernel, strides=1, padding="valid",
                   data_format=layer.data_format)
    if layer.use_bias:
        out = out + layer.bias
    return layer.activation(out) if layer.activation is not None else out


class FakeQuant:
    """The int8 rounding of `model`'s contractions, with input ranges calibrated on `x`."""

    def __init__(self, model, x, batch_size=64, weight_bits=8):
        """weight_bits=7: the Conv2D kernels that read an unsigned 8-bit input are
        rounded to 7 bits, as quantize(weight_bits=7) stores them for CPUs without
        VNNI (an either-sign input the rewrite shifts to unsigned is not modelled)."""
        import keras

        self.model = model
        self.weight_bits = check_weight_bits(weight_bits)
        self.layers = _contractions(model)
        if not self.layers:
            raise QuantizeError("the model has no Conv2D, DepthwiseConv2D, SeparableConv2D or "
                                "Dense layer to quantize")
        x = np.asarray(x, np.float32)
        if len(x) == 0:
            raise QuantizeError("fake quantization needs calibration inputs")
        self.ends = list({id(e): e for e in _unit_ends(model, self.layers).values()}.values())
        watched = [layer.input for layer in self.layers] + [end.output for end in self.ends]
        probe = keras.Model(model.inputs, watched)
        lo = np.full(len(watched), np.inf)
        hi = np.full(len(watched), -np.inf)
        for start in range(0, len(x), batch_size):
            values = probe(x[start:start + batch_size], training=False)
            values = values if isinstance(values, (list, tuple)) else [values]
            for i, v in enumerate(values):
                v = np.asarray(v)
                lo[i], hi[i] = min(lo[i], float(v.min())), max(hi[i], float(v.max()))
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise QuantizeError("the calibration inputs give a layer input that is not finite")
        n = len(self.layers)
        self.ranges = {layer.name: (float(a), float(b))
                       for layer, a, b in zip(self.layers, lo[:n], hi[:n])}
        self.output_ranges = {end.name: (float(a), float(b))
                              for end, a, b in zip(self.ends, lo[n:], hi[n:])}
        # A separable conv's depthwise output is a tensor of its own in the int8 graph
        # (requantized between the two convs): its range, measured here.
        self.middle_ranges = {}
        separable = [l for l in self.layers if isinstance(l, keras.layers.SeparableConv2D)]
        if separable:
            inputs = keras.Model(model.inputs, [l.input for l in separable])
            for start in range(0, len(x), batch_size):
                values = inputs(x[start:start + batch_size], training=False)
                values = values if isinstance(values, (list, tuple)) else [values]
                for layer, v in zip(separable, values):
                    mid = np.asarray(_depthwise_half(layer, v))
                    a, b = self.middle_ranges.get(layer.name, (np.inf, -np.inf))
                    self.middle_ranges[layer.name] = (min(a, float(mid.min())),
                                                      max(b, float(mid.max())))

    def kernel_mapping(self):
        """[(variable, its rounded value)] for keras.StatelessScope(state_mapping=...)."""
        return [(v, round_kernel(v.value, axes, self._levels(layer, v))) for layer in self.layers
                for v, axes in _kernels(layer)]

    def _levels(self, layer, variable):
        """127, or 63 for a Conv2D kernel reading an unsigned input under weight_bits=7."""
        import keras

        if self.weight_bits == 8:
            return _LEVELS_SIGNED
        if isinstance(layer, keras.layers.SeparableConv2D):
            unsigned = (variable is layer.pointwise_kernel
                        and self.middle_ranges[layer.name][0] >= 0)
        else:
            unsigned = (isinstance(layer, keras.layers.Conv2D)
                        and not isinstance(layer, keras.layers.DepthwiseConv2D)
                        and self.ranges[layer.name][0] >= 0)
        return 63.0 if unsigned else _LEVELS_SIGNED

    @contextlib.contextmanager
    def inputs_rounded(self):
        """While it lasts, every contraction rounds its input to 8 bits first."""
        saved = []
        try:
            for layer in self.layers:
                original = layer.call
                lo, hi = self.ranges[layer.name]

                def call(inputs, *args, _original=original, _lo=lo, _hi=hi, **kwargs):
                    return _original(round_input(inputs, _lo, _hi), *args, **kwargs)

                if layer.name in self.middle_ranges:
                    def call(inputs, *args, _layer=layer, _lo=lo, _hi=hi,
                             _mid=self.middle_ranges[layer.name], **kwargs):
                        return _separable(_layer, round_input(inputs, _lo, _hi), _mid)

                layer.call = call
                saved.append((layer, original))
            for end in self.ends:
                original = end.call
                lo, hi = self.output_ranges[end.name]

                def call(inputs, *args, _original=original, _lo=lo, _hi=hi, **kwargs):
                    return round_output(_original(inputs, *args, **kwargs), _lo, _hi)

                end.call = call
                saved.append((end, original))
            yield self
        finally:
            for layer, original in reversed(saved):
                layer.call = original

    def __call__(self, x, training=False):
        """The model's outputs with the int8 rounding (inputs and kernels)."""
        import keras

        with self.inputs_rounded(), keras.StatelessScope(state_mapping=self.kernel_mapping()):
            return self.model(x, training=training)

    def predict(self, x, batch_size=256):
        parts = [np.asarray(self(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0,))
