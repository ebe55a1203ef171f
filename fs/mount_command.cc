#include "fs/mount_command.h"

#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "cache/journal.h"
#include "common/file_util.h"
#include "common/heap_trim.h"
#include "common/log.h"
#include "common/strings.h"
#include "common/json.h"
#include "fs/control.h"
#include "fs/fuse_ops.h"
#include "fs/ingest_fs.h"
#include "fs/metrics.h"
#include "fs/service_notify.h"
#include "fs/status_report.h"
#include "upload/aplos_dialect.h"
#include "upload/dialects.h"
#include "upload/health.h"
#include "upload/progress.h"
#include "upload/rate_limiter.h"
#include "upload/scheduler.h"

namespace ingestfs::fs {

namespace {

// Cache files made ahead in idle time. Each new file takes two (its cache copy and its journal
// file; the journal file comes back once the platform confirmed it), so a burst of about 2,000
// new files (cp -r of a folder, an instrument's run) makes none of its own.
constexpr size_t kSparesAhead = 4096;

constexpr char kUsage[] = R"(Usage: ingestfs SOURCE MOUNTPOINT [-o option,...] [-f] [-d]

Mounts the data platform whose API is at SOURCE (e.g. http://127.0.0.1:8080/api) on MOUNTPOINT.
Each top-level folder is a dataset; files copied in are uploaded when closed and settled.

ingestfs options (-o):
  token_file=FILE      the platform token (first line of FILE); otherwise $INGESTFS_TOKEN
  cache_dir=DIR        cache copies and the upload journal (default /var/cache/ingestfs/NAME
                       for root, ~/.cache/ingestfs/NAME otherwise; NAME from the mount point)
  dialect=NAME         the platform's dialect: ingest (default), sbg or aplos
  post_limit=SIZE      aplos: the largest file the platform takes in one POST (default 5G);
                       a larger file is refused when it is closed (EFBIG)
  settle=SECONDS       quiet time after the last close before a file is uploaded (default 2)
  parallel=N           files uploading at once (default 8)
  uid=N, gid=N         owner shown for every file (default: the mounting user)
  umask=OCTAL          permission bits removed from 0755/0644 (default 022)
  ignore=PAT[:PAT...]  more temporary-name patterns (fnmatch) kept local until renamed;
                       always: .*.?????? ~$* *.tmp .~lock* *.swp *.part
  listing_ttl=SECONDS  how long platform listings are cached (default 30)
  listing_timeout=DURATION  the longest one listing of the platform may take, all its pages
                       (default 60s); past it, or past 1,000,000 items, the mount shows what it
                       knew before and logs why
  listing_cache=N      most platform files kept as listing entries, all datasets together
                       (default 1000000; on disk in the cache dir, about 120 bytes each); past
                       it, the datasets listed longest ago are listed again when next looked into
  cache_max=SIZE       bound on the cache's file content, e.g. 20G (default: none); copies of
                       confirmed files are evicted first, then writers wait for uploads
  cache_min_free=SIZE  free space to leave on the cache's disk (default 64M)
  cache_wait=DURATION  how long a writer waits for room before its write fails with ENOSPC
                       (default 60s)
  bwlimit=RATE         cap on upload speed in bytes/s for the whole mount, e.g. 10M, 500K
                       (default: none); or a timetable by local time, each entry in force
                       until the next, every day: 08:00@512K/18:00@off (TIME is HH:MM or
                       HH:MM:SS, RATE a size or off; the last runs on past midnight)
  retry_max=DURATION   longest pause between retries while the platform is unreachable
                       (default 60s; 90, 30s, 5m...)
  bad_answers=DURATION a file whose upload meets only garbage answers (malformed, not
                       as the dialect says) for this long is marked failed, with the reason,
                       for a person to look at; `ingestfs retry` sends it again (default 10m).
                       An unreachable platform never fails a file
  stale_after=DURATION a file not confirmed this long after it was closed is flagged
                       "stalled" in status and xattrs (default 1h; 30m, 2h, 1d...)
  job_timeout=DURATION a platform job not finished this long after it took a file's upload
                       is taken as lost, and the file is sent again (default 5m)
  cache_writes=MODE    direct (default): large aligned writes from 8 MiB into a file on go
                       into the cache copy with O_DIRECT, around the page cache, where the
                       cache's filesystem allows (the first 8 MiB are buffered, their
                       writeback started at once); buffered: always through the page cache
  sync_upload          close(2) and fsync(2) return only once the platform confirmed the file
                       (close fails with EIO, and a log line, when the upload failed)
  nonempty             mount over a mount point that is not empty (refused otherwise)
  allow_other          let other users (e.g. smbd) use the mount (FUSE option). The
                       permissions shown are enforced (FUSE's default_permissions, always
                       on): others may read, and write only where uid=, gid= and umask= let
                       them, e.g. uid=<smbd's user> or gid=<lab group>,umask=002

