// The mount's Prometheus text: what the status JSON and the upload counters become, histograms
// cumulative, -o metrics= addresses.
#include <gtest/gtest.h>

#include <string>

#include "fs/metrics.h"
#include "upload/metrics.h"

namespace ingestfs {
namespace {

bool Has(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

TEST(Metrics, HistogramBucketsAreUpperBoundsInclusive) {
  upload::Histogram h({1, 5});
  for (double v : {0.5, 1.0, 1.5, 5.0, 7.0}) h.Observe(v);
  EXPECT_EQ(h.counts(), (std::vector<uint64_t>{2, 2, 1}));
  EXPECT_EQ(h.count(), 5u);
  EXPECT_DOUBLE_EQ(h.sum(), 15.0);
}

TEST(Metrics, FailureClassesAreFewAndNamed) {
  EXPECT_STREQ(upload::FailureClass(Code::kPermissionDenied), "refused");
  EXPECT_STREQ(upload::FailureClass(Code::kUnauthenticated), "refused");
  EXPECT_STREQ(upload::FailureClass(Code::kInvalidArgument), "rejected");
  EXPECT_STREQ(upload::FailureClass(Code::kDataLoss), "integrity");
  EXPECT_STREQ(upload::FailureClass(Code::kResourceExhausted), "local");
  EXPECT_STREQ(upload::FailureClass(Code::kBadAnswer), "platform");
  EXPECT_STREQ(upload::FailureClass(Code::kInternal), "other");
}

TEST(Metrics, TextCarriesStatusCountersAndCumulativeHistograms) {
  upload::UploadMetrics m;
  m.Confirmed(1000, 0.3);
  m.Confirmed(3000, 7);
  m.Confirmed(5, -1);  // closed before a restart: counted, not timed
  m.Failed(Code::kDataLoss);
  m.Retried();
  m.Retried();
  m.PartSent(4000, 0.02);
  auto doc = json::Parse(R"({"counts":{"open":1,"pending":2,"uploading":1,"processing":0,"failed":1,
      "interrupted":0,"stalled":1},"bytes":{"pending":20,"uploading":10,"failed":3},
      "queue":{"oldest_waiting_s":42,"to_send_bytes":25},
      "cache":{"pending_bytes":33,"cached_bytes":44,"free_bytes":55,"max_bytes":66,"min_free_bytes":77},
      "platform_health":{"state":"unreachable","last_answer":"2026-12-03T10:00:00Z"}})",
                         "status");
  ASSERT_TRUE(doc.ok());
  std::string t = fs::MetricsText(*doc, m.Get());
  EXPECT_TRUE(Has(t, "ingestfs_files{state=\"open\"} 1")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_files{state=\"pending\"} 2")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_bytes{state=\"failed\"} 3")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_files_stalled 1")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_oldest_waiting_seconds 42")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_uploads_confirmed_total 3")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_confirmed_bytes_total 4005")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_uploads_failed_total{reason=\"integrity\"} 1")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_uploads_failed_total{reason=\"refused\"} 0")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_retries_total 2")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_sent_bytes_total 4000")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_close_to_confirm_seconds_bucket{le=\"0.25\"} 0")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_close_to_confirm_seconds_bucket{le=\"0.5\"} 1")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_close_to_confirm_seconds_bucket{le=\"10\"} 2")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_close_to_confirm_seconds_bucket{le=\"+Inf\"} 2")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_close_to_confirm_seconds_sum 7.3")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_close_to_confirm_seconds_count 2")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_part_upload_seconds_count 1")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_cache_bytes{kind=\"cached\"} 44")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_cache_disk_free_bytes 55")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_cache_max_bytes 66")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_platform_up 0")) << t;
  EXPECT_TRUE(Has(t, "ingestfs_platform_last_answer_timestamp_seconds 1796292000")) << t;
  EXPECT_TRUE(Has(t, "# TYPE ingestfs_retries_total counter")) << t;
  EXPECT_TRUE(Has(t, "# TYPE ingestfs_close_to_confirm_seconds histogram")) << t;
}

TEST(Metrics, AddressesAreLoopbackUnlessNamed) {
  auto a = fs::ParseMetricsAddress("9464");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 9464);
  a = fs::ParseMetricsAddress("0.0.0.0:80");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "0.0.0.0");
  a = fs::ParseMetricsAddress("[::1]:9464");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "::1");
  for (const char* bad : {"", "0", "65536", "12ab", "localhost:80", "1.2.3:80", ":80", "[::1]80", "[zz]:1",
                          "127.0.0.1:", "99999999999999999999"}) {
    auto b = fs::ParseMetricsAddress(bad);
    EXPECT_FALSE(b.ok()) << bad;
    if (!b.ok()) {
      EXPECT_NE(b.status().message().find(std::string("metrics=") + bad), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace ingestfs
