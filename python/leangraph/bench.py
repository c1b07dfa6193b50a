"""leangraph.benchmark / compare / benchmark_keras: the C++ timer, in-process.

benchmark() and compare() run the very code of the `leangraph-bench` binary
(native/bench/runner.cc) with the GIL released; benchmark_keras() times Keras
from Python and computes its statistics with the same C++ function, so the rows
of a table built from them are comparable.

Statistics (see native/bench/stats.h): percentiles interpolate linearly between
order statistics (numpy's default); stddev is the sample standard deviation;
median_ci95_ms is a distribution-free interval from the binomial order
statistics; throughput = batch * 1000 / p50_ms (examples/s at the median
latency). compare()'s speedup_ci95 is a paired bootstrap (2000 resamples of the
interleaved (A, B) pairs, seeded with `seed`) of the ratio of medians.
"""

import json
import resource
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from leangraph import graphs
from leangraph._tfcheck import load_native
from leangraph.errors import BenchmarkError, GraphError
from leangraph.safety import require_safe

_SUPPORTED_DTYPES = {
    "float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16", "bool",
}


@dataclass
class BenchResult:
    """Latency statistics of one graph or model; every time is in milliseconds."""

    count: int
    samples_ms: list
    min_ms: float
    p10_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    stddev_ms: float
    median_ci95_ms: tuple
    median_ci95_coverage: float
    throughput: float  # examples/s = batch * 1000 / p50_ms
    init_ms: float  # session creation + graph load (0 for Keras)
    first_run_ms: float
    peak_rss_mb: float  # of this whole process (getrusage ru_maxrss)
    overhead_ms: float  # the timer's cost per run, measured on an empty graph / call
    batch: int
    precision: str
    warmup: int = 0
    cpus: str = None  # "0,1" when pinned
    affinity_ok: bool = None  # every checked thread ran on `cpus` (None: not pinned)
    threads: list = field(default_factory=list)  # [{tid, name, cpus_allowed_list}]
    inputs: list = field(default_factory=list)  # [{name, dtype, shape, source}]
    outputs: list = field(default_factory=list)
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    intra_op_pool: str = ""
    profile: dict = None  # {runs, by_op_type: [...], top_nodes: [...]} with profile=True
    label: str = ""

    @classmethod
    def _from_report(cls, report, label=""):
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in report.items() if k in known}
        values["median_ci95_ms"] = tuple(report["median_ci95_ms"])
        values["label"] = label
        return cls(**values)

    def to_dict(self):
        """A JSON-serializable dict of every field."""
        out = asdict(self)
        out["median_ci95_ms"] = list(self.median_ci95_ms)
        return out

    def __str__(self):
        lo, hi = self.median_ci95_ms
        name = f"{self.label}: " if self.label else ""
        return (
            f"{name}p50 {self.p50_ms:.4f} ms (95% CI {lo:.4f}-{hi:.4f}), p90 {self.p90_ms:.4f}, "
            f"mean {self.mean_ms:.4f} +- {self.stddev_ms:.4f}, n={self.count}, "
            f"{self.throughput:.1f} examples/s"
        )


@dataclass
class CompareResult:
    """A and B timed interleaved; speedup = a.p50_ms / b.p50_ms (how many times faster B is)."""

    a: BenchResult
    b: BenchResult
    speedup: float
    speedup_ci95: tuple
    order: list  # "A" / "B" in the order the timed runs happened

    def to_dict(self):
        return {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "speedup": self.speedup,
            "speedup_ci95": list(self.speedup_ci95),
            "order": list(self.order),
        }

    def __str__(self):
        lo, hi = self.speedup_ci95
        return f"speedup {self.speedup:.3f}x (95% CI {lo:.3f}-{hi:.3f}), A {self.a.p50_ms:.4f} ms, B {self.b.p50_ms:.4f} ms"


def _cpu_list(cpus):
    if cpus is None:
        return []
    if isinstance(cpus, int):
        return [cpus]
    if isinstance(cpus, str):
        out = []
        for part in cpus.split(","):
            part = part.strip()
            first, sep, last = part.partition("-")
            try:
                lo = int(first)
                hi = int(last) if sep else lo
            except ValueError:
                raise BenchmarkError(f"bad CPU list {cpus!r} (expected e.g. '0,1' or '0-3')") from None
            out.extend(range(lo, hi + 1))
        return out
    try:
        return [int(c) for c in cpus]
    except (TypeError, ValueError):
        raise BenchmarkError(f"cpus must be an int, a list of ints or a string like '0,1', got {cpus!r}") from None


