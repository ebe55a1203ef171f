#include "cache/cache_space.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <set>
#include <thread>
#include <vector>

#include "common/log.h"

namespace ingestfs::cache {

namespace {

struct FileInfo {
  std::string path;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  ino_t ino = 0;
};

uint64_t OnDisk(const struct stat& st) { return static_cast<uint64_t>(st.st_blocks) * 512; }  // what the disk really holds

std::vector<FileInfo> Files(const std::string& dir) {
  std::vector<FileInfo> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    FileInfo f;
    f.path = dir + "/" + e->d_name;
    struct stat st;
    if (::stat(f.path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    f.size = OnDisk(st);
    f.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    f.ino = st.st_ino;
    out.push_back(std::move(f));
  }
  ::closedir(d);
  return out;
}

std::string Mib(uint64_t b) { return std::to_string((b + (1 << 19)) >> 20) + " MiB"; }

}  // namespace

CacheSpace::CacheSpace(std::string cache_dir, Options options) : dir_(std::move(cache_dir)), opts_(options) {}

CacheSpace::Usage CacheSpace::Scan(bool content) const {
  Usage u;
  struct statvfs vfs;
  if (::statvfs(dir_.c_str(), &vfs) == 0) u.free = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  if (!content) return u;
  // A confirmed copy moves from data/ to read/ by rename: seen in both listings, it counts once.
  std::set<ino_t> seen;
  for (const FileInfo& f : Files(dir_ + "/data")) {
    if (seen.insert(f.ino).second) u.pending += f.size;
  }
  for (const FileInfo& f : Files(dir_ + "/read")) {
    if (seen.insert(f.ino).second) u.cached += f.size;
  }
  return u;
}

CacheSpace::Usage CacheSpace::MeasureLocked(bool fresh) {
  auto now = std::chrono::steady_clock::now();
  if (fresh || now - scanned_ > std::chrono::milliseconds(200)) {
    last_ = Scan(opts_.max_bytes > 0);  // the free space alone needs no listing
    scanned_ = now;
    // A room granted just before the scan may not have been written when it looked: such
    // grants keep counting a little longer (counted twice at worst, never missed).
    while (!granted_.empty() && now - granted_.front().first > std::chrono::milliseconds(100)) granted_.pop_front();
  }
  uint64_t granted = 0;
  for (const auto& g : granted_) granted += g.second;
  Usage u = last_;
  u.pending += granted;
  u.free -= std::min(u.free, granted);
  return u;
}

CacheSpace::Usage CacheSpace::Current(const std::function<std::vector<std::string>()>& versions) {
  // `ingestfs wait` asks for the status ten times a second: list the cache at most once a second.
  std::lock_guard<std::mutex> lock(mu_);
  auto now = std::chrono::steady_clock::now();
  if (now - listed_at_ > std::chrono::seconds(1)) {
    listed_ = Scan(true);
    if (versions) {
      std::set<ino_t> seen;  // each inode once, as Scan counts
      for (const std::string& path : versions()) {
        struct stat st;
        if (::stat(path.c_str(), &st) == 0 && seen.insert(st.st_ino).second) listed_.held += OnDisk(st);
      }
    }
    listed_at_ = now;
  }
  return listed_;
}

bool CacheSpace::Fits(const Usage& u, uint64_t bytes) const {
  if (opts_.max_bytes > 0 && u.pending + u.cached + bytes > opts_.max_bytes) return false;
  if (opts_.min_free > 0 && u.free < opts_.min_free + bytes) return false;
  return true;
}

void CacheSpace::Touch(const std::string& path) { ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0); }

uint64_t CacheSpace::Evict(uint64_t bytes) {
  std::vector<FileInfo> files = Files(dir_ + "/read");
  std::sort(files.begin(), files.end(), [](const FileInfo& a, const FileInfo& b) { return a.mtime_ns < b.mtime_ns; });
  auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  uint64_t freed = 0;
  for (const FileInfo& f : files) {
    if (freed >= bytes) break;
    if (now_ns - f.mtime_ns < 2000000000LL) continue;  // just used, or still being downloaded
    if (::unlink(f.path.c_str()) == 0) freed += f.size;
  }
  return freed;
}

Status CacheSpace::Reserve(uint64_t bytes, const std::string& what) {
  if (opts_.max_bytes == 0 && opts_.min_free == 0) return Status::Ok();
  if (opts_.max_bytes > 0 && bytes > opts_.max_bytes) {
    return Status(Code::kResourceExhausted, what + ": " + Mib(bytes) + " more would not fit in cache_max (" +
                                                Mib(opts_.max_bytes) + ")", ENOSPC);
  }
  // More than the whole disk could ever hold (a file listed at an absurd size): no wait helps.
  if (struct statvfs vfs; ::statvfs(dir_.c_str(), &vfs) == 0) {
    uint64_t disk = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
    if (bytes > disk || disk - bytes < opts_.min_free) {
      return Status(Code::kResourceExhausted, what + ": " + Mib(bytes) + " would not fit on the cache's disk (" +
                                                  Mib(disk) + ", cache_min_free " + Mib(opts_.min_free) + ")",
                    ENOSPC);
    }
  }
  auto deadline = std::chrono::steady_clock::now() + opts_.wait;
  bool waited = false;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto now = std::chrono::steady_clock::now();
      Usage u = MeasureLocked(waited);
      if (Fits(u, bytes)) {
        granted_.emplace_back(now, bytes);
        if (waited) warned_ = false;
        return Status::Ok();
      }
      uint64_t need = 0;
      if (opts_.max_bytes > 0 && u.pending + u.cached + bytes > opts_.max_bytes) {
        need = u.pending + u.cached + bytes - opts_.max_bytes;
      }
      if (opts_.min_free > 0 && u.free < opts_.min_free + bytes) need = std::max(need, opts_.min_free + bytes - u.free);
      if (Evict(need) >= need) {
        scanned_ = {};  // measure again
        continue;
      }
      std::string why = "the cache holds " + Mib(u.pending) + " not yet on the platform" +
                        (opts_.max_bytes > 0 ? " (cache_max " + Mib(opts_.max_bytes) + ")" : "") + ", " +
                        Mib(u.free) + " free on its disk (cache_min_free " + Mib(opts_.min_free) + ")";
      if (now >= deadline) {
        LOG_ERROR("%s: no room in the cache after waiting %lld s: %s; the write fails with ENOSPC", what.c_str(),
                  static_cast<long long>(opts_.wait.count() / 1000), why.c_str());
        return Status(Code::kResourceExhausted, what + ": cache full: " + why, ENOSPC);
      }
      if (!warned_) {
        LOG_WARN("%s: cache full, writers wait for uploads to finish: %s", what.c_str(), why.c_str());
        warned_ = true;
      }
    }
    waited = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace ingestfs::cache
