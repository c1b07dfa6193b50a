"""The timer: statistics, pinning, JSON schema, interleaving and refusals.

Tiny graphs only; no test asserts a speed.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import leangraph
from leangraph import bench, bench_cli, graphs

REPORT_KEYS = {
    "count", "samples_ms", "min_ms", "p10_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms",
    "stddev_ms", "median_ci95_ms", "median_ci95_coverage", "median_ci95_method", "throughput",
    "throughput_definition", "batch", "warmup", "precision", "init_ms", "first_run_ms",
    "overhead_ms", "peak_rss_mb", "intra_op_threads", "inter_op_threads", "intra_op_pool",
    "intra_op_pool_size", "cpus", "ops_in_calling_thread", "parallel_width",
    "inputs", "outputs", "threads", "affinity_ok", "profile",
}


def _mlp_graph(width=8, scale=1.0):
    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, width], name="x")
        w = tf.constant((rng.normal(size=(width, 4)) * scale).astype("float32"))
        tf.nn.relu(tf.matmul(x, w), name="out")
    return graph.as_graph_def()


@pytest.fixture(scope="session")
def graph_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    a = folder / "a.pb"
    b = folder / "b.pb"
    a.write_bytes(_mlp_graph().SerializeToString())
    b.write_bytes(_mlp_graph(scale=2.0).SerializeToString())
    npy = folder / "x.npy"
    np.save(npy, np.ones((2, 8), dtype=np.float32))
    return {"a": a, "b": b, "npy": npy, "dir": folder}


@pytest.fixture(scope="session")
def binary():
    path = bench_cli.find_binary()
    assert path is not None, "leangraph_bench is neither installed nor built"
    return path


def run_binary(binary, *args, env=None):
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run(
        [str(binary), *map(str, args)], capture_output=True, text=True, env=full_env, timeout=120
    )


# ---- statistics ---------------------------------------------------------------------------


def test_stats_match_numpy_percentiles():
    rng = np.random.default_rng(5)
    for n in (1, 2, 7, 100, 1001):
        sample = rng.exponential(size=n)
        s = bench.stats(sample, batch=4)
        for key, p in (("p10_ms", 10), ("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99)):
            assert s[key] == pytest.approx(np.percentile(sample, p), rel=1e-6)
        assert s["mean_ms"] == pytest.approx(sample.mean(), rel=1e-6)
        assert s["stddev_ms"] == pytest.approx(sample.std(ddof=1) if n > 1 else 0.0, rel=1e-6, abs=1e-12)
        assert s["throughput"] == pytest.approx(4 * 1000 / np.median(sample), rel=1e-6)


def test_median_interval_is_binomial_order_statistics():
    native = leangraph._tfcheck.load_native()
    assert native.median_ci95(100)[:2] == (39, 60)
    assert native.median_ci95(10)[:2] == (1, 8)
    assert native.median_ci95(5)[:2] == (0, 4)
    s = bench.stats(list(range(100, 0, -1)))
    assert s["median_ci95_ms"] == [40, 61]
    assert s["median_ci95_coverage"] == pytest.approx(0.9648, abs=1e-4)


def test_ratio_interval_is_seeded():
    native = leangraph._tfcheck.load_native()
    rng = np.random.default_rng(1)
    b = list(1 + rng.random(40))
    a = [2 * x + 0.1 * rng.random() for x in b]
    assert native.median_ratio_ci95(a, b, 3) == native.median_ratio_ci95(a, b, 3)
    lo, hi = native.median_ratio_ci95(a, b, 3)
    assert lo <= np.median(a) / np.median(b) <= hi


# ---- in-process benchmark -----------------------------------------------------------------


def test_benchmark_honours_runs_and_fills_every_field(graph_files):
    result = leangraph.benchmark(graph_files["a"], runs=17, warmup=2, batch=3)
    assert result.count == 17 == len(result.samples_ms)
    assert result.batch == 3
    assert result.inputs == [{"name": "x", "dtype": "float32", "shape": [3, 8], "source": "random(seed=0)"}]
    assert result.outputs == ["out"]
    assert result.min_ms <= result.p10_ms <= result.p50_ms <= result.p90_ms <= result.p99_ms <= result.max_ms
    lo, hi = result.median_ci95_ms
    assert lo <= result.p50_ms <= hi
    assert result.throughput == pytest.approx(3 * 1000 / result.p50_ms)
    assert result.init_ms > 0 and result.first_run_ms > 0 and result.overhead_ms > 0
    assert result.peak_rss_mb > 0
    assert result.affinity_ok is None and result.cpus is None
    json.dumps(result.to_dict())


def test_benchmark_stats_are_the_timers_stats(graph_files):
    result = leangraph.benchmark(graph_files["a"], runs=9, warmup=0, measure_overhead=False)
    again = bench.stats(result.samples_ms, result.batch)
    assert again["p50_ms"] == pytest.approx(result.p50_ms)
    assert again["median_ci95_ms"] == pytest.approx(list(result.median_ci95_ms))


def test_benchmark_max_time_stops_early(graph_files):
    result = leangraph.benchmark(graph_files["a"], runs=0, max_time=0.05, warmup=0,
                                 measure_overhead=False)
    assert 1 <= result.count == len(result.samples_ms)


def test_in_process_reports_the_shared_pool_as_it_is(graph_files):
    result = leangraph.benchmark(graph_files["a"], runs=3, warmup=0, measure_overhead=False)
    assert result.intra_op_pool == "global"
    assert result.intra_op_pool_size >= 1
    assert result.cpus is None and result.affinity_ok is None
    # Every thread of this process, with its affinity as the kernel has it.
    assert len(result.threads) >= 2
    assert all(t["cpus_allowed_list"] for t in result.threads)


def _branches_graph(branches):
    """`branches` matmuls of one input, side by side, summed."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2, 8], name="x")
        ws = [tf.constant(np.full((8, 8), 0.1 * (i + 1), np.float32)) for i in range(branches)]
        tf.math.add_n([tf.matmul(x, w) for w in ws], name="out")
    return graph.as_graph_def()