  log_file=PATH        log here (appended to; reopened by name on SIGHUP, for logrotate),
                       in the foreground too. Otherwise: stderr in the foreground (with the
                       journal's priorities when stderr is systemd's journal); a daemon logs
                       to syslog, or to CACHE_DIR/ingestfs.log where there is no /dev/log
  log_level=LEVEL      debug, info (default), warning or error
  metrics=[HOST:]PORT  serve Prometheus metrics at http://HOST:PORT/metrics (default: off;
                       HOST 127.0.0.1 unless given, an IP address: only name another
                       address where the network may read them); refused at mount (exit 1)
                       when the port cannot be had
  -f                   stay in the foreground (otherwise a daemon); see log_file for the log
  -d                   FUSE debug output (implies -f)
  -h, --help           this text
  -V, --version        the version

Other FUSE options (-o) pass through. The mount table shows SOURCE without credentials or
query as the mount's source (fsname=), type fuse.ingestfs; the mount is always nosuid,nodev
(suid and dev, which mount(8) passes for fstab lines, are ignored).

Refused at mount (exit 1): a token the platform refuses (401/403), a mount point that is not
empty (without nonempty) or already holds a mount, a cache_min_free the cache's disk cannot
keep. A platform that does not answer is mounted anyway (files wait in the cache), with a
warning; `ingestfs status` shows its health.

Under systemd (Type=notify), the daemon tells the service manager when the mount serves
(READY=1) and keeps a STATUS= line with the queue; see the unit ingestfs@.service.

Also: ingestfs upload --help
)";

struct RawOptions {
  char* token_file = nullptr;
  char* cache_dir = nullptr;
  char* dialect = nullptr;
  char* settle = nullptr;
  char* parallel = nullptr;
  char* uid = nullptr;
  char* gid = nullptr;
  char* umask = nullptr;
  char* ignore = nullptr;
  char* listing_ttl = nullptr;
  char* listing_timeout = nullptr;
  char* listing_cache = nullptr;
  char* bwlimit = nullptr;
  char* post_limit = nullptr;
  char* cache_max = nullptr;
  char* cache_min_free = nullptr;
  char* cache_wait = nullptr;
  char* retry_max = nullptr;
  char* bad_answers = nullptr;
  char* stale_after = nullptr;
  char* job_timeout = nullptr;
  char* cache_writes = nullptr;
  char* log_file = nullptr;
  char* log_level = nullptr;
  char* metrics = nullptr;
  int sync_upload = 0;
  int nonempty = 0;
  int fsname_given = 0;
  int subtype_given = 0;
  int help = 0;
  int version = 0;
  std::string source;

  RawOptions() = default;
  RawOptions(const RawOptions&) = delete;
  RawOptions& operator=(const RawOptions&) = delete;
  // fuse_opt_parse strdup()s each "%s" value into its field; they are ours to free.
  ~RawOptions() {
    for (char* p : {token_file, cache_dir, dialect, settle, parallel, uid, gid, umask, ignore, listing_ttl,
                    listing_timeout, listing_cache, bwlimit, post_limit, cache_max, cache_min_free, cache_wait,
                    retry_max, bad_answers, stale_after, job_timeout, cache_writes, log_file, log_level, metrics}) {
      std::free(p);
    }
  }
};

enum { kKeyHelp, kKeyVersion, kKeyFsname, kKeySubtype };

