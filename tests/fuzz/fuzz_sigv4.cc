// The reference server's request authentication: SigV4 presigned-URL verification (query) and
// header (Authorization) verification, and POST policies (base64 JSON, conditions). The input
// is split into fields at newlines: method, path, then query or form pairs "name=value", and
// header lines "name: value".
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/strings.h"
#include "server/sigv4.h"

using namespace ingestfs;
using namespace ingestfs::server;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool post = data[0] & 1;
  std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<std::string> lines = Split(text, '\n');
  SigV4Credentials creds{"fuzz-access", "fuzz-secret-not-a-key"};
  const std::time_t now = 1764633600;  // fixed: findings replay
  QueryParams params;
  std::vector<std::pair<std::string, std::string>> headers;
  for (size_t i = 2; i < lines.size(); ++i) {
    const std::string& l = lines[i];
    size_t colon = l.find(": ");
    size_t eq = l.find('=');
    if (colon != std::string::npos && (eq == std::string::npos || colon < eq)) {
      headers.emplace_back(ToLower(l.substr(0, colon)), l.substr(colon + 2));
    } else if (eq != std::string::npos) {
      params.emplace_back(l.substr(0, eq), l.substr(eq + 1));
    }
  }
  if (post) {
    (void)VerifyPost(creds, "ingest", params, now);
  } else {
    VerifyInput in;
    in.method = lines.size() > 0 ? lines[0] : "GET";
    in.path = lines.size() > 1 ? lines[1] : "/";
    in.query = params;
    in.header = [&](const std::string& name) -> std::optional<std::string> {
      for (const auto& [k, v] : headers) {
        if (k == name) return v;
      }
      return std::nullopt;
    };
    in.now = now;
    (void)Verify(creds, in);
  }
  return 0;
}
