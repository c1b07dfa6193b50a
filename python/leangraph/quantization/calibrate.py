"""leangraph.calibrate(): the value ranges an 8-bit rewrite needs, measured on sample inputs.

The float graph runs on the samples and every tensor a quantized region can read
or write (the inputs of convolutions and matmuls, and the outputs of those ops,
their BiasAdd, their Relu/Relu6 and the residual adds they feed) is observed:

- "minmax": the smallest and largest value seen;
- "percentile": the `percentile`-th percentile of |x| per sample (and of x for
  the lower end), averaged over samples: one outlier pixel does not set the scale;
- "kl": the clipping threshold whose 8-bit histogram is closest, in KL
  divergence, to the observed one (entropy calibration).
"""

import math
from dataclasses import dataclass, field

import numpy as np

from leangraph import graphs
from leangraph.runner import Runner
from leangraph.errors import QuantizeError

METHODS = ("minmax", "percentile", "kl")
_CONTRACTIONS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")
_CHAIN = ("BiasAdd", "Relu", "Relu6")
_BINS = 2048


@dataclass
class Calibration:
    """Observed ranges: {tensor name "node:port": (min, max)}."""

    ranges: dict
    method: str
    samples: int
    source: str = "user data"  # or "seeded random inputs (no calibration data given)"
    notes: list = field(default_factory=list)

    def to_param(self):
        """The ranges in quantize_int8's `ranges=` syntax."""
        return ";".join(f"{name}={lo!r},{hi!r}" for name, (lo, hi) in sorted(self.ranges.items()))

    def to_dict(self):
        return {
            "method": self.method,
            "samples": self.samples,
            "source": self.source,
            "ranges": {k: [float(lo), float(hi)] for k, (lo, hi) in self.ranges.items()},
        }



def observed_tensors(graph_def):
    """The float tensors a quantized unit may read or write, as "node:port"."""
    by_name = {n.name: n for n in graph_def.node}
    # Loop bodies and cond branches stay float: a session cannot fetch their tensors.
    in_loops = graphs.loop_nodes(graph_def) | graphs.branch_nodes(graph_def)
    names = []

    def add(name):
        key = graphs.tensor_name(name)
        if key not in names:
            names.append(key)

    for node in graph_def.node:
        dtype = node.attr["T"].type if "T" in node.attr else None
        if dtype != 1 or node.name in in_loops:  # DT_FLOAT, fetchable
            continue
        if node.op in _CONTRACTIONS:
            source = node.input[0]
            add(source)
            producer = by_name.get(graphs.node_name(source))
            if producer is not None and producer.op == "Pad" and producer.input:
                add(producer.input[0])
            add(node.name)
        elif node.op in _CHAIN:
            add(node.name)
        elif node.op in ("Add", "AddV2") and any(
                getattr(by_name.get(graphs.node_name(i)), "op", None) in _CHAIN + _CONTRACTIONS
                for i in node.input):
            add(node.name)  # a residual add a conv may take in as a Sum fusion
    return [n for n in names if not n.startswith("^")]


class ExampleFeeds:
    """Examples fed one run each, as they are: a list of {input tensor: array}.

    For inputs whose arrays cannot be stacked on a batch axis (a time-major
    sequence with its lengths vector and state, examples of different lengths):
    every run feeds one example whole, and its values are joined (see join).
    """

    def __init__(self, runs):
        self.runs = list(runs)

    def __len__(self):
        return len(self.runs)

    def take(self, start, stop):
        return ExampleFeeds(self.runs[start:stop])


def example_count(feeds):
    """How many examples `feeds` holds ({tensor: array} stacked on axis 0, or ExampleFeeds)."""
    if isinstance(feeds, ExampleFeeds):
        return len(feeds)
    return next(iter(feeds.values())).shape[0]


