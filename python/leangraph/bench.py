"""leangraph.benchmark / compare / benchmark_keras: the C++ timer.

benchmark() and compare() run the very code of the `leangraph-bench` binary
(native/bench/runner.cc): in this process with the GIL released, or, when a
thread count or CPU pinning is asked for, in the binary itself
(benchmark_in_child / compare_in_child). TensorFlow shares its thread pools
among every session of a process, sized and pinned by whoever made them first,
so only a process whose first session is the timer's (the binary, pinned before
TensorFlow starts) can give the chosen sizes and CPUs. A and B always share the
pools, so they run on the same threads. In-process results report the shared
pool as it is (intra_op_pool="global", intra_op_pool_size, every thread's
affinity). benchmark_keras() times Keras from Python and computes
its statistics with the same C++ function, so the rows of a table built from
them are comparable. Ctrl-C stops a benchmark within ~100 ms (KeyboardInterrupt).

Statistics (see native/bench/stats.h): percentiles interpolate linearly between
order statistics (numpy's default); stddev is the sample standard deviation;
median_ci95_ms is a distribution-free interval from the binomial order
statistics; throughput = batch * 1000 / p50_ms (examples/s at the median
latency). compare() times A and B in pairs whose order is randomized in ABBA
blocks (seeded with `seed`, recorded in pair_first); speedup is exp of the
Hodges-Lehmann estimate of the per-pair log(a_i / b_i), and speedup_ci95 its
Wilcoxon signed-rank interval, exponentiated. position_effect shows a machine
that favours the first (or second) run of a pair. target_ci keeps timing pairs
until the interval's relative half-width is that small (or max_time passes).
Each compare() sample is the fastest of a burst of runs, A's and B's
interleaved (`burst`; by default as many as last about 5 ms, so only graphs
faster than that run more than once per sample): the bursts narrow the interval
of sub-millisecond graphs, whose single runs scatter on a shared machine
(bench/results/2026-12-02-cpu-unrecorded-timer_calibration.md).
Where the ops run on TF's inter-op pool (wide graphs), and where A and B hold
over 2 MiB together either way, compare() times several sessions of each graph
(`sessions`; by default 12 there, 1 for small graphs run in the calling thread),
session s of A against session s of B, and widens the interval where the session pairs'
estimates disagree more than the pairs within them: on the pool each session
settles on its own split of ops between the pool and the caller, and a session
of a graph of megabytes stays a few per cent faster or slower than another for
all its runs, which one session's pairs cannot show.
"""