def test_ops_run_in_the_calling_thread_unless_the_graph_is_wide(graph_files):
    x = {"x": np.ones((2, 8), np.float32)}
    chain = leangraph.benchmark(graph_files["a"], x, runs=3, warmup=0, measure_overhead=False)
    assert chain.parallel_width == 1 and chain.ops_in_calling_thread is True
    two = leangraph.benchmark(_branches_graph(2), x, runs=3, warmup=0, measure_overhead=False)
    assert two.parallel_width == 2 and two.ops_in_calling_thread is True
    wide = leangraph.benchmark(_branches_graph(3), x, runs=3, warmup=0, measure_overhead=False)
    assert wide.parallel_width == 3 and wide.ops_in_calling_thread is False
    # -1 asks for the calling thread whatever the width, in this process too.
    forced = leangraph.benchmark(_branches_graph(3), x, runs=3, warmup=0, inter_op_threads=-1,
                                 measure_overhead=False)
    assert forced.ops_in_calling_thread is True and forced.inter_op_threads == -1
    # A and B run the same way: on the pool when either needs it.
    both = leangraph.compare(graph_files["a"], _branches_graph(3), x, runs=4, warmup=0,
                             measure_overhead=False)
    assert both.a.ops_in_calling_thread is False and both.b.ops_in_calling_thread is False
    assert (both.a.parallel_width, both.b.parallel_width) == (1, 3)
    with pytest.raises(leangraph.BenchmarkError, match="must not be negative"):
        leangraph.benchmark(graph_files["a"], x, runs=2, inter_op_threads=-2)


