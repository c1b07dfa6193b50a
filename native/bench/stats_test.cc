#include "native/bench/stats.h"

#include <cmath>
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