def take(feeds, start, stop):
    """Examples start..stop of `feeds`, in the form it has."""
    if isinstance(feeds, ExampleFeeds):
        return feeds.take(start, stop)
    return {k: v[start:stop] for k, v in feeds.items()}


def join(parts):
    """One array of the values several runs fetched of one tensor.

    Stacked on axis 0 where the runs agree on the other axes (batches of one
    graph); examples fed as they are may disagree (a sequence's length on any
    axis), and are then joined as rows of the last axis, where that agrees
    (per-channel statistics still read it), else as one flat axis. Every reader
    of these values (ranges, SQNR, per-channel errors) reads values, not their
    layout, and the float and 8-bit graphs' runs are joined alike.
    """
    parts = [np.asarray(p) for p in parts]
    if len(parts) == 1:
        return parts[0]
    if all(p.ndim for p in parts) and len({p.shape[1:] for p in parts}) == 1:
        return np.concatenate(parts)
    if all(p.ndim for p in parts) and len({p.shape[-1] for p in parts}) == 1:
        return np.concatenate([p.reshape(-1, p.shape[-1]) for p in parts])
    return np.concatenate([p.reshape(-1) for p in parts])


def _placeholder_dims(node):
    shape = node.attr["shape"].shape
    return None if shape.unknown_rank else [d.size for d in shape.dim]


def _example_feeds(placeholders, samples):
    """ExampleFeeds of a list of {input: array}, each example fed whole: checked like the
    stacked form, except that an example has the input's full rank and no batch axis."""
    known = {p.name: p for p in placeholders}
    runs = []
    for index, example in enumerate(samples):
        if not isinstance(example, dict):
            raise QuantizeError("calibration examples fed one by one must each be "
                                f"{{input name: array}}; example {index} is "
                                f"{type(example).__name__}")
        run = {}
        for name, value in example.items():
            node = known.get(graphs.node_name(name))
            if node is None:
                raise QuantizeError(f"calibration example {index} names '{name}', which is not "
                                    "an input of the graph")
            try:
                array = np.asarray(value)
            except (TypeError, ValueError):
                array = None
            if array is None or array.dtype.kind not in "biuf":
                raise QuantizeError(f"calibration example {index} for '{node.name}' is not "
                                    "numeric")
            dims = _placeholder_dims(node)
            if dims is not None and (array.ndim != len(dims) or any(
                    want >= 0 and want != got for want, got in zip(dims, array.shape))):
                raise QuantizeError(
                    f"calibration example {index} for '{node.name}' has shape "
                    f"{tuple(array.shape)}, but the input is {_fmt(dims)} (fed as is)")
            if array.size == 0:
                raise QuantizeError(f"calibration example {index} for '{node.name}' is empty")
            if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
                raise QuantizeError(f"calibration example {index} for '{node.name}' holds NaN "
                                    "or infinite values")
            run[graphs.tensor_name(node.name)] = array
        missing = [p.name for p in placeholders if graphs.tensor_name(p.name) not in run]
        if missing:
            raise QuantizeError(f"calibration example {index} gives no values for input(s) "
                                f"{', '.join(missing)}")
        runs.append(run)
    if not runs:
        raise QuantizeError("calibration data holds no examples")
    return ExampleFeeds(runs)