def test_compare_on_the_pool_times_several_sessions(graph_files):
    x = {"x": np.ones((2, 8), np.float32)}
    wide = _branches_graph(3)
    result = leangraph.compare(wide, wide, x, runs=24, warmup=1, measure_overhead=False,
                               burst=1, seed=5)
    assert result.a.ops_in_calling_thread is False and result.sessions == 6
    assert result.between_sessions_sd is not None and result.between_sessions_sd >= 0
    assert result.to_dict()["sessions"] == 6
    # The interval is the one paired_ratio gives for six session pairs.
    again = bench.paired_ratio(result.a.samples_ms, result.b.samples_ms,
                               [f == "A" for f in result.pair_first], sessions=6)
    assert list(result.speedup_ci95) == pytest.approx(list(again["ci"]))
    assert again["sessions"] == 6
    assert again["between_sessions_widened"] == result.between_sessions_widened
    assert [bench.session_of_pair(i, 6) for i in range(6)] == [0, 0, 1, 1, 2, 2]
    # Fewer pairs: at least four per session pair.
    few = leangraph.compare(wide, wide, x, runs=9, warmup=0, measure_overhead=False, burst=1)
    assert few.sessions == 2
    # Ops in the calling thread: one session, unless asked.
    chain = leangraph.compare(graph_files["a"], graph_files["b"], runs=8, warmup=0,
                              measure_overhead=False, burst=1)
    assert chain.sessions == 1 and chain.between_sessions_sd is None
    # ... unless the graphs hold megabytes (2 MiB of weights each here): sessions
    # of such a graph differ for all their runs, inline too.
    big = {"x": np.ones((2, 131072), np.float32)}
    heavy = leangraph.compare(_mlp_graph(131072), _mlp_graph(131072, scale=2.0), big, runs=8,
                              warmup=0, measure_overhead=False, burst=1)
    assert heavy.a.ops_in_calling_thread is True and heavy.sessions == 2
    assert heavy.between_sessions_sd is not None
    asked = leangraph.compare(graph_files["a"], graph_files["b"], runs=12, warmup=0,
                              measure_overhead=False, burst=1, sessions=3)
    assert asked.sessions == 3 and asked.pairs == 12
    child = bench.compare_in_child(graph_files["a"], graph_files["b"], runs=8, warmup=0,
                                   threads=1, measure_overhead=False, sessions=2)
    assert child.sessions == 2
    for bad in (0, 65, 1.5, True, "3"):
        with pytest.raises(leangraph.BenchmarkError, match="sessions is a number of sessions"):
            leangraph.compare(graph_files["a"], graph_files["b"], runs=2, sessions=bad)


def test_paired_ratio_widens_by_the_sessions_disagreement():
    rng = np.random.default_rng(2)
    offsets = rng.normal(0, 0.05, 4)
    log_a = [offsets[bench.session_of_pair(i, 4)] + rng.normal(0, 0.002) for i in range(40)]
    a = list(10 * np.exp(log_a))
    b = [10.0] * 40
    one = bench.paired_ratio(a, b)
    four = bench.paired_ratio(a, b, sessions=4)
    assert four["speedup"] == pytest.approx(one["speedup"])
    assert four["ci"][0] < one["ci"][0] and four["ci"][1] > one["ci"][1]
    assert four["between_sessions_widened"] is True and one["sessions"] == 1
    assert four["between_sessions_sd"] == pytest.approx(np.std(offsets, ddof=1), rel=0.3)
    with pytest.raises(leangraph.BenchmarkError, match="sessions must be 1 to 64"):
        bench.paired_ratio(a, b, sessions=0)


def test_a_while_loop_runs_in_the_calling_thread():
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2, 2], name="x")
        w = tf.constant(np.eye(2, dtype=np.float32) * 0.5)
        _, out = tf.while_loop(lambda i, h: i < 5, lambda i, h: (i + 1, tf.matmul(h, w)),
                               [tf.constant(0), x])
        tf.identity(out, name="out")
    result = leangraph.benchmark(graph.as_graph_def(), {"x": np.ones((2, 2), np.float32)},
                                 outputs=["out"], runs=3, warmup=1, measure_overhead=False)
    assert result.ops_in_calling_thread is True and result.count == 3


def test_in_process_timer_refuses_thread_counts_and_pinning(graph_files):
    native = leangraph._tfcheck.load_native()
    data = graph_files["a"].read_bytes()
    common = dict(inputs=[], outputs=[], runs=2, warmup=0, max_time=0.0, precision="fp32",
                  seed=0, batch=0, profile=False, overhead=False)
    for intra, inter, cpus in ((2, 0, []), (0, 2, []), (0, 0, [0])):
        with pytest.raises(leangraph.BenchmarkError, match="needs a process of its own"):
            native.bench_run(data, intra=intra, inter=inter, cpus=cpus, **common)


