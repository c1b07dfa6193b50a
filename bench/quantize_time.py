"""How long `leangraph.quantize` takes: a git revision's code (before) against the working tree
(after), side by side, on the same graphs and calibration inputs.

    .venv/bin/python bench/quantize_time.py [--models MobileNetV2:160,Xception:299]
        [--before HEAD|none] [--rounds 2] [--calibration 16] [--cpus 0,1] [--json out.json]
        [--peers-python /tmp/ov/bin/python]

Each model is a keras.applications network with random weights and non-trivial batch norms
(as bench/int8_bench.py builds them), frozen and run through the `deploy` recipe; the graph
and the calibration inputs are saved once. Every quantization then runs in its own process,
pinned to --cpus, before and after alternating (before, after, before, after, ...): a slow
phase of a shared machine hits one round, not one side. Printed per model: each side's best
and median seconds, the ratio before/after of the best, and what each side did: TensorFlow
sessions opened, session runs, graph transforms; and whether the two results are the same
graph to the bit (else the output SQNR of each, on the check samples).

With --peers-python (a Python that imports openvino and nncf), NNCF quantizes the same
graph with the same calibration inputs as a third side, alternating with the others
(before, after, NNCF, before, ...), each quantization in its own process pinned alike:
`nncf.quantize(ov.convert_model(graph), nncf.Dataset(inputs))` with default arguments
(bench/nncf_int8.py, the one definition the int8 benches share), timed from before the
conversion to the quantized model, the imports not included on either side. Printed:
leangraph (after) / NNCF, of the best times and round by round.

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

import nncf_int8  # bench/, beside this script

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
transform = sys.modules["leangraph.transform"].transform
def counted_transform(*a, **k):
    counts["transforms"] += 1
    return transform(*a, **k)
for module in list(sys.modules.values()):  # every name it is bound to (from ... import)
    if getattr(module, "__name__", "").startswith("leangraph") and \
            getattr(module, "transform", None) is transform:
        module.transform = counted_transform
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


# NNCF's quantization of the same graph, timed: it prints one JSON line.
_NNCF_CHILD = nncf_int8.child(r"""
import json, sys, time
import numpy as np
import nncf, openvino  # imported before the clock starts, as leangraph is in _CHILD
calib = np.load(sys.argv[2])
start = time.perf_counter()
model = nncf_int8(sys.argv[1], calib)
seconds = time.perf_counter() - start
ops = [op.get_type_name() for op in model.get_ops()]
print(json.dumps({"seconds": seconds, "fake_quantize": ops.count("FakeQuantize"),
                  "nodes": len(ops)}))
""")


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


def quantize_once(side, graph, calib, cpus):
    """One quantization in a process of its own. side: a python/ folder (leangraph's code
    to run), or ("nncf", the peers' Python)."""
    if isinstance(side, tuple):
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        cmd = [side[1], "-c", _NNCF_CHILD]
    else:
        env = dict(os.environ, PYTHONPATH=str(side), TF_CPP_MIN_LOG_LEVEL="2")
        cmd = [sys.executable, "-c", _CHILD]
    cmd = ["taskset", "-c", cpus] + cmd + [str(graph), str(calib)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"quantize failed ({side}): {' | '.join(tail)}")
    return json.loads(lines[-1])


def peer_versions(python):
    """openvino's and nncf's versions in the peers' Python (SystemExit where it lacks them)."""
    probe = subprocess.run([python, "-c", "import openvino, nncf; "
                            "print(openvino.__version__, nncf.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        raise SystemExit(f"--peers-python {python} cannot import openvino and nncf")
    return dict(zip(("openvino", "nncf"), probe.stdout.split()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="MobileNetV2:160,Xception:299",
                        help="keras.applications name:size, comma-separated")
    parser.add_argument("--before", default="HEAD",
                        help="git revision of the 'before' code ('none': no before side)")
    parser.add_argument("--peers-python", help="a Python with openvino and nncf: time NNCF too")
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
    if args.peers_python:
        report["peers"] = {"python": args.peers_python, **peer_versions(args.peers_python)}
    report["load_average"] = {"start": os.getloadavg()}
    print(f"CPU: {cpu}; pinned to {args.cpus}; before: {args.before}; after: {report['after']}; "
          + (f"NNCF {report['peers']['nncf']}, OpenVINO {report['peers']['openvino']}; "
             if args.peers_python else "")
          + f"{args.rounds} rounds, alternating; load average {_load()}")
    with tempfile.TemporaryDirectory(prefix="quantize-time-") as tmp:
        workdir = Path(tmp)
        sides = {} if args.before == "none" else {"before": export(args.before, workdir)}
        sides["after"] = ROOT / "python"
        if args.peers_python:
            sides["nncf"] = ("nncf", args.peers_python)
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
                if side == "nncf":
                    print(f"  {side:<7} {best[side]:8.1f} {median:9.1f}   "
                          f"({last['fake_quantize']} FakeQuantize nodes)")
                    continue
                print(f"  {side:<7} {best[side]:8.1f} {median:9.1f} "
                      f"{last['sessions']:>9} {last['runs']:>6} {last['transforms']:>10} "
                      f"{last['output_sqnr_db']:>9.2f} dB")
            if "before" in runs:
                same = runs["before"][-1]["sha256"] == runs["after"][-1]["sha256"]
                print(f"  before / after (best): {best['before'] / best['after']:.2f}x; results "
                      + ("the same graph to the bit" if same else "differ (see the output SQNR)"))
            if "nncf" in runs:
                rounds = [a["seconds"] / n["seconds"] for a, n in zip(runs["after"], runs["nncf"])]
                print(f"  leangraph (after) / NNCF: {best['after'] / best['nncf']:.2f}x of the best "
                      f"times; round by round: " + ", ".join(f"{r:.2f}x" for r in rounds))
            print(f"  load average: {_load()}")
    report["load_average"]["end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


def _load():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
