"""How long `leangraph.quantize` takes: a git revision's code (before) against the working tree
(after), side by side, on the same graphs and calibration inputs.

    .venv/bin/python bench/quantize_time.py [--models MobileNetV2:160,Xception:299]
        [--before HEAD] [--rounds 2] [--calibration 16] [--cpus 0,1] [--json out.json]

Each model is a keras.applications network with random weights and non-trivial batch norms
(as bench/int8_bench.py builds them), frozen and run through the `deploy` recipe; the graph
and the calibration inputs are saved once. Every quantization then runs in its own process,
pinned to --cpus, before and after alternating (before, after, before, after, ...): a slow
phase of a shared machine hits one round, not one side. Printed per model: each side's best
and median seconds, the ratio before/after of the best, and what each side did: TensorFlow
sessions opened, session runs, graph transforms; and whether the two results are the same
graph to the bit (else the output SQNR of each, on the check samples).

`before` is `git archive <rev> python/leangraph` with this tree's native module: a revision
whose C++ differs from the working tree's build is not what it was.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# One quantization, counted: it prints one JSON line.
_CHILD = r"""
import hashlib, json, sys, time
import numpy as np
import leangraph
from leangraph import graphs
cal = sys.modules["leangraph.quantization.calibrate"]
counts = {"sessions": 0, "runs": 0, "transforms": 0}
init, run = cal._Session.__init__, cal._Session.run
def counted_init(self, *a, **k):
    counts["sessions"] += 1
    return init(self, *a, **k)
def counted_run(self, *a, **k):
    counts["runs"] += 1
    return run(self, *a, **k)
cal._Session.__init__, cal._Session.run = counted_init, counted_run
tmod = sys.modules["leangraph.transform"]
transform = tmod.transform
def counted_transform(*a, **k):
    counts["transforms"] += 1
    return transform(*a, **k)
tmod.transform = counted_transform
graph = graphs.load_graph(sys.argv[1])
calib = np.load(sys.argv[2])
start = time.perf_counter()
result = leangraph.quantize(graph, calib, require_int8_cpu=False)
seconds = time.perf_counter() - start
digest = hashlib.sha256(result.graph_def.SerializeToString(deterministic=True)).hexdigest()
print(json.dumps({"seconds": seconds, **counts, "sha256": digest[:16],
                  "output_sqnr_db": result.output_sqnr_db, "rounds": result.rounds,
                  "int8_layers": len(result.int8_layers), "mac_share": result.int8_mac_share,
                  "bias_corrected": len(result.bias_corrected)}))
"""


def build(name, size, calibration, workdir, seed=0):
    """(graph path, calibration path) of keras.applications `name` at size x size."""
    import keras

    import leangraph

    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                              classifier_activation=None)
    rng = np.random.default_rng(seed + 1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and len(layer.get_weights()) == 4:
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.2, b.shape),
                               rng.normal(0, 0.2, m.shape), rng.uniform(0.5, 1.5, v.shape)])
    frozen = leangraph.freeze(model)
    fp32 = leangraph.transform(frozen.graph_def, leangraph.recipe("deploy", frozen.graph_def))
    calib = rng.uniform(-1, 1, (calibration, size, size, 3)).astype(np.float32)
    paths = workdir / f"{name}{size}.pb", workdir / f"{name}{size}.calib.npy"
    leangraph.save_graph(fp32, str(paths[0]))
    np.save(paths[1], calib)
    return paths


def export(rev, workdir):
    """The python/ folder of git revision `rev`, with this tree's native module in it."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "python/leangraph"],
                          check=True, capture_output=True).stdout
    target = workdir / "before"
    with tarfile.open(fileobj=BytesIO(data)) as archive:
        archive.extractall(target, filter="data")
    package = ROOT / "python" / "leangraph"
    for extra in list(package.glob("_native*.so")) + [package / "_build_info.py"]:
        if extra.exists():
            shutil.copy2(extra, target / "python" / "leangraph" / extra.name)
    return target / "python"


def quantize_once(python_path, graph, calib, cpus):
    env = dict(os.environ, PYTHONPATH=str(python_path), TF_CPP_MIN_LOG_LEVEL="2")
    cmd = ["taskset", "-c", cpus, sys.executable, "-c", _CHILD, str(graph), str(calib)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"quantize failed ({python_path}): {' | '.join(tail)}")
    return json.loads(lines[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="MobileNetV2:160,Xception:299",
                        help="keras.applications name:size, comma-separated")
    parser.add_argument("--before", default="HEAD", help="git revision of the 'before' code")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calibration", type=int, default=16)
    parser.add_argument("--cpus", default="0,1")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "python"],
                                capture_output=True, text=True).stdout.strip())
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    import tensorflow as tf

    report = {"command": " ".join([Path(sys.executable).name] + sys.argv), "commit": commit,
              "after": "working tree" + (" (uncommitted changes under python/)" if dirty else ""),
              "before": args.before, "cpu": cpu, "cpus": args.cpus, "tensorflow": tf.__version__,
              "numpy": np.__version__, "python": platform.python_version(), "models": {}}
    print(f"CPU: {cpu}; pinned to {args.cpus}; before: {args.before}; after: {report['after']}; "
          f"{args.rounds} rounds, alternating")
    with tempfile.TemporaryDirectory(prefix="quantize-time-") as tmp:
        workdir = Path(tmp)
        sides = {"before": export(args.before, workdir), "after": ROOT / "python"}
        for spec in args.models.split(","):
            name, _, size = spec.partition(":")
            graph, calib = build(name, int(size or 224), args.calibration, workdir)
            runs = {side: [] for side in sides}
            for _ in range(args.rounds):
                for side, path in sides.items():
                    runs[side].append(quantize_once(path, graph, calib, args.cpus))
            report["models"][spec] = runs
            best = {side: min(r["seconds"] for r in rs) for side, rs in runs.items()}
            print(f"\n{name} {size}x{size}, {args.calibration} calibration inputs")
            print(f"  {'side':<7} {'best s':>8} {'median s':>9} {'sessions':>9} {'runs':>6} "
                  f"{'transforms':>10} {'output SQNR':>12}")
            for side, rs in runs.items():
                last, median = rs[-1], statistics.median(r["seconds"] for r in rs)
                print(f"  {side:<7} {best[side]:8.1f} {median:9.1f} "
                      f"{last['sessions']:>9} {last['runs']:>6} {last['transforms']:>10} "
                      f"{last['output_sqnr_db']:>9.2f} dB")
            same = runs["before"][-1]["sha256"] == runs["after"][-1]["sha256"]
            print(f"  before / after (best): {best['before'] / best['after']:.2f}x; results "
                  + ("the same graph to the bit" if same else "differ (see the output SQNR)"))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
