#include "native/bench/stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace leangraph {

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0.0;
  const double h = (static_cast<double>(sorted.size()) - 1.0) *
                   std::clamp(p, 0.0, 100.0) / 100.0;
  const size_t below = static_cast<size_t>(std::floor(h));
  const size_t above = std::min(below + 1, sorted.size() - 1);
  return sorted[below] + (h - static_cast<double>(below)) *
                             (sorted[above] - sorted[below]);
}

MedianInterval MedianCi95(size_t n) {
  MedianInterval out;
  if (n == 0) return out;
  // cdf[k] = P(B <= k) accumulated from log-pmfs, so large n does not
  // overflow the binomial coefficients.
  const double log_half_n = static_cast<double>(n) * std::log(0.5);
  const double log_n_fact = std::lgamma(static_cast<double>(n) + 1.0);
  double cdf = 0.0;
  size_t r = 0;  // largest r with 2 * P(B <= r - 1) <= 0.05, 0 if none
  double tail_at_r = 0.0;
  for (size_t k = 0; k < n / 2 + 1; ++k) {
    const double kd = static_cast<double>(k);
    cdf += std::exp(log_n_fact - std::lgamma(kd + 1.0) -
                    std::lgamma(static_cast<double>(n) - kd + 1.0) +
                    log_half_n);
    if (2.0 * cdf > 0.05) break;
    r = k + 1;
    tail_at_r = cdf;
  }
  if (r == 0) {
    out.lo = 0;
    out.hi = n - 1;
    out.coverage = 1.0 - 2.0 * std::pow(0.5, static_cast<double>(n));
    return out;
  }
  out.lo = r - 1;
  out.hi = n - r;
  out.coverage = 1.0 - 2.0 * tail_at_r;
  return out;
}

Stats ComputeStats(const std::vector<double>& samples_ms, int64_t batch) {
  Stats s;
  s.count = samples_ms.size();
  if (s.count == 0) return s;
  std::vector<double> sorted = samples_ms;
  std::sort(sorted.begin(), sorted.end());
  s.min = sorted.front();
  s.max = sorted.back();
  s.p10 = Percentile(sorted, 10);
  s.p50 = Percentile(sorted, 50);
  s.p90 = Percentile(sorted, 90);
  s.p99 = Percentile(sorted, 99);
  s.mean = std::accumulate(sorted.begin(), sorted.end(), 0.0) /
           static_cast<double>(s.count);
  if (s.count > 1) {
    double squares = 0.0;
    for (const double x : sorted) squares += (x - s.mean) * (x - s.mean);
    s.stddev = std::sqrt(squares / static_cast<double>(s.count - 1));
  }
  const MedianInterval ci = MedianCi95(s.count);
  s.median_ci_lo = sorted[ci.lo];
  s.median_ci_hi = sorted[ci.hi];
  s.median_ci_coverage = ci.coverage;
  s.throughput = s.p50 > 0 ? static_cast<double>(batch) * 1000.0 / s.p50 : 0.0;
  return s;
}

namespace {

double MedianInPlace(std::vector<double>& v) {
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + mid, v.end());
  const double upper = v[mid];
  if (v.size() % 2 == 1) return upper;
  const double lower = *std::max_element(v.begin(), v.begin() + mid);
  return 0.5 * (lower + upper);
}

}  // namespace

RatioInterval MedianRatioCi95(const std::vector<double>& a,
                              const std::vector<double>& b, uint64_t seed,
                              int resamples) {
  RatioInterval out;
  const size_t n = std::min(a.size(), b.size());
  if (n == 0 || resamples <= 0) return out;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, n - 1);
  std::vector<double> ratios;
  ratios.reserve(static_cast<size_t>(resamples));
  std::vector<double> ra(n), rb(n);
  for (int i = 0; i < resamples; ++i) {
    for (size_t j = 0; j < n; ++j) {
      const size_t k = pick(rng);
      ra[j] = a[k];
      rb[j] = b[k];
    }
    const double mb = MedianInPlace(rb);
    if (mb > 0) ratios.push_back(MedianInPlace(ra) / mb);
  }
  if (ratios.empty()) return out;
  std::sort(ratios.begin(), ratios.end());
  out.lo = Percentile(ratios, 2.5);
  out.hi = Percentile(ratios, 97.5);
  return out;
}

}  // namespace leangraph
