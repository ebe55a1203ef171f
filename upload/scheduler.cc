#include "upload/scheduler.h"

#include <algorithm>
#include <ctime>

#include "common/log.h"
#include "common/time_util.h"

namespace ingestfs::upload {

const char* FileStateName(FileState s) {
  switch (s) {
    case FileState::kLocal: return "local";
    case FileState::kPending: return "pending";
    case FileState::kUploading: return "uploading";
    case FileState::kProcessing: return "processing";
    case FileState::kCompleted: return "completed";
    case FileState::kFailed: return "failed";
    case FileState::kInterrupted: return "interrupted";
  }
  return "?";
}

Scheduler::Scheduler(Dialect& dialect, cache::Journal& journal, Options options, ConfirmedFn on_confirmed)
    : journal_(journal), opts_(options), on_confirmed_(std::move(on_confirmed)) {
  uploader_ = std::make_unique<Uploader>(dialect, journal, opts_.uploader, static_cast<ProgressSink*>(this));
}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::SetState(Item& item, FileState s) {
  if (item.status.state != s) item.status.since_ms = NowUnixMillis();
  item.status.state = s;
  state_cv_.notify_all();
}

void Scheduler::Start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto now = std::chrono::steady_clock::now();
    for (const cache::Entry& e : journal_.Unfinished()) {
      Item& item = items_[e.id];
      item.status.id = e.id;
      item.status.dataset = e.dataset;
      item.status.name = e.name;
      item.status.size = e.size;
      item.seq = e.seq;
      if (e.interrupted) {
        item.status.error = e.error;
        SetState(item, InterruptedState(e.name));
      } else if (e.failed) {
        item.status.error = e.error;
        SetState(item, FileState::kFailed);
      } else if (e.closed && Enqueue(e.id, item, now)) {
        item.status.queued_ms = NowUnixMillis();
        SetState(item, FileState::kPending);
      }
    }
  }
  for (int i = 0; i < opts_.workers; ++i) workers_.emplace_back([this] { Loop(); });
}

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && workers_.empty()) return;
    // stopping_ alone stops the running uploads (every check of `cancel` checks it too); `cancel`
    // stays what it was, so a stopped upload whose version is still wanted keeps its platform
    // job for the next start, and only a version discarded meanwhile has its job aborted.
    stopping_ = true;
  }
  uploader_->Cancel();
  state_cv_.notify_all();
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

Scheduler::Item& Scheduler::ItemFor(const std::string& id, const std::optional<cache::Entry>& e) {
  Item& item = items_[id];
  item.status.id = id;
  if (e) {
    item.status.dataset = e->dataset;
    item.status.name = e->name;
    item.status.size = e->size;
    if (item.seq != e->seq && item.queued) {
      Unqueue(id, item);
      item.seq = e->seq;
      (void)Enqueue(id, item, item.due);
    }
    item.seq = e->seq;
  }
  return item;
}

bool Scheduler::Enqueue(const std::string& id, Item& item, std::chrono::steady_clock::time_point due) {
  Unqueue(id, item);
  if (opts_.keep_local && opts_.keep_local(item.status.name)) return false;
  item.due = due;
  waiting_.emplace(due, item.seq, id);
  item.queued = true;
  WakeWorker();
  return true;
}

void Scheduler::Unqueue(const std::string& id, Item& item) {
  if (!item.queued) return;
  waiting_.erase({item.due, item.seq, id});
  ready_.erase({item.seq, id});
  item.queued = false;
}

void Scheduler::Schedule(const std::string& id, std::chrono::milliseconds delay) {
  auto e = journal_.Get(id);
  std::lock_guard<std::mutex> lock(mu_);
  Item& item = ItemFor(id, e);
  item.status.error.clear();
  item.status.sent = 0;
  item.status.attempts = 0;
  item.status.queued_ms = NowUnixMillis();
  item.part_sent.clear();
  if (!Enqueue(id, item, std::chrono::steady_clock::now() + delay)) {
    item.status.queued_ms = 0;
    SetState(item, FileState::kLocal);  // a temporary name: stays local
    return;
  }
  SetState(item, FileState::kPending);
}

