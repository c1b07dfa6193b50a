"""How much each removable channel matters: one score per channel class (higher = keep).

A channel class spans several layers (a residual stream is written by many
convolutions and read by many more), so its score sums every layer's view of
it. Each layer's contribution is divided by its mean over the layer's
channels first; otherwise the widest or largest-valued layer would decide
alone.
"""

import numpy as np

from leangraph.errors import PruneError
from leangraph.prune import groups as G
from leangraph.prune.distill import as_logits, outputs_are_probabilities


CRITERIA = ("l2", "fpgm", "taylor")


def _weights(layer):
    return {v.path.rsplit("/", 1)[-1]: np.asarray(value)
            for v, value in zip(layer.weights, layer.get_weights())}


def _add(scores, graph, ids, values):
    values = np.asarray(values, dtype=np.float64)
    mean = values.mean() if values.size else 0.0
    if mean <= 0:
        return
    for root, value in zip(graph.roots(ids).tolist(), (values / mean).tolist()):
        scores[root] = scores.get(root, 0.0) + value


def _per_out(kernel):
    return (kernel.reshape(-1, kernel.shape[-1]) ** 2).sum(axis=0)


def _per_in(kernel):
    moved = np.moveaxis(kernel, -2, 0)
    return (moved.reshape(moved.shape[0], -1) ** 2).sum(axis=1)


def l2_scores(graph):
    """Group L2: squared weight norms of each channel's filters and of its readers' inputs."""
    scores = {}
    for name, record in graph.records.items():
        weights = _weights(graph.model.get_layer(name))
        if record.kind in (G.CONV, G.DENSE):
            _add(scores, graph, record.out_ids, _per_out(weights["kernel"]))
            _add(scores, graph, record.in_ids, _per_in(weights["kernel"]))
        elif record.kind == G.SEPARABLE:
            _add(scores, graph, record.out_ids, _per_out(weights["pointwise_kernel"]))
            _add(scores, graph, record.in_ids, _per_in(weights["depthwise_kernel"]))
        elif record.kind == G.DEPTHWISE:
            _add(scores, graph, record.in_ids, _per_in(weights["kernel"]))
    return {r: float(np.sqrt(v)) for r, v in scores.items()}


def _median_distances(filters):
    """Per filter, the summed distance to the layer's other filters (FPGM's redundancy)."""
    sq = (filters ** 2).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * filters @ filters.T, 0.0)
    return np.sqrt(d2).sum(axis=1)


def fpgm_scores(graph):
    """FPGM: filters near their layer's geometric median are the most replaceable."""
    scores = {}
    for name, record in graph.records.items():
        if record.kind not in G.PRODUCERS:
            continue
        weights = _weights(graph.model.get_layer(name))
        kernel = weights["pointwise_kernel" if record.kind == G.SEPARABLE else "kernel"]
        filters = kernel.reshape(-1, kernel.shape[-1]).T.astype(np.float64)
        _add(scores, graph, record.out_ids, _median_distances(filters))
    return scores


def taylor_scores(graph, x, batch_size=32, max_batches=8, seed=0):
    """First-order Taylor: |sum of weight x gradient| over each channel's filter, BN and bias.

    The loss is the cross-entropy against the unpruned model's own top-1
    predictions, so only inputs are needed (against its soft outputs the
    gradient would be zero: the model already matches itself).
    """
    import tensorflow as tf

    if x is None or len(x) == 0:
        raise PruneError("the taylor criterion needs input data")
    model = graph.model
    probabilities = outputs_are_probabilities(model)
    tracked = []  # (variable, record, reduce function)
    for name, record in graph.records.items():
        layer = model.get_layer(name)
        for v in layer.trainable_weights:
            weight = v.path.rsplit("/", 1)[-1]
            if record.kind in G.PRODUCERS and weight in ("kernel", "pointwise_kernel", "bias"):
                tracked.append((v, record.out_ids, len(v.shape) > 1))
            elif record.kind == G.BATCHNORM and weight in ("gamma", "beta"):
                tracked.append((v, record.out_ids, False))
    if not tracked:
        return {}
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))[:batch_size * max_batches]
    accumulated = [np.zeros(len(ids)) for _, ids, _ in tracked]
    variables = [v for v, _, _ in tracked]
    for start in range(0, len(order), batch_size):
        batch = tf.constant(x[order[start:start + batch_size]])
        with tf.GradientTape() as tape:
            logits = as_logits(model(batch, training=False), probabilities)
            labels = tf.stop_gradient(tf.argmax(logits, axis=-1))
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        grads = tape.gradient(loss, variables)
        for k, (v, _, is_kernel) in enumerate(tracked):
            if grads[k] is None:
                continue
            product = (np.asarray(v.numpy()) * np.asarray(grads[k]))
            per_channel = product.reshape(-1, product.shape[-1]).sum(axis=0) if is_kernel \
                else product
            accumulated[k] += per_channel ** 2
    scores = {}
    for (_, ids, _), values in zip(tracked, accumulated):
        _add(scores, graph, ids, values)
    return scores


def scores(graph, criterion="l2", x=None, **kwargs):
    if criterion == "l2":
        return l2_scores(graph)
    if criterion == "fpgm":
        return fpgm_scores(graph)
    if criterion == "taylor":
        return taylor_scores(graph, x, **kwargs)
    raise PruneError(f"unknown criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
