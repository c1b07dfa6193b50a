"""Many architectures, one run: what `deploy` and `to_bfloat16` do to each, side by side.

    PYTHONPATH=python .venv/bin/python bench/applications_bench.py [--runs 12] [MODEL ...]

For each keras.applications model (weights=None, 224x224 or its native size,
batch 1, logits): the frozen graph, `deploy`, `to_bfloat16(deploy)` and
Grappler's run-time bf16 of `deploy` are timed in interleaved rounds (one run
of each per round, order rotated), so drift hits every variant alike. Prints
medians, the ratios, the largest output difference of bf16 relative to the
largest fp32 output, and what is left in fp32 at run time (Grappler's
partition graph). Speed claims live here, never in tests.
"""

import argparse
import collections
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from precision_bench import interleaved, session  # noqa: E402

MODELS = ["ResNet50", "MobileNetV2", "MobileNetV3Small", "EfficientNetB0", "EfficientNetV2B0",
          "DenseNet121", "InceptionV3", "NASNetMobile", "ConvNeXtTiny", "Xception"]
NATIVE_SIZE = {"InceptionV3": 299, "Xception": 299}


def run_time_fp32_ops(graph_def, feed, output, threads):
    """Op types still computing in fp32 (and Casts) after Grappler, from the partition graph."""
    s = session(graph_def, threads=threads)
    meta = tf.compat.v1.RunMetadata()
    s.run(output + ":0", feed, options=tf.compat.v1.RunOptions(output_partition_graphs=True),
          run_metadata=meta)
    s.close()
    left = collections.Counter()
    for partition in meta.partition_graphs:
        for node in partition.node:
            if node.op in ("Const", "_Arg", "_Retval", "Identity", "NoOp"):
                continue
            if node.op == "Cast" or ("T" in node.attr and node.attr["T"].type == tf.float32):
                left[node.op] += 1
    return dict(left)


def bench(name, runs, threads):
    import keras

    import leangraph
    from leangraph import graphs, precision

    keras.utils.set_random_seed(0)
    size = NATIVE_SIZE.get(name, 224)
    start = time.time()
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                              classifier_activation=None)
    frozen = leangraph.freeze(model).graph_def
    deployed = leangraph.transform(frozen, leangraph.recipe("deploy", frozen))
    low = precision.to_bfloat16(deployed)
    built = time.time() - start
    inp, out = graphs.default_inputs(frozen)[0], graphs.default_outputs(frozen)[0]
    x = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    (ref,) = leangraph.run(frozen, {inp: x})
    (got,) = leangraph.run(low, {inp: x})
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())
    variants = {"frozen": (frozen, None), "deploy": (deployed, None), "bf16": (low, None),
                "grappler": (deployed, precision.grappler_bf16_config())}
    samples = interleaved(variants, {inp: x}, out, runs=runs, warmup=3)
    p50 = {k: float(np.median(v)) for k, v in samples.items()}
    left = run_time_fp32_ops(low, {inp + ":0": x}, out, threads)
    return (f"{name:17s} {p50['frozen']:7.1f} {p50['deploy']:7.1f} {p50['bf16']:7.1f} "
            f"{p50['grappler']:8.1f}   {p50['frozen'] / p50['deploy']:5.2f}x "
            f"{p50['deploy'] / p50['bf16']:5.2f}x {p50['grappler'] / p50['bf16']:5.2f}x  "
            f"{rel:8.1e}  {len(low.SerializeToString()) / len(frozen.SerializeToString()):4.2f}  "
            f"{built:4.0f}s  {left}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=MODELS)
    parser.add_argument("--runs", type=int, default=12)
    args = parser.parse_args()
    threads = len(os.sched_getaffinity(0))
    print(f"p50 ms, batch 1, {threads} threads, {args.runs} interleaved rounds per model")
    print(f"{'model':17s} {'frozen':>7s} {'deploy':>7s} {'bf16':>7s} {'grappler':>8s}   "
          f"{'deploy':>6s} {'bf16':>6s} {'vs G':>6s}  {'max diff':>8s}  file  build  "
          "fp32 ops left at run time (bf16)")
    print(f"{'':17s} {'':7s} {'':7s} {'':7s} {'':8s}   {'/frozen':>6s} {'/deploy':>6s}")
    for name in args.models:
        print(bench(name, args.runs, threads), flush=True)


if __name__ == "__main__":
    main()