def _inputs(inputs):
    if inputs is None:
        return []
    if not isinstance(inputs, dict):
        raise TypeError("inputs must be None or a dict {name: numpy array}")
    out = []
    for name, value in inputs.items():
        array = np.ascontiguousarray(value)
        dtype = array.dtype.name
        if dtype not in _SUPPORTED_DTYPES:
            raise BenchmarkError(
                f"input '{name}' has dtype {dtype}, which the timer cannot feed "
                f"(supported: {', '.join(sorted(_SUPPORTED_DTYPES))})"
            )
        # Little-endian bytes, as TensorFlow's tensors hold them.
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        out.append((str(name), dtype, list(array.shape), array.tobytes()))
    return out


def _outputs(outputs):
    if outputs is None:
        return []
    if isinstance(outputs, str):
        return [outputs]
    return [str(o) for o in outputs]


def _native_args(inputs, outputs, runs, warmup, max_time, threads, inter_op_threads, cpus,
                 precision, seed, batch, profile, measure_overhead):
    if precision not in ("fp32", "bf16"):
        raise BenchmarkError(f"unknown precision {precision!r} (fp32 or bf16)")
    return dict(
        inputs=_inputs(inputs),
        outputs=_outputs(outputs),
        runs=int(runs),
        warmup=int(warmup),
        max_time=float(max_time or 0.0),
        intra=int(threads or 0),
        inter=int(inter_op_threads or 0),
        cpus=_cpu_list(cpus),
        precision=precision,
        seed=int(seed),
        batch=int(batch or 0),
        profile=bool(profile),
        overhead=bool(measure_overhead),
    )


def _checked_bytes(graph, allow_io_ops):
    """The graph's serialized bytes, refused first if it would act on the machine
    when run (see leangraph.safety); a graph is parsed at most once."""
    if allow_io_ops:
        return graphs.serialize(graph)
    try:
        graph_def = graph if hasattr(graph, "node") else graphs.load_graph(graph)
    except GraphError as exc:
        raise BenchmarkError(str(exc)) from None
    require_safe(graph_def, what="the graph to benchmark")
    if isinstance(graph, (bytes, bytearray, memoryview)):
        return bytes(graph)
    return graph_def.SerializeToString()


def benchmark(graph, inputs=None, *, outputs=None, runs=100, warmup=10, max_time=None,
              threads=None, inter_op_threads=None, cpus=None, precision="fp32", seed=0,
              batch=None, profile=False, measure_overhead=True, allow_io_ops=False):
    """Times Session::Run of a frozen graph in this process and returns a BenchResult.

    graph: a GraphDef, serialized bytes or a `.pb`/`.pbtxt` path.
    inputs: None (every Placeholder gets seeded uniform random data of its static
        shape; an unknown leading dimension becomes `batch`, default 1) or
        {node or tensor name: numpy array}; unnamed Placeholders are generated.
    outputs: node or tensor names to fetch; by default the nodes nothing consumes.
    runs / max_time: timed runs, stopping early after max_time seconds (runs=0 with
        a max_time: as many as fit). warmup: untimed runs after the first one.
    threads / inter_op_threads: TF's intra-/inter-op pool sizes (None: TF's default).
    cpus: pin the session's threads to these CPUs ("0,1", [0, 1] or 0); this
        thread is pinned while the benchmark runs and restored afterwards, and
        every thread the session created is checked (result.threads,
        result.affinity_ok).
    precision: "fp32" or "bf16" (oneDNN's automatic bf16 rewrite; refused with
        BenchmarkError where the CPU has neither AVX512_BF16 nor AMX-BF16).
    profile: also trace a few runs (apart from the timed ones) and fill
        result.profile with time per op type and the top nodes.

    allow_io_ops: run a graph that holds file-system, process or Python-calling
        ops (refused with GraphError by default: timing runs the graph).

    Raises BenchmarkError for a bad graph, input, output, CPU id or precision.
    """
    native = load_native()
    data = _checked_bytes(graph, allow_io_ops)
    args = _native_args(inputs, outputs, runs, warmup, max_time, threads, inter_op_threads,
                        cpus, precision, seed, batch, profile, measure_overhead)
    return BenchResult._from_report(json.loads(native.bench_run(data, **args)))


