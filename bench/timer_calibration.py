"""Calibration of the timer's A/B interval: does its "95 %" hold on this machine?

    .venv/bin/python bench/timer_calibration.py [--k 20] [--runs 60] [--default-runs 100]
        [--extra-cost 0.10] [--threads N --cpus LIST] [--skip-large]
        [--graphs small,cells,mobilenet] [--sessions N]

For a small CNN, a small CNN of Inception-like cells (wide enough to run on TF's inter-op
pool) and a larger one (Keras MobileNetV2 96x96, random weights, frozen):
  - K self-compares: the graph (A) against a byte-different copy of itself (B: one extra,
    unused Const node). The truth is 1.0; prints how often the interval covers it, the
    median |speedup - 1|, the median half-width, the median position effect, and the same
    coverage for the paired bootstrap of the ratio of medians that compare() used before,
    computed on the very same samples;
  - K compares against a copy with an injected cost: a chain of MatMuls that runs after the
    model's output (it depends on it), sized to --extra-cost of the graph's latency by timing
    one MatMul of the chain on its own. Prints how often the interval excludes 1.0 on the
    slow side (detection) and the median estimated cost;
  - at --default-runs (compare()'s default), K/2 more self-compares: the median half-width
    there is the smallest difference the timer resolves at its default (a true difference of
    that size is called about half the time, twice it nearly always).
The targets over K = 20: coverage >= 90 %, median |speedup - 1| <= 0.03, median half-width
<= 0.04 at --runs 60 on the small CNN, the +10 % cost detected in >= 9 of 10.
On the inter-op pool compare() times several sessions of each graph (12 by default,
--sessions N to choose, 1 for one session as before); the script prints how many.
Timings are only as quiet as the machine; the script prints its load average.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import leangraph  # noqa: E402
from leangraph import bench  # noqa: E402

TARGETS = {"coverage": 0.90, "abs_error": 0.03, "half_width": 0.04, "detection": 0.9}


def small_cnn():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 64, 64, 3], name="input")
        h = x
        for i, (channels, stride) in enumerate([(16, 1), (32, 2), (64, 2), (64, 2)]):
            k = rng.normal(0, 0.2, (3, 3, int(h.shape[-1]), channels)).astype("float32")
            h = tf.nn.relu(tf.nn.conv2d(h, tf.constant(k), stride, "SAME"), name=f"conv{i}")
        h = tf.reduce_mean(h, axis=[1, 2])
        w = rng.normal(0, 0.1, (64, 10)).astype("float32")
        tf.identity(tf.matmul(h, tf.constant(w)), name="logits")
    return graph.as_graph_def(), "input", "logits", [1, 64, 64, 3]


def branchy_cnn():
    """A small CNN of Inception-like cells (four conv branches, concatenated): wide enough
    (ParallelWidth 4) that the timer runs it on TF's inter-op pool."""
    import tensorflow as tf

    rng = np.random.default_rng(2)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 32, 32, 8], name="input")
        h = x
        for cell in range(3):
            branches = []
            for b, size in enumerate((1, 3, 3, 5)):
                k = rng.normal(0, 0.2, (size, size, int(h.shape[-1]), 8)).astype("float32")
                branches.append(tf.nn.relu(tf.nn.conv2d(h, tf.constant(k), 1, "SAME"),
                                           name=f"cell{cell}_b{b}"))
            h = tf.concat(branches, axis=-1)
        h = tf.reduce_mean(h, axis=[1, 2])
        w = rng.normal(0, 0.1, (32, 10)).astype("float32")
        tf.identity(tf.matmul(h, tf.constant(w)), name="logits")
    return graph.as_graph_def(), "input", "logits", [1, 32, 32, 8]


def mobilenet():
    import keras

    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None)
    frozen = leangraph.freeze(model)
    return frozen.graph_def, frozen.input_names[0], frozen.output_names[0], [1, 96, 96, 3]


def byte_different_copy(graph_def):
    """The same computation plus one unused Const (the timer never fetches a Const)."""
    import tensorflow as tf

    copy = type(graph_def)()
    copy.CopyFrom(graph_def)
    node = copy.node.add()
    node.name = "calibration_unused"
    node.op = "Const"
    node.attr["dtype"].type = tf.float32.as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.float32(1.0)))
    return copy


