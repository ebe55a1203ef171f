// Leveled logging to stderr (or syslog once a daemon switches it). One line per call, with a
// UTC timestamp and level. Callers never pass secrets: cut URLs with RedactUrl first.
// Thread-safe.
#pragma once

#include <string>

namespace ingestfs {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Sends further lines to syslog(3) under `ident` instead of stderr.
void UseSyslog(const char* ident);
void LogLine(LogLevel level, const std::string& message);

void Logf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_DEBUG(...) ::ingestfs::Logf(::ingestfs::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) ::ingestfs::Logf(::ingestfs::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) ::ingestfs::Logf(::ingestfs::LogLevel::kWarning, __VA_ARGS__)
#define LOG_ERROR(...) ::ingestfs::Logf(::ingestfs::LogLevel::kError, __VA_ARGS__)

}  // namespace ingestfs
