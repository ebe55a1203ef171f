#include "fs/upload_command.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cache/journal.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/log.h"
#include "common/names.h"
#include "common/strings.h"
#include "upload/aplos_dialect.h"
#include "upload/dialects.h"
#include "upload/progress.h"
#include "upload/rate_limiter.h"
#include "upload/uploader.h"

namespace ingestfs::fs {

namespace {

constexpr char kUsage[] = R"(Usage: ingestfs upload --api URL --dataset NAME [options] FILE...
       ingestfs upload --resume [--cache-dir DIR] [options]

Uploads files to the platform and exits 0 only when the platform has confirmed every one of
them (its sha256 equals the local one). Each file is first copied into the cache dir and
recorded in its journal, so a killed run loses nothing: `--resume` finishes it.

  --api URL            the platform's API base, e.g. http://127.0.0.1:8080/api
  --dataset NAME       the dataset to upload into (created if it does not exist)
  --as NAME            the file's name in the dataset (one FILE only; default: its base name)
                       A directory FILE is uploaded recursively as DIRNAME/relative/path.
  --token-file FILE    read the platform token from FILE (first line)
                       (or set INGESTFS_TOKEN; --token TOKEN works but `ps` shows it)
  --cache-dir DIR      where copies and the journal live
                       (default $XDG_CACHE_HOME/ingestfs, else ~/.cache/ingestfs)
  --parallel N         parts and files in flight at once (default 4, at most 64)
  --content-type TYPE  sent with every file (default application/octet-stream)
  --dialect NAME       the platform's dialect: ingest (default), sbg or aplos
  --post-limit SIZE    aplos: the largest file the platform takes in one POST (default 5G);
                       larger files are refused before anything is sent
  --give-up-after SECS stop retrying a failing step after this long (default 3600; 0 = never)
  --bwlimit RATE       cap on upload speed in bytes/s for the whole run, e.g. 10M, 500K
  --resume             finish the uploads left in the journal (by a killed or failed run)
  --retry-failed       with --resume: also try again the ones that failed permanently
  --json               print a machine-readable summary on stdout
  -q, --quiet          no progress display (on a terminal: the copy into the cache, an
                       overall line, live lines per file, a summary at the end)
  -v, --verbose        log each retry and step to stderr, and a line per file that ends
                       however many files there are (otherwise only up to 20)
  -h, --help           this text

Exit status: 0 all confirmed, 1 some failed (each is named with the reason), 2 usage error.
)";

int Usage(const std::string& msg) {
  std::cerr << "ingestfs upload: " << msg << "\n(see ingestfs upload --help)\n";
  return 2;
}

struct Source {
  std::string path;
  std::string name;
};

// Expands FILE arguments: regular files as themselves, directories recursively.
Status Expand(const std::string& path, const std::string& name, std::vector<Source>* out) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(errno, path);
  if (S_ISREG(st.st_mode)) {
    out->push_back({path, name});
    return Status::Ok();
  }
  if (!S_ISDIR(st.st_mode)) return Status(Code::kInvalidArgument, path + " is not a regular file or directory");
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(path));
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) RETURN_IF_ERROR(Expand(path + "/" + n, name + "/" + n, out));
  return Status::Ok();
}

std::string BaseName(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  size_t s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

std::string DefaultCacheDir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && *xdg == '/') return std::string(xdg) + "/ingestfs";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr && *home != '\0' ? home : "/tmp") + "/.cache/ingestfs";
}

}  // namespace

