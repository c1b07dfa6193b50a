"""Deploy bench: TF's "Optimizing for Deployment" recipe vs leangraph's `deploy` on a frozen Keras 3 Xception.

    PYTHONPATH=python .venv/bin/python bench/deploy_bench.py [--size 299] [--runs 30] [--repeats 3] [--steps]

Prints, for the frozen graph, `tf-deploy` and `deploy`:
  - batch-norm leftovers (Rsqrt, FusedBatchNorm*, batch-norm Mul/AddV2/Sub) and op counts;
  - transform time (best of --repeats): both recipes through leangraph.transform
    (same harness, same input parsing and checks), and TF's recipe through TF's
    own TransformGraph as well;
  - with --steps, where one more `deploy` run spends its time inside the
    native runner (the graph check and each step; LEANGRAPH_TRANSFORM_TIMES);
  - max relative difference of the outputs against the frozen graph;
  - latency frozen vs tf-deploy vs deploy, timed side by side with
    leangraph.compare (the native timer) when it is available, else with an
    interleaved tf.compat.v1 Session loop; the script says which (--runs 0
    skips it).
Speed claims live here, never in tests.
"""

import argparse
import collections
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

import graph_builders  # noqa: E402
import leangraph  # noqa: E402
from leangraph import graphs  # noqa: E402


def leftovers(graph_def):
    ops = collections.Counter(n.op for n in graph_def.node)
    bn_arith = sum(
        1 for n in graph_def.node if n.op in ("Mul", "Add", "AddV2", "Sub") and "batchnorm/" in n.name
    )
    fused = sum(c for op, c in ops.items() if op.startswith("FusedBatchNorm"))
    return {"Rsqrt": ops["Rsqrt"], "FusedBatchNorm*": fused, "bn Mul/Add/Sub": bn_arith,
            "Mul": ops["Mul"], "AddV2": ops["AddV2"], "nodes": len(graph_def.node)}


def best_time(fn, repeats):
    best = float("inf")
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def tf_transform_graph(graph_def, inputs, outputs, text):
    from tensorflow.core.framework import graph_pb2
    from tensorflow.python.util import _pywrap_transform_graph

    data = _pywrap_transform_graph.TransformGraphWithStringInputs(
        graph_def.SerializeToString(), ",".join(inputs).encode(), ",".join(outputs).encode(),
        text.encode())
    out = graph_pb2.GraphDef()
    out.ParseFromString(data)
    return out


def session_latency(variants, x, runs):
    """Interleaved Session loop: one run of each variant per round; p50 in ms."""
    import tensorflow as tf

    sessions = []
    for name, graph_def in variants.items():
        graph = tf.Graph()
        with graph.as_default():
            tf.import_graph_def(graph_def, name="")
        session = tf.compat.v1.Session(graph=graph)
        fetch = graphs.default_outputs(graph_def)[0] + ":0"
        for _ in range(5):
            session.run(fetch, {"input:0": x})
        sessions.append((name, session, fetch))
    samples = {name: [] for name in variants}
    for _ in range(runs):
        for name, session, fetch in sessions:
            start = time.perf_counter()
            session.run(fetch, {"input:0": x})
            samples[name].append((time.perf_counter() - start) * 1e3)
    for _, session, _ in sessions:
        session.close()
    return {name: float(np.median(s)) for name, s in samples.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", action="store_true",
                        help="print the native runner's time per step for one more deploy run")
    args = parser.parse_args()

    start = time.perf_counter()
    frozen = graph_builders.keras_application_graph("Xception", args.size)
    # The top is part of the measured model in the issue; pooled features keep
    # the same 40 batch norms and 12 residual adds.
    print(f"Xception {args.size}x{args.size}, frozen in {time.perf_counter() - start:.1f} s, "
          f"{len(frozen.node)} nodes")
    inputs, outputs = graphs.default_inputs(frozen), graphs.default_outputs(frozen)
    tf_text = leangraph.recipe("tf-deploy", frozen)
    deploy_text = leangraph.recipe("deploy", frozen)
    print(f"tf-deploy: {tf_text}\ndeploy:    {deploy_text}\n")

    t_tf_native, _ = best_time(lambda: tf_transform_graph(frozen, inputs, outputs, tf_text), args.repeats)
    t_tf, tf_deployed = best_time(lambda: leangraph.transform(frozen, tf_text), args.repeats)
    t_lg, deployed = best_time(lambda: leangraph.transform(frozen, deploy_text), args.repeats)

    x = np.random.default_rng(0).normal(size=(1, args.size, args.size, 3)).astype(np.float32)
    (reference,) = leangraph.run(frozen, {"input": x}, outputs)
    variants = {"frozen": frozen, "tf-deploy": tf_deployed, "deploy": deployed}
    print(f"{'graph':10s} {'nodes':>6s} {'Rsqrt':>6s} {'FBN*':>5s} {'bnMul/Add':>10s} {'Mul':>5s} "
          f"{'AddV2':>6s} {'max rel diff':>13s}")
    for name, graph_def in variants.items():
        (out,) = leangraph.run(graph_def, {"input": x}, outputs)
        rel = float(np.max(np.abs(out - reference)) / np.max(np.abs(reference)))
        c = leftovers(graph_def)
        print(f"{name:10s} {c['nodes']:6d} {c['Rsqrt']:6d} {c['FusedBatchNorm*']:5d} "
              f"{c['bn Mul/Add/Sub']:10d} {c['Mul']:5d} {c['AddV2']:6d} {rel:13.3g}")

    print(f"\ntransform time (best of {args.repeats}):")
    print(f"  tf-deploy via TF's TransformGraph      {t_tf_native:7.3f} s")
    print(f"  tf-deploy via leangraph.transform      {t_tf:7.3f} s")
    print(f"  deploy    via leangraph.transform      {t_lg:7.3f} s   "
          f"({t_lg / t_tf:.2f}x tf-deploy same harness, {t_lg / t_tf_native:.2f}x TF's own)")

    if args.steps:
        print("\nnative runner, one more deploy run (stderr):", flush=True)
        os.environ["LEANGRAPH_TRANSFORM_TIMES"] = "1"
        try:
            leangraph.transform(frozen, deploy_text)
        finally:
            del os.environ["LEANGRAPH_TRANSFORM_TIMES"]
        sys.stderr.flush()

    if args.runs <= 0:
        return
    print("\nlatency, batch 1:")
    try:
        a = leangraph.compare(frozen, tf_deployed, {"input": x}, runs=args.runs, warmup=5)
        b = leangraph.compare(frozen, deployed, {"input": x}, runs=args.runs, warmup=5)
        c = leangraph.compare(tf_deployed, deployed, {"input": x}, runs=args.runs, warmup=5)
        print("  timer: leangraph.compare (native, interleaved A/B)")
        print(f"  frozen vs tf-deploy: {a}")
        print(f"  frozen vs deploy:    {b}")
        print(f"  tf-deploy vs deploy: {c}")
    except (AttributeError, leangraph.LeangraphError, RuntimeError) as exc:
        print(f"  timer: interleaved tf.compat.v1 Session loop (leangraph.compare unavailable: {exc})")
        p50 = session_latency(variants, x, args.runs)
        for name, ms in p50.items():
            print(f"  {name:10s} p50 {ms:8.2f} ms  ({p50['frozen'] / ms:.2f}x frozen)")


if __name__ == "__main__":
    main()
