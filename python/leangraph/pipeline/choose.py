"""Choosing optimize's result: the first-ranked variant confirmed against the frozen
graph in interleaved pairs (pipeline.confirm), the thread-count and caller-thread
hints, and the steps stacked on a baseline (a pruned model's original).
"""

import os

import numpy as np

from leangraph.errors import LeangraphError
from leangraph.pipeline.confirm import CONFIRM_MAX_TIME, CONFIRM_TARGET_CI, not_worth_it, pairs
from leangraph.pipeline.export import write_result
from leangraph.pipeline.inputs import load_any_model
from leangraph.pipeline.settings import run_bench_kwargs
from leangraph.safety import require_safe


def confirm_result(run, bench, chosen, prog):
    """The chosen graph against the frozen graph, timed in pairs until the interval is tight.

    The rounds above rank the variants; this is the number the report claims, so a
    noisy machine costs time here, not truth.
    """
    frozen = next((v for v in run.variants if v.name == "frozen" and v.graph_def), None)
    if chosen is None or frozen is None or chosen is frozen:
        return None
    c = run.config
    prog.item(f"{chosen.name} vs frozen: pairs until the 95 % interval is within "
              f"±{CONFIRM_TARGET_CI:.0%}")
    feeds = run.first_example
    try:
        result = pairs(frozen.graph_def, chosen.graph_def, feeds, outputs=run.ends[1],
                       precision_b=chosen.bench_precision, allow_io_ops=True,
                       **run_bench_kwargs(c))
    except LeangraphError as exc:
        run.notes.append(f"the confirming comparison of {chosen.name} with frozen failed: {exc}")
        return None
    lo, hi = result.speedup_ci95
    run.notes.append(
        f"{chosen.name} vs the frozen graph, re-timed in {result.pairs} interleaved pairs: "
        f"{result.speedup:.2f}× faster [95 % CI {lo:.2f}, {hi:.2f}]"
        + (f", {result.sessions} sessions of each" if result.sessions > 1 else "")
        + ("" if result.target_met else
           f" (the ±{CONFIRM_TARGET_CI:.0%} target was not met in {CONFIRM_MAX_TIME:g} s: "
           "a noisy machine)"))
    return {"a": "frozen", "b": chosen.name, "speedup": result.speedup,
            "speedup_ci95": list(result.speedup_ci95), "pairs": result.pairs,
            "target_ci": CONFIRM_TARGET_CI, "target_met": result.target_met,
            "position_effect": result.position_effect, "sessions": result.sessions,
            "between_sessions_sd": result.between_sessions_sd}


#: How many fastest-ranked variants the interleaved pairs may overrule before the
#: next one is taken unconfirmed (each confirmation takes up to CONFIRM_MAX_TIME).
MAX_OVERRULED = 2


def choose_result(run, bench, staging, ranked, prog):
    """(the result, its confirming comparison with the frozen graph), written to staging.

    The rounds rank variants timed one after another; the pairs that confirm the
    first are interleaved, so a slow phase of the machine hits both graphs alike.
    When the pairs find the first slower than the frozen graph (its interval all
    below 1), the rounds misranked it: it goes behind the frozen graph and the
    next is written and confirmed instead. A variant that changes the numbers (bf16,
    int8) must be measurably faster (its interval all above 1): speed is what it
    trades accuracy for, so at a tie the exact fp32 graph is the better result.
    """
    c = run.config
    ranked = list(ranked)
    overruled = 0
    while True:
        ranked = [v for v in ranked if v.passed]  # not one whose SavedModel already failed
        chosen = write_result(staging, ranked, run.examples, run.reference, *run.ends,
                              c.tolerance, run.notes, prog, gates=run.gates)
        confirmed = confirm_result(run, bench, chosen, prog)
        if chosen is None or confirmed is None or overruled >= MAX_OVERRULED:
            return chosen, confirmed
        why = not_worth_it(chosen.precision, confirmed["speedup_ci95"])
        if why is None:
            return chosen, confirmed
        overruled += 1
        lo, hi = confirmed["speedup_ci95"]
        slower = (f"in interleaved pairs {chosen.name} runs at {confirmed['speedup']:.2f}x the "
                  f"frozen graph's speed [95 % CI {lo:.2f}, {hi:.2f}]: {why}")
        ranked.remove(chosen)
        frozen = next((i for i, v in enumerate(ranked) if v.name == "frozen"), None)
        ranked.insert(len(ranked) if frozen is None else frozen + 1, chosen)
        if ranked[0] is chosen:
            run.notes.append(f"{slower}, but no other variant of the precisions asked for "
                             "passed, so it stays the result")
            return chosen, confirmed
        run.notes.append(f"{chosen.name} ranked first in the timing rounds, but {slower}, so "
                         f"it is not the result; {ranked[0].name} is tried instead")


