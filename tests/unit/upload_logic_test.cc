#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "upload/rate_limiter.h"

#include "upload/errors.h"
#include "upload/aplos_dialect.h"
#include "upload/ingest_dialect.h"
#include "upload/sbg_dialect.h"
#include "upload/retry.h"

namespace ingestfs::upload {
namespace {

constexpr uint64_t kMiB = 1 << 20;

std::string Presign(const std::string& urls, const std::string& upload_id, int64_t part_size) {
  return R"({"job_id":"j1","urls":)" + urls + R"(,"s3_key":"k","upload_id":)" + upload_id +
         R"(,"part_size":)" + std::to_string(part_size) + "}";
}

// Ceph RGW answers an expired presigned URL with a bare 403 AccessDenied: the URL's own date and
// lifetime tell expiry from refusal.
TEST(PresignedUrl, ExpiryIsReadFromTheUrlItself) {
  const std::string url =
      "http://127.0.0.1:7480/ingest/staging/j/a.bin?partNumber=3&uploadId=2~x&X-Amz-Algorithm=AWS4-HMAC-SHA256"
      "&X-Amz-Credential=k%2F20261203%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261203T142910Z&X-Amz-Expires=2"
      "&X-Amz-SignedHeaders=host&X-Amz-Signature=abc";
  const std::time_t signed_at = 1796308150;  // 2026-12-03T14:29:10Z
  EXPECT_FALSE(PresignedUrlExpired(url, signed_at));
  EXPECT_FALSE(PresignedUrlExpired(url, signed_at + 1));
  EXPECT_TRUE(PresignedUrlExpired(url, signed_at + 2));
  EXPECT_FALSE(PresignedUrlExpired("http://h/b/k", signed_at + 99999)) << "no query: never taken as expired";
  EXPECT_FALSE(PresignedUrlExpired("http://h/b/k?X-Amz-Date=2026&X-Amz-Expires=2", signed_at + 99999));
  EXPECT_FALSE(PresignedUrlExpired("http://h/b/k?X-Amz-Date=20261303T142910Z&X-Amz-Expires=2", signed_at + 99999));
  EXPECT_FALSE(PresignedUrlExpired("http://h/b/k?X-Amz-Date=20261203T142910Z&X-Amz-Expires=-5", signed_at + 99999));
}

TEST(ParsePresign, SingleAndMultipartPlans) {
  auto single = IngestDialect::ParsePresign(Presign(R"(["http://h/b/k?s"])", "null", 8 * kMiB), 1000, false);
  ASSERT_TRUE(single.ok()) << single.status().ToString();
  EXPECT_EQ(single->session.num_parts, 1u);
  EXPECT_EQ(single->session.part_size, 1000u);
  EXPECT_TRUE(single->session.upload_id.empty());
  auto multi = IngestDialect::ParsePresign(
      Presign(R"(["http://h/1","http://h/2","http://h/3"])", R"("u")", 8 * kMiB), 16 * kMiB + 1, true);
  ASSERT_TRUE(multi.ok()) << multi.status().ToString();
  EXPECT_EQ(multi->session.num_parts, 3u);
  EXPECT_EQ(multi->session.part_size, 8 * kMiB);
  EXPECT_TRUE(multi->session.overwrite);
  // Whatever part size the server chose is honoured.
  auto odd = IngestDialect::ParsePresign(Presign(R"(["http://h/1","http://h/2"])", R"("u")", 7 * kMiB), 10 * kMiB, false);
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(odd->session.part_size, 7 * kMiB);
}

TEST(ParsePresign, HostileAndBrokenAnswersAreClearErrors) {
  const char* cases[] = {
      "",
      "not json",
      "[]",
      R"({"urls":["http://h"],"upload_id":null,"part_size":5242880})",             // no job_id
      R"({"job_id":7,"urls":["http://h"],"upload_id":null,"part_size":5242880})",  // wrong type
      R"({"job_id":"j","urls":[],"upload_id":null,"part_size":5242880})",          // no URLs
      R"({"job_id":"j","urls":[1],"upload_id":null,"part_size":5242880})",
      R"({"job_id":"j","urls":["file:///etc/passwd"],"upload_id":null,"part_size":5242880})",
      R"({"job_id":"j","urls":["http://a","http://b"],"upload_id":null,"part_size":5242880})",  // no upload id
      R"({"job_id":"j","urls":["http://a","http://b"],"upload_id":"u","part_size":1})",        // tiny parts
      R"({"job_id":"j","urls":["http://a","http://b","http://c"],"upload_id":"u","part_size":8388608})",  // count
      R"({"job_id":"j","urls":["http://a"],"upload_id":null})",  // no part_size
  };
  for (const char* body : cases) {
    auto r = IngestDialect::ParsePresign(body, 10 * kMiB, false);
    EXPECT_FALSE(r.ok()) << body;
    EXPECT_FALSE(r.status().message().empty());
  }
  std::string huge = R"({"job_id":")" + std::string(1 << 20, 'x') + R"(","urls":["http://a"],"upload_id":null,"part_size":5242880})";
  EXPECT_FALSE(IngestDialect::ParsePresign(huge, 1, false).ok());
  std::string many = R"({"job_id":"j","urls":[)";
  for (int i = 0; i < 10001; ++i) many += std::string(i ? "," : "") + "\"http://a\"";
  many += R"(],"upload_id":"u","part_size":5242880})";
  EXPECT_FALSE(IngestDialect::ParsePresign(many, 10001ULL * 5 * kMiB, false).ok());
}

TEST(ParseJob, StatusesAndGarbage) {
  auto done = IngestDialect::ParseJob(R"({"job_id":"j","status":"completed","message":"ok","sha256":"ab"})");
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->phase, JobPhase::kCompleted);
  EXPECT_EQ(done->sha256, "ab");
  auto pending = IngestDialect::ParseJob(R"({"status":"processing","message":null,"sha256":null})");
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(pending->phase, JobPhase::kRunning);
  auto failed = IngestDialect::ParseJob(R"({"status":"failed","message":"size mismatch"})");
  EXPECT_EQ(failed->phase, JobPhase::kFailed);
  EXPECT_EQ(failed->message, "size mismatch");
  EXPECT_FALSE(IngestDialect::ParseJob(R"({"status":"exploded"})").ok());
  EXPECT_FALSE(IngestDialect::ParseJob(R"({"status":5})").ok());
  EXPECT_FALSE(IngestDialect::ParseJob("<html>").ok());
}

TEST(Errors, HttpStatusesMapToRetryOrStop) {
  auto code = [](long status, const std::string& body, std::map<std::string, std::string> h = {}) {
    HttpResponse r;
    r.status = status;
    r.body = body;
    r.headers = h;
    return StatusFromHttp(r, "presign of a.tif");
  };
  EXPECT_TRUE(code(200, "").ok());
  EXPECT_TRUE(code(204, "").ok());
  EXPECT_EQ(code(401, R"({"detail":"Invalid token"})").code(), Code::kUnauthenticated);
  EXPECT_EQ(code(403, R"({"detail":"read-only"})").code(), Code::kPermissionDenied);
  EXPECT_EQ(code(403, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>").code(),
            Code::kDeadlineExceeded);
  EXPECT_EQ(code(404, "").code(), Code::kNotFound);
  EXPECT_EQ(code(409, "").code(), Code::kAlreadyExists);
  EXPECT_EQ(code(422, "").code(), Code::kInvalidArgument);
  for (long s : {408L, 429L, 500L, 502L, 503L, 504L}) EXPECT_TRUE(IsTransient(code(s, ""))) << s;
  for (long s : {400L, 401L, 403L, 404L, 422L}) EXPECT_FALSE(IsTransient(code(s, ""))) << s;
  EXPECT_EQ(code(503, "", {{"retry-after", "7"}}).retry_after_ms(), 7000);
  Status v = code(422, R"({"detail":[{"loc":["body","filename"],"msg":"Value error, bad","type":"value_error"}]})");
  EXPECT_NE(v.message().find("presign of a.tif: HTTP 422 body.filename: Value error, bad"), std::string::npos)
      << v.message();
  Status x = code(400, "<Error><Code>BadDigest</Code><Message>The Content-MD5 you specified did not match</Message></Error>");
  EXPECT_NE(x.message().find("BadDigest: The Content-MD5"), std::string::npos) << x.message();
}

TEST(Retry, BackoffGrowsIsCappedAndHonoursRetryAfter) {
  RetryPolicy p;
  p.initial = std::chrono::milliseconds(100);
  p.max_backoff = std::chrono::milliseconds(1000);
  EXPECT_EQ(p.Backoff(1, -1, 1.0).count(), 100);
  EXPECT_EQ(p.Backoff(2, -1, 1.0).count(), 200);
  EXPECT_EQ(p.Backoff(3, -1, 1.0).count(), 400);
  EXPECT_EQ(p.Backoff(10, -1, 1.0).count(), 1000);
  EXPECT_EQ(p.Backoff(10, -1, 0.0).count(), 500);  // jitter keeps at least half
  EXPECT_EQ(p.Backoff(1, 3000, 1.0).count(), 3000);
  EXPECT_EQ(p.Backoff(1, 3600000, 1.0).count(), 4000);  // a huge Retry-After is capped
}

TEST(Retry, TransientRetriedPermanentStopsAndGiveUp) {
  RetryPolicy p;
  p.give_up_after = std::chrono::seconds(10);
  auto t = std::chrono::steady_clock::time_point{};
  RetryHooks hooks;
  std::vector<int64_t> slept;
  hooks.sleep = [&](std::chrono::milliseconds d) {
    slept.push_back(d.count());
    t += d;
  };
  hooks.now = [&] { return t; };
  hooks.jitter = [] { return 1.0; };
  int calls = 0;
  int attempts = 0;
  Status st = RunWithRetry(p, [&] {
    return ++calls < 3 ? Status(Code::kUnavailable, "HTTP 503") : Status::Ok();
  }, nullptr, &attempts, hooks);
  EXPECT_TRUE(st.ok());
  EXPECT_EQ(attempts, 3);
  EXPECT_EQ(slept, (std::vector<int64_t>{200, 400}));

  calls = 0;
  st = RunWithRetry(p, [&] { ++calls; return Status(Code::kPermissionDenied, "HTTP 403"); }, nullptr, &attempts, hooks);
  EXPECT_EQ(st.code(), Code::kPermissionDenied);
  EXPECT_EQ(calls, 1);

  st = RunWithRetry(p, [&] { return Status(Code::kUnavailable, "down"); }, nullptr, &attempts, hooks);
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("gave up after"), std::string::npos);
  EXPECT_GT(attempts, 3);
}

// A platform that answers, but garbage, forever: the step fails for good after bad_answers_for
// (a person must hear of it); one that is unreachable only keeps waiting (give_up_after, then
// the scheduler queues it again).
TEST(Retry, GarbageForeverFailsAfterItsBoundUnreachableDoesNot) {
  RetryPolicy p;
  p.give_up_after = std::chrono::hours(1);
  p.bad_answers_for = std::chrono::seconds(60);
  auto t = std::chrono::steady_clock::time_point{};
  RetryHooks hooks;
  hooks.sleep = [&](std::chrono::milliseconds d) { t += d; };
  hooks.now = [&] { return t; };
  hooks.jitter = [] { return 1.0; };
  int attempts = 0;
  Status st = RunWithRetry(p, [&] { return Status(Code::kBadAnswer, "malformed: no items"); }, nullptr, &attempts, hooks);
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_FALSE(IsTransient(st));
  EXPECT_NE(st.message().find("garbage"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("malformed: no items"), std::string::npos) << st.message();
  EXPECT_LT(t - std::chrono::steady_clock::time_point{}, std::chrono::seconds(120));

  // Garbage now and then between an unreachable platform's errors never adds up.
  t = {};
  int calls = 0;
  st = RunWithRetry(p, [&] {
    return ++calls % 2 ? Status(Code::kBadAnswer, "malformed") : Status(Code::kUnavailable, "connection refused");
  }, nullptr, &attempts, hooks);
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("gave up after"), std::string::npos) << "the hour's budget, not the garbage bound";
}

}  // namespace
}  // namespace ingestfs::upload

namespace ingestfs::upload {
namespace {

// A cap is a lower bound on the time a transfer takes: what it guarantees is tested, not speed.
TEST(Retry, FirstLookDelaySettlesWhereFewFirstLooksAreEarly) {
  using std::chrono::microseconds;
  FirstLookDelay d(microseconds(50000));
  EXPECT_EQ(d.Get(), microseconds(0)) << "with nothing learnt yet, the first look goes at once";
  // A platform that takes 3 ms: a look is early when the delay is shorter.
  const int64_t takes = 3000;
  int early = 0;
  for (int i = 0; i < 2000; ++i) {
    bool done = d.Get().count() >= takes;
    if (i >= 1000 && !done) ++early;
    d.Observe(done);
  }
  EXPECT_GE(d.Get().count(), takes * 8 / 10);
  EXPECT_LE(d.Get().count(), takes * 13 / 10);
  EXPECT_LT(early, 250) << "of the last 1000 first looks";
  // Never beyond its cap, however slow the platform.
  for (int i = 0; i < 200; ++i) d.Observe(false);
  EXPECT_EQ(d.Get(), microseconds(50000));
}

TEST(Retry, JobPaceExpectsAJobsLengthFromItsSizeAndLeansOnlyAQuarterTowardsAnOutlier) {
  using std::chrono::microseconds;
  constexpr uint64_t kGiB = 1ULL << 30;
  JobPace pace;
  EXPECT_EQ(pace.Expected(kGiB), microseconds(0)) << "nothing learnt: no wait";
  // 1 GiB found done 2.0 s after it began, the look before 0.2 s earlier: it took about 1.9 s.
  pace.Observe(kGiB, microseconds(2000000), microseconds(200000));
  EXPECT_NEAR(pace.Expected(kGiB).count(), 1900000, 2000);
  EXPECT_NEAR(pace.Expected(kGiB / 2).count(), 950000, 1000) << "in proportion to the size";
  EXPECT_EQ(pace.Expected(1000), pace.Expected(1 << 20)) << "less than a MiB counts as one";
  // One job twenty times slower moves the expectation a quarter of the way...
  pace.Observe(kGiB, microseconds(38000000), microseconds(0));
  EXPECT_NEAR(pace.Expected(kGiB).count(), 1900000 + (38000000 - 1900000) / 4, 5000);
  // ...and ordinary ones bring it back.
  for (int i = 0; i < 30; ++i) pace.Observe(kGiB, microseconds(1900000), microseconds(0));
  EXPECT_NEAR(pace.Expected(kGiB).count(), 1900000, 20000);
  // A job found done at once still leaves a positive pace, never zero ("nothing learnt").
  JobPace quick;
  quick.Observe(kGiB, microseconds(0), microseconds(0));
  EXPECT_GE(quick.Expected(kGiB).count(), 0);
  quick.Observe(kGiB, microseconds(10), microseconds(100));
  EXPECT_GE(quick.Expected(kGiB).count(), 0);
}

TEST(RateLimiter, NeverLetsMoreThroughThanTheRatePlusOneBurst) {
  constexpr uint64_t kRate = 4 << 20;
  RateLimiter limiter(kRate);
  auto start = std::chrono::steady_clock::now();
  uint64_t sent = 0;
  std::vector<std::thread> senders;
  std::atomic<uint64_t> total{0};
  for (int t = 0; t < 4; ++t) {
    senders.emplace_back([&] {
      for (int i = 0; i < 24; ++i) total += limiter.Take(64 << 10);
    });
  }
  for (auto& t : senders) t.join();
  sent = total;
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(sent, 4u * 24 * (64 << 10));
  double burst = kRate / 4.0;
  EXPECT_GE(seconds, (static_cast<double>(sent) - burst) / kRate * 0.98) << sent << " bytes in " << seconds << " s";
}

TEST(SbgDialect, PartAnswerIsTakenExactlyAndCheckedWhole) {
  auto t = SbgDialect::ParsePart(
      R"({"method":"PUT","url":"http://127.0.0.1:1/b/k?X-Amz-Signature=s","expires":"2030-01-02T03:04:05Z",)"
      R"("headers":{"Content-Type":"application/octet-stream","x-amz-meta-lab":"42"},"success_codes":[201],)"
      R"("report":{"headers":["ETag"],"body":{}}})");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->method, "PUT");
  EXPECT_EQ(t->headers, (std::vector<std::string>{"Content-Type: application/octet-stream", "x-amz-meta-lab: 42"}));
  EXPECT_EQ(t->success_codes, (std::vector<long>{201}));
  EXPECT_EQ(t->report_headers, (std::vector<std::string>{"ETag"}));
  EXPECT_EQ(t->expires, 1893553445);
  EXPECT_FALSE(t->content_md5) << "exactly the headers given: no Content-MD5 of ours";
  for (const char* bad : {
           R"({"method":"DELETE","url":"http://h/k","success_codes":[200]})",
           R"({"method":"PUT","url":"file:///etc/passwd","success_codes":[200]})",
           R"({"method":"PUT","url":"http://h/k","success_codes":[]})",
           R"({"method":"PUT","url":"http://h/k","success_codes":[302]})",
           R"({"method":"PUT","url":"http://h/k","success_codes":[200],"headers":{"X-Bad":"a\r\nInjected: 1"}})",
           R"({"method":"PUT","url":"http://h/k","success_codes":[200],"expires":"tomorrow"})",
           R"([1,2,3])",
       }) {
    EXPECT_FALSE(SbgDialect::ParsePart(bad).ok()) << bad;
  }
}

TEST(SbgDialect, InitAnswerDecidesThePartPlan) {
  auto r = SbgDialect::ParseInit(R"({"upload_id":"u1","part_size":5242880})", 12 << 20, true);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->session.num_parts, 3u);
  EXPECT_EQ(r->session.part_size, 5242880u);
  EXPECT_TRUE(r->session.overwrite);
  EXPECT_TRUE(r->targets.empty()) << "each part's target is asked for when it is sent";
  EXPECT_EQ(SbgDialect::ParseInit(R"({"upload_id":"u1","part_size":1000})", 1000, false)->session.num_parts, 1u);
  EXPECT_FALSE(SbgDialect::ParseInit(R"({"upload_id":"u1","part_size":1000})", 5000, false).ok()) << "parts < 5 MiB";
  EXPECT_FALSE(SbgDialect::ParseInit(R"({"upload_id":"","part_size":5242880})", 1, false).ok());
  EXPECT_FALSE(SbgDialect::ParseInit(R"({"upload_id":"u","part_size":0})", 1, false).ok());
}

TEST(AplosDialect, FormAnswerKeepsTheFieldOrderAnd204IsSuccess) {
  auto r = AplosDialect::ParseUploadUrl(
      R"({"message":"ok","s3":{"bucket_name":"b","object_key":"k/x"},"presigned":{"method_type":"post",)"
      R"("url":"http://127.0.0.1:1/b","fields":{"key":"k/x","x-amz-algorithm":"AWS4-HMAC-SHA256","policy":"cA==",)"
      R"("x-amz-signature":"s"},"expires_in":3600,"expires_at_utc":"2030-01-02T03:04:05Z"},"file_name":"p/x"})",
      10, false);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->targets.size(), 1u);
  const PartTarget& t = r->targets[0];
  EXPECT_TRUE(t.form);
  EXPECT_EQ(t.method, "POST");
  std::vector<std::string> names;
  for (auto& [k, v] : t.form_fields) names.push_back(k);
  EXPECT_EQ(names, (std::vector<std::string>{"key", "x-amz-algorithm", "policy", "x-amz-signature"}));
  EXPECT_EQ(t.success_codes, (std::vector<long>{204}));
  EXPECT_FALSE(t.etag_required);
  EXPECT_EQ(t.expires, 1893553445);
  EXPECT_EQ(r->session.job_id, "k/x");
  EXPECT_EQ(r->session.num_parts, 1u);
  auto created = AplosDialect::ParseUploadUrl(
      R"({"presigned":{"method_type":"post","url":"http://h/b","fields":{"key":"k","success_action_status":"201"}},"file_name":"p/x"})",
      1, false);
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(created->targets[0].success_codes, (std::vector<long>{201}));
  for (const char* bad : {
           R"({"presigned":{"method_type":"put","url":"http://h/b","fields":{"key":"k"}},"file_name":"p/x"})",
           R"({"presigned":{"method_type":"post","url":"http://h/b","fields":{"file":"x"}},"file_name":"p/x"})",
           R"({"presigned":{"method_type":"post","url":"http://h/b","fields":{}},"file_name":"p/x"})",
           R"({"presigned":{"method_type":"post","url":"ftp://h/b","fields":{"key":"k"}},"file_name":"p/x"})",
           R"({"presigned":{"method_type":"post","url":"http://h/b","fields":{"key":1}},"file_name":"p/x"})",
       }) {
    EXPECT_FALSE(AplosDialect::ParseUploadUrl(bad, 1, false).ok()) << bad;
  }
}

TEST(Errors, AnExpiredPostPolicyAsksForANewForm) {
  HttpResponse res;
  res.status = 403;
  res.body = "<Error><Code>AccessDenied</Code><Message>Invalid according to Policy: Policy expired.</Message></Error>";
  EXPECT_EQ(StatusFromHttp(res, "upload").code(), Code::kDeadlineExceeded);
  res.body = "<Error><Code>AccessDenied</Code><Message>Invalid according to Policy: Extra input fields: x</Message></Error>";
  EXPECT_EQ(StatusFromHttp(res, "upload").code(), Code::kPermissionDenied);
}

}  // namespace
}  // namespace ingestfs::upload