import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from leangraph import bench_cli, graphs, hardware
from leangraph._tfcheck import load_native
from leangraph.bench_python import stats, time_keras
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
    inter_op_threads: int = 0  # as asked: -1 calling thread, 0 automatic, N a pool
    ops_in_calling_thread: bool = None  # how the ops ran (see benchmark's inter_op_threads)
    parallel_width: int = 0  # the most convolutions/matmuls the graph can run at once
    intra_op_pool: str = ""  # "global" (shared by the process) or "per-session"
    intra_op_pool_size: int = 0  # threads of the pool the session really ran on
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
    """A and B timed in pairs; speedup = exp(Hodges-Lehmann of log(a_i / b_i)): how many
    times faster B is, with its Wilcoxon signed-rank 95 % interval."""

    a: BenchResult
    b: BenchResult
    speedup: float
    speedup_ci95: tuple
    order: list  # "A" / "B" in the order the timed runs happened
    pair_first: list = field(default_factory=list)  # per pair, "A" or "B": which ran first
    pairs: int = 0
    speedup_ci95_coverage: float = 0.0  # the interval's exact (or normal) coverage
    speedup_ci95_half_width: float = 0.0  # (hi - lo) / (2 * speedup)
    ratio_of_medians: float = 0.0  # a.p50_ms / b.p50_ms, for reference
    position_effect: float = None  # first / second run of a pair, A/B removed; 1 = no bias
    target_ci: float = None
    target_met: bool = None  # None: no target was asked
    stop_reason: str = ""  # "runs", "target", "max_time" or "max_pairs"
    seed: int = 0
    burst: int = 1  # runs per sample, the fastest kept (a/b latencies are of these samples)
    sessions: int = 1  # per graph; pair i ran in session pair bench.session_of_pair(i, sessions)
    between_sessions_sd: float = None  # sd of the session pairs' log estimates (sessions > 1)
    between_sessions_widened: bool = False  # the interval was widened to cover them

    @classmethod
    def _from_report(cls, report):
        return cls(
            a=BenchResult._from_report(report["a"], "A"),
            b=BenchResult._from_report(report["b"], "B"),
            speedup=report["speedup"],
            speedup_ci95=tuple(report["speedup_ci95"]),
            order=list(report["order"]),
            pair_first=list(report["pair_first"]),
            pairs=report["pairs"],
            speedup_ci95_coverage=report["speedup_ci95_coverage"],
            speedup_ci95_half_width=report["speedup_ci95_half_width"],
            ratio_of_medians=report["ratio_of_medians"],
            position_effect=report["position_effect"],
            target_ci=report["target_ci"],
            target_met=report["target_met"],
            stop_reason=report["stop_reason"],
            burst=report.get("burst", 1),
            sessions=report.get("sessions", 1),
            between_sessions_sd=report.get("between_sessions_sd"),
            between_sessions_widened=report.get("between_sessions_widened", False),
        )

    def to_dict(self):
        return {
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "speedup": self.speedup,
            "speedup_ci95": list(self.speedup_ci95),
            "order": list(self.order),
            "pair_first": list(self.pair_first),
            "pairs": self.pairs,
            "speedup_ci95_coverage": self.speedup_ci95_coverage,
            "speedup_ci95_half_width": self.speedup_ci95_half_width,
            "ratio_of_medians": self.ratio_of_medians,
            "position_effect": self.position_effect,
            "target_ci": self.target_ci,
            "target_met": self.target_met,
            "stop_reason": self.stop_reason,
            "burst": self.burst,
            "sessions": self.sessions,
            "between_sessions_sd": self.between_sessions_sd,
            "between_sessions_widened": self.between_sessions_widened,
        }

    def __str__(self):
        lo, hi = self.speedup_ci95
        text = (f"speedup {self.speedup:.3f}x (95% CI {lo:.3f}-{hi:.3f}, {self.pairs} pairs), "
                f"A {self.a.p50_ms:.4f} ms, B {self.b.p50_ms:.4f} ms")
        if self.target_ci:
            text += f", target +-{self.target_ci:.1%} {'met' if self.target_met else 'NOT met'}"
        return text


def _cpu_list(cpus):
    return hardware.parse_cpus(cpus, "cpus", available_only=False) or []


