#include "common/log.h"

#include "common/strings.h"

#include <syslog.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <vector>

#include "common/time_util.h"

namespace ingestfs {

namespace {
struct LogState {
  std::atomic<int> level{static_cast<int>(LogLevel::kInfo)};
  std::atomic<bool> syslog{false};
  std::mutex mu;
};

LogState& State() {
  static LogState* state = new LogState();  // never destroyed: usable during exit
  return *state;
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "?";
}
}  // namespace

void SetLogLevel(LogLevel level) { State().level = static_cast<int>(level); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(State().level.load()); }

void UseSyslog(const char* ident) {
  openlog(ident, LOG_PID, LOG_DAEMON);
  State().syslog = true;
}

void LogLine(LogLevel level, const std::string& raw) {
  if (static_cast<int>(level) < State().level.load()) return;
  std::string message = EscapeControl(raw);  // one event, one line, whatever a name holds
  if (State().syslog) {
    int prio = level == LogLevel::kError     ? LOG_ERR
               : level == LogLevel::kWarning ? LOG_WARNING
               : level == LogLevel::kInfo    ? LOG_INFO
                                             : LOG_DEBUG;
    syslog(prio, "%s", message.c_str());
    return;
  }
  std::string line = Iso8601Utc(std::time(nullptr)) + " " + LevelName(level) + ": " + message + "\n";
  std::lock_guard<std::mutex> lock(State().mu);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

void Logf(LogLevel level, const char* fmt, ...) {
  if (static_cast<int>(level) < State().level.load()) return;
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  std::vector<char> buf(static_cast<size_t>(n > 0 ? n : 0) + 1);
  std::vsnprintf(buf.data(), buf.size(), fmt, ap2);
  va_end(ap2);
  LogLine(level, std::string(buf.data(), static_cast<size_t>(n > 0 ? n : 0)));
}

}  // namespace ingestfs