def compare(a, b, inputs=None, *, outputs=None, runs=100, warmup=10, max_time=None,
            threads=None, inter_op_threads=None, cpus=None, precision="fp32", seed=0,
            batch=None, profile=False, measure_overhead=True, precision_b=None,
            allow_io_ops=False):
    """Times graphs A and B side by side, interleaved A B A B ..., with the same inputs.

    Arguments as for benchmark(); precision_b sets B's precision alone (e.g. the
    same graph as A in "bf16"). Returns a CompareResult whose speedup is
    a.p50_ms / b.p50_ms, with a paired-bootstrap 95 % interval (seeded by `seed`).
    """
    native = load_native()
    args = _native_args(inputs, outputs, runs, warmup, max_time, threads, inter_op_threads,
                        cpus, precision, seed, batch, profile, measure_overhead)
    if precision_b is not None and precision_b not in ("fp32", "bf16"):
        raise BenchmarkError(f"unknown precision {precision_b!r} (fp32 or bf16)")
    data_a, data_b = _checked_bytes(a, allow_io_ops), _checked_bytes(b, allow_io_ops)
    report = json.loads(native.bench_compare(data_a, data_b, **args,
                                             precision_b=precision_b or ""))
    return CompareResult(
        a=BenchResult._from_report(report["a"], "A"),
        b=BenchResult._from_report(report["b"], "B"),
        speedup=report["speedup"],
        speedup_ci95=tuple(report["speedup_ci95"]),
        order=list(report["order"]),
    )


def stats(samples_ms, batch=1):
    """The timer's statistics (dict) of latencies in milliseconds, computed in C++."""
    return json.loads(load_native().bench_stats([float(s) for s in samples_ms], int(batch)))


def _time_calls(fn, runs):
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def benchmark_keras(model, x, mode="predict", runs=100, warmup=10, batch=None):
    """Times a Keras model from Python with the timer's statistics.

    mode: "predict" (model.predict(x, batch_size=len(x))), "call" (model(x,
    training=False), eager) or "function" (a tf.function around the call,
    traced during the first run). Each run is timed with time.perf_counter_ns;
    first_run_ms is the first call, overhead_ms the median cost of timing an
    empty Python call the same way; init_ms is 0 (no session is created).
    Threads are TensorFlow's eager pools, which cannot be pinned after the fact.
    """
    import tensorflow as tf

    native = load_native()
    if mode not in ("predict", "call", "function"):
        raise BenchmarkError(f"unknown mode {mode!r} (predict, call or function)")
    if int(runs) < 1 or int(warmup) < 0:
        raise BenchmarkError("runs must be at least 1 and warmup not negative")
    array = np.asarray(x)
    if batch is None:
        batch = int(array.shape[0]) if array.ndim else 1
    if mode == "predict":
        def fn():
            return model.predict(array, batch_size=max(len(array), 1), verbose=0)
    elif mode == "call":
        tensor = tf.convert_to_tensor(array)

        def fn():
            return model(tensor, training=False)
    else:
        tensor = tf.convert_to_tensor(array)
        traced = tf.function(lambda t: model(t, training=False))

        def fn():
            return traced(tensor)

    first_ms = _time_calls(fn, 1)[0]
    _time_calls(fn, int(warmup))
    samples = _time_calls(fn, int(runs))
    overhead = stats(_time_calls(lambda: None, 1000))["p50_ms"]
    report = stats(samples, batch)
    report.update(
        samples_ms=samples,
        init_ms=0.0,
        first_run_ms=first_ms,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        overhead_ms=overhead,
        batch=int(batch),
        precision=str(getattr(getattr(model, "dtype_policy", None), "name", "float32")),
        warmup=int(warmup),
    )
    return BenchResult._from_report(report, f"keras-{mode}")


def cpu_supports_bf16():
    """True where the CPU has AVX512_BF16 or AMX-BF16 (LEANGRAPH_FAKE_NO_BF16=1: False)."""
    return bool(load_native().cpu_supports_bf16())


__all__ = [
    "BenchResult",
    "CompareResult",
    "benchmark",
    "benchmark_keras",
    "compare",
    "cpu_supports_bf16",
    "stats",
]