#: An int8 result is also timed on one intra-op thread and on all of them, in this many
#: alternating rounds of the child timer (one process each, so not paired).
THREAD_HINT_ROUNDS = 2


def hint_cores(config):
    """The intra-op threads of "all cores": the CPUs pinned to, or those this process may use."""
    return len(config.cpus) if config.cpus else len(os.sched_getaffinity(0))


def thread_hint(run, bench, chosen, prog):
    """{"1": ms, "N": ms, "N+caller": ms, "rounds": R} for an int8 result timed on 1 and
    on all N intra-op threads, the latter also with the calling thread working
    (bench.CALLER_THREAD_ENV); or None.

    TensorFlow forks and joins its intra-op pool once per op, which small int8 kernels may
    not repay, and its oneDNN kernels leave the calling thread idle while the pool works
    unless TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD is set; the report says when either
    setting is clearly faster (measured: bench/results/2026-12-02-xeon-vnni-int8_bench.md,
    bench/results/2026-12-04-zen4-int8_bench-caller-thread.md). "N+caller" is left out when the
    variable is set already (then "N" has it). Only without --threads.
    """
    c = run.config
    cores = hint_cores(c)
    if chosen is None or chosen.precision != "int8" or c.threads or cores < 2:
        return None
    caller_key = bench.CALLER_THREAD_VAR
    settings = [("1", 1, None), (str(cores), cores, None)]
    if not bench.caller_thread_set():
        settings.append((f"{cores}+caller", cores, bench.CALLER_THREAD_ENV))
    prog.item(f"{chosen.name} on 1 and on {cores} intra-op threads")
    try:
        best = alternating_rounds(run, bench, [(key, chosen, threads, env)
                                         for key, threads, env in settings])
    except LeangraphError as exc:
        run.notes.append(f"timing {chosen.name} on 1 and on {cores} threads failed: {exc}")
        return None
    one, many = best["1"], best[str(cores)]
    caller = best.get(f"{cores}+caller")
    rounds = f"the better of {THREAD_HINT_ROUNDS} alternating rounds each"
    if one < 0.9 * min(many, caller or many):
        run.notes.append(
            f"{chosen.name} runs faster on 1 intra-op thread than on {cores} here ({one:.2f} vs "
            f"{many:.2f} ms, {rounds}): "
            "TensorFlow forks and joins its thread pool once per op, which these int8 kernels "
            "do not repay on this machine; serve it with intra_op_parallelism_threads=1 "
            "(`leangraph tune` searches thread counts)")
    elif caller is not None and caller < 0.9 * many:
        run.notes.append(
            f"{chosen.name} runs faster on {cores} intra-op threads when the calling thread "
            f"works too ({caller:.2f} vs {many:.2f} ms, {rounds}): serve it with "
            f"{caller_key}=1 in the server's environment (TensorFlow reads it at start-up; "
            f"it applies when the intra-op pool has a thread per CPU the process may use)")
    return {**best, "rounds": THREAD_HINT_ROUNDS}


