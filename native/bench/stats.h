// Latency statistics shared by the C++ timer and leangraph.benchmark_keras, so
// every number leangraph reports is computed one way.
#ifndef LEANGRAPH_NATIVE_BENCH_STATS_H_
#define LEANGRAPH_NATIVE_BENCH_STATS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace leangraph {

// Percentile p in [0, 100] of an ascending sample, interpolating linearly
// between the two nearest order statistics (numpy's default "linear" method).
double Percentile(const std::vector<double>& sorted, double p);

// A distribution-free 95 % confidence interval for the median: the order
// statistics x[lo] and x[hi] (0-based, of the sorted sample) with
// lo = r - 1, hi = n - r for the largest r such that
// 2 * P(Binomial(n, 1/2) <= r - 1) <= 0.05. `coverage` is the exact
// probability 1 - 2 * P(B <= r - 1); below n = 6 no such r exists and the
// interval is [min, max] with coverage below 95 %.
struct MedianInterval {
  size_t lo = 0;
  size_t hi = 0;
  double coverage = 0.0;
};
MedianInterval MedianCi95(size_t n);

struct Stats {
  size_t count = 0;
  double min = 0, p10 = 0, p50 = 0, p90 = 0, p99 = 0, max = 0;
  double mean = 0;
  double stddev = 0;  // sample standard deviation (n - 1); 0 for one sample
  double median_ci_lo = 0, median_ci_hi = 0;
  double median_ci_coverage = 0;
  // Examples per second at the median latency: batch * 1000 / p50 (ms).
  double throughput = 0;
};

// Statistics of latencies in milliseconds; an empty sample gives count 0 and
// zeros elsewhere.
Stats ComputeStats(const std::vector<double>& samples_ms, int64_t batch);

// 95 % interval of median(a) / median(b) by a paired bootstrap (kept for
// timer_calibration, which shows why compare no longer uses it): the pairs
// (a[i], b[i]) were measured back to back, so resampling them together keeps
// the drift they share out of the interval. `resamples` draws with a
// std::mt19937_64 seeded with `seed`; the 2.5th and 97.5th percentiles of the
// resampled ratios are returned. a and b must have the same non-zero size.
struct RatioInterval {
  double lo = 0;
  double hi = 0;
};
RatioInterval MedianRatioCi95(const std::vector<double>& a,
                              const std::vector<double>& b, uint64_t seed,
                              int resamples = 2000);

// ---- A/B comparisons -------------------------------------------------------
//
// Why per-pair log-ratios with a Wilcoxon signed-rank interval (and not the
// paired bootstrap above, which compare used before): A and B are timed back
// to back, so whatever slows the machine for longer than one pair (another
// process, frequency changes, thermal phases) multiplies both runs of the pair
// and cancels in d_i = log(a_i / b_i); the ratio of medians keeps that drift,
// and resampling pairs as if they were exchangeable treats it as noise it is
// not. Within a pair the order is randomized (below), so a position effect p
// (the first run of a pair being slower) enters d_i as +p or -p with equal
// probability: d_i is then symmetric about the true log-ratio even on a biased
// machine, which is exactly the assumption of the signed-rank interval. That
// interval needs no resampling (so no seed and no resample count), is exact for
// small samples, and its centre, the Hodges-Lehmann estimate (the median of
// the Walsh averages (d_i + d_j) / 2), is as efficient as the mean for normal
// noise yet ignores the one-off slow runs that timing always has. A moving
// block bootstrap would also handle drift, but its block length is a tuning
// knob and its coverage is only asymptotic.

// The k-th smallest (1-based) of the n(n+1)/2 Walsh averages (d_i + d_j) / 2,
// i <= j, of an ascending sample, in O(n log range) time and O(1) extra space
// (no list of averages is built, so a time-limited run of a fast graph with a
// million pairs costs milliseconds).
double KthWalshAverage(const std::vector<double>& sorted, uint64_t k);

// Hodges-Lehmann estimate and Wilcoxon signed-rank confidence interval of the
// centre of symmetry of d. The interval is [W_(c+1), W_(N-c)] over the N Walsh
// averages, c the largest value with P(T+ <= c) <= (1 - confidence) / 2 under
// the signed-rank null; P is exact (subset-sum counts) up to n = 100 and a
// normal approximation above. `coverage` is the achieved 1 - 2 P(T+ <= c); with
// n <= 5 no c exists and the interval is [min, max]. Empty d: count 0, zeros.
struct CentreInterval {
  size_t count = 0;
  double estimate = 0, lo = 0, hi = 0;
  double coverage = 0;
  bool exact = false;
};
CentreInterval SignedRankInterval(const std::vector<double>& d, double confidence = 0.95);

// The order of pair i (0-based) of an A/B comparison: true when A runs first.
// Pairs come in blocks of two, AB BA or BA AB, the block's coin drawn from
// splitmix64(seed, block): each block is balanced (a linear drift cancels in
// it) and the order is random (no periodic machine effect lines up with A).
// A pure function of (seed, i), so a report's order can be recomputed.
bool AFirstInPair(uint64_t seed, uint64_t pair);

