// The FUSE low-level adapter: each operation calls IngestFs and turns its result into a reply.
// Status becomes errno in exactly one place (ErrnoOf). No exception escapes into libfuse, and no
// lock is held across a fuse_reply_* call.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "common/status.h"
#include "fs/ingest_fs.h"

namespace ingestfs::fs {

// The operations table; the session's userdata must be the IngestFs.
const fuse_lowlevel_ops* FuseOps();
int ErrnoOf(const Status& st);

// Asks the kernel, from a thread of its own and in batches, to drop its cached dentries and
// inodes of files the mount no longer needs it to hold (FUSE_NOTIFY_PRUNE, Linux 6.18): the ones
// nothing uses are evicted, their FORGET comes, and a confirmed file leaves only its listing
// entry behind, however much memory the machine has. Unlike an entry invalidation it takes no
// folder lock (entries in use are skipped), so it cannot wait on a request the daemon has not
// answered. On a kernel without it the first batch is refused (EINVAL) and the kernel's own
// reclaim does the work. Thread safety: Add from any thread; Start and Stop from one.
class KernelPrune {
 public:
  explicit KernelPrune(fuse_session* se) : se_(se) {}
  ~KernelPrune() { Stop(); }
  KernelPrune(const KernelPrune&) = delete;
  KernelPrune& operator=(const KernelPrune&) = delete;
  void Start();
  void Stop();
  // Never blocks; past kMaxQueued the inode is left to the kernel's own reclaim.
  void Add(uint64_t ino);
  // Inodes asked about so far; false once the kernel refused the notification.
  uint64_t asked() const;
  bool supported() const;

 private:
  static constexpr size_t kMaxQueued = 100000;
  static constexpr size_t kBatch = 512;
  void Loop();
  fuse_session* se_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<uint64_t> queue_;  // GUARDED_BY(mu_)
  bool stopping_ = false;        // GUARDED_BY(mu_)
  bool supported_ = true;        // GUARDED_BY(mu_)
  uint64_t asked_ = 0;           // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace ingestfs::fs
