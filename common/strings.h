// Small string helpers shared by every module. Thread-safe (pure functions).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ingestfs {

// RFC 3986 percent-encoding as AWS SigV4 wants it: unreserved characters (A-Z a-z 0-9 - _ . ~)
// stay, everything else becomes %XX (uppercase). '/' stays when keep_slash is true.
std::string UriEncode(std::string_view s, bool keep_slash);
// Percent-decoding; '+' is kept as '+'. Fails on a malformed escape.
StatusOr<std::string> UriDecode(std::string_view s);

// A URL with its query string (and userinfo) cut, for logs and error messages: presigned URLs
// are secrets. "http://h/b/k?X-Amz-Signature=..." -> "http://h/b/k?…".
std::string RedactUrl(std::string_view url);
// Keeps the first 4 characters of a secret: "abcd…".
std::string RedactSecret(std::string_view secret);
// The URL as a place, for the mount table: without user:password@, query or fragment.
std::string PlainUrl(std::string_view url);
// A value inside a FUSE "-o a,b,c" list: commas and backslashes escaped with a backslash.
std::string EscapeFuseOpt(std::string_view value);

std::string_view Trim(std::string_view s);
// Control characters (below 0x20, and 0x7f) written as \n, \r, \t or \xNN, so that a name or
// a server's message never breaks a log, status or CSV line.
std::string EscapeControl(std::string_view s);
// The octal escapes of /proc/self/mountinfo and /etc/fstab fields ("\\040" for a space) undone;
// a backslash not followed by three octal digits stays as it is.
std::string UnescapeOctal(std::string_view s);
// An ETag without its quotes, lowercased: "\"ABC\"" and abc compare equal.
std::string NormalizeEtag(std::string_view etag);
std::vector<std::string> Split(std::string_view s, char sep);
std::string ToLower(std::string_view s);
bool StartsWith(std::string_view s, std::string_view prefix);
bool EndsWith(std::string_view s, std::string_view suffix);

// Parses "123", "8M", "8MiB", "1G", "512k" (binary units). Negative or malformed -> error.
StatusOr<uint64_t> ParseSize(std::string_view text);
// Parses a plain non-negative decimal integer that fits in int64 (no sign, no spaces).
std::optional<int64_t> ParseInt(std::string_view text);
// Parses a non-negative decimal fraction such as "0.2" or "1".
std::optional<double> ParseRate(std::string_view text);
// A duration in seconds: a number with an optional unit s, m, h or d ("90", "30m", "1.5h", "7d").
std::optional<double> ParseDuration(std::string_view text);

// printf(3) into a std::string.
std::string StringPrintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace ingestfs
