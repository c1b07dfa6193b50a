// The timer's functions in leangraph._native.
#ifndef LEANGRAPH_NATIVE_BENCH_BENCH_PY_H_
#define LEANGRAPH_NATIVE_BENCH_BENCH_PY_H_

#include "pybind11/pybind11.h"

namespace leangraph {

// Adds bench_run, bench_compare, bench_stats, median_ci95 and
// cpu_supports_bf16 to `m`. Failures raise leangraph.BenchmarkError.
void RegisterBench(pybind11::module_& m);

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_BENCH_BENCH_PY_H_