#define INGESTFS_OPT(t, p) {t, offsetof(RawOptions, p), 1}
const fuse_opt kOptions[] = {
    INGESTFS_OPT("token_file=%s", token_file),
    INGESTFS_OPT("cache_dir=%s", cache_dir),
    INGESTFS_OPT("dialect=%s", dialect),
    INGESTFS_OPT("settle=%s", settle),
    INGESTFS_OPT("parallel=%s", parallel),
    INGESTFS_OPT("uid=%s", uid),
    INGESTFS_OPT("gid=%s", gid),
    INGESTFS_OPT("umask=%s", umask),
    INGESTFS_OPT("ignore=%s", ignore),
    INGESTFS_OPT("listing_ttl=%s", listing_ttl),
    INGESTFS_OPT("listing_timeout=%s", listing_timeout),
    INGESTFS_OPT("listing_cache=%s", listing_cache),
    INGESTFS_OPT("bwlimit=%s", bwlimit),
    INGESTFS_OPT("post_limit=%s", post_limit),
    INGESTFS_OPT("cache_max=%s", cache_max),
    INGESTFS_OPT("cache_min_free=%s", cache_min_free),
    INGESTFS_OPT("cache_wait=%s", cache_wait),
    INGESTFS_OPT("retry_max=%s", retry_max),
    INGESTFS_OPT("bad_answers=%s", bad_answers),
    INGESTFS_OPT("stale_after=%s", stale_after),
    INGESTFS_OPT("job_timeout=%s", job_timeout),
    INGESTFS_OPT("cache_writes=%s", cache_writes),
    INGESTFS_OPT("log_file=%s", log_file),
    INGESTFS_OPT("log_level=%s", log_level),
    INGESTFS_OPT("metrics=%s", metrics),
    {"sync_upload", offsetof(RawOptions, sync_upload), 1},
    {"nonempty", offsetof(RawOptions, nonempty), 1},
    // mount(8) passes "dev,suid" for every fstab line without nodev/nosuid: a data platform
    // holds neither devices nor programs to run as their owner, so the mount is always
    // nosuid,nodev.
    FUSE_OPT_KEY("suid", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("dev", FUSE_OPT_KEY_DISCARD),
    FUSE_OPT_KEY("fsname=", kKeyFsname),
    FUSE_OPT_KEY("subtype=", kKeySubtype),
    FUSE_OPT_KEY("-h", kKeyHelp),
    FUSE_OPT_KEY("--help", kKeyHelp),
    FUSE_OPT_KEY("-V", kKeyVersion),
    FUSE_OPT_KEY("--version", kKeyVersion),
    FUSE_OPT_END,
};
#undef INGESTFS_OPT

int OptProc(void* data, const char* arg, int key, fuse_args*) {
  auto* o = static_cast<RawOptions*>(data);
  if (key == kKeyHelp) {
    o->help = 1;
    return 0;
  }
  if (key == kKeyVersion) {
    o->version = 1;
    return 0;
  }
  if (key == kKeyFsname || key == kKeySubtype) {  // the admin's own: kept, passed to FUSE
    (key == kKeyFsname ? o->fsname_given : o->subtype_given) = 1;
    return 1;
  }
  if (key == FUSE_OPT_KEY_NONOPT && o->source.empty()) {
    o->source = arg;  // SOURCE is ours; MOUNTPOINT stays for fuse_parse_cmdline
    return 0;
  }
  return 1;
}

// The control socket's answers (see fs/control.h).
std::string HandleControl(const std::string& req, IngestFs& fs, upload::Scheduler& scheduler) {
  if (req == "retry") {
    int n = scheduler.RetryFailed();
    return json::Object([&](json::Writer& w) { json::KeyInt(w, "retried", n); });
  }
  if (StartsWith(req, "accept ")) {  // accept DATASET/NAME: upload an interrupted version as it is
    Status st = fs.AcceptPartial(req.substr(7));
    return json::Object([&](json::Writer& w) {
      if (!st.ok()) json::KeyString(w, "error", st.message());
      else json::KeyInt(w, "accepted", 1);
    });
  }
  if (req != "status") return R"({"error":"unknown request"})";
  return fs.StatusJson();
}

int Fail(const std::string& msg) {
  std::cerr << "ingestfs: " << msg << "\n(see ingestfs --help)\n";
  return 2;
}

std::string DefaultCacheDir(const std::string& mountpoint) {
  std::string name;
  for (char c : mountpoint) name.push_back(c == '/' ? '-' : c);
  while (!name.empty() && name.front() == '-') name.erase(0, 1);
  if (name.empty()) name = "root";
  if (::getuid() == 0) return "/var/cache/ingestfs/" + name;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && *xdg == '/') return std::string(xdg) + "/ingestfs/" + name;
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "/tmp") + "/.cache/ingestfs/" + name;
}


// What already holds `path` as a mount point ("fuse.ingestfs ingestfs"), or "".
std::string MountAt(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line, found;
  while (std::getline(in, line)) {
    std::vector<std::string> f = Split(line, ' ');
    if (f.size() < 10 || UnescapeOctal(f[4]) != path) continue;
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    found = dash + 2 < f.size() ? f[dash + 1] + " from " + UnescapeOctal(f[dash + 2]) : "a mount";
  }
  return found;  // the last one listed is the one on top
}