def _inputs(inputs):
    if inputs is None:
        return []
    if not isinstance(inputs, dict):
        raise TypeError("inputs must be None or a dict {name: numpy array}")
    out = []
    for name, value in inputs.items():
        # asarray, not ascontiguousarray: the latter turns a scalar into shape (1,).
        array = np.asarray(value, order="C")
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
    threads: TF's intra-op pool size (None: TF's default; in-process the session
        runs on the process's shared intra-op pool). inter_op_threads: None or 0
        runs every op in the calling thread when at most two convolutions or
        matmuls can run at once (result.parallel_width), else on TF's default
        inter-op pool; -1 always in the calling thread; N an inter-op pool of N
        (in a child process). Why: on a pool, TF's executor decides per session,
        from its own runs, which ops go to a pool thread, which made two sessions
        of one small CNN differ by up to 20 %; only wide graphs (Inception,
        NASNet) are faster on it.
    cpus: pin every thread to these CPUs ("0,1", [0, 1] or 0). A thread count or
        pinning runs the timer in a child process (benchmark_in_child), where
        every thread is checked (result.threads, result.affinity_ok) and
        result.intra_op_pool_size is the pool's real size.
    precision: "fp32" or "bf16" (oneDNN's automatic bf16 rewrite; refused with
        BenchmarkError where the CPU has neither AVX512_BF16 nor AMX-BF16).
    profile: also trace a few runs (apart from the timed ones) and fill
        result.profile with time per op type and the top nodes.

    allow_io_ops: run a graph that holds file-system, process or Python-calling
        ops (refused with GraphError by default: timing runs the graph).

    Raises BenchmarkError for a bad graph, input, output, CPU id or precision.
    """
    if threads or (inter_op_threads or 0) > 0 or cpus is not None:
        return benchmark_in_child(graph, inputs, outputs=outputs, runs=runs, warmup=warmup,
                                  max_time=max_time, threads=threads,
                                  inter_op_threads=inter_op_threads, cpus=cpus,
                                  precision=precision, seed=seed, batch=batch, profile=profile,
                                  measure_overhead=measure_overhead, allow_io_ops=allow_io_ops)
    native = load_native()
    data = _checked_bytes(graph, allow_io_ops)
    args = _native_args(inputs, outputs, runs, warmup, max_time, threads, inter_op_threads,
                        cpus, precision, seed, batch, profile, measure_overhead)
    return BenchResult._from_report(json.loads(native.bench_run(data, **args)))


def compare(a, b, inputs=None, *, outputs=None, runs=100, warmup=10, max_time=None,
            threads=None, inter_op_threads=None, cpus=None, precision="fp32", seed=0,
            batch=None, profile=False, measure_overhead=True, precision_b=None,
            target_ci=None, allow_io_ops=False, burst=None, sessions=None):
    """Times graphs A and B side by side, in pairs, with the same inputs.

    Arguments as for benchmark(); precision_b sets B's precision alone (e.g. the
    same graph as A in "bf16"). The order within each pair is randomized in ABBA
    blocks seeded by `seed` (result.pair_first). Returns a CompareResult whose
    speedup (how many times faster B is) is exp of the Hodges-Lehmann estimate of
    the per-pair log(a_i / b_i), with its Wilcoxon signed-rank 95 % interval.

    target_ci: e.g. 0.03 keeps timing pairs (runs is then the least number of
        pairs) until the interval is within +-3 % of the speedup, or until
        max_time seconds (default 60) have passed; result.target_met says which.
    burst: each sample is the fastest of this many runs, interleaved with the
        other graph's (None: as many as last about 5 ms, judged from the
        warm-up; result.burst).
    sessions: sessions of each graph, session s of A timed against session s of
        B, the interval widened by their disagreement (None: 12, fewer for graphs
        of over 85 MiB or that take over a second to load; 1 where the ops run in
        the calling thread and the two graphs hold 2 MiB or less, or over 512 MiB).
    """
    target_ci = _target(target_ci)
    burst = _burst(burst)
    sessions = _sessions(sessions)
    if threads or (inter_op_threads or 0) > 0 or cpus is not None:
        return compare_in_child(a, b, inputs, outputs=outputs, runs=runs, warmup=warmup,
                                max_time=max_time, threads=threads,
                                inter_op_threads=inter_op_threads, cpus=cpus,
                                precision=precision, seed=seed, batch=batch, profile=profile,
                                measure_overhead=measure_overhead, precision_b=precision_b,
                                target_ci=target_ci, allow_io_ops=allow_io_ops, burst=burst,
                                sessions=sessions)
    native = load_native()
    args = _native_args(inputs, outputs, runs, warmup, max_time, threads, inter_op_threads,
                        cpus, precision, seed, batch, profile, measure_overhead)
    _check_precision(precision_b)
    data_a, data_b = _checked_bytes(a, allow_io_ops), _checked_bytes(b, allow_io_ops)
    report = json.loads(native.bench_compare(data_a, data_b, **args,
                                             precision_b=precision_b or "",
                                             target_ci=target_ci or 0.0,
                                             burst=burst or 0, sessions=sessions or 0))
    return CompareResult._from_report(report)


def _target(target_ci):
    if target_ci is None:
        return None
    try:
        value = float(target_ci)
    except (TypeError, ValueError):
        raise BenchmarkError(f"target_ci must be a number like 0.03, got {target_ci!r}") from None
    if not 0 < value < 1:
        raise BenchmarkError(f"target_ci is a relative half-width in (0, 1), e.g. 0.03; got {value}")
    return value


def _burst(burst):
    if burst is None:
        return None
    if isinstance(burst, bool) or not isinstance(burst, (int, np.integer)) or burst < 1:
        raise BenchmarkError(f"burst is a number of runs >= 1 (or None: automatic); got {burst!r}")
    return int(burst)


_MAX_SESSIONS = 64  # native/bench/runner.h kMaxSessions


def _sessions(sessions):
    if sessions is None:
        return None
    if (isinstance(sessions, bool) or not isinstance(sessions, (int, np.integer))
            or not 1 <= sessions <= _MAX_SESSIONS):
        raise BenchmarkError(f"sessions is a number of sessions from 1 to {_MAX_SESSIONS} "
                             f"(or None: automatic); got {sessions!r}")
    return int(sessions)


def _check_precision(precision):
    if precision is not None and precision not in ("fp32", "bf16"):
        raise BenchmarkError(f"unknown precision {precision!r} (fp32 or bf16)")


# ---- the timer in a process of its own ---------------------------------------------------


def _child_command(binary, folder, graphs_bytes, inputs, outputs, runs, warmup, max_time,
                   threads, inter_op_threads, cpus, precision, seed, batch, profile,
                   measure_overhead, precision_b=None, target_ci=None, burst=None,
                   sessions=None):
    """The binary's argv; graphs and input arrays are written into `folder`."""
    folder = Path(folder)
    cmd = [str(binary)]
    for flag, (name, data) in zip(("--graph", "--compare"), graphs_bytes):
        path = folder / name
        path.write_bytes(data)
        cmd += [flag, str(path)]
    for i, (name, value) in enumerate((inputs or {}).items()):
        # asarray, not ascontiguousarray: the latter turns a scalar into shape (1,).
        array = np.asarray(value, order="C")
        if array.dtype.name not in _SUPPORTED_DTYPES:
            raise BenchmarkError(
                f"input '{name}' has dtype {array.dtype.name}, which the timer cannot feed "
                f"(supported: {', '.join(sorted(_SUPPORTED_DTYPES))})"
            )
        path = folder / f"input{i}.npy"
        np.save(path, array.astype(array.dtype.newbyteorder("<"), copy=False))
        cmd += ["--input-npy", f"{name}={path}"]
    for name in _outputs(outputs):
        cmd += ["--output", name]
    cmd += ["--runs", str(int(runs)), "--warmup", str(int(warmup)), "--seed", str(int(seed)),
            "--precision", precision]
    if max_time:
        cmd += ["--max-time", repr(float(max_time))]
    if threads:
        cmd += ["--intra-op-threads", str(int(threads))]
    if inter_op_threads:
        cmd += ["--inter-op-threads", str(int(inter_op_threads))]
    cpu_ids = _cpu_list(cpus)
    if cpus is not None:
        if not cpu_ids:
            raise BenchmarkError(f"cpus names no CPU: {cpus!r}")
        cmd += ["--cpus", ",".join(map(str, cpu_ids))]
    if batch:
        cmd += ["--batch", str(int(batch))]
    if profile:
        cmd.append("--profile")
    if not measure_overhead:
        cmd.append("--no-overhead")
    if precision_b:
        cmd += ["--compare-precision", precision_b]
    if target_ci:
        cmd += ["--target-ci", repr(float(target_ci))]
    if burst:
        cmd += ["--burst", str(int(burst))]
    if sessions:
        cmd += ["--sessions", str(int(sessions))]
    return cmd + ["--json"]