def with_extra_cost(graph_def, output, matmuls, size=128):
    """graph_def plus a chain of `matmuls` size x size MatMuls fed by the output, so it runs
    after the model (not beside it on an idle thread) and cannot be folded away."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    # An orthogonal matrix keeps the chain's values bounded however long it is.
    w, _ = np.linalg.qr(rng.normal(size=(size, size)))
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
        out = graph.get_tensor_by_name(output + ":0")
        h = tf.constant(rng.normal(size=(size, size)).astype("float32")) + 1e-9 * tf.reduce_sum(out)
        weight = tf.constant(w.astype("float32"))
        for _ in range(matmuls):
            h = tf.matmul(h, weight)
        tf.identity(tf.reduce_sum(h), name="injected_cost")
    return graph.as_graph_def()


def chain_only(matmuls, size=128):
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [], name="seed")
        rng = np.random.default_rng(1)
        w, _ = np.linalg.qr(rng.normal(size=(size, size)))
        h = tf.constant(rng.normal(size=(size, size)).astype("float32")) + x
        weight = tf.constant(w.astype("float32"))
        for _ in range(matmuls):
            h = tf.matmul(h, weight)
        tf.identity(tf.reduce_sum(h), name="out")
    return graph.as_graph_def()


def median(values):
    return statistics.median(values) if values else float("nan")


def calibrate(name, graph_def, input_name, output, shape, args, timer):
    native = leangraph._tfcheck.load_native()
    feeds = {input_name: np.random.default_rng(0).random(shape, dtype=np.float32)}
    copy = byte_different_copy(graph_def)
    assert copy.SerializeToString() != graph_def.SerializeToString()

    base = timer.benchmark(graph_def, feeds, runs=max(args.runs, 30), warmup=5)
    per_matmul = (timer.benchmark(chain_only(50), {"seed": np.float32(0)}, runs=30,
                                  warmup=5).p50_ms
                  - timer.benchmark(chain_only(0), {"seed": np.float32(0)}, runs=30,
                                    warmup=5).p50_ms) / 50
    matmuls = max(1, round(args.extra_cost * base.p50_ms / max(per_matmul, 1e-6)))
    slower = with_extra_cost(graph_def, output, matmuls)
    # The injected cost measured on its own, side by side, for the report.
    separate = timer.compare(graph_def, slower, feeds, runs=args.runs, warmup=5, seed=999,
                             sessions=args.sessions)
    ops = ("in the calling thread" if base.ops_in_calling_thread else "on the inter-op pool")
    print(f"\n== {name}: p50 {base.p50_ms:.3f} ms, intra-op pool {base.intra_op_pool} "
          f"({base.intra_op_pool_size} threads), ops {ops} (width {base.parallel_width}), "
          f"burst {separate.burst}, {separate.sessions} session(s) per graph; injected cost: {matmuls} MatMuls of "
          f"{per_matmul * 1000:.1f} us (nominal +{args.extra_cost:.0%}, measured side by side "
          f"+{1 / separate.speedup - 1:.1%})", flush=True)

    selfs, costs, boot_covered, boot_widths = [], [], 0, []
    for k in range(args.k):
        r = timer.compare(graph_def, copy, feeds, runs=args.runs, warmup=5, seed=k,
                          sessions=args.sessions)
        selfs.append(r)
        lo, hi = native.median_ratio_ci95(r.a.samples_ms, r.b.samples_ms, k)
        boot_covered += lo <= 1.0 <= hi
        boot_widths.append((hi - lo) / (2 * r.ratio_of_medians))
        c = timer.compare(graph_def, slower, feeds, runs=args.runs, warmup=5, seed=1000 + k,
                          sessions=args.sessions)
        costs.append(c)
        print(f"  k={k:2d}  self {r.speedup:.3f} [{r.speedup_ci95[0]:.3f}, "
              f"{r.speedup_ci95[1]:.3f}]  cost {c.speedup:.3f} [{c.speedup_ci95[0]:.3f}, "
              f"{c.speedup_ci95[1]:.3f}]", flush=True)
    at_default = [timer.compare(graph_def, copy, feeds, runs=args.default_runs, warmup=5,
                                seed=2000 + k, sessions=args.sessions)
                  for k in range(max(args.k // 2, 1))]

    covered = sum(r.speedup_ci95[0] <= 1.0 <= r.speedup_ci95[1] for r in selfs)
    detected = sum(c.speedup_ci95[1] < 1.0 for c in costs)
    row = {
        "coverage": covered / args.k,
        "bootstrap_coverage": boot_covered / args.k,
        "bootstrap_half_width": median(boot_widths),
        "abs_error": median([abs(r.speedup - 1) for r in selfs]),
        "half_width": median([r.speedup_ci95_half_width for r in selfs]),
        "position_effect": median([r.position_effect for r in selfs if r.position_effect]),
        "detection": detected / args.k,
        "cost_estimate": median([1 / c.speedup - 1 for c in costs]),
        "resolvable": median([r.speedup_ci95_half_width for r in at_default]),
    }
    print(f"  self-compares: {covered}/{args.k} intervals cover 1.0 (paired bootstrap of the "
          f"ratio of medians on the same samples: {boot_covered}/{args.k}, median half-width "
          f"{row['bootstrap_half_width']:.4f}); median |speedup-1| "
          f"{row['abs_error']:.4f}; median half-width {row['half_width']:.4f} at --runs "
          f"{args.runs}; median position effect {row['position_effect']:.4f}")
    print(f"  injected cost: detected {detected}/{args.k}; median estimate "
          f"+{row['cost_estimate']:.1%}")
    print(f"  smallest resolvable difference at --runs {args.default_runs}: "
          f"~{row['resolvable']:.1%} (median half-width of {len(at_default)} self-compares)")
    return row


class Timer:
    """compare/benchmark in-process, or in the child timer when threads/cpus are given."""

    def __init__(self, threads, cpus):
        self.kwargs = {}
        if threads:
            self.kwargs["threads"] = threads
        if cpus:
            self.kwargs["cpus"] = cpus

    def benchmark(self, graph, feeds, **kw):
        return bench.benchmark(graph, feeds, measure_overhead=False, **self.kwargs, **kw)

    def compare(self, a, b, feeds, **kw):
        return bench.compare(a, b, feeds, measure_overhead=False, **self.kwargs, **kw)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=20, help="compares of each kind per graph")
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--default-runs", type=int, default=100)
    parser.add_argument("--extra-cost", type=float, default=0.10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cpus", default=None)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--graphs", default="small,cells,mobilenet",
                        help="which of small, cells, mobilenet to calibrate")
    parser.add_argument("--sessions", type=int, default=None,
                        help="sessions per graph in every compare (default: the timer's)")
    args = parser.parse_args(argv)
    graphs = set(args.graphs.split(","))
    if not graphs or not graphs <= {"small", "cells", "mobilenet"}:
        parser.error("--graphs is a comma-separated subset of small, cells, mobilenet")
    if args.k < 1 or args.runs < 6 or args.default_runs < 6 or not 0 < args.extra_cost < 1:
        parser.error("--k >= 1, --runs and --default-runs >= 6, 0 < --extra-cost < 1")
    start = time.monotonic()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; K={args.k}, "
          f"--runs {args.runs}; {'child timer' if args.threads or args.cpus else 'in-process'}")
    timer = Timer(args.threads, args.cpus)
    rows = {}
    if "small" in graphs:
        rows["small CNN 64x64"] = calibrate("small CNN 64x64", *small_cnn(), args, timer)
    if "cells" in graphs:
        rows["Inception-like cells 32x32"] = calibrate("Inception-like cells 32x32",
                                                       *branchy_cnn(), args, timer)
    if "mobilenet" in graphs and not args.skip_large:
        rows["MobileNetV2 96x96"] = calibrate("MobileNetV2 96x96", *mobilenet(), args, timer)

    print(f"\n| graph | coverage of 1.0 | (old bootstrap) | median abs(speedup-1) | median "
          f"half-width @{args.runs} | position effect | +{args.extra_cost:.0%} detected | "
          f"resolvable @{args.default_runs} |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {r['coverage']:.0%} | {r['bootstrap_coverage']:.0%} | "
              f"{r['abs_error']:.4f} | {r['half_width']:.4f} | {r['position_effect']:.4f} | "
              f"{r['detection']:.0%} | {r['resolvable']:.1%} |")
    small = rows.get("small CNN 64x64")
    verdicts = {
        "coverage >= 90 % (every graph)": all(r["coverage"] >= TARGETS["coverage"]
                                              for r in rows.values()),
        "median |speedup-1| <= 0.03 (every graph)": all(r["abs_error"] <= TARGETS["abs_error"]
                                                        for r in rows.values()),
        "+10 % detected >= 90 % (every graph)": all(r["detection"] >= TARGETS["detection"]
                                                   for r in rows.values()),
    }
    if "small CNN 64x64" in rows:
        verdicts["median half-width <= 0.04 (small CNN)"] = (small["half_width"]
                                                             <= TARGETS["half_width"])
    for what, ok in verdicts.items():
        print(f"{'MET    ' if ok else 'MISSED '} {what}")
    print(f"load average {os.getloadavg()[0]:.2f}; {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