Scheduler::HoldResult Scheduler::Hold(const std::string& id, bool stop_committed) {
  auto e = journal_.Get(id);
  // An interrupted version stays shown as such (renamed, say) until it is written again.
  FileState held = e && e->interrupted ? InterruptedState(e->name) : FileState::kLocal;
  std::unique_lock<std::mutex> lock(mu_);
  auto it = items_.find(id);
  if (it == items_.end()) {
    Item& item = items_[id];
    item.status.id = id;
    SetState(item, FileState::kLocal);
    return HoldResult::kHeld;
  }
  bool committed = it->second.running && it->second.committed;
  if (committed && !stop_committed) return HoldResult::kCommitted;
  Unqueue(id, it->second);
  if (it->second.running) {
    it->second.cancel = true;
    state_cv_.wait(lock, [&] { return !it->second.running; });
  }
  it->second.status.sent = 0;
  if (held != FileState::kInterrupted) it->second.status.error.clear();
  it->second.status.queued_ms = 0;
  SetState(it->second, held);
  return committed ? HoldResult::kCommitted : HoldResult::kHeld;
}

bool Scheduler::Commit(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = items_.find(id);
  if (it == items_.end() || it->second.cancel || stopping_) return false;
  it->second.committed = true;
  return true;
}

void Scheduler::Forget(const std::string& id) {
  Hold(id);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = items_.find(id);
  if (it == items_.end()) return;
  Unqueue(id, it->second);
  items_.erase(it);
}

void Scheduler::MarkFailed(const std::string& id, const std::string& error) {
  auto e = journal_.Get(id);
  std::lock_guard<std::mutex> lock(mu_);
  Item& item = ItemFor(id, e);
  Unqueue(id, item);
  item.status.error = error;
  SetState(item, FileState::kFailed);
  if (opts_.uploader.metrics != nullptr) opts_.uploader.metrics->Failed(Code::kInvalidArgument);
}

void Scheduler::MarkInterrupted(const std::string& id, const std::string& reason) {
  auto e = journal_.Get(id);
  std::lock_guard<std::mutex> lock(mu_);
  Item& item = ItemFor(id, e);
  Unqueue(id, item);
  item.status.error = reason;
  item.status.queued_ms = 0;
  SetState(item, InterruptedState(item.status.name));
}

FileState Scheduler::InterruptedState(const std::string& name) const {
  // A temporary name never goes to the platform anyway: its leftover (rsync's partial file after
  // a crash) stays local and asks nobody to act.
  return opts_.keep_local && opts_.keep_local(name) ? FileState::kLocal : FileState::kInterrupted;
}

Status Scheduler::AcceptPartial(const std::string& id) {
  auto before = journal_.Get(id);
  if (!before) return Status(Code::kNotFound, "no journal entry " + id);
  if (opts_.keep_local && opts_.keep_local(before->name)) {
    return Status(Code::kFailedPrecondition, before->name + " has a temporary name; it never goes to the platform");
  }
  Hold(id);
  auto e = journal_.AcceptPartial(id);
  if (!e.ok()) return e.status();
  Schedule(id, std::chrono::milliseconds(0));
  return Status::Ok();
}

int Scheduler::RetryFailed() {
  std::vector<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, item] : items_) {
      if (item.status.state == FileState::kFailed) ids.push_back(id);
    }
  }
  int n = 0;
  for (const std::string& id : ids) {
    if (journal_.Get(id) && journal_.RecordRetry(id).ok()) {
      Schedule(id, std::chrono::milliseconds(0));
      ++n;
    }
  }
  return n;
}

bool Scheduler::StalledLocked(const Item& item, int64_t now_ms) const {
  FileState s = item.status.state;
  bool waiting = s == FileState::kPending || s == FileState::kUploading || s == FileState::kProcessing;
  return waiting && item.status.queued_ms > 0 && now_ms - item.status.queued_ms >= opts_.stale_after.count();
}

std::optional<FileStatus> Scheduler::Get(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = items_.find(id);
  if (it == items_.end()) return std::nullopt;
  FileStatus st = it->second.status;
  st.stalled = StalledLocked(it->second, NowUnixMillis());
  return st;
}

