// RateLimiter: one upload speed cap shared by every transfer of a process (-o bwlimit, and
// --bwlimit of `ingestfs upload`), so that a lab's link keeps room for its instruments however
// many files and parts are in flight.
//
// A token bucket that may go into debt: Take(n) grants n bytes at once (at most one burst) and
// the caller sleeps until the bucket has paid for them. Thread safety: all methods.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace ingestfs::upload {

class RateLimiter {
 public:
  // 0: no cap (until SetRate).
  explicit RateLimiter(uint64_t bytes_per_sec);
  // Blocks as long as the cap requires; returns how many of `want` bytes to send now (> 0).
  size_t Take(size_t want);
  // A new cap (0: none) for what is taken from now on (a timetable's change, -o bwlimit=).
  void SetRate(uint64_t bytes_per_sec);
  uint64_t rate() const {
    std::lock_guard<std::mutex> lock(mu_);
    return rate_;
  }

 private:
  mutable std::mutex mu_;
  uint64_t rate_;         // GUARDED_BY(mu_); 0: no cap
  double burst_;          // GUARDED_BY(mu_): bytes; a quarter second's worth, at least 16 KiB
  double tokens_;                                 // GUARDED_BY(mu_)
  std::chrono::steady_clock::time_point last_;    // GUARDED_BY(mu_)
};

}  // namespace ingestfs::upload
