#include "server/processor.h"

#include <algorithm>
#include <chrono>

#include "common/log.h"

namespace ingestfs::server {

void Processor::Start(int workers) {
  std::vector<Job> jobs = ctx_.meta->JobsIn(JobStatus::kProcessing);
  for (const Job& j : jobs) {
    (void)ctx_.meta->TransitionJob(j.job_id, JobStatus::kProcessing, JobStatus::kPending, "Upload received");
  }
  std::vector<Job> pending = ctx_.meta->JobsIn(JobStatus::kPending);
  jobs.insert(jobs.end(), pending.begin(), pending.end());
  std::stable_sort(jobs.begin(), jobs.end(), [](const Job& a, const Job& b) { return a.accepted < b.accepted; });
  for (const Job& j : jobs) Enqueue(j.job_id);
  for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { Loop(); });
}

void Processor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  file_cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void Processor::Enqueue(const std::string& job_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(job_id);
  }
  cv_.notify_one();
}

void Processor::Loop() {
  for (;;) {
    std::string id;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      id = queue_.front();
      queue_.pop_front();
    }
    Process(id);
  }
}

bool Processor::AcquireFile(const std::string& key) {
  std::unique_lock<std::mutex> lock(mu_);
  file_cv_.wait(lock, [&] { return stopping_ || busy_files_.count(key) == 0; });
  if (stopping_) return false;
  busy_files_.insert(key);
  return true;
}

void Processor::ReleaseFile(const std::string& key) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    busy_files_.erase(key);
  }
  file_cv_.notify_all();
}

void Processor::Process(const std::string& job_id) {
  auto queued = ctx_.meta->GetJob(job_id);
  if (!queued) return;
  const std::string final_key = FinalKey(queued->dataset_id, queued->filename);
  if (!AcquireFile(final_key)) return;  // stopping: stays pending, queued again at the next start
  struct Slot {
    Processor* p;
    const std::string& key;
    ~Slot() { p->ReleaseFile(key); }
  } slot{this, final_key};
  // Not synced: after a crash a `processing` job is queued again as `pending` (Start), so losing
  // this record changes nothing.
  auto moved =
      ctx_.meta->TransitionJob(job_id, JobStatus::kPending, JobStatus::kProcessing, "Verifying upload", false);
  if (!moved.ok()) return;  // aborted or already handled
  const Job& job = *moved;
  if (ctx_.opts.processing_delay_ms > 0) {
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, std::chrono::milliseconds(ctx_.opts.processing_delay_ms), [this] { return stopping_; })) {
      return;  // stays `processing` in the log; requeued at the next start
    }
  }
  auto fail = [&](const std::string& why) {
    LOG_WARN("job %s (%s): %s", job_id.c_str(), job.filename.c_str(), why.c_str());
    (void)ctx_.meta->TransitionJob(job_id, JobStatus::kProcessing, JobStatus::kFailed, why);
  };
  auto free_upload = [&] {
    if (job.upload_id.empty()) {
      (void)ctx_.objects->DeleteObject(ctx_.opts.bucket, job.staging_key);
    } else {
      (void)ctx_.objects->DeleteUploadDir(job.upload_id);
      (void)ctx_.meta->DeleteUpload(job.upload_id);
    }
  };
  if (ctx_.meta->Superseded(job_id)) {
    fail("superseded: a newer upload of this file was accepted first, so this one was not stored");
    return free_upload();
  }
  if (ctx_.s3 != nullptr) return ProcessInStore(job_id, job);
  std::vector<BlobInfo> sources;
  std::vector<std::string> part_etags;
  if (job.upload_id.empty()) {
    auto obj = ctx_.objects->StatObject(ctx_.opts.bucket, job.staging_key);
    if (!obj) return fail("the uploaded object is missing");
    sources.push_back(*obj);
  } else {
    for (uint32_t n = 1; n <= job.num_parts; ++n) {
      auto part = ctx_.objects->StatPart(job.upload_id, static_cast<int>(n));
      if (!part) return fail("part " + std::to_string(n) + " is missing");
      sources.push_back(*part);
      part_etags.push_back(part->etag);
    }
  }
  uint64_t total = 0;
  for (const BlobInfo& b : sources) total += b.size;
  if (total != job.size) {
    return fail("size mismatch: the request said " + std::to_string(job.size) + " bytes, the upload has " +
                std::to_string(total));
  }
  auto assembled = ctx_.objects->Assemble(sources, part_etags, ctx_.opts.bucket, final_key);
  if (!assembled.ok()) return fail("storing the object failed: " + assembled.status().message());
  FileRecord file;
  file.dataset_id = job.dataset_id;
  file.filename = job.filename;
  file.size = assembled->size;
  file.sha256 = assembled->sha256_hex;
  file.etag = assembled->etag;
  file.s3_key = final_key;
  auto published = ctx_.meta->PublishJob(job_id, file);
  if (!published.ok()) return fail("recording the file failed: " + published.status().message());
  free_upload();
}