// ---- Several sessions per graph ---------------------------------------------
//
// Why: where ops run on TF's inter-op pool, each session's executor decides
// which ops go to a pool thread from its own measured costs, and the choice
// holds for the session's life. Two sessions of one graph then run at speeds
// that differ by a few per cent for a whole compare, so the pairs of one
// session pair share an offset and are not independent. The signed-rank
// interval over all pairs sees only the scatter within the session pair and
// is too narrow: 45 % of 20 self-compares of a pool-run graph covered 1.0.
// The compare therefore times S sessions of each graph, session s of A
// against session s of B, and widens the interval by what the session pairs'
// estimates disagree: it is the wider of
//   (a) the signed-rank interval over all pairs, and
//   (b) HL(all) +- t(S - 1) * sd(m_s) / sqrt(S), m_s the HL estimate of
//       session pair s alone,
// (b) being the one-way random-effects interval for the mean of S session
// effects (each m_s carries its own scatter too, so (b) needs nothing else),
// (a) the floor when the few m_s agree by chance.

// The session pair (0-based) that times pair `pair` of a compare with
// `sessions` sessions per graph: (pair / 2) mod sessions, so that each
// AB BA block (see AFirstInPair) stays within one session pair.
int SessionOfPair(uint64_t pair, int sessions);

// Two-sided Student t quantile: the t with P(|T| <= t) = confidence for an
// integer df >= 1 (exact formula for integer df, bisected).
double StudentTQuantile(double confidence, int df);

struct SessionSpread {
  int sessions = 1;            // session pairs that had at least two pairs
  double sd = 0;               // sd of their HL estimates (log scale)
  double half_width = 0;       // (b)'s half-width, log scale
  bool widened = false;        // (b) was wider than (a) on either side
};
// d[i]: pair i's log-ratio, session[i] its session pair. With fewer than two
// session pairs of two or more pairs each this is SignedRankInterval(d).
CentreInterval SessionAwareInterval(const std::vector<double>& d, const std::vector<int>& session,
                                    double confidence = 0.95, SessionSpread* spread = nullptr);

struct PairedRatio {
  size_t pairs = 0;
  double speedup = 0;           // exp(HL of log(a_i / b_i)): how many times faster B is
  double lo = 0, hi = 0;        // exp of the signed-rank interval
  double coverage = 0;
  bool exact = false;
  double half_width = 0;        // (hi - lo) / (2 * speedup): relative
  double ratio_of_medians = 0;  // median(a) / median(b), for reference
  // exp((median d | A first - median d | B first) / 2): how many times slower
  // the first run of a pair is than the second, the A/B difference removed;
  // 1 = none. has_position_effect is false unless both orders occurred.
  double position_effect = 1;
  bool has_position_effect = false;
  SessionSpread sessions;       // sessions.sessions == 1: one session per graph
};
// a[i], b[i]: pair i, every value > 0; a_first[i] as AFirstInPair (may be
// empty: no position effect); pair i ran in session pair
// SessionOfPair(i, sessions). Pairs with a non-positive time are ignored.
PairedRatio ComparePairs(const std::vector<double>& a, const std::vector<double>& b,
                         const std::vector<bool>& a_first, double confidence = 0.95,
                         int sessions = 1);

// When an A/B comparison stops. Without a target: after `runs` pairs (0: no
// limit), or once max_time_s has passed (0: no limit). With a target
// (relative half-width of the ratio's interval, e.g. 0.03): at least
// min_pairs, then the interval is checked every check_every pairs and timing
// stops once it is that narrow, or at max_time_s, or at max_pairs.
struct StopRule {
  int64_t runs = 100;
  double max_time_s = 0;
  double target_half_width = 0;
  int64_t min_pairs = 10;
  int64_t check_every = 10;
  int64_t max_pairs = 10'000'000;
  int sessions = 1;  // per graph; the interval is SessionAwareInterval's
};
enum class StopReason { kContinue, kRuns, kTarget, kMaxTime, kMaxPairs };
const char* StopReasonName(StopReason reason);
// A pure function of the pairs so far (log-ratios), the elapsed timing time
// and the rule; *half_width receives the interval's relative half-width when
// it was computed (a check point), else is left alone.
StopReason DecideStop(const StopRule& rule, const std::vector<double>& log_ratios,
                      double elapsed_s, double* half_width = nullptr);

// Runs per compare sample (the sample is their fastest): as many as last
// about kAutoBurstMs for a graph whose runs take `median_ms`, at least 1 and
// at most kMaxAutoBurst; 1 when median_ms is not a positive number.
inline constexpr double kAutoBurstMs = 5.0;
inline constexpr int64_t kMaxAutoBurst = 50;
int64_t AutoBurst(double median_ms);

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_BENCH_STATS_H_
