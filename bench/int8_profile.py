"""Where leangraph's int8, fp32 or bf16 graph's time goes, op by op, in a plain TensorFlow session.

--precision picks the graph: int8 (the default) is the one `leangraph.quantize(deploy_graph,
calibration)` writes with default arguments, fp32 the `deploy` recipe's graph, bf16 that graph
through `to_bfloat16` (all built as bench/int8_bench.py builds them: keras.applications, random
weights, non-trivial batch norms, 16 calibration inputs); OpenVINO's side is NNCF's int8, or the
converted frozen graph with INFERENCE_PRECISION_HINT f32 or bf16. Each is run as a serving harness runs it: a
`tf.compat.v1.Session(intra_op_parallelism_threads=T, inter_op_parallelism_threads=1)`
fed one image. Every timed path runs in a process of its own, pinned to --cpus.

    .venv/bin/python bench/int8_profile.py [--models Xception] [--threads 1,2] [--runs 40]
        [--precision int8|fp32|bf16] [--graphs DIR] [--save DIR] [--options] [--rounds 3] [--peers-python PY]
        [--against DIR] [--only-options] [--ov-hint f32]

Printed per model:
  - the graph's ops by type (fused_ops spelled out), and OpenVINO+NNCF int8's node count for
    the same frozen graph where --peers-python can import openvino and nncf;
  - per thread count: the untraced median, then from TensorFlow's step stats (FULL_TRACE)
    each op type's count and time (its median over the traced runs), the traced span and the executor's gaps between ops
    (the span less the ops' own times); with two thread counts, each type's time at T
    threads against its time at the first count divided by T (what perfect scaling would
    give: the excess is hand-over and serial work);
  - OpenVINO's per-node profile (PERF_COUNT) by node type, same threads;
  - with --against DIR: the graph against another build of it (NAME.PRECISION.pb there, e.g.
    made by the code before a change) in interleaved rounds, each run in its own process;
  - with --handover: the runtime's own cost per oneDNN op, with no model: a chain of 200 small
    1x1 convolutions (19x19x32, the work of one 1x1 conv in Xception's middle flow over 23)
    timed at one thread and at the last --threads, with and without the caller thread; the
    excess over perfect scaling per op is what each op of a graph pays for the thread hand-over;
  - with --options: the graph timed under session and runtime settings (thread spinning,
    executor type, inter-op threads, TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD), each in its
    own process, in interleaved rounds, as the best round's median against the harness's
    own setting measured in the same rounds.
Ratios only mean something within one run.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nncf_int8  # noqa: E402 - bench/, on the path just above

# One child per timed path. argv: graph, x.npy, input, output, intra, inter, runs, traced
# runs, settings (JSON: {"spin": bool, "executor": str}). Prints JSON as its last line.
_TF_CHILD = r"""
import json, sys, time, numpy as np, tensorflow as tf
graph, x_path, inp, out, intra, inter, runs, traced, settings = sys.argv[1:10]
settings = json.loads(settings)
gd = tf.compat.v1.GraphDef()
with open(graph, "rb") as f:
    gd.ParseFromString(f.read())
g = tf.Graph()
with g.as_default():
    tf.import_graph_def(gd, name="")
cfg = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=int(intra),
                               inter_op_parallelism_threads=int(inter))
if settings.get("no_spin"):
    cfg.experimental.disable_thread_spinning = True
if settings.get("executor"):
    cfg.experimental.executor_type = settings["executor"]
sess = tf.compat.v1.Session(graph=g, config=cfg)
fetch = g.get_tensor_by_name(out + ":0")
feed = {g.get_tensor_by_name(inp + ":0"): np.load(x_path)}
for _ in range(8):
    sess.run(fetch, feed)
times = []
for _ in range(int(runs)):
    t = time.perf_counter()
    sess.run(fetch, feed)
    times.append((time.perf_counter() - t) * 1e3)