@pytest.mark.parametrize("threads", [1, 2])
def test_child_timer_thread_count_and_pinning_read_back(graph_files, threads):
    cpu = max(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    result = leangraph.benchmark(graph_files["a"], runs=5, warmup=1, cpus=[cpu],
                                 threads=threads, inter_op_threads=2)
    assert result.cpus == str(cpu)
    # The child's process-wide pool, made by its first session, the timer's.
    assert result.intra_op_pool == "global"
    # The pool's size as the session's CPU device reports it.
    assert result.intra_op_threads == threads == result.intra_op_pool_size
    assert len(result.threads) >= 3
    assert {t["cpus_allowed_list"] for t in result.threads} == {str(cpu)}
    assert result.affinity_ok is True
    assert os.sched_getaffinity(0) == before  # this process was never pinned


def test_child_timer_takes_environment_variables_of_its_own(graph_files, monkeypatch):
    real = subprocess.run
    seen = []

    def spy(cmd, *args, env=None, **kwargs):
        seen.append(env)
        return real(cmd, *args, env=env, **kwargs)

    monkeypatch.setattr(bench.subprocess, "run", spy)
    monkeypatch.delenv("TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD", raising=False)
    r = bench.benchmark_in_child(str(graph_files["a"]), {"x": np.ones((1, 8), np.float32)},
                                 runs=3, warmup=0, threads=1, measure_overhead=False,
                                 env=bench.CALLER_THREAD_ENV)
    assert r.count == 3
    assert seen[-1]["TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD"] == "1"
    assert "TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD" not in os.environ  # the child's alone
    for bad in ({"A=B": "1"}, {"X": 1}, {"": "1"}):
        with pytest.raises(leangraph.BenchmarkError, match="is not an environment variable"):
            bench.benchmark_in_child(str(graph_files["a"]), {"x": np.ones((1, 8), np.float32)},
                                     runs=3, threads=1, env=bad)


def test_child_compare_and_its_errors(graph_files):
    x = np.full((2, 8), 0.5, dtype=np.float32)
    result = bench.compare_in_child(graph_files["a"], graph_files["b"], {"x": x}, runs=8,
                                    warmup=0, threads=1, measure_overhead=False, seed=4)
    assert result.a.intra_op_pool_size == result.b.intra_op_pool_size == 1
    assert result.a.inputs[0]["shape"] == [2, 8] and result.a.inputs[0]["source"].startswith("npy:")
    assert result.pair_first == ["A" if f else "B" for f in
                                 leangraph._tfcheck.load_native().pair_order(8, 4)]
    with pytest.raises(leangraph.BenchmarkError, match="shape mismatch"):
        leangraph.benchmark(graph_files["a"], {"x": np.zeros((1, 9), np.float32)}, runs=2,
                            threads=1)
    with pytest.raises(leangraph.BenchmarkError, match="unknown CPU id 4095"):
        leangraph.benchmark(graph_files["a"], runs=2, cpus=[4095])


def test_keras_on_another_thread_during_an_in_process_benchmark(graph_files):
    import threading

    import keras

    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(3)])
    x = np.random.default_rng(0).normal(size=(4, 16)).astype("float32")
    expected = model.predict(x, verbose=0)
    outcome = {}

    def time_it():
        outcome["result"] = leangraph.benchmark(graph_files["a"], runs=0, max_time=1.0,
                                                warmup=0, measure_overhead=False)

    timer = threading.Thread(target=time_it)
    timer.start()
    outputs = []
    while timer.is_alive() or not outputs:
        outputs.append(model(x, training=False).numpy())
        outputs.append(model.predict(x, verbose=0))
    timer.join()
    assert outcome["result"].count >= 1
    assert len(outputs) >= 2
    for got in outputs:
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_inputs_from_arrays(graph_files):
    x = np.full((2, 8), 0.5, dtype=np.float32)
    result = leangraph.benchmark(graph_files["a"], {"x:0": x}, runs=3, warmup=0,
                                 measure_overhead=False)
    assert result.inputs[0]["shape"] == [2, 8] and result.inputs[0]["source"] == "array"
    assert result.batch == 2


