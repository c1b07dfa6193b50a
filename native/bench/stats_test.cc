#include "native/bench/stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <utility>
#include <vector>

#include "native/test_main.h"

namespace {

bool Near(double a, double b, double tol = 1e-9) { return std::fabs(a - b) <= tol; }

}  // namespace

LG_TEST(PercentilesInterpolateLikeNumpy) {
  // numpy.percentile(range(1, 11), [0, 10, 50, 90, 99, 100])
  const std::vector<double> x = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  LG_EXPECT(Near(leangraph::Percentile(x, 0), 1.0));
  LG_EXPECT(Near(leangraph::Percentile(x, 10), 1.9));
  LG_EXPECT(Near(leangraph::Percentile(x, 50), 5.5));
  LG_EXPECT(Near(leangraph::Percentile(x, 90), 9.1));
  LG_EXPECT(Near(leangraph::Percentile(x, 99), 9.91));
  LG_EXPECT(Near(leangraph::Percentile(x, 100), 10.0));
  LG_EXPECT(Near(leangraph::Percentile({7.0}, 37), 7.0));
}

LG_TEST(MedianIntervalIsTheBinomialOrderStatistic) {
  // n = 100: the classic table gives the 40th and 61st values (1-based).
  const leangraph::MedianInterval ci100 = leangraph::MedianCi95(100);
  LG_EXPECT(ci100.lo == 39);
  LG_EXPECT(ci100.hi == 60);
  LG_EXPECT(Near(ci100.coverage, 0.9648, 1e-4));
  // n = 10: P(B <= 1) = 11/1024, P(B <= 2) = 56/1024 > 0.025.
  const leangraph::MedianInterval ci10 = leangraph::MedianCi95(10);
  LG_EXPECT(ci10.lo == 1);
  LG_EXPECT(ci10.hi == 8);
  LG_EXPECT(Near(ci10.coverage, 1.0 - 22.0 / 1024.0));
  // n = 6 is the smallest sample whose [min, max] reaches 95 %.
  const leangraph::MedianInterval ci6 = leangraph::MedianCi95(6);
  LG_EXPECT(ci6.lo == 0 && ci6.hi == 5);
  LG_EXPECT(Near(ci6.coverage, 1.0 - 2.0 / 64.0));
  const leangraph::MedianInterval ci5 = leangraph::MedianCi95(5);
  LG_EXPECT(ci5.lo == 0 && ci5.hi == 4);
  LG_EXPECT(Near(ci5.coverage, 1.0 - 2.0 / 32.0));
  // Large n stays finite and symmetric around the middle.
  const leangraph::MedianInterval big = leangraph::MedianCi95(100000);
  LG_EXPECT(big.lo + big.hi == 99999);
  LG_EXPECT(big.lo > 49600 && big.lo < 49700);
}

LG_TEST(StatsOfAFixedSample) {
  const leangraph::Stats s = leangraph::ComputeStats({3, 1, 2, 4}, 2);
  LG_EXPECT(s.count == 4);
  LG_EXPECT(Near(s.min, 1) && Near(s.max, 4));
  LG_EXPECT(Near(s.p50, 2.5));
  LG_EXPECT(Near(s.mean, 2.5));
  LG_EXPECT(Near(s.stddev, std::sqrt(5.0 / 3.0)));
  LG_EXPECT(Near(s.throughput, 2 * 1000.0 / 2.5));
  LG_EXPECT(Near(s.median_ci_lo, 1) && Near(s.median_ci_hi, 4));

  std::vector<double> hundred;
  for (int i = 100; i >= 1; --i) hundred.push_back(i);  // unsorted on purpose
  const leangraph::Stats h = leangraph::ComputeStats(hundred, 1);
  LG_EXPECT(Near(h.median_ci_lo, 40) && Near(h.median_ci_hi, 61));
  LG_EXPECT(Near(h.p99, 99.01));
  LG_EXPECT(Near(h.p10, 10.9));

  const leangraph::Stats empty = leangraph::ComputeStats({}, 1);
  LG_EXPECT(empty.count == 0 && empty.throughput == 0);
  const leangraph::Stats one = leangraph::ComputeStats({5}, 1);
  LG_EXPECT(one.stddev == 0 && Near(one.p50, 5));
}