def alternating_rounds(run, bench, settings):
    """{key: best p50 ms} over THREAD_HINT_ROUNDS alternating rounds of the child timer,
    one process per timing; settings: (key, variant, threads, env)."""
    c = run.config
    best = {}
    for _ in range(THREAD_HINT_ROUNDS):
        for key, variant, threads, env in settings:
            timed = bench.benchmark_in_child(
                variant.graph_def, run.first_example, outputs=run.ends[1],
                runs=max(10, c.runs // 2), warmup=3, threads=threads, cpus=c.cpus,
                precision=variant.bench_precision, measure_overhead=False, allow_io_ops=True,
                env=env)
            best[key] = min(best.get(key, timed.p50_ms), timed.p50_ms)
    return best


def int8_caller_hint(run, bench, chosen, ranked, prog):
    """When the result is not int8 but an int8 variant passed: {"result": ms, "int8": ms,
    "rounds": R}, the result on all N threads against the int8 graph on N threads with
    the calling thread working (bench.CALLER_THREAD_ENV); or None.

    The timing rounds run in this process, where that setting cannot be switched per
    variant, so an int8 graph that only wins with it would be passed over silently
    (it happens: bench/results/2026-12-04-zen4-int8_bench-caller-thread.md). The report
    says so when it is clearly (10 %) faster; the result stays."""
    c = run.config
    cores = hint_cores(c)
    int8 = next((v for v in ranked if v.precision == "int8"), None)
    caller_key = bench.CALLER_THREAD_VAR
    if chosen is None or chosen.precision == "int8" or int8 is None or c.threads \
            or cores < 2 or bench.caller_thread_set():
        return None
    prog.item(f"{int8.name} on {cores} threads with the calling thread, against {chosen.name}")
    try:
        best = alternating_rounds(run, bench, [("result", chosen, cores, None),
                                         ("int8", int8, cores, bench.CALLER_THREAD_ENV)])
    except LeangraphError as exc:
        run.notes.append(f"timing {int8.name} with the calling thread failed: {exc}")
        return None
    if best["int8"] < 0.9 * best["result"]:
        run.notes.append(
            f"{int8.name} served with {caller_key}=1 runs faster than the result "
            f"{chosen.name} here ({best['int8']:.2f} vs {best['result']:.2f} ms on {cores} "
            f"threads, the better of {THREAD_HINT_ROUNDS} alternating rounds each, one process "
            f"per timing); the timing rounds above cannot set it per variant: "
            f"`--precision int8` makes {int8.name} the result, to be served with {caller_key}=1")
    return {**best, "rounds": THREAD_HINT_ROUNDS}


def stacked_steps(run, bench, chosen, prog):
    """Each step from the baseline's frozen graph to the result, timed in pairs."""
    c = run.config
    if c.baseline is None or chosen is None:
        return None
    prog.item("baseline: load and freeze")
    try:
        base = load_any_model(c.baseline, c.unsafe, prog, c.signature, c.input_shapes, None)
    except LeangraphError as exc:
        run.notes.append(f"the baseline {c.baseline} could not be loaded, so no step-by-step "
                         f"speed-ups: {exc}")
        return None
    require_safe(base.graph_def, c.allow_io_ops, what=f"the frozen graph of {base.label}")
    if (list(base.input_names), list(base.output_names)) != (list(run.ends[0]),
                                                             list(run.ends[1])):
        run.notes.append(
            f"the baseline's inputs/outputs ({', '.join(base.input_names)} -> "
            f"{', '.join(base.output_names)}) are not the model's, so no step-by-step speed-ups")
        return None
    by_name = {v.name: v for v in run.variants}
    chain = [("baseline", base.graph_def, "fp32"),
             ("frozen", by_name["frozen"].graph_def, "fp32")]
    fp32 = chosen if chosen.precision == "fp32" else by_name.get(chosen.base)
    if fp32 is not None and fp32.name != "frozen" and fp32.graph_def is not None:
        chain.append((fp32.name, fp32.graph_def, fp32.bench_precision))
    if chosen is not fp32:
        chain.append((chosen.name, chosen.graph_def, chosen.bench_precision))
    feeds = run.first_example

    def timed(a, b):
        prog.item(f"{b[0]} vs {a[0]}: pairs until the 95 % interval is within "
                  f"±{CONFIRM_TARGET_CI:.0%}")
        result = pairs(a[1], b[1], feeds, outputs=run.ends[1], precision=a[2],
                       precision_b=b[2], allow_io_ops=True, **run_bench_kwargs(c))
        return {"a": a[0], "b": b[0], "speedup": result.speedup,
                "speedup_ci95": list(result.speedup_ci95), "pairs": result.pairs,
                "target_met": result.target_met}

    try:
        steps = [timed(a, b) for a, b in zip(chain, chain[1:])]
        end = timed(chain[0], chain[-1]) if len(chain) > 2 else steps[0]
    except LeangraphError as exc:
        run.notes.append(f"the step-by-step timing failed: {exc}")
        return None
    names = {"frozen": "pruned (frozen vs the baseline's frozen graph)"}
    product = float(np.prod([s["speedup"] for s in steps]))
    text = "; ".join(f"{names.get(s['b'], s['b'])} {s['speedup']:.2f}× "
                     f"[{s['speedup_ci95'][0]:.2f}, {s['speedup_ci95'][1]:.2f}]" for s in steps)
    run.notes.append(
        f"step by step from the baseline {base.label}: {text}; product {product:.2f}×, "
        f"measured end to end {end['speedup']:.2f}× [{end['speedup_ci95'][0]:.2f}, "
        f"{end['speedup_ci95'][1]:.2f}] (each step timed in interleaved pairs in this run)")
    return {"baseline": base.label, "steps": steps, "product": product, "end_to_end": end}
