// TerminalProgress: a live line per file being uploaded (bytes, rate, ETA, phase), redrawn a few
// times a second on a terminal, and one line when a file ends. Quiet when not a terminal: then
// only what the caller prints at the end is shown.
// Thread safety: the ProgressSink callbacks may come from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "upload/uploader.h"

namespace ingestfs::upload {

class TerminalProgress : public ProgressSink {
 public:
  // `out` must be a terminal for anything to be drawn (checked once).
  explicit TerminalProgress(std::FILE* out);
  ~TerminalProgress() override;

  void OnStart(const cache::Entry& e) override;
  void OnPartProgress(const std::string& id, uint32_t n, uint64_t sent) override;
  void OnPhase(const std::string& id, const std::string& phase) override;
  void OnRetry(const std::string& id, int attempt, const Status& why) override;
  void OnDone(const std::string& id, const Status& result) override;
  // The whole job: an overall line (files and bytes done, rate, ETA) heads the display when it
  // has more than one file; with `per_file_lines` false, a file that ends prints no line of its
  // own unless it failed (thousands of small files, thousands of lines otherwise).
  void SetTotals(size_t files, uint64_t bytes, bool per_file_lines);

  // "12.3 MiB", "45.6 MiB/s", "1m05s".
  static std::string Bytes(double b);
  static std::string Duration(double seconds);

 private:
  struct File {
    std::string label;
    uint64_t size = 0;
    std::map<uint32_t, uint64_t> part_sent;
    uint64_t sent = 0;
    std::string phase = "queued";
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  };
  void Loop();
  void DrawLocked();  // REQUIRES: mu_ held

  std::FILE* out_;
  bool enabled_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, File> files_;  // GUARDED_BY(mu_)
  int drawn_lines_ = 0;                // GUARDED_BY(mu_)
  size_t total_files_ = 0, done_files_ = 0;    // GUARDED_BY(mu_)
  uint64_t total_bytes_ = 0, done_bytes_ = 0;  // GUARDED_BY(mu_)
  bool per_file_lines_ = true;                 // GUARDED_BY(mu_)
  std::chrono::steady_clock::time_point began_ = std::chrono::steady_clock::now();  // GUARDED_BY(mu_)
  bool stop_ = false;                  // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace ingestfs::upload