int RunUploadCommand(int argc, char** argv) {
  std::string api, dataset, as, token_file, token_arg, cache_dir = DefaultCacheDir();
  std::string content_type = "application/octet-stream", dialect_name = "ingest";
  upload::DialectOptions dialect_opts;
  int parallel = 4;
  long give_up = 3600;
  uint64_t bwlimit = 0;
  bool resume = false, retry_failed = false, json_out = false, quiet = false;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string v;
    size_t eq = a.find('=');
    bool inline_value = StartsWith(a, "--") && eq != std::string::npos;
    if (inline_value) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    auto value = [&](const char* opt) -> bool {
      if (inline_value) return true;
      if (i + 1 >= argc) return false;
      v = argv[++i];
      (void)opt;
      return true;
    };
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--resume") resume = true;
    else if (a == "--retry-failed") retry_failed = true;
    else if (a == "--json") json_out = true;
    else if (a == "-q" || a == "--quiet") quiet = true;
    else if (a == "-v" || a == "--verbose") SetLogLevel(LogLevel::kDebug);
    else if (a == "--api" || a == "--dataset" || a == "--as" || a == "--token-file" || a == "--token" ||
             a == "--cache-dir" || a == "--parallel" || a == "--content-type" || a == "--dialect" ||
             a == "--give-up-after" || a == "--bwlimit" || a == "--post-limit") {
      if (!value(a.c_str())) return Usage(a + " needs a value");
      if (a == "--api") api = v;
      else if (a == "--dataset") dataset = v;
      else if (a == "--as") as = v;
      else if (a == "--token-file") token_file = v;
      else if (a == "--token") token_arg = v;
      else if (a == "--cache-dir") cache_dir = v;
      else if (a == "--content-type") content_type = v;
      else if (a == "--dialect") dialect_name = v;
      else if (a == "--parallel") {
        auto n = ParseInt(v);
        if (!n || *n < 1 || *n > 64) return Usage("--parallel must be 1 to 64");
        parallel = static_cast<int>(*n);
      } else if (a == "--post-limit") {
        auto r = ParseSize(v);
        if (!r.ok() || *r < 1 || *r > upload::AplosDialect::kMaxPost) return Usage("--post-limit must be a size from 1 byte to 5G");
        dialect_opts.post_limit = *r;
      } else if (a == "--bwlimit") {
        auto r = ParseSize(v);
        if (!r.ok() || *r < 1024) return Usage("--bwlimit must be bytes per second, at least 1K (e.g. 10M, 500K)");
        bwlimit = *r;
      } else if (a == "--give-up-after") {
        auto n = ParseInt(v);
        if (!n) return Usage("--give-up-after takes seconds");
        give_up = static_cast<long>(*n);
      }
    } else if (StartsWith(a, "-") && a != "-") {
      return Usage("unknown option " + a);
    } else {
      files.push_back(a);
    }
  }
  if (!quiet && !json_out && GetLogLevel() == LogLevel::kInfo) SetLogLevel(LogLevel::kError);
  if (!upload::IsDialect(dialect_name)) {
    return Usage("--dialect '" + dialect_name + "' is not a platform dialect (" + upload::kDialectNames + ")");
  }
  if (dialect_opts.post_limit > 0 && dialect_name != "aplos") return Usage("--post-limit goes with --dialect aplos");
  if (resume && !files.empty()) return Usage("--resume takes no FILE arguments");
  if (!resume && files.empty()) return Usage("no FILE to upload");
  if (!resume && (api.empty() || dataset.empty())) return Usage("--api and --dataset are required");
  if (!as.empty() && files.size() != 1) return Usage("--as takes exactly one FILE");
  if (retry_failed && !resume) return Usage("--retry-failed goes with --resume");
  if (!api.empty() && !StartsWith(api, "http://") && !StartsWith(api, "https://")) {
    return Usage("--api must be an http:// or https:// URL");
  }
  if (!dataset.empty()) {
    Status st = ValidateDatasetName(dataset);
    if (!st.ok()) return Usage("--dataset: " + st.message());
  }

  // The token: a file, the environment, or (visible in ps) the command line.
  std::string token;
  if (!token_file.empty()) {
    auto text = ReadFileToString(token_file);
    if (!text.ok()) return Usage("--token-file: " + text.status().message());
    token = std::string(Trim(Split(*text, '\n')[0]));
    if (token.empty()) return Usage("--token-file " + token_file + " is empty");
  } else if (const char* env = std::getenv("INGESTFS_TOKEN"); env != nullptr && *env != '\0') {
    token = env;
  } else if (!token_arg.empty()) {
    token = token_arg;
    std::cerr << "ingestfs upload: warning: a token given with --token is visible to other users in `ps`; "
                 "prefer --token-file or INGESTFS_TOKEN\n";
  } else {
    return Usage("no token: give --token-file FILE or set INGESTFS_TOKEN");
  }

  // Check every name before anything is copied or sent.
  std::vector<Source> sources;
  for (const std::string& f : files) {
    Status st = Expand(f, as.empty() ? BaseName(f) : as, &sources);
    if (!st.ok()) return Usage(st.message());
  }
  for (const Source& s : sources) {
    Status st = ValidateFileName(s.name);
    if (!st.ok()) return Usage(s.path + ": " + st.message());
  }

  std::vector<std::string> warnings;
  auto journal = cache::Journal::Open(cache_dir, &warnings);
  for (const std::string& w : warnings) std::cerr << "ingestfs upload: journal: " << w << "\n";
  if (!journal.ok()) {
    std::cerr << "ingestfs upload: " << journal.status().message() << "\n";
    return 1;
  }

  upload::ClientPool pool;
  std::vector<std::string> ids;
  if (resume) {
    for (const cache::Entry& e : (*journal)->Unfinished()) {
      if (e.failed && retry_failed) {
        Status st = (*journal)->RecordRetry(e.id);
        if (!st.ok()) std::cerr << "ingestfs upload: " << st.message() << "\n";
      }
      ids.push_back(e.id);
    }
    if (ids.empty() && !json_out) std::cerr << "ingestfs upload: nothing to resume in " << cache_dir << "\n";
  } else {
    size_t earlier = (*journal)->Unfinished().size();
    if (earlier > 0) {
      std::cerr << "ingestfs upload: " << earlier << " unfinished upload(s) from an earlier run are in " << cache_dir
                << "; `ingestfs upload --resume --cache-dir " << cache_dir << "` finishes them\n";
    }
    // The names the dataset already holds go through the reupload endpoint at once: one listing
    // for the whole command (a failure here only means each upload finds out by itself).
    std::set<std::string> existing;
    {
      auto d = upload::MakeDialect(dialect_name, api, token, pool, dialect_opts);
      auto id = d->EnsureDataset(dataset);
      auto files = id.ok() ? d->ListFiles(*id) : StatusOr<std::vector<upload::RemoteFile>>(id.status());
      if (files.ok()) {
        for (const upload::RemoteFile& f : *files) existing.insert(f.name);
      }
    }
    // Copying into the cache can take long (2 GiB: tens of seconds; thousands of files): on a
    // terminal one line, redrawn at most five times a second, says how far it is.
    bool tty = !quiet && !json_out && ::isatty(STDERR_FILENO) == 1;
    std::mutex draw_mu;
    auto last_draw = std::chrono::steady_clock::now() - std::chrono::seconds(1);
    size_t drawn = 0, index = 0;
    auto draw = [&](const Source& src, uint64_t copied, uint64_t size) {
      std::lock_guard<std::mutex> lock(draw_mu);
      auto now = std::chrono::steady_clock::now();
      if (now - last_draw < std::chrono::milliseconds(200)) return;
      last_draw = now;
      std::string line = "copying into the cache: file " + std::to_string(index + 1) + " of " +
                         std::to_string(sources.size()) + ", " + src.name + "  " +
                         upload::TerminalProgress::Bytes(static_cast<double>(copied)) + " of " +
                         upload::TerminalProgress::Bytes(static_cast<double>(size));
      std::fprintf(stderr, "\r%-*s", static_cast<int>(std::max(drawn, line.size())), line.c_str());
      std::fflush(stderr);
      drawn = line.size();
    };
    for (const Source& s : sources) {
      cache::Entry meta;
      meta.api = api;
      meta.dialect = dialect_name;
      meta.dataset = dataset;
      meta.name = s.name;
      meta.content_type = content_type;
      meta.remote_hint = existing.count(s.name) > 0;
      struct stat st {};
      uint64_t size = ::stat(s.path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
      if (tty) draw(s, 0, size);
      auto added = (*journal)->AddCopy(s.path, meta, tty ? std::function<void(uint64_t)>([&](uint64_t n) {
                                                       draw(s, n, size);
                                                     })
                                                   : nullptr);
      ++index;
      if (!added.ok()) {
        std::cerr << "ingestfs upload: " << s.path << ": " << added.status().message() << "\n";
        return 1;
      }
      ids.push_back(added->id);
    }
    if (tty && drawn > 0) std::fprintf(stderr, "\r%*s\r", static_cast<int>(drawn), "");
  }

  std::map<std::string, std::unique_ptr<upload::Dialect>> dialects;  // by dialect and API base
  std::map<std::string, std::unique_ptr<upload::Uploader>> uploaders;
  upload::TerminalProgress progress(stderr);
  upload::UploaderOptions opts;
  opts.parallel = parallel;
  std::unique_ptr<upload::RateLimiter> limiter;
  if (bwlimit > 0) limiter = std::make_unique<upload::RateLimiter>(bwlimit);
  opts.limiter = limiter.get();
  opts.retry.give_up_after = std::chrono::seconds(give_up);
  auto uploader_for = [&](const cache::Entry& e) -> upload::Uploader& {
    std::string base = api.empty() ? e.api : api;
    std::string which = upload::IsDialect(e.dialect) ? e.dialect : dialect_name;
    std::string key = which + " " + base;
    auto it = uploaders.find(key);
    if (it != uploaders.end()) return *it->second;
    dialects[key] = upload::MakeDialect(which, base, token, pool, dialect_opts);
    auto u = std::make_unique<upload::Uploader>(*dialects[key], **journal, opts, quiet ? nullptr : &progress);
    return *(uploaders[key] = std::move(u));
  };
  std::vector<cache::Entry> entries;
  for (const std::string& id : ids) {
    auto e = (*journal)->Get(id);
    if (e) {
      entries.push_back(*e);
      uploader_for(*e);
    }
  }

  // SIGINT/SIGTERM: stop waiting; the journal keeps everything for --resume.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGUSR1);  // our own wake-up of the signal thread at the end
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::atomic<bool> interrupted{false};
  std::thread signals([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    if (sig == SIGUSR1) return;
    interrupted = true;
    std::cerr << "\ningestfs upload: interrupted; the journal keeps what is left (ingestfs upload --resume)\n";
    for (auto& [b, u] : uploaders) u->Cancel();
  });

  uint64_t total_bytes = 0;
  for (const cache::Entry& e : entries) total_bytes += e.size;
  // One line per file only for a few files (or -v); always for a failure.
  progress.SetTotals(entries.size(), total_bytes, entries.size() <= 20 || GetLogLevel() == LogLevel::kDebug);
  auto began = std::chrono::steady_clock::now();
  std::vector<upload::UploadOutcome> outcomes(entries.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (;;) {
      size_t i = next++;
      if (i >= entries.size() || interrupted) return;
      outcomes[i] = uploader_for(entries[i]).Upload(entries[i].id);
    }
  };
  {
    std::vector<std::thread> workers;
    int n = std::max(1, std::min<int>(parallel, static_cast<int>(entries.size())));
    for (int i = 0; i < n; ++i) workers.emplace_back(worker);
    for (auto& t : workers) t.join();
  }
  pthread_kill(signals.native_handle(), SIGUSR1);
  signals.join();

  int failed = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Status& st = outcomes[i].status;
    if (!st.ok()) {
      ++failed;
      std::cerr << "ingestfs upload: " << entries[i].source << " -> " << entries[i].dataset << "/" << entries[i].name
                << ": failed: " << (st.message().empty() ? std::string("not finished") : st.message()) << "\n";
    }
  }
  if (!quiet && !json_out && !entries.empty() && ::isatty(STDERR_FILENO) == 1) {  // silent when piped
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    uint64_t confirmed_bytes = 0;
    for (size_t i = 0; i < entries.size(); ++i) confirmed_bytes += outcomes[i].status.ok() ? entries[i].size : 0;
    std::cerr << "ingestfs upload: " << entries.size() - static_cast<size_t>(failed) << " of " << entries.size()
              << " file(s) confirmed, " << upload::TerminalProgress::Bytes(static_cast<double>(confirmed_bytes))
              << " in " << upload::TerminalProgress::Duration(secs) << " ("
              << upload::TerminalProgress::Bytes(secs > 0 ? static_cast<double>(confirmed_bytes) / secs : 0) << "/s)"
              << (failed > 0 ? "; " + std::to_string(failed) + " failed (above)" : "")
              << (interrupted ? "; interrupted" : "") << "\n";
  }
  if (json_out) {
    std::cout << json::Object([&](json::Writer& w) {
      json::Key(w, "files");
      w.StartArray();
      for (size_t i = 0; i < entries.size(); ++i) {
        const cache::Entry& e = entries[i];
        const upload::UploadOutcome& o = outcomes[i];
        w.StartObject();
        json::KeyString(w, "source", e.source);
        json::KeyString(w, "dataset", e.dataset);
        json::KeyString(w, "name", e.name);
        json::KeyInt(w, "size", static_cast<int64_t>(e.size));
        json::KeyString(w, "sha256", e.sha256);
        json::KeyString(w, "status", o.status.ok() ? "confirmed" : "failed");
        json::KeyString(w, "job_id", o.job_id);
        json::KeyInt(w, "retries", o.attempts);
        if (!o.status.ok()) json::KeyString(w, "error", o.status.message());
        w.EndObject();
      }
      w.EndArray();
      json::KeyInt(w, "confirmed", static_cast<int64_t>(entries.size()) - failed);
      json::KeyInt(w, "failed", failed);
    }) << "\n";
  }
  return failed == 0 && !interrupted ? 0 : 1;
}

}  // namespace ingestfs::fs
