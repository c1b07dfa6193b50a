#include "native/bench/stats.h"

#include <algorithm>
#include <cmath>
#include <map>
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

namespace {

// Pairs i <= j of an ascending sample with sorted[i] + sorted[j] <= t. Sums
// (not averages) are compared so the test is exact in floating point.
uint64_t CountSumsAtMost(const std::vector<double>& sorted, double t) {
  const size_t n = sorted.size();
  size_t j = n;
  uint64_t count = 0;
  for (size_t i = 0; i < n; ++i) {
    while (j > i && sorted[i] + sorted[j - 1] > t) --j;
    if (j <= i) break;
    count += j - i;
  }
  return count;
}

double MedianOf(std::vector<double> v) {
  if (v.empty()) return 0.0;
  return MedianInPlace(v);
}

// Phi^-1(p) for p in (0.5, 1), by bisection on erfc: only ever asked for a
// handful of quantiles, so simplicity beats a rational approximation.
double NormalQuantile(double p) {
  double lo = 0.0, hi = 40.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p) lo = mid; else hi = mid;
  }
  return 0.5 * (lo + hi);
}

double NormalCdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Check points of a target-driven comparison: min_pairs, then steps of
// check_every that grow to a tenth of the sample, so a fast graph timed for
// minutes does not spend its time recomputing intervals.
bool IsCheckPoint(const StopRule& rule, int64_t pairs) {
  const int64_t every = std::max<int64_t>(rule.check_every, 1);
  int64_t at = std::max<int64_t>(rule.min_pairs, 1);
  while (at < pairs) {
    const int64_t tenth = (at / 10 + 1) / 2 * 2;
    at += std::max(every, tenth);
  }
  return at == pairs;
}

}  // namespace

double KthWalshAverage(const std::vector<double>& sorted, uint64_t k) {
  const size_t n = sorted.size();
  if (n == 0 || k == 0) return 0.0;
  const uint64_t total = static_cast<uint64_t>(n) * (n + 1) / 2;
  k = std::min(k, total);
  double lo = 2.0 * sorted.front();
  if (CountSumsAtMost(sorted, lo) >= k) return sorted.front();
  double hi = 2.0 * sorted.back();
  // Invariant: count(lo) < k <= count(hi). Bisection ends when lo and hi are
  // adjacent doubles; every sum in (lo, hi] is then hi itself.
  for (int i = 0; i < 2200; ++i) {
    const double mid = lo + 0.5 * (hi - lo);
    if (!(mid > lo && mid < hi)) break;
    if (CountSumsAtMost(sorted, mid) >= k) hi = mid; else lo = mid;
  }
  // The smallest sum above lo is the k-th sum.
  double best = hi;
  for (size_t i = 0; i < n; ++i) {
    const double base = sorted[i];
    const auto first = std::partition_point(
        sorted.begin() + static_cast<std::ptrdiff_t>(i), sorted.end(),
        [&](double x) { return base + x <= lo; });
    if (first != sorted.end()) best = std::min(best, base + *first);
  }
  return 0.5 * best;
}

