// Wall-clock formatting for the API (ISO 8601 UTC) and for AWS SigV4 (yyyymmddThhmmssZ).
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

namespace ingestfs {

std::string Iso8601Utc(std::time_t t);           // 2026-11-21T10:00:00Z
std::string AmzDate(std::time_t t);              // 20261121T100000Z
std::optional<std::time_t> ParseAmzDate(std::string_view s);
std::optional<std::time_t> ParseIso8601Utc(std::string_view s);
int64_t NowUnixMillis();

}  // namespace ingestfs
