// The FUSE low-level adapter: each operation calls IngestFs and turns its result into a reply.
// Status becomes errno in exactly one place (ErrnoOf). No exception escapes into libfuse, and no
// lock is held across a fuse_reply_* call.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "common/status.h"
#include "fs/ingest_fs.h"

namespace ingestfs::fs {

// The operations table; the session's userdata must be the IngestFs.
const fuse_lowlevel_ops* FuseOps();
int ErrnoOf(const Status& st);

// Tells the kernel, from a thread of its own, that it may drop its cached entries of files the
// mount no longer needs it to hold (fuse_lowlevel_notify_inval_entry): a confirmed file then
// gets its FORGET and leaves only a listing entry behind, however much memory the machine has.
// Never from a request's thread: the kernel takes the folder's lock for it, which a request in
// that folder may hold. Thread safety: Add from any thread; Start and Stop from one.
class KernelForget {
 public:
  explicit KernelForget(fuse_session* se) : se_(se) {}
  ~KernelForget() { Stop(); }
  KernelForget(const KernelForget&) = delete;
  KernelForget& operator=(const KernelForget&) = delete;
  void Start();
  void Stop();
  // Never blocks; past kMaxQueued the entry is left to the kernel's own reclaim.
  void Add(uint64_t parent, const std::string& name);

 private:
  static constexpr size_t kMaxQueued = 100000;
  void Loop();
  fuse_session* se_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<uint64_t, std::string>> queue_;  // GUARDED_BY(mu_)
  bool stopping_ = false;                              // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace ingestfs::fs
