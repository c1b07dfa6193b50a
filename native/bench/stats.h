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

// 95 % interval of median(a) / median(b) by a paired bootstrap: the pairs
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

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_BENCH_STATS_H_
