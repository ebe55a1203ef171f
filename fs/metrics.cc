#include "fs/metrics.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <httplib.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "common/log.h"
#include "common/time_util.h"

namespace ingestfs::fs {
namespace {

class Exposition {
 public:
  void Head(const char* name, const char* type, const char* help) {
    out_ += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void Sample(const std::string& name, const std::string& labels, double v) {
    char num[64];
    if (v == static_cast<double>(static_cast<int64_t>(v)) && v < 9e15 && v > -9e15) {
      std::snprintf(num, sizeof(num), "%" PRId64, static_cast<int64_t>(v));
    } else {
      std::snprintf(num, sizeof(num), "%.10g", v);
    }
    out_ += name + (labels.empty() ? "" : "{" + labels + "}") + " " + num + "\n";
  }
  void One(const char* name, const char* type, const char* help, double v) {
    Head(name, type, help);
    Sample(name, "", v);
  }
  void Hist(const char* name, const char* help, const upload::Histogram& h) {
    Head(name, "histogram", help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.bounds().size(); ++i) {
      cumulative += h.counts()[i];
      char le[64];
      std::snprintf(le, sizeof(le), "%g", h.bounds()[i]);
      Sample(std::string(name) + "_bucket", std::string("le=\"") + le + "\"", static_cast<double>(cumulative));
    }
    Sample(std::string(name) + "_bucket", "le=\"+Inf\"", static_cast<double>(h.count()));
    Sample(std::string(name) + "_sum", "", h.sum());
    Sample(std::string(name) + "_count", "", static_cast<double>(h.count()));
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

double IntAt(const json::Value& status, const char* object, const char* field) {
  const json::Value* o = json::Find(status, object);
  return o != nullptr && o->IsObject() ? static_cast<double>(json::IntOr(*o, field)) : 0;
}

}  // namespace

std::string MetricsText(const json::Value& status, const upload::UploadMetrics::Snapshot& m) {
  Exposition e;
  const char* states[] = {"pending", "uploading", "processing", "failed", "interrupted"};
  e.Head("ingestfs_files", "gauge", "Files of the mount by state (open: being written; failed and interrupted wait for a user).");
  e.Sample("ingestfs_files", "state=\"open\"", IntAt(status, "counts", "open"));
  for (const char* s : states) e.Sample("ingestfs_files", std::string("state=\"") + s + "\"", IntAt(status, "counts", s));
  e.Head("ingestfs_bytes", "gauge", "Bytes of the mount's files by state.");
  for (const char* s : states) e.Sample("ingestfs_bytes", std::string("state=\"") + s + "\"", IntAt(status, "bytes", s));
  e.One("ingestfs_files_stalled", "gauge", "Files waiting longer than stale_after without being confirmed.",
        IntAt(status, "counts", "stalled"));
  e.One("ingestfs_oldest_waiting_seconds", "gauge", "Age of the oldest file closed and not yet confirmed (0: none).",
        IntAt(status, "queue", "oldest_waiting_s"));
  e.One("ingestfs_queue_bytes_to_send", "gauge", "Bytes of waiting and uploading files not yet sent.",
        IntAt(status, "queue", "to_send_bytes"));

  e.One("ingestfs_uploads_confirmed_total", "counter", "Files the platform confirmed since the mount started.",
        static_cast<double>(m.confirmed));
  e.One("ingestfs_confirmed_bytes_total", "counter", "Bytes of the files the platform confirmed.",
        static_cast<double>(m.confirmed_bytes));
  e.Head("ingestfs_uploads_failed_total", "counter",
         "Files whose upload failed, by reason: refused (token or rights), rejected (by the platform), integrity "
         "(bytes or ETags that did not match), local (the cache's disk), platform (unreachable or garbage past the "
         "retry budget), other.");
  for (const auto& [reason, n] : m.failed) {
    e.Sample("ingestfs_uploads_failed_total", "reason=\"" + reason + "\"", static_cast<double>(n));
  }
  e.One("ingestfs_retries_total", "counter", "Requests retried (network errors, 5xx, expired URLs, garbage).",
        static_cast<double>(m.retries));
  e.One("ingestfs_sent_bytes_total", "counter", "Bytes of parts the store took.", static_cast<double>(m.sent_bytes));
  e.One("ingestfs_last_confirmation_timestamp_seconds", "gauge",
        "Unix time of the last confirmation (0: none since the mount started).",
        static_cast<double>(m.last_confirmation_unix));
  e.Hist("ingestfs_close_to_confirm_seconds", "Time from a file's close to the platform's confirmation.",
         m.close_to_confirm);
  e.Hist("ingestfs_part_upload_seconds", "Time of one part's request to the store (a whole body for single requests).",
         m.part_seconds);

  if (const json::Value* c = json::Find(status, "cache"); c != nullptr && c->IsObject()) {
    e.Head("ingestfs_cache_bytes", "gauge", "Bytes the cache holds: pending (not yet confirmed), cached (read cache).");
    e.Sample("ingestfs_cache_bytes", "kind=\"pending\"", static_cast<double>(json::IntOr(*c, "pending_bytes")));
    e.Sample("ingestfs_cache_bytes", "kind=\"cached\"", static_cast<double>(json::IntOr(*c, "cached_bytes")));
    e.One("ingestfs_cache_max_bytes", "gauge", "cache_max (0: no bound).", static_cast<double>(json::IntOr(*c, "max_bytes")));
    e.One("ingestfs_cache_min_free_bytes", "gauge", "cache_min_free: the free space the cache leaves on its disk.",
          static_cast<double>(json::IntOr(*c, "min_free_bytes")));
    e.One("ingestfs_cache_disk_free_bytes", "gauge", "Free space on the disk holding the cache.",
          static_cast<double>(json::IntOr(*c, "free_bytes")));
  }
  if (const json::Value* h = json::Find(status, "platform_health"); h != nullptr && h->IsObject()) {
    std::string state = json::StringOr(*h, "state");
    e.One("ingestfs_platform_up", "gauge", "1 while the platform answers and takes the token, else 0.",
          state == "answering" ? 1 : 0);
    auto last = ParseIso8601Utc(json::StringOr(*h, "last_answer"));
    e.One("ingestfs_platform_last_answer_timestamp_seconds", "gauge",
          "Unix time of the platform's last answer (0: none yet).", last ? static_cast<double>(*last) : 0);
  }
  return e.Take();
}

StatusOr<MetricsAddress> ParseMetricsAddress(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Status(Code::kInvalidArgument, "metrics=" + text + ": " + why +
                                              " (PORT, or HOST:PORT with HOST an IP address, e.g. 127.0.0.1:9464)");
  };
  MetricsAddress a;
  std::string port = text;
  a.host = "127.0.0.1";
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find("]:");
    if (close == std::string::npos) return bad("an IPv6 address is written [ADDRESS]:PORT");
    a.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    in6_addr v6;
    if (inet_pton(AF_INET6, a.host.c_str(), &v6) != 1) return bad("'" + a.host + "' is not an IPv6 address");
  } else if (size_t colon = text.rfind(':'); colon != std::string::npos) {
    a.host = text.substr(0, colon);
    port = text.substr(colon + 1);
    in_addr v4;
    if (inet_pton(AF_INET, a.host.c_str(), &v4) != 1) return bad("'" + a.host + "' is not an IPv4 address");
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) {
    return bad("the port must be a number");
  }
  a.port = std::stoi(port);
  if (a.port < 1 || a.port > 65535) return bad("the port must be 1 to 65535");
  return a;
}

StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Bind(const MetricsAddress& at,
                                                             std::function<std::string()> status_json,
                                                             const upload::UploadMetrics* metrics) {
  std::unique_ptr<MetricsServer> s(new MetricsServer());
  s->server_ = std::make_unique<httplib::Server>();
  // A scrape every few seconds: one worker is plenty, and costs one thread, not a pool.
  s->server_->new_task_queue = [] { return new httplib::ThreadPool(1); };
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, which let a second mount share the
  // port and answer every other scrape in the first one's name.
  s->server_->set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  s->server_->Get("/metrics", [status_json, metrics](const httplib::Request&, httplib::Response& res) {
    auto doc = json::Parse(status_json(), "status");
    json::Document empty;
    empty.SetObject();
    res.set_content(MetricsText(doc.ok() ? *doc : empty, metrics->Get()), "text/plain; version=0.0.4; charset=utf-8");
  });
  errno = 0;
  if (!s->server_->bind_to_port(at.host, at.port)) {
    int err = errno;
    std::string where = (at.host.find(':') != std::string::npos ? "[" + at.host + "]" : at.host) + ":" +
                        std::to_string(at.port);
    return Status(Code::kFailedPrecondition,
                  "metrics=" + where + ": cannot listen there" + (err != 0 ? std::string(": ") + std::strerror(err) : ""));
  }
  s->where_ = at.host + ":" + std::to_string(at.port);
  return s;
}

void MetricsServer::Serve() {
  httplib::Server* server = server_.get();
  thread_ = std::thread([server] { server->listen_after_bind(); });
  LOG_INFO("metrics: serving /metrics on %s", where_.c_str());
}

MetricsServer::~MetricsServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace ingestfs::fs
