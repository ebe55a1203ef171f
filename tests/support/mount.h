// A real ingestfs mount for integration tests: started in the foreground as a child (by pid),
// waited for until the kernel lists it, unmounted with fusermount3 -u, and forcibly detached
// (fusermount3 -uz) when the daemon was killed.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace ingestfs::testing {

// Empty when /dev/fuse can be used; otherwise why not (the caller fails under CI=true).
std::string FuseUnavailableReason();

class MountProcess {
 public:
  struct Options {
    std::string api;           // SOURCE
    std::string mountpoint;    // created if missing
    std::string cache_dir;
    std::string token_file;
    std::string settle = "0.2";
    std::vector<std::string> extra;  // more -o options
    std::vector<std::string> env = {};  // more environment ("NAME=value")
  };
  explicit MountProcess(Options opts);
  ~MountProcess();
  bool ok() const { return mounted_; }
  const std::string& path() const { return opts_.mountpoint; }
  std::string operator/(const std::string& rel) const { return opts_.mountpoint + "/" + rel; }
  const std::string& stderr_path() const { return stderr_path_; }
  // Clean unmount; returns the daemon's exit status (waitpid form) or -1.
  int Unmount();
  // kill -9 the daemon and detach the dead mount; `before_detach` runs in between, while every
  // path under the mount point still leads into the dead mount (ENOTCONN), not the bare folder.
  void KillNine(const std::function<void()>& before_detach = {});
  pid_t pid() const { return child_.pid(); }
  bool running() const { return child_.running(); }

 private:
  Options opts_;
  std::string stderr_path_;
  Child child_;
  bool mounted_ = false;
};

bool IsMounted(const std::string& path);

// A line of /proc/self/mountinfo, as mount(8) and findmnt show it.
struct MountEntry {
  std::string options;        // per-mount: rw,nosuid,nodev,relatime
  std::string fstype;         // fuse.ingestfs
  std::string source;         // what the mount table names as its source
  std::string super_options;  // the filesystem's: user_id=0,group_id=0,...
};
// The entry whose mount point is `path`, or nullopt (mountinfo's octal escapes undone).
std::optional<MountEntry> FindMount(const std::string& path);

}  // namespace ingestfs::testing
