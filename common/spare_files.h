// SpareFiles: emptied files kept for reuse instead of being removed and made anew.
//
// On some filesystems making a file is the dearest thing the cache does: ext4 without a journal,
// for one, scans past every recently freed inode before it hands out a new one, and a busy mount
// frees one journal file per upload. So a finished upload's files are moved here (one rename)
// and the next upload's files are taken from here (one rename, then emptied by the taker),
// which is what a write-ahead log does with its old segments.
//
// A spare is emptied when given, and its content is never trusted: whoever takes one truncates
// it. A crash between a rename and the truncation leaves a file whose records name another id (journal) or an orphan (data),
// both of which Journal::Open already treats as leftovers.
//
// Thread safety: all methods are thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ingestfs {

class SpareFiles {
 public:
  // `dir` is created if missing; at most `cap` files are kept (the rest are removed).
  SpareFiles(std::string dir, size_t cap);
  // Moves a spare to `dest` (which must not exist) and empties it. False when there is none:
  // the caller makes a new file.
  bool Take(const std::string& dest);
  // Keeps the file at `path`, emptied, as a spare (or removes it when the pool is full, or when
  // the file has other names). After this `path` is gone either way.
  void Give(const std::string& path);
  size_t size() const;

  // Makes spares ahead of need on a thread that runs only when the CPU is otherwise idle
  // (SCHED_IDLE) and no spare was taken for a second, keeping at least `target` (at most the
  // cap) while it can: a burst of new files then takes ready-made ones. With `follow_bursts`
  // the target grows to the largest burst seen (files asked for between two quiet seconds, up
  // to the cap), so that a store that sees bursts of thousands keeps thousands ready, and one
  // that sees a few keeps a few. Stopped by the destructor.
  void StartFiller(size_t target, bool follow_bursts = false);
  size_t target() const;
  ~SpareFiles();

 private:
  void Fill();

  std::string dir_;
  size_t cap_;
  mutable std::mutex mu_;
  static constexpr std::chrono::milliseconds kQuiet{1000};
  std::condition_variable cv_;      // stopping
  std::chrono::steady_clock::time_point last_take_{};  // GUARDED_BY(mu_)
  std::vector<std::string> names_;  // GUARDED_BY(mu_)
  size_t target_ = 0;               // GUARDED_BY(mu_)
  bool follow_bursts_ = false;      // GUARDED_BY(mu_)
  size_t burst_ = 0;                // GUARDED_BY(mu_): asked for since the last quiet second
  bool stopping_ = false;           // GUARDED_BY(mu_)
  std::thread filler_;
};

}  // namespace ingestfs
