#include "common/time_util.h"

#include <chrono>
#include <cstdio>

namespace ingestfs {

namespace {
std::string Format(std::time_t t, const char* fmt) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof(buf), fmt, &tm);
  return std::string(buf, n);
}

std::optional<std::time_t> Parse(std::string_view s, const char* fmt) {
  std::tm tm{};
  std::string str(s);
  const char* end = strptime(str.c_str(), fmt, &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  return timegm(&tm);
}
}  // namespace

std::string Iso8601Utc(std::time_t t) { return Format(t, "%Y-%m-%dT%H:%M:%SZ"); }
std::string AmzDate(std::time_t t) { return Format(t, "%Y%m%dT%H%M%SZ"); }

std::optional<std::time_t> ParseAmzDate(std::string_view s) {
  if (s.size() != 16) return std::nullopt;
  return Parse(s, "%Y%m%dT%H%M%SZ");
}

std::optional<std::time_t> ParseIso8601Utc(std::string_view s) {
  // Accept fractional seconds by cutting them.
  std::string str(s);
  size_t dot = str.find('.');
  if (dot != std::string::npos && !str.empty() && str.back() == 'Z') {
    str = str.substr(0, dot) + "Z";
  }
  return Parse(str, "%Y-%m-%dT%H:%M:%SZ");
}

int64_t NowUnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace ingestfs