def test_scalar_inputs_keep_their_shape(tmp_path):
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [], name="s")
        tf.identity(x * 2.0, name="out")
    for run in (leangraph.benchmark, bench.benchmark_in_child):
        result = run(g.as_graph_def(), {"s": np.float32(3)}, runs=2, warmup=0,
                     measure_overhead=False)
        assert result.inputs[0]["shape"] == []


def test_profile_reports_op_types(graph_files):
    result = leangraph.benchmark(graph_files["a"], runs=3, warmup=1, profile=True,
                                 measure_overhead=False)
    ops = {row["op"] for row in result.profile["by_op_type"]}
    assert any("MatMul" in op for op in ops), ops
    assert result.profile["top_nodes"]
    assert sum(r["percent"] for r in result.profile["by_op_type"]) == pytest.approx(100, abs=0.1)


def test_compare_order_is_randomized_recorded_and_reproducible(graph_files):
    native = leangraph._tfcheck.load_native()
    runs = {}
    for seed in (0, 0, 1):
        result = leangraph.compare(graph_files["a"], graph_files["b"], runs=20, warmup=1,
                                   measure_overhead=False, seed=seed, burst=1)
        assert result.a.count == result.b.count == result.pairs == 20 and result.burst == 1
        pairs = [result.order[i:i + 2] for i in range(0, 40, 2)]
        assert all(sorted(p) == ["A", "B"] for p in pairs)
        assert result.pair_first == [p[0] for p in pairs]
        assert result.pair_first == ["A" if f else "B" for f in native.pair_order(20, seed)]
        runs.setdefault(seed, []).append(result.pair_first)
    assert runs[0][0] == runs[0][1]
    assert runs[0][0] != runs[1][0]
    assert runs[0][0].count("A") == 10  # ABBA blocks: balanced


def test_compare_bursts_interleave_and_keep_one_sample_per_graph_and_pair(graph_files):
    native = leangraph._tfcheck.load_native()
    result = leangraph.compare(graph_files["a"], graph_files["b"], runs=8, warmup=1,
                               measure_overhead=False, seed=3, burst=3)
    assert result.burst == 3 and result.pairs == result.a.count == result.b.count == 8
    assert len(result.order) == 8 * 3 * 2
    for pair, a_first in enumerate(native.pair_order(8, 3)):
        first, second = ("A", "B") if a_first else ("B", "A")
        # AB BA AB from the pair's coin: both graphs' runs share the same moments.
        assert result.order[6 * pair:6 * pair + 6] == [first, second, second, first, first,
                                                       second]
    assert result.pair_first == ["A" if f else "B" for f in native.pair_order(8, 3)]
    # Automatic: a graph of microseconds is run many times per sample, up to the cap.
    auto = leangraph.compare(graph_files["a"], graph_files["b"], runs=6, warmup=2,
                             measure_overhead=False)
    assert 1 < auto.burst <= 50 and len(auto.order) == 6 * 2 * auto.burst
    assert auto.to_dict()["burst"] == auto.burst
    for bad in (0, -2, 1.5, True, "3"):
        with pytest.raises(leangraph.BenchmarkError, match="burst is a number of runs"):
            leangraph.compare(graph_files["a"], graph_files["b"], runs=2, burst=bad)


def test_compare_speedup_is_the_paired_estimate(graph_files):
    result = leangraph.compare(graph_files["a"], graph_files["b"], runs=12, warmup=1,
                               measure_overhead=False)
    again = bench.paired_ratio(result.a.samples_ms, result.b.samples_ms,
                               [f == "A" for f in result.pair_first])
    assert result.speedup == pytest.approx(again["speedup"])
    assert list(result.speedup_ci95) == pytest.approx(list(again["ci"]))
    assert result.position_effect == pytest.approx(again["position_effect"])
    assert result.ratio_of_medians == pytest.approx(result.a.p50_ms / result.b.p50_ms)
    lo, hi = result.speedup_ci95
    assert 0 < lo <= result.speedup <= hi
    assert result.speedup_ci95_half_width == pytest.approx((hi - lo) / (2 * result.speedup))
    assert result.target_met is None and result.stop_reason == "runs"
    assert set(result.to_dict()) >= {"speedup", "speedup_ci95", "order", "pair_first"}


