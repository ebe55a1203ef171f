// The mount's Prometheus endpoint (-o metrics=HOST:PORT): GET /metrics answers the text
// exposition format (version 0.0.4) built from the status JSON (IngestFs::StatusJson: files and
// bytes per state, the oldest waiting file, the cache, the platform's health) and the uploads'
// counters and histograms (upload::UploadMetrics). Every name starts with ingestfs_.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <functional>

#include "common/json.h"
#include "common/status.h"
#include "upload/metrics.h"

namespace httplib {
class Server;
}

namespace ingestfs::fs {

std::string MetricsText(const json::Value& status, const upload::UploadMetrics::Snapshot& m);

// "PORT" or "HOST:PORT" (an IPv4 address, or [IPv6]), as -o metrics= takes it; without a host,
// 127.0.0.1 (loopback unless the admin names another address).
struct MetricsAddress {
  std::string host;
  int port = 0;
};
StatusOr<MetricsAddress> ParseMetricsAddress(const std::string& text);

class MetricsServer {
 public:
  // Binds at once (an error names the address and why, e.g. the port is taken), so that a
  // mount can refuse before it mounts; `status_json` and `metrics` are asked at each scrape.
  static StatusOr<std::unique_ptr<MetricsServer>> Bind(const MetricsAddress& at,
                                                       std::function<std::string()> status_json,
                                                       const upload::UploadMetrics* metrics);
  // Serves on a thread of its own (after a daemon's fork: threads do not survive it).
  void Serve();
  ~MetricsServer();

 private:
  MetricsServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::string where_;
  std::thread thread_;
};

}  // namespace ingestfs::fs
