"""Confirming a winner: its speed-up over the baseline re-timed in interleaved pairs
(leangraph.bench.compare) until the 95 % interval is CONFIRM_TARGET_CI wide, or
CONFIRM_MAX_TIME passes. optimize and tune confirm through here.
"""

from leangraph import bench
from leangraph.errors import LeangraphError
from leangraph.pipeline.precisions import lossy


#: The winner's speed-up over the baseline is re-measured in interleaved pairs until
#: its 95 % interval is this narrow (relative), or CONFIRM_MAX_TIME passes.
CONFIRM_TARGET_CI = 0.03
CONFIRM_MAX_TIME = 30.0


def pairs(a, b, feeds, **options):
    """`b` against `a` in interleaved pairs (leangraph.bench.compare, 20 pairs at least)
    until the speed-up's 95 % interval is within CONFIRM_TARGET_CI, or CONFIRM_MAX_TIME
    passes: the one way optimize and tune confirm a speed-up. options: compare's others
    (outputs, threads, cpus, precisions)."""
    return bench.compare(a, b, feeds, runs=20, warmup=3, target_ci=CONFIRM_TARGET_CI,
                         max_time=CONFIRM_MAX_TIME, **options)


def not_worth_it(precision, speedup_ci95):
    """Why a confirmed winner is not the result, or None when it is: the pairs found it
    slower (its interval all below 1), or it changes the numbers (bf16, int8) and is not
    measurably faster (its interval reaches 1): speed is what such a precision trades
    accuracy for, so at a tie the exact fp32 graph is the better answer."""
    lo, hi = speedup_ci95
    if hi < 1.0:
        return "slower"
    if lossy(precision) and lo <= 1.0:
        return f"not measurably faster, and {precision} changes the numbers"
    return None


def confirm(baseline_graph, best_graph, best, feeds, say):
    """The trials rank on p50s of separate runs; the claimed speed-up is measured side by side."""
    try:
        c = pairs(baseline_graph, best_graph, feeds, threads=best.threads)
    except LeangraphError as exc:
        say(f"the confirming comparison failed: {exc}")
        return None
    lo, hi = c.speedup_ci95
    say(f"{best.label()} vs the baseline, re-timed in {c.pairs} interleaved pairs: "
        f"{c.speedup:.2f}x faster [95 % CI {lo:.2f}, {hi:.2f}]"
        + ("" if c.target_met else " (interval target not met: a noisy machine)"))
    return {"speedup": c.speedup, "speedup_ci95": [lo, hi], "pairs": c.pairs,
            "target_met": c.target_met, "threads": best.threads}


def overrule(result, feasible, variants, say, why="slower"):
    """The pairs found the winner not worth it against the baseline's graph on the winner's
    threads (not_worth_it: slower, or lossy and no faster): its lead in the trials was the
    thread count (or noise), so that graph on those threads is the result, where it was
    timed."""
    best, confirmed = result.best, result.confirmed
    lo, hi = confirmed["speedup_ci95"]
    same = next((t for t in feasible
                 if t.key == result.baseline.key[:3] + (best.threads,)), None)
    said = (f"in interleaved pairs on {best.threads} thread(s), {best.label()} runs at "
            f"{confirmed['speedup']:.2f}x the baseline graph's speed [95 % CI {lo:.2f}, "
            f"{hi:.2f}]: {why}")
    lead = ("the thread count" if best.threads != result.baseline.threads
            else "the noise of separate timings")
    if same is None or same is best:
        say(f"{said}; its lead in the trials was {lead}, and the baseline graph was not timed "
            f"on {best.threads} thread(s)")
        return
    say(f"{said}, so its lead in the trials was {lead}: {same.label()} is the result")
    result.best = same
    result.best_graph, result.best_session_config = variants[same.key[:3]][:2]
    confirmed["overruled"] = best.label()
