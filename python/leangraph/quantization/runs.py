"""The runs leangraph.quantize makes of its float and 8-bit graphs, and what saves them.

- run_all: tensors over all examples, in the batches a graph frozen at a batch takes (as
  values.Parts where the caller only reads statistics of them: never joined);
- FloatValues: the float graphs' values on the check samples, each session opened once
  (calibration's is the graph being quantized's); the tensors of the graph being quantized,
  and the outputs where nothing was equalized, are kept from calibration's own runs where
  it ran them in the same batches, else computed once (the rounds and both bias fits ask
  for overlapping sets);
- StepwiseRunner: the bias correction's runs. It fits each 8-bit unit's bias once every
  unit upstream of it is fitted, so a deep network takes one run per level of units
  (MobileNetV2: 53) over every check sample, and a full run each time recomputed the
  settled start of the graph, whose biases are final: the cost grew with the square of
  the depth. Here a tensor that no bias still to be fitted reaches is fetched once, in the
  first run after its last bias was fitted, and fed from then on, so TensorFlow runs only
  the nodes between those tensors and the fetches. A fed value is the one a full run
  computes (the same kernels on the same operands), so the fits, and the graph they make,
  do not change (tests/test_quantize_time.py).
"""

import numpy as np

from leangraph import graphs
from leangraph.quantization.calibrate import (
    ExampleFeeds,
    _Session,
    example_count,
    join,
    padded,
    static_batch,
)
from leangraph.quantization.units import depths
from leangraph.quantization.values import Parts


def batches(graph_def, feeds):
    """(batch size, [(examples in it, {input: one batch})]) over all of `feeds`: one batch
    where the inputs' batch is open; a graph frozen at a batch takes only that many, so
    its last batch is filled up (and the filler cut from the results: _unfilled).
    ExampleFeeds: one run per example, as it is (batch size None, nothing cut)."""
    if isinstance(feeds, ExampleFeeds):
        return None, [(None, run) for run in feeds.runs]
    count = next(iter(feeds.values())).shape[0]
    step = static_batch(graph_def) or count
    return step, [(min(step, count - i),
                   padded({k: v[i:i + step] for k, v in feeds.items()}, step))
                  for i in range(0, count, step)]


def _unfilled(value, size, step):
    if size is None:
        return value
    return value[:size] if np.ndim(value) and len(value) == step else value


def run_all(graph_def, names, feeds, session=None, extra=None, as_parts=False):
    """The fetched tensors over all of `feeds` (examples on axis 0), one array each.

    session: a calibrate._Session of graph_def to run in (default: one made and closed
    here); extra: {tensor: value} fed in every batch as it is (a bias under correction);
    as_parts: a values.Parts each instead of an array."""
    fetches = [graphs.tensor_name(n) for n in names]
    step, parts = batches(graph_def, feeds)
    own = session is None
    if own:
        session = _Session(graph_def)
    try:
        values = [[_unfilled(v, size, step)
                   for v in session.run(fetches, {**batch, **(extra or {})})]
                  for size, batch in parts]
    finally:
        if own:
            session.close()
    gather = Parts if as_parts else join
    return [gather([p[j] for p in values]) for j in range(len(names))]


