#include "common/sync_group.h"

#include <fcntl.h>
#include <unistd.h>

namespace ingestfs {

SyncGroup::SyncGroup(int fd, bool data_only, std::string what)
    : fd_(fd), data_only_(data_only), what_(std::move(what)) {}

Status SyncGroup::Sync() {
  std::unique_lock<std::mutex> lock(mu_);
  uint64_t ticket = ++asked_;
  for (;;) {
    if (covered_ >= ticket) return last_;
    if (!running_) break;
    cv_.wait(lock);
  }
  running_ = true;
  syncs_++;
  uint64_t covers = asked_;  // everyone who asked before this sync starts
  lock.unlock();
  int rc = data_only_ ? ::fdatasync(fd_) : ::fsync(fd_);
  Status st = rc == 0 ? Status::Ok() : Status::FromErrno(errno, (data_only_ ? "fdatasync " : "fsync ") + what_);
  lock.lock();
  running_ = false;
  covered_ = covers;
  last_ = st;
  cv_.notify_all();
  return st;
}

DurableDir::DurableDir(std::string path, UniqueFd fd)
    : path_(std::move(path)), fd_(std::move(fd)), group_(fd_.get(), false, "directory " + path_) {}

StatusOr<std::unique_ptr<DurableDir>> DurableDir::Open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(errno, "open directory " + path);
  return std::unique_ptr<DurableDir>(new DurableDir(path, std::move(fd)));
}

}  // namespace ingestfs