#: TensorFlow's oneDNN kernels hand every piece of an op to the intra-op pool and wait
#: for it; with this variable set (TF reads it once per process) the calling thread runs
#: one piece itself, when the pool has a thread per CPU the process may run on.
CALLER_THREAD_VAR = "TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD"
CALLER_THREAD_ENV = {CALLER_THREAD_VAR: "1"}


def caller_thread_set():
    """Whether this process's environment sets CALLER_THREAD_VAR already (TensorFlow reads
    it as a boolean: 1 or true, in any case), so every child timer has it."""
    return os.environ.get(CALLER_THREAD_VAR, "").strip().lower() in ("1", "true")


def _child_env(extra):
    """The timer process's environment: ours, with `extra` (str -> str) on top."""
    env = bench_cli._environment()
    for key, value in (extra or {}).items():
        if not isinstance(key, str) or not isinstance(value, str) or not key or "=" in key:
            raise BenchmarkError(f"env: {key!r}={value!r} is not an environment variable "
                                 "(names and values are strings; a name has no '=')")
        env[key] = value
    return env


def _run_child(cmd, extra_env=None):
    env = _child_env(extra_env)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    # 3: the report is complete but some thread ran outside --cpus
    # (result.affinity_ok says so).
    if proc.returncode not in (0, 3):
        lines = [l for l in proc.stderr.splitlines() if l.startswith("leangraph-bench: error: ")]
        if lines:
            raise BenchmarkError(lines[-1][len("leangraph-bench: error: "):])
        tail = proc.stderr.strip().splitlines()[-1:] or ["no message"]
        raise BenchmarkError(f"the timer process failed (exit {proc.returncode}): {tail[0]}")
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise BenchmarkError("the timer process printed no JSON report") from None