// Refuses a mount point that is not a usable, empty folder (unless `nonempty`), or that already
// holds a mount: mounting over either hides what is there, and a second ingestfs mount stacked
// on a first one takes its writes away from it. Returns "" when all is well.
std::string CheckMountPoint(const std::string& mountpoint, bool nonempty) {
  struct stat st {};
  if (::stat(mountpoint.c_str(), &st) != 0) {
    if (errno == ENOTCONN) {
      return mountpoint + " is a mount whose daemon is gone (transport endpoint is not connected): "
             "detach it with `fusermount3 -u " + mountpoint + "` first";
    }
    return "mount point " + mountpoint + ": " + std::strerror(errno);
  }
  if (!S_ISDIR(st.st_mode)) return "mount point " + mountpoint + " is not a folder";
  char real[PATH_MAX];
  if (::realpath(mountpoint.c_str(), real) != nullptr) {
    std::string held = MountAt(real);
    if (!held.empty()) {
      return mountpoint + " already holds a mount (" + held + "): unmount it first (`ingestfs unmount " + mountpoint +
             "`, or fusermount3 -u), or choose another folder";
    }
  }
  if (nonempty) return "";
  DIR* d = ::opendir(mountpoint.c_str());
  if (d == nullptr) return "mount point " + mountpoint + ": " + std::strerror(errno);
  std::string first;
  size_t count = 0;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    if (count++ == 0) first = e->d_name;
  }
  ::closedir(d);
  if (count == 0) return "";
  return mountpoint + " is not empty (" + std::to_string(count) + " entr" + (count == 1 ? "y" : "ies") + ", e.g. '" +
         EscapeControl(first) + "'): mounting over it would hide them. Use an empty folder, or -o nonempty to "
         "mount over them anyway";
}

// Cache bounds that cannot be kept on the cache's disk: an error (nothing could ever be
// written), or warnings on stderr.
std::string CheckCacheBounds(const std::string& cache_dir, const cache::CacheSpace::Options& o) {
  struct statvfs vfs {};
  if (::statvfs(cache_dir.c_str(), &vfs) != 0) return "";
  uint64_t total = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  uint64_t avail = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  auto bytes = [](uint64_t b) { return upload::TerminalProgress::Bytes(static_cast<double>(b)); };
  if (o.min_free >= total) {
    return "cache_min_free=" + bytes(o.min_free) + " is not below the size of the cache's disk (" + bytes(total) +
           " at " + cache_dir + "): every write would wait " + std::to_string(o.wait.count() / 1000) +
           " s, then fail. Lower cache_min_free, or put cache_dir on a larger disk";
  }
  if (o.max_bytes > total) {
    std::cerr << "ingestfs: warning: cache_max=" << bytes(o.max_bytes) << " is more than the cache's whole disk ("
              << bytes(total) << " at " << cache_dir << "); cache_min_free bounds the cache first\n";
  }
  if (avail <= o.min_free) {
    std::cerr << "ingestfs: warning: the cache's disk has " << bytes(avail) << " free at " << cache_dir
              << ", not above cache_min_free=" << bytes(o.min_free)
              << ": writes wait for room (then fail with ENOSPC) until space is freed\n";
  }
  return "";
}

}  // namespace

