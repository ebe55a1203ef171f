// The parsers of an external S3 store's XML answers (server/s3_client), on answers as RGW and
// AWS write them, and on garbage.
#include "server/s3_client.h"

#include <gtest/gtest.h>

namespace ingestfs::server {
namespace {

TEST(S3Answers, InitiateMultipartGivesTheUploadId) {
  auto id = ParseInitiateMultipart(
      R"(<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">)"
      R"(<Tenant></Tenant><Bucket>ingestfs</Bucket><Key>staging/j/a b.raw</Key><UploadId>2~Zx8pQk</UploadId></InitiateMultipartUploadResult>)");
  ASSERT_TRUE(id.ok()) << id.status().message();
  EXPECT_EQ(*id, "2~Zx8pQk");
  EXPECT_FALSE(ParseInitiateMultipart("<InitiateMultipartUploadResult><UploadId></UploadId></InitiateMultipartUploadResult>").ok());
  EXPECT_FALSE(ParseInitiateMultipart("<html>proxy error</html>").ok());
  EXPECT_FALSE(ParseInitiateMultipart("").ok());
}

TEST(S3Answers, ListPartsReadsPartsAndPaging) {
  auto page = ParseListParts(
      R"(<ListPartsResult><Bucket>b</Bucket><Key>k</Key><UploadId>u</UploadId><PartNumberMarker>0</PartNumberMarker>)"
      R"(<NextPartNumberMarker>2</NextPartNumberMarker><MaxParts>2</MaxParts><IsTruncated>true</IsTruncated>)"
      R"(<Part><LastModified>2026-12-03T13:58:01.000Z</LastModified><PartNumber>1</PartNumber><ETag>&quot;aed5&quot;</ETag><Size>5242880</Size></Part>)"
      R"(<Part><PartNumber>2</PartNumber><ETag>46234a</ETag><Size>100</Size></Part></ListPartsResult>)");
  ASSERT_TRUE(page.ok()) << page.status().message();
  ASSERT_EQ(page->parts.size(), 2u);
  EXPECT_EQ(page->parts[0].number, 1);
  EXPECT_EQ(page->parts[0].size, 5242880u);
  EXPECT_EQ(page->parts[0].etag, "\"aed5\"");
  EXPECT_EQ(page->parts[1].etag, "\"46234a\"") << "an unquoted ETag is quoted";
  EXPECT_TRUE(page->truncated);
  EXPECT_EQ(page->next_marker, 2);
  auto empty = ParseListParts("<ListPartsResult><IsTruncated>false</IsTruncated></ListPartsResult>");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->parts.empty());
  EXPECT_FALSE(ParseListParts("<ListPartsResult><Part><PartNumber>0</PartNumber><ETag>x</ETag><Size>1</Size></Part></ListPartsResult>").ok());
  EXPECT_FALSE(ParseListParts("<ListPartsResult><Part><PartNumber>1</PartNumber><Size>-1</Size><ETag>x</ETag></Part></ListPartsResult>").ok());
  EXPECT_FALSE(ParseListParts("<ListPartsResult><IsTruncated>true</IsTruncated></ListPartsResult>").ok())
      << "truncated without a marker would page forever";
}

TEST(S3Answers, CompleteWithAnErrorBodyIsAFailure) {
  auto ok = ParseCompleteMultipart(
      R"(<CompleteMultipartUploadResult><Location>x</Location><Bucket>b</Bucket><Key>k</Key><ETag>"3858f6-2"</ETag></CompleteMultipartUploadResult>)");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(*ok, "\"3858f6-2\"");
  auto empty = ParseCompleteMultipart("<CompleteMultipartUploadResult><Key>k</Key><ETag></ETag></CompleteMultipartUploadResult>");
  ASSERT_TRUE(empty.ok()) << "RGW 16 answers an empty ETag";
  EXPECT_EQ(*empty, "");
  EXPECT_FALSE(ParseCompleteMultipart("<CompleteMultipartUploadResult><Key>k</Key></CompleteMultipartUploadResult>").ok());
  auto err = ParseCompleteMultipart(
      "<Error><Code>InternalError</Code><Message>We encountered an internal error.\nPlease try again.</Message></Error>");
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.status().message().find("InternalError"), std::string::npos);
  EXPECT_EQ(err.status().message().find('\n'), std::string::npos) << "one line: " << err.status().message();
  auto body = ParseErrorBody("<Error><Code>EntityTooSmall</Code></Error>");
  ASSERT_TRUE(body.has_value());
  EXPECT_EQ(body->code, "EntityTooSmall");
  EXPECT_FALSE(ParseErrorBody("not xml").has_value());
}

TEST(S3Client, PresignedUrlsNameTheStoreAndHostAsHttpSendsIt) {
  S3Client c({"http://127.0.0.1:7480/", "us-east-1", "ingestfs", "AK", "SECRET"});
  EXPECT_EQ(c.host(), "127.0.0.1:7480");
  std::string url = c.PresignUrl("PUT", "staging/j/a b.raw", {{"partNumber", "1"}, {"uploadId", "2~x"}}, 60);
  EXPECT_EQ(url.rfind("http://127.0.0.1:7480/ingestfs/staging/j/a%20b.raw?", 0), 0u) << url;
  EXPECT_NE(url.find("X-Amz-Signature="), std::string::npos);
  EXPECT_EQ(url.find("SECRET"), std::string::npos);
  EXPECT_EQ(S3Client({"http://store:80", "r", "b", "a", "s"}).host(), "store");
  EXPECT_EQ(S3Client({"https://store.example.org:443", "r", "b", "a", "s"}).host(), "store.example.org");
}

}  // namespace
}  // namespace ingestfs::server