bool Processor::Pause(int ms) {
  std::unique_lock<std::mutex> lock(mu_);
  return !cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
}

void Processor::ProcessInStore(const std::string& job_id, const Job& job) {
  auto fail = [&](const std::string& why) {
    LOG_WARN("job %s (%s): %s", job_id.c_str(), job.filename.c_str(), why.c_str());
    (void)ctx_.meta->TransitionJob(job_id, JobStatus::kProcessing, JobStatus::kFailed, why);
  };
  const S3Client& s3 = *ctx_.s3;
  // Each step is asked again while the store does not answer (1, 2, 4, 8 s), then the job fails.
  auto transient = [](const Status& st) { return st.code() == Code::kUnavailable; };
  std::string etag;
  std::pair<std::string, uint64_t> sha;
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0 && !Pause(1000 << std::min(attempt - 1, 3))) return;  // stopping: requeued at start
    Status st;
    if (job.upload_id.empty()) {
      auto head = s3.Head(job.staging_key);
      if (!head.ok()) {
        st = head.status();
      } else if (!head->has_value()) {
        return fail("the uploaded object is missing from the store");
      } else if ((*head)->size != job.size) {
        return fail("size mismatch: the request said " + std::to_string(job.size) + " bytes, the store holds " +
                    std::to_string((*head)->size));
      } else {
        etag = (*head)->etag;
      }
    } else {
      auto parts = s3.ListParts(job.staging_key, job.upload_id);
      if (parts.ok()) {
        uint64_t total = 0;
        for (const S3Part& p : *parts) total += p.size;
        if (parts->size() != job.num_parts) {
          return fail("the store holds " + std::to_string(parts->size()) + " part(s), the upload has " +
                      std::to_string(job.num_parts));
        }
        if (total != job.size) {
          return fail("size mismatch: the request said " + std::to_string(job.size) + " bytes, the parts hold " +
                      std::to_string(total));
        }
        auto completed = s3.CompleteMultipart(job.staging_key, job.upload_id, *parts);
        if (completed.ok()) {
          etag = *completed;
        } else if (transient(completed.status())) {
          st = completed.status();
        } else {
          return fail("the store refused to assemble the parts: " + completed.status().message());
        }
      } else if (parts.status().code() == Code::kNotFound) {
        // No such upload: completed by an earlier try whose answer was lost (or aborted).
        auto head = s3.Head(job.staging_key);
        if (!head.ok()) {
          st = head.status();
        } else if (head->has_value() && (*head)->size == job.size) {
          etag = (*head)->etag;
        } else {
          return fail("the multipart upload is gone from the store and no whole object is there");
        }
      } else {
        st = parts.status();
      }
    }
    if (st.ok()) {
      auto read = s3.Sha256(job.staging_key);
      if (read.ok()) {
        sha = *read;
        break;
      }
      st = read.status();
    }
    if (!transient(st) || attempt >= 4) return fail("the object store: " + st.message());
    LOG_WARN("job %s (%s): %s; asking again", job_id.c_str(), job.filename.c_str(), st.message().c_str());
  }
  if (sha.second != job.size) {
    return fail("size mismatch: the request said " + std::to_string(job.size) + " bytes, the store gave back " +
                std::to_string(sha.second));
  }
  FileRecord file;
  file.dataset_id = job.dataset_id;
  file.filename = job.filename;
  file.size = sha.second;
  file.sha256 = sha.first;
  file.etag = etag;
  file.s3_key = job.staging_key;  // the object stays where it was uploaded
  auto previous = ctx_.meta->GetFile(job.dataset_id, job.filename);
  auto published = ctx_.meta->PublishJob(job_id, file);
  if (!published.ok()) return fail("recording the file failed: " + published.status().message());
  if (!job.upload_id.empty()) (void)ctx_.meta->DeleteUpload(job.upload_id);
  // The version it replaces: its bytes go (a download URL handed out for it before now fails).
  if (previous && previous->s3_key != file.s3_key) {
    Status del = s3.Delete(previous->s3_key);
    if (!del.ok()) LOG_WARN("the replaced version of %s stays in the store: %s", job.filename.c_str(), del.message().c_str());
  }
}

}  // namespace ingestfs::server
