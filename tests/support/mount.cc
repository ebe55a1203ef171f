#include "tests/support/mount.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "common/strings.h"

namespace ingestfs::testing {

std::string FuseUnavailableReason() {
  int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::string("/dev/fuse cannot be opened: ") + std::strerror(errno);
  ::close(fd);
  if (::access("/usr/bin/fusermount3", X_OK) != 0 && ::access("/bin/fusermount3", X_OK) != 0) {
    return "fusermount3 is not installed (Debian package fuse3)";
  }
  return "";
}

std::optional<MountEntry> FindMount(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root MOUNTPOINT options [optional fields...] - fstype source super
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string w; fields >> w;) f.push_back(w);
    if (f.size() < 10 || UnescapeOctal(f[4]) != path) continue;
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash + 2 >= f.size()) continue;
    MountEntry e;
    e.options = f[5];
    e.fstype = f[dash + 1];
    e.source = UnescapeOctal(f[dash + 2]);
    e.super_options = dash + 3 < f.size() ? f[dash + 3] : "";
    return e;
  }
  return std::nullopt;
}

bool IsMounted(const std::string& path) { return FindMount(path).has_value(); }

MountProcess::MountProcess(Options opts) : opts_(std::move(opts)) {
  std::filesystem::create_directories(opts_.mountpoint);
  opts_.mountpoint = std::filesystem::canonical(opts_.mountpoint).string();
  stderr_path_ = opts_.cache_dir + ".stderr";
  std::string o = "token_file=" + opts_.token_file + ",cache_dir=" + opts_.cache_dir + ",settle=" + opts_.settle;
  for (const std::string& e : opts_.extra) o += "," + e;
  std::vector<std::string> argv = {BinDir() + "/ingestfs", opts_.api, opts_.mountpoint, "-f", "-o", o};
  if (!child_.Start(argv, stderr_path_, opts_.env)) return;
  for (int i = 0; i < 200; ++i) {
    if (IsMounted(opts_.mountpoint)) {
      mounted_ = true;
      return;
    }
    if (child_.Wait(std::chrono::milliseconds(0)) != -1) return;  // it exited: a startup error
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

MountProcess::~MountProcess() {
  if (child_.running()) Unmount();
}

int MountProcess::Unmount() {
  if (!child_.running()) return -1;
  std::string cmd = "fusermount3 -u '" + opts_.mountpoint + "' 2>/dev/null";
  for (int i = 0; i < 50 && IsMounted(opts_.mountpoint); ++i) {
    if (std::system(cmd.c_str()) == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // busy: a file still open
  }
  int status = child_.Wait(std::chrono::seconds(30));
  if (status == -1) {
    child_.Kill();
    std::system(("fusermount3 -uz '" + opts_.mountpoint + "' 2>/dev/null").c_str());
  }
  mounted_ = false;
  return status;
}

void MountProcess::KillNine(const std::function<void()>& before_detach) {
  child_.Kill();
  if (before_detach) before_detach();
  std::system(("fusermount3 -uz '" + opts_.mountpoint + "' 2>/dev/null").c_str());
  mounted_ = false;
}

}  // namespace ingestfs::testing
