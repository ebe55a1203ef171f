#include "upload/progress.h"

#include <unistd.h>

#include <cmath>

namespace ingestfs::upload {

std::string TerminalProgress::Bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

std::string TerminalProgress::Duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  long t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof(buf), "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) std::snprintf(buf, sizeof(buf), "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof(buf), "%lds", t);
  return buf;
}

TerminalProgress::TerminalProgress(std::FILE* out) : out_(out), enabled_(::isatty(::fileno(out)) == 1) {
  if (enabled_) thread_ = std::thread([this] { Loop(); });
}

TerminalProgress::~TerminalProgress() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void TerminalProgress::OnStart(const cache::Entry& e) {
  std::lock_guard<std::mutex> lock(mu_);
  File& f = files_[e.id];
  f.label = e.dataset + "/" + e.name;
  f.size = e.size;
  f.phase = "starting";
  f.start = std::chrono::steady_clock::now();
}

void TerminalProgress::OnPartProgress(const std::string& id, uint32_t n, uint64_t sent) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(id);
  if (it == files_.end()) return;
  // Replace this part's previous count: a retried part starts again from 0.
  uint64_t& p = it->second.part_sent[n];
  it->second.sent = it->second.sent - p + sent;
  p = sent;
}

void TerminalProgress::OnPhase(const std::string& id, const std::string& phase) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(id);
  if (it != files_.end()) it->second.phase = phase;
}

void TerminalProgress::OnRetry(const std::string& id, int attempt, const Status& why) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(id);
  if (it == files_.end()) return;
  std::string msg = why.message();
  if (msg.size() > 60) msg = msg.substr(0, 60) + "…";
  it->second.phase = "retry " + std::to_string(attempt) + ": " + msg;
}

void TerminalProgress::OnDone(const std::string& id, const Status& result) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(id);
  if (it == files_.end()) return;
  ++done_files_;
  done_bytes_ += it->second.size;
  if (enabled_ && (per_file_lines_ || !result.ok())) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - it->second.start).count();
    for (int i = 0; i < drawn_lines_; ++i) std::fputs("\033[1A\033[2K", out_);
    drawn_lines_ = 0;
    std::fprintf(out_, "%s %s  %s  %s\n", result.ok() ? "done  " : "FAILED", it->second.label.c_str(),
                 Bytes(static_cast<double>(it->second.size)).c_str(),
                 result.ok() ? ("confirmed in " + Duration(secs)).c_str() : result.message().c_str());
  }
  files_.erase(it);
  if (enabled_) DrawLocked();
}

void TerminalProgress::SetTotals(size_t files, uint64_t bytes, bool per_file_lines) {
  std::lock_guard<std::mutex> lock(mu_);
  total_files_ = files;
  total_bytes_ = bytes;
  per_file_lines_ = per_file_lines;
  began_ = std::chrono::steady_clock::now();
}

void TerminalProgress::DrawLocked() {
  for (int i = 0; i < drawn_lines_; ++i) std::fputs("\033[1A\033[2K", out_);
  drawn_lines_ = 0;
  auto now = std::chrono::steady_clock::now();
  if (total_files_ > 1) {
    uint64_t done = done_bytes_;
    for (const auto& [id, f] : files_) done += std::min(f.sent, f.size);
    double secs = std::chrono::duration<double>(now - began_).count();
    double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
    double left = total_bytes_ > done ? static_cast<double>(total_bytes_ - done) : 0;
    std::fprintf(out_, "total: %zu of %zu files confirmed, %s of %s sent, %s/s, ETA %s\n", done_files_, total_files_,
                 Bytes(static_cast<double>(done)).c_str(), Bytes(static_cast<double>(total_bytes_)).c_str(),
                 Bytes(rate).c_str(), rate > 0 ? Duration(left / rate).c_str() : "?");
    ++drawn_lines_;
  }
  for (const auto& [id, f] : files_) {
    double secs = std::chrono::duration<double>(now - f.start).count();
    double rate = secs > 0 ? static_cast<double>(f.sent) / secs : 0;
    double left = f.size > f.sent ? static_cast<double>(f.size - f.sent) : 0;
    int pct = f.size == 0 ? 100 : static_cast<int>(100.0 * static_cast<double>(std::min(f.sent, f.size)) / static_cast<double>(f.size));
    std::fprintf(out_, "  %3d%% %s  %s / %s  %s/s  ETA %s  %s\n", pct, f.label.c_str(),
                 Bytes(static_cast<double>(f.sent)).c_str(), Bytes(static_cast<double>(f.size)).c_str(),
                 Bytes(rate).c_str(), rate > 0 ? Duration(left / rate).c_str() : "?", f.phase.c_str());
    ++drawn_lines_;
    if (drawn_lines_ >= 21) break;
  }
  std::fflush(out_);
}

void TerminalProgress::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    DrawLocked();
    cv_.wait_for(lock, std::chrono::milliseconds(250));
  }
  for (int i = 0; i < drawn_lines_; ++i) std::fputs("\033[1A\033[2K", out_);
  drawn_lines_ = 0;
  std::fflush(out_);
}

}  // namespace ingestfs::upload
