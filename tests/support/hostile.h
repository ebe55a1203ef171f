// A hostile platform for tests: an HTTP proxy on 127.0.0.1 in front of a real ingestfs-server
// that forwards every request, except those a test's rule answers itself (garbage, endless
// pages, bodies without end). The mount under test talks to the proxy's API URL; presigned URLs
// still point at the real server. Runs in the test's own process, on a free port.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace ingestfs::testing {

class HostileProxy {
 public:
  // Answers the request itself and returns true, or returns false to let it through.
  using Rule = std::function<bool(const httplib::Request&, httplib::Response&)>;

  explicit HostileProxy(int upstream_port);
  ~HostileProxy();
  bool ok() const { return port_ > 0; }
  std::string api() const { return "http://127.0.0.1:" + std::to_string(port_) + "/api"; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void SetRule(Rule rule);
  // Requests the rule answered so far.
  int answered() const { return answered_.load(); }

 private:
  void Handle(const httplib::Request& req, httplib::Response& res);

  int upstream_port_;
  int port_ = 0;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::mutex mu_;
  Rule rule_;  // GUARDED_BY(mu_)
  std::atomic<int> answered_{0};
};

}  // namespace ingestfs::testing