LG_TEST(RatioIntervalIsSeededAndBracketsTheRatio) {
  std::vector<double> a, b;
  for (int i = 0; i < 50; ++i) {
    b.push_back(1.0 + 0.01 * (i % 7));
    a.push_back(2.0 * b.back());
  }
  const leangraph::RatioInterval exact = leangraph::MedianRatioCi95(a, b, 0);
  LG_EXPECT(Near(exact.lo, 2.0) && Near(exact.hi, 2.0));

  for (int i = 0; i < 50; ++i) a[i] = 2.0 + 0.05 * ((i * 13) % 11);
  const leangraph::RatioInterval r1 = leangraph::MedianRatioCi95(a, b, 7);
  const leangraph::RatioInterval r2 = leangraph::MedianRatioCi95(a, b, 7);
  LG_EXPECT(r1.lo == r2.lo && r1.hi == r2.hi);
  std::vector<double> sa = a, sb = b;
  const double point = leangraph::ComputeStats(a, 1).p50 / leangraph::ComputeStats(b, 1).p50;
  LG_EXPECT(r1.lo <= point && point <= r1.hi);
  LG_EXPECT(r1.lo < r1.hi);
}

// ---- A/B comparisons ------------------------------------------------------

namespace {

double BruteKthWalsh(std::vector<double> x, size_t k) {
  std::vector<double> sums;
  for (size_t i = 0; i < x.size(); ++i) {
    for (size_t j = i; j < x.size(); ++j) sums.push_back(0.5 * (x[i] + x[j]));
  }
  std::sort(sums.begin(), sums.end());
  return sums[k - 1];
}

// A drifting, biased machine: its speed wanders (a random walk plus a slow
// swing), one run in 30 is a 2x hiccup, the first run of every pair is 6 %
// slower, and each run has 3 % log-normal noise. B is truly `ratio` times
// faster than A. Returns the pairs as the timer would record them.
struct Stream {
  std::vector<double> a, b;
  std::vector<bool> a_first;
};
Stream DriftingStream(uint64_t seed, size_t pairs, double ratio, bool randomize_order) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0.0, 0.03), step(0.0, 0.02);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  Stream s;
  double walk = 0.0;
  const auto run = [&](double base, size_t t, bool first) {
    walk += 0.5 * step(rng);
    double ms = base * std::exp(walk + 0.2 * std::sin(static_cast<double>(t) / 6.0) + noise(rng));
    if (first) ms *= 1.06;
    if (unit(rng) < 1.0 / 30.0) ms *= 2.0;
    return ms;
  };
  for (size_t i = 0; i < pairs; ++i) {
    const bool a_first = randomize_order ? leangraph::AFirstInPair(seed, i) : true;
    const double a_base = 10.0 * ratio, b_base = 10.0;
    double a = 0, b = 0;
    if (a_first) {
      a = run(a_base, 2 * i, true);
      b = run(b_base, 2 * i + 1, false);
    } else {
      b = run(b_base, 2 * i, true);
      a = run(a_base, 2 * i + 1, false);
    }
    s.a.push_back(a);
    s.b.push_back(b);
    s.a_first.push_back(a_first);
  }
  return s;
}

struct Coverage {
  int covered = 0, trials = 0;
  double median_half_width = 0;
};
Coverage CoverageOver(int trials, size_t pairs, double ratio, bool randomize_order) {
  Coverage c;
  std::vector<double> widths;
  for (int t = 0; t < trials; ++t) {
    const Stream s = DriftingStream(1000 + t, pairs, ratio, randomize_order);
    const leangraph::PairedRatio r = leangraph::ComparePairs(s.a, s.b, s.a_first);
    if (r.lo <= ratio && ratio <= r.hi) ++c.covered;
    widths.push_back(r.half_width);
    ++c.trials;
  }
  std::sort(widths.begin(), widths.end());
  c.median_half_width = widths[widths.size() / 2];
  return c;
}

}  // namespace

