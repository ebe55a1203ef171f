// The mount tests' fixture: a reference server on a free port, a mount of it over /dev/fuse,
// and what the platform holds (its listing's sha256 and version, its access log).
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/json.h"
#include "tests/support/http.h"
#include "tests/support/mount.h"

namespace ingestfs::testing {


inline constexpr uint64_t kMiB = 1 << 20;

inline std::string Xattr(const std::string& path, const std::string& name) {
  char buf[4096];
  ssize_t n = ::getxattr(path.c_str(), name.c_str(), buf, sizeof(buf));
  return n < 0 ? "<" + std::string(std::strerror(errno)) + ">" : std::string(buf, static_cast<size_t>(n));
}

// Polls an extended attribute until it has `want` (close(2) returns before FUSE's release is
// handled, and the platform lists a file a moment before the daemon hears it is done).
inline std::string WaitXattr(const std::string& path, const std::string& name, const std::string& want,
                      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string v;
  while (std::chrono::steady_clock::now() < deadline) {
    v = Xattr(path, name);
    if (v == want) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return v;
}

inline int Sh(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

inline std::string Q(const std::string& s) { return "'" + s + "'"; }

struct CmdResult {
  int code = -1;
  std::string out;
};

// Runs a shell command, capturing its output (stderr too) and exit code.
inline CmdResult Capture(const std::string& cmd_line) {
  CmdResult r;
  std::string cmd = cmd_line + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  int st = ::pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

inline CmdResult Ingestfs(const std::string& args) { return Capture(BinDir() + "/ingestfs " + args); }

class MountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = FuseUnavailableReason();
    if (!why.empty()) {
      const char* ci = std::getenv("CI");
      if (ci != nullptr && std::string(ci) == "true") FAIL() << "mount tests cannot run: " << why;
      GTEST_SKIP() << "MOUNT TESTS NOT RUN: " << why;
    }
    std::ofstream(tmp_ / "token") << ServerProcess::kToken << "\n";
    Serve({});
  }
  void Serve(std::vector<std::string> args) {
    server_.reset();  // one server per data dir: the old one exits before the new one starts
    server_ = std::make_unique<ServerProcess>(ServerProcess::Options{args, tmp_ / "platform", port_, builtin_store_});
    ASSERT_TRUE(server_->ok());
    port_ = server_->port();
  }
  std::unique_ptr<MountProcess> Mount(std::vector<std::string> extra = {}, const std::string& settle = "0.2") {
    extra.push_back("dialect=" + dialect_);
    auto m = std::make_unique<MountProcess>(MountProcess::Options{mount_api_.empty() ? server_->api() : mount_api_,
                                                                  tmp_ / "mnt",
                                                                  cache_dir_.empty() ? tmp_ / "cache" : cache_dir_,
                                                                  tmp_ / "token", settle, extra});
    if (!m->ok()) {  // the temp dir goes with the test: its log goes into the failure
      std::ifstream in(m->stderr_path());
      std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (log.size() > 4000) log = "..." + log.substr(log.size() - 4000);
      ADD_FAILURE() << "mount failed (" << (m->running() ? "not mounted after 10 s" : "the daemon exited")
                    << "); its log:\n" << log;
    }
    mount_log_ = m->stderr_path();
    return m;
  }
  Api api() const { return Api(server_->api(), ServerProcess::kToken); }
  // Runs `ingestfs ARGS...` to its end (at most 30 s): its exit code and its stderr.
  std::pair<int, std::string> RunIngestfs(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {BinDir() + "/ingestfs"};
    argv.insert(argv.end(), args.begin(), args.end());
    Child c;
    c.Start(argv, tmp_ / "run.err");
    int st = c.Wait(std::chrono::seconds(30));
    std::ifstream in(tmp_ / "run.err");
    std::string err((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::filesystem::remove(tmp_ / "run.err");
    return std::make_pair(WIFEXITED(st) ? WEXITSTATUS(st) : -1, err);
  }

  // name -> (sha256, version) on the platform.
  std::map<std::string, std::pair<std::string, int>> Listing(const std::string& dataset) const {
    std::map<std::string, std::pair<std::string, int>> out;
    auto doc = json::Parse(api().Read("/datasets?limit=1000").body, "datasets");
    if (!doc.ok() || !doc->IsObject()) return out;
    for (const auto& d : (*doc)["items"].GetArray()) {
      if (std::string(d["name"].GetString()) != dataset) continue;
      json::Document files = api().Files(d["id"].GetString());
      if (!files.IsObject()) return out;
      for (const auto& f : files["items"].GetArray()) {
        out[f["filename"].GetString()] = {f["sha256"].GetString(), f["version"].GetInt()};
      }
    }
    return out;
  }
  // Waits until every (name, local file) pair is on the platform byte-exact.
  bool WaitArrived(const std::string& dataset, const std::map<std::string, std::string>& want_sha,
                   std::chrono::seconds timeout = std::chrono::seconds(60)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto have = Listing(dataset);
      bool all = true;
      for (const auto& [name, sha] : want_sha) all &= have.count(name) && have[name].first == sha;
      if (all) return true;
      if (std::chrono::steady_clock::now() > deadline) {
        for (const auto& [name, sha] : want_sha) {
          if (have.count(name) && have[name].first == sha) continue;
          ADD_FAILURE() << name << ": platform has " << (have.count(name) ? have[name].first : "nothing")
                        << ", want " << sha;
        }
        std::ifstream in(mount_log_);
        std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        ADD_FAILURE() << "the daemon's log ends:\n" << log.substr(log.size() > 6000 ? log.size() - 6000 : 0);
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  int Count(const std::string& method, const std::string& path, long status = 200) const {
    int n = 0;
    for (auto& [m, p, s] : server_->AccessLogEntries()) n += m == method && p == path && s == status;
    return n;
  }
  int CountContaining(const std::string& method, const std::string& part) const {
    int n = 0;
    for (auto& [m, p, s] : server_->AccessLogEntries()) n += m == method && p.find(part) != std::string::npos;
    return n;
  }
  // The requests that begin an upload (presign, init, form), whatever the dialect.
  int Presigns() const {
    if (dialect_ == "sbg") return Count("POST", "/api/upload/multipart") + Count("POST", "/api/upload/multipart", 409);
    if (dialect_ == "aplos") return Count("POST", "/api/nca-engine/generate-upload-url");
    return Count("POST", "/api/ingest/upload/presigned") + CountContaining("POST", "/reupload/presigned");
  }
  // Overwrites of a platform file: the reupload endpoint (ingest), overwrite=true (sbg, which
  // without it would have answered 409 first), a new form for the same name (aplos).
  void ExpectOverwrites(int n) const {
    if (dialect_ == "ingest") {
      EXPECT_EQ(CountContaining("POST", "/reupload/presigned"), n);
    } else if (dialect_ == "sbg") {
      EXPECT_EQ(Count("POST", "/api/upload/multipart", 409), 0);
    }
  }
  // Bodies the data plane has stored (parts, objects, forms' files).
  int Stored() const {
    return dialect_ == "aplos" ? Count("POST", "/ingest", 204) : CountContaining("PUT", "/ingest/staging/");
  }

  TempDir tmp_;
  int port_ = 0;
  std::string dialect_ = "ingest";
  std::string mount_log_;  // the latest mount's stderr, shown when files do not arrive
  std::string cache_dir_;  // the mounts' cache dir; empty: a folder of tmp_
  std::string mount_api_;  // the API the mounts talk to; empty: the server's own
  // The built-in store even in a run over an external one: for what only it can be told to do
  // (a platform's own success code and headers on its data plane).
  bool builtin_store_ = false;
  std::unique_ptr<ServerProcess> server_;
};


}  // namespace ingestfs::testing
