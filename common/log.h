// Leveled logging to stderr, systemd's journal (stderr with priority prefixes), syslog, or a
// file. One line per call, with a UTC timestamp and level (the journal and syslog add their
// own time). Callers never pass secrets: cut URLs with RedactUrl first.
// Thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ingestfs {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// "debug", "info", "warning" or "error".
std::optional<LogLevel> ParseLogLevel(std::string_view name);
// Sends further lines to syslog(3) under `ident` instead of stderr.
void UseSyslog(const char* ident);
// Sends further lines to the file at `path` (appended to; made 0640 when missing). After
// RequestLogReopen it is opened again by name before the next line (logrotate moved it).
Status UseLogFile(const std::string& path);
// Async-signal-safe (a SIGHUP handler calls it).
void RequestLogReopen();
// True when stderr is systemd's journal (JOURNAL_STREAM names its device and inode): then
// UseJournalPrefixes makes each line "<N>message", the journal's priority, without a timestamp.
bool StderrIsJournal();
void UseJournalPrefixes();
// Back to plain lines on stderr (the default).
void UseStderr();
void LogLine(LogLevel level, const std::string& message);

void Logf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_DEBUG(...) ::ingestfs::Logf(::ingestfs::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) ::ingestfs::Logf(::ingestfs::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) ::ingestfs::Logf(::ingestfs::LogLevel::kWarning, __VA_ARGS__)
#define LOG_ERROR(...) ::ingestfs::Logf(::ingestfs::LogLevel::kError, __VA_ARGS__)

}  // namespace ingestfs
