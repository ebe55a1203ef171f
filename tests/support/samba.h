// A real Samba server for tests: Debian's smbd exporting one folder on 127.0.0.1 with the share
// options of scripts/smb.conf.example, its own throwaway config, state dirs and free port, in a
// process group of its own (smbd signals its whole group when it stops),
// started as the test's child and stopped by pid; smbclient drives it.
#pragma once

#include <memory>
#include <string>

#include "tests/support/process.h"

namespace ingestfs::testing {

// Empty when smbd and smbclient can run here; otherwise why not (the caller fails under CI=true).
std::string SambaUnavailableReason();

class SambaServer {
 public:
  // Exports `path` as the share "platform" (guest access, as the current user).
  explicit SambaServer(const std::string& path);
  ~SambaServer();
  bool ok() const { return ok_; }
  int port() const { return port_; }
  const std::string& log_dir() const { return log_dir_; }

  struct Result {
    int code = -1;
    std::string out;  // stdout and stderr
  };
  // Runs `smbclient //127.0.0.1/platform -c COMMANDS` (anonymous).
  Result Client(const std::string& commands) const;

 private:
  TempDir tmp_;
  std::string log_dir_;
  int port_ = 0;
  bool ok_ = false;
  Child smbd_;
};

}  // namespace ingestfs::testing
