// AWS Signature Version 4, query-string ("presigned URL") form, for service s3.
//
// The reference server presigns URLs with Presign() and verifies incoming data-plane requests
// with Verify(), following S3's rules: canonical URI = each path segment percent-encoded once
// (S3 does not double-encode), canonical query = every parameter but X-Amz-Signature, sorted,
// payload hash UNSIGNED-PAYLOAD. Checked against AWS's published example and against botocore.
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ingestfs::server {

struct SigV4Credentials {
  std::string access_key;
  std::string secret_key;
  std::string region = "us-east-1";
  std::string service = "s3";
};

using QueryParams = std::vector<std::pair<std::string, std::string>>;  // decoded, in order

struct PresignInput {
  std::string method;       // "PUT", "GET"
  std::string host;         // value of the Host header the client will send, "127.0.0.1:8080"
  std::string path;         // decoded, "/bucket/key with spaces"
  QueryParams extra_query;  // decoded, e.g. {"partNumber","1"},{"uploadId","..."}
  std::time_t now = 0;
  long expires_seconds = 3600;
  // Headers (lowercase name, value) the request must carry, signed along with host: a client
  // that leaves one out or changes it gets SignatureDoesNotMatch, as from S3.
  std::vector<std::pair<std::string, std::string>> signed_headers;
};

// The full query string (encoded, without '?'): the extra parameters plus the X-Amz-* ones,
// ending with X-Amz-Signature.
std::string Presign(const SigV4Credentials& creds, const PresignInput& in);

// An S3-style error: HTTP status, <Code>, <Message>.
struct S3Error {
  int http_status = 403;
  std::string code;
  std::string message;
};

struct VerifyInput {
  std::string method;
  std::string path;          // decoded
  QueryParams query;         // decoded, as received (X-Amz-Signature included)
  std::function<std::optional<std::string>(const std::string& lower_name)> header;
  std::time_t now = 0;
};

// nullopt when the request carries a valid, unexpired signature by `creds`.
std::optional<S3Error> Verify(const SigV4Credentials& creds, const VerifyInput& in);

// Browser-based upload with a POST policy (SigV4): the form fields a platform hands out for
// one key, in the order a client must send them (the file goes last).
struct PostPolicyInput {
  std::string bucket;
  std::string key;
  uint64_t max_size = 0;  // content-length-range 0..max_size
  std::string security_token;  // x-amz-security-token, when the credentials are temporary
  std::time_t now = 0;
  long expires_seconds = 3600;
};
QueryParams PresignPost(const SigV4Credentials& creds, const PostPolicyInput& in);

// What a valid POST policy allows, once its signature, expiry and field conditions passed.
struct PostGrant {
  std::string key;
  uint64_t min_size = 0;
  uint64_t max_size = UINT64_MAX;
};
// Checks the form fields received before the file (names compared case-insensitively, as S3
// does) against their policy: signature, expiry, and every condition; every field must be
// allowed by a condition. The size is checked by the caller once the file has arrived.
struct PostVerdict {
  std::optional<S3Error> error;
  PostGrant grant;
};
PostVerdict VerifyPost(const SigV4Credentials& creds, const std::string& bucket, const QueryParams& fields,
                       std::time_t now);

// Exposed for tests.
std::string CanonicalQuery(const QueryParams& params);  // excludes X-Amz-Signature
std::string SigningKey(const std::string& secret, const std::string& date, const std::string& region,
                       const std::string& service);

}  // namespace ingestfs::server
