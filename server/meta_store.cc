#include "server/meta_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "common/crypto.h"
#include "common/log.h"
#include "common/record_log.h"
#include "common/strings.h"
#include "common/time_util.h"

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

void WriteDataset(json::Writer& w, const Dataset& d) {
  w.StartObject();
  json::KeyString(w, "t", "dataset");
  json::KeyString(w, "id", d.id);
  json::KeyString(w, "name", d.name);
  json::KeyString(w, "created_at", d.created_at);
  w.EndObject();
}

void WriteFileFields(json::Writer& w, const FileRecord& f) {
  json::KeyString(w, "dataset_id", f.dataset_id);
  json::KeyString(w, "filename", f.filename);
  json::KeyInt(w, "size", static_cast<int64_t>(f.size));
  json::KeyString(w, "sha256", f.sha256);
  json::KeyString(w, "etag", f.etag);
  json::KeyString(w, "updated_at", f.updated_at);
  json::KeyInt(w, "version", f.version);
  json::KeyString(w, "s3_key", f.s3_key);
  if (f.accepted != 0) json::KeyInt(w, "accepted", static_cast<int64_t>(f.accepted));
}

void WriteJobFields(json::Writer& w, const Job& j) {
  json::KeyString(w, "job_id", j.job_id);
  json::KeyString(w, "dataset_id", j.dataset_id);
  json::KeyString(w, "filename", j.filename);
  json::KeyString(w, "content_type", j.content_type);
  json::KeyInt(w, "size", static_cast<int64_t>(j.size));
  json::KeyString(w, "status", JobStatusName(j.status));
  json::KeyString(w, "message", j.message);
  json::KeyString(w, "staging_key", j.staging_key);
  json::KeyString(w, "upload_id", j.upload_id);
  json::KeyInt(w, "part_size", static_cast<int64_t>(j.part_size));
  json::KeyInt(w, "num_parts", j.num_parts);
  json::Key(w, "reupload");
  w.Bool(j.reupload);
  json::KeyString(w, "sha256", j.sha256);
  json::KeyInt(w, "version", j.version);
  json::KeyString(w, "created_at", j.created_at);
  json::KeyString(w, "updated_at", j.updated_at);
  json::KeyString(w, "dialect", j.dialect);
  if (j.accepted != 0) json::KeyInt(w, "accepted", static_cast<int64_t>(j.accepted));
  if (!j.reported.empty()) {
    json::Key(w, "reported");
    w.StartObject();
    for (const auto& [n, etag] : j.reported) json::KeyString(w, std::to_string(n), etag);
    w.EndObject();
  }
}

std::string JobRecord(const Job& j) {
  return json::Object([&](json::Writer& w) {
    json::KeyString(w, "t", "job");
    WriteJobFields(w, j);
  });
}

std::string UploadRecord(const MultipartUpload& u) {
  return json::Object([&](json::Writer& w) {
    json::KeyString(w, "t", "mpu");
    json::KeyString(w, "upload_id", u.upload_id);
    json::KeyString(w, "bucket", u.bucket);
    json::KeyString(w, "key", u.key);
    json::KeyString(w, "created_at", u.created_at);
  });
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

std::string Now() { return Iso8601Utc(std::time(nullptr)); }

}  // namespace

const char* JobStatusName(JobStatus s) { return kJobStatusNames[static_cast<int>(s)]; }

StatusOr<std::unique_ptr<MetaStore>> MetaStore::Open(const std::string& dir, std::vector<std::string>* warnings) {
  RETURN_IF_ERROR(MakeDirs(dir));
  std::unique_ptr<MetaStore> store(new MetaStore());
  store->dir_ = dir;
  std::string path = dir + "/" + kLogName;
  ASSIGN_OR_RETURN(ReplayResult replay, ReplayRecords(path));
  for (const json::Document& rec : replay.records) store->Apply(rec);
  if (warnings != nullptr) warnings->insert(warnings->end(), replay.warnings.begin(), replay.warnings.end());
  // Compact: publish the live state as the new log, atomically.
  {
    std::lock_guard<std::mutex> lock(store->mu_);
    RETURN_IF_ERROR(WriteFileAtomic(path, store->SnapshotLocked()));
    ASSIGN_OR_RETURN(RecordWriter writer, RecordWriter::Open(path));
    store->log_ = std::make_unique<RecordWriter>(std::move(writer));
    store->log_sync_ = std::make_unique<SyncGroup>(store->log_->fd(), true, path);
  }
  return store;
}

