"""Which channels of a Keras 3 functional model must be removed together.

Every tensor's last (channel) axis is described by an integer array that
names, per channel, a *unit*. A layer that makes new channels (a convolution,
a dense layer) allocates fresh units; layers that treat channels one by one
(batch norm, activations, pooling, depthwise convolutions) pass their input's
units on; element-wise ops between tensors (a residual add, an SE multiply)
declare the units at each position the same, which is what the union-find
below records. Removing a unit then removes one channel from every tensor and
every weight that carries it, and nothing else, so the model stays correct.

Whatever the analysis does not understand (a Reshape, a Lambda, a custom
layer, a model input or output) *freezes* the units it touches: they are
never removed. Being wrong here would produce a wrong model; being cautious
only leaves some channels in place.

The graph is read from `model.operations`' nodes, not `model.layers`, because
Keras 3 records `keras.ops` calls such as `x + y` as operations too.
"""

from dataclasses import dataclass, field

import numpy as np

from leangraph.prune.functional import flatten_model, input_name, ordered_nodes

# Activations that act on each channel on its own; anything else (softmax over
# channels, glu) couples the channels of the layer that applies it.
_ELEMENTWISE_ACTIVATIONS = frozenset({
    None, "linear", "relu", "relu6", "sigmoid", "tanh", "swish", "silu", "gelu", "elu",
    "selu", "softplus", "softsign", "hard_sigmoid", "hard_silu", "hard_swish",
    "leaky_relu", "exponential", "mish", "log_sigmoid", "celu", "hard_tanh",
})

# Layer kinds that own weights the rebuild slices.
CONV, DENSE, DEPTHWISE, SEPARABLE, BATCHNORM = "conv", "dense", "depthwise", "separable", "bn"
RESHAPE = "reshape"  # no weights, but its target_shape names the channel count
PRODUCERS = (CONV, DENSE, SEPARABLE)


class _Units:
    """Union-find over channel units; a set is frozen when any member is."""

    def __init__(self):
        self.parent = []
        self.frozen = {}  # root -> the first reason it may not be removed

    def new(self, count, reason=None):
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        ids = np.arange(start, start + count, dtype=np.int64)
        if reason:
            self.freeze(ids, reason)
        return ids

    def find(self, unit):
        parent = self.parent
        root = unit
        while parent[root] != root:
            root = parent[root]
        while parent[unit] != root:
            parent[unit], unit = root, parent[unit]
        return root

    def roots(self, ids):
        return np.fromiter((self.find(int(u)) for u in ids), dtype=np.int64, count=len(ids))

    def union(self, a, b):
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx == ry:
                continue
            self.parent[ry] = rx
            if ry in self.frozen:
                self.frozen.setdefault(rx, self.frozen.pop(ry))

    def freeze(self, ids, reason):
        for u in ids.tolist():
            self.frozen.setdefault(self.find(u), reason)

    def is_frozen(self, root):
        return root in self.frozen


@dataclass
class LayerRecord:
    """A layer whose weights carry channels: what its input and output channels are."""

    name: str
    kind: str
    in_ids: np.ndarray
    out_ids: np.ndarray
    depth_multiplier: int = 1
    calls: list = field(default_factory=list)  # (input shape, output shape) per call


@dataclass
class Group:
    """Channels that are removed together: the producers that make them and who reads them."""

    index: int
    producers: tuple  # layer names, sorted
    consumers: tuple  # layers whose input channels are these (incl. batch norms, depthwise)
    roots: np.ndarray  # removable channel classes, in the first producer's order
    size: int  # all channel classes, removable or not
    frozen: tuple  # why the rest may not be removed (distinct reasons)

    @property
    def channels(self):
        return int(len(self.roots))

    @property
    def prunable(self):
        return self.channels > 1


def _channels(tensor):
    shape = tuple(tensor.shape)
    if len(shape) < 2 or shape[-1] is None:
        return None
    return int(shape[-1])


