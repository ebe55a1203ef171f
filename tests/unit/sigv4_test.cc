#include "server/sigv4.h"

#include <gtest/gtest.h>

#include "common/strings.h"

namespace ingestfs::server {
namespace {

// AWS's published example of a presigned URL (S3 API reference, "Authenticating Requests:
// Using Query Parameters (AWS Signature Version 4)"): GET examplebucket/test.txt.
const SigV4Credentials kAwsExample{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", "s3"};
constexpr std::time_t kExampleTime = 1369353600;  // 20130524T000000Z

TEST(SigV4, ReproducesAwsPublishedPresignedUrl) {
  PresignInput in;
  in.method = "GET";
  in.host = "examplebucket.s3.amazonaws.com";
  in.path = "/test.txt";
  in.now = kExampleTime;
  in.expires_seconds = 86400;
  std::string q = Presign(kAwsExample, in);
  EXPECT_EQ(q,
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2F"
            "aws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
}

QueryParams ParseQuery(const std::string& q) {
  QueryParams out;
  for (const std::string& pair : Split(q, '&')) {
    size_t eq = pair.find('=');
    out.emplace_back(*UriDecode(pair.substr(0, eq)), *UriDecode(pair.substr(eq + 1)));
  }
  return out;
}

VerifyInput VerifyFor(const std::string& method, const std::string& path, const std::string& query,
                      const std::string& host, std::time_t now) {
  VerifyInput v;
  v.method = method;
  v.path = path;
  v.query = ParseQuery(query);
  v.now = now;
  v.header = [host](const std::string& name) -> std::optional<std::string> {
    if (name == "host") return host;
    return std::nullopt;
  };
  return v;
}

TEST(SigV4, AcceptsTheAwsExampleWithinItsLifetime) {
  std::string q =
      "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2F"
      "aws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
      "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
  EXPECT_FALSE(Verify(kAwsExample, VerifyFor("GET", "/test.txt", q, "examplebucket.s3.amazonaws.com", kExampleTime + 60)));
  auto expired = Verify(kAwsExample, VerifyFor("GET", "/test.txt", q, "examplebucket.s3.amazonaws.com", kExampleTime + 86401));
  ASSERT_TRUE(expired);
  EXPECT_EQ(expired->code, "AccessDenied");
  EXPECT_EQ(expired->message, "Request has expired");
  EXPECT_EQ(expired->http_status, 403);
}

TEST(SigV4, AnySingleCharacterChangedFailsVerification) {
  SigV4Credentials creds{"ingestfs-local", "ingestfs-local-secret", "us-east-1", "s3"};
  PresignInput in;
  in.method = "PUT";
  in.host = "127.0.0.1:8080";
  in.path = "/ingest/staging/job/plate 1/A01.tif";
  in.extra_query = {{"partNumber", "3"}, {"uploadId", "abc123"}};
  in.now = 1800000000;
  in.expires_seconds = 3600;
  std::string q = Presign(creds, in);
  ASSERT_FALSE(Verify(creds, VerifyFor("PUT", in.path, q, in.host, in.now + 5)));
  // The encoded URL as a client sends it: path + '?' + query. Change each character in turn.
  std::string url = UriEncode(in.path, true) + "?" + q;
  int checked = 0;
  for (size_t i = 0; i < url.size(); ++i) {
    std::string bad = url;
    bad[i] = bad[i] == 'a' ? 'b' : (bad[i] == '0' ? '1' : 'a');
    size_t qm = bad.find('?');
    if (qm == std::string::npos) continue;  // the '?' itself was changed: not a presigned URL any more
    auto path = UriDecode(bad.substr(0, qm));
    if (!path.ok()) continue;
    QueryParams parsed;
    bool parse_ok = true;
    for (const std::string& pair : Split(bad.substr(qm + 1), '&')) {
      size_t eq = pair.find('=');
      auto k = UriDecode(pair.substr(0, eq));
      auto v = UriDecode(eq == std::string::npos ? "" : pair.substr(eq + 1));
      if (!k.ok() || !v.ok()) parse_ok = false;
      else parsed.emplace_back(*k, *v);
    }
    if (!parse_ok) continue;  // unparseable: rejected before any signature check
    VerifyInput v;
    v.method = "PUT";
    v.path = *path;
    v.query = parsed;
    v.now = in.now + 5;
    v.header = [&](const std::string& n) -> std::optional<std::string> {
      return n == "host" ? std::optional<std::string>(in.host) : std::nullopt;
    };
    EXPECT_TRUE(Verify(creds, v)) << "accepted with character " << i << " changed: " << bad;
    ++checked;
  }
  EXPECT_GT(checked, static_cast<int>(url.size()) - 5);
  // A different method or host is a different request.
  EXPECT_TRUE(Verify(creds, VerifyFor("GET", in.path, q, in.host, in.now)));
  EXPECT_TRUE(Verify(creds, VerifyFor("PUT", in.path, q, "127.0.0.1:8081", in.now)));
}

TEST(SigV4, ReportsMissingParametersAndWrongKeys) {
  SigV4Credentials creds{"k", "s", "us-east-1", "s3"};
  auto none = Verify(creds, VerifyFor("GET", "/b/k", "a=b", "h", 0));
  ASSERT_TRUE(none);
  EXPECT_EQ(none->code, "AccessDenied");
  PresignInput in{"GET", "h", "/b/k", {}, 1800000000, 60, {}};
  std::string q = Presign(SigV4Credentials{"other", "s", "us-east-1", "s3"}, in);
  auto wrong = Verify(creds, VerifyFor("GET", "/b/k", q, "h", in.now));
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->code, "InvalidAccessKeyId");
  std::string partial = q.substr(0, q.find("&X-Amz-Expires"));
  auto missing = Verify(creds, VerifyFor("GET", "/b/k", partial, "h", in.now));
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->code, "AuthorizationQueryParametersError");
}

}  // namespace
}  // namespace ingestfs::server
