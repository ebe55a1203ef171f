// Scheduler: when and in what order closed files are uploaded, for the mount.
//
// A closed file is scheduled after a settle delay; touching it again (reopen for write, rename,
// unlink) holds or forgets it, and a running upload of it is cancelled. Due files are uploaded
// oldest first (journal order) by a fixed pool of worker threads, so FUSE threads never wait on
// the network. The scheduler also keeps each file's state for extended attributes and status.
//
// Thread safety: all public methods are thread-safe. Lock order: Scheduler::mu_ is never held
// while calling the Uploader, the Journal or a callback.
#pragma once

#include <array>
#include <condition_variable>
#include <functional>
#include <deque>
#include <map>
#include <set>
#include <tuple>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cache/journal.h"
#include "upload/uploader.h"

namespace ingestfs::upload {

// kInterrupted: the writer did not finish this version (killed, crashed, a write failed); it
// is never uploaded unless the user accepts it (AcceptPartial).
enum class FileState { kLocal, kPending, kUploading, kProcessing, kCompleted, kFailed, kInterrupted };
const char* FileStateName(FileState s);

struct FileStatus {
  std::string id;
  std::string dataset;
  std::string name;
  FileState state = FileState::kLocal;
  uint64_t size = 0;
  uint64_t sent = 0;
  std::string error;
  std::string job_id;
  int attempts = 0;      // requests retried for this version so far (counted as they happen)
  int64_t since_ms = 0;  // when it entered this state (unix ms)
  int64_t queued_ms = 0;  // when this version was closed and queued (unix ms); 0 if not queued
  bool stalled = false;   // queued for longer than Options::stale_after without being confirmed
};

class Scheduler : private ProgressSink {
 public:
  struct Options {
    std::chrono::milliseconds settle{2000};
    int workers = 4;
    // A file waiting this long after it was queued (platform unreachable, say) is `stalled`.
    std::chrono::milliseconds stale_after{std::chrono::hours(1)};
    UploaderOptions uploader;
    // Names (dataset-relative) that never go to the platform (the mount's temporary names):
    // such a version is never queued, on any path (close, resume after a crash, retry).
    std::function<bool(const std::string& name)> keep_local;
    // Completed files Snapshot lists (the newest); older ones are only counted (Confirmed).
    size_t keep_completed = 2000;
  };
  // Called (from a worker, without locks) when a file was confirmed by the platform.
  using ConfirmedFn = std::function<void(const cache::Entry&, const UploadOutcome&)>;

  Scheduler(Dialect& dialect, cache::Journal& journal, Options options, ConfirmedFn on_confirmed);
  ~Scheduler() override;

  // Starts the workers and queues, due at once, every closed unfinished journal entry that has
  // not failed and was not interrupted (the resume after a crash, a reboot, an unmount).
  void Start();
  // Stops the workers; running uploads are cancelled and stay in the journal.
  void Stop();

  void Schedule(const std::string& id, std::chrono::milliseconds delay);
  enum class HoldResult { kHeld, kCommitted };
  // Not to be uploaded now (reopened for write, renamed, unlinked). Cancels a running upload and
  // waits until it has stopped. An upload whose `complete` was sent (committed: the platform
  // will hold that version) is stopped too when `stop_committed`, otherwise left running; either
  // way kCommitted says so (the caller must not pretend the version is only local).
  HoldResult Hold(const std::string& id, bool stop_committed = true);
  // Gone (discarded): like Hold, and its state is dropped.
  void Forget(const std::string& id);
  // Shown as failed with `error`, not uploaded (a version the platform cannot take).
  void MarkFailed(const std::string& id, const std::string& error);
  // Shown as interrupted with `reason`, not uploaded (a version the writer did not finish).
  void MarkInterrupted(const std::string& id, const std::string& reason);
  // Failed files go back in the queue, due now (interrupted ones do not). Returns how many.
  int RetryFailed();
  // The user accepts what an interrupted version holds: it is closed as it is and queued.
  Status AcceptPartial(const std::string& id);

  // Files confirmed since the scheduler started (all of them, not only the latest
  // Options::keep_completed that Snapshot lists), and the rate over the last minute.
  struct Confirmations {
    uint64_t files = 0, bytes = 0;
    double files_per_s = 0, bytes_per_s = 0;
  };
  Confirmations Confirmed() const;