std::string MetaStore::SnapshotLocked() const {
  std::string out;
  auto add = [&](const std::string& rec) { out += FrameRecord(rec); };
  for (const std::string& id : dataset_order_) {
    rapidjson::StringBuffer buf;
    json::Writer w(buf);
    WriteDataset(w, datasets_.at(id));
    add(json::Done(buf));
  }
  for (const auto& [ds, files] : files_) {
    for (const auto& [name, f] : files) {
      rapidjson::StringBuffer buf;
      json::Writer w(buf);
      w.StartObject();
      json::KeyString(w, "t", "file");
      WriteFileFields(w, f);
      w.EndObject();
      add(json::Done(buf));
    }
  }
  for (const auto& [id, j] : jobs_) add(JobRecord(j));
  for (const auto& [id, u] : uploads_) add(UploadRecord(u));
  return out;
}

void MetaStore::Apply(const json::Value& r) {
  std::string t = json::StringOr(r, "t");
  if (t == "dataset") {
    Dataset d{json::StringOr(r, "id"), json::StringOr(r, "name"), json::StringOr(r, "created_at")};
    if (datasets_.count(d.id) == 0) dataset_order_.push_back(d.id);
    dataset_by_name_[d.name] = d.id;
    datasets_[d.id] = d;
  } else if (t == "file") {
    FileRecord f = ReadFile(r);
    files_[f.dataset_id][f.filename] = f;
  } else if (t == "job") {
    Job j = ReadJob(r);
    last_accepted_ = std::max(last_accepted_, j.accepted);
    jobs_[j.job_id] = j;
  } else if (t == "publish") {
    const json::Value* f = json::Find(r, "file");
    const json::Value* j = json::Find(r, "job");
    if (f != nullptr && j != nullptr) {
      FileRecord fr = ReadFile(*f);
      files_[fr.dataset_id][fr.filename] = fr;
      Job jr = ReadJob(*j);
      last_accepted_ = std::max(last_accepted_, jr.accepted);
      jobs_[jr.job_id] = jr;
    }
  } else if (t == "mpu") {
    MultipartUpload u{json::StringOr(r, "upload_id"), json::StringOr(r, "bucket"), json::StringOr(r, "key"), json::StringOr(r, "created_at")};
    uploads_[u.upload_id] = u;
  } else if (t == "mpu_del") {
    uploads_.erase(json::StringOr(r, "upload_id"));
  }
}

Status MetaStore::Append(const std::string& record_json, bool durable) {
  RETURN_IF_ERROR(log_->Append(record_json, false));
  if (durable) unsynced_ = true;
  return Status::Ok();
}

MetaStore::Change::~Change() {
  bool sync = store_->unsynced_;
  store_->unsynced_ = false;
  lock_.unlock();
  if (!sync) return;
  Status st = store_->log_sync_->Sync();
  if (!st.ok()) {
    // What reached the disk is unknown after a failed sync; going on could answer for records
    // that are lost. Stop, as databases do, and let the replay at the next start decide.
    LOG_ERROR("metadata log: %s; stopping", st.message().c_str());
    std::abort();
  }
}

StatusOr<Dataset> MetaStore::CreateDataset(const std::string& name) {
  Change change(this);
  if (dataset_by_name_.count(name) != 0) {
    return Status(Code::kAlreadyExists, "Dataset '" + name + "' already exists");
  }
  Dataset d{RandomUuid(), name, Now()};
  rapidjson::StringBuffer buf;
  json::Writer w(buf);
  WriteDataset(w, d);
  std::string rec = json::Done(buf);
  RETURN_IF_ERROR(Append(rec));
  auto doc = json::Parse(rec, "record");
  Apply(*doc);
  return d;
}

std::optional<Dataset> MetaStore::GetDataset(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = datasets_.find(id);
  if (it == datasets_.end()) return std::nullopt;
  return it->second;
}

std::optional<Dataset> MetaStore::FindDatasetByName(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = dataset_by_name_.find(name);
  if (it == dataset_by_name_.end()) return std::nullopt;
  return datasets_.at(it->second);
}

std::vector<Dataset> MetaStore::ListDatasets(Page page, int64_t* total) const {
  std::lock_guard<std::mutex> lock(mu_);
  *total = static_cast<int64_t>(dataset_order_.size());
  std::vector<Dataset> out;
  for (int64_t i = page.offset; i < *total && i < page.offset + page.limit; ++i) {
    out.push_back(datasets_.at(dataset_order_[static_cast<size_t>(i)]));
  }
  return out;
}

std::optional<FileRecord> MetaStore::GetFile(const std::string& dataset_id, const std::string& filename) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto ds = files_.find(dataset_id);
  if (ds == files_.end()) return std::nullopt;
  auto it = ds->second.find(filename);
  if (it == ds->second.end()) return std::nullopt;
  return it->second;
}