class FloatValues:
    """The float graphs' values on the check samples: the graph being quantized, whose
    tensors are kept (the rounds and both bias fits ask for overlapping sets, which do not
    change), and the caller's graph before equalization, the outputs' reference (the same
    graph where nothing was equalized). Each graph is opened once: calibration runs in the
    session of the graph being quantized, which then serves the other values asked of it,
    and its imported tf.Graph the shapes.

    As calibrate's observer it keeps what calibration fetches anyway: used where its
    batches are the check runs' own (a graph frozen at a batch that divides the check
    samples, or examples fed one by one), the graph being quantized is then not run again,
    nor, where nothing was equalized, the caller's graph for the outputs."""

    def __init__(self, graph_def, original, wanted, outputs):
        """wanted: the tensors of graph_def the rounds will ask for, fetched in the first
        pass (or kept from calibration's); outputs: the reference outputs."""
        self.graph_def, self.feeds = graph_def, None
        self._original = original
        self._outputs = [graphs.tensor_name(t) for t in outputs]
        self._values = {}
        self._sessions = {}
        self._runs = {}  # {first example: {tensor: calibration's values of that run}}
        self._prefetch = list(wanted)
        self._observe_until = 0

    def observing(self, count):
        """calibrate's observer, keeping the first `count` examples' values of the tensors
        the rounds ask for (and of the outputs, where they are the reference, for twice as
        many: the held-out samples too)."""
        self._observe_until = count
        return self._observe

    def observed(self):
        """What calibrate fetches for the observer alone: the outputs where they are the
        reference."""
        return self._outputs if self._original is self.graph_def else []

    def _observe(self, start, values):
        keep = list(self.observed()) if start < 2 * self._observe_until else []
        if start < self._observe_until:
            keep += self._prefetch
        if keep:
            self._runs[start] = {name: values[name] for name in keep if name in values}

    def _kept(self, names, start, count):
        """{tensor: Parts} of calibration's values of examples start..start+count, where it
        ran exactly those in the batches run_all would; None where it did not."""
        # Calibration runs examples fed as they are one each, as run_all does.
        fixed = 1 if isinstance(self.feeds, ExampleFeeds) else static_batch(self.graph_def)
        if not fixed or start % fixed or count % fixed:
            return None
        runs = [self._runs.get(first, {}) for first in range(start, start + count, fixed)]
        if not runs or any(name not in run for run in runs for name in names):
            return None
        return {name: Parts([run[name] for run in runs]) for name in names}

    def use(self, feeds):
        """The check samples, the first examples calibration saw: its values are kept where
        it ran them in the batches run_all would."""
        self.feeds = feeds
        count = example_count(feeds)
        for name in self._prefetch:
            kept = self._kept([name], 0, count)
            if kept:
                self._values.update(kept)
        if self._values:  # the rest, if any, is run when asked for
            self._prefetch = []
        outputs = self.observed()
        self._runs = {start: {n: run[n] for n in outputs if n in run}
                      for start, run in self._runs.items()}
        return self

    def session(self):
        """The session of the graph being quantized (calibration runs in it)."""
        return self._session(self.graph_def)

    def _session(self, graph):
        if id(graph) not in self._sessions:
            self._sessions[id(graph)] = _Session(graph)
        return self._sessions[id(graph)]

    def imported(self):
        """The tf.Graph of the graph being quantized, where a session of it is open."""
        session = self._sessions.get(id(self.graph_def))
        return session and session.graph

    def reference(self, feeds, start):
        """The caller's graph's outputs on `feeds`, examples start.. of the samples: arrays,
        as run_all gives them."""
        kept = self._kept(self.observed(), start, example_count(feeds))
        if kept:  # (never where something was equalized: nothing observed then)
            return [kept[name].joined() for name in self._outputs]
        return run_all(self._original, self._outputs, feeds,
                       session=self._session(self._original))

    def get(self, names):
        """{tensor: the float graph's values on the check samples, a values.Parts} for
        `names`."""
        missing = [n for n in dict.fromkeys(self._prefetch + list(names)) if n not in self._values]
        self._prefetch = []
        if missing:
            values = run_all(self.graph_def, missing, self.feeds, session=self.session(),
                             as_parts=True)
            self._values.update(zip(missing, values))
        return {n: self._values[n] for n in names}

    def close(self):
        for session in self._sessions.values():
            session.close()
        self._sessions = {}
        self._runs = {}


# What is never worth feeding back: constants, and the inputs, fed anyway.
_SOURCES = ("Const", "Placeholder", "PlaceholderWithDefault")


def bias_masks(graph_def, biases):
    """{node: bit mask of the `biases` (Const names, bit i for biases[i]) its value depends
    on}, over data edges; None for a graph with functions, while loops (whose frames a fed
    tensor could cut into) or cond branches (whose untaken side cannot be fetched)."""
    if (graph_def.library.function or graphs.loop_nodes(graph_def)
            or graphs.branch_nodes(graph_def)):
        return None
    depth = depths(graph_def)
    by_name = {n.name: n for n in graph_def.node}
    if len(depth) != len(by_name):
        return None  # a cycle outside a loop frame: nothing is safe to cut
    bit = {name: 1 << i for i, name in enumerate(biases)}
    masks = {}
    for name in sorted(depth, key=depth.get):
        mask = bit.get(name, 0)
        for edge in by_name[name].input:
            if not edge.startswith("^"):
                mask |= masks.get(graphs.node_name(edge), 0)
        masks[name] = mask
    return masks


