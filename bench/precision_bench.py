"""Precision bench: what bf16 and 8-bit buy, measured side by side in one process.

    PYTHONPATH=python .venv/bin/python bench/precision_bench.py [--runs 40] [--skip-xception]

Xception 299x299 (keras.applications, weights=None, frozen at batch 1):
  fp32 frozen graph vs the `to_bfloat16` graph vs Grappler's run-time bf16
  rewrite (auto_mixed_precision_onednn_bfloat16=ON), timed in interleaved
  rounds so drift hits every variant alike; to_bfloat16 with zero biases kept
  fusable vs exact; file sizes; distance to the bf16 floor (2 * MACs over a
  bf16 GEMM's throughput, measured in the same interleaved rounds).
Digits reference model: held-out accuracy and file size of fp32, bf16,
  Grappler bf16, quantize_weights (also with every tensor quantized, and with
  obfuscate_names) and quantize_nodes, with batch-32 latency.

Xception is timed with leangraph's native timer (leangraph.compare: interleaved,
pinned, with a 95 % CI on the speed-up); the digits rows use a Session loop,
since the Grappler row needs a session option. Speed claims live here, never in
tests.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from leangraph import graphs, hardware, precision  # noqa: E402
from leangraph.pipeline import precisions  # noqa: E402
from leangraph.reference_model import cache_dir, reference_model  # noqa: E402


def session(graph_def, config=None, threads=None):
    cfg = tf.compat.v1.ConfigProto()
    if config is not None:
        cfg.CopyFrom(config)
    if threads:
        cfg.intra_op_parallelism_threads = threads
        cfg.inter_op_parallelism_threads = 1
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(graph_def, name="")
    return tf.compat.v1.Session(graph=g, config=cfg)


def interleaved(variants, feeds, output, runs, warmup=5):
    """{name: samples_ms}: one run of each variant per round, order rotated each round."""
    sessions = {name: session(g, cfg) for name, (g, cfg) in variants.items()}
    fetch, feed = output + ":0", {k + ":0": v for k, v in feeds.items()}
    for s in sessions.values():
        for _ in range(warmup):
            s.run(fetch, feed)
    names = list(sessions)
    samples = {n: [] for n in names}
    for r in range(runs):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            start = time.perf_counter()
            sessions[name].run(fetch, feed)
            samples[name].append((time.perf_counter() - start) * 1e3)
    for s in sessions.values():
        s.close()
    return samples


def matmul_graph(n):
    """A bf16 n x n x n GEMM fed by a bf16 placeholder (no cast in the timed path)."""
    g = tf.Graph()
    with g.as_default():
        a = tf.compat.v1.placeholder(tf.bfloat16, [n, n], name="a")
        b = tf.constant(np.random.default_rng(0).normal(size=(n, n)), tf.bfloat16)
        tf.identity(tf.matmul(a, b), name="product")
    feed = np.random.default_rng(1).normal(size=(n, n)).astype(tf.bfloat16.as_numpy_dtype)
    return g.as_graph_def(), feed


def floor_ratios(variants, macs, threads, rounds=30, n=2048):
    """{name: (p50, p10, p90)} of latency / bf16 floor, the floor measured in the same round.

    variants: {name: (graph_def, session ConfigProto or None)}.

    This machine's throughput drifts by up to 2x within minutes, so a peak
    measured once and a latency measured later are not comparable. Each round
    runs the GEMM once and every graph once; the floor of that round is
    2 * MACs over that GEMM's throughput. Also returns the GEMM's median GFLOP/s.
    """
    mm_def, mm_feed = matmul_graph(n)
    mm = session(mm_def, threads=threads)
    runs = {}
    for name, (g, config) in variants.items():
        inp = graphs.default_inputs(g)[0]
        out = graphs.default_outputs(g)[0]
        shape = [d.size for d in next(x for x in g.node if x.name == inp).attr["shape"].shape.dim]
        x = np.random.default_rng(0).uniform(-1, 1, [max(d, 1) for d in shape]).astype(np.float32)
        runs[name] = (session(g, config, threads=threads), out + ":0", {inp + ":0": x})

    def timed(fn):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    for _ in range(3):
        mm.run("product:0", {"a:0": mm_feed})
        for s, out, feed in runs.values():
            s.run(out, feed)
    gemm, lat = [], {name: [] for name in runs}
    for _ in range(rounds):
        gemm.append(timed(lambda: mm.run("product:0", {"a:0": mm_feed})))
        for name, (s, out, feed) in runs.items():
            lat[name].append(timed(lambda: s.run(out, feed)))
    gemm = np.asarray(gemm)
    floor = 2 * macs * gemm / (2 * n ** 3)  # seconds, per round
    result = {name: stats(np.asarray(v) / floor) for name, v in lat.items()}
    return result, float(2 * n ** 3 / np.median(gemm) / 1e9), float(np.median(floor) * 1e3)


def xception_graph():
    """Xception frozen by leangraph.freeze and put through the `deploy` recipe."""
    import keras

    import leangraph

    keras.utils.set_random_seed(0)
    model = keras.applications.Xception(weights=None, input_shape=(299, 299, 3))
    frozen = leangraph.freeze(model).graph_def
    return frozen, leangraph.transform(frozen, leangraph.recipe("deploy", frozen))


def stats(samples):
    a = np.asarray(samples)
    return float(np.median(a)), float(np.percentile(a, 10)), float(np.percentile(a, 90))


def bench_xception(runs):
    """Side by side with leangraph's native timer (interleaved A B A B, pinned)."""
    import leangraph

    print("== Xception 299x299, batch 1 (keras.applications, weights=None) ==")
    t0 = time.time()
    frozen, deployed = xception_graph()
    t1 = time.time()
    bf16 = precision.to_bfloat16(deployed)
    t2 = time.time()
    qw = precision.quantize_weights(deployed)
    print(f"freeze + deploy {t1 - t0:.1f} s, to_bfloat16 {t2 - t1:.2f} s")
    sizes = {n: len(g.SerializeToString()) for n, g in
             (("fp32", frozen), ("bf16", bf16), ("quantize_weights", qw))}
    for name, size in sizes.items():
        print(f"  file {name:17s} {size / 1e6:8.2f} MB  {100 * size / sizes['fp32']:5.1f} % of fp32")
    kwargs = dict(runs=runs, warmup=5, cpus=",".join(map(str, sorted(os.sched_getaffinity(0)))),
                  threads=len(os.sched_getaffinity(0)))
    vs_fp32 = leangraph.compare(frozen, bf16, **kwargs)
    vs_grappler = leangraph.compare(bf16, deployed, precision_b="bf16", **kwargs)
    for label, r in (("fp32 frozen -> to_bfloat16(deploy)", vs_fp32),
                     ("to_bfloat16(deploy) -> Grappler bf16 of deploy", vs_grappler)):
        lo, hi = r.speedup_ci95
        print(f"  {label}: p50 {r.a.p50_ms:.1f} -> {r.b.p50_ms:.1f} ms, "
              f"speed-up {r.speedup:.2f}x [95% CI {lo:.2f}, {hi:.2f}]")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 299, 299, 3)).astype(np.float32)
    name = graphs.default_inputs(frozen)[0]
    (ref,) = leangraph.run(frozen, {name: x})
    (low,) = leangraph.run(bf16, {name: x})
    # Random weights give a near-uniform softmax: the difference, not top-1, is the signal.
    print(f"  to_bfloat16: max |diff| vs fp32 {np.abs(low - ref).max():.2e} "
          f"(output max {np.abs(ref).max():.2e})")
    exact = precision.to_bfloat16(deployed, zero_bias="exact")
    vs_exact = leangraph.compare(exact, bf16, **kwargs)
    lo, hi = vs_exact.speedup_ci95
    print(f"  zero biases kept fusable (zero_bias=tiny vs exact): p50 {vs_exact.a.p50_ms:.1f} -> "
          f"{vs_exact.b.p50_ms:.1f} ms, speed-up {vs_exact.speedup:.2f}x [95% CI {lo:.2f}, {hi:.2f}]")
    macs = leangraph.summarize(frozen).macs
    ratios, gflops, floor = floor_ratios(
        {"to_bfloat16": (bf16, None), "zero_bias=exact": (exact, None),
         "Grappler bf16": (deployed, precision.grappler_bf16_config())},
        macs, kwargs["threads"])
    print(f"  MACs {macs / 1e9:.2f} G; bf16 2048^3 GEMM {gflops:.0f} GFLOP/s (median) -> floor "
          f"{floor:.1f} ms; latency / floor, per interleaved round:")
    for name, (p50, p10, p90) in ratios.items():
        print(f"    {name:16s} {p50:.2f}x the floor [p10 {p10:.2f}, p90 {p90:.2f}]")


