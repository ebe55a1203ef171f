// Processor: what the platform does after `complete`. Worker threads take pending jobs, move
// them to `processing`, wait the configured processing delay, assemble the parts (or take the
// single object), check sizes, compute SHA-256, publish the object durably under the file's
// final key, and mark the job `completed` with the new file version in one log record; any
// failure marks the job `failed` with a message. Jobs found pending or processing at start
// (a restart) are queued again, in the order their complete was accepted.
//
// Jobs of one file: one at a time (a per-file slot held from assembly to publish), and never an
// older one over a newer: a job whose complete was accepted before the one that stored the
// file's current content fails as superseded and stores nothing. (The spec is silent on
// concurrent uploads of one file; a platform keeps the last accepted, as S3 keeps the last PUT.)
// Thread safety: Enqueue is thread-safe; Start/Stop from the owning thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "server/context.h"

namespace ingestfs::server {

class Processor {
 public:
  explicit Processor(ServerContext& ctx) : ctx_(ctx) {}
  ~Processor() { Stop(); }
  void Start(int workers);
  void Stop();
  void Enqueue(const std::string& job_id);
  // Processes a pending job on the calling thread (dialects whose complete, or whose upload,
  // answers only once the file is stored: sbg, aplos).
  void ProcessNow(const std::string& job_id) { Process(job_id); }

  // The final key of a file in a dataset.
  static std::string FinalKey(const std::string& dataset_id, const std::string& filename) {
    return "datasets/" + dataset_id + "/" + filename;
  }

 private:
  void Loop();
  void Process(const std::string& job_id);
  // Over an external S3 store: completes the upload there, reads the object back for its
  // SHA-256 and publishes it at its staging key. Store errors are retried a few times.
  void ProcessInStore(const std::string& job_id, const Job& job);
  // Sleeps `ms` unless the processor stops meanwhile (then false).
  bool Pause(int ms);
  // Holds the slot of one file (dataset, name) while its job is processed; false when stopping.
  bool AcquireFile(const std::string& key);
  void ReleaseFile(const std::string& key);

  ServerContext& ctx_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;  // GUARDED_BY(mu_)
  std::set<std::string> busy_files_;  // GUARDED_BY(mu_): files a worker is processing a job of
  std::condition_variable file_cv_;   // a file's slot freed
  bool stopping_ = false;          // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

}  // namespace ingestfs::server
