// The daemon's control socket: `ingestfs status`, `wait` and `retry` talk to a running mount
// through a Unix socket in its cache dir (the dir is 0700 and the socket 0600: only the owner).
// The mount's root carries the socket's path in the extended attribute user.ingestfs.control,
// so the commands need only the mount point.
//
// Protocol: one request line ("status" or "retry"), one JSON answer, then the server closes.
// Thread safety: ControlServer runs one accept thread; Start/Stop from the owning thread.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "common/status.h"

namespace ingestfs::fs {

class ControlServer {
 public:
  using Handler = std::function<std::string(const std::string& request)>;
  ControlServer(std::string path, Handler handler) : path_(std::move(path)), handler_(std::move(handler)) {}
  ~ControlServer() { Stop(); }
  Status Start();
  void Stop();

 private:
  void Loop();
  std::string path_;
  Handler handler_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Sends `request` to the socket and returns the answer.
StatusOr<std::string> ControlRequest(const std::string& socket_path, const std::string& request);

// `ingestfs status|wait|retry|unmount MOUNTPOINT ...` (argv[0] is the command name).
int RunControlCommand(int argc, char** argv);

}  // namespace ingestfs::fs