per_run, spans, op_sums, executed = [], [], [], {}
opts = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
for i in range(int(traced)):
    meta = tf.compat.v1.RunMetadata()
    opts.output_partition_graphs = i == 0
    sess.run(fetch, feed, options=opts, run_metadata=meta)
    # The graph the executor ran (after Grappler and oneDNN's layout pass), fused_ops spelled out.
    for pg in meta.partition_graphs:
        for node in pg.node:
            if node.op in ("Const", "_Arg", "_Retval", "NoOp"):
                continue
            fused = [f.decode() for f in node.attr["fused_ops"].list.s] if "fused_ops" in node.attr else []
            kind = node.op + ("[" + ",".join(fused) + "]" if fused else "")
            executed[kind] = executed.get(kind, 0) + 1
    starts, ends, total, by_type = [], [], 0, {}
    for dev in meta.step_stats.dev_stats:
        for ns in dev.node_stats:
            label = ns.timeline_label
            kind = label.split("=", 1)[1].strip().split("(", 1)[0] if "=" in label else ns.node_name
            us = ns.all_end_rel_micros
            starts.append(ns.all_start_micros)
            ends.append(ns.all_start_micros + us)
            total += us
            row = by_type.setdefault(kind, [0, 0.0])
            row[0] += 1
            row[1] += us
    spans.append(max(ends) - min(starts))
    op_sums.append(total)
    per_run.append(by_type)
# Each type's median over the traced runs: on a shared machine one slow run would move a mean.
kinds = {k for r in per_run for k in r}
types = {k: [max(r.get(k, [0, 0])[0] for r in per_run),
             float(np.median([r.get(k, [0, 0.0])[1] for r in per_run])) / 1e3] for k in kinds}
print(json.dumps({"ms": float(np.median(times)),
                  "types": types,
                  "span_ms": float(np.median(spans)) / 1e3 if spans else None,
                  "executed": executed,
                  "ops_ms": float(np.median(op_sums)) / 1e3 if op_sums else None}))
"""


# A chain of small oneDNN convolutions with no model around it. argv: intra threads, ops, runs.
_CHAIN_CHILD = r"""
import json, sys, time, numpy as np, tensorflow as tf
intra, ops, runs = (int(a) for a in sys.argv[1:4])
g = tf.Graph()
with g.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [1, 19, 19, 32])
    w = tf.constant(np.random.default_rng(0).normal(0, 0.1, (1, 1, 32, 32)).astype(np.float32))
    y = x
    for _ in range(ops):
        y = tf.nn.relu(tf.nn.conv2d(y, w, 1, "SAME"))
cfg = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=intra, inter_op_parallelism_threads=1)
sess = tf.compat.v1.Session(graph=g, config=cfg)
feed = {x: np.random.default_rng(1).random((1, 19, 19, 32), dtype=np.float32)}
for _ in range(10):
    sess.run(y, feed)
times = []
for _ in range(runs):
    t = time.perf_counter()
    sess.run(y, feed)
    times.append((time.perf_counter() - t) * 1e3)
print(json.dumps({"ms": float(np.median(times)), "us_per_op": float(np.median(times)) * 1e3 / ops}))
"""


# OpenVINO of the same frozen fp32 graph (NNCF int8 for --precision int8, else the converted
# graph at the hint's precision): node count and PERF_COUNT by type.
_OV_CHILD = nncf_int8.child(r"""
import json, sys, time, numpy as np
graph, x_path, calib_path, threads, runs, profile, hint, precision = sys.argv[1:9]
import openvino as ov
x = np.load(x_path)
core = ov.Core()
model = nncf_int8(graph, np.load(calib_path)) if precision == "int8" else ov.convert_model(graph)
config = {"INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY"}
if hint:
    config["INFERENCE_PRECISION_HINT"] = hint
if profile == "1":
    config["PERF_COUNT"] = True
compiled = core.compile_model(model, "CPU", config)
req = compiled.create_infer_request()
for _ in range(8):
    req.infer({0: x})
times = []
for _ in range(int(runs)):
    t = time.perf_counter(); req.infer({0: x}); times.append((time.perf_counter() - t) * 1e3)
skip = {"Parameter", "Result", "Constant"}
nodes = [op for op in compiled.get_runtime_model().get_ordered_ops()
         if op.get_type_name() not in skip]
kinds = {}
for op in nodes:
    rt = op.get_rt_info()
    layer = str(rt["layerType"]) if "layerType" in rt else op.get_type_name()
    kinds[layer] = kinds.get(layer, 0) + 1
perf, executed = {}, 0
if profile == "1":
    for info in req.get_profiling_info():
        if info.status != info.Status.EXECUTED:
            continue
        executed += 1
        row = perf.setdefault(f"{info.node_type} ({info.exec_type})", [0, 0.0])
        row[0] += 1
        row[1] += info.real_time.total_seconds() * 1e3
