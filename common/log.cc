#include "common/log.h"

#include "common/strings.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <vector>

#include "common/time_util.h"

namespace ingestfs {

namespace {
enum class Sink { kStderr, kJournal, kSyslog, kFile };

struct LogState {
  std::atomic<int> level{static_cast<int>(LogLevel::kInfo)};
  std::atomic<int> sink{static_cast<int>(Sink::kStderr)};
  std::mutex mu;
  std::string file_path;  // GUARDED_BY(mu)
  int file_fd = -1;       // GUARDED_BY(mu)
};

volatile sig_atomic_t reopen_requested = 0;

int OpenLogFile(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
}

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

std::optional<LogLevel> ParseLogLevel(std::string_view name) {
  for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning, LogLevel::kError}) {
    if (name == LevelName(l)) return l;
  }
  return std::nullopt;
}

void UseSyslog(const char* ident) {
  openlog(ident, LOG_PID, LOG_DAEMON);
  State().sink = static_cast<int>(Sink::kSyslog);
}

Status UseLogFile(const std::string& path) {
  int fd = OpenLogFile(path);
  if (fd < 0) return Status::FromErrno(errno, "log file " + path);
  std::lock_guard<std::mutex> lock(State().mu);
  if (State().file_fd >= 0) ::close(State().file_fd);
  State().file_fd = fd;
  State().file_path = path;
  State().sink = static_cast<int>(Sink::kFile);
  return Status::Ok();
}

void RequestLogReopen() { reopen_requested = 1; }

bool StderrIsJournal() {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (js == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  return ::fstat(STDERR_FILENO, &st) == 0 && static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

void UseJournalPrefixes() { State().sink = static_cast<int>(Sink::kJournal); }

void UseStderr() { State().sink = static_cast<int>(Sink::kStderr); }

void LogLine(LogLevel level, const std::string& raw) {
  if (static_cast<int>(level) < State().level.load()) return;
  std::string message = EscapeControl(raw);  // one event, one line, whatever a name holds
  int prio = level == LogLevel::kError     ? LOG_ERR
             : level == LogLevel::kWarning ? LOG_WARNING
             : level == LogLevel::kInfo    ? LOG_INFO
                                           : LOG_DEBUG;
  Sink sink = static_cast<Sink>(State().sink.load());
  if (sink == Sink::kSyslog) {
    syslog(prio, "%s", message.c_str());
    return;
  }
  std::lock_guard<std::mutex> lock(State().mu);
  if (sink == Sink::kJournal) {  // the journal keeps the time and the level
    std::fprintf(stderr, "<%d>%s: %s\n", prio, LevelName(level), message.c_str());
    std::fflush(stderr);
    return;
  }
  std::string line = Iso8601Utc(std::time(nullptr)) + " " + LevelName(level) + ": " + message + "\n";
  if (sink == Sink::kFile) {
    if (reopen_requested) {
      reopen_requested = 0;
      int fd = OpenLogFile(State().file_path);
      if (fd >= 0) {
        ::close(State().file_fd);
        State().file_fd = fd;
      }  // else: the old file goes on (a line there is better than none)
    }
    size_t off = 0;
    while (off < line.size()) {
      ssize_t n = ::write(State().file_fd, line.data() + off, line.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // a full disk: the line is lost, not the mount
      off += static_cast<size_t>(n);
    }
    return;
  }
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