std::vector<FileStatus> Scheduler::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<int64_t, FileStatus>> v;
  int64_t now = NowUnixMillis();
  for (const auto& [id, item] : items_) {
    v.emplace_back(item.seq, item.status);
    v.back().second.stalled = StalledLocked(item, now);
  }
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<FileStatus> out;
  for (auto& p : v) out.push_back(std::move(p.second));
  return out;
}

bool Scheduler::Idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return IdleLocked();
}

std::optional<FileState> Scheduler::WaitSettled(const std::string& id, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  bool done = state_cv_.wait_for(lock, timeout, [&] {
    auto it = items_.find(id);
    return it == items_.end() || (!it->second.queued && !it->second.running);
  });
  auto it = items_.find(id);
  if (!done || it == items_.end()) return std::nullopt;
  return it->second.status.state;
}

bool Scheduler::WaitIdle(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return state_cv_.wait_for(lock, timeout, [&] { return IdleLocked(); });
}

void Scheduler::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (stopping_) return;
    // The oldest due item; otherwise sleep until the earliest due one.
    auto now = std::chrono::steady_clock::now();
    Item* pick = nullptr;
    std::string pick_id;
    auto earliest = now + std::chrono::hours(1);
    while (!waiting_.empty() && std::get<0>(*waiting_.begin()) <= now) {
      auto node = waiting_.extract(waiting_.begin());
      ready_.emplace(std::get<1>(node.value()), std::move(std::get<2>(node.value())));
    }
    for (const auto& [seq, id] : ready_) {  // oldest first; one queued again while running waits
      auto found = items_.find(id);
      if (found == items_.end() || found->second.running) continue;
      pick = &found->second;
      pick_id = id;
      break;
    }
    if (!waiting_.empty()) earliest = std::min(earliest, std::get<0>(*waiting_.begin()));
    if (pick == nullptr) {
      idle_workers_++;
      work_cv_.wait_until(lock, earliest);
      idle_workers_--;
      continue;
    }
    Unqueue(pick_id, *pick);
    // More due, or a due time to sleep until: that is another idle worker's now.
    if (!ready_.empty() || !waiting_.empty()) WakeWorker();
    pick->running = true;
    running_++;
    pick->cancel = false;
    pick->committed = false;
    pick->status.sent = 0;
    pick->part_sent.clear();
    SetState(*pick, FileState::kUploading);
    lock.unlock();
    UploadOutcome out = uploader_->Upload(
        pick_id,
        [this, pick_id] {
          std::lock_guard<std::mutex> l(mu_);
          auto it = items_.find(pick_id);
          return stopping_ || it == items_.end() || it->second.cancel;
        },
        [this, pick_id] {  // stopping, and this version still wanted: the next start resumes it
          std::lock_guard<std::mutex> l(mu_);
          auto it = items_.find(pick_id);
          return stopping_ && it != items_.end() && !it->second.cancel;
        });
    auto entry_after = journal_.Get(pick_id);
    if (out.status.ok() && on_confirmed_) {
      cache::Entry confirmed;
      confirmed.id = pick_id;
      {
        std::lock_guard<std::mutex> l(mu_);
        auto it = items_.find(pick_id);
        if (it != items_.end()) {
          confirmed.dataset = it->second.status.dataset;
          confirmed.name = it->second.status.name;
          confirmed.size = it->second.status.size;
        }
      }
      confirmed.sha256 = out.remote_sha256;
      on_confirmed_(confirmed, out);
    }
    lock.lock();
    running_--;
    auto it = items_.find(pick_id);
    if (it == items_.end()) continue;
    Item& item = it->second;
    item.running = false;
    item.committed = false;
    item.status.job_id = out.job_id;
    if (out.status.ok()) {
      item.status.sent = item.status.size;
      SetState(item, FileState::kCompleted);
      NoteConfirmedLocked(item.status.size);
      if (opts_.uploader.metrics != nullptr) {
        opts_.uploader.metrics->Confirmed(
            item.status.size, item.status.queued_ms > 0 ? (NowUnixMillis() - item.status.queued_ms) / 1000.0 : -1);
      }
      completed_.push_back(pick_id);
      PruneCompletedLocked();
    } else if (out.status.code() == Code::kCancelled) {
      if (!item.queued && item.status.state != FileState::kLocal) SetState(item, FileState::kLocal);
      if (item.queued) SetState(item, FileState::kPending);
    } else if (entry_after && entry_after->interrupted) {
      item.status.error = entry_after->error;
      SetState(item, InterruptedState(entry_after->name));
    } else if (entry_after && entry_after->failed) {
      item.status.error = out.status.message();
      SetState(item, FileState::kFailed);
      if (opts_.uploader.metrics != nullptr) opts_.uploader.metrics->Failed(out.status.code());
      LOG_ERROR("upload of %s/%s failed: %s", item.status.dataset.c_str(), item.status.name.c_str(),
                out.status.message().c_str());
    } else {
      // Transient trouble that outlasted the retry budget: try again later, never drop it.
      item.status.error = out.status.message();
      item.status.attempts++;
      bool queued = Enqueue(pick_id, item, std::chrono::steady_clock::now() + opts_.uploader.retry.max_backoff);
      SetState(item, queued ? FileState::kPending : FileState::kLocal);
      LOG_WARN("upload of %s/%s will be retried: %s", item.status.dataset.c_str(), item.status.name.c_str(),
               out.status.message().c_str());
    }
    state_cv_.notify_all();
  }
}