CentreInterval SignedRankInterval(const std::vector<double>& d, double confidence) {
  CentreInterval out;
  std::vector<double> s;
  s.reserve(d.size());
  for (const double x : d) {
    if (std::isfinite(x)) s.push_back(x);
  }
  std::sort(s.begin(), s.end());
  const size_t n = s.size();
  out.count = n;
  if (n == 0) return out;
  const uint64_t total = static_cast<uint64_t>(n) * (n + 1) / 2;
  out.estimate = total % 2 == 1 ? KthWalshAverage(s, (total + 1) / 2)
                                : 0.5 * (KthWalshAverage(s, total / 2) +
                                         KthWalshAverage(s, total / 2 + 1));
  const double tail_limit = 0.5 * (1.0 - std::clamp(confidence, 0.0, 1.0));
  int64_t c = -1;  // largest c with P(T+ <= c) <= tail_limit
  double tail = 0.0;
  constexpr size_t kExactUpTo = 100;
  if (n <= kExactUpTo) {
    // counts[w]: subsets of the ranks {1..n} summing to w (each equally
    // likely under the null), held as doubles scaled by 2^-n.
    std::vector<double> counts(total + 1, 0.0);
    counts[0] = 1.0;
    for (size_t r = 1; r <= n; ++r) {
      for (size_t w = r * (r + 1) / 2; w >= r; --w) counts[w] += counts[w - r];
    }
    const double scale = std::ldexp(1.0, -static_cast<int>(n));
    double cum = 0.0;
    for (uint64_t w = 0; w <= total / 2; ++w) {
      cum += counts[w] * scale;
      if (cum > tail_limit) break;
      c = static_cast<int64_t>(w);
      tail = cum;
    }
    out.exact = true;
  } else {
    const double nd = static_cast<double>(n);
    const double mean = static_cast<double>(total) / 2.0;
    const double sd = std::sqrt(nd * (nd + 1.0) * (2.0 * nd + 1.0) / 24.0);
    const double z = NormalQuantile(1.0 - tail_limit);
    c = static_cast<int64_t>(std::floor(mean - z * sd - 0.5));
    if (c >= 0) tail = NormalCdf((static_cast<double>(c) + 0.5 - mean) / sd);
  }
  if (c < 0) {
    out.lo = s.front();
    out.hi = s.back();
    out.coverage = 1.0 - 2.0 * std::ldexp(1.0, -static_cast<int>(std::min<size_t>(n, 1000)));
    return out;
  }
  out.lo = KthWalshAverage(s, static_cast<uint64_t>(c) + 1);
  out.hi = KthWalshAverage(s, total - static_cast<uint64_t>(c));
  out.coverage = 1.0 - 2.0 * tail;
  return out;
}

int SessionOfPair(uint64_t pair, int sessions) {
  if (sessions <= 1) return 0;
  return static_cast<int>((pair / 2) % static_cast<uint64_t>(sessions));
}

namespace {

// P(|T| <= t) for Student's t with an integer df: the finite series in
// theta = atan(t / sqrt(df)), one for odd and one for even df.
double StudentTCentral(double t, int df) {
  const double theta = std::atan(std::abs(t) / std::sqrt(static_cast<double>(df)));
  const double c2 = std::cos(theta) * std::cos(theta);
  const double s = std::sin(theta);
  if (df % 2 == 1) {
    double term = std::cos(theta), sum = df > 1 ? term : 0.0;
    for (int k = 3; k <= df - 2; k += 2) {
      term *= c2 * static_cast<double>(k - 1) / static_cast<double>(k);
      sum += term;
    }
    return 2.0 / M_PI * (theta + s * sum);
  }
  double term = 1.0, sum = 1.0;
  for (int k = 2; k <= df - 2; k += 2) {
    term *= c2 * static_cast<double>(k - 1) / static_cast<double>(k);
    sum += term;
  }
  return s * sum;
}

}  // namespace

double StudentTQuantile(double confidence, int df) {
  df = std::max(df, 1);
  confidence = std::clamp(confidence, 0.0, 1.0 - 1e-12);
  double lo = 0.0, hi = 1.0;
  while (StudentTCentral(hi, df) < confidence && hi < 1e12) hi *= 2.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (StudentTCentral(mid, df) < confidence) lo = mid; else hi = mid;
  }
  return 0.5 * (lo + hi);
}

CentreInterval SessionAwareInterval(const std::vector<double>& d, const std::vector<int>& session,
                                    double confidence, SessionSpread* spread) {
  CentreInterval out = SignedRankInterval(d, confidence);
  SessionSpread result;
  std::map<int, std::vector<double>> by_session;
  for (size_t i = 0; i < d.size() && i < session.size(); ++i) {
    if (std::isfinite(d[i])) by_session[session[i]].push_back(d[i]);
  }
  std::vector<double> estimates;
  for (const auto& [unused, values] : by_session) {
    if (values.size() >= 2) estimates.push_back(SignedRankInterval(values, confidence).estimate);
  }
  result.sessions = std::max<int>(1, static_cast<int>(estimates.size()));
  if (estimates.size() >= 2) {
    const double k = static_cast<double>(estimates.size());
    const double mean = std::accumulate(estimates.begin(), estimates.end(), 0.0) / k;
    double ss = 0.0;
    for (const double m : estimates) ss += (m - mean) * (m - mean);
    result.sd = std::sqrt(ss / (k - 1.0));
    result.half_width =
        StudentTQuantile(confidence, static_cast<int>(estimates.size()) - 1) * result.sd /
        std::sqrt(k);
    const double lo = out.estimate - result.half_width, hi = out.estimate + result.half_width;
    if (lo < out.lo || hi > out.hi) {
      result.widened = true;
      out.lo = std::min(out.lo, lo);
      out.hi = std::max(out.hi, hi);
      out.coverage = confidence;  // nominal: (b) is a t interval
      out.exact = false;
    }
  }
  if (spread != nullptr) *spread = result;
  return out;
}

