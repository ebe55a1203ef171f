#include "upload/uploader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <condition_variable>
#include <thread>
#include <vector>

#include "common/crypto.h"
#include "common/file_util.h"
#include "common/log.h"
#include "common/strings.h"
#include "upload/errors.h"
#include "upload/failpoint.h"

namespace ingestfs::upload {

namespace {
// The session the platform lost: begin a new one.
Status SessionLost(const std::string& why) { return Status(Code::kFailedPrecondition, why); }
bool IsSessionLost(const Status& st) { return st.code() == Code::kFailedPrecondition; }
}  // namespace

std::string TooLargeMessage(const Dialect& dialect, const std::string& name, uint64_t size) {
  return name + " is " + std::to_string(size) + " bytes; the " + dialect.name() + " platform takes at most " +
         std::to_string(dialect.MaxFileSize()) + " bytes in one upload; it is not uploaded";
}

struct Uploader::Run {
  cache::Entry entry;
  std::string dataset_id;
  UniqueFd fd;
  std::atomic<int> attempts{0};  // part workers add to it too
  // The current targets; guarded because workers refresh them when URLs expire.
  std::mutex mu;
  std::map<uint32_t, PartTarget> targets;  // GUARDED_BY(mu): by part number
  uint64_t generation = 0;                 // GUARDED_BY(mu): bumped at each refresh
  std::function<bool()> cancelled;  // this upload only
  RetryHooks hooks;
};

bool Uploader::Cancelled(const Run& run) const { return cancelled_ || (run.cancelled && run.cancelled()); }

Uploader::Uploader(Dialect& dialect, cache::Journal& journal, UploaderOptions options, ProgressSink* progress)
    : dialect_(dialect), journal_(journal), opts_(options), progress_(progress) {}

Status Uploader::Step(Run& run, const std::string& what, const std::function<Status()>& fn) {
  int n = 0;
  Status st = RunWithRetry(
      opts_.retry, fn,
      [&](int attempt, const Status& why) {
        LOG_WARN("%s: %s failed (attempt %d), retrying: %s", run.entry.name.c_str(), what.c_str(), attempt,
                 why.message().c_str());
        if (progress_) progress_->OnRetry(run.entry.id, attempt, why);
      },
      &n, run.hooks);
  run.attempts += n - 1;
  return st;
}

Status Uploader::BeginSession(Run& run) {
  // New file or overwrite: as the mount knew it when the version began. No listing of the
  // dataset here: that cost a full listing per dataset and memory for every name in it.
  bool overwrite = run.entry.remote_hint;
  BeginResult begun;
  for (int flips = 0;; ++flips) {
    Phase(run, overwrite ? "reupload presign" : "presign");
    Status st = Step(run, overwrite ? "reupload presign" : "presign", [&] {
      auto r = dialect_.Begin(run.dataset_id, run.entry, overwrite);
      if (!r.ok()) return r.status();
      begun = std::move(r).value();
      return Status::Ok();
    });
    // The hint was wrong (or stale): the file exists after all (409), or is gone (404).
    if (flips == 0 && ((!overwrite && st.code() == Code::kAlreadyExists) || (overwrite && st.code() == Code::kNotFound))) {
      overwrite = !overwrite;
      continue;
    }
    RETURN_IF_ERROR(st);
    break;
  }
  RETURN_IF_ERROR(journal_.RecordSession(run.entry.id, begun.session));
  run.entry.session = begun.session;
  run.entry.parts.clear();
  run.entry.completed = false;
  {
    std::lock_guard<std::mutex> lock(run.mu);
    run.targets.clear();
    for (size_t i = 0; i < begun.targets.size(); ++i) run.targets[static_cast<uint32_t>(i + 1)] = std::move(begun.targets[i]);
    ++run.generation;
  }
  FailPoint("after_presign");
  return Status::Ok();
}

Status Uploader::RefreshTargets(Run& run, uint64_t seen_generation) {
  std::lock_guard<std::mutex> lock(run.mu);
  if (run.generation != seen_generation) return Status::Ok();  // another worker already did
  auto fresh = dialect_.RefreshTargets(*run.entry.session);
  if (!fresh.ok()) {
    if (fresh.status().code() == Code::kNotFound || fresh.status().code() == Code::kAlreadyExists) {
      return SessionLost(fresh.status().message());
    }
    return fresh.status();
  }
  run.targets.clear();
  for (size_t i = 0; i < fresh->size(); ++i) run.targets[static_cast<uint32_t>(i + 1)] = std::move((*fresh)[i]);
  ++run.generation;
  return Status::Ok();
}

StatusOr<PartTarget> Uploader::TargetOf(Run& run, uint32_t n, uint64_t* generation) {
  // S3 checks a URL's expiry when a request starts, so a URL is good until its last second.
  for (int tries = 0;; ++tries) {
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lock(run.mu);
      gen = run.generation;
      auto it = run.targets.find(n);
      if (it != run.targets.end() && (it->second.expires == 0 || std::time(nullptr) < it->second.expires)) {
        *generation = gen;
        return it->second;
      }
    }
    if (tries > 0) return SessionLost("the platform gave no usable URL for part " + std::to_string(n));
    if (!dialect_.PartsOnDemand()) {
      RETURN_IF_ERROR(RefreshTargets(run, gen));  // every URL again, once
      continue;
    }
    // Its own retries: a failed ask does not count against the part's transfer.
    StatusOr<PartTarget> target = Status(Code::kInternal, "not asked");
    Status asked = Step(run, "asking for the URL of part " + std::to_string(n), [&] {
      target = dialect_.TargetFor(*run.entry.session, n);
      return target.status();
    });
    if (!asked.ok()) {
      Code code = asked.code();
      if (code == Code::kNotFound || code == Code::kAlreadyExists) return SessionLost(asked.message());
      return asked;
    }
    std::lock_guard<std::mutex> lock(run.mu);
    run.targets[n] = *target;
    *generation = run.generation;
    return target;
  }
}

