// SyncGroup: one fsync(2) shared by every thread that asked for it while another was running.
//
// Many uploads finishing at once each append to the same file (or add names to the same
// directory) and each need that durable before going on. A caller's writes are covered by any
// sync that *starts* after it asked, so while one sync runs the callers that arrive queue up and
// the next sync serves all of them ("group commit"): N syncs in flight become about two.
//
// Thread safety: all methods are thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "common/file_util.h"
#include "common/status.h"

namespace ingestfs {

class SyncGroup {
 public:
  // Syncs `fd` (not owned; it must outlive this object) with fdatasync, or with fsync when
  // `data_only` is false (directories). `what` names it in errors.
  SyncGroup(int fd, bool data_only, std::string what);
  // Returns once everything written to the fd before the call is durable.
  Status Sync();
  // How many syncs were made (for tests and figures).
  uint64_t syncs() const {
    std::lock_guard<std::mutex> lock(mu_);
    return syncs_;
  }

 private:
  int fd_;
  bool data_only_;
  std::string what_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t syncs_ = 0;    // GUARDED_BY(mu_)
  uint64_t asked_ = 0;    // GUARDED_BY(mu_): tickets handed out
  uint64_t covered_ = 0;  // GUARDED_BY(mu_): tickets covered by the last finished sync
  bool running_ = false;  // GUARDED_BY(mu_)
  Status last_;           // GUARDED_BY(mu_): the last finished sync's result
};

// A directory kept open, and synced through a SyncGroup: the names made in it become durable.
class DurableDir {
 public:
  static StatusOr<std::unique_ptr<DurableDir>> Open(const std::string& path);
  Status Sync() { return group_.Sync(); }
  const std::string& path() const { return path_; }

 private:
  DurableDir(std::string path, UniqueFd fd);
  std::string path_;
  UniqueFd fd_;
  SyncGroup group_;
};

}  // namespace ingestfs