void Scheduler::NoteConfirmedLocked(uint64_t bytes) {
  int64_t now = std::time(nullptr);
  ++confirmed_files_;
  confirmed_bytes_ += bytes;
  if (first_confirmed_at_ == 0) first_confirmed_at_ = now;
  Second& s = recent_[static_cast<size_t>(now % 60)];
  if (s.at != now) s = Second{now, 0, 0};
  s.files++;
  s.bytes += bytes;
}

Scheduler::Confirmations Scheduler::Confirmed() const {
  std::lock_guard<std::mutex> lock(mu_);
  Confirmations c{confirmed_files_, confirmed_bytes_, 0, 0};
  if (first_confirmed_at_ == 0) return c;
  int64_t now = std::time(nullptr);
  uint64_t files = 0, bytes = 0;
  for (const Second& s : recent_) {
    if (s.at > now - 60 && s.at <= now) {
      files += s.files;
      bytes += s.bytes;
    }
  }
  // Over the last minute, or since the first confirmation when that is nearer.
  double span = static_cast<double>(std::clamp<int64_t>(now - first_confirmed_at_ + 1, 1, 60));
  c.files_per_s = static_cast<double>(files) / span;
  c.bytes_per_s = static_cast<double>(bytes) / span;
  return c;
}

void Scheduler::PruneCompletedLocked() {
  // A mount runs for weeks: keep the newest completed files for status, forget older ones.
  while (completed_.size() > opts_.keep_completed) {
    auto it = items_.find(completed_.front());
    completed_.pop_front();
    if (it != items_.end() && it->second.status.state == FileState::kCompleted && !it->second.queued &&
        !it->second.running) {
      items_.erase(it);
    }
  }
}

void Scheduler::OnPartProgress(const std::string& id, uint32_t n, uint64_t sent) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = items_.find(id);
  if (it == items_.end()) return;
  uint64_t& p = it->second.part_sent[n];
  it->second.status.sent = it->second.status.sent - p + sent;
  p = sent;
}

void Scheduler::OnPhase(const std::string& id, const std::string& phase) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = items_.find(id);
  if (it == items_.end()) return;
  if (phase == "processing" || phase == "completing") SetState(it->second, FileState::kProcessing);
  else if (phase == "uploading") SetState(it->second, FileState::kUploading);
}

void Scheduler::OnRetry(const std::string& id, int attempt, const Status& why) {
  if (opts_.uploader.metrics != nullptr) opts_.uploader.metrics->Retried();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = items_.find(id);
  if (it == items_.end()) return;
  it->second.status.attempts++;
  it->second.status.error = "retrying (attempt " + std::to_string(attempt) + "): " + why.message();
}

}  // namespace ingestfs::upload
