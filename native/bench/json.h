// A minimal JSON writer for the timer's report (no JSON library ships with
// the TF wheel's headers).
#ifndef LEANGRAPH_NATIVE_BENCH_JSON_H_
#define LEANGRAPH_NATIVE_BENCH_JSON_H_

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace leangraph {

class JsonWriter {
 public:
  JsonWriter& BeginObject() { return Open('{'); }
  JsonWriter& EndObject() { return Close('}'); }
  JsonWriter& BeginArray() { return Open('['); }
  JsonWriter& EndArray() { return Close(']'); }

  JsonWriter& Key(const std::string& key) {
    Separate();
    String(key);
    out_ += ':';
    after_key_ = true;
    return *this;
  }
  JsonWriter& Value(const std::string& s) {
    Separate();
    String(s);
    return *this;
  }
  JsonWriter& Value(const char* s) { return Value(std::string(s)); }
  JsonWriter& Value(bool b) {
    Separate();
    out_ += b ? "true" : "false";
    return *this;
  }
  JsonWriter& Value(int64_t i) {
    Separate();
    out_ += std::to_string(i);
    return *this;
  }
  JsonWriter& Value(int i) { return Value(static_cast<int64_t>(i)); }
  JsonWriter& Value(size_t i) { return Value(static_cast<int64_t>(i)); }
  JsonWriter& Value(double d) {
    Separate();
    if (!std::isfinite(d)) {
      out_ += "null";  // JSON has no NaN or infinity
    } else {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%.9g", d);
      out_ += buf;
    }
    return *this;
  }
  JsonWriter& Null() {
    Separate();
    out_ += "null";
    return *this;
  }
  template <typename T>
  JsonWriter& Array(const std::vector<T>& values) {
    BeginArray();
    for (const T& v : values) Value(v);
    return EndArray();
  }

  const std::string& str() const { return out_; }

 private:
  JsonWriter& Open(char c) {
    Separate();
    out_ += c;
    first_ = true;
    return *this;
  }
  JsonWriter& Close(char c) {
    out_ += c;
    first_ = false;
    return *this;
  }
  void Separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_) out_ += ',';
    first_ = false;
  }
  void String(const std::string& s) {
    out_ += '"';
    for (const char ch : s) {
      const unsigned char c = static_cast<unsigned char>(ch);
      switch (c) {
        case '"': out_ += "\\\""; break;
        case '\\': out_ += "\\\\"; break;
        case '\n': out_ += "\\n"; break;
        case '\t': out_ += "\\t"; break;
        case '\r': out_ += "\\r"; break;
        default:
          if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\u%04x", c);
            out_ += buf;
          } else {
            out_ += ch;
          }
      }
    }
    out_ += '"';
  }

  std::string out_;
  bool first_ = true;
  bool after_key_ = false;
};

}  // namespace leangraph

#endif  // LEANGRAPH_NATIVE_BENCH_JSON_H_
