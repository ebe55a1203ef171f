#include "upload/rate_limiter.h"

#include <algorithm>
#include <thread>

namespace ingestfs::upload {

RateLimiter::RateLimiter(uint64_t bytes_per_sec)
    : rate_(bytes_per_sec),
      burst_(std::max(16384.0, static_cast<double>(rate_) / 4)),
      tokens_(burst_),
      last_(std::chrono::steady_clock::now()) {}

void RateLimiter::SetRate(uint64_t bytes_per_sec) {
  std::lock_guard<std::mutex> lock(mu_);
  rate_ = bytes_per_sec;
  burst_ = std::max(16384.0, static_cast<double>(rate_) / 4);
  tokens_ = std::min(tokens_, burst_);
  last_ = std::chrono::steady_clock::now();
}

size_t RateLimiter::Take(size_t want) {
  double wait_s = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (rate_ == 0) return std::max<size_t>(1, want);
    want = std::max<size_t>(1, std::min(want, static_cast<size_t>(burst_)));
    auto now = std::chrono::steady_clock::now();
    double elapsed = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    tokens_ = std::min(burst_, tokens_ + elapsed * static_cast<double>(rate_));
    tokens_ -= static_cast<double>(want);
    if (tokens_ < 0) wait_s = -tokens_ / static_cast<double>(rate_);
  }
  if (wait_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait_s));
  return want;
}

}  // namespace ingestfs::upload
