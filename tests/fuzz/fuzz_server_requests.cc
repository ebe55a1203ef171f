// The reference server's request handling, end to end over loopback: one App (every route, the
// stores, the processor) serves requests whose route, query and body come from the input; the
// control-plane ones carry a valid token, so the JSON bodies reach the handlers. Input:
// byte 0 picks the route, byte 1 the method; then "query\n" and the body. The server must
// answer every request (any status) and keep serving.
#include <httplib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server/app.h"

using namespace ingestfs;
using namespace ingestfs::server;

namespace {
constexpr char kToken[] = "fuzz-token";

struct Server {
  std::unique_ptr<App> app;
  std::thread thread;
  int port = 0;
};

Server& Get() {
  static Server* s = [] {
    auto* srv = new Server;
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/ingestfs-fuzz-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    ServerOptions o;
    o.listen_port = 0;
    o.data_dir = tmpl + "/data";
    o.auth.tokens.insert(kToken);
    o.threads = 4;
    srv->app = std::make_unique<App>(o);
    std::vector<std::string> warnings;
    if (!srv->app->Start(&warnings).ok()) std::abort();
    srv->port = srv->app->port();
    srv->thread = std::thread([srv] { srv->app->Run(); });
    return srv;
  }();
  return *s;
}

const char* const kRoutes[] = {
    "/api/datasets",
    "/api/datasets/ID",
    "/api/datasets/ID/files",
    "/api/datasets/ID/files/download",
    "/api/datasets/ID/reupload/presigned",
    "/api/ingest/upload/presigned",
    "/api/ingest/upload/presigned/JOB",
    "/api/ingest/upload/presigned/JOB/complete",
    "/api/ingest/jobs/JOB",
    "/api/projects",
    "/api/upload/multipart",
    "/api/upload/multipart/UP/part/1",
    "/api/upload/multipart/UP/complete",
    "/api/files/FID/download_info",
    "/api/nca-engine/files",
    "/api/nca-engine/generate-upload-url",
    "/api/nca-engine/generate-download-url",
    "/ingest/staging/JOB/a.bin",
    "/ingest",
    "/health",
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  Server& s = Get();
  std::string route = kRoutes[data[0] % (sizeof(kRoutes) / sizeof(kRoutes[0]))];
  const char* methods[] = {"GET", "POST", "PUT", "DELETE"};
  std::string method = methods[data[1] % 4];
  std::string rest(reinterpret_cast<const char*>(data + 2), size - 2);
  size_t nl = rest.find('\n');
  std::string query = nl == std::string::npos ? "" : rest.substr(0, nl);
  std::string body = nl == std::string::npos ? rest : rest.substr(nl + 1);
  std::string target = route;
  if (!query.empty()) {
    target += "?";
    for (unsigned char c : query) {  // keep the target one line of printable bytes
      target += (c > 0x20 && c < 0x7f && c != '#') ? static_cast<char>(c) : '_';
    }
  }
  httplib::Client cli("127.0.0.1", s.port);
  cli.set_read_timeout(30, 0);
  httplib::Headers headers = {{"Authorization", std::string("Bearer ") + kToken}, {"X-SBG-Auth-Token", kToken}};
  const char* type = route == "/ingest" ? "multipart/form-data; boundary=xyz" : "application/json";
  httplib::Result r = method == "GET"      ? cli.Get(target, headers)
                      : method == "DELETE" ? cli.Delete(target, headers, body, type)
                      : method == "PUT"    ? cli.Put(target, headers, body, type)
                                           : cli.Post(target, headers, body, type);
  if (!r) std::abort();  // the server did not answer
  return 0;
}