LG_TEST(KthWalshAverageMatchesBruteForce) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (size_t n : {1, 2, 3, 7, 20, 41}) {
    std::vector<double> x;
    for (size_t i = 0; i < n; ++i) x.push_back(normal(rng));
    if (n > 3) x[1] = x[2] = x[3];  // ties
    std::vector<double> sorted = x;
    std::sort(sorted.begin(), sorted.end());
    const size_t total = n * (n + 1) / 2;
    for (size_t k = 1; k <= total; ++k) {
      LG_EXPECT(leangraph::KthWalshAverage(sorted, k) == BruteKthWalsh(x, k));
    }
  }
}

LG_TEST(SignedRankIntervalUsesTheTabulatedCriticalValues) {
  // Two-sided 5 % critical values of T+: n = 10 -> 8, n = 20 -> 52.
  for (const auto& [n, critical] : {std::pair<size_t, uint64_t>{10, 8}, {20, 52}}) {
    std::vector<double> x;
    for (size_t i = 0; i < n; ++i) x.push_back(std::sin(static_cast<double>(i * i) + 0.3));
    const leangraph::CentreInterval ci = leangraph::SignedRankInterval(x);
    std::vector<double> sorted = x;
    std::sort(sorted.begin(), sorted.end());
    const uint64_t total = n * (n + 1) / 2;
    LG_EXPECT(ci.exact && ci.count == n);
    LG_EXPECT(ci.lo == leangraph::KthWalshAverage(sorted, critical + 1));
    LG_EXPECT(ci.hi == leangraph::KthWalshAverage(sorted, total - critical));
    LG_EXPECT(ci.coverage >= 0.95 && ci.coverage < 0.96);
    LG_EXPECT(ci.lo <= ci.estimate && ci.estimate <= ci.hi);
  }
  // The exact (n = 100) and normal (n = 101) regimes agree where they meet.
  std::vector<double> x100, x101;
  for (int i = 0; i < 101; ++i) {
    const double v = std::cos(1.7 * i);
    if (i < 100) x100.push_back(v);
    x101.push_back(v);
  }
  const leangraph::CentreInterval e = leangraph::SignedRankInterval(x100);
  const leangraph::CentreInterval z = leangraph::SignedRankInterval(x101);
  LG_EXPECT(e.exact && !z.exact);
  LG_EXPECT(Near(e.coverage, 0.95, 0.002) && Near(z.coverage, 0.95, 0.002));
  LG_EXPECT(Near(e.hi - e.lo, z.hi - z.lo, 0.15 * (e.hi - e.lo)));
  // Below n = 6 no critical value exists: [min, max].
  const leangraph::CentreInterval tiny = leangraph::SignedRankInterval({3, 1, 2});
  LG_EXPECT(tiny.lo == 1 && tiny.hi == 3 && Near(tiny.coverage, 0.75));
  LG_EXPECT(leangraph::SignedRankInterval({}).count == 0);
}

LG_TEST(PairOrderIsBalancedSeededAndRandom) {
  int starts_with_a = 0;
  for (uint64_t block = 0; block < 200; ++block) {
    const bool first = leangraph::AFirstInPair(42, 2 * block);
    LG_EXPECT(leangraph::AFirstInPair(42, 2 * block + 1) == !first);  // AB BA / BA AB
    starts_with_a += first ? 1 : 0;
  }
  LG_EXPECT(starts_with_a > 70 && starts_with_a < 130);
  int differ = 0;
  for (uint64_t i = 0; i < 200; ++i) {
    LG_EXPECT(leangraph::AFirstInPair(7, i) == leangraph::AFirstInPair(7, i));
    differ += leangraph::AFirstInPair(7, i) != leangraph::AFirstInPair(8, i) ? 1 : 0;
  }
  LG_EXPECT(differ > 60);
}

LG_TEST(PositionEffectIsSeparatedFromTheRatio) {
  // B 1.2x faster; the first run of a pair is always 1.1x slower.
  std::vector<double> a, b;
  std::vector<bool> a_first;
  for (uint64_t i = 0; i < 40; ++i) {
    const bool af = leangraph::AFirstInPair(1, i);
    const double machine = 1.0 + 0.3 * std::sin(0.4 * i);  // drift shared by the pair
    a.push_back(12.0 * machine * (af ? 1.1 : 1.0));
    b.push_back(10.0 * machine * (af ? 1.0 : 1.1));
    a_first.push_back(af);
  }
  const leangraph::PairedRatio r = leangraph::ComparePairs(a, b, a_first);
  LG_EXPECT(r.pairs == 40);
  LG_EXPECT(Near(r.speedup, 1.2, 1e-12));
  LG_EXPECT(r.has_position_effect && Near(r.position_effect, 1.1, 1e-12));
  LG_EXPECT(r.lo <= 1.2 && 1.2 <= r.hi);
  const leangraph::PairedRatio none = leangraph::ComparePairs(a, b, {});
  LG_EXPECT(!none.has_position_effect && none.position_effect == 1.0);
}

