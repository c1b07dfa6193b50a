"""Physical removal of channels: a smaller, ordinary Keras model, no masks.

Every layer is re-created from its config (with fewer `filters`/`units` where
its output channels shrink) and called on the new tensors in the original
order; its weights are the original ones with the removed input and output
channels sliced away.
"""

from dataclasses import dataclass

import numpy as np

from leangraph.errors import PruneError
from leangraph.prune import functional as F
from leangraph.prune import groups as G


@dataclass(frozen=True)
class Plan:
    """Which channel classes go: `removed` holds union-find roots of `graph`."""

    graph: "G.ChannelGraph"
    removed: frozenset

    def in_mask(self, layer_name):
        return self.graph.mask(self.graph.records[layer_name].in_ids, self.removed)

    def out_mask(self, layer_name):
        return self.graph.mask(self.graph.records[layer_name].out_ids, self.removed)

    def macs(self):
        return self.graph.macs(self.removed)

    def kept(self, group):
        removed = set(self.removed)
        return sum(1 for r in group.roots.tolist() if r not in removed)


def plan_from_scores(graph, scores, keep):
    """Removes each group's lowest-scoring channels so that `keep[group.index]` remain.

    `scores` maps a root to its importance. Every producer keeps at least one
    channel of its own, so no layer is left with zero filters.
    """
    removed = set()
    for group in graph.prunable_groups:
        count = keep.get(group.index, group.channels)
        if not 1 <= count <= group.channels:
            raise PruneError(f"group {group.index} keeps {count} of {group.channels} channels; "
                             f"give 1 to {group.channels}")
        order = sorted(group.roots.tolist(), key=lambda r: (scores.get(r, 0.0), r))
        removed.update(order[:group.channels - count])
        for name in group.producers:
            roots = graph.roots(graph.records[name].out_ids).tolist()
            if all(r in removed or graph.units.is_frozen(r) for r in roots):
                alive = [r for r in roots if not graph.units.is_frozen(r)]
                if alive:
                    removed.discard(max(alive, key=lambda r: scores.get(r, 0.0)))
    return Plan(graph, frozenset(removed))


def _slice(kind, weight_name, value, in_mask, out_mask, multiplier):
    if kind in (G.CONV, G.DENSE):
        if weight_name == "kernel":
            return value[..., in_mask, :][..., out_mask]
        if weight_name == "bias":
            return value[out_mask]
    elif kind == G.DEPTHWISE:
        if weight_name == "kernel":
            return value[..., in_mask, :]
        if weight_name == "bias":
            return value[np.repeat(in_mask, multiplier)]
    elif kind == G.SEPARABLE:
        if weight_name == "depthwise_kernel":
            return value[..., in_mask, :]
        if weight_name == "pointwise_kernel":
            return value[..., np.repeat(in_mask, multiplier), :][..., out_mask]
        if weight_name == "bias":
            return value[out_mask]
    elif kind == G.BATCHNORM and value.ndim == 1:
        return value[in_mask]
    raise PruneError(f"cannot slice weight '{weight_name}' of a {kind} layer")


def _weight_name(variable):
    return variable.path.rsplit("/", 1)[-1]


def rebuild(plan):
    """The pruned model: a new functional Keras model, independent of the original."""
    import keras

    graph = plan.graph
    source = graph.model
    clones = {}  # id(old layer) -> (old, new)

    def clone(op):
        if not isinstance(op, keras.layers.Layer):
            return op  # stateless keras.ops operation
        if id(op) in clones:
            return clones[id(op)][1]
        config = op.get_config()
        record = graph.records.get(op.name)
        if record is not None and record.kind in G.PRODUCERS:
            key = "units" if record.kind == G.DENSE else "filters"
            config[key] = int(plan.out_mask(op.name).sum())
        elif record is not None and record.kind == G.RESHAPE:
            config["target_shape"] = tuple(config["target_shape"][:-1]) + (
                int(plan.out_mask(op.name).sum()),)
        try:
            new = type(op).from_config(config)
        except Exception as exc:  # a custom layer whose config does not round-trip
            raise PruneError(f"layer '{op.name}' ({type(op).__name__}) cannot be re-created "
                             f"from its config: {exc}") from None
        clones[id(op)] = (op, new)
        return new

    inputs = F.new_inputs(source)
    outputs = F.replay(source, inputs, clone, expand_nested=False)
    model = keras.Model(F.single(inputs), outputs, name=source.name)
    for old, new in clones.values():
        _copy_weights(plan, old, new)
    return model


def _copy_weights(plan, old, new):
    record = plan.graph.records.get(old.name)
    values = old.get_weights()
    if record is not None:
        in_mask, out_mask = plan.in_mask(old.name), plan.out_mask(old.name)
        if not (in_mask.all() and out_mask.all()):
            values = [_slice(record.kind, _weight_name(v), value, in_mask, out_mask,
                             record.depth_multiplier)
                      for v, value in zip(old.weights, values)]
    expected = [tuple(v.shape) for v in new.weights]
    if expected != [tuple(v.shape) for v in values]:
        raise PruneError(f"internal: weights of '{old.name}' do not fit the pruned layer "
                         f"({[v.shape for v in values]} vs {expected})")
    new.set_weights(values)


def zeroed_copy(plan):
    """The original model with every removed channel's input slice zeroed in its readers.

    The pruned model computes exactly this model's outputs; tests compare the two.
    """
    import keras

    source = plan.graph.model
    copy = keras.models.clone_model(source)
    copy.set_weights(source.get_weights())
    for name, record in plan.graph.records.items():
        if record.kind not in G.PRODUCERS:
            continue
        layer = copy.get_layer(name)
        drop = ~plan.in_mask(name)
        if record.kind == G.SEPARABLE:
            drop = np.repeat(drop, record.depth_multiplier)
        values = []
        for v, value in zip(layer.weights, layer.get_weights()):
            if _weight_name(v) in ("kernel", "pointwise_kernel"):
                value = value.copy()
                value[..., drop, :] = 0.0
            values.append(value)
        layer.set_weights(values)
    return copy