def input_feeds(graph_def, samples, input_name=None):
    """{placeholder tensor: array of N examples}, checked against the graph's inputs; or,
    for a list of {input: array} (one example each, fed as is), an ExampleFeeds."""
    placeholders = [n for n in graph_def.node if n.op == "Placeholder"]
    if not placeholders:
        raise QuantizeError("the graph has no Placeholder to feed calibration data into")
    if isinstance(samples, ExampleFeeds):
        samples = [{graphs.node_name(k): v for k, v in run.items()} for run in samples.runs]
    if isinstance(samples, (list, tuple)) and samples and all(
            isinstance(s, dict) for s in samples):
        return _example_feeds(placeholders, samples)
    if isinstance(samples, dict):
        feeds = {}
        known = {p.name: p for p in placeholders}
        for name, value in samples.items():
            node = known.get(graphs.node_name(name))
            if node is None:
                raise QuantizeError(f"calibration data names '{name}', which is not an input of the graph")
            feeds[node.name] = value
        missing = [p.name for p in placeholders if p.name not in feeds]
        if missing:
            raise QuantizeError(f"calibration data gives no values for input(s) {', '.join(missing)}")
    else:
        if input_name is None:
            if len(placeholders) != 1:
                raise QuantizeError(
                    "the graph has several inputs ("
                    + ", ".join(p.name for p in placeholders)
                    + "); give calibration data as {input name: array}"
                )
            input_name = placeholders[0].name
        feeds = {graphs.node_name(input_name): samples}
    out = {}
    count = None
    for name, value in feeds.items():
        node = next(p for p in placeholders if p.name == name)
        try:
            array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise QuantizeError(f"calibration data for '{name}' is not numeric") from None
        shape = node.attr["shape"].shape
        dims = None if shape.unknown_rank else [d.size for d in shape.dim]
        given = "" if dims is None or array.ndim != len(dims) - 1 else \
            f" (one example of shape {tuple(array.shape)})"
        if given:
            array = array[None]
        if dims is not None and array.ndim != len(dims):
            raise QuantizeError(
                f"calibration data for '{name}' has shape {tuple(array.shape)}, but the input takes "
                f"rank {len(dims)} ({_fmt(dims)})"
            )
        if dims is not None:
            for axis, (want, got) in enumerate(zip(dims[1:], array.shape[1:]), start=1):
                if want >= 0 and want != got:
                    raise QuantizeError(
                        f"calibration data for '{name}' has shape {tuple(array.shape)}{given}, but "
                        f"the input is {_fmt(dims)} (axis {axis} differs)"
                    )
        if array.shape[0] == 0:
            raise QuantizeError(f"calibration data for '{name}' holds no examples")
        if not np.all(np.isfinite(array)):
            raise QuantizeError(f"calibration data for '{name}' holds NaN or infinite values")
        if count is not None and array.shape[0] != count:
            raise QuantizeError("calibration inputs hold different numbers of examples")
        count = array.shape[0]
        out[graphs.tensor_name(name)] = array
    return out


def _fmt(dims):
    return "[" + ", ".join("?" if d < 0 else str(d) for d in dims) + "]"


class _Session:
    """The float graph in one checked session (leangraph.runner); fetches many tensors per run."""

    def __init__(self, graph_def):
        import tensorflow as tf

        # Grappler's remapper fuses a fetched BiasAdd into its conv anyway and the
        # fetch then fails ("not found in the Graph": EfficientNet's swish); the
        # values observed are the same without Grappler.
        config = tf.compat.v1.ConfigProto()
        config.graph_options.rewrite_options.disable_meta_optimizer = True
        self._runner = Runner(graph_def, config=config, error=QuantizeError)
        self.graph = self._runner.graph  # the imported tf.Graph (its shapes: int8's MACs)

    def run(self, fetches, feeds):
        return self._runner.run(fetches, feeds)

    def close(self):
        self._runner.close()


def static_batch(graph_def):
    """The batch size the graph's inputs are frozen at, or None when it is open."""
    fixed = []
    for node in graph_def.node:
        if node.op == "Placeholder":
            shape = node.attr["shape"].shape
            if not shape.unknown_rank and shape.dim and shape.dim[0].size > 0:
                fixed.append(shape.dim[0].size)
    return min(fixed) if fixed else None


def padded(feeds, size):
    """Each array filled up to `size` examples by repeating its last one."""
    return {k: v if len(v) >= size else np.concatenate([v, np.repeat(v[-1:], size - len(v), 0)])
            for k, v in feeds.items()}


