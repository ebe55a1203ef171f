// Durable local file operations. Every "publish" follows one recipe: write a temp file in the
// same directory, fsync it, rename it over the target, fsync the directory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>
#include <string_view>

#include "common/status.h"

namespace ingestfs {

// An owned file descriptor; closes on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.Release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = o.Release();
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset();

 private:
  int fd_ = -1;
};

Status MakeDirs(const std::string& path, unsigned mode = 0755);
Status FsyncDir(const std::string& dir);
std::string DirName(const std::string& path);
// Writes `data` to `path` atomically and durably (temp + fsync + rename + dir fsync).
Status WriteFileAtomic(const std::string& path, std::string_view data);
// Renames `from` over `to` and fsyncs the directory of `to`.
Status RenameDurable(const std::string& from, const std::string& to);
StatusOr<std::string> ReadFileToString(const std::string& path);
// Full write at the current offset, retrying short writes and EINTR.
Status WriteAll(int fd, const void* data, size_t len, const std::string& what);
// Full positional read of `len` bytes (short only at end of file); returns bytes read.
StatusOr<size_t> PreadAll(int fd, void* data, size_t len, uint64_t offset, const std::string& what);
Status RemoveTree(const std::string& path);
// The names in a directory (not . and ..), in no particular order.
StatusOr<std::vector<std::string>> ListDir(const std::string& dir);
bool PathExists(const std::string& path);
// One process per directory: flock(2)s DIR/lock (made if missing) and writes this process's pid
// into it. When another process holds it: kFailedPrecondition, "<what> is in use by <holder>"
// with the holder's pid when the file names one.
StatusOr<UniqueFd> LockDir(const std::string& dir, const std::string& what, const std::string& holder);
// Replaces the content of a lock file with this process's pid (after a daemon's fork).
void WritePid(int lock_fd);

}  // namespace ingestfs
