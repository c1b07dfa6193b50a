"""fp32 `deploy` vs leangraph int8 vs OpenVINO+NNCF int8 vs ONNX Runtime static int8, side by side.

Every path runs in its own process on the same frozen weights, the same
calibration inputs and the same timing input, pinned to the same CPUs with the
same thread count; the paths are run in interleaved rounds and each path's best
round median is kept (a slow phase of the machine hits one round, not one path).

    .venv/bin/python bench/int8_bench.py [--models Xception,ResNet50,MobileNetV2]
        [--runs 30] [--rounds 2] [--calibration 16] [--peers-python PY] [--caller-thread]
    .venv/bin/python bench/int8_bench.py --coverage [--size 160] [--coverage-models A,B]
        [--no-bias-correction]

The peers are optional bench extras, in any interpreter given by --peers-python
(it needs openvino, nncf, onnxruntime, tf2onnx and tensorflow-cpu): they are
skipped, and said to be, when missing. Models are keras.applications with
random weights and non-trivial batch norms (no downloads), logits out.
Where the CPU has bf16 (AMX, Zen 4), leangraph's `to_bfloat16` graph is timed
too, and OpenVINO's fp32 path is marked with the precision it computes in (its
default is bf16 on such CPUs). Also printed: where the int8 graph's time goes by op type, the share of
conv/matmul MACs that run in int8, the logits SQNR against fp32 and file sizes.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import nncf_int8  # bench/, beside this script

SIZES = {"Xception": 299, "InceptionV3": 299}


COVERAGE = ("ResNet50", "MobileNetV2", "MobileNetV3Small", "EfficientNetB0", "EfficientNetV2B0",
            "DenseNet121", "InceptionV3", "NASNetMobile", "ConvNeXtTiny", "Xception")


def build(name, workdir, calibration, seed=0, size=None, bf16=False, bias_correction=True):
    import keras

    import leangraph
    from leangraph import quantization

    size = size or SIZES.get(name, 224)
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
    x = rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    result = quantization.quantize(fp32, calib, require_int8_cpu=False,
                                   bias_correction=bias_correction)
    paths = {"fp32": workdir / f"{name}.fp32.pb", "int8": workdir / f"{name}.int8.pb"}
    leangraph.save_graph(fp32, str(paths["fp32"]))
    leangraph.save_graph(result.graph_def, str(paths["int8"]))
    if bf16:
        paths["bf16"] = workdir / f"{name}.bf16.pb"
        leangraph.save_graph(leangraph.transform(fp32, "to_bfloat16"), str(paths["bf16"]))
    np.save(workdir / f"{name}.calib.npy", calib)
    np.save(workdir / f"{name}.x.npy", x)
    ref = leangraph.run(fp32, {frozen.input_names[0]: x})[0]
    got = leangraph.run(result.graph_def, {frozen.input_names[0]: x})[0]
    from collections import Counter

    ops = Counter(n.op for n in result.graph_def.node)
    info = {
        "qdq": ops["QuantizeV2"] + ops["Dequantize"],
        "int8_layers": len(result.int8_layers),
        "input": frozen.input_names[0],
        "output": frozen.output_names[0],
        "sqnr_db": quantization.sqnr_db(ref, got),
        "mac_share": result.int8_mac_share,
        "fallback": [(l.name, l.reason) for l in result.fallback_layers],
        "bytes": {k: p.stat().st_size for k, p in paths.items()},
        "ref": ref.tolist(),
    }
    return paths, info


# One child per path: it prints {"ms": median, "out": [...]} as its last line.
_LEANGRAPH_CHILD = r"""
import json, sys, numpy as np, leangraph
graph, x_path, inp, cpus, threads, runs = sys.argv[1:7]
x = np.load(x_path)
r = leangraph.benchmark(graph, {inp: x}, runs=int(runs), warmup=5, cpus=cpus, threads=int(threads),
                        profile=sys.argv[7] == "1")
out = leangraph.run(graph, {inp: x})[0]
print(json.dumps({"ms": r.p50_ms, "out": out.ravel()[:1000].tolist(),
                  "profile": (r.profile or {}).get("by_op_type", [])}))
"""

_PEER_CHILD = nncf_int8.child(r"""
import json, os, sys, time, numpy as np
kind, graph, x_path, calib_path, inp, out_name, threads, runs, workdir = sys.argv[1:10]
x = np.load(x_path); calib = np.load(calib_path); threads = int(threads)
def timed(fn):
    for _ in range(5): fn()
    t = []
    for _ in range(int(runs)):
        s = time.perf_counter(); fn(); t.append((time.perf_counter() - s) * 1e3)
    return float(np.median(t))
