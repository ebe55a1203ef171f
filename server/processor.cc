#include "server/processor.h"

#include <algorithm>

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

}  // namespace ingestfs::server
