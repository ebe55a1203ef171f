// HeapTrimmer: gives memory that the process freed back to the system.
//
// glibc's allocator keeps freed memory in its arenas for reuse, and a daemon whose threads
// (FUSE workers, upload workers, HTTP clients) each allocate in an arena of their own ends up
// holding many half-empty arenas: the memory is free inside the process but still counts in its
// RSS, and grows with the files it has handled. At start, LimitArenas caps the arenas; afterwards
// the trimmer's thread calls malloc_trim(0) (which also returns whole free pages in the middle of
// an arena, by madvise) at most once per `every`, only when something sizeable was freed since
// the last trim (Freed) and once more a period later, so an idle mount does no work.
// Thread safety: Freed and trims from any thread; Start and Stop from one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>

namespace ingestfs {

class HeapTrimmer {
 public:
  explicit HeapTrimmer(std::chrono::milliseconds every) : every_(every) {}
  ~HeapTrimmer() { Stop(); }
  HeapTrimmer(const HeapTrimmer&) = delete;
  HeapTrimmer& operator=(const HeapTrimmer&) = delete;
  // Caps glibc's arenas at `arenas`, and serves blocks of `mmap_from` bytes or more by mmap
  // (returned to the system when freed) instead of from an arena (before threads start).
  // glibc otherwise raises that threshold to the largest block freed so far, so buffers of 1 MiB
  // (FUSE's, HTTP's) come to live in the arenas, pin their pages and scatter small objects.
  static void ConfigureAllocator(int arenas, size_t mmap_from);
  void Start();
  void Stop();
  // Notes that `n` things (nodes, listings, buffers) were freed.
  void Freed(uint64_t n = 1);
  uint64_t trims() const;

 private:
  void Loop();
  const std::chrono::milliseconds every_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t freed_ = 0;     // GUARDED_BY(mu_): since the last trim
  uint64_t trims_ = 0;     // GUARDED_BY(mu_)
  bool tail_ = false;      // GUARDED_BY(mu_): one more trim is due a period after the last
  bool stopping_ = false;  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace ingestfs
