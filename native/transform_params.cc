#include "native/transform_params.h"

#include <cctype>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace leangraph {
namespace {

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' ||
         c == '.' || c == '/';
}

bool IsSpace(char c) { return std::isspace(static_cast<unsigned char>(c)); }

// A cursor over the text that reports errors with the column they occur at.
class Parser {
 public:
  explicit Parser(const std::string& text) : text_(text) {}

  absl::StatusOr<std::vector<TransformStep>> Run() {
    std::vector<TransformStep> steps;
    SkipSpace();
    while (!AtEnd()) {
      TransformStep step;
      step.name = ReadName();
      if (step.name.empty()) {
        return Error(absl::StrCat("expected a transform name, found '",
                                  std::string(1, Peek()), "'"));
      }
      if (!AtEnd() && Peek() == '(') {
        ++pos_;
        absl::Status status = ReadParams(step);
        if (!status.ok()) return status;
      }
      if (!AtEnd() && !IsSpace(Peek())) {
        return Error(absl::StrCat("unexpected '", std::string(1, Peek()),
                                  "' after transform '", step.name, "'"));
      }
      steps.push_back(std::move(step));
      SkipSpace();
    }
    return steps;
  }

 private:
  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return text_[pos_]; }

  void SkipSpace() {
    while (!AtEnd() && (IsSpace(Peek()) || Peek() == '\\')) ++pos_;
  }

  std::string ReadName() {
    const size_t start = pos_;
    while (!AtEnd() && IsNameChar(Peek())) ++pos_;
    return text_.substr(start, pos_ - start);
  }

  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed transform string at column ", pos_ + 1, ": ",
                     what, " in \"", text_, "\""));
  }

  // After '(' up to and including the matching ')'.
  absl::Status ReadParams(TransformStep& step) {
    while (true) {
      SkipSpace();
      if (AtEnd()) return Error(absl::StrCat("missing ')' for '", step.name, "'"));
      if (Peek() == ')') {
        ++pos_;
        return absl::OkStatus();
      }
      const std::string key = ReadName();
      if (key.empty()) {
        return Error(absl::StrCat("expected a parameter name of '", step.name,
                                  "', found '", std::string(1, Peek()), "'"));
      }
      SkipSpace();
      if (AtEnd() || Peek() != '=') {
        return Error(absl::StrCat("parameter '", key, "' of '", step.name,
                                  "' needs '=value'"));
      }
      ++pos_;
      SkipSpace();
      std::string value;
      absl::Status status = ReadValue(value);
      if (!status.ok()) return status;
      step.params[key].push_back(std::move(value));
      SkipSpace();
      if (AtEnd()) return Error(absl::StrCat("missing ')' for '", step.name, "'"));
      if (Peek() == ',') {
        ++pos_;
      } else if (Peek() != ')') {
        return Error(absl::StrCat("expected ',' or ')' after parameter '", key,
                                  "', found '", std::string(1, Peek()), "'"));
      }
    }
  }

  absl::Status ReadValue(std::string& value) {
    if (!AtEnd() && Peek() == '"') {
      const size_t open = pos_++;
      while (!AtEnd() && Peek() != '"') value.push_back(text_[pos_++]);
      if (AtEnd()) {
        pos_ = open;
        return Error("unterminated quoted value");
      }
      ++pos_;
      return absl::OkStatus();
    }
    while (!AtEnd() && Peek() != ',' && Peek() != ')' && !IsSpace(Peek())) {
      if (Peek() == '(' || Peek() == '"') {
        return Error(absl::StrCat("'", std::string(1, Peek()),
                                  "' in an unquoted value; quote the value"));
      }
      value.push_back(text_[pos_++]);
    }
    if (value.empty()) return Error("empty parameter value");
    return absl::OkStatus();
  }

  const std::string& text_;
  size_t pos_ = 0;
};

bool NeedsQuotes(const std::string& value) {
  if (value.empty()) return true;
  for (char c : value) {
    if (c == ',' || c == '(' || c == ')' || IsSpace(c)) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::vector<TransformStep>> ParseTransforms(
    const std::string& text) {
  return Parser(text).Run();
}

std::string FormatTransforms(const std::vector<TransformStep>& steps) {
  std::string out;
  for (const TransformStep& step : steps) {
    if (!out.empty()) out += ' ';
    out += step.name;
    if (step.params.empty()) continue;
    out += '(';
    bool first = true;
    for (const auto& [key, values] : step.params) {
      for (const std::string& value : values) {
        if (!first) out += ", ";
        first = false;
        absl::StrAppend(&out, key, "=");
        if (NeedsQuotes(value)) {
          absl::StrAppend(&out, "\"", value, "\"");
        } else {
          out += value;
        }
      }
    }
    out += ')';
  }
  return out;
}

}  // namespace leangraph
