// MetaStore: the reference server's catalogue (datasets, files and their versions, upload jobs,
// multipart uploads), kept in memory and made durable by an append-only log.
//
// Log format (data-dir/meta.log): one record a line, "<crc32 as 8 hex> <json>\n", appended and
// fdatasync'ed before the mutation is visible. Replay skips a torn last line and reports (and
// skips) a corrupt line elsewhere instead of crashing. On open the log is compacted: the live
// state is written to a temp file, fsynced and renamed over the log.
//
// Thread safety: every public method is thread-safe (one mutex, never held across file I/O
// other than the log append).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/json.h"
#include "common/record_log.h"
#include "common/sync_group.h"
#include "common/status.h"

namespace ingestfs::server {

struct Dataset {
  std::string id;
  std::string name;
  std::string created_at;
};

struct FileRecord {
  std::string dataset_id;
  std::string filename;
  uint64_t size = 0;
  std::string sha256;
  std::string etag;  // quoted, as S3 returns it
  std::string updated_at;
  int64_t version = 0;
  std::string s3_key;
  uint64_t accepted = 0;  // the `accepted` order of the job that stored this content (not served)
};

enum class JobStatus { kAwaitingUpload, kPending, kProcessing, kCompleted, kFailed };
const char* JobStatusName(JobStatus s);

struct Job {
  std::string job_id;
  std::string dataset_id;
  std::string filename;
  std::string content_type;
  uint64_t size = 0;
  JobStatus status = JobStatus::kAwaitingUpload;
  std::string message;
  std::string staging_key;  // where the client's bytes go
  std::string upload_id;    // S3 multipart upload id; empty for a single PUT
  uint64_t part_size = 0;
  uint32_t num_parts = 1;
  bool reupload = false;
  std::string sha256;  // set when completed
  int64_t version = 0;  // the file's version it produced; set when completed
  // Where its `complete` came in the order of all accepted completes (1, 2, ...; 0 before, and
  // in logs written before the order was kept). Jobs of one file publish in this order.
  uint64_t accepted = 0;
  std::string created_at;
  std::string updated_at;
  std::string dialect = "ingest";  // which API started it: ingest, sbg, aplos
  std::map<uint32_t, std::string> reported;  // sbg: part number -> the ETag the client reported
};

struct MultipartUpload {
  std::string upload_id;
  std::string bucket;
  std::string key;
  std::string created_at;
};

struct Page {
  int64_t offset = 0;
  int64_t limit = 100;
};

class MetaStore {
 public:
  // Opens (creating if needed) the store in `dir`; replays and compacts the log.
  // `warnings` receives one line per skipped record.
  static StatusOr<std::unique_ptr<MetaStore>> Open(const std::string& dir, std::vector<std::string>* warnings);

  // Datasets.
  StatusOr<Dataset> CreateDataset(const std::string& name);  // kAlreadyExists when taken
  std::optional<Dataset> GetDataset(const std::string& id) const;
  std::optional<Dataset> FindDatasetByName(const std::string& name) const;
  std::vector<Dataset> ListDatasets(Page page, int64_t* total) const;

  // Files.
  std::optional<FileRecord> GetFile(const std::string& dataset_id, const std::string& filename) const;
  std::vector<FileRecord> ListFiles(const std::string& dataset_id, Page page, int64_t* total) const;

  // Jobs.
  Status PutJob(const Job& job);
  std::optional<Job> GetJob(const std::string& job_id) const;
  std::vector<Job> JobsIn(JobStatus status) const;
  // sbg: records the ETag a client reported for a part of a job still awaiting its upload
  // (kNotFound, or kFailedPrecondition with the job's status).
  Status ReportPart(const std::string& job_id, uint32_t part_number, const std::string& etag);
  // Moves a job from `from` to `to` atomically; returns the job as it was before, or
  // kFailedPrecondition (with the job's current status in the message) when it was not in `from`.
  // With `durable` false the record is written but not synced: for a step a crash may forget
  // (the next synced change, or the replay, covers it), as `processing`, which a restart turns
  // back into `pending` anyway. Accepting an upload (awaiting_upload -> pending) gives the job
  // the next place in the order of accepted uploads (Job::accepted).
  StatusOr<Job> TransitionJob(const std::string& job_id, JobStatus from, JobStatus to, const std::string& message,
                              bool durable = true);
  // Accepts a job's upload (awaiting_upload -> pending, "Upload received"), whichever dialect
  // brought it (a complete call, or aplos's POST), so each takes its place in one order. `size`,
  // when given, becomes the job's size (aplos learns it from the POST). Errors as TransitionJob.
  StatusOr<Job> AcceptUpload(const std::string& job_id, std::optional<uint64_t> size = std::nullopt);
  // Publishes a job's file: the file's version grows by one and the job becomes completed, in
  // one log record. kFailedPrecondition when the job is superseded.
  StatusOr<FileRecord> PublishJob(const std::string& job_id, FileRecord file);
  // True when the file already holds content from a job whose complete was accepted after this
  // job's: storing this job's bytes now would put an older upload over a newer one.
  bool Superseded(const std::string& job_id) const;

  // Multipart uploads.
  Status PutUpload(const MultipartUpload& upload);
  Status DeleteUpload(const std::string& upload_id);
  std::optional<MultipartUpload> GetUpload(const std::string& upload_id) const;

  // fdatasyncs of the log so far (for tests).
  uint64_t log_syncs() const { return log_sync_->syncs(); }

 private:
  MetaStore() = default;
  void Apply(const json::Value& record);  // REQUIRES: mu_ held or single-threaded replay
  // Writes a record, synced when the Change ends unless `durable` is false (then a later synced
  // record of the same log covers it). REQUIRES: mu_ held, through a Change.
  Status Append(const std::string& record_json, bool durable = true);
  // One change: holds mu_, and once it lets go, makes the records appended meanwhile durable
  // before the caller goes on (to answer its request). Concurrent changes share one fdatasync
  // (group commit); a reader may see a change a moment before it is durable, never its writer's
  // answer.
  class Change {
   public:
    explicit Change(MetaStore* store) : store_(store), lock_(store->mu_) {}
    ~Change();
    Change(const Change&) = delete;
    Change& operator=(const Change&) = delete;

   private:
    MetaStore* store_;
    std::unique_lock<std::mutex> lock_;
  };
  std::string SnapshotLocked() const;

  std::string dir_;
  mutable std::mutex mu_;
  std::unique_ptr<RecordWriter> log_;                       // GUARDED_BY(mu_)
  std::unique_ptr<SyncGroup> log_sync_;
  bool unsynced_ = false;                                   // GUARDED_BY(mu_)
  std::vector<std::string> dataset_order_;                  // GUARDED_BY(mu_)
  std::map<std::string, Dataset> datasets_;                 // GUARDED_BY(mu_), by id
  std::map<std::string, std::string> dataset_by_name_;      // GUARDED_BY(mu_)
  std::map<std::string, std::map<std::string, FileRecord>> files_;  // GUARDED_BY(mu_)
  std::map<std::string, Job> jobs_;                         // GUARDED_BY(mu_)
  std::map<std::string, MultipartUpload> uploads_;          // GUARDED_BY(mu_)
  uint64_t last_accepted_ = 0;                              // GUARDED_BY(mu_): highest Job::accepted
  bool SupersededLocked(const Job& job) const;              // REQUIRES: mu_ held
  StatusOr<Job> MoveJob(const std::string& job_id, JobStatus from, JobStatus to, const std::string& message,
                        bool durable, const std::function<void(Job&)>& also);
};

}  // namespace ingestfs::server