int RunMountCommand(int argc, char** argv) {
  fuse_args args = FUSE_ARGS_INIT(argc, argv);
  // Freed on every return: fuse_opt_parse and fuse_opt_add_arg allocate its strings.
  struct ArgsGuard {
    fuse_args* a;
    ~ArgsGuard() { fuse_opt_free_args(a); }
  } args_guard{&args};
  RawOptions raw;
  if (fuse_opt_parse(&args, &raw, kOptions, OptProc) != 0) return Fail("bad options");
  // The kernel enforces the owner and mode the mount shows. Without it, allow_other let any
  // local user write, make datasets and overwrite confirmed files with the mounting user's
  // token, through files shown as 0644 and folders as 0755.
  if (fuse_opt_add_arg(&args, "-odefault_permissions,nosuid,nodev") != 0) return Fail("out of memory");
  if (raw.help) {
    std::cout << kUsage;
    return 0;
  }
  if (raw.version) {
    std::cout << "ingestfs " << INGESTFS_VERSION << " (libfuse " << fuse_pkgversion() << ")\n";
    return 0;
  }
  fuse_cmdline_opts cmd{};
  if (fuse_parse_cmdline(&args, &cmd) != 0) return Fail("bad options");
  std::unique_ptr<char, decltype(&free)> mp_holder(cmd.mountpoint, &free);
  if (raw.source.empty() || cmd.mountpoint == nullptr) return Fail("SOURCE and MOUNTPOINT are required");
  if (!StartsWith(raw.source, "http://") && !StartsWith(raw.source, "https://")) {
    return Fail("SOURCE must be the platform's API URL (http:// or https://), not '" + raw.source + "'");
  }

  // The mount table (findmnt, df, mount) names the platform, never a credential or a query.
  if (raw.fsname_given == 0 && fuse_opt_add_arg(&args, ("-ofsname=" + EscapeFuseOpt(PlainUrl(raw.source))).c_str()) != 0) {
    return Fail("out of memory");
  }
  if (raw.subtype_given == 0 && fuse_opt_add_arg(&args, "-osubtype=ingestfs") != 0) return Fail("out of memory");

  FsConfig cfg;
  cfg.api = raw.source;
  cfg.dialect = raw.dialect != nullptr ? raw.dialect : "ingest";
  if (!upload::IsDialect(cfg.dialect)) {
    return Fail("dialect=" + cfg.dialect + " is not a platform dialect (" + upload::kDialectNames + ")");
  }
  cfg.sync_upload = raw.sync_upload != 0;
  if (raw.cache_writes != nullptr) {
    std::string mode = raw.cache_writes;
    if (mode != "direct" && mode != "buffered") {
      return Fail("cache_writes=" + mode + " must be direct or buffered");
    }
    cfg.direct_writes = mode == "direct";
  }
  cfg.uid = ::getuid();
  cfg.gid = ::getgid();
  cfg.temp_patterns = DefaultTempPatterns();
  int parallel = 8;
  auto seconds = [](const char* v, const char* name, double max, double* out) -> bool {
    auto r = ParseRate(v);
    if (!r || *r > max) {
      std::cerr << "ingestfs: " << name << "=" << v << " must be a number of seconds from 0 to " << max << "\n";
      return false;
    }
    *out = *r;
    return true;
  };
  if (raw.settle != nullptr) {
    double s;
    if (!seconds(raw.settle, "settle", 86400, &s)) return 2;
    cfg.settle = std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
  }
  if (raw.listing_ttl != nullptr) {
    double s;
    if (!seconds(raw.listing_ttl, "listing_ttl", 86400, &s)) return 2;
    cfg.listing_ttl = std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
  }
  auto duration = [](const char* v, const char* name, double min, double max) -> std::optional<std::chrono::milliseconds> {
    auto d = ParseDuration(v);
    if (!d || *d < min || *d > max) {
      std::cerr << "ingestfs: " << name << "=" << v << " must be a duration from " << min << " s to " << max
                << " s (a number of seconds, or with s, m, h, d)\n";
      return std::nullopt;
    }
    return std::chrono::milliseconds(static_cast<int64_t>(*d * 1000));
  };
  std::chrono::milliseconds retry_max = std::chrono::seconds(60);
  if (raw.retry_max != nullptr) {
    auto d = duration(raw.retry_max, "retry_max", 0.1, 3600);
    if (!d) return 2;
    retry_max = *d;
  }
  std::chrono::milliseconds bad_answers = upload::RetryPolicy{}.bad_answers_for;
  if (raw.bad_answers != nullptr) {
    auto d = duration(raw.bad_answers, "bad_answers", 1, 7 * 86400.0);
    if (!d) return 2;
    bad_answers = *d;
  }
  if (raw.stale_after != nullptr) {
    auto d = duration(raw.stale_after, "stale_after", 1, 365 * 86400.0);
    if (!d) return 2;
    cfg.stale_after = *d;
  }
  std::chrono::milliseconds job_timeout = std::chrono::minutes(5);
  if (raw.job_timeout != nullptr) {
    auto d = duration(raw.job_timeout, "job_timeout", 1, 7 * 86400.0);
    if (!d) return 2;
    job_timeout = *d;
  }
  cache::CacheSpace::Options space_opts;
  space_opts.min_free = 64ull << 20;
  if (raw.cache_max != nullptr) {
    auto r = ParseSize(raw.cache_max);
    if (!r.ok() || *r < (1ull << 20)) return Fail(std::string("cache_max=") + raw.cache_max + " must be a size of at least 1M (e.g. 20G)");
    space_opts.max_bytes = *r;
  }
  if (raw.cache_min_free != nullptr) {
    auto r = ParseSize(raw.cache_min_free);
    if (!r.ok()) return Fail(std::string("cache_min_free=") + raw.cache_min_free + " must be a size (e.g. 1G, 0)");
    space_opts.min_free = *r;
  }
  if (raw.cache_wait != nullptr) {
    auto d = duration(raw.cache_wait, "cache_wait", 0, 86400);
    if (!d) return 2;
    space_opts.wait = *d;
  }
  upload::DialectOptions dialect_opts;
  if (raw.post_limit != nullptr) {
    auto r = ParseSize(raw.post_limit);
    if (!r.ok() || *r < 1 || *r > upload::AplosDialect::kMaxPost) {
      return Fail(std::string("post_limit=") + raw.post_limit + " must be a size from 1 byte to 5G");
    }
    if (cfg.dialect != "aplos") return Fail("post_limit applies to dialect=aplos only");
    dialect_opts.post_limit = *r;
  }
  if (raw.listing_timeout != nullptr) {
    auto d = duration(raw.listing_timeout, "listing_timeout", 1, 86400);
    if (!d) return 2;
    dialect_opts.limits.listing_timeout = std::chrono::ceil<std::chrono::seconds>(*d);
  }
  std::optional<MetricsAddress> metrics_at;
  if (raw.metrics != nullptr) {
    auto a = ParseMetricsAddress(raw.metrics);
    if (!a.ok()) return Fail(a.status().message());
    metrics_at = *a;
    std::string host = a->host.find(':') != std::string::npos ? "[" + a->host + "]" : a->host;
    cfg.metrics_url = "http://" + host + ":" + std::to_string(a->port) + "/metrics";
  }
  if (raw.bwlimit != nullptr) {
    auto t = upload::BwTimetable::Parse(raw.bwlimit);
    if (!t.ok()) return Fail(t.status().message());
    cfg.bwlimit = *t;
  }
  if (raw.listing_cache != nullptr) {
    auto n = ParseInt(raw.listing_cache);
    if (!n || *n < 1000 || *n > 100000000) return Fail("listing_cache must be 1000 to 100000000 entries");
    cfg.listing_cache_max = static_cast<size_t>(*n);
  }
  if (raw.parallel != nullptr) {
    auto n = ParseInt(raw.parallel);
    if (!n || *n < 1 || *n > 64) return Fail("parallel must be 1 to 64");
    parallel = static_cast<int>(*n);
  }
  if (raw.uid != nullptr) {
    auto n = ParseInt(raw.uid);
    if (!n || *n > 0xfffffffe) return Fail("uid must be a number");
    cfg.uid = static_cast<uid_t>(*n);
  }
  if (raw.gid != nullptr) {
    auto n = ParseInt(raw.gid);
    if (!n || *n > 0xfffffffe) return Fail("gid must be a number");
    cfg.gid = static_cast<gid_t>(*n);
  }
  if (raw.umask != nullptr) {
    char* end = nullptr;
    long m = std::strtol(raw.umask, &end, 8);
    if (end == raw.umask || *end != '\0' || m < 0 || m > 0777) return Fail("umask must be octal, e.g. 022");
    cfg.umask = static_cast<mode_t>(m);
  }
  if (raw.ignore != nullptr) {
    for (const std::string& p : Split(raw.ignore, ':')) {
      if (!p.empty()) cfg.temp_patterns.push_back(p);
    }
  }
  std::string token;
  if (raw.token_file != nullptr) {
    auto text = ReadFileToString(raw.token_file);
    if (!text.ok()) return Fail("token_file: " + text.status().message());
    token = std::string(Trim(Split(*text, '\n')[0]));
  } else if (const char* env = std::getenv("INGESTFS_TOKEN"); env != nullptr) {
    token = env;
  }
  if (token.empty()) return Fail("no token: give -o token_file=FILE or set INGESTFS_TOKEN");
  cfg.cache_dir = raw.cache_dir != nullptr ? raw.cache_dir : DefaultCacheDir(cmd.mountpoint);
  if (cfg.cache_dir[0] != '/') {  // the daemon runs in /, so relative paths are resolved now
    char cwd[4096];
    if (::getcwd(cwd, sizeof(cwd)) == nullptr) return Fail("cannot resolve cache_dir " + cfg.cache_dir);
    cfg.cache_dir = std::string(cwd) + "/" + cfg.cache_dir;
  }

  if (raw.log_level != nullptr) {
    auto level = ParseLogLevel(raw.log_level);
    if (!level) return Fail(std::string("log_level=") + raw.log_level + " must be debug, info, warning or error");
    SetLogLevel(*level);
  }
  std::string log_file = raw.log_file != nullptr ? raw.log_file : "";
  if (!log_file.empty() && log_file[0] != '/') {  // the daemon runs in /
    char cwd[4096];
    if (::getcwd(cwd, sizeof(cwd)) == nullptr) return Fail("cannot resolve log_file " + log_file);
    log_file = std::string(cwd) + "/" + log_file;
  }
  // The options are all valid: now what they point at.
  if (std::string why = CheckMountPoint(cmd.mountpoint, raw.nonempty != 0); !why.empty()) {
    std::cerr << "ingestfs: " << why << "\n";
    return 1;
  }
  cfg.control_socket = cfg.cache_dir + "/control.sock";
  std::vector<std::string> warnings;
  auto journal = cache::Journal::Open(cfg.cache_dir, &warnings);
  for (const std::string& w : warnings) std::cerr << "ingestfs: journal: " << w << "\n";
  if (!journal.ok()) {
    std::cerr << "ingestfs: " << journal.status().message() << "\n";
    return 1;
  }
  // Where the log goes: a daemon without syslog (no /dev/log: containers, minimal systems)
  // would lose every line, so it writes into the cache dir instead, and says so now.
  if (log_file.empty() && !cmd.foreground && ::access("/dev/log", W_OK) != 0) {
    log_file = cfg.cache_dir + "/ingestfs.log";
    std::cerr << "ingestfs: no syslog here (/dev/log): the daemon logs to " << log_file << "\n";
  }
  if (!log_file.empty()) {
    if (Status st = UseLogFile(log_file); !st.ok()) return Fail("log_file: " + st.message());
  } else if (StderrIsJournal()) {
    UseJournalPrefixes();
  }
  if (std::string why = CheckCacheBounds(cfg.cache_dir, space_opts); !why.empty()) {
    std::cerr << "ingestfs: " << why << "\n";
    return 1;
  }
  auto mtimes = cache::MtimeStore::Open(cfg.cache_dir);
  if (!mtimes.ok()) std::cerr << "ingestfs: mtimes: " << mtimes.status().message() << " (kept only while mounted)\n";
  // One arena: the daemon's threads (FUSE, uploads, HTTP) wait on disk and network far more
  // than on each other, and every further arena keeps its own freed memory; large buffers are
  // mapped and unmapped whole (40,000 small files in one batch: peak RSS 34 MiB, against 51 with
  // two arenas and glibc's moving threshold).
  HeapTrimmer::ConfigureAllocator(1, 256 * 1024);
  upload::InitHttp();
  upload::ClientPool pool;
  upload::PlatformHealth health;
  dialect_opts.limits.health = &health;
  std::unique_ptr<upload::Dialect> dialect_owner = upload::MakeDialect(cfg.dialect, cfg.api, token, pool, dialect_opts);
  upload::Dialect& dialect = *dialect_owner;
  // The platform is asked once before mounting: a token it refuses is an error now, not an empty
  // tree later; one that does not answer is mounted anyway (files wait in the cache), and said.
  if (auto listed = dialect.ListDatasets(); !listed.ok()) {
    Code code = listed.status().code();
    if (code == Code::kUnauthenticated || code == Code::kPermissionDenied) {
      std::cerr << "ingestfs: the platform at " << RedactUrl(cfg.api) << " refused the token ("
                << listed.status().message() << "): check token_file= or $INGESTFS_TOKEN. Not mounted.\n";
      return 1;
    }
    std::cerr << "ingestfs: warning: the platform at " << RedactUrl(cfg.api) << " is not answering ("
              << listed.status().message() << "); mounting anyway: files written wait in the cache and go up once "
              << "it answers (see `ingestfs status`)\n";
  }
  IngestFs fs(cfg, dialect, **journal, mtimes.ok() ? mtimes->get() : nullptr);
  fs.AttachHealth(&health);
  cache::CacheSpace space(cfg.cache_dir, space_opts);
  fs.AttachCacheSpace(&space);
  upload::Scheduler::Options sched_opts;
  sched_opts.settle = cfg.settle;
  sched_opts.workers = parallel;
  sched_opts.uploader.parallel = 4;
  sched_opts.uploader.keep_confirmed = true;
  sched_opts.uploader.retry.give_up_after = std::chrono::hours(1);
  sched_opts.uploader.retry.max_backoff = retry_max;
  sched_opts.uploader.retry.bad_answers_for = bad_answers;
  sched_opts.stale_after = cfg.stale_after;
  sched_opts.uploader.job_timeout = job_timeout;
  cfg.job_timeout = job_timeout;
  // Temporary names never reach the platform, whatever path queues them (the resume too).
  sched_opts.keep_local = [&fs](const std::string& name) { return fs.IsTemporaryName(name.substr(name.rfind('/') + 1)); };
  std::unique_ptr<upload::RateLimiter> limiter;
  std::unique_ptr<upload::BwScheduler> bw_scheduler;  // a timetable's changes, from after the fork
  if (cfg.bwlimit) {
    limiter = std::make_unique<upload::RateLimiter>(cfg.bwlimit->RateAt(static_cast<int>(upload::LocalSecondOfDay())));
    if (!cfg.bwlimit->constant()) bw_scheduler = std::make_unique<upload::BwScheduler>(*cfg.bwlimit, limiter.get());
  }
  sched_opts.uploader.limiter = limiter.get();
  upload::UploadMetrics upload_metrics;
  sched_opts.uploader.metrics = &upload_metrics;
  // Bound before the mount, so that a port already taken refuses the mount; served after the
  // daemon's fork.
  std::unique_ptr<MetricsServer> metrics_server;
  if (metrics_at) {
    auto bound = MetricsServer::Bind(*metrics_at, [&fs] { return fs.StatusJson(); }, &upload_metrics);
    if (!bound.ok()) {
      std::cerr << "ingestfs: " << bound.status().message() << ". Not mounted.\n";
      return 1;
    }
    metrics_server = std::move(bound).value();
  }
  // Memory freed as files are confirmed goes back to the system (RSS flat in files written).
  HeapTrimmer trimmer(std::chrono::seconds(2));
  upload::Scheduler scheduler(dialect, **journal, sched_opts,
                              [&fs, &trimmer](const cache::Entry& e, const upload::UploadOutcome& o) {
                                fs.OnConfirmed(e, o);
                                trimmer.Freed();
                              });
  fs.AttachScheduler(&scheduler);
  fs.RestoreFromJournal();

  fuse_session* se = fuse_session_new(&args, FuseOps(), sizeof(fuse_lowlevel_ops), &fs);
  if (se == nullptr) return Fail("the FUSE options were not accepted");
  KernelPrune prune(se);
  fs.SetPruneHint([&prune](uint64_t ino) { prune.Add(ino); },
                  [&prune] { return std::make_pair(prune.supported(), prune.asked()); });
  int rc = 1;
  if (fuse_set_signal_handlers(se) == 0) {
    // SIGHUP reopens the log file (logrotate moved it), instead of unmounting as libfuse's
    // handler would.
    struct sigaction hup {};
    hup.sa_handler = [](int) { RequestLogReopen(); };
    sigemptyset(&hup.sa_mask);
    hup.sa_flags = SA_RESTART;
    ::sigaction(SIGHUP, &hup, nullptr);
    if (fuse_session_mount(se, cmd.mountpoint) == 0) {
      if (!cmd.foreground && log_file.empty()) UseSyslog("ingestfs");
      if (fuse_daemonize(cmd.foreground) == 0) {
        // Threads start after the fork of fuse_daemonize, or they would be left behind.
        (*journal)->RecordPid();  // the daemon's pid, not its parent's: unmount waits for it
        prune.Start();
        trimmer.Start();
        if (bw_scheduler) bw_scheduler->Start();
        scheduler.Start();
        if (metrics_server) metrics_server->Serve();
        (*journal)->MakeSparesAhead(kSparesAhead);
        ControlServer control(cfg.control_socket, [&](const std::string& req) {
          return HandleControl(req, fs, scheduler);
        });
        Status cs = control.Start();
        if (!cs.ok()) LOG_ERROR("status commands will not work: %s", cs.message().c_str());
        size_t pending = (*journal)->Unfinished().size();
        LOG_INFO("mounted %s on %s (cache %s, %zu upload(s) to resume)", RedactUrl(cfg.api).c_str(), cmd.mountpoint,
                 cfg.cache_dir.c_str(), pending);
        // The kernel holds the mount and the control socket answers: dependants may start.
        ServiceNotifier notifier(
            [&fs] {
              auto doc = json::Parse(fs.StatusJson(), "status");
              return doc.ok() ? ServiceStatusLine(*doc) : std::string("status unknown");
            },
            std::chrono::seconds(2));
        notifier.Ready();
        fuse_loop_config* loop = fuse_loop_cfg_create();
        fuse_loop_cfg_set_max_threads(loop, 32);
        rc = fuse_session_loop_mt(se, loop) == 0 ? 0 : 1;
        fuse_loop_cfg_destroy(loop);
        metrics_server.reset();
        scheduler.Stop();
        if (bw_scheduler) bw_scheduler->Stop();
        trimmer.Stop();
        prune.Stop();
        fs.SetPruneHint(nullptr, nullptr);
        size_t left = (*journal)->Unfinished().size();
        if (left > 0) LOG_INFO("unmounted; %zu upload(s) stay in the journal for the next mount", left);
        notifier.Stopping(left > 0 ? "unmounted; " + std::to_string(left) + " upload(s) stay in the journal for the next mount"
                                   : "unmounted; nothing left to upload");
      }
      fuse_session_unmount(se);
    } else {
      std::cerr << "ingestfs: cannot mount on " << cmd.mountpoint << "\n";
    }
    fuse_remove_signal_handlers(se);
  }
  fuse_session_destroy(se);
  return rc;
}

}  // namespace ingestfs::fs
