// S3Client: the reference server's own requests to an external S3-compatible store (Ceph's
// RADOS Gateway, MinIO, AWS S3), for a platform that keeps only its catalogue and jobs and lets
// the store hold the bytes: start, list, complete and abort multipart uploads, look at and
// delete objects, read an object back to compute its SHA-256.
//
// Every request is authenticated as the platform's clients are: by a SigV4 presigned URL
// (query-string form, payload UNSIGNED-PAYLOAD), which S3 accepts for each of these
// operations, so one signer (server/sigv4) serves both. Idempotent requests are retried on
// connection errors and 5xx answers (3 tries); answers are parsed with tinyxml2 by the
// functions below (each fuzzed), and an <Error> body becomes a Status that names the operation,
// the key and the store's code and message. Secrets never appear in a message: URLs are shown
// without their query.
// Thread safety: const methods may be called from any thread (a connection per call).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "server/sigv4.h"

namespace ingestfs::server {

struct S3Config {
  std::string endpoint;  // "http://127.0.0.1:7480" (scheme, host, port; no path)
  std::string region = "us-east-1";
  std::string bucket;
  std::string access_key;
  std::string secret_key;
};

struct S3Part {
  int number = 0;
  uint64_t size = 0;
  std::string etag;  // quoted, as the store gives it
};

struct S3Object {
  uint64_t size = 0;
  std::string etag;  // quoted
};

// The store's <Error>: code and message ("" when absent).
struct S3ErrorBody {
  std::string code;
  std::string message;
};

struct ListPartsPage {
  std::vector<S3Part> parts;
  bool truncated = false;
  int next_marker = 0;
};

// Parsers of the store's XML answers. Garbage gives a Status naming what is missing.
StatusOr<std::string> ParseInitiateMultipart(const std::string& xml);  // the UploadId
StatusOr<ListPartsPage> ParseListParts(const std::string& xml);
// CompleteMultipartUpload may answer 200 with an <Error> body (S3 does, after a long
// assembly): that is a failure. Returns the ETag otherwise, "" when the store left it empty (Ceph
// RGW 16 does; S3Client::CompleteMultipart then asks the object's).
StatusOr<std::string> ParseCompleteMultipart(const std::string& xml);
std::optional<S3ErrorBody> ParseErrorBody(const std::string& xml);

class S3Client {
 public:
  explicit S3Client(S3Config cfg);
  const S3Config& config() const { return cfg_; }
  // "127.0.0.1:7480", the Host header presigned URLs are signed for.
  const std::string& host() const { return host_; }
  SigV4Credentials credentials() const;

  // A presigned URL for `method` on /<bucket>/<key>, valid `ttl` seconds.
  std::string PresignUrl(const std::string& method, const std::string& key, const QueryParams& extra, long ttl,
                         const std::vector<std::pair<std::string, std::string>>& signed_headers = {}) const;

  Status CheckBucket() const;  // HEAD of the bucket: reachable, credentials and bucket right
  StatusOr<std::string> CreateMultipart(const std::string& key) const;
  // Every part, asking `page_size` at a time (S3's most is 1000).
  StatusOr<std::vector<S3Part>> ListParts(const std::string& key, const std::string& upload_id,
                                          int page_size = 1000) const;
  // Returns the object's ETag. `parts` in order, ETags as the store gave them.
  StatusOr<std::string> CompleteMultipart(const std::string& key, const std::string& upload_id,
                                          const std::vector<S3Part>& parts) const;
  Status AbortMultipart(const std::string& key, const std::string& upload_id) const;
  StatusOr<std::optional<S3Object>> Head(const std::string& key) const;  // nullopt: no such key
  Status Delete(const std::string& key) const;
  // Reads the object and returns its SHA-256 (hex) and size.
  StatusOr<std::pair<std::string, uint64_t>> Sha256(const std::string& key) const;

 private:
  struct Answer {
    int status = 0;
    std::string body;
    std::string etag;
    uint64_t length = 0;
  };
  // One request, retried (when `idempotent`) on connection errors and 5xx. `sink` receives the
  // body instead of Answer::body when set.
  StatusOr<Answer> Call(const std::string& method, const std::string& key, const QueryParams& query,
                        const std::string& body, bool idempotent, const std::string& what,
                        const std::function<bool(const char*, size_t)>& sink = nullptr) const;
  Status Failed(const std::string& what, const Answer& a) const;

  S3Config cfg_;
  std::string host_;
};

}  // namespace ingestfs::server
