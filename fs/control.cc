#include "fs/control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <spawn.h>
#include <sys/wait.h>
#include <signal.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <thread>
#include <vector>

#include "common/file_util.h"
#include "common/json.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "fs/status_report.h"
#include "upload/progress.h"

namespace ingestfs::fs {

namespace {
sockaddr_un Address(const std::string& path, bool* ok) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  *ok = path.size() < sizeof(a.sun_path);
  if (*ok) std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}
}  // namespace

Status ControlServer::Start() {
  bool ok;
  sockaddr_un a = Address(path_, &ok);
  if (!ok) return Status(Code::kInvalidArgument, "control socket path is too long: " + path_);
  ::unlink(path_.c_str());
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return Status::FromErrno(errno, "socket");
  mode_t old = ::umask(0177);
  int rc = ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ::umask(old);
  if (rc != 0 || ::listen(fd_, 16) != 0) return Status::FromErrno(errno, "listen on " + path_);
  thread_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

void ControlServer::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(path_.c_str());
  }
}

void ControlServer::Loop() {
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    timeval tv{5, 0};
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string req;
    char buf[256];
    while (req.find('\n') == std::string::npos && req.size() < 4096) {
      ssize_t n = ::read(c, buf, sizeof(buf));
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
    }
    std::string answer;
    try {
      answer = handler_(std::string(Trim(req))) + "\n";
    } catch (const std::exception& e) {
      answer = "{\"error\":" + json::Object([&](json::Writer& w) { json::KeyString(w, "e", e.what()); }) + "}\n";
    }
    size_t off = 0;
    while (off < answer.size()) {
      ssize_t n = ::write(c, answer.data() + off, answer.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::close(c);
  }
}

StatusOr<std::string> ControlRequest(const std::string& socket_path, const std::string& request) {
  bool ok;
  sockaddr_un a = Address(socket_path, &ok);
  if (!ok) return Status(Code::kInvalidArgument, "socket path too long");
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno(errno, "socket");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    int err = errno;
    ::close(fd);
    return Status::FromErrno(err, "connect to the mount's control socket " + socket_path);
  }
  std::string line = request + "\n";
  (void)::write(fd, line.data(), line.size());
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

namespace {

constexpr char kUsage[] = R"(Usage: ingestfs status MOUNTPOINT [--json | --summary | --failed] [--follow]
       ingestfs wait MOUNTPOINT [--timeout SECONDS]
       ingestfs retry MOUNTPOINT [--accept-partial PATH]...
       ingestfs unmount MOUNTPOINT [--wait [--timeout SECONDS]] [--force]

  status   the platform's health, then what the mount still has to upload: a table of files
           pending, uploading (with progress) and failed (with the reason), the cache, the
           queue (files and bytes left, rate over the last minute, estimate, the oldest
           waiting) and totals (completed: all confirmed since the mount started). --json:
           the same as JSON; --summary: without the table; --failed: only failed and
           interrupted files with their reasons, and refused operations; --follow: again
           every second (redrawn on a terminal) until interrupted
  wait     waits until nothing is left to upload (files still open for writing count),
           with a progress line on a terminal (files and bytes left, rate, estimate);
           exit 0 when all arrived, 1 when any failed or is interrupted, 2 on timeout (default:
           no timeout)
  retry    puts failed files back in the queue. A file whose writer never finished it (killed,
           a crash, a full disk) is `interrupted` and is not uploaded by a plain retry; with
           --accept-partial PATH, what the cache holds of it is uploaded as the file
  unmount  unmounts once nothing is left to upload, and waits for the daemon to exit; refuses
           (exit 1) while files are open, pending or uploading, unless --wait (drain first;
           exit 2 if --timeout passes) or --force (unmount anyway: the journal keeps them and
           the next mount resumes them). Failed files do not block; they are listed.
)";

int Fail(const std::string& msg, int code = 2) {
  std::cerr << "ingestfs: " << msg << "\n";
  return code;
}

StatusOr<std::string> SocketOf(const std::string& mountpoint) {
  char buf[4096];
  ssize_t n = ::getxattr(mountpoint.c_str(), "user.ingestfs.control", buf, sizeof(buf));
  if (n < 0) {
    return Status::FromErrno(errno, mountpoint + " is not an ingestfs mount (or it is not running)");
  }
  return std::string(buf, static_cast<size_t>(n));
}

StatusOr<json::Document> Query(const std::string& socket, const std::string& request) {
  ASSIGN_OR_RETURN(std::string text, ControlRequest(socket, request));
  return json::Parse(text, "the mount's answer");
}

void PrintTable(const json::Document& doc) { std::fputs(StatusTable(doc).c_str(), stdout); }

struct Idle {
  json::Document status;
  int busy = 0;    // open, pending, uploading or processing
  int failed = 0;
  std::string error;  // the daemon could not be asked
};

// Files that will not arrive without someone acting: failed, and interrupted (not uploaded).
int NeedAction(const json::Value& counts) {
  return static_cast<int>(json::IntOr(counts, "failed") + json::IntOr(counts, "interrupted"));
}

int Busy(const json::Value& counts) {
  return counts["open"].GetInt() + counts["pending"].GetInt() + counts["uploading"].GetInt() +
         counts["processing"].GetInt();
}

// One line on where the queue stands, for a terminal: files and bytes left, rate, estimate.
std::string ProgressLine(const json::Value& status, int busy) {
  std::string queue = QueueText(status, false);
  return "waiting for " + std::to_string(busy) + " file(s)" + (queue.empty() ? "" : ", " + queue);
}

// Polls the daemon until nothing is busy or `timeout` seconds passed (< 0: no limit; 0: ask once).
// With `progress`, a line on stderr says how far the queue is, redrawn in place (a terminal).
Idle WaitIdle(const std::string& socket, double timeout, bool progress = false) {
  Idle idle;
  auto start = std::chrono::steady_clock::now();
  auto drawn = start - std::chrono::seconds(1);
  size_t width = 0;  // of the line drawn last, to blank it
  auto clear = [&] {
    if (width > 0) std::fprintf(stderr, "\r%*s\r", static_cast<int>(width), "");
    width = 0;
  };
  for (;;) {
    auto doc = Query(socket, "status");
    if (!doc.ok()) {
      idle.error = doc.status().message();
      return idle;
    }
    idle.status = std::move(doc).value();
    idle.busy = Busy(idle.status["counts"]);
    idle.failed = NeedAction(idle.status["counts"]);
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (idle.busy == 0 || (timeout >= 0 && waited >= timeout)) {
      clear();
      return idle;
    }
    if (progress && std::chrono::steady_clock::now() - drawn >= std::chrono::milliseconds(500)) {
      std::string line = ProgressLine(idle.status, idle.busy);
      clear();
      std::fprintf(stderr, "%s", line.c_str());
      std::fflush(stderr);
      width = line.size();
      drawn = std::chrono::steady_clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// The daemon's pid, from the lock file of its cache dir (next to the control socket).
pid_t DaemonPid(const std::string& socket) {
  auto text = ReadFileToString(socket.substr(0, socket.rfind('/')) + "/lock");
  if (!text.ok()) return 0;
  auto pid = ParseInt(Trim(*text));
  return pid && *pid > 0 ? static_cast<pid_t>(*pid) : 0;
}

int Unmount(const std::string& mountpoint, const std::string& socket, bool wait, double timeout, bool force) {
  Idle idle = WaitIdle(socket, wait ? timeout : 0);
  if (!idle.error.empty()) return Fail(idle.error, 1);
  if (idle.busy > 0) {
    PrintTable(idle.status);
    if (!force) {
      std::cerr << "ingestfs unmount: " << idle.busy << " file(s) not yet on the platform"
                << (wait ? " after " + std::to_string(static_cast<int>(timeout)) + " s" : "")
                << "; not unmounting. Use --wait to let them drain, or --force to unmount anyway (they stay"
                << " in the journal and the next mount resumes them).\n";
      return wait ? 2 : 1;
    }
    std::cerr << "ingestfs unmount: --force: " << idle.busy
              << " file(s) stay in the journal; the next mount with the same cache dir resumes them\n";
  }
  if (idle.failed > 0) {
    PrintTable(idle.status);
    std::cerr << "ingestfs unmount: " << idle.failed
              << " failed file(s) stay in the journal (ingestfs retry after the next mount)\n";
  }
  pid_t pid = DaemonPid(socket);
  std::vector<char*> args = {const_cast<char*>("fusermount3"), const_cast<char*>("-u"),
                             const_cast<char*>(mountpoint.c_str()), nullptr};
  pid_t child = 0;
  int rc = -1;
  if (::posix_spawnp(&child, "fusermount3", nullptr, nullptr, args.data(), environ) != 0) {
    return Fail("cannot run fusermount3 (is fuse3 installed?)", 1);
  }
  while (::waitpid(child, &rc, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
    return Fail("unmounting " + mountpoint + " failed (is a process still using it? see fuser -m " + mountpoint + ")", 1);
  }
  // The daemon closes its journal and exits once the kernel lets go.
  auto alive = [](pid_t p) {
    if (::kill(p, 0) != 0) return false;
    auto stat = ReadFileToString("/proc/" + std::to_string(p) + "/stat");  // a zombie has exited
    size_t paren = stat.ok() ? stat->rfind(')') : std::string::npos;
    return paren == std::string::npos || paren + 2 >= stat->size() || (*stat)[paren + 2] != 'Z';
  };
  for (int i = 0; pid > 0 && i < 300 && alive(pid); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::cout << "unmounted " << mountpoint << "\n";
  return 0;
}

// The file's place in the mount ("dataset/name") from a PATH given on the command line.
StatusOr<std::string> InMount(const std::string& mountpoint, const std::string& path) {
  char mp[PATH_MAX], abs[PATH_MAX];
  if (::realpath(mountpoint.c_str(), mp) == nullptr) return Status::FromErrno(errno, mountpoint);
  // The folder is resolved, the name is kept as given (it need not be looked up to be named).
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  std::string base = path.substr(path.rfind('/') + 1);
  if (dir.empty()) dir = "/";
  if (::realpath(dir.c_str(), abs) == nullptr) return Status::FromErrno(errno, path);
  std::string full = std::string(abs) + "/" + base, root = std::string(mp) + "/";
  if (full.rfind(root, 0) != 0 || full.size() == root.size()) {
    return Status(Code::kInvalidArgument, path + " is not a file inside " + mountpoint);
  }
  return full.substr(root.size());
}

int AcceptPartial(const std::string& mountpoint, const std::string& socket, const std::vector<std::string>& paths) {
  int failed = 0;
  for (const std::string& p : paths) {
    auto rel = InMount(mountpoint, p);
    StatusOr<json::Document> doc = rel.ok() ? Query(socket, "accept " + *rel) : StatusOr<json::Document>(rel.status());
    std::string err = !doc.ok() ? doc.status().message() : json::StringOr(*doc, "error");
    if (!err.empty()) {
      std::cerr << "ingestfs retry: " << p << ": " << err << "\n";
      ++failed;
    } else {
      std::cout << p << ": accepted as it is; uploading it\n";
    }
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace

int RunControlCommand(int argc, char** argv) {
  std::string cmd = argv[0];
  std::string mountpoint;
  bool json_out = false, wait = false, force = false, follow = false;
  std::string view = "table";  // status: table, summary or failed
  double timeout = -1;
  std::vector<std::string> accept;  // retry --accept-partial PATH
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--json" && cmd == "status") {
      json_out = true;
    } else if (a == "--summary" && cmd == "status") {
      view = "summary";
    } else if (a == "--failed" && cmd == "status") {
      view = "failed";
    } else if (a == "--follow" && cmd == "status") {
      follow = true;
    } else if (a == "--accept-partial" && cmd == "retry") {
      if (i + 1 >= argc) return Fail("--accept-partial takes the PATH of a file in the mount");
      accept.push_back(argv[++i]);
    } else if (a == "--wait" && cmd == "unmount") {
      wait = true;
    } else if (a == "--force" && cmd == "unmount") {
      force = true;
    } else if (a == "--timeout" && (cmd == "wait" || cmd == "unmount") && i + 1 < argc) {
      auto t = ParseRate(argv[++i]);
      if (!t) return Fail("--timeout takes seconds");
      timeout = *t;
    } else if (StartsWith(a, "-")) {
      return Fail("unknown option " + a + "\n" + kUsage);
    } else if (mountpoint.empty()) {
      mountpoint = a;
    } else {
      return Fail("unexpected argument " + a);
    }
  }
  if (mountpoint.empty()) return Fail(std::string("MOUNTPOINT is required\n") + kUsage);
  if (timeout >= 0 && cmd == "unmount" && !wait) return Fail("--timeout goes with --wait");
  auto socket = SocketOf(mountpoint);
  if (!socket.ok()) return Fail(socket.status().message(), cmd == "wait" ? 2 : 1);
  if (cmd == "retry" && !accept.empty()) return AcceptPartial(mountpoint, *socket, accept);
  if (cmd == "retry") {
    auto doc = Query(*socket, "retry");
    if (!doc.ok()) return Fail(doc.status().message(), 1);
    std::printf("%d failed file(s) queued again\n", json::IntOr(*doc, "retried") > 0 ? static_cast<int>(json::IntOr(*doc, "retried")) : 0);
    return 0;
  }
  if (cmd == "status") {
    if (json_out && view != "table") return Fail("--json goes alone (it holds everything)");
    bool tty = ::isatty(STDOUT_FILENO) == 1;
    for (;;) {
      auto text = ControlRequest(*socket, "status");
      if (!text.ok()) return Fail(text.status().message(), 1);
      std::string out;
      if (json_out) {
        out = *text;
      } else {
        auto doc = json::Parse(*text, "the mount's answer");
        if (!doc.ok()) return Fail(doc.status().message(), 1);
        out = view == "failed" ? FailedText(*doc) : StatusTable(*doc, view == "table");
      }
      if (!follow) {
        std::cout << out;
        return 0;
      }
      // A live view: redrawn in place on a terminal, one block after another otherwise.
      if (tty) std::cout << "\033[H\033[2J";
      std::cout << "ingestfs status " << mountpoint << " at " << Iso8601Utc(std::time(nullptr))
                << " (every second; Ctrl-C stops)\n" << out << (tty ? "" : "\n") << std::flush;
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
  if (cmd == "unmount") return Unmount(mountpoint, *socket, wait, timeout, force);
  // wait
  Idle idle = WaitIdle(*socket, timeout, ::isatty(STDERR_FILENO) == 1);
  if (!idle.error.empty()) return Fail(idle.error, 2);
  if (idle.busy > 0) {
    PrintTable(idle.status);
    std::cerr << "ingestfs wait: timed out after " << timeout << " s with " << idle.busy << " file(s) left\n";
    return 2;
  }
  if (idle.failed > 0) {
    PrintTable(idle.status);
    return 1;
  }
  return 0;
}

}  // namespace ingestfs::fs
