"""The timer's A/B statistics on synthetic streams: no timing, every number reproducible.

The C++ tests (native/bench/stats_test.cc) check the same functions from inside; these
check them through the Python binding against an independent numpy implementation, and
measure the interval's coverage on simulated machines whose truth is known.
"""

import math

import numpy as np
import pytest

import leangraph
from leangraph import bench

native = leangraph._tfcheck.load_native()


# ---- an independent implementation --------------------------------------------------------


def _walsh_averages(d):
    d = np.asarray(d, dtype=float)
    i, j = np.triu_indices(len(d))
    return np.sort((d[i] + d[j]) / 2)


def _signed_rank_critical(n, tail=0.025):
    """Largest c with P(T+ <= c) <= tail under the null, by the subset-sum recursion
    (exact), or by the normal approximation above n = 100; -1 when none exists."""
    total = n * (n + 1) // 2
    if n > 100:
        sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        return math.floor(total / 2 - 1.959963984540054 * sd - 0.5)
    counts = np.zeros(total + 1)
    counts[0] = 1
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    cdf = np.cumsum(counts) / 2.0**n
    below = np.nonzero(cdf <= tail)[0]
    return int(below[-1]) if len(below) else -1


def _reference(a, b):
    d = np.log(np.asarray(a) / np.asarray(b))
    w = _walsh_averages(d)
    c = _signed_rank_critical(len(d))
    lo, hi = (w[0], w[-1]) if c < 0 else (w[c], w[len(w) - 1 - c])
    return math.exp(np.median(w)), math.exp(lo), math.exp(hi)


@pytest.mark.parametrize("n", [3, 6, 10, 25, 60, 100, 101, 150])
def test_paired_ratio_matches_an_independent_implementation(n):
    rng = np.random.default_rng(n)
    b = 5 + rng.random(n)
    a = b * np.exp(rng.normal(0.05, 0.04, n) + (rng.random(n) < 0.1) * 0.5)  # a few hiccups
    got = bench.paired_ratio(a, b)
    speedup, lo, hi = _reference(a, b)
    assert got["pairs"] == n
    assert got["speedup"] == pytest.approx(speedup, rel=1e-12)
    assert got["ci"] == pytest.approx((lo, hi), rel=1e-12)
    assert got["exact"] is (n <= 100)
    assert got["ratio_of_medians"] == pytest.approx(np.median(a) / np.median(b))
    assert got["half_width"] == pytest.approx((hi - lo) / (2 * speedup))
    assert got["position_effect"] is None  # no order given


def test_exact_coverage_is_the_signed_rank_distribution():
    # n = 10: c = 8, P(T+ <= 8) = 25 / 1024.
    got = bench.paired_ratio(np.arange(1.0, 11.0), np.ones(10))
    assert got["coverage"] == pytest.approx(1 - 2 * 25 / 1024)


@pytest.mark.parametrize("kwargs, match", [
    ({"a_ms": [1.0, 2.0], "b_ms": [1.0]}, "same length"),
    ({"a_ms": [], "b_ms": []}, "non-empty"),
    ({"a_ms": [1.0, 0.0], "b_ms": [1.0, 1.0]}, "pair 1 has a time that is not > 0"),
    ({"a_ms": [1.0, 2.0], "b_ms": [1.0, 1.0], "a_first": [True]}, "a_first"),
])
def test_paired_ratio_refuses_bad_samples(kwargs, match):
    with pytest.raises(leangraph.BenchmarkError, match=match):
        bench.paired_ratio(**kwargs)


# ---- simulated machines -------------------------------------------------------------------


def _machine(rng, pairs, ratio, a_first, *, drift, swing, position, spikes, noise=0.03):
    """Times of a pair stream on a machine whose speed wanders (random walk `drift` per run
    plus a slow sine `swing`), whose first run of a pair is `position` times slower, and
    which hiccups (2x) with probability `spikes`; B is truly `ratio` times faster than A."""
    a, b = np.empty(pairs), np.empty(pairs)
    walk = 0.0
    for i in range(pairs):
        times = []
        for slot in range(2):
            walk += rng.normal(0, drift)
            t = 2 * i + slot
            ms = math.exp(walk + swing * math.sin(t / 6) + rng.normal(0, noise))
            ms *= position if slot == 0 else 1.0
            ms *= 2.0 if rng.random() < spikes else 1.0
            times.append(ms)
        first, second = times
        a_ms, b_ms = (first, second) if a_first[i] else (second, first)
        a[i], b[i] = 10 * ratio * a_ms, 10 * b_ms
    return a, b


