#include "server/meta_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/record_log.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "common/sqlite.h"

namespace ingestfs::server {

namespace {

constexpr char kLogName[] = "meta.log";

const char* const kJobStatusNames[] = {"awaiting_upload", "pending", "processing", "completed", "failed"};

std::optional<JobStatus> JobStatusFromName(std::string_view s) {
  for (int i = 0; i < 5; ++i) {
    if (s == kJobStatusNames[i]) return static_cast<JobStatus>(i);
  }
  return std::nullopt;
}

FileRecord ReadFile(const json::Value& v) {
  FileRecord f;
  f.dataset_id = json::StringOr(v, "dataset_id");
  f.filename = json::StringOr(v, "filename");
  f.size = static_cast<uint64_t>(json::IntOr(v, "size"));
  f.sha256 = json::StringOr(v, "sha256");
  f.etag = json::StringOr(v, "etag");
  f.updated_at = json::StringOr(v, "updated_at");
  f.version = json::IntOr(v, "version");
  f.s3_key = json::StringOr(v, "s3_key");
  f.accepted = static_cast<uint64_t>(std::max<int64_t>(0, json::IntOr(v, "accepted")));
  return f;
}

Job ReadJob(const json::Value& v) {
  Job j;
  j.job_id = json::StringOr(v, "job_id");
  j.dataset_id = json::StringOr(v, "dataset_id");
  j.filename = json::StringOr(v, "filename");
  j.content_type = json::StringOr(v, "content_type");
  j.size = static_cast<uint64_t>(json::IntOr(v, "size"));
  j.status = JobStatusFromName(json::StringOr(v, "status")).value_or(JobStatus::kFailed);
  j.message = json::StringOr(v, "message");
  j.staging_key = json::StringOr(v, "staging_key");
  j.upload_id = json::StringOr(v, "upload_id");
  j.part_size = static_cast<uint64_t>(json::IntOr(v, "part_size"));
  j.num_parts = static_cast<uint32_t>(json::IntOr(v, "num_parts"));
  j.reupload = json::BoolOr(v, "reupload");
  j.sha256 = json::StringOr(v, "sha256");
  j.version = json::IntOr(v, "version");
  j.created_at = json::StringOr(v, "created_at");
  j.updated_at = json::StringOr(v, "updated_at");
  j.dialect = json::StringOr(v, "dialect");
  if (j.dialect.empty()) j.dialect = "ingest";
  j.accepted = static_cast<uint64_t>(std::max<int64_t>(0, json::IntOr(v, "accepted")));
  if (const json::Value* r = json::Find(v, "reported"); r != nullptr && r->IsObject()) {
    for (const auto& m : r->GetObject()) {
      auto n = ParseInt(m.name.GetString());
      if (n && *n > 0 && m.value.IsString()) j.reported[static_cast<uint32_t>(*n)] = m.value.GetString();
    }
  }
  return j;
}


constexpr char kDbName[] = "meta.db";
constexpr size_t kReaders = 4;
constexpr size_t kMaxCursors = 256;

constexpr char kSchema[] = R"(
CREATE TABLE IF NOT EXISTS datasets(
  seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL,
  files INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS files(
  dataset_id TEXT NOT NULL, filename TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
  etag TEXT NOT NULL, updated_at TEXT NOT NULL, version INTEGER NOT NULL, s3_key TEXT NOT NULL,
  accepted INTEGER NOT NULL, PRIMARY KEY(dataset_id, filename)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs(
  job_id TEXT PRIMARY KEY, dataset_id TEXT NOT NULL, filename TEXT NOT NULL, content_type TEXT NOT NULL,
  size INTEGER NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL, staging_key TEXT NOT NULL,
  upload_id TEXT NOT NULL, part_size INTEGER NOT NULL, num_parts INTEGER NOT NULL, reupload INTEGER NOT NULL,
  sha256 TEXT NOT NULL, version INTEGER NOT NULL, accepted INTEGER NOT NULL, created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL, dialect TEXT NOT NULL, reported TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status);
CREATE INDEX IF NOT EXISTS jobs_by_accepted ON jobs(accepted);
CREATE TABLE IF NOT EXISTS uploads(
  upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS facts(k TEXT PRIMARY KEY, v TEXT NOT NULL);
)";

#define FILE_COLUMNS "dataset_id, filename, size, sha256, etag, updated_at, version, s3_key, accepted"
#define JOB_COLUMNS                                                                                        \
  "job_id, dataset_id, filename, content_type, size, status, message, staging_key, upload_id, part_size, " \
  "num_parts, reupload, sha256, version, accepted, created_at, updated_at, dialect, reported"

void BindFile(sql::Query& q, const FileRecord& f) {
  q.Bind(f.dataset_id).Bind(f.filename).Bind(f.size).Bind(f.sha256).Bind(f.etag).Bind(f.updated_at);
  q.Bind(f.version).Bind(f.s3_key).Bind(f.accepted);
}

FileRecord RowFile(const sql::Query& q) {
  FileRecord f;
  f.dataset_id = q.Text(0);
  f.filename = q.Text(1);
  f.size = static_cast<uint64_t>(q.Int(2));
  f.sha256 = q.Text(3);
  f.etag = q.Text(4);
  f.updated_at = q.Text(5);
  f.version = q.Int(6);
  f.s3_key = q.Text(7);
  f.accepted = static_cast<uint64_t>(q.Int(8));
  return f;
}

std::string ReportedJson(const std::map<uint32_t, std::string>& reported) {
  if (reported.empty()) return std::string();
  return json::Object([&](json::Writer& w) {
    for (const auto& [n, etag] : reported) json::KeyString(w, std::to_string(n), etag);
  });
}

void ReadReported(const json::Value& r, std::map<uint32_t, std::string>* out) {
  if (!r.IsObject()) return;
  for (const auto& m : r.GetObject()) {
    auto n = ParseInt(m.name.GetString());
    if (n && *n > 0 && m.value.IsString()) (*out)[static_cast<uint32_t>(*n)] = m.value.GetString();
  }
}

void BindJob(sql::Query& q, const Job& j) {
  q.Bind(j.job_id).Bind(j.dataset_id).Bind(j.filename).Bind(j.content_type).Bind(j.size);
  q.Bind(std::string_view(JobStatusName(j.status))).Bind(j.message).Bind(j.staging_key).Bind(j.upload_id);
  q.Bind(j.part_size).Bind(static_cast<int64_t>(j.num_parts)).Bind(j.reupload).Bind(j.sha256).Bind(j.version);
  q.Bind(j.accepted).Bind(j.created_at).Bind(j.updated_at).Bind(j.dialect).Bind(ReportedJson(j.reported));
}

Job RowJob(const sql::Query& q) {
  Job j;
  j.job_id = q.Text(0);
  j.dataset_id = q.Text(1);
  j.filename = q.Text(2);
  j.content_type = q.Text(3);
  j.size = static_cast<uint64_t>(q.Int(4));
  j.status = JobStatusFromName(q.Text(5)).value_or(JobStatus::kFailed);
  j.message = q.Text(6);
  j.staging_key = q.Text(7);
  j.upload_id = q.Text(8);
  j.part_size = static_cast<uint64_t>(q.Int(9));
  j.num_parts = static_cast<uint32_t>(q.Int(10));
  j.reupload = q.Int(11) != 0;
  j.sha256 = q.Text(12);
  j.version = q.Int(13);
  j.accepted = static_cast<uint64_t>(q.Int(14));
  j.created_at = q.Text(15);
  j.updated_at = q.Text(16);
  j.dialect = q.Text(17);
  std::string reported = q.Text(18);
  if (!reported.empty()) {
    if (auto doc = json::Parse(reported, "reported parts"); doc.ok()) ReadReported(*doc, &j.reported);
  }
  return j;
}

Status PutJobRow(sql::Db& db, const Job& j) {
  sql::Query q = db.Prepare("INSERT OR REPLACE INTO jobs(" JOB_COLUMNS ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  BindJob(q, j);
  return q.Run();
}

Status PutFileRow(sql::Db& db, const FileRecord& f) {
  sql::Query q = db.Prepare("INSERT OR REPLACE INTO files(" FILE_COLUMNS ") VALUES(?,?,?,?,?,?,?,?,?)");
  BindFile(q, f);
  return q.Run();
}

std::optional<Job> GetJobRow(sql::Db& db, const std::string& job_id) {
  sql::Query q = db.Prepare("SELECT " JOB_COLUMNS " FROM jobs WHERE job_id = ?");
  q.Bind(job_id);
  if (q.Next()) return RowJob(q);
  if (!q.status().ok()) LOG_ERROR("%s", q.status().message().c_str());
  return std::nullopt;
}

std::optional<FileRecord> GetFileRow(sql::Db& db, const std::string& dataset_id, const std::string& filename) {
  sql::Query q = db.Prepare("SELECT " FILE_COLUMNS " FROM files WHERE dataset_id = ? AND filename = ?");
  q.Bind(dataset_id).Bind(filename);
  if (q.Next()) return RowFile(q);
  if (!q.status().ok()) LOG_ERROR("%s", q.status().message().c_str());
  return std::nullopt;
}

bool SupersededBy(sql::Db& db, const Job& job) {
  auto f = GetFileRow(db, job.dataset_id, job.filename);
  return f && f->accepted > job.accepted;
}

std::string Now() { return Iso8601Utc(std::time(nullptr)); }

// The catalogue as a record log held it, replayed into memory for the migration.
struct LogState {
  std::vector<Dataset> datasets;  // in order of creation
  std::map<std::string, size_t> dataset_index;
  std::map<std::pair<std::string, std::string>, FileRecord> files;
  std::map<std::string, Job> jobs;
  std::map<std::string, MultipartUpload> uploads;

  void Apply(const json::Value& r) {
    std::string t = json::StringOr(r, "t");
    if (t == "dataset") {
      Dataset d{json::StringOr(r, "id"), json::StringOr(r, "name"), json::StringOr(r, "created_at")};
      // A name taken again (only a corrupt log can say so) goes to the later record.
      for (size_t i = 0; i < datasets.size(); ++i) {
        if (datasets[i].name == d.name && datasets[i].id != d.id) datasets[i].name += " (" + datasets[i].id + ")";
      }
      auto [it, fresh] = dataset_index.emplace(d.id, datasets.size());
      if (fresh) {
        datasets.push_back(d);
      } else {
        datasets[it->second] = d;
      }
    } else if (t == "file") {
      FileRecord f = ReadFile(r);
      files[{f.dataset_id, f.filename}] = f;
    } else if (t == "job") {
      Job j = ReadJob(r);
      jobs[j.job_id] = j;
    } else if (t == "publish") {
      const json::Value* f = json::Find(r, "file");
      const json::Value* j = json::Find(r, "job");
      if (f != nullptr && j != nullptr) {
        FileRecord fr = ReadFile(*f);
        files[{fr.dataset_id, fr.filename}] = fr;
        Job jr = ReadJob(*j);
        jobs[jr.job_id] = jr;
      }
    } else if (t == "mpu") {
      MultipartUpload u{json::StringOr(r, "upload_id"), json::StringOr(r, "bucket"), json::StringOr(r, "key"),
                        json::StringOr(r, "created_at")};
      uploads[u.upload_id] = u;
    } else if (t == "mpu_del") {
      uploads.erase(json::StringOr(r, "upload_id"));
    }
  }
};

}  // namespace

const char* JobStatusName(JobStatus s) { return kJobStatusNames[static_cast<int>(s)]; }

// One change: holds mu_ and a write transaction on the writer connection. Commit() ends the
// transaction, lets go of the lock and then (unless `durable` is false: a step a crash may
// forget, as `processing`, which a restart turns back into `pending` anyway) waits for an
// fdatasync of the WAL that changes committed meanwhile share. Ended without Commit(), the
// transaction is rolled back.
class MetaStore::Change {
 public:
  explicit Change(MetaStore* store) : store_(store), lock_(store->mu_) {
    status_ = store_->db_->Exec("BEGIN IMMEDIATE");
    open_ = status_.ok();
  }
  ~Change() {
    if (open_) (void)store_->db_->Exec("ROLLBACK");
  }
  Change(const Change&) = delete;
  Change& operator=(const Change&) = delete;
  const Status& status() const { return status_; }
  sql::Db& db() { return *store_->db_; }

  Status Commit(bool durable = true) {
    open_ = false;
    Status st = store_->db_->Exec("COMMIT");
    if (!st.ok()) {
      (void)store_->db_->Exec("ROLLBACK");
      return st;
    }
    lock_.unlock();
    if (!durable || !store_->durable_) return Status::Ok();
    st = store_->wal_sync_->Sync();
    if (!st.ok()) {
      // What reached the disk is unknown after a failed sync; going on could answer for records
      // that are lost. Stop, as databases do, and let the next start's recovery decide.
      LOG_ERROR("catalogue: %s; stopping", st.message().c_str());
      std::abort();
    }
    return Status::Ok();
  }

 private:
  MetaStore* store_;
  std::unique_lock<std::mutex> lock_;
  Status status_;
  bool open_ = false;
};

// A reader connection borrowed from the pool for one read.
class MetaStore::Reader {
 public:
  explicit Reader(const MetaStore* store) : store_(store) {
    std::unique_lock<std::mutex> lock(store_->pool_mu_);
    store_->pool_cv_.wait(lock, [&] { return !store_->free_readers_.empty(); });
    db_ = store_->free_readers_.back();
    store_->free_readers_.pop_back();
  }
  ~Reader() {
    std::lock_guard<std::mutex> lock(store_->pool_mu_);
    store_->free_readers_.push_back(db_);
    store_->pool_cv_.notify_one();
  }
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;
  sql::Db& db() { return *db_; }

 private:
  const MetaStore* store_;
  sql::Db* db_;
};

MetaStore::~MetaStore() = default;

StatusOr<std::unique_ptr<MetaStore>> MetaStore::Open(const std::string& dir, std::vector<std::string>* warnings,
                                                     bool durable) {
  RETURN_IF_ERROR(MakeDirs(dir));
  std::unique_ptr<MetaStore> store(new MetaStore());
  store->dir_ = dir;
  store->durable_ = durable;
  std::string path = dir + "/" + kDbName;
  ASSIGN_OR_RETURN(store->db_, sql::Db::Open(path, true));
  sql::Db& db = *store->db_;
  RETURN_IF_ERROR(db.Exec("PRAGMA journal_mode=WAL;"));
  RETURN_IF_ERROR(db.Exec(durable ? "PRAGMA synchronous=NORMAL;" : "PRAGMA synchronous=OFF;"));
  RETURN_IF_ERROR(db.Exec(kSchema));
  // The WAL exists from the first write on and stays while the writer connection is open.
  int fd = ::open((path + "-wal").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "catalogue " + path + "-wal: open");
  store->wal_fd_ = UniqueFd(fd);
  store->wal_sync_ = std::make_unique<SyncGroup>(fd, true, path + "-wal");
  std::string log_path = dir + "/" + kLogName;
  if (::access(log_path.c_str(), F_OK) == 0) RETURN_IF_ERROR(store->Migrate(log_path, warnings));
  {
    sql::Query q = db.Prepare("SELECT COALESCE(MAX(accepted), 0) FROM jobs");
    if (q.Next()) store->last_accepted_ = static_cast<uint64_t>(q.Int(0));
    RETURN_IF_ERROR(q.status());
  }
  for (size_t i = 0; i < kReaders; ++i) {
    ASSIGN_OR_RETURN(std::unique_ptr<sql::Db> reader, sql::Db::Open(path, false));
    store->free_readers_.push_back(reader.get());
    store->readers_.push_back(std::move(reader));
  }
  return store;
}

Status MetaStore::Migrate(const std::string& log_path, std::vector<std::string>* warnings) {
  {
    Change change(this);
    RETURN_IF_ERROR(change.status());
    bool migrated = false;
    {
      sql::Query done = db_->Prepare("SELECT v FROM facts WHERE k = 'migrated_from'");
      migrated = done.Next();
      RETURN_IF_ERROR(done.status());
    }
    if (!migrated) {
      ASSIGN_OR_RETURN(ReplayResult replay, ReplayRecords(log_path));
      if (warnings != nullptr) warnings->insert(warnings->end(), replay.warnings.begin(), replay.warnings.end());
      LogState state;
      for (const json::Document& rec : replay.records) state.Apply(rec);
      std::map<std::string, int64_t> counts;
      for (const auto& [key, f] : state.files) {
        RETURN_IF_ERROR(PutFileRow(*db_, f));
        ++counts[f.dataset_id];
      }
      for (const Dataset& d : state.datasets) {
        // OR REPLACE: only a corrupt log could hold a name twice; the later record keeps it.
        sql::Query q = db_->Prepare("INSERT OR REPLACE INTO datasets(id, name, created_at, files) VALUES(?,?,?,?)");
        q.Bind(d.id).Bind(d.name).Bind(d.created_at).Bind(counts[d.id]);
        RETURN_IF_ERROR(q.Run());
      }
      for (const auto& [id, j] : state.jobs) RETURN_IF_ERROR(PutJobRow(*db_, j));
      for (const auto& [id, u] : state.uploads) {
        sql::Query q = db_->Prepare("INSERT OR REPLACE INTO uploads(upload_id, bucket, key, created_at) VALUES(?,?,?,?)");
        q.Bind(u.upload_id).Bind(u.bucket).Bind(u.key).Bind(u.created_at);
        RETURN_IF_ERROR(q.Run());
      }
      sql::Query mark = db_->Prepare("INSERT INTO facts(k, v) VALUES('migrated_from', ?)");
      mark.Bind(std::string_view(kLogName));
      RETURN_IF_ERROR(mark.Run());
      LOG_INFO("catalogue: moved %zu datasets, %zu files, %zu jobs from %s into %s", state.datasets.size(),
               state.files.size(), state.jobs.size(), kLogName, kDbName);
    }
    RETURN_IF_ERROR(change.Commit());
  }
  // Durable in the database: the log is kept aside, no longer read.
  if (::rename(log_path.c_str(), (log_path + ".migrated").c_str()) != 0) {
    return Status::FromErrno(errno, log_path + ": rename after migration");
  }
  return FsyncDir(dir_);
}

StatusOr<Dataset> MetaStore::CreateDataset(const std::string& name) {
  Change change(this);
  RETURN_IF_ERROR(change.status());
  {
    sql::Query q = change.db().Prepare("SELECT 1 FROM datasets WHERE name = ?");
    q.Bind(name);
    if (q.Next()) return Status(Code::kAlreadyExists, "Dataset '" + name + "' already exists");
    RETURN_IF_ERROR(q.status());
  }
  Dataset d{RandomUuid(), name, Now()};
  sql::Query q = change.db().Prepare("INSERT INTO datasets(id, name, created_at) VALUES(?,?,?)");
  q.Bind(d.id).Bind(d.name).Bind(d.created_at);
  RETURN_IF_ERROR(q.Run());
  RETURN_IF_ERROR(change.Commit());
  return d;
}

namespace {
constexpr char kDatasetSelect[] = "SELECT id, name, created_at FROM datasets WHERE id = ?";
std::optional<Dataset> OneDataset(sql::Query& q) {
  if (q.Next()) return Dataset{q.Text(0), q.Text(1), q.Text(2)};
  if (!q.status().ok()) LOG_ERROR("%s", q.status().message().c_str());
  return std::nullopt;
}
}  // namespace

std::optional<Dataset> MetaStore::GetDataset(const std::string& id) const {
  Reader r(this);
  sql::Query q = r.db().Prepare(kDatasetSelect);
  q.Bind(id);
  return OneDataset(q);
}

std::optional<Dataset> MetaStore::FindDatasetByName(const std::string& name) const {
  Reader r(this);
  sql::Query q = r.db().Prepare("SELECT id, name, created_at FROM datasets WHERE name = ?");
  q.Bind(name);
  return OneDataset(q);
}

std::vector<Dataset> MetaStore::ListDatasets(Page page, int64_t* total) const {
  Reader r(this);
  std::vector<Dataset> out;
  *total = 0;
  {
    sql::Query q = r.db().Prepare("SELECT COUNT(*) FROM datasets");
    if (q.Next()) *total = q.Int(0);
  }
  sql::Query q = r.db().Prepare("SELECT id, name, created_at FROM datasets ORDER BY seq LIMIT ? OFFSET ?");
  q.Bind(page.limit).Bind(page.offset);
  while (q.Next()) out.push_back(Dataset{q.Text(0), q.Text(1), q.Text(2)});
  if (!q.status().ok()) LOG_ERROR("%s", q.status().message().c_str());
  return out;
}

std::optional<FileRecord> MetaStore::GetFile(const std::string& dataset_id, const std::string& filename) const {
  Reader r(this);
  return GetFileRow(r.db(), dataset_id, filename);
}

std::optional<MetaStore::Cursor> MetaStore::FindCursor(const std::string& key) const {
  std::lock_guard<std::mutex> lock(cursors_mu_);
  auto it = cursors_.find(key);
  if (it == cursors_.end()) return std::nullopt;
  return it->second->second;
}

void MetaStore::KeepCursor(const std::string& key, Cursor cursor) const {
  std::lock_guard<std::mutex> lock(cursors_mu_);
  auto it = cursors_.find(key);
  if (it != cursors_.end()) {
    cursor_lru_.erase(it->second);
    cursors_.erase(it);
  }
  cursor_lru_.emplace_front(key, std::move(cursor));
  cursors_[key] = cursor_lru_.begin();
  while (cursor_lru_.size() > kMaxCursors) {
    cursors_.erase(cursor_lru_.back().first);
    cursor_lru_.pop_back();
  }
}

std::vector<FileRecord> MetaStore::ListFiles(const std::string& dataset_id, Page page, int64_t* total) const {
  Reader r(this);
  std::vector<FileRecord> out;
  *total = 0;
  // One read transaction: the count and the page agree.
  if (Status st = r.db().Exec("BEGIN"); !st.ok()) {
    LOG_ERROR("%s", st.message().c_str());
    return out;
  }
  {
    sql::Query q = r.db().Prepare("SELECT files FROM datasets WHERE id = ?");
    q.Bind(dataset_id);
    if (q.Next()) *total = q.Int(0);
  }
  auto key = [&](int64_t offset) { return dataset_id + '\n' + std::to_string(offset); };
  std::optional<Cursor> cursor;
  if (page.offset > 0) cursor = FindCursor(key(page.offset));
  if (cursor && cursor->files != *total) cursor.reset();  // names came meanwhile: the offsets moved
  auto read = [&](sql::Query& q) {
    while (q.Next()) out.push_back(RowFile(q));
    if (!q.status().ok()) LOG_ERROR("%s", q.status().message().c_str());
  };
  if (page.offset == 0 || cursor) {
    sql::Query q = r.db().Prepare("SELECT " FILE_COLUMNS " FROM files WHERE dataset_id = ? AND filename > ? "
                                  "ORDER BY filename LIMIT ?");
    q.Bind(dataset_id).Bind(cursor ? cursor->last : std::string()).Bind(page.limit);
    read(q);
  } else {
    sql::Query q = r.db().Prepare("SELECT " FILE_COLUMNS " FROM files WHERE dataset_id = ? "
                                  "ORDER BY filename LIMIT ? OFFSET ?");
    q.Bind(dataset_id).Bind(page.limit).Bind(page.offset);
    read(q);
  }
  (void)r.db().Exec("COMMIT");
  if (!out.empty()) KeepCursor(key(page.offset + static_cast<int64_t>(out.size())), Cursor{*total, out.back().filename});
  return out;
}

Status MetaStore::PutJob(const Job& job) {
  Change change(this);
  RETURN_IF_ERROR(change.status());
  RETURN_IF_ERROR(PutJobRow(change.db(), job));
  return change.Commit();
}

std::optional<Job> MetaStore::GetJob(const std::string& job_id) const {
  Reader r(this);
  return GetJobRow(r.db(), job_id);
}

std::vector<Job> MetaStore::JobsIn(JobStatus status) const {
  Reader r(this);
  std::vector<Job> out;
  sql::Query q = r.db().Prepare("SELECT " JOB_COLUMNS " FROM jobs WHERE status = ? ORDER BY job_id");
  q.Bind(std::string_view(JobStatusName(status)));
  while (q.Next()) out.push_back(RowJob(q));
  if (!q.status().ok()) LOG_ERROR("%s", q.status().message().c_str());
  return out;
}

Status MetaStore::ReportPart(const std::string& job_id, uint32_t part_number, const std::string& etag) {
  Change change(this);
  RETURN_IF_ERROR(change.status());
  std::optional<Job> job = GetJobRow(change.db(), job_id);
  if (!job) return Status(Code::kNotFound, "Upload not found");
  if (job->status != JobStatus::kAwaitingUpload) return Status(Code::kFailedPrecondition, JobStatusName(job->status));
  job->reported[part_number] = etag;
  job->updated_at = Now();
  RETURN_IF_ERROR(PutJobRow(change.db(), *job));
  return change.Commit();
}

StatusOr<Job> MetaStore::TransitionJob(const std::string& job_id, JobStatus from, JobStatus to,
                                       const std::string& message, bool durable) {
  return MoveJob(job_id, from, to, message, durable, [](Job&) {});
}

StatusOr<Job> MetaStore::AcceptUpload(const std::string& job_id, std::optional<uint64_t> size) {
  return MoveJob(job_id, JobStatus::kAwaitingUpload, JobStatus::kPending, "Upload received", true, [&](Job& j) {
    if (size) j.size = *size;
  });
}

StatusOr<Job> MetaStore::MoveJob(const std::string& job_id, JobStatus from, JobStatus to, const std::string& message,
                                 bool durable, const std::function<void(Job&)>& also) {
  Change change(this);
  RETURN_IF_ERROR(change.status());
  std::optional<Job> before = GetJobRow(change.db(), job_id);
  if (!before) return Status(Code::kNotFound, "Job not found");
  if (before->status != from) return Status(Code::kFailedPrecondition, JobStatusName(before->status));
  Job after = *before;
  after.status = to;
  after.message = message;
  after.updated_at = Now();
  bool accepting = from == JobStatus::kAwaitingUpload && to == JobStatus::kPending;
  if (accepting) after.accepted = last_accepted_ + 1;
  also(after);
  RETURN_IF_ERROR(PutJobRow(change.db(), after));
  // Taken under the Change's lock, before it is let go: the next accept gets the next place. (A
  // failed commit leaves a gap in the order, never a repeat.)
  last_accepted_ = std::max(last_accepted_, after.accepted);
  RETURN_IF_ERROR(change.Commit(durable));
  return *before;
}

StatusOr<FileRecord> MetaStore::PublishJob(const std::string& job_id, FileRecord file) {
  Change change(this);
  RETURN_IF_ERROR(change.status());
  std::optional<Job> job = GetJobRow(change.db(), job_id);
  if (!job) return Status(Code::kNotFound, "Job not found");
  if (SupersededBy(change.db(), *job)) return Status(Code::kFailedPrecondition, "superseded by a newer upload");
  file.accepted = job->accepted;
  std::optional<FileRecord> existing = GetFileRow(change.db(), file.dataset_id, file.filename);
  file.version = existing ? existing->version + 1 : 1;
  file.updated_at = Now();
  job->status = JobStatus::kCompleted;
  job->message = "Upload verified and stored";
  job->sha256 = file.sha256;
  job->version = file.version;
  job->updated_at = file.updated_at;
  RETURN_IF_ERROR(PutFileRow(change.db(), file));
  RETURN_IF_ERROR(PutJobRow(change.db(), *job));
  if (!existing) {
    sql::Query q = change.db().Prepare("UPDATE datasets SET files = files + 1 WHERE id = ?");
    q.Bind(file.dataset_id);
    RETURN_IF_ERROR(q.Run());
  }
  RETURN_IF_ERROR(change.Commit());
  return file;
}

bool MetaStore::Superseded(const std::string& job_id) const {
  Reader r(this);
  std::optional<Job> job = GetJobRow(r.db(), job_id);
  return job && SupersededBy(r.db(), *job);
}

Status MetaStore::PutUpload(const MultipartUpload& u) {
  Change change(this);
  RETURN_IF_ERROR(change.status());
  sql::Query q = change.db().Prepare("INSERT OR REPLACE INTO uploads(upload_id, bucket, key, created_at) VALUES(?,?,?,?)");
  q.Bind(u.upload_id).Bind(u.bucket).Bind(u.key).Bind(u.created_at);
  RETURN_IF_ERROR(q.Run());
  return change.Commit();
}

Status MetaStore::DeleteUpload(const std::string& upload_id) {
  Change change(this);
  RETURN_IF_ERROR(change.status());
  sql::Query q = change.db().Prepare("DELETE FROM uploads WHERE upload_id = ?");
  q.Bind(upload_id);
  RETURN_IF_ERROR(q.Run());
  return change.Commit();
}

std::optional<MultipartUpload> MetaStore::GetUpload(const std::string& upload_id) const {
  Reader r(this);
  sql::Query q = r.db().Prepare("SELECT upload_id, bucket, key, created_at FROM uploads WHERE upload_id = ?");
  q.Bind(upload_id);
  if (q.Next()) return MultipartUpload{q.Text(0), q.Text(1), q.Text(2), q.Text(3)};
  return std::nullopt;
}

}  // namespace ingestfs::server