def test_target_ci_stops_at_max_time_on_a_real_graph(graph_files):
    result = leangraph.compare(graph_files["a"], graph_files["b"], runs=10, warmup=0,
                               measure_overhead=False, target_ci=1e-6, max_time=0.5)
    assert result.stop_reason == "max_time" and result.target_met is False
    assert result.pairs >= 10
    loose = leangraph.compare(graph_files["a"], graph_files["b"], runs=10, warmup=0,
                              measure_overhead=False, target_ci=0.99, max_time=60)
    assert loose.stop_reason == "target" and loose.target_met is True
    # Checked first at `runs` pairs, then every 10 (a hiccup can make 10 pairs too few).
    assert loose.pairs >= 10 and loose.pairs % 10 == 0
    assert loose.speedup_ci95_half_width <= 0.99
    with pytest.raises(leangraph.BenchmarkError, match="relative half-width"):
        leangraph.compare(graph_files["a"], graph_files["b"], runs=2, target_ci=3)


def test_sigint_stops_a_long_benchmark_promptly(graph_files):
    import signal
    import threading
    import time

    for run in (
        lambda: leangraph.benchmark(graph_files["a"], runs=0, max_time=300, warmup=0,
                                    measure_overhead=False),
        lambda: leangraph.compare(graph_files["a"], graph_files["b"], runs=10, warmup=0,
                                  target_ci=1e-6, max_time=300, measure_overhead=False),
    ):
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
        start = time.monotonic()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            run()
        timer.join()
        # Far below the 300 s the benchmark would otherwise take.
        assert time.monotonic() - start < 60


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"inputs": {"nope": np.zeros((1, 8), np.float32)}}, "'nope' is not a node"),
        ({"inputs": {"x": np.zeros((1, 9), np.float32)}}, "shape mismatch"),
        ({"inputs": {"x": np.zeros((1, 8), np.int32)}}, "dtype mismatch"),
        ({"cpus": [4095]}, "unknown CPU id 4095"),
        ({"outputs": ["missing"]}, "missing"),
        ({"precision": "fp8"}, "unknown precision"),
    ],
)
def test_in_process_bad_input_raises(graph_files, kwargs, match):
    with pytest.raises(leangraph.BenchmarkError, match=match):
        leangraph.benchmark(graph_files["a"], runs=2, warmup=0, measure_overhead=False, **kwargs)


def test_bf16_refused_without_cpu_support(graph_files, monkeypatch):
    monkeypatch.setenv("LEANGRAPH_FAKE_NO_BF16", "1")
    assert leangraph.cpu_supports_bf16() is False
    with pytest.raises(leangraph.BenchmarkError, match="neither AVX512_BF16 nor AMX"):
        leangraph.benchmark(graph_files["a"], runs=2, precision="bf16")


def test_bad_graph_bytes_raise():
    with pytest.raises(leangraph.BenchmarkError, match="not a serialized GraphDef"):
        leangraph.benchmark(b"\xff\xff not a graph", runs=1)


# ---- Keras ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["call", "function", "predict"])
def test_benchmark_keras(mode):
    import keras

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    result = leangraph.benchmark_keras(model, np.ones((2, 8), np.float32), mode=mode, runs=4,
                                       warmup=1)
    assert result.count == 4 and result.batch == 2 and result.label == f"keras-{mode}"
    assert bench.stats(result.samples_ms, 2)["p50_ms"] == pytest.approx(result.p50_ms)
    with pytest.raises(leangraph.BenchmarkError, match="unknown mode"):
        leangraph.benchmark_keras(model, np.ones((2, 8), np.float32), mode="jit")


# ---- the binary -----------------------------------------------------------------------------


def test_binary_json_schema_and_pinning(binary, graph_files):
    proc = run_binary(binary, "--graph", graph_files["a"], "--runs", 7, "--warmup", 1,
                      "--cpus", 0, "--json", "--batch", 2, "--intra-op-threads", 2)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert REPORT_KEYS <= set(report)
    assert report["count"] == 7 == len(report["samples_ms"])
    assert report["cpus"] == "0" and report["affinity_ok"] is True
    # Every thread of the process, TF's pools included, is confined to CPU 0.
    assert len(report["threads"]) >= 3
    assert any(t["name"].startswith("tf_") for t in report["threads"])
    assert {t["cpus_allowed_list"] for t in report["threads"]} == {"0"}