def _coverage(trials, pairs, ratio, randomize=True, **machine):
    covered, widths, positions = 0, [], []
    for t in range(trials):
        rng = np.random.default_rng(10_000 + t)
        order = native.pair_order(pairs, t) if randomize else [True] * pairs
        a, b = _machine(rng, pairs, ratio, order, **machine)
        r = bench.paired_ratio(a, b, order)
        lo, hi = r["ci"]
        covered += lo <= ratio <= hi
        widths.append(r["half_width"])
        positions.append(r["position_effect"])
    return covered / trials, float(np.median(widths)), positions


def test_coverage_is_close_to_95_percent_on_a_quiet_machine():
    coverage, width, _ = _coverage(400, 60, 1.0, drift=0.0, swing=0.0, position=1.0, spikes=0.0)
    # Neither too low (the interval is honest) nor much higher (it is not merely wide).
    assert 0.92 <= coverage <= 0.98, coverage
    assert width < 0.02


@pytest.mark.parametrize("ratio", [1.0, 1.1])
def test_coverage_holds_on_a_drifting_biased_machine(ratio):
    coverage, width, positions = _coverage(400, 60, ratio, drift=0.01, swing=0.2,
                                           position=1.06, spikes=1 / 30)
    assert coverage >= 0.93, coverage
    assert width < 0.04
    # The 6 % first-run penalty shows itself.
    assert np.median(positions) == pytest.approx(1.06, abs=0.01)


def test_a_fixed_order_on_a_biased_machine_misses_the_truth():
    coverage, _, positions = _coverage(200, 60, 1.0, randomize=False, drift=0.01, swing=0.2,
                                       position=1.06, spikes=1 / 30)
    assert coverage < 0.1, coverage
    assert positions[0] is None  # with one order only, the effect cannot be told apart


# ---- order and stopping -------------------------------------------------------------------


def test_pair_order_is_reproducible_and_balanced_per_block():
    order = native.pair_order(200, 11)
    assert order == native.pair_order(200, 11)
    assert order != native.pair_order(200, 12)
    assert all(order[i] != order[i + 1] for i in range(0, 200, 2))  # AB BA or BA AB
    assert 30 <= sum(order[::2]) <= 70  # 100 blocks, each AB BA or BA AB


def _stop(log_ratios, elapsed, **rule):
    rule = {"runs": 100, "max_time": 0.0, "target_ci": 0.0, "min_pairs": 10, "check_every": 10,
            **rule}
    return native.stop_decision(list(log_ratios), elapsed, **rule)


def test_target_rule_stops_once_narrow_enough():
    rng = np.random.default_rng(2)
    stream = list(0.05 + rng.normal(0, 0.02, 200))
    for n in range(1, 200):
        reason, width = _stop(stream[:n], 0.0, target_ci=0.01, max_time=60, min_pairs=20)
        if reason != "continue":
            break
    assert reason == "target"
    assert width is not None and width <= 0.01
    # It stopped at a check point (20, 30, ...), the first whose interval was narrow enough.
    assert n >= 20 and (n - 20) % 10 == 0
    assert _stop(stream[:n - 10], 0.0, target_ci=0.01, max_time=60, min_pairs=20)[0] == "continue"


def test_target_rule_gives_up_at_max_time():
    rng = np.random.default_rng(3)
    noisy = list(rng.normal(0, 0.5, 50))
    assert _stop(noisy, 9.9, target_ci=0.01, max_time=10)[0] == "continue"
    reason, width = _stop(noisy, 10.0, target_ci=0.01, max_time=10)
    assert reason == "max_time" and width > 0.01
    assert _stop(noisy[:47], 1.0, target_ci=0.01, max_time=10) == ("continue", None)


def test_fixed_rule_counts_runs_or_time():
    assert _stop([0.0] * 99, 0.0)[0] == "continue"
    assert _stop([0.0] * 100, 0.0)[0] == "runs"
    assert _stop([0.0] * 5, 2.0, runs=0, max_time=1.0)[0] == "max_time"
