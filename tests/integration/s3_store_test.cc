// The reference server's client of an external S3 store (server/s3_client) against a real one:
// Ceph's RADOS Gateway started by scripts/ceph-local.sh, whose settings file is named by
// $INGESTFS_TEST_S3_ENV (scripts/test.sh's `rgw` stage does both). Without it the tests fail
// under CI=true and are skipped, loudly, otherwise.
#include <gtest/gtest.h>
#include <httplib.h>

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <thread>

#include "common/crypto.h"
#include "common/file_util.h"
#include "server/s3_client.h"
#include "tests/support/process.h"

namespace ingestfs::testing {
namespace {

using server::S3Client;
using server::S3Config;
using server::S3Part;

std::map<std::string, std::string> ReadEnvFile(const std::string& path) {
  std::map<std::string, std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

class S3StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* env = std::getenv("INGESTFS_TEST_S3_ENV");
    if (env == nullptr || *env == '\0') {
      const char* ci = std::getenv("CI");
      if (ci != nullptr && std::string(ci) == "true") {
        FAIL() << "INGESTFS_TEST_S3_ENV is not set: no S3 store to test against (scripts/test.sh --only rgw starts one)";
      }
      GTEST_SKIP() << "########## INGESTFS_TEST_S3_ENV is not set: the tests against a real S3 store (RGW) "
                      "did not run; bash scripts/test.sh --only rgw runs them ##########";
    }
    auto kv = ReadEnvFile(env);
    std::ifstream secret_in(kv["S3_SECRET_FILE"]);
    std::string secret;
    std::getline(secret_in, secret);
    cfg_ = {kv["S3_ENDPOINT"], kv["S3_REGION"], kv["S3_BUCKET"], kv["S3_ACCESS_KEY"], secret};
    ASSERT_FALSE(cfg_.endpoint.empty() || cfg_.bucket.empty() || secret.empty()) << "incomplete " << env;
    prefix_ = "test/" + Sha256Hex(RandomBytes(16, static_cast<uint64_t>(::getpid()) ^ std::time(nullptr))).substr(0, 12) + "/";
  }
  // PUT `body` to a presigned URL; the status and the ETag header.
  static std::pair<int, std::string> Put(const std::string& url, const std::string& body) {
    size_t path_start = url.find('/', url.find("://") + 3);
    httplib::Client cli(url.substr(0, path_start));
    auto res = cli.Put(url.substr(path_start), body, "application/octet-stream");
    if (!res) return {-1, ""};
    return {res->status, res->get_header_value("ETag")};
  }
  static std::string QuotedMd5(const std::string& data) {
    Digest md5(Digest::Kind::kMd5);
    md5.Update(data);
    return "\"" + HexEncode(md5.Finish()) + "\"";
  }
  S3Config cfg_;
  std::string prefix_;
};

TEST_F(S3StoreTest, TheBucketAnswersAndAWrongSecretIsRefusedWithoutBeingShown) {
  S3Client good(cfg_);
  Status ok = good.CheckBucket();
  EXPECT_TRUE(ok.ok()) << ok.message();
  S3Config bad = cfg_;
  bad.secret_key = "wrong-secret-0123456789";
  Status refused = S3Client(bad).CheckBucket();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.code(), Code::kPermissionDenied) << refused.message();
  EXPECT_EQ(refused.message().find("wrong-secret"), std::string::npos) << refused.message();
  S3Config nobucket = cfg_;
  nobucket.bucket = "no-such-bucket-ingestfs";
  Status missing = S3Client(nobucket).CheckBucket();
  EXPECT_EQ(missing.code(), Code::kNotFound) << missing.message();
}

// ingestfs-server over the store: a wrong secret stops it at start with the store's answer.
TEST_F(S3StoreTest, TheServerRefusesToStartOnAStoreThatRefusesIt) {
  TempDir tmp;
  std::ofstream(tmp / "secret") << "wrong-secret-0123456789\n";
  Child c;
  c.Start({BinDir() + "/ingestfs-server", "--listen", "127.0.0.1:0", "--data", tmp / "d", "--s3-endpoint", cfg_.endpoint,
           "--s3-bucket", cfg_.bucket, "--s3-access-key", cfg_.access_key, "--s3-secret-file", tmp / "secret"},
          tmp / "err", {"INGESTFS_SERVER_TOKEN=t"});
  int st = c.Wait(std::chrono::seconds(30));
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 1);
  std::string err = ReadFileToString(tmp / "err").value_or("");
  EXPECT_NE(err.find("the S3 store: looking at bucket " + cfg_.bucket), std::string::npos) << err;
  EXPECT_NE(err.find("HTTP 403"), std::string::npos) << err;
  EXPECT_EQ(err.find("wrong-secret"), std::string::npos) << err;
}

