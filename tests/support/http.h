// A small blocking libcurl client for tests, and a fixture-style wrapper around a running
// ingestfs-server (free port, temp data dir, stopped by pid).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/json.h"
#include "tests/support/process.h"

namespace ingestfs::testing {

struct HttpResult {
  long status = 0;  // 0 when the transfer failed
  int curl_code = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lowercase names
  std::string error;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // sent when method is not GET and body_file is empty
  std::string body_file;             // streamed from this file when set
  uint64_t body_offset = 0;          // with body_file: send `body_length` bytes from here
  int64_t body_length = -1;          // -1: to the end of the file
  bool send_body = false;            // send `body` even when empty (PUT of 0 bytes)
  // A POST as multipart/form-data: these fields in order, then `body` as the part "file".
  bool form = false;
  std::vector<std::pair<std::string, std::string>> form_fields = {};
};

HttpResult Http(const HttpRequest& req);

// Runs build/bin/ingestfs-server on 127.0.0.1 with a fresh data dir (or the given one).
class ServerProcess {
 public:
  struct Options {
    std::vector<std::string> extra_args;
    std::string data_dir;  // empty: a temp dir owned by this object
    int port = 0;          // 0: a free one
    bool builtin_store = false;  // the built-in store even when the run has an external one
  };
  ServerProcess() : ServerProcess(Options{}) {}
  explicit ServerProcess(Options opts);
  ~ServerProcess();
  bool ok() const { return !base_url_.empty(); }
  const std::string& base_url() const { return base_url_; }   // http://127.0.0.1:PORT
  std::string api() const { return base_url_ + "/api"; }
  int port() const { return port_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& access_log() const { return access_log_; }
  const std::string& stderr_path() const { return stderr_path_; }
  // Lines of the access log as parsed JSON: (method, path, status). Over an external store, the
  // store's own log lines since this server started follow (its data plane), without the
  // server's own requests to it (those the built-in data plane never logs either).
  std::vector<std::tuple<std::string, std::string, long>> AccessLogEntries() const;
  int Stop() { return child_.Stop(); }
  void Kill() { child_.Kill(); }
  pid_t pid() const { return child_.pid(); }

  static constexpr const char* kToken = "test-token-0123456789";
  // The external S3 store the servers of this run keep their bytes in ($INGESTFS_TEST_S3_ENV, a
  // settings file written by scripts/ceph-local.sh), or "" for the built-in store. Servers get
  // it unless Options::builtin_store.
  static std::string ExternalStore();

 private:
  std::unique_ptr<TempDir> tmp_;
  std::string data_dir_;
  std::string access_log_;
  std::string stderr_path_;
  std::string base_url_;
  int port_ = 0;
  Child child_;
  std::string store_log_;        // the external store's log, when there is one
  std::streamoff store_log_from_ = 0;  // its size when this server started
};

// The `ingest` control API as tests use it (JSON in, parsed JSON out).
class Api {
 public:
  Api(std::string api_base, std::string token) : base_(std::move(api_base)), token_(std::move(token)) {}
  HttpResult Call(const std::string& method, const std::string& path, const std::string& json_body = "") const;
  // A read that tries again on transport errors and 5xx (for servers with injected faults).
  HttpResult Read(const std::string& path) const;
  // Helpers that assert nothing; they return what the server said.
  std::string CreateDataset(const std::string& name) const;  // id, empty on failure
  HttpResult Presign(const std::string& dataset_id, const std::string& filename, uint64_t size) const;
  HttpResult Reupload(const std::string& dataset_id, const std::string& filename, uint64_t size) const;
  HttpResult Complete(const std::string& job_id, const std::vector<std::pair<int, std::string>>& parts) const;
  // Polls job status until completed or failed (or 2 minutes); returns the last status body.
  json::Document WaitJob(const std::string& job_id) const;
  // One page of the file listing.
  json::Document Files(const std::string& dataset_id) const;

 private:
  std::string base_;
  std::string token_;
};

// Uploads `data` through a whole presign -> PUT parts -> complete -> wait cycle (reupload when
// `reupload`); returns the final job document.
json::Document UploadThroughApi(const Api& api, const std::string& dataset_id, const std::string& filename,
                                const std::string& data, bool reupload = false);

}  // namespace ingestfs::testing