def test_binary_compare_is_interleaved(binary, graph_files):
    proc = run_binary(binary, "--graph", graph_files["a"], "--compare", graph_files["b"],
                      "--runs", 5, "--warmup", 0, "--no-overhead", "--burst", 1, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["burst"] == 1 and "as asked" in report["burst_method"]
    assert [sorted(report["order"][i:i + 2]) for i in range(0, 10, 2)] == [["A", "B"]] * 5
    assert report["pair_first"] == report["order"][::2]
    assert report["a"]["count"] == report["b"]["count"] == report["pairs"] == 5
    assert report["ratio_of_medians"] == pytest.approx(report["a"]["p50_ms"] / report["b"]["p50_ms"],
                                                       rel=1e-6)
    assert "Wilcoxon signed-rank" in report["speedup_ci95_method"]
    assert report["target_ci"] is None and report["stop_reason"] == "runs"
    assert report["a"]["intra_op_pool"] == "global"
    assert report["a"]["intra_op_pool_size"] == report["b"]["intra_op_pool_size"] >= 1
    assert report["created_first"] in ("A", "B")


def test_binary_target_ci_reports_whether_it_was_met(binary, graph_files):
    proc = run_binary(binary, "--graph", graph_files["a"], "--compare", graph_files["b"],
                      "--runs", 6, "--warmup", 0, "--no-overhead", "--target-ci", "0.000001",
                      "--max-time", "0.3")
    assert proc.returncode == 0, proc.stderr
    assert "target +-0.0%: NOT met (stopped by max_time)" in proc.stdout


def test_binary_npy_input_and_text_report(binary, graph_files):
    proc = run_binary(binary, "--graph", graph_files["a"], "--input-npy", f"x={graph_files['npy']}",
                      "--runs", 3, "--warmup", 0, "--profile", "--profile-runs", 2)
    assert proc.returncode == 0, proc.stderr
    assert "npy:" in proc.stdout and "Summary by op type" in proc.stdout
    assert "x float32[2,8]" in proc.stdout


def test_binary_times_a_graph_written_without_default_attributes(binary, tmp_path):
    # save_graph leaves out attributes at their default, as TF's SavedModel writer does;
    # the binary fills them in as TF's import does (a Pad's Tpaddings, a QuantizeV2's
    # narrow_range) instead of refusing the file.
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4, 4, 2], name="x")
        tf.nn.relu(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), name="out")
    path = tmp_path / "stripped.pb"
    graphs.save_graph(graph.as_graph_def(), path)
    written = graphs.graph_pb2().GraphDef.FromString(path.read_bytes())
    pad = next(n for n in written.node if n.op == "Pad")
    assert "Tpaddings" not in pad.attr  # what the binary must put back
    proc = run_binary(binary, "--graph", path, "--input", "x:1,4,4,2:float32", "--runs", 3,
                      "--warmup", 0, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["count"] == 3 and report["p50_ms"] > 0


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--graph", "{dir}/missing.pb"], {}, "graph file not found"),
        (["--graph", "{a}", "--input", "nope:1,8:float32"], {}, "'nope' is not a node"),
        (["--graph", "{a}", "--input", "x:1,9:float32"], {}, "shape mismatch"),
        (["--graph", "{a}", "--input", "x:1,8:int32"], {}, "dtype mismatch"),
        (["--graph", "{a}", "--input-npy", "x={dir}/none.npy"], {}, "npy file not found"),
        (["--graph", "{a}", "--precision", "bf16"], {"LEANGRAPH_FAKE_NO_BF16": "1"},
         "neither AVX512_BF16 nor AMX"),
        (["--graph", "{a}", "--cpus", "4095"], {}, "unknown CPU id 4095"),
        (["--graph", "{a}", "--runs", "many"], {}, "--runs needs a whole number"),
        (["--graph", "{a}", "--bogus"], {}, "unknown flag"),
        (["--graph", "{a}", "--target-ci", "0.03"], {}, "--target-ci applies to --compare only"),
        (["--graph", "{a}", "--compare", "{a}", "--target-ci", "2"], {}, "relative half-width"),
        (["--graph", "{a}", "--compare", "{a}", "--burst", "0"], {}, "--burst needs a number"),
        (["--graph", "{a}", "--burst", "2"], {}, "--burst applies to --compare only"),
        (["--graph", "{a}", "--compare", "{a}", "--sessions", "0"], {},
         "--sessions needs a number of sessions from 1 to 64"),
        (["--graph", "{a}", "--sessions", "2"], {}, "--sessions applies to --compare only"),
    ],
)
def test_binary_bad_input_fails_clearly(binary, graph_files, args, env, message):
    args = [a.format(a=graph_files["a"], dir=graph_files["dir"]) for a in args]
    proc = run_binary(binary, *args, "--runs" if "--runs" not in args else "--warmup", 2, env=env)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "leangraph-bench: error:" in proc.stderr
    assert proc.stdout == ""


