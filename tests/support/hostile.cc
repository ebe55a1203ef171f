#include "tests/support/hostile.h"

#include <httplib.h>

#include <chrono>

namespace ingestfs::testing {

HostileProxy::HostileProxy(int upstream_port)
    : upstream_port_(upstream_port), server_(std::make_unique<httplib::Server>()) {
  auto handle = [this](const httplib::Request& req, httplib::Response& res) { Handle(req, res); };
  server_->Get(".*", handle);
  server_->Post(".*", handle);
  server_->Put(".*", handle);
  server_->Delete(".*", handle);
  server_->Patch(".*", handle);
  server_->set_keep_alive_timeout(1);
  int port = server_->bind_to_any_port("127.0.0.1");
  if (port <= 0) return;
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  port_ = port;
}

HostileProxy::~HostileProxy() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

void HostileProxy::SetRule(Rule rule) {
  std::lock_guard<std::mutex> lock(mu_);
  rule_ = std::move(rule);
}

void HostileProxy::Handle(const httplib::Request& req, httplib::Response& res) {
  Rule rule;
  {
    std::lock_guard<std::mutex> lock(mu_);
    rule = rule_;
  }
  if (rule && rule(req, res)) {
    ++answered_;
    return;
  }
  httplib::Client up("127.0.0.1", upstream_port_);
  up.set_read_timeout(60, 0);
  httplib::Headers headers;
  for (const auto& [k, v] : req.headers) {
    if (k == "Authorization" || k == "X-SBG-Auth-Token" || k == "Content-Type") headers.emplace(k, v);
  }
  std::string type = req.get_header_value("Content-Type");
  httplib::Result got = req.method == "GET"      ? up.Get(req.target, headers)
                        : req.method == "DELETE" ? up.Delete(req.target, headers, req.body, type)
                        : req.method == "PUT"    ? up.Put(req.target, headers, req.body, type)
                        : req.method == "PATCH"  ? up.Patch(req.target, headers, req.body, type)
                                                 : up.Post(req.target, headers, req.body, type);
  if (!got) {
    res.status = 502;
    res.set_content("{\"detail\":\"proxy: upstream unreachable\"}", "application/json");
    return;
  }
  res.status = got->status;
  res.set_content(got->body, got->get_header_value("Content-Type"));
}

}  // namespace ingestfs::testing
