"""The same tune search run in memory, by 1 worker and by 2 workers sharing a PostgreSQL study.

Prints the wall time of each, what the storage adds per trial, and whether the
best trial's latency agrees between the 1- and 2-worker searches: both best
graphs are timed again side by side, in interleaved rounds, and the 95 %
intervals of their medians are compared.

Without --storage it starts a throwaway PostgreSQL server (tests/pg.py; as root
the server runs as the `postgres` user). The model is the digits reference
model (leangraph.reference_model), the data its held-out split.

    .venv/bin/python bench/distributed_tune.py [--storage URL] [--examples 120] [--runs 200]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def search_flags(bf16):
    precisions = "fp32,bf16" if bf16 else "fp32"
    n = 3 * (2 if bf16 else 1) * 2
    return ["--recipes", "none,tf-deploy,deploy", "--precisions", precisions,
            "--threads", "1,2", "--trials", str(n)], n


def run_workers(count, model, data, flags, storage, study, folder):
    """Wall time of `count` tune processes on one study, and their outputs."""
    started = time.perf_counter()
    procs = []
    for i in range(count):
        extra = ["--storage", storage, "--study", study] if storage else []
        if storage and i > 0:
            extra += ["--worker", "--wait", "120"]
        out = folder / f"{study or 'memory'}-{i}"
        procs.append((subprocess.Popen(
            [sys.executable, "-m", "leangraph", "tune", model, "--data", data, *flags, *extra,
             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}), out))
    texts = []
    for proc, _ in procs:
        text, _ = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"a worker failed:\n{text[-3000:]}")
        texts.append(text)
    return time.perf_counter() - started, texts, [out for _, out in procs]


def best_of(text):
    match = re.search(r"^best: (\S+) ([\d.]+) ms", text, re.M)
    return match.group(1), float(match.group(2))


def outside_ms(text):
    match = re.search(r"([\d.]+) ms per trial outside measuring", text)
    return float(match.group(1)) if match else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="a PostgreSQL URL (default: start a throwaway server)")
    parser.add_argument("--examples", type=int, default=120, help="held-out examples scored")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per best graph")
    args = parser.parse_args()

    from leangraph import benchmark, graphs
    from leangraph.bench import cpu_supports_bf16
    from leangraph.reference_model import reference_model

    digits = reference_model()
    folder = Path(tempfile.mkdtemp(prefix="leangraph-dist-bench-"))
    data = folder / "data.npz"
    np.savez(data, x=digits.x_test[:args.examples], y=digits.y_test[:args.examples])
    flags, n = search_flags(cpu_supports_bf16())
    server = None
    storage = args.storage
    if storage is None:
        sys.path.insert(0, str(HERE.parent / "tests"))
        import pg

        why = pg.missing()
        if why:
            sys.exit(f"no PostgreSQL: {why}")
        server = pg.Server().start()
        storage = server.url()
    tag = uuid.uuid4().hex[:6]
    try:
        model = str(digits.graph_path)
        mem_s, mem_out, _ = run_workers(1, model, str(data), flags, None, None, folder)
        one_s, one_out, one_dirs = run_workers(1, model, str(data), flags, storage,
                                               f"bench1-{tag}", folder)
        two_s, two_out, two_dirs = run_workers(2, model, str(data), flags, storage,
                                               f"bench2-{tag}", folder)
    finally:
        if server is not None:
            server.stop()

    print(f"digits model, {n} configurations ({' '.join(flags[:-2])}), "
          f"{args.examples} examples, {os.cpu_count()} logical CPUs; wall time includes "
          "each process's TensorFlow start")
    print(f"{'search':<22} {'wall s':>8} {'vs 1 worker':>12}  ms/trial outside measuring")
    print(f"{'in memory':<22} {mem_s:8.1f} {one_s / mem_s:11.2f}x  -")
    print(f"{'PostgreSQL, 1 worker':<22} {one_s:8.1f} {1.0:11.2f}x  {outside_ms(one_out[0])}")
    print(f"{'PostgreSQL, 2 workers':<22} {two_s:8.1f} {one_s / two_s:11.2f}x  "
          f"{', '.join(str(outside_ms(t)) for t in two_out)}")
    print(f"storage cost per trial (1 worker vs in memory, whole process): "
          f"{1e3 * (one_s - mem_s) / n:.0f} ms")

    # Timings of one configuration should not depend on how many workers searched: the
    # host-wide lock keeps a second worker's load out of every timing.
    recorded = []
    for folder_i in (one_dirs[0], two_dirs[0]):
        trials = json.loads((folder_i / "trials.json").read_text())["trials"]
        recorded.append({f"{t['recipe']}/{t['precision']}/t{t['threads']}": t["latency_ms"]
                         for t in trials if t["repeat_of"] is None and t["latency_ms"]})
    print(f"{'configuration':<22} {'1 worker ms':>11} {'2 workers ms':>12} {'ratio':>6}")
    ratios = []
    for cfg in sorted(recorded[0]):
        if cfg in recorded[1]:
            ratios.append(recorded[1][cfg] / recorded[0][cfg])
            print(f"{cfg:<22} {recorded[0][cfg]:11.3f} {recorded[1][cfg]:12.3f} "
                  f"{ratios[-1]:6.2f}")
    print(f"median ratio 2 workers / 1 worker over {len(ratios)} configurations: "
          f"{float(np.median(ratios)):.2f}")
    (cfg1, ms1), (cfg2, ms2) = best_of(one_out[0]), best_of(two_out[0])
    assert best_of(two_out[1]) == (cfg2, ms2), "the two workers disagree about the best trial"
    print(f"best, 1 worker : {cfg1} {ms1:.3f} ms (recorded)")
    print(f"best, 2 workers: {cfg2} {ms2:.3f} ms (recorded; both workers agree)")
    feeds = {graphs.default_inputs(digits.graph_def)[0]: digits.x_test[:1]}
    threads = [int(cfg.rsplit("/t", 1)[1]) for cfg in (cfg1, cfg2)]
    rounds, results = 5, [[], []]
    for _ in range(rounds):  # interleaved, so drift hits both alike
        for i, folder_i in enumerate((one_dirs[0], two_dirs[0])):
            results[i].extend(benchmark(folder_i / "best.pb", feeds, runs=args.runs // rounds,
                                        warmup=5, threads=threads[i]).samples_ms)
    from leangraph.bench import stats

    cis = []
    for label, samples in zip(("1 worker", "2 workers"), results):
        summary = stats(samples)
        low, high = summary["median_ci95_ms"]
        cis.append((low, high))
        print(f"re-timed {label:<9}: p50 {summary['p50_ms']:.3f} ms, 95 % CI "
              f"[{low:.3f}, {high:.3f}]")
    overlap = cis[0][0] <= cis[1][1] and cis[1][0] <= cis[0][1]
    print(f"best-trial latency, 1 vs 2 workers: {'agree' if overlap else 'DIFFER'} "
          f"(95 % intervals {'overlap' if overlap else 'do not overlap'}); "
          f"same configuration: {cfg1 == cfg2}")


if __name__ == "__main__":
    main()