bool AFirstInPair(uint64_t seed, uint64_t pair) {
  const bool block_starts_with_a = (SplitMix64(SplitMix64(seed) ^ (pair / 2)) >> 63) != 0;
  return (pair % 2 == 0) == block_starts_with_a;
}

PairedRatio ComparePairs(const std::vector<double>& a, const std::vector<double>& b,
                         const std::vector<bool>& a_first, double confidence,
                         int sessions) {
  PairedRatio out;
  const size_t n = std::min(a.size(), b.size());
  std::vector<double> d, d_a_first, d_b_first, kept_a, kept_b;
  std::vector<int> session;
  for (size_t i = 0; i < n; ++i) {
    if (!(a[i] > 0) || !(b[i] > 0)) continue;
    const double x = std::log(a[i] / b[i]);
    d.push_back(x);
    session.push_back(SessionOfPair(i, sessions));
    kept_a.push_back(a[i]);
    kept_b.push_back(b[i]);
    if (i < a_first.size()) (a_first[i] ? d_a_first : d_b_first).push_back(x);
  }
  out.pairs = d.size();
  if (d.empty()) return out;
  const CentreInterval ci = SessionAwareInterval(d, session, confidence, &out.sessions);
  out.speedup = std::exp(ci.estimate);
  out.lo = std::exp(ci.lo);
  out.hi = std::exp(ci.hi);
  out.coverage = ci.coverage;
  out.exact = ci.exact;
  out.half_width = (out.hi - out.lo) / (2.0 * out.speedup);
  const double mb = MedianOf(kept_b);
  out.ratio_of_medians = mb > 0 ? MedianOf(kept_a) / mb : 0.0;
  if (!d_a_first.empty() && !d_b_first.empty()) {
    out.position_effect = std::exp(0.5 * (MedianOf(d_a_first) - MedianOf(d_b_first)));
    out.has_position_effect = true;
  }
  return out;
}

const char* StopReasonName(StopReason reason) {
  switch (reason) {
    case StopReason::kContinue: return "continue";
    case StopReason::kRuns: return "runs";
    case StopReason::kTarget: return "target";
    case StopReason::kMaxTime: return "max_time";
    case StopReason::kMaxPairs: return "max_pairs";
  }
  return "?";
}

StopReason DecideStop(const StopRule& rule, const std::vector<double>& log_ratios,
                      double elapsed_s, double* half_width) {
  const int64_t pairs = static_cast<int64_t>(log_ratios.size());
  const bool out_of_time = rule.max_time_s > 0 && elapsed_s >= rule.max_time_s;
  if (rule.target_half_width > 0) {
    if (pairs >= rule.min_pairs && IsCheckPoint(rule, pairs)) {
      std::vector<int> session(log_ratios.size());
      for (size_t i = 0; i < session.size(); ++i) session[i] = SessionOfPair(i, rule.sessions);
      const CentreInterval ci = SessionAwareInterval(log_ratios, session);
      const double width = (std::exp(ci.hi) - std::exp(ci.lo)) / (2.0 * std::exp(ci.estimate));
      if (half_width != nullptr) *half_width = width;
      if (width <= rule.target_half_width) return StopReason::kTarget;
    }
    if (out_of_time) return StopReason::kMaxTime;
    if (rule.max_pairs > 0 && pairs >= rule.max_pairs) return StopReason::kMaxPairs;
    return StopReason::kContinue;
  }
  if (rule.runs > 0 && pairs >= rule.runs) return StopReason::kRuns;
  if (out_of_time) return StopReason::kMaxTime;
  if (rule.max_pairs > 0 && pairs >= rule.max_pairs) return StopReason::kMaxPairs;
  return StopReason::kContinue;
}

int64_t AutoBurst(double median_ms) {
  if (!(median_ms > 0)) return 1;
  const double runs = std::ceil(kAutoBurstMs / median_ms);
  return std::clamp<int64_t>(static_cast<int64_t>(std::min(runs, 1e6)), 1, kMaxAutoBurst);
}

}  // namespace leangraph