def bench_digits(runs):
    print("== digits reference model (Xception-style, 32x32x3), held-out split ==")
    import leangraph

    model = reference_model()
    out = model.output_name
    # Through `deploy` first, as optimize does: the raw freeze keeps every batch
    # norm as small fp32 constants, which no weight format can shrink.
    fp32 = leangraph.transform(model.graph_def, leangraph.recipe("deploy", model.graph_def),
                               outputs=[out])
    # Every row through the one precision registry, int8 calibrated on 16 training images
    # (the scores below are on the held-out test split).
    ends = ([model.input_name], [out])
    variants = {name: tuple(precisions.choose(name).build(fp32, ends, [model.x_train[:16]])[:2])
                for name in ("fp32", "bf16", "bf16-grappler", "int8-weights", "int8")}
    # quantize_weights' default minimum_size (1024 elements) leaves the biases
    # and the narrow depthwise kernels in fp32; this row quantizes every tensor.
    variants["int8-weights-all"] = (precision.quantize_weights(fp32, minimum_size=16), None)
    # quantize_weights adds three nodes per tensor, each named after it; TF's
    # obfuscate_names shortens every name but the input's and output's.
    variants["int8-weights+short-names"] = (
        leangraph.transform(fp32, "quantize_weights obfuscate_names", outputs=[out]), None)
    base = None
    for name, (g, cfg) in variants.items():
        r = precision.evaluate(g, model.x_test, model.y_test, reference=fp32, output_name=out,
                               session_config=cfg)
        size = len(g.SerializeToString())
        base = base or (r.accuracy, size)
        print(f"  {name:24s} accuracy {100 * r.accuracy:6.2f} % ({100 * (r.accuracy - base[0]):+.2f} pts)"
              f"  agree {100 * r.top1_agreement:6.2f} %  max|diff| {r.max_abs_diff:.3g}"
              f"  file {size / 1024:6.1f} KB ({100 * size / base[1]:5.1f} %)")
    x = model.x_test[:32]
    samples = interleaved(variants, {"input": x}, out, runs)
    p50 = {n: stats(s)[0] for n, s in samples.items()}
    print("  batch-32 latency: " + ", ".join(
        f"{n} {v:.2f} ms ({p50['fp32'] / v:.2f}x)" for n, v in p50.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--skip-xception", action="store_true")
    args = parser.parse_args()
    print(f"TF {tf.__version__}, {os.cpu_count()} CPUs, bf16 supported: "
          f"{hardware.cpu_supports_bf16()}, TF_ENABLE_ONEDNN_OPTS="
          f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', '(default)')}")
    bench_digits(args.runs)
    if not args.skip_xception:
        bench_xception(args.runs)


if __name__ == "__main__":
    main()
