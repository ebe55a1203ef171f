#include "fs/killed_writer.h"

#include <string.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include "common/file_util.h"
#include "common/strings.h"

namespace ingestfs::fs {

namespace {
constexpr int64_t kPfExiting = 0x4;  // include/linux/sched.h
}  // namespace

std::string KilledWriterFromStat(const std::string& stat) {
  // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses, so fields are counted
  // from the last ')'.
  size_t open = stat.find('(');
  size_t close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open || close + 2 > stat.size()) return "";
  std::vector<std::string> f = Split(std::string_view(stat).substr(close + 2), ' ');
  // f[0] is field 3 (state): field N is f[N - 3].
  if (f.size() < 50) return "";
  auto flags = ParseInt(Trim(f[6]));
  auto code = ParseInt(Trim(f[49]));
  if (!flags || !code || (*flags & kPfExiting) == 0) return "";
  int sig = static_cast<int>(*code & 0x7f);
  if (sig == 0) return "";
  const char* abbrev = ::sigabbrev_np(sig);
  std::string name = abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
  std::string pid(Trim(stat.substr(0, open)));
  return "its writer " + stat.substr(open + 1, close - open - 1) + " (pid " + pid + ") was killed by " + name +
         " before it finished";
}

std::string KilledWriter(pid_t pid, std::chrono::milliseconds limit) {
  if (pid <= 0) return "";
  struct Answer {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    std::string killed;
  };
  auto answer = std::make_shared<Answer>();
  try {
    std::thread([answer, pid] {
      auto text = ReadFileToString("/proc/" + std::to_string(pid) + "/stat");
      std::string killed = text.ok() ? KilledWriterFromStat(*text) : "";
      std::lock_guard<std::mutex> lock(answer->mu);
      answer->killed = std::move(killed);
      answer->done = true;
      answer->cv.notify_all();
    }).detach();
  } catch (const std::system_error&) {
    return "";  // no thread to be had: the close goes on as a finished one
  }
  std::unique_lock<std::mutex> lock(answer->mu);
  if (!answer->cv.wait_for(lock, limit, [&] { return answer->done; })) return "";
  return answer->killed;
}

}  // namespace ingestfs::fs