LG_TEST(IntervalCoversTheTruthOnADriftingBiasedMachine) {
  // 400 seeded streams of 60 pairs each: the stated 95 % must hold for a
  // self-compare and for a real 10 % difference.
  for (const double ratio : {1.0, 1.1}) {
    const Coverage c = CoverageOver(400, 60, ratio, /*randomize_order=*/true);
    std::printf("  ratio %.2f: %d/%d covered, median half-width %.4f\n", ratio, c.covered,
                c.trials, c.median_half_width);
    LG_EXPECT(c.covered >= 372);  // >= 93 %
    LG_EXPECT(c.median_half_width < 0.04);
  }
  // The same machine with A always first: the 6 % position effect becomes a
  // 6 % error and the interval misses the truth, which is why the order is
  // randomized.
  const Coverage fixed = CoverageOver(400, 60, 1.0, /*randomize_order=*/false);
  std::printf("  fixed order: %d/%d covered\n", fixed.covered, fixed.trials);
  LG_EXPECT(fixed.covered < 100);
}

LG_TEST(StopRuleStopsAtTheTargetOrTheClock) {
  leangraph::StopRule rule;
  rule.target_half_width = 0.03;
  rule.min_pairs = 20;
  rule.check_every = 10;
  rule.max_time_s = 5;
  std::vector<double> quiet, noisy;
  std::mt19937_64 rng(9);
  std::normal_distribution<double> small(0.0, 0.01), large(0.0, 0.5);
  leangraph::StopReason quiet_stop = leangraph::StopReason::kContinue;
  double width = -1;
  while (quiet_stop == leangraph::StopReason::kContinue) {
    quiet.push_back(0.1 + small(rng));
    quiet_stop = leangraph::DecideStop(rule, quiet, 0.0, &width);
  }
  LG_EXPECT(quiet_stop == leangraph::StopReason::kTarget);
  LG_EXPECT(quiet.size() == 20);  // the first check point
  LG_EXPECT(width > 0 && width <= 0.03);

  // Too noisy to reach 3 %: checked at 20, 30, 40 ... until the clock runs out.
  for (int i = 0; i < 45; ++i) noisy.push_back(large(rng));
  double noisy_width = -1;
  LG_EXPECT(leangraph::DecideStop(rule, noisy, 4.9, &noisy_width) ==
            leangraph::StopReason::kContinue);
  LG_EXPECT(noisy_width == -1);  // 45 is no check point
  noisy.resize(40);
  LG_EXPECT(leangraph::DecideStop(rule, noisy, 4.9, &noisy_width) ==
            leangraph::StopReason::kContinue);
  LG_EXPECT(noisy_width > 0.03);
  LG_EXPECT(leangraph::DecideStop(rule, noisy, 5.0) == leangraph::StopReason::kMaxTime);
  // Check points grow to a tenth of the sample.
  std::vector<double> many(2000, 0.0);
  double many_width = -1;
  leangraph::DecideStop(rule, many, 0.0, &many_width);
  LG_EXPECT(many_width == -1 || many_width == 0);

  leangraph::StopRule fixed;
  fixed.runs = 3;
  LG_EXPECT(leangraph::DecideStop(fixed, {0, 0}, 0) == leangraph::StopReason::kContinue);
  LG_EXPECT(leangraph::DecideStop(fixed, {0, 0, 0}, 0) == leangraph::StopReason::kRuns);
  fixed.runs = 0;
  fixed.max_time_s = 1;
  LG_EXPECT(leangraph::DecideStop(fixed, {0, 0, 0}, 1.5) == leangraph::StopReason::kMaxTime);
}

