"""Timing from Python (Keras) with the C++ timer's statistics, so that its rows sit in one
table with the graphs' timings (leangraph.bench.benchmark_keras wraps time_keras)."""

import json

import resource
import time

import numpy as np

from leangraph._tfcheck import load_native
from leangraph.errors import BenchmarkError


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


def time_keras(model, x, mode="predict", runs=100, warmup=10, batch=None):
    """Times a Keras model from Python with the timer's statistics: the report (dict).

    mode: "predict" (model.predict(x, batch_size=len(x))), "call" (model(x,
    training=False), eager) or "function" (a tf.function around the call,
    traced during the first run). Each run is timed with time.perf_counter_ns;
    first_run_ms is the first call, overhead_ms the median cost of timing an
    empty Python call the same way; init_ms is 0 (no session is created).
    Threads are TensorFlow's eager pools, which cannot be pinned after the fact.
    """
    import tensorflow as tf

    if mode not in ("predict", "call", "function"):
        raise BenchmarkError(f"unknown mode {mode!r} (predict, call or function)")
    if int(runs) < 1 or int(warmup) < 0:
        raise BenchmarkError("runs must be at least 1 and warmup not negative")
    # One array, or a list / dict of them for a model of several inputs.
    if isinstance(x, dict):
        array = {k: np.asarray(v) for k, v in x.items()}
    elif isinstance(x, (list, tuple)):
        array = [np.asarray(v) for v in x]
    else:
        array = np.asarray(x)
    flat = tf.nest.flatten(array)
    if not flat:
        raise BenchmarkError("benchmark_keras needs at least one input array")
    first = flat[0]
    examples = int(first.shape[0]) if first.ndim else 1
    if batch is None:
        batch = examples
    if mode == "predict":
        def fn():
            return model.predict(array, batch_size=max(examples, 1), verbose=0)
    elif mode == "call":
        tensor = tf.nest.map_structure(tf.convert_to_tensor, array)

        def fn():
            return model(tensor, training=False)
    else:
        tensor = tf.nest.map_structure(tf.convert_to_tensor, array)
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
    return report