class StepwiseRunner:
    """A session's graph run on all examples, run after run, as biases are fitted.

    session: a calibrate._Session of graph_def; biases: the Const names fed in every run
    (their bit positions are those of run()'s `fitted` mask); feeds: {input tensor: every
    example}.
    """

    def __init__(self, session, graph_def, biases, feeds):
        self._session = session
        self._step, self._batches = batches(graph_def, feeds)
        self._masks = bias_masks(graph_def, biases)
        ops = {n.name: n.op for n in graph_def.node}
        # {node: its data inputs (producer, tensor)}, constants and inputs left out.
        self._inputs = {n.name: [(graphs.node_name(e), graphs.tensor_name(e)) for e in n.input
                                 if not e.startswith("^") and ops.get(graphs.node_name(e))
                                 not in _SOURCES]
                        for n in graph_def.node}
        self._pinned = _summands(graph_def)
        # {bias tensor: the nodes that read it}: a bias whose readers cannot run is not fed.
        bias_names = set(biases)
        self._bias_readers = {}
        for node in graph_def.node:
            for edge in node.input:
                if graphs.node_name(edge) in bias_names:
                    self._bias_readers.setdefault(graphs.tensor_name(edge), set()).add(node.name)
        self._live = None  # the nodes the last cut left live (None: all of them)
        self._fed = [{} for _ in self._batches]  # per batch: {tensor: value fed back}

    def _cut(self, fitted):
        """The tensors that nodes an unfitted bias reaches read from nodes none does.

        A summand is never among them: its producer runs (its own inputs cut instead)."""
        masks = self._masks
        if masks is None:
            return []
        live = {name for name, mask in masks.items() if mask & ~fitted}
        self._live = live
        todo = list(live)
        cut = {}
        while todo:
            for source, tensor in self._inputs[todo.pop()]:
                if source in live:
                    continue
                if tensor in self._pinned:
                    live.add(source)
                    todo.append(source)
                else:
                    cut[tensor] = None
        return [t for t in cut if graphs.node_name(t) not in live]

    def _running(self, tensors, live):
        """The nodes a run fetching `tensors` may compute: their producers and what those
        read, back to the tensors fed (those the last cut took from outside `live`)."""
        todo = [graphs.node_name(t) for t in tensors]
        seen = set()
        while todo:
            name = todo.pop()
            if name in seen or (live is not None and name not in live):
                continue
            seen.add(name)
            todo.extend(source for source, _ in self._inputs.get(name, ()))
        return seen

    def run(self, names, extra, fitted):
        """The tensors `names` over all examples, a values.Parts each.

        extra: {tensor: value} fed in every batch (the biases as fitted so far); fitted: bit
        mask of the biases whose values in `extra` are final from this run on."""
        live = self._live
        cut = self._cut(fitted)
        # A bias that none of the nodes this run computes reads is not fed (converting a
        # feed costs more than most of these runs' kernels).
        running = self._running(names + cut, live)
        extra = {t: v for t, v in extra.items()
                 if t not in self._bias_readers or self._bias_readers[t] & running}
        parts = []
        for index, (size, batch) in enumerate(self._batches):
            values = self._session.run(names + cut, {**batch, **extra, **self._fed[index]})
            # Copies of our own (a few small tensors): fed again in the next run.
            self._fed[index] = {t: np.array(v) for t, v in zip(cut, values[len(names):])}
            parts.append([_unfilled(v, size, self._step) for v in values[:len(names)]])
        return [Parts([p[j] for p in parts]) for j in range(len(names))]


def _summands(graph_def):
    """The tensors that fused ops add into their output ("Sum", "Add"): oneDNN's kernels
    write the result into the summand's buffer and fail, leaving no output (a crash), when
    another reference to it exists, as a fed or fetched tensor is."""
    out = set()
    for node in graph_def.node:
        fused = {f.decode() for f in node.attr["fused_ops"].list.s} if "fused_ops" in node.attr \
            else set()
        if fused & {"Sum", "Add"}:
            out.update(graphs.tensor_name(e) for e in node.input[1:] if not e.startswith("^"))
    return out