LG_TEST(AutoBurstLastsAboutFiveMilliseconds) {
  LG_EXPECT(leangraph::AutoBurst(0.5) == 10);
  LG_EXPECT(leangraph::AutoBurst(0.4) == 13);  // rounded up: at least 5 ms
  LG_EXPECT(leangraph::AutoBurst(4.99) == 2);
  LG_EXPECT(leangraph::AutoBurst(5.0) == 1);
  LG_EXPECT(leangraph::AutoBurst(80.0) == 1);
  LG_EXPECT(leangraph::AutoBurst(0.001) == leangraph::kMaxAutoBurst);
  LG_EXPECT(leangraph::AutoBurst(0.0) == 1);
  LG_EXPECT(leangraph::AutoBurst(-1.0) == 1);
  LG_EXPECT(leangraph::AutoBurst(std::nan("")) == 1);
}

LG_TEST(StudentTQuantilesMatchTheTables) {
  // Two-sided 95 % and 99 % points of the usual t table.
  LG_EXPECT(Near(leangraph::StudentTQuantile(0.95, 1), 12.706, 1e-3));
  LG_EXPECT(Near(leangraph::StudentTQuantile(0.95, 2), 4.303, 1e-3));
  LG_EXPECT(Near(leangraph::StudentTQuantile(0.95, 3), 3.182, 1e-3));
  LG_EXPECT(Near(leangraph::StudentTQuantile(0.95, 5), 2.571, 1e-3));
  LG_EXPECT(Near(leangraph::StudentTQuantile(0.95, 30), 2.042, 1e-3));
  LG_EXPECT(Near(leangraph::StudentTQuantile(0.99, 4), 4.604, 1e-3));
  LG_EXPECT(Near(leangraph::StudentTQuantile(0.95, 2000), 1.961, 1e-3));
}

LG_TEST(SessionPairsKeepEachOrderBlockTogether) {
  for (uint64_t pair = 0; pair < 40; ++pair) {
    LG_EXPECT(leangraph::SessionOfPair(pair, 1) == 0);
    const int s = leangraph::SessionOfPair(pair, 3);
    LG_EXPECT(s == static_cast<int>((pair / 2) % 3));
    // An AB BA block is the pairs 2k and 2k + 1: one session pair.
    LG_EXPECT(s == leangraph::SessionOfPair(pair ^ 1u, 3));
  }
}

namespace {

// log-ratios of `sessions` session pairs with `per_session` pairs each: session
// pair s adds an offset drawn once (sd `between`), every pair its own noise
// (sd `within`, with one pair in 30 off by a hiccup of +-log 2). Truth: 0.
std::vector<double> SessionStream(uint64_t seed, int sessions, int per_session, double between,
                                  double within) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> unit(0.0, 1.0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> offsets;
  for (int s = 0; s < sessions; ++s) offsets.push_back(between * unit(rng));
  std::vector<double> d;
  for (int i = 0; i < sessions * per_session; ++i) {
    double x = offsets[leangraph::SessionOfPair(i, sessions)] + within * unit(rng);
    if (u(rng) < 1.0 / 30.0) x += (u(rng) < 0.5 ? -1 : 1) * std::log(2.0);
    d.push_back(x);
  }
  return d;
}

struct SessionCoverage {
  int plain = 0, aware = 0, trials = 0;
  double plain_width = 0, aware_width = 0;  // medians, log scale
};
SessionCoverage SessionCoverageOver(int trials, int sessions, double between) {
  SessionCoverage c;
  std::vector<double> plain_widths, aware_widths;
  for (int t = 0; t < trials; ++t) {
    const std::vector<double> d = SessionStream(500 + t, sessions, 10, between, 0.02);
    std::vector<int> session;
    for (size_t i = 0; i < d.size(); ++i) session.push_back(leangraph::SessionOfPair(i, sessions));
    const leangraph::CentreInterval plain = leangraph::SignedRankInterval(d);
    const leangraph::CentreInterval aware = leangraph::SessionAwareInterval(d, session);
    c.plain += plain.lo <= 0 && 0 <= plain.hi;
    c.aware += aware.lo <= 0 && 0 <= aware.hi;
    plain_widths.push_back(0.5 * (plain.hi - plain.lo));
    aware_widths.push_back(0.5 * (aware.hi - aware.lo));
    ++c.trials;
  }
  std::sort(plain_widths.begin(), plain_widths.end());
  std::sort(aware_widths.begin(), aware_widths.end());
  c.plain_width = plain_widths[plain_widths.size() / 2];
  c.aware_width = aware_widths[aware_widths.size() / 2];
  return c;
}

}  // namespace