void Uploader::ForgetTarget(Run& run, uint32_t n) {
  std::lock_guard<std::mutex> lock(run.mu);
  run.targets.erase(n);
}

Status Uploader::SendOnePart(Run& run, uint32_t n, std::string* etag_out) {
  const cache::UploadSession& s = *run.entry.session;
  uint64_t offset = s.upload_id.empty() ? 0 : static_cast<uint64_t>(n - 1) * s.part_size;
  uint64_t length = s.upload_id.empty() ? run.entry.size : std::min(s.part_size, run.entry.size - offset);
  // MD5 first (Content-MD5 goes in the headers), then the body streams from the same range.
  Digest md5(Digest::Kind::kMd5);
  ASSIGN_OR_RETURN(uint64_t got, DigestRange(run.fd.get(), offset, length, md5, run.entry.data_path));
  if (got != length) return Status(Code::kDataLoss, "the cache copy of " + run.entry.name + " is shorter than recorded");
  std::string raw_md5 = md5.Finish();
  uint64_t generation = 0;
  ASSIGN_OR_RETURN(PartTarget target, TargetOf(run, n, &generation));
  HttpRequest req;
  req.method = target.method;
  req.url = target.url;
  req.headers = target.headers;
  if (target.content_md5) req.headers.push_back("Content-MD5: " + Base64Encode(raw_md5));
  req.form = target.form;
  req.form_fields = target.form_fields;
  req.form_file_name = run.entry.name.substr(run.entry.name.rfind('/') + 1);
  req.body_fd = run.fd.get();
  req.limiter = opts_.limiter;
  req.body_offset = offset;
  req.body_length = length;
  const std::string& id = run.entry.id;
  req.on_progress = [this, &id, n](uint64_t sent) {
    if (progress_) progress_->OnPartProgress(id, n, sent);
  };
  std::string step = "part " + std::to_string(n) + "/" + std::to_string(s.num_parts) + " of " + run.entry.name;
  thread_local std::unique_ptr<HttpClient> client;  // one connection per worker thread
  if (!client) client = std::make_unique<HttpClient>();
  auto began = std::chrono::steady_clock::now();
  auto res = client->Do(req);
  double request_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  if (!res.ok()) return res.status().Annotate(step);
  bool accepted = std::find(target.success_codes.begin(), target.success_codes.end(), res->status) !=
                  target.success_codes.end();
  if (!accepted) {
    Status st = StatusFromHttp(*res, step);
    if (st.ok()) {
      // A 2xx the platform did not name as success: the store did something we cannot trust.
      st = Status(Code::kUnavailable, step + ": HTTP " + std::to_string(res->status) +
                                          " is not one of the success codes the platform named");
    }
    if (st.code() == Code::kPermissionDenied && PresignedUrlExpired(req.url, std::time(nullptr))) {
      st = Status(Code::kDeadlineExceeded, st.message() + " (the URL's lifetime is over)");
    }
    if (IsExpiredUrl(st)) {
      if (dialect_.PartsOnDemand()) {
        ForgetTarget(run, n);
      } else {
        Status refreshed = RefreshTargets(run, generation);
        if (!refreshed.ok()) return refreshed;
      }
      return Status(Code::kUnavailable, step + ": the URL expired; asking for a fresh one");
    }
    return st;
  }
  auto it = res->headers.find("etag");
  std::string etag;
  if (it != res->headers.end() && !it->second.empty()) {
    if (NormalizeEtag(it->second) != HexEncode(raw_md5)) {
      return Status(Code::kDataLoss, step + ": the ETag does not match the MD5 of the bytes sent");
    }
    etag = it->second;
  } else if (target.etag_required) {
    return Status(Code::kDataLoss, step + ": the store answered without an ETag");
  } else {
    etag = "\"" + HexEncode(raw_md5) + "\"";  // the store's success code vouches for the bytes
  }
  for (const std::string& name : target.report_headers) {
    if (res->headers.count(ToLower(name)) == 0) {
      return Status(Code::kDataLoss, step + ": the store's answer has no " + name + " header to report");
    }
  }
  // Its own retries: the part is stored; a failed report must not send it again.
  Status reported = Step(run, "report of part " + std::to_string(n), [&] {
    return dialect_.ReportPart(s, n, target, res->headers);
  });
  if (!reported.ok()) return reported.Annotate(step);
  if (opts_.metrics != nullptr) opts_.metrics->PartSent(length, request_seconds);
  *etag_out = etag;
  return Status::Ok();
}