print(json.dumps({"ms": float(np.median(times)), "nodes": len(nodes), "kinds": kinds,
                  "executed": executed,
                  "types": perf,
                  "precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()}))
""")

# name -> (inter_op threads, extra environment, session settings)
OPTIONS = {
    "harness (inter 1)": (1, {}, {}),
    "caller thread": (1, {"TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD": "1"}, {}),
    "no spinning": (1, {}, {"no_spin": True}),
    "caller + no spinning": (1, {"TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD": "1"},
                             {"no_spin": True}),
    "inter -1 (caller runs ops)": (-1, {}, {}),
    "inter -1 + caller thread": (-1, {"TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD": "1"}, {}),
    "single-threaded executor": (1, {}, {"executor": "SINGLE_THREADED_EXECUTOR"}),
    "single-threaded + caller": (1, {"TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD": "1"},
                                 {"executor": "SINGLE_THREADED_EXECUTOR"}),
}


def child(cmd, cpus, env_extra=None, timeout=1800):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env_extra or {}))
    proc = subprocess.run(["taskset", "-c", cpus] + cmd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail)[-400:]}
    return json.loads(lines[-1])


def keep_fastest(best, key, result):
    """best[key] = result when it is the first, or faster, or the first without an error."""
    old = best.get(key)
    if old is None or ("error" not in result and ("error" in old or result["ms"] < old["ms"])):
        best[key] = result


def op_counts(path):
    """(Counter of op types, with fused_ops spelled out, Const left out; total)."""
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(Path(path).read_bytes())
    kinds = Counter()
    for node in gd.node:
        if node.op == "Const":
            continue
        fused = [s.decode() for s in node.attr["fused_ops"].list.s] if "fused_ops" in node.attr else []
        kinds[node.op + (f"[{','.join(fused)}]" if fused else "")] += 1
    return kinds, sum(kinds.values())


def graphs_for(name, args, workdir):
    """{int8, fp32, x, calib[, bf16]} paths: read from --graphs, else built. The bf16 graph is
    the fp32 one through to_bfloat16, made (into workdir) when the folder has none."""
    found = None
    if args.graphs:
        folder = Path(args.graphs)
        found = {"int8": folder / f"{name}.int8.pb", "fp32": folder / f"{name}.fp32.pb",
                 "x": folder / f"{name}.x.npy", "calib": folder / f"{name}.calib.npy"}
        if args.precision != "int8":
            found.pop("int8")  # not needed, and building it takes minutes
        if not all(p.exists() for p in found.values()):
            found = None
    if found is None:
        import int8_bench

        paths, _ = int8_bench.build(name, workdir, args.calibration)
        found = {"int8": paths["int8"], "fp32": paths["fp32"], "x": workdir / f"{name}.x.npy",
                 "calib": workdir / f"{name}.calib.npy"}
    if args.precision == "bf16":
        found["bf16"] = Path(args.graphs or workdir) / f"{name}.bf16.pb"
        if not found["bf16"].exists():
            import leangraph

            found["bf16"] = workdir / f"{name}.bf16.pb"
            leangraph.save_graph(leangraph.transform(str(found["fp32"]), "to_bfloat16"),
                                 str(found["bf16"]))
    return found


def io_names(path):
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(Path(path).read_bytes())
    read = {i.split(":")[0].lstrip("^") for n in gd.node for i in n.input}
    inp = next(n.name for n in gd.node if n.op == "Placeholder")
    out = next(n.name for n in reversed(gd.node) if n.name not in read and n.op != "Const")
    return inp, out


def print_profile(threads, results):
    first = threads[0]
    executed = results[threads[-1]].get("executed") or {}
    if executed:
        print(f"    the graph TensorFlow executed (after Grappler and the oneDNN layout pass): "
              f"{sum(executed.values())} ops besides constants")
        for kind, count in sorted(executed.items(), key=lambda kv: -kv[1]):
            print(f"      {kind:<70} {count:>4}")
    kinds = sorted({k for t in threads for k in results[t].get("types", {})},
                   key=lambda k: -results[threads[-1]].get("types", {}).get(k, [0, 0])[1])
    head = "  ".join(f"{f'{t} thr ms':>9} {'%':>5}" for t in threads)
    scale = f"  {'vs perfect':>10}" if len(threads) > 1 else ""
    print(f"    {'op type (runtime kernel)':<40} {'count':>5}  {head}{scale}")
    for kind in kinds:
        cells, count = [], 0
        for t in threads:
            r = results[t]
            c, ms = r["types"].get(kind, [0, 0.0])
            count = max(count, c)
            cells.append(f"{ms:9.2f} {100 * ms / (r['ops_ms'] or 1):5.1f}")
        extra = ""
        if len(threads) > 1:
            base = results[first]["types"].get(kind, [0, 0.0])[1] * first / threads[-1]
            last = results[threads[-1]]["types"].get(kind, [0, 0.0])[1]
            extra = f"  {last / base:9.2f}x" if base > 0 else ""
        print(f"    {kind:<40} {count:>5}  {'  '.join(cells)}{extra}")
    for t in threads:
        r = results[t]
        print(f"    {t} thread(s): untraced median {r['ms']:.2f} ms; traced span {r['span_ms']:.2f} ms "
              f"= ops {r['ops_ms']:.2f} ms + executor gaps {r['span_ms'] - r['ops_ms']:.2f} ms")


def print_scaled_as_peer(threads, results, peer):
    """TensorFlow's time at the first thread count scaled by OpenVINO's own scaling to the last:
    where the gap would be if TensorFlow's runtime handed work to its threads as OpenVINO's does."""
    first, last = threads[0], threads[-1]
    runs = [results.get(first), results.get(last), peer.get(first), peer.get(last)]
    if first == last or any(r is None or "error" in r for r in runs):
        return
    tf_first, tf_last, ov_first, ov_last = (r["ms"] for r in runs)
    scaled = tf_first * ov_last / ov_first
    print(f"  TensorFlow's {first}-thread time scaled as OpenVINO's scales to {last} threads "
          f"({ov_first:.2f} -> {ov_last:.2f} ms): {scaled:.2f} ms, {scaled / ov_last:.2f}x OpenVINO "
          f"(measured: {tf_last:.2f} ms, {tf_last / ov_last:.2f}x)")


def print_handover(t, args):
    """The chain's time per op at one thread and at t threads (harness setting and caller thread),
    best of the interleaved rounds, and the excess over perfect scaling per op."""
    settings = (("1 thread", 1, {}), (f"{t} threads", t, {}),
                (f"{t} threads, caller thread", t, {"TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD": "1"}))
    best = {}
    for _ in range(args.rounds):
        for label, intra, env in settings:
            keep_fastest(best, label, child([sys.executable, "-c", _CHAIN_CHILD, str(intra), "200",
                                             str(args.runs)], args.cpus, env))
    failed = {k: r["error"] for k, r in best.items() if "error" in r}
    if failed:
        print(f"hand-over chain failed: {failed}")
        return
    one = best["1 thread"]["us_per_op"]
    print(f"hand-over: 200 chained 1x1 convs (19x19x32), best of {args.rounds} rounds, "
          f"median of {args.runs}:")
    for label, _, _ in settings:
        us = best[label]["us_per_op"]
        excess = f", {us - one / t:+.1f} us per op over perfect scaling" if label != "1 thread" else ""
        print(f"    {label:<28} {us:6.1f} us per op{excess}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="Xception")
    parser.add_argument("--precision", choices=("int8", "fp32", "bf16"), default="int8",
                        help="which of leangraph's graphs to profile, against OpenVINO at the same")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--cpus", default="0,1")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--traced", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calibration", type=int, default=16)
    parser.add_argument("--graphs", help="a folder with NAME.int8.pb, NAME.fp32.pb, NAME.x.npy, "
                        "NAME.calib.npy (as --save writes them) instead of building")
    parser.add_argument("--save", help="keep the built graphs in this folder")
    parser.add_argument("--options", action="store_true",
                        help="time session/runtime settings side by side (at the last --threads)")
    parser.add_argument("--only-options", action="store_true", help="--options without the profile")
    parser.add_argument("--handover", action="store_true",
                        help="time the runtime's per-op cost on a chain of small oneDNN convs "
                        "(no model) at one thread and at the last --threads")
    parser.add_argument("--peers-python", default=os.environ.get("LEANGRAPH_PEERS_PYTHON"))
    parser.add_argument("--ov-hint", default=None,
                        help="OpenVINO's INFERENCE_PRECISION_HINT ('' for its default); by default "
                        "f32, bf16 for --precision bf16")
    parser.add_argument("--against", help="a folder of other int8 graphs (as --graphs): time "
                        "each model's graph against that one side by side, per thread count, "
                        "in the harness's setting and with the caller thread")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    prec = args.precision
    if args.ov_hint is None:
        args.ov_hint = "bf16" if prec == "bf16" else "f32"
    peer_label = "OpenVINO+NNCF int8" if prec == "int8" else "OpenVINO"
    peers = False
    if args.peers_python:
        probe = subprocess.run([args.peers_python, "-c", "import openvino, nncf"], capture_output=True)
        peers = probe.returncode == 0
        if not peers:
            print(f"(OpenVINO skipped: {args.peers_python} cannot import openvino, nncf)")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    print(f"CPU: {cpu}; pinned to {args.cpus}; plain tf.compat.v1.Session, inter_op 1 unless said")
    if args.handover:
        print_handover(threads[-1], args)
    with tempfile.TemporaryDirectory(prefix="int8-profile-") as tmp:
        workdir = Path(args.save) if args.save else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name in args.models.split(","):
            paths = graphs_for(name, args, workdir)
            inp, out = io_names(paths[prec])
            kinds, total = op_counts(paths[prec])
            print(f"\n{name}: {prec} graph, {total} ops besides constants")
            for kind, count in kinds.most_common():
                print(f"    {kind:<72} {count:>4}")

            def tf_cmd(t, inter, runs, traced, settings):
                return [sys.executable, "-c", _TF_CHILD, str(paths[prec]), str(paths["x"]), inp, out,
                        str(t), str(inter), str(runs), str(traced), json.dumps(settings)]

            if not args.only_options:
                # Interleaved rounds, TensorFlow's and OpenVINO's children alternating;
                # each path keeps its fastest round (a busy phase hits one round).
                results, peer = {}, {}
                for _ in range(args.rounds):
                    for t in threads:
                        keep_fastest(results, t, child(tf_cmd(t, 1, args.runs, args.traced, {}),
                                                       args.cpus))
                        if peers:
                            keep_fastest(peer, t, child(
                                [args.peers_python, "-c", _OV_CHILD, str(paths["fp32"]),
                                 str(paths["x"]), str(paths["calib"]), str(t), str(args.runs), "1",
                                 args.ov_hint, prec], args.cpus))
                bad = {t: r["error"] for t, r in results.items() if "error" in r}
                if bad:
                    print(f"  profile failed: {bad}")
                else:
                    print(f"  TensorFlow step stats (median of the traced runs; fastest of "
                          f"{args.rounds} rounds):")
                    print_profile(threads, results)
                for t, r in peer.items():
                    if "error" in r:
                        print(f"  OpenVINO failed: {r['error']}")
                        continue
                    print(f"  {peer_label}, {t} thread(s), PERF_COUNT on: {r['nodes']} nodes "
                          f"in the compiled model, {r['executed']} of them executed, median "
                          f"{r['ms']:.2f} ms (precision hint {r['precision']}); against "
                          f"TensorFlow's untraced median: {results[t].get('ms', 0) / r['ms']:.2f}")
                    total_ms = sum(ms for _, ms in r["types"].values()) or 1.0
                    for kind, (c, ms) in sorted(r["types"].items(), key=lambda kv: -kv[1][1]):
                        print(f"    {kind:<40} {c:>5} {ms:8.2f} ms {100 * ms / total_ms:5.1f} %")
                print_scaled_as_peer(threads, results, peer)
            if args.against:
                other = Path(args.against) / f"{name}.{prec}.pb"
                o_kinds, o_total = op_counts(other)
                print(f"  against {other}: {o_total} ops besides constants there, {total} here")
                for t in threads:
                    for env_label, env in (("harness", {}),
                                           ("caller thread",
                                            {"TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD": "1"})):
                        best = {}
                        for _ in range(args.rounds):
                            for label, graph in (("this", paths[prec]), ("other", other)):
                                cmd = tf_cmd(t, 1, args.runs, 0, {})
                                cmd[3] = str(graph)
                                r = child(cmd, args.cpus, env)
                                if "error" not in r and r["ms"] < best.get(label, float("inf")):
                                    best[label] = r["ms"]
                        if len(best) == 2:
                            print(f"    {t} thread(s), {env_label:<13}: this {best['this']:7.2f} ms, "
                                  f"other {best['other']:7.2f} ms, other/this "
                                  f"{best['other'] / best['this']:.3f}")
                        else:
                            print(f"    {t} thread(s), {env_label}: a path failed")
            if args.options or args.only_options:
                t = threads[-1]
                best = {}
                for _ in range(args.rounds):
                    for label, (inter, env, settings) in OPTIONS.items():
                        keep_fastest(best, label, child(tf_cmd(t, inter, args.runs, 0, settings),
                                                        args.cpus, env))
                base = best["harness (inter 1)"].get("ms")
                print(f"  settings at {t} threads (best of {args.rounds} interleaved rounds, "
                      f"median of {args.runs}; ratio = harness ms / setting ms, > 1 faster):")
                for label, r in best.items():
                    if "error" in r:
                        print(f"    {label:<30} failed: {r['error']}")
                    else:
                        print(f"    {label:<30} {r['ms']:8.2f} ms {base / r['ms']:6.3f}x")


if __name__ == "__main__":
    main()
