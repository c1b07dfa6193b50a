// Reads NumPy .npy files (format 1.0-3.0, C order, little-endian) for --input-npy.
#ifndef LEANGRAPH_NATIVE_BENCH_NPY_H_
#define LEANGRAPH_NATIVE_BENCH_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace leangraph {

struct NpyArray {
  std::string dtype;  // numpy name: "float32", "int64", "bool", ...
  std::vector<int64_t> shape;
  std::string data;  // raw little-endian element bytes, C order
};

absl::StatusOr<NpyArray> ReadNpy(const std::string& path);

// The numpy dtype name of a descr such as "<f4" or "|b1"; empty if unsupported.
std::string NpyDescrToDtype(const std::string& descr);

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_BENCH_NPY_H_