def _binary():
    binary = bench_cli.find_binary()
    if binary is None:
        raise BenchmarkError(
            "a thread count or CPU pinning needs the leangraph_bench binary, which is missing; "
            "reinstall leangraph (or `bazel build //native/bench:leangraph_bench`)")
    return binary


def benchmark_in_child(graph, inputs=None, *, outputs=None, runs=100, warmup=10, max_time=None,
                       threads=None, inter_op_threads=None, cpus=None, precision="fp32",
                       seed=0, batch=None, profile=False, measure_overhead=True,
                       allow_io_ops=False, env=None):
    """benchmark() in the leangraph_bench binary: a process of its own, pinned to
    `cpus` before TensorFlow starts, whose first session makes the process's
    intra-/inter-op pools with `threads` / `inter_op_threads` threads, so every
    thread of the process is checked against `cpus`. Graph and inputs travel as
    temporary files, the report as JSON. `env` adds environment variables to that
    process only (e.g. CALLER_THREAD_ENV, a TensorFlow setting read at start-up)."""
    _check_precision(precision)
    _child_env(env)  # bad names fail before any work
    binary = _binary()
    data = _checked_bytes(graph, allow_io_ops)
    with tempfile.TemporaryDirectory(prefix="leangraph-bench-") as folder:
        cmd = _child_command(binary, folder, [("a.pb", data)], inputs, outputs, runs, warmup,
                             max_time, threads, inter_op_threads, cpus, precision, seed, batch,
                             profile, measure_overhead)
        return BenchResult._from_report(_run_child(cmd, env))


def compare_in_child(a, b, inputs=None, *, outputs=None, runs=100, warmup=10, max_time=None,
                     threads=None, inter_op_threads=None, cpus=None, precision="fp32", seed=0,
                     batch=None, profile=False, measure_overhead=True, precision_b=None,
                     target_ci=None, allow_io_ops=False, burst=None, sessions=None):
    """compare() in the leangraph_bench binary (see benchmark_in_child)."""
    _check_precision(precision)
    _check_precision(precision_b)
    target_ci = _target(target_ci)
    burst = _burst(burst)
    sessions = _sessions(sessions)
    binary = _binary()
    data_a, data_b = _checked_bytes(a, allow_io_ops), _checked_bytes(b, allow_io_ops)
    with tempfile.TemporaryDirectory(prefix="leangraph-bench-") as folder:
        cmd = _child_command(binary, folder, [("a.pb", data_a), ("b.pb", data_b)], inputs,
                             outputs, runs, warmup, max_time, threads, inter_op_threads, cpus,
                             precision, seed, batch, profile, measure_overhead, precision_b,
                             target_ci, burst, sessions)
        return CompareResult._from_report(_run_child(cmd))


def paired_ratio(a_ms, b_ms, a_first=None, confidence=0.95, sessions=1):
    """The timer's estimate for paired times: a dict with speedup (exp of the
    Hodges-Lehmann estimate of log(a_i / b_i)), ci (Wilcoxon signed-rank, widened by
    the session pairs' disagreement when sessions > 1: pair i ran in session pair
    session_of_pair(i, sessions)), coverage, exact, half_width, ratio_of_medians,
    position_effect (when a_first is given) and the between-sessions spread."""
    flags = [] if a_first is None else [bool(x) for x in a_first]
    return load_native().paired_ratio([float(x) for x in a_ms], [float(x) for x in b_ms],
                                      flags, float(confidence), int(sessions))


def session_of_pair(pair, sessions):
    """The session pair (0-based) that times pair `pair` of a compare."""
    return load_native().session_of_pair(int(pair), int(sessions))


def benchmark_keras(model, x, mode="predict", runs=100, warmup=10, batch=None):
    """Times a Keras model from Python with the timer's statistics (bench_python.time_keras:
    mode "predict", "call" or "function"), as a BenchResult."""
    report = time_keras(model, x, mode=mode, runs=runs, warmup=warmup, batch=batch)
    return BenchResult._from_report(report, f"keras-{mode}")


cpu_supports_bf16 = hardware.cpu_supports_bf16


__all__ = [
    "BenchResult",
    "CompareResult",
    "benchmark",
    "benchmark_in_child",
    "benchmark_keras",
    "compare",
    "compare_in_child",
    "cpu_supports_bf16",
    "paired_ratio",
    "stats",
]
