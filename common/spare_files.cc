#include "common/spare_files.h"

#include <pthread.h>
#include <sched.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crypto.h"
#include "common/file_util.h"

namespace ingestfs {

SpareFiles::SpareFiles(std::string dir, size_t cap) : dir_(std::move(dir)), cap_(cap) {
  (void)MakeDirs(dir_);
  for (std::string& n : ListDir(dir_).value_or({})) {
    if (names_.size() < cap_) {
      names_.push_back(std::move(n));
    } else {
      ::unlink((dir_ + "/" + n).c_str());
    }
  }
}

bool SpareFiles::Take(const std::string& dest) {
  for (;;) {
    std::string name;
    {
      std::lock_guard<std::mutex> lock(mu_);
      burst_++;
      if (names_.empty()) {
        last_take_ = std::chrono::steady_clock::now();
        return false;
      }
      name = std::move(names_.back());
      names_.pop_back();
      last_take_ = std::chrono::steady_clock::now();
    }
    // RENAME_NOREPLACE: never over an existing file, whatever the caller believed (a plain
    // rename where the filesystem lacks the flag; the caller's names are fresh random ids).
    std::string from = dir_ + "/" + name;
    int rc = ::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, dest.c_str(), RENAME_NOREPLACE);
    if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) rc = ::rename(from.c_str(), dest.c_str());
    if (rc != 0) {
      if (errno == EEXIST) return false;
      continue;  // gone meanwhile (removed by hand): try the next one
    }
    if (::truncate(dest.c_str(), 0) == 0) return true;
    ::unlink(dest.c_str());
    return false;
  }
}

void SpareFiles::Give(const std::string& path) {
  // Only the inode is kept: its bytes go now (a discarded version or a freed part kept whole in
  // here would hold disk space that nothing counts). A file with another name (a hard link, as a
  // published object may be) is never emptied: only this name goes.
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;
  if (!S_ISREG(st.st_mode) || st.st_nlink != 1 || ::truncate(path.c_str(), 0) != 0) {
    ::unlink(path.c_str());
    return;
  }
  std::string name = RandomHex(8);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (names_.size() < cap_ && ::rename(path.c_str(), (dir_ + "/" + name).c_str()) == 0) {
      names_.push_back(std::move(name));
      return;
    }
  }
  ::unlink(path.c_str());
}

SpareFiles::~SpareFiles() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (filler_.joinable()) filler_.join();
}

void SpareFiles::StartFiller(size_t target, bool follow_bursts) {
  if (filler_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    target_ = std::min(target, cap_);
    follow_bursts_ = follow_bursts;
  }
  filler_ = std::thread([this] { Fill(); });
}

size_t SpareFiles::target() const {
  std::lock_guard<std::mutex> lock(mu_);
  return target_;
}

void SpareFiles::Fill() {
  sched_param none{};
  (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &none);  // best effort
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (stopping_) return;
    // Not while files are being made: creating spares then would only compete with the burst
    // they are meant for (for the filesystem's locks and the disk, which SCHED_IDLE does not
    // yield). The burst takes what is ready, then makes its own.
    auto quiet = std::chrono::steady_clock::now() - last_take_;
    if (quiet < kQuiet) {
      cv_.wait_for(lock, kQuiet - quiet, [&] { return stopping_; });
      continue;
    }
    if (follow_bursts_) target_ = std::min(cap_, std::max(target_, burst_));
    burst_ = 0;
    if (names_.size() >= target_) {
      cv_.wait_for(lock, kQuiet, [&] { return stopping_; });
      continue;
    }
    lock.unlock();
    std::string name = RandomHex(8);
    UniqueFd fd(::open((dir_ + "/" + name).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    lock.lock();
    if (!fd.valid()) {  // a full disk, say: try again later, never busy
      cv_.wait_for(lock, std::chrono::seconds(10), [&] { return stopping_; });
      continue;
    }
    names_.push_back(std::move(name));
  }
}

size_t SpareFiles::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return names_.size();
}

}  // namespace ingestfs
