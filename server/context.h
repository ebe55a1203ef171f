// What every route of the reference server shares: its options, the stores, the processor
// and the presigner. Built once in App; routes hold a reference.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include "common/strings.h"
#include "server/http.h"
#include "server/meta_store.h"
#include "server/object_store.h"
#include "server/s3_client.h"
#include "server/sigv4.h"

namespace ingestfs::server {

class Processor;

struct ServerOptions {
  std::string listen_host = "127.0.0.1";
  int listen_port = 8080;
  std::string data_dir;
  AuthConfig auth;
  std::string access_key = "ingestfs-local";
  std::string secret_key = "ingestfs-local-secret";
  std::string region = "us-east-1";
  std::string bucket = "ingest";
  std::string public_url;  // data-plane base URL in presigned URLs; default http://<listen>
  uint64_t part_size = 8ULL << 20;
  uint64_t multipart_threshold = 8ULL << 20;
  long url_ttl = 3600;
  int processing_delay_ms = 0;
  std::string access_log;
  FaultOptions faults;
  int threads = 64;
  // sbg: the part size every upload gets (0: the client's wish, within S3's limits), the
  // headers each part request must carry (signed into its URL), the store's success status.
  uint64_t sbg_part_size = 0;
  std::vector<std::pair<std::string, std::string>> sbg_part_headers = {{"Content-Type", "application/octet-stream"}};
  int sbg_part_status = 200;
  // aplos: the largest file one presigned POST may carry (the policy's content-length-range).
  uint64_t post_max_size = 5ULL << 30;
  // An external S3 store for the bytes; an empty endpoint: the built-in store.
  S3Config s3;
};

inline constexpr uint64_t kMinPartSize = 5ULL << 20;
inline constexpr uint64_t kMaxPartSize = 5ULL << 30;
inline constexpr uint64_t kMaxParts = 10000;
inline constexpr uint64_t kMaxObjectSize = 5ULL << 40;

struct ServerContext {
  ServerOptions opts;
  MetaStore* meta = nullptr;
  ObjectStore* objects = nullptr;
  // The external store, when the bytes live there (ServerOptions::s3); the presigner below then
  // signs for it (public_url, public_host, creds and opts.bucket are the store's).
  const S3Client* s3 = nullptr;
  Processor* processor = nullptr;
  SigV4Credentials creds;
  std::string public_url;   // "http://127.0.0.1:PORT"
  std::string public_host;  // "127.0.0.1:PORT", the Host header clients send
  std::string session_token;  // aplos: the temporary credentials' token its POST forms carry

  // A presigned URL for `method` on /<bucket>/<key>, valid for `ttl` seconds.
  std::string PresignUrl(const std::string& method, const std::string& key, const QueryParams& extra,
                         const std::vector<std::pair<std::string, std::string>>& signed_headers = {}) const {
    PresignInput in;
    in.signed_headers = signed_headers;
    in.method = method;
    in.host = public_host;
    in.path = "/" + opts.bucket + "/" + key;
    in.extra_query = extra;
    in.now = std::time(nullptr);
    in.expires_seconds = opts.url_ttl;
    return public_url + UriEncode(in.path, true) + "?" + Presign(creds, in);
  }
};

}  // namespace ingestfs::server
