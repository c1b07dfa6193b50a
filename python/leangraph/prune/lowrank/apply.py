"""The factorised model: a new, flat functional Keras model with chosen layers swapped.

Nested functional blocks are inlined (as prune's rebuild does) and every other
layer is re-created from its config with its weights copied, so fine-tuning
the result never touches the original. A shared layer stays shared: its
factors are made once and called at each of its call sites.
"""

from dataclasses import dataclass, field

import numpy as np

from leangraph.errors import PruneError
from leangraph.prune import functional as F
from leangraph.prune.lowrank.decompose import decomposition

_SUFFIXES = {2: ("_lowrank",), 3: ("_tucker_in", "_tucker_core")}


@dataclass
class Site:
    """A factorisable layer: its decomposition and, per call, its input tensor and shapes."""

    name: str
    decomposition: object
    inputs: list = field(default_factory=list)  # KerasTensors of the flattened model
    calls: list = field(default_factory=list)  # (input shape, output shape)

    def macs(self, rank=None):
        return int(sum(self.decomposition.macs(rank, i, o) for i, o in self.calls))


def _kernel_layer(layer):
    return any(hasattr(layer, a) for a in ("kernel", "pointwise_kernel", "depthwise_kernel"))


class Factorable:
    """One model's factorisable layers and what it leaves whole; makes factorised copies."""

    def __init__(self, model):
        import keras

        self.original = model
        self.model = F.flatten_model(model)
        self.sites = {}
        self.unsupported = []  # (layer name, class name, why it is left whole)
        seen = set()
        for node in F.ordered_nodes(self.model):
            op = node.operation
            if not isinstance(op, keras.layers.Layer) or isinstance(op, keras.Model):
                continue
            if id(op) not in seen:
                seen.add(id(op))
                if _kernel_layer(op) or "Attention" in type(op).__name__:
                    found, why = decomposition(op) if _kernel_layer(op) else (None, None)
                    if found is None:
                        why = why or f"{type(op).__name__}: its inner layers are left whole"
                        self.unsupported.append((op.name, type(op).__name__, why))
                    else:
                        self.sites[op.name] = Site(op.name, found)
            site = self.sites.get(op.name)
            if site is not None and site.decomposition.layer is op:
                tensor = node.input_tensors[0]
                site.inputs.append(tensor)
                site.calls.append((tuple(tensor.shape), tuple(node.outputs[0].shape)))

    def reason(self, name):
        """Why layer `name` cannot be factorised (a PruneError message), or None."""
        if name in self.sites:
            return None
        for layer, cls, why in self.unsupported:
            if layer == name:
                return f"layer '{name}' ({cls}) cannot be factorised: {why}"
        known = {layer.name for layer in self.model.layers}
        if name in known:
            cls = type(self.model.get_layer(name)).__name__
            return f"layer '{name}' ({cls}) has no kernel to factorise"
        return f"no layer '{name}' in model '{self.model.name}'"

    def check(self, ranks):
        """{name: rank} checked: every name factorisable, every rank within its full rank."""
        checked = {}
        for name, rank in ranks.items():
            why = self.reason(name)
            if why:
                raise PruneError(why)
            checked[name] = self.sites[name].decomposition.check_rank(rank)
        return checked

    def macs_saved(self, ranks):
        return sum(self.sites[n].macs() - self.sites[n].macs(r) for n, r in ranks.items())

    def _names(self, name, count, taken):
        names = []
        for suffix in _SUFFIXES[count]:
            candidate, k = name + suffix, 1
            while candidate in taken:
                k += 1
                candidate = f"{name}{suffix}{k}"
            taken.add(candidate)
            names.append(candidate)
        return names

    def rebuild(self, ranks):
        """A new model with each layer of `ranks` ({name: rank}) factorised, the rest cloned."""
        import keras

        ranks = self.check(ranks)
        taken = {layer.name for layer in self.model.layers}
        made, weights = {}, []

        def make(op):
            if not isinstance(op, keras.layers.Layer):
                return op  # a stateless keras.ops operation
            if id(op) in made:
                return made[id(op)]
            if op.name in ranks:
                d = self.sites[op.name].decomposition
                count = 3 if isinstance(ranks[op.name], tuple) else 2
                parts = d.new_layers(ranks[op.name], self._names(op.name, count, taken))
                weights.extend(parts)
                chain = [layer for layer, _ in parts]

                def call(*args, **kwargs):
                    out = chain[0](*args)
                    for layer in chain[1:]:
                        out = layer(out)
                    return out

                made[id(op)] = call
            else:
                try:
                    new = type(op).from_config(op.get_config())
                except Exception as exc:  # a custom layer whose config does not round-trip
                    raise PruneError(f"layer '{op.name}' ({type(op).__name__}) cannot be "
                                     f"re-created from its config: {exc}") from None
                weights.append((new, op.get_weights()))
                made[id(op)] = new
            return made[id(op)]

        inputs = F.new_inputs(self.model)
        outputs = F.replay(self.model, inputs, make, expand_nested=False)
        model = keras.Model(F.single(inputs), outputs, name=self.model.name)
        for layer, values in weights:
            expected = [tuple(v.shape) for v in layer.weights]
            if expected != [tuple(np.shape(v)) for v in values]:
                raise PruneError(f"internal: weights for '{layer.name}' do not fit "
                                 f"({[np.shape(v) for v in values]} vs {expected})")
            layer.set_weights(values)
        return model

    def layer_inputs(self, x, limit=64):
        """{name: [inputs per call]} of every site on the first `limit` examples of `x`."""
        import keras

        owners, tensors = [], []
        for name, site in self.sites.items():
            for tensor in site.inputs:
                owners.append(name)
                tensors.append(tensor)
        if not tensors:
            return {}
        probe = keras.Model(F.single(self.model.inputs), tensors)
        values = probe(x[:limit], training=False)
        values = values if isinstance(values, (list, tuple)) else [values]
        found = {}
        for name, value in zip(owners, values):
            found.setdefault(name, []).append(np.asarray(value, dtype=np.float32))
        return found

    def reconstruction_error(self, name, rank, inputs):
        """||f(x; K - K_r)|| / ||f(x; K) + b|| over the layer's recorded inputs:
        the relative error of its pre-activation output on the data."""
        d = self.sites[name].decomposition
        delta = d.kernel - d.approximation(d.check_rank(rank))
        num = den = 0.0
        for x in inputs:
            err = d.response(x, delta)
            ref = d.response(x, d.kernel)
            if d.bias is not None:
                ref = ref + d.bias
            num += float(np.sum(np.square(err, dtype=np.float64)))
            den += float(np.sum(np.square(ref, dtype=np.float64)))
        return float(np.sqrt(num / den)) if den > 0 else 0.0
