#include "fs/status_report.h"

#include "fs/service_notify.h"

#include <gtest/gtest.h>

namespace ingestfs::fs {
namespace {

json::Document Doc(const std::string& text) {
  auto d = json::Parse(text, "status");
  EXPECT_TRUE(d.ok()) << text;
  return std::move(d).value();
}

TEST(StatusReport, WarnsBeforeTheCacheBoundAndWhenFilesStall) {
  const std::string counts = R"("counts":{"open":0,"pending":2,"uploading":0,"processing":0,"failed":0,"completed":0,"stalled":1})";
  const std::string files =
      R"("files":[{"dataset":"d","name":"a.raw","state":"pending","size":10,"sent":0,"error":"retrying (attempt 3): down","attempts":3,"stalled":true},)"
      R"({"dataset":"d","name":"b.raw","state":"pending","size":10,"sent":0,"error":"","attempts":0,"stalled":false}])";
  auto near = Doc(R"({"time":"t","stale_after_s":3600,)" + files + "," + counts +
                  R"(,"cache":{"pending_bytes":7000000,"cached_bytes":0,"free_bytes":1000000000,"max_bytes":8000000,"min_free_bytes":0}})");
  std::string text = StatusTable(near);
  EXPECT_NE(text.find("WARNING: the cache is nearly full"), std::string::npos) << text;
  EXPECT_NE(text.find("WARNING: 1 file(s) waiting for more than 3600 s (stalled)"), std::string::npos) << text;
  EXPECT_NE(text.find("stalled"), std::string::npos);
  EXPECT_NE(text.find("d/a.raw"), std::string::npos);
  EXPECT_NE(text.find("[3 attempt(s)]"), std::string::npos) << text;
  EXPECT_NE(text.find("(1 stalled)"), std::string::npos) << text;
  auto roomy = Doc(R"({"time":"t",)" + files + "," + counts +
                   R"(,"cache":{"pending_bytes":1000000,"cached_bytes":5000000,"free_bytes":1000000000,"max_bytes":8000000,"min_free_bytes":0}})");
  EXPECT_EQ(StatusTable(roomy).find("nearly full"), std::string::npos) << "copies can be evicted: no warning";
  auto low_disk = Doc(R"({"time":"t",)" + files + "," + counts +
                      R"(,"cache":{"pending_bytes":0,"cached_bytes":0,"free_bytes":70000000,"max_bytes":0,"min_free_bytes":67108864}})");
  EXPECT_NE(StatusTable(low_disk).find("nearly full"), std::string::npos) << "the disk's floor counts too";
  EXPECT_NE(FailedText(near).find("no failed files"), std::string::npos);
}

// The one line systemd's STATUS= carries (`systemctl status`).
TEST(StatusReport, ServiceStatusLineSaysWhatWaitsWhatFailedAndThePlatform) {
  auto idle = Doc(R"({"counts":{"open":0,"pending":0,"uploading":0,"processing":0,"failed":0,"interrupted":0,"completed":12,"stalled":0},)"
                  R"j("platform_health":{"state":"answering","text":"answering (last answer 1 s ago)"}})j");
  EXPECT_EQ(ServiceStatusLine(idle), "idle; 12 confirmed since mount");
  auto busy = Doc(R"({"counts":{"open":1,"pending":2,"uploading":1,"processing":0,"failed":1,"interrupted":0,"completed":3,"stalled":2},)"
                  R"("queue":{"to_send_bytes":3145728,"files_per_s":0.5,"bytes_per_s":1048576,"eta_s":6,"oldest_waiting_s":40},)"
                  R"("platform_health":{"state":"unreachable","text":"unreachable since 10:00:00: connection refused"}})");
  EXPECT_EQ(ServiceStatusLine(busy),
            "3 file(s) waiting, 3.0 MiB to send, 0.5 files/s, 1.0 MiB/s, about 6s left; 1 failed; 2 stalled; 3 confirmed "
            "since mount; platform unreachable since 10:00:00: connection refused");
  EXPECT_EQ(ServiceStatusLine(Doc("{}")), "status unknown");
}

TEST(StatusReport, OneStatusLineKeepsOneBoundedLine) {
  EXPECT_EQ(OneStatusLine("a\nb\n"), "a; b");
  EXPECT_EQ(OneStatusLine(std::string(1000, 'x')).size(), 403u);
}

}  // namespace
}  // namespace ingestfs::fs
