// MetaStore: the reference server's catalogue (datasets, files and their versions, upload jobs,
// multipart uploads), kept in SQLite (data-dir/meta.db, WAL mode).
//
// Durability: every change is one transaction on the writer connection, committed with
// synchronous=NORMAL (no sync of its own) and then made durable by an fdatasync of the WAL that
// concurrent changes share (group commit) before the caller goes on to answer its request. A
// reader may see a change a moment before it is durable, never its writer's answer. SQLite still
// syncs around checkpoints, so the WAL is never reused before the database holds its frames.
//
// Migration: a catalogue kept by earlier versions as a record log (data-dir/meta.log, one
// "<crc32> <json>" record a line) is replayed once into the database on the first open, in one
// transaction, and then renamed to meta.log.migrated. Replay skips a torn last line and reports
// (and skips) a corrupt line elsewhere.
//
// Listing pages are read by index: a page that follows the one read before it in the same
// dataset starts after that page's last name (a seek, not a count of the rows before it), so
// walking a dataset page by page costs the same per page however big the catalogue is.
//
// Thread safety: every public method is thread-safe. Changes hold one mutex and the writer
// connection; reads borrow one of a small pool of reader connections.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/status.h"
#include "common/sync_group.h"

namespace ingestfs::sql {
class Db;
}  // namespace ingestfs::sql

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
  // Opens (creating if needed) the store in `dir`, migrating a record log found there.
  // `warnings` receives one line per record of that log skipped.
  // `durable` false makes no syncs at all (a crash may lose or tear changes): only for filling a
  // catalogue in a benchmark.
  static StatusOr<std::unique_ptr<MetaStore>> Open(const std::string& dir, std::vector<std::string>* warnings,
                                                   bool durable = true);
  ~MetaStore();

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

  // fdatasyncs of the catalogue's WAL so far (for tests and figures).
  uint64_t log_syncs() const { return wal_sync_->syncs(); }

 private:
  class Change;
  class Reader;
  MetaStore() = default;
  Status Migrate(const std::string& log_path, std::vector<std::string>* warnings);
  // REQUIRES: a Change of this store.
  StatusOr<Job> MoveJob(const std::string& job_id, JobStatus from, JobStatus to, const std::string& message,
                        bool durable, const std::function<void(Job&)>& also);

  std::string dir_;
  std::mutex mu_;                  // held by a Change
  std::unique_ptr<sql::Db> db_;    // GUARDED_BY(mu_): the writer connection
  UniqueFd wal_fd_;
  std::unique_ptr<SyncGroup> wal_sync_;
  uint64_t last_accepted_ = 0;     // GUARDED_BY(mu_): highest Job::accepted
  bool durable_ = true;

  mutable std::mutex pool_mu_;
  mutable std::condition_variable pool_cv_;
  std::vector<std::unique_ptr<sql::Db>> readers_;
  mutable std::vector<sql::Db*> free_readers_;  // GUARDED_BY(pool_mu_)

  // Where each walk of a dataset's files is: (dataset, offset of the next page) -> the last name
  // before it, valid while the dataset's file count (names are never removed) is unchanged.
  struct Cursor {
    int64_t files;
    std::string last;
  };
  mutable std::mutex cursors_mu_;
  mutable std::list<std::pair<std::string, Cursor>> cursor_lru_;  // GUARDED_BY(cursors_mu_), newest first
  mutable std::map<std::string, std::list<std::pair<std::string, Cursor>>::iterator> cursors_;  // GUARDED_BY(cursors_mu_)
  std::optional<Cursor> FindCursor(const std::string& key) const;
  void KeepCursor(const std::string& key, Cursor cursor) const;
};

}  // namespace ingestfs::server
