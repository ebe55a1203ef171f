// Test harness: child processes started by a test and ended by pid (never by name), and
// temporary directories that are removed afterwards.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace ingestfs::testing {

// A fresh directory under $TMPDIR (or /tmp), removed in the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A child process with its stdout on a pipe and stderr to a file.
class Child {
 public:
  Child() = default;
  ~Child() { Stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Starts argv[0] with argv; stderr goes to `stderr_path` (empty: inherited); `env` entries
  // ("NAME=value") are added to the environment.
  bool Start(const std::vector<std::string>& argv, const std::string& stderr_path,
             const std::vector<std::string>& env = {});
  // Everything the child wrote to stdout until it closed it (or `timeout`).
  std::string ReadAll(std::chrono::milliseconds timeout);
  // Reads one line from the child's stdout, waiting at most `timeout`. Empty on timeout/EOF.
  std::string ReadLine(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to 10 s, then SIGKILL. Returns the exit status (waitpid form), or -1.
  int Stop();
  // SIGKILL now and reap.
  void Kill();
  // Before Start: the child leads a process group of its own, so that KillGroup ends what it
  // started too (rsync's receiver and generator outlive a killed rsync otherwise, and go on
  // writing wherever their paths now lead).
  void InOwnGroup() { own_group_ = true; }
  // SIGKILL to the child's whole group (Kill without InOwnGroup), reap the child, and wait until
  // no process of the group is left (at most 10 s).
  void KillGroup();
  // Waits for the child to exit by itself; -1 on timeout.
  int Wait(std::chrono::milliseconds timeout);
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  bool own_group_ = false;
  std::string buffered_;
};

// A TCP port of 127.0.0.1 free a moment ago (for a server that needs its port named up front).
int FreeLoopbackPort();
// Whether something accepts TCP connections on 127.0.0.1:port.
bool AcceptsOnLoopback(int port);

std::string RandomBytes(size_t n, uint64_t seed);
std::string Sha256Hex(const std::string& data);
std::string FileSha256Hex(const std::string& path);
// Writes `size` pseudo-random bytes to `path` in 1 MiB blocks.
void WriteRandomFile(const std::string& path, uint64_t size, uint64_t seed);
std::string SourceDir();
std::string BinDir();
// A field of /proc/PID/status in KiB ("VmRSS:", "VmHWM:"); -1 when it cannot be read.
long ProcStatusKiB(pid_t pid, const char* field);

// A benchmark's one optional argument, a size in MiB: `dflt` when absent. --help prints `usage`
// and exits 0; anything but a positive whole number exits 2 with a message naming it.
uint64_t SizeMibArg(int argc, char** argv, uint64_t dflt, const char* usage);

}  // namespace ingestfs::testing
