"""Which factorisations pay on this CPU, judged by the whole model's measured latency.

A layer timed alone is mostly noise here, and fewer MACs need not mean less
time (two thin matmuls can be slower than one wide one, as keras_compressor's
smaller-but-not-faster results showed). So each candidate is judged by the
whole model's frozen `deploy` graph with only that layer swapped, timed
against the original's by the C++ timer in interleaved pairs
(leangraph.bench.compare); a candidate is kept only when the lower end of the
95 % interval of its speed-up is above `min_speedup`. When int8 is the target,
both graphs are timed as leangraph.quantize writes them: a rank that pays in
float can cost more than it saves in 8 bits (a second kernel and its hand-over
for a matmul that was already cheap).
"""

from dataclasses import asdict, dataclass

import numpy as np

from leangraph.bench import compare
from leangraph.errors import PruneError
from leangraph.prune.int8 import int8_graph
from leangraph.prune.search import deploy_graph


@dataclass
class Timing:
    """B (the candidate) against A (the original): how many times faster, with its interval."""

    speedup: float
    low: float
    high: float
    before_ms: float  # A's median
    after_ms: float  # B's median
    pairs: int

    def pays(self, min_speedup=1.0):
        return self.low > min_speedup


def compare_graphs(graph_a, graph_b, feeds, outputs, runs=40, max_time=10.0, target_ci=0.04):
    """The C++ timer's paired comparison of two frozen graphs on the same inputs: at least
    `runs` pairs, more (up to `max_time` seconds) while the interval is wider than
    +-`target_ci`, so that a noisy spell on a shared machine is outlasted, not believed."""
    result = compare(graph_a, graph_b, feeds, outputs=outputs, runs=runs, max_time=max_time,
                     target_ci=target_ci)
    low, high = result.speedup_ci95
    return Timing(float(result.speedup), float(low), float(high), float(result.a.p50_ms),
                  float(result.b.p50_ms), int(result.pairs))


class Judge:
    """Times candidate models against one original at a fixed batch: their frozen deploy
    graphs, or with `calibration` (examples) their int8 graphs calibrated on it."""

    def __init__(self, original, x, batch, timer=None, calibration=None):
        if batch < 1:
            raise PruneError(f"batch must be >= 1, got {batch}")
        self.batch = batch
        self.timer = timer or compare_graphs
        self.calibration = calibration
        self.graph, self.input, self.outputs = self._graph(original)
        self.feeds = {self.input: np.resize(x, (batch,) + x.shape[1:]).astype(np.float32)}

    @property
    def precision(self):
        return "fp32" if self.calibration is None else "int8"

    def _graph(self, model):
        if self.calibration is None:
            return deploy_graph(model, self.batch)
        return int8_graph(model, self.calibration, self.batch)

    def time(self, model):
        graph, name, outputs = self._graph(model)
        if name != self.input or list(outputs) != list(self.outputs):
            raise PruneError(f"internal: the factorised graph's inputs/outputs ({name}, "
                             f"{outputs}) differ from the original's ({self.input}, "
                             f"{self.outputs})")
        return self.timer(self.graph, graph, self.feeds, self.outputs)


def paying_ranks(factorable, candidates, judge, *, min_speedup=1.0, errors=None, progress=None):
    """{layer: [row]} with one row per candidate timed; a row's `pays` says if it is kept.

    Candidates are tried from the smallest rank up, and a layer stops at the
    first whose estimate is no faster (a larger rank of the same layer does
    more work); one only inconclusive is not kept, but the next is still tried.
    Layers go in order of their MACs, largest first.
    """
    order = sorted(candidates, key=lambda n: -factorable.sites[n].macs())
    found = {}
    for name in order:
        site = factorable.sites[name]
        rows = found.setdefault(name, [])
        for rank, energy, source in candidates[name]:
            timing = judge.time(factorable.rebuild({name: rank}))
            row = {"rank": rank, "energy": energy, "source": source,
                   "macs_before": site.macs(), "macs_after": site.macs(rank),
                   "timing": asdict(timing), "pays": timing.pays(min_speedup)}
            if errors is not None:
                row["reconstruction_error"] = errors(name, rank)
            rows.append(row)
            if progress:
                progress(name, row)
            if timing.speedup <= min_speedup:
                break
    return found


def levels(paying, energies):
    """One configuration per energy level: each layer at its smallest paying rank that keeps
    at least that share of its energy (whole where none does), plus EVBMF's ranks where they
    pay. Returns [(label, {layer: row})], distinct and non-empty, lowest energy first."""
    configs, seen = [], set()
    for energy in sorted(energies):
        chosen = {}
        for name, rows in paying.items():
            fits = [r for r in rows if r["pays"] and r["energy"] >= energy - 1e-9]
            if fits:
                chosen[name] = min(fits, key=lambda r: r["energy"])
        configs.append((f"energy {energy:g}", chosen))
    evbmf = {name: r for name, rows in paying.items() for r in rows
             if r["pays"] and "evbmf" in r["source"]}
    configs.append(("evbmf", evbmf))
    result = []
    for label, chosen in configs:
        key = tuple(sorted((n, str(r["rank"])) for n, r in chosen.items()))
        if chosen and key not in seen:
            seen.add(key)
            result.append((label, chosen))
    return result
