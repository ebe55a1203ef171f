// CacheSpace: keeps the cache's file content under a bound (-o cache_max) and the disk holding
// it above a floor of free space (-o cache_min_free), so that a mount never fills the disk.
//
// Counted: data/ (versions not yet confirmed: never evicted) and read/ (copies of platform
// content, downloaded or confirmed: evicted least recently used first). The journal, logs and
// receipts are small and not counted. A writer asks for room before its bytes go to disk: room
// is made by evicting, and when only unconfirmed bytes are left it waits (uploads confirming
// turn them into evictable copies) at most `wait`, then gets ENOSPC. Never EIO.
//
// Thread safety: all methods.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <utility>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace ingestfs::cache {

class CacheSpace {
 public:
  struct Options {
    uint64_t max_bytes = 0;  // 0: no bound on the content
    uint64_t min_free = 0;   // bytes the disk must keep free (0: none)
    std::chrono::milliseconds wait{60000};
  };
  struct Usage {
    uint64_t pending = 0;  // data/
    uint64_t cached = 0;   // read/
    uint64_t free = 0;     // available on the disk holding the cache
    // Current(versions) only: what the given files (the journal's versions) hold, counted as
    // `pending` is. Equal to `pending` unless data/ holds bytes that belong to no version.
    uint64_t held = 0;
  };

  CacheSpace(std::string cache_dir, Options options);
  // Room for `bytes` more (see above). `what` names the file for the log and the error.
  // Fails with kResourceExhausted (errno ENOSPC) after the wait.
  Status Reserve(uint64_t bytes, const std::string& what);
  // A measure at most a second old (lists the cache: for status, not for every write). With
  // `versions`, the files they name are measured in the same pass (Usage::held).
  Usage Current(const std::function<std::vector<std::string>()>& versions = nullptr);
  // Marks a copy in read/ as just used (eviction goes by least recent use).
  static void Touch(const std::string& path);
  const Options& options() const { return opts_; }

 private:
  // Free space; with `content`, also the bytes in data/ and read/.
  Usage Scan(bool content) const;
  // The last scan (again when `fresh` or older than 200 ms) plus the rooms granted lately.
  Usage MeasureLocked(bool fresh);  // REQUIRES: mu_
  bool Fits(const Usage& u, uint64_t bytes) const;
  // Removes the least recently used copies in read/ (not those touched in the last 2 s, which
  // may be downloads in progress) until `bytes` are freed; returns what was freed.
  uint64_t Evict(uint64_t bytes);

  const std::string dir_;
  const Options opts_;
  std::mutex mu_;
  Usage last_;                                       // GUARDED_BY(mu_)
  std::chrono::steady_clock::time_point scanned_{};  // GUARDED_BY(mu_)
  // Rooms granted lately (time, bytes): they count until a scan surely sees them written.
  std::deque<std::pair<std::chrono::steady_clock::time_point, uint64_t>> granted_;  // GUARDED_BY(mu_)
  bool warned_ = false;                              // GUARDED_BY(mu_)
  Usage listed_;                                     // GUARDED_BY(mu_): Current()'s last listing
  std::chrono::steady_clock::time_point listed_at_{};  // GUARDED_BY(mu_)
};

}  // namespace ingestfs::cache
