#include "native/transform_context.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace leangraph {
namespace {

absl::Status BadValue(const TransformContext& context, const std::string& key,
                      const std::string& value, const char* wanted) {
  return absl::InvalidArgumentError(
      absl::StrCat(context.transform, ": parameter '", key, "' must be ",
                   wanted, ", got '", value, "'"));
}

std::vector<OwnTransform>& MutableOwnTransforms() {
  static auto* transforms = new std::vector<OwnTransform>();
  return *transforms;
}

}  // namespace

const std::vector<OwnTransform>& OwnTransforms() { return MutableOwnTransforms(); }

TransformRegistrar::TransformRegistrar(const OwnTransform& transform) {
  MutableOwnTransforms().push_back(transform);
}

absl::StatusOr<std::string> TransformContext::GetString(
    const std::string& key, const std::string& fallback) const {
  const auto it = params.find(key);
  if (it == params.end() || it->second.empty()) return fallback;
  if (it->second.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        transform, ": parameter '", key, "' given ", it->second.size(),
        " times; it takes one value"));
  }
  return it->second.front();
}

absl::StatusOr<bool> TransformContext::GetBool(const std::string& key,
                                               bool fallback) const {
  absl::StatusOr<std::string> text = GetString(key, fallback ? "true" : "false");
  if (!text.ok()) return text.status();
  const std::string lower = absl::AsciiStrToLower(*text);
  if (lower == "true" || lower == "1") return true;
  if (lower == "false" || lower == "0") return false;
  return BadValue(*this, key, *text, "true or false");
}

absl::StatusOr<double> TransformContext::GetDouble(const std::string& key,
                                                   double fallback) const {
  absl::StatusOr<std::string> text = GetString(key, "");
  if (!text.ok()) return text.status();
  if (text->empty()) return fallback;
  double value = 0;
  if (!absl::SimpleAtod(*text, &value)) return BadValue(*this, key, *text, "a number");
  return value;
}

absl::StatusOr<long long> TransformContext::GetInt(const std::string& key,
                                                   long long fallback) const {
  absl::StatusOr<std::string> text = GetString(key, "");
  if (!text.ok()) return text.status();
  if (text->empty()) return fallback;
  long long value = 0;
  if (!absl::SimpleAtoi(*text, &value)) return BadValue(*this, key, *text, "an integer");
  return value;
}

std::set<std::string> TransformContext::Endpoints() const {
  std::set<std::string> endpoints(outputs.begin(), outputs.end());
  endpoints.insert(inputs.begin(), inputs.end());
  return endpoints;
}

std::vector<std::string> TransformContext::GetAll(const std::string& key) const {
  const auto it = params.find(key);
  if (it == params.end()) return {};
  return it->second;
}

}  // namespace leangraph
