// Uploader: takes one journaled file from the cache to "confirmed by the platform".
//
//   presign (or, for a journaled session, fresh URLs for the same job)
//   -> parts in parallel, each with Content-MD5, its ETag checked against the local MD5,
//      recorded in the journal as it is stored (parts already stored are never sent again)
//   -> complete with the ordered ETags -> follow the job -> check the platform's sha256
//   -> journal `confirmed` (which releases the cache copy).
// Transient failures are retried (RetryPolicy); an expired URL gets fresh URLs; a session the
// platform lost (InvalidPart, no URL refresh, wrong sha256) is begun again a bounded number of
// times; permanent errors (401, 403, 422, ...) stop that file with the server's message, recorded
// as `failed` in the journal.
//
// Thread safety: Upload() may run for different entries on several threads at once.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "cache/journal.h"
#include "upload/dialect.h"
#include "upload/metrics.h"
#include "upload/retry.h"

namespace ingestfs::upload {

class RateLimiter;

// What the uploader tells whoever shows progress. Calls come from worker threads.
class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  virtual void OnStart(const cache::Entry&) {}
  // Bytes of part `n` sent so far in its current attempt.
  virtual void OnPartProgress(const std::string& /*id*/, uint32_t /*n*/, uint64_t /*sent*/) {}
  virtual void OnPhase(const std::string& /*id*/, const std::string& /*phase*/) {}
  // Asked just before `complete` is sent, the point after which the platform will hold the
  // version: false (the upload was cancelled meanwhile) stops it there. Whoever answers true has
  // to treat the upload as committed from then on.
  virtual bool Commit(const std::string& /*id*/) { return true; }
  virtual void OnRetry(const std::string& /*id*/, int /*attempt*/, const Status& /*why*/) {}
  virtual void OnDone(const std::string& /*id*/, const Status& /*result*/) {}
};

struct UploaderOptions {
  int parallel = 4;  // parts in flight per file
  RetryPolicy retry;
  // The first look at the job goes after a learnt delay (FirstLookDelay); then this, doubling.
  std::chrono::milliseconds poll_initial{5};
  std::chrono::milliseconds poll_max{1000};
  int max_restarts = 3;  // new sessions for one file before it fails
  // A job the platform has not finished this long after it took the upload (complete accepted)
  // is taken as lost: the file goes again through a fresh presign (or reupload).
  std::chrono::milliseconds job_timeout{std::chrono::minutes(5)};
  bool keep_confirmed = false;  // move confirmed copies to the read cache instead of removing them
  RateLimiter* limiter = nullptr;  // shared upload speed cap for part bodies (not owned)
  UploadMetrics* metrics = nullptr;  // counts and latencies for -o metrics= (not owned)
};

struct UploadOutcome {
  Status status;
  std::string job_id;
  std::string remote_sha256;
  int attempts = 0;  // requests retried for this file, all steps together
  std::string kept_path;  // with keep_confirmed: where the confirmed bytes are now
};

// "NAME is N bytes; the P platform takes at most M bytes in one upload": for the uploader and the
// mount (which refuses such a file when it is closed).
std::string TooLargeMessage(const Dialect& dialect, const std::string& name, uint64_t size);

class Uploader {
 public:
  Uploader(Dialect& dialect, cache::Journal& journal, UploaderOptions options, ProgressSink* progress);
  // `cancelled`, when given, is polled between steps: once it returns true the upload stops
  // with kCancelled, which is not recorded as a failure, and the job so far is aborted, unless
  // `stopping` says the process is stopping: then the journal keeps the session and the next
  // start resumes that job (aborting it made the resume fail as "rejected").
  UploadOutcome Upload(const std::string& entry_id, std::function<bool()> cancelled = nullptr,
                       std::function<bool()> stopping = nullptr);
  // Makes waits end early (shutdown). Journaled state stays; a later run resumes.
  void Cancel() { cancelled_ = true; }

 private:
  struct Run;  // one file's upload in progress
  bool Cancelled(const Run& run) const;
  Status Step(Run& run, const std::string& what, const std::function<Status()>& fn);
  Status BeginSession(Run& run);
  Status SendParts(Run& run);
  Status SendOnePart(Run& run, uint32_t n, std::string* etag);
  Status RefreshTargets(Run& run, uint64_t seen_generation);
  // Part n's target: the one in hand while it has not expired, else a fresh one.
  StatusOr<PartTarget> TargetOf(Run& run, uint32_t n, uint64_t* generation);
  void ForgetTarget(Run& run, uint32_t n);
  Status Follow(Run& run, JobState* final_state);
  // The file enters step `phase`: the progress display hears it, and a debug log line names it.
  void Phase(const Run& run, const char* phase);

  Dialect& dialect_;
  cache::Journal& journal_;
  UploaderOptions opts_;
  ProgressSink* progress_;
  std::atomic<bool> cancelled_{false};
  FirstLookDelay single_look_{std::chrono::milliseconds(50)};
  FirstLookDelay multipart_look_{std::chrono::milliseconds(50)};
  JobPace pace_;
};

}  // namespace ingestfs::upload