Status Uploader::SendParts(Run& run) {
  std::vector<uint32_t> todo;
  for (uint32_t n = 1; n <= run.entry.session->num_parts; ++n) {
    if (run.entry.parts.count(n) == 0) todo.push_back(n);
  }
  if (todo.empty()) return Status::Ok();
  Phase(run, "uploading");
  std::mutex mu;
  size_t next = 0;
  Status first_error;
  std::atomic<int> retries{0};
  auto worker = [&] {
    for (;;) {
      uint32_t n;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!first_error.ok() || next >= todo.size()) return;
        if (Cancelled(run)) {
          first_error = Status(Code::kCancelled, run.entry.name + ": upload cancelled");
          return;
        }
        n = todo[next++];
      }
      std::string etag;
      int attempts = 0;
      Status st = RunWithRetry(
          opts_.retry, [&] { return SendOnePart(run, n, &etag); },
          [&](int attempt, const Status& why) {
            LOG_WARN("%s: retrying (attempt %d): %s", run.entry.name.c_str(), attempt, why.message().c_str());
            if (progress_) progress_->OnRetry(run.entry.id, attempt, why);
          },
          &attempts, run.hooks);
      retries += attempts - 1;
      if (st.ok()) st = journal_.RecordPart(run.entry.id, n, etag);
      std::lock_guard<std::mutex> lock(mu);
      if (!st.ok()) {
        if (first_error.ok()) first_error = st;
        return;
      }
      run.entry.parts[n] = etag;
      FailPoint("after_part", n);
    }
  };
  int threads = std::max(1, std::min<int>(opts_.parallel, static_cast<int>(todo.size())));
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  run.attempts += retries;
  return first_error;
}

void Uploader::Phase(const Run& run, const char* phase) {
  if (progress_) progress_->OnPhase(run.entry.id, phase);
  LOG_DEBUG("%s/%s: %s", run.entry.dataset.c_str(), run.entry.name.c_str(), phase);
}