if kind.startswith("openvino"):
    import openvino as ov
    core = ov.Core()
    # The frozen graph's input shape is static.
    model = nncf_int8(graph, calib) if kind == "openvino-int8" else ov.convert_model(graph)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                 "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    fn = lambda: req.infer({0: x})
    ms = timed(fn)
    out = next(iter(req.infer({0: x}).values()))
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
else:
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx
    gd = tf.compat.v1.GraphDef(); gd.ParseFromString(open(graph, "rb").read())
    onnx_path = os.path.join(workdir, os.path.basename(graph) + ".onnx")
    tf2onnx.convert.from_graph_def(gd, input_names=[inp + ":0"], output_names=[out_name + ":0"],
                                   opset=17, output_path=onnx_path)
    path = onnx_path
    if kind == "onnxruntime-int8":
        from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
        class Reader(CalibrationDataReader):
            def __init__(self): self.items = iter([{inp + ":0": c[None]} for c in calib])
            def get_next(self): return next(self.items, None)
        pre = onnx_path + ".pre.onnx"
        quant_pre_process(onnx_path, pre)
        path = onnx_path + ".int8.onnx"
        quantize_static(pre, path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    fn = lambda: sess.run(None, {inp + ":0": x})
    ms = timed(fn)
    out = sess.run(None, {inp + ":0": x})[0]
    precision = ""
print(json.dumps({"ms": ms, "out": np.asarray(out).ravel()[:1000].tolist(),
                  "precision": precision}))
""")


def child(cmd, cpus, timeout=1800, env_extra=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
    full = ["taskset", "-c", cpus] + cmd
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail)[-400:]}
    return json.loads(lines[-1])


def have_peers(python):
    if not python:
        return []
    found = []
    for kinds, module in ((["openvino-fp32", "openvino-int8"], "openvino, nncf"),
                          (["onnxruntime-int8"], "onnxruntime, tf2onnx, tensorflow")):
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
        if probe.returncode == 0:
            found += kinds
        else:
            print(f"  ({', '.join(kinds)} skipped: {python} cannot import {module})")
    return found


def sqnr(ref, out):
    ref = np.asarray(ref, np.float64).ravel()
    out = np.asarray(out, np.float64).ravel()[: ref.size]
    noise = np.sum((ref[: out.size] - out) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref[: out.size] ** 2) / noise))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="Xception,ResNet50,MobileNetV2")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calibration", type=int, default=16)
    parser.add_argument("--cpus", default="0,1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peers-python", default=os.environ.get("LEANGRAPH_PEERS_PYTHON"))
    parser.add_argument("--caller-thread", action="store_true",
                        help="also time fp32 and int8 with TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD=1 "
                             "(paths fp32+caller, int8+caller)")
    parser.add_argument("--coverage", action="store_true",
                        help="no timing: int8 MAC share, logits SQNR and fallbacks for ten "
                             "keras.applications architectures (at --size)")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--no-bias-correction", action="store_true",
                        help="with --coverage: quantize(bias_correction=False), to compare")
    parser.add_argument("--coverage-models", default=",".join(COVERAGE),
                        help="with --coverage: the keras.applications names (default: the ten)")
    args = parser.parse_args()
    if args.coverage:
        return coverage(args)

    from leangraph.bench import CALLER_THREAD_ENV, cpu_supports_bf16

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    from leangraph.quantization import cpu_has_vnni

    vnni = cpu_has_vnni()
    print(f"CPU: {cpu}; VNNI: {'yes' if vnni else 'no (unsigned-input Conv2D weights in 7 bits)'}; "
          f"{args.threads} threads pinned to {args.cpus}; best of {args.rounds} rounds, "
          f"median of {args.runs} runs each")
    # Where the CPU has bf16 (AMX, Zen 4), leangraph's bf16 graph is timed too:
    # it is the other low-precision lever, and OpenVINO's "fp32" runs in bf16 there.
    bf16 = cpu_supports_bf16()
    peers = have_peers(args.peers_python)
    with tempfile.TemporaryDirectory(prefix="int8-bench-") as tmp:
        workdir = Path(tmp)
        for name in args.models.split(","):
            paths, info = build(name, workdir, args.calibration, bf16=bf16)
            x_path = workdir / f"{name}.x.npy"
            calib_path = workdir / f"{name}.calib.npy"
            results = {}
            for round_index in range(args.rounds):
                last = round_index == args.rounds - 1
                own = [k for k in ("fp32", "bf16", "int8") if k in paths]
                if args.caller_thread:
                    own += ["fp32+caller", "int8+caller"]
                for kind in own + peers:
                    graph_kind = kind.split("+")[0]
                    if graph_kind in paths:
                        cmd = [sys.executable, "-c", _LEANGRAPH_CHILD, str(paths[graph_kind]),
                               str(x_path), info["input"], args.cpus, str(args.threads),
                               str(args.runs), "1" if kind == "int8" and last else "0"]
                    else:
                        cmd = [args.peers_python, "-c", _PEER_CHILD, kind, str(paths["fp32"]),
                               str(x_path), str(calib_path), info["input"], info["output"],
                               str(args.threads), str(args.runs), str(workdir)]
                    r = child(cmd, args.cpus,
                              env_extra=CALLER_THREAD_ENV if "+caller" in kind else None)
                    best = results.get(kind)
                    if "error" in r:
                        results.setdefault(kind, r)
                    elif best is None or "error" in best or r["ms"] < best["ms"]:
                        results[kind] = {**r, "profile": r.get("profile") or (best or {}).get("profile")}
                    elif r.get("profile"):
                        best["profile"] = r["profile"]  # the profiled round was not the fastest
            base = results["fp32"].get("ms")
            print(f"\n{name} ({SIZES.get(name, 224)}x{SIZES.get(name, 224)}, batch 1)")
            print(f"  {'path':<18} {'ms':>8} {'vs fp32':>8} {'logits SQNR':>12}")
            for kind, r in results.items():
                if "error" in r:
                    print(f"  {kind:<18} failed: {r['error']}")
                    continue
                ratio = base / r["ms"] if base else float("nan")
                db = sqnr(info["ref"], r["out"])
                # OpenVINO's fp32 path computes in its default inference precision
                # (bf16 where the CPU has AMX); say so rather than call it fp32.
                runs_in = r.get("precision", "")
                note = f"  (runs in {runs_in})" if kind.endswith("fp32") and runs_in and \
                    runs_in != "f32" else ""
                print(f"  {kind:<18} {r['ms']:8.2f} {ratio:7.2f}x {db:10.1f} dB{note}")
            ours = results["int8"].get("ms")
            ov = results.get("openvino-int8", {}).get("ms")
            if ours and ov:
                print(f"  leangraph int8 / OpenVINO int8 latency: {ours / ov:.2f}")
            caller = results.get("int8+caller", {}).get("ms")
            if caller and ov:
                print(f"  leangraph int8 (caller thread) / OpenVINO int8 latency: {caller / ov:.2f}")
            print(f"  conv/matmul MACs in int8: {100 * info['mac_share']:.1f} %; "
                  f"file {info['bytes']['int8'] / info['bytes']['fp32'] * 100:.1f} % of fp32; "
                  f"layers kept float: {len(info['fallback'])}")
            profile = results["int8"].get("profile") or []
            total = sum(row["ms"] for row in profile) or 1.0
            print("  int8 graph, time by op type:")
            for row in profile[:8]:
                print(f"    {row['op']:<34} x{row['count']:<4} {row['ms']:7.2f} ms {100 * row['ms'] / total:5.1f} %")


def coverage(args):
    print(f"{'model':<18} {'int8 layers':>11} {'MACs int8':>10} {'logits SQNR':>12} "
          f"{'Q+DQ ops':>9} {'file':>7}  kept float")
    with tempfile.TemporaryDirectory(prefix="int8-coverage-") as tmp:
        for name in args.coverage_models.split(","):
            size = max(args.size, 75) if name != "NASNetMobile" else 224
            _, info = build(name, Path(tmp), args.calibration, size=size,
                            bias_correction=not args.no_bias_correction)
            kept = ", ".join(n.rsplit("/", 2)[-2] for n, _ in info["fallback"][:3]) or "-"
            print(f"{name:<18} {info['int8_layers']:>11} {100 * info['mac_share']:>9.1f}% "
                  f"{info['sqnr_db']:>10.1f} dB {info['qdq']:>9} "
                  f"{100 * info['bytes']['int8'] / info['bytes']['fp32']:>6.1f}%  {kept}")


if __name__ == "__main__":
    main()