def _layer_types():
    from keras import layers

    def pick(*names):
        return tuple(getattr(layers, n) for n in names if hasattr(layers, n))

    return {
        "conv": pick("Conv1D", "Conv2D", "Conv3D"),
        "dense": pick("Dense"),
        "depthwise": pick("DepthwiseConv1D", "DepthwiseConv2D"),
        "separable": pick("SeparableConv1D", "SeparableConv2D"),
        "bn": pick("BatchNormalization"),
        "merge": pick("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"),
        "concat": pick("Concatenate"),
        "flatten": pick("Flatten"),
        "reshape": pick("Reshape"),
        # One channel in, the same channel out; data_format is checked separately.
        "spatial": pick(
            "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D",
            "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D",
            "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling1D",
            "GlobalMaxPooling2D", "GlobalMaxPooling3D", "ZeroPadding1D", "ZeroPadding2D",
            "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D",
            "UpSampling2D", "UpSampling3D",
        ),
        "pointwise": pick(
            "ReLU", "ELU", "LeakyReLU", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
            "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
            "ActivityRegularization", "Identity",
        ),
        "activation": pick("Activation"),
    }


def _op_types():
    from keras.src.ops import nn, numpy as knp

    def pick(module, *names):
        return tuple(getattr(module, n) for n in names if hasattr(module, n))

    return {
        "merge": pick(knp, "Add", "Subtract", "Multiply", "Maximum", "Minimum", "Divide",
                      "TrueDivide"),
        "pointwise": pick(nn, "Relu", "Relu6", "Sigmoid", "Softplus", "Softsign", "Silu",
                          "LeakyRelu", "HardSigmoid", "HardSilu", "Elu", "Selu", "Gelu",
                          "Celu", "LogSigmoid", "HardTanh")
                     + pick(knp, "Tanh", "Abs", "Absolute", "Square", "Negative", "Exp",
                            "Sqrt"),
        "reduce": pick(knp, "Mean", "Max", "Min", "Sum"),
        "concat": pick(knp, "Concatenate"),
    }


def _axis_is_last(axis, rank):
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    return axis == -1 or axis == rank - 1