std::vector<FileRecord> MetaStore::ListFiles(const std::string& dataset_id, Page page, int64_t* total) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<FileRecord> out;
  *total = 0;
  auto ds = files_.find(dataset_id);
  if (ds == files_.end()) return out;
  *total = static_cast<int64_t>(ds->second.size());
  int64_t i = 0;
  for (const auto& [name, f] : ds->second) {
    if (i >= page.offset + page.limit) break;
    if (i++ >= page.offset) out.push_back(f);
  }
  return out;
}

Status MetaStore::PutJob(const Job& job) {
  Change change(this);
  RETURN_IF_ERROR(Append(JobRecord(job)));
  jobs_[job.job_id] = job;
  return Status::Ok();
}

std::optional<Job> MetaStore::GetJob(const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return std::nullopt;
  return it->second;
}

std::vector<Job> MetaStore::JobsIn(JobStatus status) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Job> out;
  for (const auto& [id, j] : jobs_) {
    if (j.status == status) out.push_back(j);
  }
  return out;
}

Status MetaStore::ReportPart(const std::string& job_id, uint32_t part_number, const std::string& etag) {
  Change change(this);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return Status(Code::kNotFound, "Upload not found");
  if (it->second.status != JobStatus::kAwaitingUpload) {
    return Status(Code::kFailedPrecondition, JobStatusName(it->second.status));
  }
  Job after = it->second;
  after.reported[part_number] = etag;
  after.updated_at = Now();
  RETURN_IF_ERROR(Append(JobRecord(after)));
  it->second = after;
  return Status::Ok();
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
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return Status(Code::kNotFound, "Job not found");
  if (it->second.status != from) {
    return Status(Code::kFailedPrecondition, JobStatusName(it->second.status));
  }
  Job before = it->second;
  Job after = before;
  after.status = to;
  after.message = message;
  after.updated_at = Now();
  if (from == JobStatus::kAwaitingUpload && to == JobStatus::kPending) after.accepted = last_accepted_ + 1;
  also(after);
  RETURN_IF_ERROR(Append(JobRecord(after), durable));
  last_accepted_ = std::max(last_accepted_, after.accepted);
  it->second = after;
  return before;
}

StatusOr<FileRecord> MetaStore::PublishJob(const std::string& job_id, FileRecord file) {
  Change change(this);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return Status(Code::kNotFound, "Job not found");
  if (SupersededLocked(it->second)) return Status(Code::kFailedPrecondition, "superseded by a newer upload");
  file.accepted = it->second.accepted;
  auto& ds = files_[file.dataset_id];
  auto existing = ds.find(file.filename);
  file.version = existing == ds.end() ? 1 : existing->second.version + 1;
  file.updated_at = Now();
  Job job = it->second;
  job.status = JobStatus::kCompleted;
  job.message = "Upload verified and stored";
  job.sha256 = file.sha256;
  job.version = file.version;
  job.updated_at = file.updated_at;
  RETURN_IF_ERROR(Append(json::Object([&](json::Writer& w) {
    json::KeyString(w, "t", "publish");
    json::Key(w, "file");
    w.StartObject();
    WriteFileFields(w, file);
    w.EndObject();
    json::Key(w, "job");
    w.StartObject();
    WriteJobFields(w, job);
    w.EndObject();
  })));
  ds[file.filename] = file;
  it->second = job;
  return file;
}

bool MetaStore::SupersededLocked(const Job& job) const {
  auto ds = files_.find(job.dataset_id);
  if (ds == files_.end()) return false;
  auto f = ds->second.find(job.filename);
  return f != ds->second.end() && f->second.accepted > job.accepted;
}

bool MetaStore::Superseded(const std::string& job_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(job_id);
  return it != jobs_.end() && SupersededLocked(it->second);
}

Status MetaStore::PutUpload(const MultipartUpload& u) {
  Change change(this);
  RETURN_IF_ERROR(Append(UploadRecord(u)));
  uploads_[u.upload_id] = u;
  return Status::Ok();
}

Status MetaStore::DeleteUpload(const std::string& upload_id) {
  Change change(this);
  RETURN_IF_ERROR(Append(json::Object([&](json::Writer& w) {
    json::KeyString(w, "t", "mpu_del");
    json::KeyString(w, "upload_id", upload_id);
  })));
  uploads_.erase(upload_id);
  return Status::Ok();
}

std::optional<MultipartUpload> MetaStore::GetUpload(const std::string& upload_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = uploads_.find(upload_id);
  if (it == uploads_.end()) return std::nullopt;
  return it->second;
}

}  // namespace ingestfs::server