  std::optional<FileStatus> Get(const std::string& id) const;
  std::vector<FileStatus> Snapshot() const;
  // Nothing pending, uploading or processing.
  bool Idle() const;
  // Blocks until `id` is neither queued nor uploading (or the timeout) and returns its state.
  std::optional<FileState> WaitSettled(const std::string& id, std::chrono::milliseconds timeout) const;
  // Blocks until Idle() or the timeout; true when idle.
  bool WaitIdle(std::chrono::milliseconds timeout) const;

 private:
  struct Item {
    FileStatus status;
    int64_t seq = 0;
    std::chrono::steady_clock::time_point due;
    bool queued = false;
    bool running = false;
    bool cancel = false;  // asked to stop the running upload
    bool committed = false;  // the running upload sent `complete` (Commit)
    std::map<uint32_t, uint64_t> part_sent;
  };
  void Loop();
  void SetState(Item& item, FileState s);  // REQUIRES: mu_ held
  void PruneCompletedLocked();              // REQUIRES: mu_ held
  void NoteConfirmedLocked(uint64_t bytes);  // REQUIRES: mu_ held
  // Queues the item, due at `due` (again, if it was queued); false, and not queued, for a name
  // that stays local (Options::keep_local). REQUIRES: mu_ held
  bool Enqueue(const std::string& id, Item& item, std::chrono::steady_clock::time_point due);
  void Unqueue(const std::string& id, Item& item);  // REQUIRES: mu_ held
  // Wakes one idle worker, if any is idle. REQUIRES: mu_ held
  void WakeWorker() {
    if (idle_workers_ > 0) work_cv_.notify_one();
  }
  bool IdleLocked() const { return waiting_.empty() && ready_.empty() && running_ == 0; }
  // The item of `id` (made if new), with the journal entry's name, size and order. REQUIRES: mu_
  Item& ItemFor(const std::string& id, const std::optional<cache::Entry>& e);
  bool StalledLocked(const Item& item, int64_t now_ms) const;  // REQUIRES: mu_ held
  // kInterrupted, or kLocal for a temporary name (Options::keep_local).
  FileState InterruptedState(const std::string& name) const;
  // ProgressSink (called by the uploader from workers).
  void OnPartProgress(const std::string& id, uint32_t n, uint64_t sent) override;
  void OnPhase(const std::string& id, const std::string& phase) override;
  bool Commit(const std::string& id) override;
  void OnRetry(const std::string& id, int attempt, const Status& why) override;

  cache::Journal& journal_;
  Options opts_;
  ConfirmedFn on_confirmed_;
  std::unique_ptr<Uploader> uploader_;
  mutable std::mutex mu_;
  // Two kinds of waiter, two condition variables: a state change (several per file) wakes only
  // those waiting for a state (WaitSettled, WaitIdle, Hold), and new work wakes one idle worker,
  // which wakes the next if more is due. One variable for both woke every idle worker at every
  // change of every file, which was most of what a burst of small files cost the process.
  mutable std::condition_variable state_cv_;  // states, running uploads ending
  std::condition_variable work_cv_;           // queue changes, for workers
  int idle_workers_ = 0;                      // GUARDED_BY(mu_): workers waiting on work_cv_
  std::map<std::string, Item> items_;    // GUARDED_BY(mu_)
  // Queued items not yet due by (due, seq, id), and due ones by arrival (seq, id): a worker picks
  // the oldest due file without walking every file the mount has seen (a burst of thousands of
  // files waiting out `settle` would otherwise cost each wake-up of each worker a full scan).
  // Completed items in the order they completed, for pruning.
  std::set<std::tuple<std::chrono::steady_clock::time_point, int64_t, std::string>> waiting_;  // GUARDED_BY(mu_)
  std::set<std::pair<int64_t, std::string>> ready_;  // GUARDED_BY(mu_)
  std::deque<std::string> completed_;                // GUARDED_BY(mu_)
  // Confirmations: totals, and per second of the last minute (by unix second modulo 60).
  struct Second {
    int64_t at = 0;
    uint64_t files = 0, bytes = 0;
  };
  uint64_t confirmed_files_ = 0, confirmed_bytes_ = 0;  // GUARDED_BY(mu_)
  int64_t first_confirmed_at_ = 0;                      // GUARDED_BY(mu_): unix seconds
  std::array<Second, 60> recent_{};                     // GUARDED_BY(mu_)
  int running_ = 0;                                  // GUARDED_BY(mu_)
  bool stopping_ = false;                // GUARDED_BY(mu_)
  std::vector<std::thread> workers_;
};

}  // namespace ingestfs::upload
