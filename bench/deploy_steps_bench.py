"""What deploy's sequence steps are worth: `deploy` against `deploy` without STEPS, side by side.

    PYTHONPATH=python .venv/bin/python bench/deploy_steps_bench.py \
        [--without fuse_matmul_reshape,fuse_layer_norm] \
        [--models transformer:32,transformer:1,ConvNeXtTiny:1,ResNet50:1] [--runs 40]

Each model is frozen at its batch (NAME:BATCH) and rewritten twice: with leangraph's
`deploy` recipe, and with the same recipe less the --without steps. Prints the ops
that differ, whether the two graphs are the same bytes (a model the steps do not
reach must come out unchanged), the largest difference of their outputs relative
to the output's scale, and the speed-up of the whole recipe over the one without
the steps, timed in interleaved pairs by leangraph.compare (the C++ timer) with
its 95 % interval.

transformer: the text transformer of bench/lowrank_bench.py (Embedding, a width-3
Conv1D, two post-norm encoder blocks of 4-head self-attention and a 128 -> 1024 ->
128 Relu feed-forward block, mean pooling), untrained: only what its graph costs
is measured here. The others are keras.applications models at 224x224 with random
weights (ConvNeXtTiny: a LayerNormalization over the channels in every block).

Speed claims live here, never in tests: only ratios of a pair measured together
mean something on a shared machine.
"""

import argparse
import collections
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402


def build(name):
    """(Keras model, one example's input shape, input maker)."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    if name == "transformer":
        from lowrank_bench import transformer

        x = rng.integers(0, 128, (64, 64)).astype(np.float32)
        model = transformer(x, np.zeros(64, dtype=np.int64), 0, 6, ffn=1024)
        return model, lambda batch: rng.integers(0, 128, (batch, 64)).astype(np.float32)
    model = getattr(keras.applications, name)(weights=None, input_shape=(224, 224, 3))
    return model, lambda batch: rng.uniform(-1, 1, (batch, 224, 224, 3)).astype(np.float32)


def without_steps(text, steps):
    kept = [part for part in text.split() if part.split("(")[0] not in steps]
    return " ".join(kept)


def main():
    import leangraph
    from leangraph import graphs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--without", default="fuse_matmul_reshape,fuse_layer_norm")
    parser.add_argument("--models", default="transformer:32,transformer:1,ConvNeXtTiny:1,"
                        "ResNet50:1")
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    steps = set(args.without.split(","))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} logical CPUs; deploy vs deploy without "
          f"{', '.join(sorted(steps))}")
    built = {}
    for item in args.models.split(","):
        name, batch = item.split(":")
        batch = int(batch)
        if name not in built:
            built[name] = build(name)
        model, inputs = built[name]
        frozen = leangraph.freeze(model, batch_size=batch)
        recipe = leangraph.recipe("deploy", frozen.graph_def)
        io = dict(inputs=frozen.input_names, outputs=frozen.output_names)
        full = leangraph.transform(frozen.graph_def, recipe, **io)
        less = leangraph.transform(frozen.graph_def, without_steps(recipe, steps), **io)
        ops_full = collections.Counter(n.op for n in full.node if n.op != "Const")
        ops_less = collections.Counter(n.op for n in less.node if n.op != "Const")
        delta = {op: ops_full[op] - ops_less[op] for op in set(ops_full) | set(ops_less)
                 if ops_full[op] != ops_less[op]}
        same = (full.SerializeToString(deterministic=True)
                == less.SerializeToString(deterministic=True))
        feeds = {frozen.input_names[0]: inputs(batch)}
        outputs = frozen.output_names
        a = leangraph.run(less, feeds, outputs)
        b = leangraph.run(full, feeds, outputs)
        error = max(float(np.max(np.abs(p - q)) / max(float(np.max(np.abs(p))), 1e-30))
                    for p, q in zip(a, b))
        change = "the same graph" if same else "ops " + ", ".join(
            f"{op} {d:+d}" for op, d in sorted(delta.items()))
        print(f"\n{name} batch {batch}: {change}; outputs differ by {error:.1e} of their scale")
        if same or args.runs <= 0:
            continue
        result = leangraph.compare(less, full, feeds, outputs=outputs, runs=args.runs, warmup=5)
        lo, hi = result.speedup_ci95
        print(f"  deploy vs deploy without the steps: {result.speedup:.3f}x [{lo:.3f}, {hi:.3f}] "
              f"({result.a.p50_ms:.3f} -> {result.b.p50_ms:.3f} ms)", flush=True)


if __name__ == "__main__":
    main()