Status Uploader::Follow(Run& run, JobState* final_state) {
  using std::chrono::microseconds;
  Phase(run, "processing");
  const auto began = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration_cast<microseconds>(std::chrono::steady_clock::now() - began); };
  // Assembling many parts takes the platform longer than taking one: each kind learns its own,
  // and a multipart job's length, which grows with the file, is expected from its size.
  const bool multipart = run.entry.session->num_parts > 1;
  FirstLookDelay& first = multipart ? multipart_look_ : single_look_;
  const microseconds expected = multipart ? pace_.Expected(run.entry.size) : microseconds(0);
  const microseconds near = std::clamp<microseconds>(expected / 10, opts_.poll_initial, opts_.poll_max);
  microseconds wait = std::max<microseconds>(first.Get(), expected * 8 / 10);
  // Long waits are cut into slices no longer than poll_max, so that an unmount is not held up.
  auto sleep = [&](microseconds d) { SleepUnlessCancelled(d, opts_.poll_max, [&] { return Cancelled(run); }); };
  if (wait.count() > 0) sleep(wait);
  bool first_look = true;
  microseconds pause = expected.count() > 0 ? near : microseconds(opts_.poll_initial), gap = wait;
  auto deadline = began + opts_.job_timeout;
  for (;;) {
    JobState state;
    RETURN_IF_ERROR(Step(run, "following the job", [&] {
      auto s = dialect_.Poll(*run.entry.session);
      if (!s.ok()) return s.status();
      state = *s;
      return Status::Ok();
    }));
    if (first_look) first.Observe(state.phase != JobPhase::kRunning);
    first_look = false;
    if (state.phase != JobPhase::kRunning) {
      if (multipart && state.phase == JobPhase::kCompleted) pace_.Observe(run.entry.size, elapsed(), gap);
      *final_state = state;
      return Status::Ok();
    }
    if (Cancelled(run)) return Status(Code::kCancelled, "stopped while the platform was processing " + run.entry.name);
    if (std::chrono::steady_clock::now() >= deadline) {
      return SessionLost("the platform did not finish job " + run.entry.session->job_id + " within " +
                         std::to_string(opts_.job_timeout.count() / 1000) + " s of taking " + run.entry.name +
                         " (still " + state.status + ")");
    }
    // Small files are usually done by the first or second look, and pauses double; a job expected
    // to take long is looked at a tenth of its expected time apart until twice that. Past a
    // quarter second a multipart job's pauses are a quarter of the time it has taken so far, so
    // that it is found done at most about a quarter late (doubling could be a whole second late).
    const microseconds so_far = elapsed();
    if (expected.count() > 0 && so_far < expected * 2) {
      gap = near;
    } else if (multipart && so_far >= std::chrono::milliseconds(250)) {
      gap = std::clamp<microseconds>(so_far / 4, opts_.poll_initial, opts_.poll_max);
    } else {
      gap = pause;
      pause = std::min<microseconds>(pause * 2, opts_.poll_max);
    }
    sleep(gap);
  }
}