class ChannelGraph:
    """The channel dependencies of one model: records, groups, MACs, and what was frozen."""

    def __init__(self, model):
        self.original = model
        self.model = flatten_model(model)
        self.units = _Units()
        self.records = {}  # layer name -> LayerRecord
        self.unsupported = []  # (operation name, class name, reason)
        self._ids = {}  # id(KerasTensor) -> unit ids or None
        self._roots = {}
        self._layer_kinds = _layer_types()
        self._op_kinds = _op_types()
        self._analyze()
        self.groups = self._make_groups()

    # -- building -------------------------------------------------------

    def _analyze(self):
        for tensor in self.model.inputs:
            self._set(tensor, f"model input '{input_name(tensor)}'")
        for node in ordered_nodes(self.model):
            self._visit(node)
        for tensor in self.model.outputs:
            ids = self._ids.get(id(tensor))
            if ids is not None:
                self.units.freeze(ids, f"model output '{tensor._keras_history.operation.name}'")

    def _set(self, tensor, frozen_reason=None, ids=None):
        if ids is None:
            count = _channels(tensor)
            ids = None if count is None else self.units.new(count, frozen_reason)
        self._ids[id(tensor)] = ids
        return ids

    def _block(self, node, reason):
        """Freezes everything the node reads and writes."""
        op = node.operation
        text = f"{reason} ({type(op).__name__} '{op.name}')"
        self.unsupported.append((op.name, type(op).__name__, reason))
        for tensor in node.input_tensors:
            ids = self._ids.get(id(tensor))
            if ids is not None:
                self.units.freeze(ids, text)
        for tensor in node.outputs:
            self._set(tensor, text)

    def _visit(self, node):
        import keras

        op = node.operation
        kinds = self._layer_kinds if isinstance(op, keras.layers.Layer) else self._op_kinds
        kind = next((k for k, types in kinds.items() if type(op) in types), None)
        if isinstance(op, keras.Model):
            return self._block(node, "model that is not a functional graph")
        if kind is None:
            what = "custom or unsupported layer" if isinstance(op, keras.layers.Layer) \
                else "unsupported op"
            return self._block(node, what)
        if len(node.outputs) != 1:
            return self._block(node, "several outputs")
        handler = getattr(self, "_visit_" + kind)
        problem = handler(node, op)
        if problem:
            self._block(node, problem)

    def _input(self, node, single=True):
        tensors = node.input_tensors
        if single and len(tensors) != 1:
            return None
        ids = [self._ids.get(id(t)) for t in tensors]
        if any(i is None for i in ids):
            return None
        return ids[0] if single else ids

    def _layer_problem(self, op, config):
        if config.get("data_format", "channels_last") != "channels_last":
            return "channels_first data format"
        if getattr(op, "quantization_mode", None) or getattr(op, "lora_enabled", False):
            return "quantized or LoRA layer"
        return None

    def _record(self, node, op, kind, in_ids, out_count=None, multiplier=1):
        """The layer's record; a shared layer's calls must agree on their input channels."""
        record = self.records.get(op.name)
        if record is None:
            if out_count is not None:
                out_ids = self.units.new(out_count)
            elif kind == DEPTHWISE:
                out_ids = np.repeat(in_ids, multiplier)
            else:
                out_ids = in_ids
            record = LayerRecord(op.name, kind, in_ids, out_ids, multiplier)
            self.records[op.name] = record
        else:
            if len(record.in_ids) != len(in_ids):
                return None
            self.units.union(record.in_ids, in_ids)
        record.calls.append((tuple(node.input_tensors[0].shape), tuple(node.outputs[0].shape)))
        return record

    def _visit_conv(self, node, op):
        config = op.get_config()
        problem = self._layer_problem(op, config)
        if problem:
            return problem
        if config.get("groups", 1) != 1:
            return "grouped convolution"
        return self._producer(node, op, CONV, int(config["filters"]))

    def _visit_dense(self, node, op):
        config = op.get_config()
        problem = self._layer_problem(op, config)
        if problem:
            return problem
        return self._producer(node, op, DENSE, int(config["units"]))

    def _visit_separable(self, node, op):
        config = op.get_config()
        problem = self._layer_problem(op, config)
        if problem:
            return problem
        return self._producer(node, op, SEPARABLE, int(config["filters"]),
                              int(config.get("depth_multiplier", 1)))

    def _producer(self, node, op, kind, filters, multiplier=1):
        in_ids = self._input(node)
        if in_ids is None:
            return "input channels unknown"
        record = self._record(node, op, kind, in_ids, filters, multiplier)
        if record is None:
            return "shared layer called with different channel counts"
        activation = op.get_config().get("activation")
        if activation not in _ELEMENTWISE_ACTIVATIONS:
            # Its own outputs are coupled (a softmax head); what it reads is not.
            self.units.freeze(record.out_ids, f"activation {activation!r} of '{op.name}' "
                              "mixes its channels")
        self._set(node.outputs[0], ids=record.out_ids)
        return None

    def _visit_depthwise(self, node, op):
        config = op.get_config()
        problem = self._layer_problem(op, config)
        if config.get("activation") not in _ELEMENTWISE_ACTIVATIONS:
            problem = f"activation {config.get('activation')!r} mixes channels"
        if problem:
            return problem
        in_ids = self._input(node)
        if in_ids is None:
            return "input channels unknown"
        multiplier = int(config.get("depth_multiplier", 1))
        record = self._record(node, op, DEPTHWISE, in_ids, None, multiplier)
        if record is None:
            return "shared layer called with different channel counts"
        self._set(node.outputs[0], ids=record.out_ids)
        return None

    def _visit_bn(self, node, op):
        in_ids = self._input(node)
        if in_ids is None:
            return "input channels unknown"
        if not _axis_is_last(op.axis, len(node.outputs[0].shape)):
            return "normalizes an axis other than the channels"
        record = self._record(node, op, BATCHNORM, in_ids)
        if record is None:
            return "shared layer called with different channel counts"
        self._set(node.outputs[0], ids=record.out_ids)
        return None

    def _pass_through(self, node):
        in_ids = self._input(node)
        if in_ids is None or len(in_ids) != _channels(node.outputs[0]):
            return "input channels unknown"
        self._set(node.outputs[0], ids=in_ids)
        return None

    def _visit_spatial(self, node, op):
        if op.get_config().get("data_format", "channels_last") != "channels_last":
            return "channels_first data format"
        return self._pass_through(node)

    def _visit_pointwise(self, node, op):
        return self._pass_through(node)

    def _visit_activation(self, node, op):
        if op.get_config().get("activation") not in _ELEMENTWISE_ACTIVATIONS:
            return f"activation {op.get_config().get('activation')!r} mixes channels"
        return self._pass_through(node)

    def _visit_reduce(self, node, op):
        axis = getattr(op, "axis", None)
        rank = len(node.input_tensors[0].shape) if node.input_tensors else 0
        if axis is None or rank < 2:
            return "reduces over the channels"
        axes = [a % rank for a in (axis if isinstance(axis, (list, tuple)) else [axis])]
        if rank - 1 in axes:
            return "reduces over the channels"
        return self._pass_through(node)

    def _visit_merge(self, node, op):
        import keras

        out_count = _channels(node.outputs[0])
        if out_count is None:
            return "output channels unknown"
        arguments = keras.tree.flatten((node.arguments.args, node.arguments.kwargs))
        full = []
        for value in arguments:
            if isinstance(value, keras.KerasTensor):
                shape = tuple(value.shape)
                if len(shape) == 0 or (len(shape) >= 2 and shape[-1] == 1):
                    continue  # broadcast along the channels: does not couple them
                ids = self._ids.get(id(value))
                if ids is None or len(ids) != out_count:
                    return "operand channels unknown or broadcast"
                full.append(ids)
            elif value is None or isinstance(value, (bool, int, float, str)):
                continue
            elif np.size(value) != 1:
                return "constant operand with several values"
        if not full:
            return "no channel operand"
        for other in full[1:]:
            self.units.union(full[0], other)
        self._set(node.outputs[0], ids=full[0])
        return None

    def _visit_concat(self, node, op):
        rank = len(node.outputs[0].shape)
        if not _axis_is_last(op.axis, rank):
            return self._visit_merge(node, op)
        ids = self._input(node, single=False)
        if ids is None:
            return "input channels unknown"
        joined = np.concatenate(ids)
        if len(joined) != _channels(node.outputs[0]):
            return "channel count does not add up"
        self._set(node.outputs[0], ids=joined)
        return None

    def _visit_flatten(self, node, op):
        if op.get_config().get("data_format", "channels_last") != "channels_last":
            return "channels_first data format"
        in_ids = self._input(node)
        shape = tuple(node.input_tensors[0].shape)
        if in_ids is None or any(d is None for d in shape[1:]):
            return "input shape unknown"
        # Channels-last flattening: the channel index runs fastest.
        positions = int(np.prod(shape[1:-1], dtype=np.int64))
        self._set(node.outputs[0], ids=np.tile(in_ids, positions))
        return None

    def _visit_reshape(self, node, op):
        # Row-major reshapes that keep the last axis (SE blocks' (N, C) -> (N, 1, 1, C))
        # leave channel c at flat index i * C + c: the same channels come out.
        target = tuple(op.get_config()["target_shape"])
        in_ids = self._input(node)
        count = _channels(node.outputs[0])
        if in_ids is None or not target or target[-1] != count or len(in_ids) != count:
            return "reshape that moves channels"
        record = self._record(node, op, RESHAPE, in_ids)
        if record is None:
            return "shared layer called with different channel counts"
        self._set(node.outputs[0], ids=record.out_ids)
        return None

    # -- groups ---------------------------------------------------------

    def _make_groups(self):
        roots_of = {}
        owner = {}  # root -> first producer owning it
        producer_parent = {}

        def find(name):
            while producer_parent[name] != name:
                producer_parent[name] = producer_parent[producer_parent[name]]
                name = producer_parent[name]
            return name

        for name, record in self.records.items():
            if record.kind not in PRODUCERS:
                continue
            roots = self.roots(record.out_ids)
            roots_of[name] = roots
            producer_parent[name] = name
            for root in roots.tolist():
                if root in owner:
                    a, b = find(owner[root]), find(name)
                    if a != b:
                        producer_parent[b] = a
                else:
                    owner[root] = name
        members = {}
        for name in roots_of:
            members.setdefault(find(name), []).append(name)
        groups = []
        for names in members.values():
            seen, ordered = set(), []
            for name in names:
                for root in roots_of[name].tolist():
                    if root not in seen:
                        seen.add(root)
                        ordered.append(root)
            removable = [r for r in ordered if not self.units.is_frozen(r)]
            reasons = sorted({self.units.frozen[r] for r in ordered if self.units.is_frozen(r)})
            consumers = sorted(
                name for name, record in self.records.items()
                if seen.intersection(self.roots(record.in_ids).tolist()))
            groups.append(Group(
                index=0, producers=tuple(sorted(names)), consumers=tuple(consumers),
                roots=np.asarray(removable, dtype=np.int64), size=len(ordered),
                frozen=tuple(reasons)))
        groups.sort(key=lambda g: g.producers)
        for index, group in enumerate(groups):
            group.index = index
        return groups

    # -- queries --------------------------------------------------------

    @property
    def prunable_groups(self):
        return [g for g in self.groups if g.prunable]

    def group_of(self, layer_name):
        for group in self.groups:
            if layer_name in group.producers:
                return group
        raise KeyError(layer_name)

    def roots(self, ids):
        """Roots of `ids`, cached: the union-find does not change after the analysis."""
        key = id(ids)
        hit = self._roots.get(key)
        if hit is None or hit[0] is not ids:
            hit = (ids, self.units.roots(ids))
            self._roots[key] = hit
        return hit[1]

    def mask(self, ids, removed):
        if not removed:
            return np.ones(len(ids), dtype=bool)
        return ~np.isin(self.roots(ids), np.fromiter(removed, dtype=np.int64))

    def layer_macs(self, removed=frozenset()):
        """MACs per example of each conv/dense layer, after removing `removed` channels."""
        result = {}
        for name, record in self.records.items():
            if record.kind in (BATCHNORM, RESHAPE):
                continue
            keep_in = int(self.mask(record.in_ids, removed).sum())
            keep_out = int(self.mask(record.out_ids, removed).sum())
            total = 0
            for in_shape, out_shape in record.calls:
                total += _macs(self.model.get_layer(name), record, in_shape, out_shape,
                               keep_in, keep_out)
            result[name] = total
        return result

    def macs(self, removed=frozenset()):
        return int(sum(self.layer_macs(removed).values()))

    def prunable_share(self):
        """The share of conv/matmul MACs in layers whose channels some prunable group touches."""
        prunable = set()
        for group in self.prunable_groups:
            prunable.update(group.roots.tolist())
        total = touched = 0
        for name, macs in self.layer_macs().items():
            record = self.records[name]
            total += macs
            roots = set(self.roots(record.in_ids).tolist())
            roots.update(self.roots(record.out_ids).tolist())
            if roots & prunable:
                touched += macs
        return touched / total if total else 0.0

    def describe(self):
        """One line per group (for reports and errors)."""
        lines = []
        for g in self.groups:
            state = f"{g.channels}/{g.size} removable" if g.prunable else "frozen"
            lines.append(f"group {g.index}: {', '.join(g.producers)} ({state})")
        return lines


def _macs(layer, record, in_shape, out_shape, keep_in, keep_out):
    spatial = int(np.prod([d or 1 for d in out_shape[1:-1]], dtype=np.int64))
    if record.kind == DENSE:
        return spatial * keep_in * keep_out
    kernel = int(np.prod(layer.kernel_size)) if hasattr(layer, "kernel_size") else 1
    if record.kind == CONV:
        return spatial * kernel * keep_in * keep_out
    m = record.depth_multiplier
    if record.kind == DEPTHWISE:
        return spatial * kernel * keep_in * m
    if record.kind == SEPARABLE:
        return spatial * kernel * keep_in * m + spatial * keep_in * m * keep_out
    return 0
