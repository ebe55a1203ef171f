// HttpClient: one libcurl easy handle, reused request after request so that its connection stays
// open (keep-alive). Not thread-safe: each upload worker owns one; ClientPool hands them out.
//
// Request bodies are either a small string (control API JSON) or a byte range of a file, read
// with pread as libcurl asks for it (no part is buffered whole). Response bodies are capped
// (hostile or broken peers cannot make us allocate without bound). Error messages never contain
// a whole URL: the query string (where presigned signatures live) is cut.
#pragma once

#include <curl/curl.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace ingestfs::upload {

class RateLimiter;

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // sent for POST/PUT when body_fd < 0
  int body_fd = -1;                  // with body_offset/body_length: a file range
  uint64_t body_offset = 0;
  uint64_t body_length = 0;
  long timeout_seconds = 0;          // 0: no overall limit (large parts); stalls are caught anyway
  int sink_fd = -1;                  // when set, a 2xx response body is written here, not kept
  uint64_t sink_max = UINT64_MAX;    // with sink_fd: a body longer than this is cut off (an error)
  RateLimiter* limiter = nullptr;    // when set, a body_fd body is sent no faster than it allows
  // A POST as multipart/form-data (a presigned POST): these fields in this order, then the
  // body_fd range as the part named "file" (filename `form_file_name`), streamed, never buffered.
  bool form = false;
  std::vector<std::pair<std::string, std::string>> form_fields;
  std::string form_file_name;
  // Called with the number of body bytes sent so far (for progress).
  std::function<void(uint64_t)> on_progress;
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // lowercase names
  std::string body;
};

class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Any HTTP status is a response; only transport failures are errors (kUnavailable, with the
  // curl reason and the redacted URL).
  StatusOr<HttpResponse> Do(const HttpRequest& req);

  static constexpr size_t kMaxResponseBody = 8 << 20;

 private:
  CURL* curl_;
};

// A thread-safe pool of clients, so that connections are reused across requests and threads.
class ClientPool {
 public:
  class Lease {
   public:
    Lease(ClientPool* pool, std::unique_ptr<HttpClient> c) : pool_(pool), client_(std::move(c)) {}
    ~Lease() { pool_->Return(std::move(client_)); }
    Lease(Lease&&) = default;
    HttpClient* operator->() { return client_.get(); }
    HttpClient& operator*() { return *client_; }

   private:
    ClientPool* pool_;
    std::unique_ptr<HttpClient> client_;
  };

  Lease Acquire();

 private:
  void Return(std::unique_ptr<HttpClient> c);
  std::mutex mu_;
  std::vector<std::unique_ptr<HttpClient>> idle_;  // GUARDED_BY(mu_)
};

// Once per process, before threads: curl_global_init.
void InitHttp();

}  // namespace ingestfs::upload