TEST_F(S3StoreTest, MultipartThroughPresignedPartsListedCompletedReadBack) {
  S3Client s3(cfg_);
  const std::string key = prefix_ + "plate 1/A01.tif";
  auto id = s3.CreateMultipart(key);
  ASSERT_TRUE(id.ok()) << id.status().message();
  std::string p1 = RandomBytes(5u << 20, 1), p2 = RandomBytes(5u << 20, 2), p3 = RandomBytes(12345, 3);
  int n = 0;
  for (const std::string* p : {&p1, &p2, &p3}) {
    ++n;
    auto [status, etag] = Put(s3.PresignUrl("PUT", key, {{"partNumber", std::to_string(n)}, {"uploadId", *id}}, 60), *p);
    ASSERT_EQ(status, 200) << "part " << n;
    EXPECT_EQ(etag, QuotedMd5(*p));
  }
  // Two to a page: the paging is followed to the end.
  auto parts = s3.ListParts(key, *id, 2);
  ASSERT_TRUE(parts.ok()) << parts.status().message();
  ASSERT_EQ(parts->size(), 3u);
  EXPECT_EQ((*parts)[0].size, p1.size());
  EXPECT_EQ((*parts)[1].etag, QuotedMd5(p2));
  EXPECT_EQ((*parts)[2].number, 3);
  auto etag = s3.CompleteMultipart(key, *id, *parts);
  ASSERT_TRUE(etag.ok()) << etag.status().message();
  EXPECT_EQ(etag->substr(etag->size() - 3), "-3\"") << *etag;
  auto head = s3.Head(key);
  ASSERT_TRUE(head.ok() && head->has_value()) << head.status().message();
  EXPECT_EQ((*head)->size, p1.size() + p2.size() + p3.size());
  EXPECT_EQ((*head)->etag, *etag);
  auto sha = s3.Sha256(key);
  ASSERT_TRUE(sha.ok()) << sha.status().message();
  EXPECT_EQ(sha->first, Sha256Hex(p1 + p2 + p3));
  EXPECT_EQ(sha->second, p1.size() + p2.size() + p3.size());
  ASSERT_TRUE(s3.Delete(key).ok());
  auto gone = s3.Head(key);
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
}

TEST_F(S3StoreTest, WhatARealStoreRefusesIsAClearError) {
  S3Client s3(cfg_);
  const std::string key = prefix_ + "small-parts.bin";
  auto id = s3.CreateMultipart(key);
  ASSERT_TRUE(id.ok()) << id.status().message();
  for (int n = 1; n <= 2; ++n) {
    ASSERT_EQ(Put(s3.PresignUrl("PUT", key, {{"partNumber", std::to_string(n)}, {"uploadId", *id}}, 60), "tiny").first, 200);
  }
  auto parts = s3.ListParts(key, *id);
  ASSERT_TRUE(parts.ok()) << parts.status().message();
  // Parts but the last must have 5 MiB.
  auto small = s3.CompleteMultipart(key, *id, *parts);
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("EntityTooSmall"), std::string::npos) << small.status().message();
  EXPECT_NE(small.status().message().find(key), std::string::npos) << "the message names the key";
  // A wrong ETag.
  std::vector<S3Part> wrong = *parts;
  wrong[1].etag = "\"00000000000000000000000000000000\"";
  auto bad = s3.CompleteMultipart(key, *id, {wrong[1]});
  EXPECT_FALSE(bad.ok());
  ASSERT_TRUE(s3.AbortMultipart(key, *id).ok());
  auto after = s3.ListParts(key, *id);
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.status().code(), Code::kNotFound) << after.status().message();
  // An expired URL: 403, as S3.
  std::string url = s3.PresignUrl("PUT", prefix_ + "late.bin", {}, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  EXPECT_EQ(Put(url, "late").first, 403);
  auto late = s3.Head(prefix_ + "late.bin");
  ASSERT_TRUE(late.ok());
  EXPECT_FALSE(late->has_value());
}

TEST_F(S3StoreTest, ASinglePresignedPutIsStoredWithItsMd5AsETag) {
  S3Client s3(cfg_);
  std::string body = RandomBytes(300000, 9);
  auto [status, etag] = Put(s3.PresignUrl("PUT", prefix_ + "one.bin", {}, 60), body);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(etag, QuotedMd5(body));
  auto head = s3.Head(prefix_ + "one.bin");
  ASSERT_TRUE(head.ok() && head->has_value());
  EXPECT_EQ((*head)->etag, QuotedMd5(body));
  EXPECT_EQ((*head)->size, body.size());
  EXPECT_TRUE(s3.Delete(prefix_ + "one.bin").ok());
}

}  // namespace
}  // namespace ingestfs::testing
