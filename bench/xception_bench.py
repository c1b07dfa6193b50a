"""Xception (299x299, batch 1): frozen vs TF's deploy recipe vs leangraph's vs bf16.

Every speed-up is measured side by side with leangraph.compare (the C++ timer,
A and B interleaved A B A B ...) and printed as the ratio of medians with its
paired-bootstrap 95 % interval. Keras rows (model.predict, tf.function) are
timed with the same statistics, for the seed's "Keras" comparison.

    python bench/xception_bench.py --runs 20 [--cpus 0,1] [--threads N] [--json out.json]

Weights are random (keras.applications.Xception(weights=None)): speed does not
depend on their values. Nothing here asserts a speed; it prints what it measured.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import leangraph  # noqa: E402

SHAPE = (1, 299, 299, 3)
TF_DEPLOY = (
    'strip_unused_nodes(type=float, shape="1,299,299,3") remove_nodes(op=Identity, op=CheckNumerics) '
    "fold_constants(ignore_errors=true) fold_batch_norms fold_old_batch_norms"
)


def frozen_xception():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.Xception(weights=None, input_shape=SHAPE[1:])
    if hasattr(leangraph, "freeze"):
        return model, leangraph.freeze(model, batch_size=1).graph_def
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec(SHAPE, tf.float32, name="input"))
    return model, convert_variables_to_constants_v2(concrete).graph.as_graph_def()


def recipe(name, graph):
    try:
        from leangraph.recipes import recipe as named
    except ImportError:
        return TF_DEPLOY if name == "tf-deploy" else None
    return named(name, graph)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads")
    parser.add_argument("--cpus", default=None, help="pin, e.g. 0,1")
    parser.add_argument("--json", default=None, help="write every result here")
    args = parser.parse_args(argv)
    common = dict(runs=args.runs, warmup=args.warmup, threads=args.threads, cpus=args.cpus)

    start = time.perf_counter()
    model, frozen = frozen_xception()
    print(f"froze Xception in {time.perf_counter() - start:.1f} s: {len(frozen.node)} nodes")
    x = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    input_name = leangraph.graphs.default_inputs(frozen)[0]
    inputs = {input_name: x}

    candidates = [("tf-deploy", recipe("tf-deploy", frozen))]
    deploy = recipe("deploy", frozen)
    if deploy is not None:
        candidates.append(("leangraph deploy", deploy))
    rows = []
    for name, transforms in candidates:
        graph = leangraph.transform(frozen, transforms)
        result = leangraph.compare(frozen, graph, inputs, **common)
        rows.append((f"frozen -> {name} ({len(graph.node)} nodes)", result))
    if leangraph.cpu_supports_bf16():
        result = leangraph.compare(frozen, frozen, inputs, precision_b="bf16", **common)
        rows.append(("frozen fp32 -> frozen bf16 (oneDNN auto mixed precision)", result))
    else:
        print("bf16: this CPU has neither AVX512_BF16 nor AMX-BF16; row skipped")

    keras_rows = [
        (mode, leangraph.benchmark_keras(model, x, mode=mode, runs=args.runs, warmup=args.warmup))
        for mode in ("predict", "function")
    ]

    print(f"\nXception {SHAPE}, {args.runs} interleaved pairs per row, "
          f"threads={args.threads or 'TF default'}, cpus={args.cpus or 'all'}")
    print(f"{'comparison (A -> B)':62} {'A p50 ms':>9} {'B p50 ms':>9} {'speed-up':>9}  95% CI")
    for label, r in rows:
        lo, hi = r.speedup_ci95
        print(f"{label:62} {r.a.p50_ms:9.2f} {r.b.p50_ms:9.2f} {r.speedup:8.3f}x  [{lo:.3f}, {hi:.3f}]")
    frozen_p50 = rows[0][1].a.p50_ms
    for mode, r in keras_rows:
        lo, hi = r.median_ci95_ms
        print(f"keras {mode:8} p50 {r.p50_ms:8.2f} ms (median 95% CI {lo:.2f}-{hi:.2f}); "
              f"frozen graph is {r.p50_ms / frozen_p50:.2f}x faster (not interleaved)")

    if args.json:
        out = {label: r.to_dict() for label, r in rows}
        out.update({f"keras-{mode}": r.to_dict() for mode, r in keras_rows})
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
