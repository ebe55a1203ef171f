// The read-only status folder .ingestfs/ and the status JSON behind it and `ingestfs status`.

#include "fs/ingest_fs.h"

#include <malloc.h>

#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "common/json.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "fs/status_report.h"
#include "fs/internal.h"

namespace ingestfs::fs {

void IngestFs::RefreshStatus(bool now) {
  if (!now) {
    std::lock_guard<std::mutex> lock(status_mu_);
    if (!status_text_.empty() && std::chrono::steady_clock::now() - status_at_ < std::chrono::seconds(1)) return;
  }
  std::string js = StatusJson();
  auto doc = json::Parse(js, "status");
  std::map<Special, std::string> text;
  text[Special::kStatusJson] = js + "\n";
  if (doc.ok()) {
    text[Special::kStatusTxt] = StatusText(*doc);
    text[Special::kFailedTxt] = FailedText(*doc);
  }
  std::lock_guard<std::mutex> lock(status_mu_);
  status_text_ = std::move(text);
  status_at_ = std::chrono::steady_clock::now();
}

std::string IngestFs::StatusContent(Special kind) {
  std::lock_guard<std::mutex> lock(status_mu_);
  auto it = status_text_.find(kind);
  return it == status_text_.end() ? std::string() : it->second;
}

void IngestFs::NoteRefused(const std::string& what, const std::string& why) {
  std::lock_guard<std::mutex> lock(refused_mu_);
  refused_.push_back({std::time(nullptr), what, why});
  if (refused_.size() > kRefusedKept) refused_.pop_front();
  ++refused_total_;
}

std::string IngestFs::StatusJson() {
  std::vector<std::string> open = OpenFiles();
  std::vector<upload::FileStatus> files = scheduler_ != nullptr ? scheduler_->Snapshot() : std::vector<upload::FileStatus>{};
  std::map<std::string, int64_t> counts = {{"pending", 0}, {"uploading", 0}, {"processing", 0},   {"failed", 0},
                                       {"interrupted", 0}, {"completed", 0}, {"stalled", 0}};
  std::map<std::string, int64_t> bytes = {{"pending", 0},     {"uploading", 0},   {"processing", 0},
                                          {"failed", 0},      {"interrupted", 0}, {"completed", 0}};
  uint64_t to_send = 0;   // bytes of pending and uploading files not yet sent
  int64_t oldest_ms = 0;  // when the file waiting longest was closed (unix ms)
  upload::Scheduler::Confirmations confirmed = scheduler_ != nullptr ? scheduler_->Confirmed()
                                                                      : upload::Scheduler::Confirmations{};
  return json::Object([&](json::Writer& w) {
    json::KeyString(w, "time", Iso8601Utc(std::time(nullptr)));
    json::KeyString(w, "platform", RedactUrl(cfg_.api));
    json::KeyString(w, "dialect", cfg_.dialect);
    if (health_ != nullptr) {
      upload::PlatformHealth::View h = health_->Get();
      json::Key(w, "platform_health");
      w.StartObject();
      json::KeyString(w, "state", upload::PlatformHealth::Name(h.state));
      json::KeyString(w, "since", h.since > 0 ? Iso8601Utc(h.since) : "");
      json::KeyString(w, "last_answer", h.last_answer > 0 ? Iso8601Utc(h.last_answer) : "");
      json::KeyInt(w, "last_answer_s_ago", h.last_answer > 0 ? std::max<int64_t>(0, std::time(nullptr) - h.last_answer) : -1);
      json::KeyString(w, "reason", h.reason);
      json::KeyString(w, "text", health_->Describe());
      w.EndObject();
    }
    json::KeyInt(w, "stale_after_s", cfg_.stale_after.count() / 1000);
    json::KeyInt(w, "job_timeout_s", cfg_.job_timeout.count() / 1000);
    if (!cfg_.metrics_url.empty()) json::KeyString(w, "metrics", cfg_.metrics_url);
    if (cfg_.bwlimit) {  // the cap in force now and, for a timetable, when it changes to what
      int sec = static_cast<int>(upload::LocalSecondOfDay());
      uint64_t rate = cfg_.bwlimit->RateAt(sec);
      json::Key(w, "bwlimit");
      w.StartObject();
      json::KeyInt(w, "bytes_per_s", static_cast<int64_t>(rate));
      json::KeyString(w, "text", upload::BwTimetable::RateText(rate));
      if (int to = cfg_.bwlimit->SecondsToChange(sec); to > 0) {
        int at = (sec + to) % 86400;
        json::KeyString(w, "next_change", upload::BwTimetable::TimeText(at));
        json::KeyString(w, "next_text", upload::BwTimetable::RateText(cfg_.bwlimit->RateAt(at)));
      }
      w.EndObject();
    }
    {
      auto [nodes, listed] = MemoryCounts();
      json::Key(w, "memory");
      w.StartObject();
      json::KeyInt(w, "nodes", static_cast<int64_t>(nodes));
      json::KeyInt(w, "listing_entries", static_cast<int64_t>(listed));
      std::function<std::pair<bool, uint64_t>()> prune_state;
      {
        std::lock_guard<std::mutex> lock(mu_);
        prune_state = prune_state_;
      }
      if (prune_state) {  // the kernel asked to drop what only its cache holds (KernelPrune)
        auto [taken, asked] = prune_state();
        json::KeyBool(w, "kernel_prune", taken);
        json::KeyInt(w, "kernel_prune_asked", static_cast<int64_t>(asked));
      }
      // What the allocator hands out now, and what it holds from the system for it (the gap is
      // free memory it keeps: fragmentation, per-thread arenas).
      struct mallinfo2 mi = mallinfo2();
      json::KeyInt(w, "heap_in_use_bytes", static_cast<int64_t>(mi.uordblks + mi.hblkhd));
      json::KeyInt(w, "heap_held_bytes", static_cast<int64_t>(mi.arena + mi.hblkhd));
      w.EndObject();
    }
    if (space_ != nullptr) {
      cache::CacheSpace::Usage u = space_->Current([this] {
        std::vector<std::string> paths;
        for (const cache::Entry& e : journal_.Unfinished()) paths.push_back(e.data_path);
        return paths;
      });
      json::Key(w, "cache");
      w.StartObject();
      json::KeyInt(w, "pending_bytes", static_cast<int64_t>(u.pending));
      json::KeyInt(w, "journal_bytes", static_cast<int64_t>(u.held));
      json::KeyInt(w, "cached_bytes", static_cast<int64_t>(u.cached));
      json::KeyInt(w, "free_bytes", static_cast<int64_t>(u.free));
      json::KeyInt(w, "max_bytes", static_cast<int64_t>(space_->options().max_bytes));
      json::KeyInt(w, "min_free_bytes", static_cast<int64_t>(space_->options().min_free));
      w.EndObject();
    }
    json::Key(w, "files");
    w.StartArray();
    for (const std::string& o : open) {
      size_t slash = o.find('/');
      w.StartObject();
      json::KeyString(w, "dataset", o.substr(0, slash));
      json::KeyString(w, "name", o.substr(slash + 1));
      json::KeyString(w, "state", "open");
      json::KeyInt(w, "size", 0);
      json::KeyInt(w, "sent", 0);
      json::KeyString(w, "error", "");
      w.EndObject();
    }
    for (const upload::FileStatus& f : files) {
      if (f.state == upload::FileState::kLocal) continue;  // being written, or a temporary name
      counts[upload::FileStateName(f.state)]++;
      bytes[upload::FileStateName(f.state)] += f.size;
      if (f.stalled) counts["stalled"]++;
      if (f.state == upload::FileState::kPending || f.state == upload::FileState::kUploading) {
        to_send += f.size - std::min(f.sent, f.size);
      }
      if ((f.state == upload::FileState::kPending || f.state == upload::FileState::kUploading ||
           f.state == upload::FileState::kProcessing) && f.queued_ms > 0) {
        oldest_ms = oldest_ms == 0 ? f.queued_ms : std::min(oldest_ms, f.queued_ms);
      }
      w.StartObject();
      json::KeyString(w, "dataset", f.dataset);
      json::KeyString(w, "name", f.name);
      json::KeyString(w, "state", upload::FileStateName(f.state));
      json::KeyInt(w, "size", static_cast<int64_t>(f.size));
      json::KeyInt(w, "sent", static_cast<int64_t>(std::min(f.sent, f.size)));
      json::KeyString(w, "error", f.error);
      json::KeyString(w, "job_id", f.job_id);
      json::KeyInt(w, "attempts", f.attempts);
      json::KeyInt(w, "since_ms", f.since_ms);
      json::KeyInt(w, "queued_ms", f.queued_ms);
      json::Key(w, "stalled");
      w.Bool(f.stalled);
      w.EndObject();
    }
    w.EndArray();
    {
      std::lock_guard<std::mutex> lock(refused_mu_);
      json::Key(w, "refused");
      w.StartArray();
      for (const Refused& r : refused_) {
        w.StartObject();
        json::KeyString(w, "time", Iso8601Utc(r.at));
        json::KeyString(w, "what", r.what);
        json::KeyString(w, "why", r.why);
        w.EndObject();
      }
      w.EndArray();
      json::KeyInt(w, "refused_total", static_cast<int64_t>(refused_total_));
    }
    // The files listed hold the latest completed ones only (a window); completed counts all that
    // were confirmed since the mount started, completed_listed the window.
    counts["completed_listed"] = counts["completed"];
    counts["completed"] = std::max<int64_t>(counts["completed"], static_cast<int64_t>(confirmed.files));
    json::Key(w, "counts");
    w.StartObject();
    json::KeyInt(w, "open", static_cast<int64_t>(open.size()));
    for (const auto& [k, v] : counts) json::KeyInt(w, k, v);
    w.EndObject();
    bytes["completed"] = std::max<int64_t>(bytes["completed"], static_cast<int64_t>(confirmed.bytes));
    json::Key(w, "bytes");  // per state, as counts (completed: since the mount started)
    w.StartObject();
    for (const auto& [k, v] : bytes) json::KeyInt(w, k, v);
    w.EndObject();
    json::Key(w, "queue");
    w.StartObject();
    json::KeyInt(w, "to_send_bytes", static_cast<int64_t>(to_send));
    json::Key(w, "files_per_s");  // confirmations over the last minute
    w.Double(confirmed.files_per_s);
    json::Key(w, "bytes_per_s");
    w.Double(confirmed.bytes_per_s);
    // Until what is queued now is confirmed at that rate; -1 when nothing was confirmed lately.
    int64_t waiting = counts["pending"] + counts["uploading"] + counts["processing"];
    double eta = -1;
    if (waiting == 0) eta = 0;
    else if (confirmed.files_per_s > 0) {
      eta = std::max(static_cast<double>(waiting) / confirmed.files_per_s,
                     confirmed.bytes_per_s > 0 ? static_cast<double>(to_send) / confirmed.bytes_per_s : 0.0);
    }
    json::KeyInt(w, "eta_s", eta < 0 ? -1 : static_cast<int64_t>(eta + 0.5));
    json::KeyInt(w, "oldest_waiting_s", oldest_ms == 0 ? 0 : std::max<int64_t>(0, (NowUnixMillis() - oldest_ms) / 1000));
    w.EndObject();
  });
}

}  // namespace ingestfs::fs
