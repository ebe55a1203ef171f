// The reference server's HTTP plumbing on top of cpp-httplib: a Router that wraps every route
// with the same instrumentation (bearer auth for the control plane, fault injection, the
// data-plane throttle and delay, the access log), and helpers for JSON and S3-XML replies.
// Thread safety: Router, Faults, RateLimiter and AccessLog are safe to use from the server's
// worker threads once routes are registered.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "server/sigv4.h"

namespace ingestfs::server {

enum class Plane {
  kHealth,   // no auth, no faults
  kControl,  // JSON API under /api, bearer auth (ingest, aplos)
  kSbg,      // JSON API under /api, X-SBG-Auth-Token auth (sbg)
  kData,     // S3 path-style data plane, presigned URLs
};

struct FaultOptions {
  double fail_rate = 0;           // share of requests answered 500 or 503
  double drop_rate = 0;           // share of responses cut mid-body (connection closed)
  int delay_ms = 0;               // added to every data-plane request
  uint64_t max_bytes_per_sec = 0;  // data-plane body throttle, 0 = none
};

// Server-wide token bucket for data-plane bodies.
class RateLimiter {
 public:
  explicit RateLimiter(uint64_t bytes_per_sec) : rate_(bytes_per_sec) {}
  // Blocks until `bytes` may pass. No-op when the rate is 0.
  void Consume(uint64_t bytes);

 private:
  uint64_t rate_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point next_ = std::chrono::steady_clock::now();  // GUARDED_BY(mu_)
};

class AccessLog {
 public:
  // Empty path: no log.
  explicit AccessLog(const std::string& path);
  ~AccessLog();
  void Write(const std::string& method, const std::string& path, int status, uint64_t bytes_in, bool dropped);

 private:
  std::mutex mu_;
  std::FILE* f_ = nullptr;  // GUARDED_BY(mu_)
};

// One request as the handlers see it.
struct Call {
  const httplib::Request& req;
  httplib::Response& res;
  const httplib::ContentReader* reader;  // set for streamed-body routes
  uint64_t bytes_in = 0;                 // handlers that stream the body add to this
  std::string token;                     // the client's token (control plane)

  // Streams the body through `sink` (throttled on the data plane); returns false if the
  // connection failed or `sink` returned false.
  std::function<bool(const std::function<bool(const char*, size_t)>&)> read_body;
  // Streams a multipart/form-data body: `header` is called at the start of each part (its name,
  // filename, content type), then `sink` with that part's bytes (throttled on the data plane).
  std::function<bool(const httplib::MultipartContentHeader&, const std::function<bool(const char*, size_t)>&)>
      read_form;
  // Waits as the data-plane throttle demands before `bytes` are sent; safe to keep and call
  // after the handler returns (from a response content provider).
  std::function<void(uint64_t)> throttle;
};

using Handler = std::function<void(Call&)>;

struct AuthConfig {
  std::set<std::string> tokens;           // may do anything
  std::set<std::string> readonly_tokens;  // GET only; writes get 403
};

class Router {
 public:
  Router(httplib::Server& server, const AuthConfig& auth, const FaultOptions& faults, AccessLog& log);

  // `pattern` is a regex (httplib style). Data-plane PUT/POST routes get a streamed body.
  void Route(const std::string& method, const std::string& pattern, Plane plane, Handler h);
  // From now on every request is answered 503 (connection closed) and changes nothing: a server
  // that is stopping must not accept a `complete` that a restarted one would never hear of.
  void StopServing() { stopping_ = true; }

 private:
  void Run(Plane plane, Call& call, const Handler& h);
  bool Roll(double rate);
  bool Authorize(Plane plane, Call& call);

  httplib::Server& server_;
  AuthConfig auth_;
  FaultOptions faults_;
  AccessLog& log_;
  RateLimiter limiter_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_{std::random_device{}()};  // GUARDED_BY(rng_mu_)
  std::atomic<bool> stopping_{false};
};

// {"detail": "..."} with `status`.
void ReplyDetail(httplib::Response& res, int status, const std::string& detail);
// FastAPI's 422: {"detail":[{"loc":[...],"msg":...,"type":...,"input":...,"ctx":{}}]}.
struct ValidationIssue {
  std::vector<std::string> loc;
  std::string msg;
  std::string type;
  std::string input_json = "null";  // the offending input, already JSON
  std::string ctx_json = "{}";
};
void ReplyValidation(httplib::Response& res, const std::vector<ValidationIssue>& issues);
void ReplyJson(httplib::Response& res, int status, const std::string& body);
void ReplyS3Error(httplib::Response& res, const S3Error& err, const std::string& resource);

std::string XmlEscape(const std::string& s);
std::string JsonQuote(const std::string& s);

}  // namespace ingestfs::server
