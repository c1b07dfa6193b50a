#include "native/bench/npy.h"

#include <fstream>
#include <iterator>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace leangraph {

std::string NpyDescrToDtype(const std::string& descr) {
  static const auto* names = new std::map<std::string, std::string>{
      {"<f2", "float16"}, {"<f4", "float32"}, {"<f8", "float64"},
      {"|i1", "int8"},    {"<i2", "int16"},   {"<i4", "int32"},
      {"<i8", "int64"},   {"|u1", "uint8"},   {"<u2", "uint16"},
      {"|b1", "bool"},
  };
  const auto it = names->find(descr);
  return it == names->end() ? "" : it->second;
}

namespace {

// The value text of 'key' in the header's Python dict literal.
absl::string_view DictValue(absl::string_view header, absl::string_view key) {
  const size_t at = header.find(absl::StrCat("'", key, "'"));
  if (at == absl::string_view::npos) return {};
  absl::string_view rest = header.substr(at + key.size() + 2);
  rest = absl::StripLeadingAsciiWhitespace(rest);
  if (!absl::ConsumePrefix(&rest, ":")) return {};
  rest = absl::StripLeadingAsciiWhitespace(rest);
  const char close = rest.empty() ? 0 : (rest[0] == '(' ? ')' : rest[0] == '\'' ? '\'' : ',');
  const size_t end = rest.find(close, close == ',' ? 0 : 1);
  if (end == absl::string_view::npos) return rest;
  return rest.substr(0, close == ',' ? end : end + 1);
}

}  // namespace

absl::StatusOr<NpyArray> ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("npy file not found: ", path));
  const std::string bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a usable .npy file: ", why));
  };
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) {
    return bad("missing the \\x93NUMPY magic");
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) |
                 (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return bad("truncated header");
    for (int i = 0; i < 4; ++i) {
      header_len |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i]))
                    << (8 * i);
    }
    header_start = 12;
  } else {
    return bad(absl::StrCat("unknown format version ", major));
  }
  if (header_start + header_len > bytes.size()) return bad("truncated header");
  const absl::string_view header(bytes.data() + header_start, header_len);

  NpyArray out;
  std::string descr(absl::StripSuffix(absl::StripPrefix(DictValue(header, "descr"), "'"), "'"));
  out.dtype = NpyDescrToDtype(descr);
  if (out.dtype.empty()) {
    return bad(absl::StrCat("dtype '", descr,
                            "' is not supported (little-endian float16/32/64, "
                            "int8/16/32/64, uint8/16 or bool)"));
  }
  if (absl::StripAsciiWhitespace(DictValue(header, "fortran_order")) != "False") {
    return bad("Fortran-ordered arrays are not supported (save with np.ascontiguousarray)");
  }
  absl::string_view shape = DictValue(header, "shape");
  if (!absl::ConsumePrefix(&shape, "(") || !absl::ConsumeSuffix(&shape, ")")) {
    return bad("no shape in the header");
  }
  int64_t elements = 1;
  for (absl::string_view dim : absl::StrSplit(shape, ',', absl::SkipWhitespace())) {
    int64_t d = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(dim), &d) || d < 0) {
      return bad(absl::StrCat("bad dimension '", dim, "'"));
    }
    out.shape.push_back(d);
    if (d > 0 && elements > static_cast<int64_t>(bytes.size()) / d) {
      return bad("the shape holds more elements than the file has bytes");
    }
    elements *= d;
  }
  // Every supported descr ends in its item size ("<f4", "|b1").
  const int64_t item = descr[2] - '0';
  const size_t data_start = header_start + header_len;
  const size_t want = static_cast<size_t>(elements * item);
  if (bytes.size() - data_start != want) {
    return bad(absl::StrCat("expected ", want, " data bytes, found ",
                            bytes.size() - data_start));
  }
  out.data = bytes.substr(data_start);
  return out;
}

}  // namespace leangraph
