#include "fs/service_notify.h"

#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <cstring>

#include "common/log.h"

namespace ingestfs::fs {

std::string OneStatusLine(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') {
      if (!out.empty()) out += "; ";
    } else {
      out.push_back(c);
    }
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == ';')) out.pop_back();
  constexpr size_t kMax = 400;
  if (out.size() > kMax) out = out.substr(0, kMax) + "...";
  return out;
}

ServiceNotifier::ServiceNotifier(std::function<std::string()> status_line, std::chrono::milliseconds every)
    : status_line_(std::move(status_line)), every_(every), enabled_(std::getenv("NOTIFY_SOCKET") != nullptr) {}

void ServiceNotifier::Send(const std::string& message) {
  int rc = sd_notify(0, message.c_str());
  if (rc < 0) LOG_WARN("systemd notification not sent: %s", std::strerror(-rc));
}

void ServiceNotifier::Ready() {
  if (!enabled_) return;
  last_ = OneStatusLine(status_line_());
  Send("READY=1\nSTATUS=" + last_);
  LOG_INFO("told systemd the mount is ready");
  std::lock_guard<std::mutex> lock(mu_);
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
}

void ServiceNotifier::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, every_, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    std::string line = OneStatusLine(status_line_());
    if (line != last_) {
      last_ = line;
      Send("STATUS=" + line);
    }
    lock.lock();
  }
}

void ServiceNotifier::StopUpdates() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ServiceNotifier::Stopping(const std::string& status) {
  StopUpdates();
  if (!enabled_) return;
  Send("STOPPING=1\nSTATUS=" + OneStatusLine(status));
}

}  // namespace ingestfs::fs
