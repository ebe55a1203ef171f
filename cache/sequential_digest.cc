#include "cache/sequential_digest.h"

namespace ingestfs::cache {

void SequentialDigest::Add(uint64_t off, const void* data, size_t len, const std::function<void()>& then) {
  std::lock_guard<std::mutex> lock(mu_);
  if (then) then();
  if (!known_ || len == 0) return;
  if (off != next_) {
    known_ = false;  // out of order, a rewrite or a hole
    return;
  }
  sha_.Update(data, len);
  next_ += len;
}

void SequentialDigest::Invalidate() {
  std::lock_guard<std::mutex> lock(mu_);
  known_ = false;
}

std::optional<std::string> SequentialDigest::Finish(uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!known_ || next_ != size) return std::nullopt;
  known_ = false;
  return HexEncode(sha_.Finish());
}

}  // namespace ingestfs::cache