UploadOutcome Uploader::Upload(const std::string& entry_id, std::function<bool()> cancelled,
                               std::function<bool()> stopping) {
  UploadOutcome out;
  auto entry = journal_.Get(entry_id);
  if (!entry) {
    out.status = Status(Code::kNotFound, "no journal entry " + entry_id);
    return out;
  }
  Run run;
  run.entry = *entry;
  run.cancelled = std::move(cancelled);
  run.hooks.cancelled = [this, &run] { return Cancelled(run); };
  if (progress_) progress_->OnStart(run.entry);
  auto finish = [&](Status st) {
    if (Cancelled(run) && !st.ok()) {
      st = Status(Code::kCancelled, run.entry.name + ": upload cancelled");
      bool resumed_later = stopping && stopping();
      if (run.entry.session && !run.entry.completed && !resumed_later) (void)dialect_.Abort(*run.entry.session);
    }
    out.status = st;
    out.attempts = run.attempts;
    if (run.entry.session) out.job_id = run.entry.session->job_id;
    if (!st.ok() && st.code() != Code::kCancelled && !IsTransient(st)) {
      Status rec = journal_.RecordFailed(entry_id, st.message());
      if (!rec.ok()) LOG_ERROR("%s: could not record the failure: %s", run.entry.name.c_str(), rec.message().c_str());
    }
    if (progress_) progress_->OnDone(entry_id, st);
    return out;
  };
  if (run.entry.interrupted || run.entry.unlinked) {
    // Not the file its writer meant (or no longer a file): never sent. Nothing to record.
    out.status = Status(Code::kFailedPrecondition, run.entry.name + " is not uploaded: " +
                                                       (run.entry.unlinked ? "it was unlinked" : run.entry.error));
    if (progress_) progress_->OnDone(entry_id, out.status);
    return out;
  }
  if (run.entry.failed) return finish(Status(Code::kFailedPrecondition, run.entry.error));
  if (!run.entry.closed) return finish(Status(Code::kCancelled, run.entry.name + " is still being written"));
  if (run.entry.size > dialect_.MaxFileSize()) {
    return finish(Status(Code::kInvalidArgument, TooLargeMessage(dialect_, run.entry.name, run.entry.size)));
  }
  run.fd = UniqueFd(::open(run.entry.data_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!run.fd.valid()) return finish(Status::FromErrno(errno, "open the cache copy of " + run.entry.name));

  Status st = Step(run, "finding dataset " + run.entry.dataset, [&] {
    auto id = dialect_.EnsureDataset(run.entry.dataset);
    if (!id.ok()) return id.status();
    run.dataset_id = *id;
    return Status::Ok();
  });
  if (!st.ok()) return finish(st);

  for (int restarts = 0;; ++restarts) {
    if (restarts > opts_.max_restarts) {
      return finish(Status(Code::kUnavailable, run.entry.name + ": the platform lost the upload " +
                                                   std::to_string(restarts) + " times; giving up for now"));
    }
    if (!run.entry.session) {
      st = BeginSession(run);
      if (!st.ok()) return finish(st);
    } else if (!run.entry.completed && run.entry.parts.size() < run.entry.session->num_parts) {
      // A journaled session (resume) with parts left: fresh URLs for the same job, so stored
      // parts stay. (With every part stored, only the complete is left: no URL is needed.)
      uint64_t gen;
      {
        std::lock_guard<std::mutex> lock(run.mu);
        gen = run.generation;
      }
      st = Step(run, "fresh URLs", [&] { return RefreshTargets(run, gen); });
      if (IsSessionLost(st)) {
        LOG_INFO("%s: job %s cannot continue (%s); starting a new upload", run.entry.name.c_str(),
                 run.entry.session->job_id.c_str(), st.message().c_str());
        (void)dialect_.Abort(*run.entry.session);
        run.entry.session.reset();
        continue;
      }
      if (!st.ok()) return finish(st);
    }
    if (!run.entry.completed) {
      if (Cancelled(run)) return finish(Status(Code::kCancelled, "cancelled"));
      st = SendParts(run);
      if (IsSessionLost(st)) {
        (void)dialect_.Abort(*run.entry.session);
        run.entry.session.reset();
        continue;
      }
      if (!st.ok()) return finish(st);
      FailPoint("before_complete");
      if (Cancelled(run) || (progress_ && !progress_->Commit(run.entry.id))) {
        return finish(Status(Code::kCancelled, "cancelled"));
      }
      Phase(run, "completing");
      st = Step(run, "complete", [&] { return dialect_.Complete(*run.entry.session, run.entry.parts); });
      if (st.code() == Code::kInvalidArgument) {
        // InvalidPart: the platform does not hold what we sent. Begin again.
        LOG_WARN("%s: complete rejected (%s); starting a new upload", run.entry.name.c_str(), st.message().c_str());
        run.entry.session.reset();
        continue;
      }
      if (!st.ok()) return finish(st);
      st = journal_.RecordCompleted(run.entry.id);
      if (!st.ok()) return finish(st);
      run.entry.completed = true;
      FailPoint("after_complete");
    }
    if (progress_) (void)progress_->Commit(run.entry.id);  // `complete` was accepted (perhaps before a restart)
    JobState job;
    st = Follow(run, &job);
    if (IsSessionLost(st)) {
      // A job that makes no progress: sent again as a new upload, counted as an attempt.
      LOG_WARN("%s: %s; sending it again", run.entry.name.c_str(), st.message().c_str());
      if (progress_) progress_->OnRetry(run.entry.id, restarts + 1, st);
      ++run.attempts;
      run.entry.session.reset();
      run.entry.completed = false;
      continue;
    }
    if (!st.ok()) return finish(st);
    if (job.phase == JobPhase::kFailed) {
      return finish(Status(Code::kInvalidArgument, "the platform rejected " + run.entry.name + ": " +
                                                       (job.message.empty() ? job.status : job.message)));
    }
    if (!job.sha256.empty() && job.sha256 != run.entry.sha256) {
      LOG_WARN("%s: the platform's sha256 %s differs from ours %s; uploading again", run.entry.name.c_str(),
               job.sha256.c_str(), run.entry.sha256.c_str());
      run.entry.session.reset();
      run.entry.completed = false;
      continue;
    }
    out.remote_sha256 = job.sha256.empty() ? run.entry.sha256 : job.sha256;
    Phase(run, "confirmed");
    std::string job_id = run.entry.session->job_id;
    st = journal_.RecordConfirmed(run.entry.id, out.remote_sha256, job.version,
                                  opts_.keep_confirmed ? &out.kept_path : nullptr);
    out.job_id = job_id;
    out.status = st;
    out.attempts = run.attempts;
    if (progress_) progress_->OnDone(entry_id, st);
    return out;
  }
}

}  // namespace ingestfs::upload