LG_TEST(SessionAwareIntervalCoversSessionOffsets) {
  // Six session pairs of ten pairs, each session pair off by its own 1.5 %
  // (sd) for the whole compare, 2 % noise per pair: the signed-rank interval
  // over all 60 pairs misses the truth far too often; widened by the session
  // pairs' disagreement, it holds its 95 %.
  const SessionCoverage offsets = SessionCoverageOver(400, 6, 0.015);
  std::printf("  session offsets: plain %d/%d, session-aware %d/%d (half-widths %.4f, %.4f)\n",
              offsets.plain, offsets.trials, offsets.aware, offsets.trials, offsets.plain_width,
              offsets.aware_width);
  LG_EXPECT(offsets.plain < 300);   // < 75 %
  LG_EXPECT(offsets.aware >= 368);  // >= 92 %
  // Without session offsets the widening costs little and coverage stays.
  const SessionCoverage none = SessionCoverageOver(400, 6, 0.0);
  std::printf("  no offsets: plain %d/%d, session-aware %d/%d (half-widths %.4f, %.4f)\n",
              none.plain, none.trials, none.aware, none.trials, none.plain_width,
              none.aware_width);
  LG_EXPECT(none.plain >= 372 && none.aware >= 372);
  LG_EXPECT(none.aware_width <= 1.5 * none.plain_width);
}

LG_TEST(SessionAwareIntervalFallsBackToSignedRank) {
  const std::vector<double> d = SessionStream(7, 1, 30, 0.0, 0.02);
  const leangraph::CentreInterval plain = leangraph::SignedRankInterval(d);
  // One session pair, or session pairs of one pair each: nothing to compare.
  for (const std::vector<int>& session :
       {std::vector<int>(d.size(), 0), [&] {
          std::vector<int> s(d.size());
          for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<int>(i);
          return s;
        }()}) {
    leangraph::SessionSpread spread;
    const leangraph::CentreInterval ci = leangraph::SessionAwareInterval(d, session, 0.95, &spread);
    LG_EXPECT(ci.lo == plain.lo && ci.hi == plain.hi && ci.estimate == plain.estimate);
    LG_EXPECT(spread.sessions == 1 && !spread.widened && spread.sd == 0);
  }
  // ComparePairs with sessions: the estimate is still the HL over all pairs
  // and the interval at least as wide as the signed-rank one.
  std::vector<double> a, b;
  const std::vector<double> e = SessionStream(8, 4, 10, 0.03, 0.01);
  for (const double x : e) {
    a.push_back(10.0 * std::exp(x));
    b.push_back(10.0);
  }
  const leangraph::PairedRatio one = leangraph::ComparePairs(a, b, {}, 0.95, 1);
  const leangraph::PairedRatio four = leangraph::ComparePairs(a, b, {}, 0.95, 4);
  LG_EXPECT(Near(one.speedup, four.speedup, 1e-12));
  LG_EXPECT(four.lo <= one.lo && four.hi >= one.hi);
  LG_EXPECT(four.sessions.sessions == 4 && one.sessions.sessions == 1);
  LG_EXPECT(four.sessions.widened && four.sessions.sd > 0.01);
}

LG_TEST(StopRuleUsesTheSessionAwareInterval) {
  // Pairs that agree within each session pair but not between them: one
  // session's view says the interval is narrow, the session-aware one not.
  std::vector<double> d = SessionStream(11, 4, 10, 0.05, 0.002);
  leangraph::StopRule rule;
  rule.target_half_width = 0.03;
  rule.min_pairs = 40;
  double width_one = -1, width_four = -1;
  LG_EXPECT(leangraph::DecideStop(rule, d, 0.0, &width_one) == leangraph::StopReason::kTarget);
  rule.sessions = 4;
  LG_EXPECT(leangraph::DecideStop(rule, d, 0.0, &width_four) ==
            leangraph::StopReason::kContinue);
  LG_EXPECT(width_four > 0.03 && width_one <= 0.03);
}
