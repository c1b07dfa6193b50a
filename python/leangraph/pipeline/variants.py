"""Variants: one type for every way of running a model, and the registry that builds them.

A Variant holds its graph (serialized), how it was made (description,
transform, base), its precision and gate, and what verification and timing
measured. The fp32 variants come from the recipes; the variants derived from
the best verified fp32 graph (bf16, 8-bit weights, ...) are built by builder
functions of a BuildContext, listed in order in pipeline/precisions.py.
"""

import gc
from dataclasses import dataclass, field

from leangraph import graphs
from leangraph.bench import stats
from leangraph.errors import GraphError, LeangraphError, TransformError
from leangraph.precision import bf16_graph, bf16_heads, grappler_bf16_config, quantize_weights
from leangraph.runner import outputs_per_example
from leangraph.transform import transform


PASSED = "passed"
FAILED = "FAILED"
SKIPPED = "skipped"
#: Built, verified and timed, but never the result: a calibrated variant without
#: held-out real data to verify it on (the reason says which).
SPEED_ONLY = "speed only"


@dataclass
class LatencyStats:
    """Latency of one variant over `count` timed runs (milliseconds).

    Percentiles use linear interpolation between order statistics (numpy's
    default), over every sample of every round.
    """

    count: int
    samples_ms: list
    min_ms: float
    p10_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    stddev_ms: float
    rounds: int = 1

    @classmethod
    def from_samples(cls, samples_ms, rounds=1):
        """Statistics from the timer's own C++ code (leangraph.bench.stats), so the
        report's rows and leangraph-bench agree on every definition."""
        if len(samples_ms) == 0:
            raise ValueError("no latency samples")
        summary = stats(samples_ms)
        fields = ("count", "min_ms", "p10_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "stddev_ms")
        return cls(samples_ms=[float(s) for s in samples_ms], rounds=int(rounds),
                   **{key: summary[key] for key in fields})

    def to_dict(self):
        return dict(self.__dict__)


@dataclass
class Variant:
    """One way of running the model: its graph and how it was made, its gate, what it measured.

    kind: "keras" (the model itself) or "graph" (a GraphDef run by the timer).
    precision: "fp32", "bf16" or "int8-weights". gate: "fp32" (outputs within
    the relative tolerance) or "top1" (top-1 agreement at least the minimum,
    for precisions that change numbers on purpose). status: PASSED, FAILED or
    SKIPPED, with `reason` saying why when not passed. eligible: whether this
    variant may be written as the result (a standalone graph whose precision
    was asked for).
    """

    name: str
    description: str
    kind: str
    precision: str = "fp32"
    gate: str = "fp32"
    status: str = PASSED
    reason: str = None
    transform: str = None
    bench_precision: str = "fp32"
    base: str = None
    eligible: bool = False
    nodes: int = None
    file_bytes: int = None
    max_abs_diff: float = None
    max_rel_diff: float = None
    top1_agreement: float = None
    #: SQNR of the outputs against the reference, dB (low-precision variants)
    sqnr_db: float = None
    verified_on: int = 0
    latency: LatencyStats = None
    speedup: float = None
    init_ms: float = None
    is_reference: bool = False
    #: --batch N: the latency of one run of N examples, or why it could not run
    batch: int = None
    batch_latency: LatencyStats = None
    batch_note: str = None
    graph_def: object = field(default=None, repr=False)
    #: int8: what leangraph.quantize reported (layers, fallbacks, calibration)
    quantization: dict = None
    #: {"outputs": [metrics.OutputCheck as a dict, ...]}: every gate on every output;
    #: "examples_unchanged": {output: share} for per-position classes outputs
    verification: dict = None

    @property
    def throughput(self):
        """Examples per second at batch 1 (from p50)."""
        return None if self.latency is None else 1000.0 / self.latency.p50_ms

    @property
    def batch_throughput(self):
        """Examples per second at batch `batch` (from its p50)."""
        if self.batch_latency is None:
            return None
        return 1000.0 * self.batch / self.batch_latency.p50_ms

    @property
    def passed(self):
        return self.status == PASSED

    def fail(self, reason):
        if self.status == FAILED and self.reason:
            reason = f"{self.reason}; {reason}"
        self.reason = reason
        self.status = FAILED

    def to_dict(self):
        data = {k: v for k, v in self.__dict__.items()
                if k not in ("graph_def", "latency", "batch_latency")}
        data["latency"] = self.latency.to_dict() if self.latency else None
        data["batch_latency"] = self.batch_latency.to_dict() if self.batch_latency else None
        data["throughput"] = self.throughput
        data["batch_throughput"] = self.batch_throughput
        return data


# ---------------------------------------------------------------------------
# building and running graph variants
# ---------------------------------------------------------------------------

def graph_outputs(graph_bytes, input_names, output_names, examples, session_config=None):
    """Runs a batch-1 graph on every example in one checked session; one array per output."""
    return outputs_per_example(graph_bytes, input_names, output_names, examples, session_config)


def graph_variant(name, description, graph_def, **kwargs):
    data = graphs.serialize(graph_def)
    return Variant(name=name, description=description, kind="graph",
                         nodes=len(graph_def.node), file_bytes=len(data), graph_def=data, **kwargs)


def failed_variant(name, description, reason, **kwargs):
    v = Variant(name=name, description=description, kind="graph", **kwargs)
    v.fail(reason)
    return v


def transform_variant(name, description, base_bytes, transforms, ends, allow_io_ops=False,
                      **kwargs):
    """The variant `transforms` (transform_graph syntax) make of base_bytes."""
    return built_variant(name, description, lambda: transform(
        base_bytes, transforms, inputs=ends[0], outputs=ends[1], allow_io_ops=allow_io_ops),
        transforms, **kwargs)


def run_variant(v, input_names, output_names, examples):
    """A graph variant's outputs on every example; None (the variant FAILED) if TF refuses it."""
    import tensorflow as tf

    config = None
    if v.bench_precision == "bf16":
        config = grappler_bf16_config()
    try:
        return graph_outputs(v.graph_def, input_names, output_names, examples, config)
    except (LeangraphError, ValueError, tf.errors.OpError) as exc:
        v.fail(f"running it failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        return None
    finally:
        gc.collect()  # the imported graph holds a copy of every weight: free it now


def with_batch(graph_bytes, input_names, batch):
    """The graph with its inputs' leading dimension set to `batch`."""
    graph_def = graphs.load_graph(graph_bytes)
    wanted = {graphs.node_name(n) for n in input_names}
    for node in graph_def.node:
        if node.name in wanted and node.op == "Placeholder" and node.attr["shape"].shape.dim:
            node.attr["shape"].shape.dim[0].size = batch
    return graph_def.SerializeToString()


def rank_results(variants):
    """Eligible variants that passed verification and were timed, fastest (p50) first."""
    candidates = [v for v in variants
                  if v.kind == "graph" and v.eligible and v.passed and v.latency is not None]
    return sorted(candidates, key=lambda v: v.latency.p50_ms)


def select_result(variants):
    """The fastest (lowest p50) variant that is eligible, passed verification and was timed."""
    ranked = rank_results(variants)
    return ranked[0] if ranked else None


# ---------------------------------------------------------------------------
# derived variants: built from the best verified fp32 graph
# ---------------------------------------------------------------------------

@dataclass
class BuildContext:
    """What a derived-variant builder may use.

    best: the fastest-to-build verified fp32 graph variant (recipe, tf-deploy
    or frozen), None when none passed. ends: (input names, output names).
    precisions: those the result may have. examples: the verification inputs,
    one array per graph input.
    """

    best: Variant
    ends: tuple
    precisions: tuple
    examples: list = field(default_factory=list)
    allow_io_ops: bool = False
    #: calibration inputs for int8 (one array per graph input); None: use `examples`
    calibration: list = None
    #: int8: Conv2D weights on unsigned inputs in 7 or 8 bits; None: what this CPU computes right
    int8_weight_bits: int = None

    def wants(self, precision):
        return precision in self.precisions

    def skipped(self, name, precision, description, reason):
        return Variant(name=name, description=description, kind="graph", precision=precision,
                       gate="top1", status=SKIPPED, reason=reason)


def built_variant(name, description, build, transform_text, **kwargs):
    """A graph variant from build() (-> GraphDef), or a FAILED row naming why TF refused it."""
    try:
        result = build()
    except (TransformError, GraphError, ValueError) as exc:
        return failed_variant(name, description, f"transform failed: {exc}",
                              transform=transform_text, **kwargs)
    return graph_variant(name, description, result, transform=transform_text, **kwargs)


def bf16_variant(ctx):
    """bf16 of the best fp32 graph: precision.bf16_graph (to_bfloat16, logits kept fp32).
    Whether it is wanted and can run here is pipeline.precisions.derived_variant's to say."""
    best = ctx.best
    graph = graphs.load_graph(best.graph_def)
    heads = bf16_heads(graph, ctx.ends[1])
    kept = f"; fp32: {', '.join(heads)} (makes an output's logits)" if heads else ""
    step = (f"to_bfloat16({', '.join(f'exclude_node={h}' for h in heads)})" if heads
            else "to_bfloat16")
    return built_variant(
        "bf16", f"to_bfloat16 transform of {best.name} (bf16 compute in the graph{kept})",
        lambda: bf16_graph(graph, ctx.ends, allow_io_ops=ctx.allow_io_ops)[0], step,
        precision="bf16", gate="top1", base=best.name, eligible=True)


def quantize_weights_variant(ctx):
    """TF's quantize_weights of the best fp32 graph: a smaller file, float compute."""
    best = ctx.best
    return built_variant(
        "quantize_weights", f"TF's quantize_weights of {best.name}: 8-bit weights in the "
        "file, dequantized at load (for size)",
        lambda: quantize_weights(best.graph_def, inputs=ctx.ends[0], outputs=ctx.ends[1],
                                 allow_io_ops=ctx.allow_io_ops),
        "quantize_weights add_default_attributes", precision="int8-weights", gate="top1",
        base=best.name)