def _batches(feeds, batch_size, pad=False):
    """Consecutive batches; with pad, the last is filled up to batch_size (a graph frozen
    at that batch takes no other; repeated examples change no min or max). ExampleFeeds:
    one example per run, as it is."""
    if isinstance(feeds, ExampleFeeds):
        yield from feeds.runs
        return
    count = next(iter(feeds.values())).shape[0]
    for start in range(0, count, batch_size):
        batch = {k: v[start:start + batch_size] for k, v in feeds.items()}
        yield padded(batch, batch_size) if pad else batch


def _kl_threshold(hist, width, levels):
    """The clipping point (in |x| units) of the histogram that loses least information."""
    total = hist.sum()
    if total == 0:
        return width * len(hist)
    best, best_i = math.inf, len(hist)
    start = max(levels, 8)
    step = max(1, (len(hist) - start) // 128)
    for i in range(start, len(hist) + 1, step):
        kept = hist[:i].astype(np.float64)
        # P: the clipped histogram, what lies beyond the threshold piled into
        # its last bin. Q: the kept bins merged into `levels` quantization
        # bins, each merged count spread back evenly over the bins that were
        # non-zero (the outliers are not in Q: clipping them is the cost).
        p = kept.copy()
        p[-1] += hist[i:].sum()
        nonzero = p > 0
        edges = np.linspace(0, i, levels + 1).astype(int)
        q = np.zeros(i)
        for k in range(levels):
            lo, hi = edges[k], edges[k + 1]
            if hi <= lo:
                continue
            mask = kept[lo:hi] > 0
            n = mask.sum()
            if n:
                q[lo:hi][mask] = kept[lo:hi].sum() / n
        p /= p.sum()
        qs = q.sum()
        if qs == 0:
            continue
        q /= qs
        kl = float(np.sum(p[nonzero] * np.log(p[nonzero] / np.maximum(q[nonzero], 1e-12))))
        if kl < best:
            best, best_i = kl, i
    return best_i * width


def calibrate(graph, samples, method="minmax", *, percentile=99.99, input_name=None,
              batch_size=1, tensors=None, progress=None, observer=None, observed=(),
              session=None):
    """Runs the float graph on `samples` and returns a Calibration of its tensors.

    graph: a frozen GraphDef (or bytes / path), normally after the `deploy` recipe.
    samples: an array of examples for a one-input graph, or {input name: array}, stacked on
        axis 0; or a list of {input name: array}, one example each, fed as it is (inputs that
        cannot be stacked: time-major sequences, examples of different lengths).
    method: "minmax", "percentile" or "kl". tensors: which tensors to observe
        (default: every one a quantized convolution or matmul may read or write).
    progress: a callable(done, total) told after each batch.
    observer: a callable(start, values) given each batch's values {tensor: array} as they
        are fetched, start the index of its first example (leangraph.quantize keeps its
        check samples' float values from them instead of running the graph again).
    observed: more tensors fetched in each run, for the observer alone (not calibrated).
    session: a callable giving a _Session of the graph to run in, left open for the caller
        (default: one made and closed here).
    Raises QuantizeError for data that does not fit the graph.
    """
    if method not in METHODS:
        raise QuantizeError(f"unknown calibration method {method!r} (one of {', '.join(METHODS)})")
    if not 50.0 < float(percentile) <= 100.0:
        raise QuantizeError(f"percentile must be in (50, 100], got {percentile}")
    if int(batch_size) < 1:
        raise QuantizeError(f"batch_size must be at least 1, got {batch_size}")
    graph_def = graph if hasattr(graph, "node") else graphs.load_graph(graph)
    feeds = input_feeds(graph_def, samples, input_name)
    spans = _spans(feeds)
    if all(lo == hi for lo, hi in spans.values()):
        # Every tensor's range would be that of one input: real inputs would
        # saturate, and the checks on these samples would not show it.
        which = ", ".join(f"'{graphs.node_name(k)}' is {lo:g}" for k, (lo, _) in spans.items())
        raise QuantizeError(f"calibration data is constant (every value of {which}): its ranges "
                            "would clip any real input; give representative examples")
    names = [graphs.tensor_name(t) for t in tensors] if tensors is not None else observed_tensors(graph_def)
    known = {n.name for n in graph_def.node}
    for name in names:
        if graphs.node_name(name) not in known:
            raise QuantizeError(f"tensor '{name}' is not in the graph")
    fixed = static_batch(graph_def)
    if isinstance(feeds, ExampleFeeds):
        fixed, batch_size = None, 1  # each example is one run, fed as it is
    if fixed is not None:
        batch_size = fixed
    count = example_count(feeds)
    total = math.ceil(count / int(batch_size))
    fetches = names + [t for t in map(graphs.tensor_name, observed) if t not in names]
    own = session is None
    session = _Session(graph_def) if own else session()
    try:
        lo = {n: math.inf for n in names}
        hi = {n: -math.inf for n in names}
        pct_lo = {n: [] for n in names}
        pct_hi = {n: [] for n in names}
        for done, batch in enumerate(_batches(feeds, int(batch_size), pad=fixed is not None),
                                     start=1):
            values = session.run(fetches, batch)
            if observer is not None:
                observer((done - 1) * int(batch_size), dict(zip(fetches, values)))
            for name, value in zip(names, values):
                lo[name] = min(lo[name], float(value.min()))
                hi[name] = max(hi[name], float(value.max()))
                if method == "percentile":
                    flat = value.reshape(-1)
                    pct_hi[name].append(float(np.percentile(flat, percentile)))
                    pct_lo[name].append(float(np.percentile(flat, 100.0 - percentile)))
            if progress is not None:
                progress(done, total)
        ranges = {}
        if method == "minmax":
            ranges = {n: (lo[n], hi[n]) for n in names}
        elif method == "percentile":
            for n in names:
                top = float(np.mean(pct_hi[n]))
                bottom = float(np.mean(pct_lo[n]))
                # A non-negative tensor stays non-negative: it keeps its
                # unsigned 8-bit form.
                ranges[n] = (0.0 if lo[n] >= 0 else min(bottom, 0.0), max(top, 0.0))
        else:
            absmax = {n: max(abs(lo[n]), abs(hi[n])) for n in names}
            hists = {n: np.zeros(_BINS, np.int64) for n in names}
            for batch in _batches(feeds, int(batch_size)):
                values = session.run(names, batch)
                for name, value in zip(names, values):
                    if absmax[name] > 0:
                        # Exact zeros (most of a Relu's output) are exact at any scale:
                        # they must not pull the threshold down.
                        magnitude = np.abs(value[value != 0])
                        h, _ = np.histogram(magnitude, bins=_BINS, range=(0.0, absmax[name]))
                        hists[name] += h
            for n in names:
                signed = lo[n] < 0
                width = absmax[n] / _BINS if absmax[n] > 0 else 0.0
                t = _kl_threshold(hists[n], width, 128 if signed else 256) if width else 0.0
                ranges[n] = (-t if signed else 0.0, t)
    finally:
        if own:
            session.close()
    for name, (a, b) in ranges.items():
        if not (math.isfinite(a) and math.isfinite(b)):
            raise QuantizeError(f"tensor '{name}' took non-finite values on the calibration data")
    return Calibration(ranges=ranges, method=method, samples=int(count))


def _spans(feeds):
    """{input tensor: (its smallest value, its largest)} over every example."""
    runs = feeds.runs if isinstance(feeds, ExampleFeeds) else [feeds]
    spans = {}
    for run in runs:
        for name, value in run.items():
            lo, hi = float(np.min(value)), float(np.max(value))
            old = spans.get(name, (lo, hi))
            spans[name] = (min(old[0], lo), max(old[1], hi))
    return spans
