#include "common/heap_trim.h"

#include <malloc.h>

namespace ingestfs {

void HeapTrimmer::ConfigureAllocator(int arenas, size_t mmap_from) {
  ::mallopt(M_ARENA_MAX, arenas);
  ::mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_from));  // also stops its raising
}

void HeapTrimmer::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void HeapTrimmer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void HeapTrimmer::Freed(uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  freed_ += n;
}

uint64_t HeapTrimmer::trims() const {
  std::lock_guard<std::mutex> lock(mu_);
  return trims_;
}

void HeapTrimmer::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, every_, [this] { return stopping_; });
    if (stopping_) break;
    // One more trim a period after the last frees: what they set off (the kernel forgetting
    // pruned inodes, say) is freed a little later.
    bool tail = freed_ == 0 && tail_;
    if (freed_ == 0 && !tail) continue;
    tail_ = !tail;
    freed_ = 0;
    lock.unlock();
    ::malloc_trim(0);
    lock.lock();
    trims_++;
  }
}

}  // namespace ingestfs