def test_console_script_passes_argv_through():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from leangraph.bench_cli import main; sys.exit(main())",
         "--help"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: leangraph-bench" in proc.stdout


def test_compare_with_bf16_for_b_alone(graph_files, monkeypatch):
    result = None
    if leangraph.cpu_supports_bf16():
        result = leangraph.compare(graph_files["a"], graph_files["a"], runs=3, warmup=0,
                                   precision_b="bf16", measure_overhead=False)
        assert (result.a.precision, result.b.precision) == ("fp32", "bf16")
    monkeypatch.setenv("LEANGRAPH_FAKE_NO_BF16", "1")
    with pytest.raises(leangraph.BenchmarkError, match="neither AVX512_BF16"):
        leangraph.compare(graph_files["a"], graph_files["a"], runs=2, precision_b="bf16")


def _console(*args):
    return subprocess.run(
        [sys.executable, "-c", "import sys; from leangraph.bench_cli import main; sys.exit(main())", *args],
        capture_output=True, text=True, timeout=300,
    )


def _image_graph(path):
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 8, 8, 3], name="pixels")
        tf.identity(tf.reduce_sum(x, axis=[1, 2]), name="output")
    path.write_bytes(g.as_graph_def().SerializeToString())
    return path


@pytest.mark.slow
def test_console_script_feeds_an_image_directory(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i, color in enumerate([(255, 0, 0), (0, 255, 0)]):
        Image.new("RGB", (20, 12), color).save(folder / f"{i}.png")
    graph = _image_graph(tmp_path / "g.pb")
    proc = _console("--graph", str(graph), "--image-dir", str(folder), "--preprocess", "tf",
                    "--runs", "3", "--warmup", "0", "--no-overhead", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (fed,) = report["inputs"]
    assert fed["name"] == "pixels" and list(fed["shape"]) == [1, 8, 8, 3]
    assert "/proc/self/fd/" in fed["source"]
    assert report["count"] == 3


@pytest.mark.parametrize("extra, message", [
    (["--image-dir", "/no/such/folder"], "is not a directory"),
    (["--preprocess", "tf"], "--preprocess applies to --image-dir only"),
])
@pytest.mark.slow
def test_console_script_image_errors(tmp_path, extra, message):
    graph = _image_graph(tmp_path / "g.pb")
    proc = _console("--graph", str(graph), *extra, "--runs", "1")
    assert proc.returncode == 2
    assert message in proc.stderr


@pytest.mark.slow
def test_bench_cli_takes_a_keras_model(tmp_path):
    import graph_builders

    path = tmp_path / "cnn.keras"
    graph_builders.keras_cnn_model().save(path)
    proc = subprocess.run([sys.executable, "-m", "leangraph.bench_cli", "--graph", str(path),
                           "--runs", "3", "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert report["count"] == 3 and report["p50_ms"] > 0
    missing = subprocess.run([sys.executable, "-m", "leangraph.bench_cli", "--graph",
                              str(tmp_path / "nope.keras")], capture_output=True, text=True,
                             timeout=600)
    assert missing.returncode != 0
