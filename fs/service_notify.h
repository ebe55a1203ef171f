// ServiceNotifier: tells systemd (Type=notify) when the mount serves, and what it is doing.
//
// systemd starts a Type=notify unit's dependants (smbd, say, with Before=smbd.service) only once
// the service sends READY=1; without it, smbd could export the empty mount point. The daemon
// sends READY=1 once the kernel holds the mount and the control socket answers, then a STATUS=
// line (shown by `systemctl status`) whenever the queue's summary changes, looked at every
// `every`; STOPPING=1 when the mount ends. Without $NOTIFY_SOCKET (not under systemd) nothing is
// sent and no thread runs. The messages go through libsystemd's sd_notify.
// Thread safety: Ready, Stopping and Start/Stop from the thread that runs the mount.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace ingestfs::fs {

class ServiceNotifier {
 public:
  // `status_line` is asked for the present one-line summary, from the notifier's thread.
  ServiceNotifier(std::function<std::string()> status_line, std::chrono::milliseconds every);
  ~ServiceNotifier() { StopUpdates(); }
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;
  bool enabled() const { return enabled_; }
  // READY=1 with the first STATUS=, then a STATUS= whenever the summary changes.
  void Ready();
  // STOPPING=1 with a last STATUS= (`status`), after the updates stop.
  void Stopping(const std::string& status);

 private:
  void StopUpdates();
  void Send(const std::string& message);
  void Loop();
  const std::function<std::string()> status_line_;
  const std::chrono::milliseconds every_;
  const bool enabled_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // GUARDED_BY(mu_)
  std::string last_;       // the notifier thread's own
  std::thread thread_;
};

// A STATUS= value has one line: newlines become "; ", the length is bounded.
std::string OneStatusLine(const std::string& text);

}  // namespace ingestfs::fs
