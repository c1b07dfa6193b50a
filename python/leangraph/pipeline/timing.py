"""The one timing front end: the C++ timer for every graph variant, Keras in-process."""

import numpy as np

from leangraph import bench as timer
from leangraph import graphs
from leangraph.errors import BenchmarkError, GraphError, UsageError
from leangraph.pipeline.variants import LatencyStats, with_batch
from leangraph.safety import require_safe


def split_runs(runs, rounds):
    base, extra = divmod(runs, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def bench_kwargs(threads, cpus):
    kwargs = {}
    if threads:
        kwargs["threads"] = threads
    if cpus:
        kwargs["cpus"] = cpus
    return kwargs


def time_variant(v, bench, keras_model, keras_x, feeds, output_names, runs, warmup, bench_kwargs,
                  allow_io_ops=False):
    """One round of timing for one variant: Keras in-process, graphs by the C++ timer."""
    if v.name == "keras-predict":
        return bench.benchmark_keras(keras_model, keras_x, mode="predict", runs=runs, warmup=warmup)
    if v.name == "keras-call":
        return bench.benchmark_keras(keras_model, keras_x, mode="call", runs=runs, warmup=warmup)
    return bench.benchmark(v.graph_def, feeds, outputs=output_names, runs=runs, warmup=warmup,
                           precision=v.bench_precision, allow_io_ops=allow_io_ops, **bench_kwargs)


def time_batch(timed, batch, bench, keras_model, examples, input_names, output_names, runs,
                warmup, bench_kwargs, allow_io_ops, prog):
    """Times every variant once more at batch `batch` (one round each, same inputs).

    A graph whose shapes were folded for batch 1 (a Reshape to [1, -1], ...)
    cannot run a bigger batch; it gets a note, not a FAILED verdict.
    """
    x = [np.resize(e, (batch,) + e.shape[1:]) for e in examples]
    feeds = dict(zip(input_names, x))
    keras_x = x[0] if len(x) == 1 else x
    for v in timed:
        prog.item(f"{v.name}: batch {batch}, {runs} runs")
        v.batch = batch
        try:
            if v.kind == "keras":
                result = bench.benchmark_keras(keras_model, keras_x,
                                               mode="predict" if v.name == "keras-predict"
                                               else "call", runs=runs, warmup=warmup)
            else:
                result = bench.benchmark(with_batch(v.graph_def, input_names, batch), feeds,
                                         outputs=output_names, runs=runs, warmup=warmup,
                                         precision=v.bench_precision, allow_io_ops=allow_io_ops,
                                         **bench_kwargs)
        except (BenchmarkError, GraphError) as exc:
            v.batch_note = f"batch {batch} failed: {str(exc).splitlines()[0][:200]}"
            continue
        v.batch_latency = LatencyStats.from_samples(list(result.samples_ms))


def time_rounds(timed, bench, keras_model, examples, input_names, output_names, runs, rounds,
                warmup, threads=None, cpus=None, allow_io_ops=False, progress=None):
    """Times every variant in `timed` side by side and fills latency, init_ms and speedup.

    The runs are split into `rounds`; each round times every variant in turn,
    starting one further along each time, so drift on a shared machine spreads
    over all of them. A variant the timer refuses is FAILED and left out; the
    others go on. Returns the order in which the rounds ran, and the variants
    that were timed.
    """
    samples = {v.name: [] for v in timed}
    init_ms = {v.name: [] for v in timed}
    order = []
    broken = set()
    feeds = {n: x[:1] for n, x in zip(input_names, examples)}
    keras_x = examples[0][:1] if len(examples) == 1 else [x[:1] for x in examples]
    kwargs = bench_kwargs(threads, cpus)
    if not allow_io_ops:
        # Once per variant here, rather than a parse and scan of the whole graph by the
        # timer in every round.
        for v in timed:
            if v.kind == "graph":
                try:
                    require_safe(graphs.load_graph(v.graph_def), what=f"the {v.name} graph")
                except GraphError as exc:
                    v.fail(f"timing refused: {exc}")
                    broken.add(v.name)
        allow_io_ops = True
    for r, chunk in enumerate(split_runs(runs, rounds)):
        shift = r % len(timed)
        for v in timed[shift:] + timed[:shift]:
            if progress is not None:
                progress.item(f"{v.name}: round {r + 1}/{rounds}, {chunk} runs")
            if v.name in broken:
                if progress is not None:
                    progress.advance()
                continue
            try:
                result = time_variant(v, bench, keras_model, keras_x, feeds, output_names,
                                      chunk, warmup, kwargs, allow_io_ops)
            except BenchmarkError as exc:
                # One graph the timer refuses must not sink the others' measurements.
                v.fail(f"timing failed: {exc}")
                broken.add(v.name)
            else:
                got = list(result.samples_ms)
                if len(got) != chunk:
                    raise BenchmarkError(f"the timer returned {len(got)} samples for {v.name}, "
                                         f"{chunk} were asked for")
                samples[v.name].extend(got)
                if getattr(result, "init_ms", None) is not None:
                    init_ms[v.name].append(float(result.init_ms))
                order.append(v.name)
            if progress is not None:
                progress.advance()
    timed = [v for v in timed if v.name not in broken]
    for v in timed:
        v.latency = LatencyStats.from_samples(samples[v.name], rounds=rounds)
        if init_ms[v.name]:
            v.init_ms = float(np.median(init_ms[v.name]))
    reference = next((v for v in timed if v.is_reference), None)
    if reference is not None:
        for v in timed:
            v.speedup = reference.latency.p50_ms / v.latency.p50_ms
    return order, timed


def _is_grappler_bf16(session_config):
    from tensorflow.core.protobuf import rewriter_config_pb2

    rewrite = session_config.graph_options.rewrite_options
    return rewrite.auto_mixed_precision_onednn_bfloat16 == rewriter_config_pb2.RewriterConfig.ON


def session_timer(graph_def, session_config, threads, feeds, runs=30, warmup=5, max_time=10.0):
    """p50 latency (ms) of one run, by the C++ timer that times every other variant too.

    session_config: None, or Grappler's bf16 config (precision.grappler_bf16_config),
    which is the timer's precision="bf16": the same oneDNN rewrite, so that
    bf16-grappler trials are ranked on the same clock as the rest.
    """
    precision = "fp32"
    if session_config is not None:
        if not _is_grappler_bf16(session_config):
            raise UsageError("session_timer times plain graphs and Grappler's bf16 rewrite; "
                             "this session config asks for something else")
        precision = "bf16"
    result = timer.benchmark(graph_def, feeds, runs=runs, warmup=warmup, threads=threads,
                             max_time=max_time, precision=precision)
    return float(result.p50_ms)
