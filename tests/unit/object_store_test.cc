#include "server/object_store.h"

#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "common/crypto.h"
#include "common/file_util.h"
#include "tests/support/process.h"

namespace ingestfs::server {
namespace {

using testing::TempDir;

// Each case runs with the metadata in xattrs and in sidecar files (a filesystem without user
// xattrs); both must behave the same.
class ObjectStoreTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    store_ = std::make_unique<ObjectStore>(dir_.path(), GetParam());
    ASSERT_TRUE(store_->Init().ok());
  }
  Status Put(const std::string& key, const std::string& body) {
    auto w = store_->NewWriter();
    if (!w.ok()) return w.status();
    RETURN_IF_ERROR((*w)->Append(body.data(), body.size()));
    ASSIGN_OR_RETURN(std::string md5, (*w)->Finish());
    return store_->CommitObject(**w, md5, "b", key);
  }
  Status PutPart(const std::string& upload, int n, const std::string& body) {
    auto w = store_->NewWriter();
    if (!w.ok()) return w.status();
    RETURN_IF_ERROR((*w)->Append(body.data(), body.size()));
    ASSIGN_OR_RETURN(std::string md5, (*w)->Finish());
    return store_->CommitPart(**w, md5, upload, n);
  }
  bool HasSidecar(const std::string& path) { return PathExists(path + ".meta"); }

  TempDir dir_;
  std::unique_ptr<ObjectStore> store_;
};

TEST_P(ObjectStoreTest, ObjectsKeepSizeAndEtagAcrossReopenAndOverwrite) {
  ASSERT_TRUE(Put("k/one", "hello").ok());
  auto info = store_->StatObject("b", "k/one");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->size, 5u);
  EXPECT_EQ(info->etag, QuotedEtag(Md5("hello")));
  EXPECT_EQ(*ReadFileToString(info->path), "hello");
  EXPECT_EQ(HasSidecar(info->path), !GetParam());

  ASSERT_TRUE(Put("k/one", "hello, again").ok());
  ObjectStore reopened(dir_.path(), GetParam());
  info = reopened.StatObject("b", "k/one");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->size, 12u);
  EXPECT_EQ(info->etag, QuotedEtag(Md5("hello, again")));
  EXPECT_FALSE(reopened.StatObject("b", "k/two"));

  ASSERT_TRUE(store_->DeleteObject("b", "k/one").ok());
  EXPECT_FALSE(store_->StatObject("b", "k/one"));
  EXPECT_FALSE(HasSidecar(info->path));
}

TEST_P(ObjectStoreTest, BytesThatDisagreeWithTheirMetadataAreNotAnObject) {
  ASSERT_TRUE(Put("k", "12345").ok());
  auto info = store_->StatObject("b", "k");
  ASSERT_TRUE(info);
  ASSERT_EQ(::truncate(info->path.c_str(), 3), 0);
  EXPECT_FALSE(store_->StatObject("b", "k"));
}

TEST_P(ObjectStoreTest, OnePutBecomesTheObjectWithoutACopyAndOutlivesTheStagingName) {
  ASSERT_TRUE(Put("staging/j1", "instrument data").ok());
  auto staged = store_->StatObject("b", "staging/j1");
  ASSERT_TRUE(staged);
  auto out = store_->Assemble({*staged}, {}, "b", "final/a.tif");
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->size, 15u);
  EXPECT_EQ(out->etag, staged->etag);
  EXPECT_EQ(out->sha256_hex, HexEncode(Sha256("instrument data")));
  auto final_info = store_->StatObject("b", "final/a.tif");
  ASSERT_TRUE(final_info);
  struct stat a, b;
  ASSERT_EQ(::stat(staged->path.c_str(), &a), 0);
  ASSERT_EQ(::stat(final_info->path.c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);  // one inode, two names

  ASSERT_TRUE(store_->DeleteObject("b", "staging/j1").ok());
  final_info = store_->StatObject("b", "final/a.tif");
  ASSERT_TRUE(final_info);
  EXPECT_EQ(*ReadFileToString(final_info->path), "instrument data");
  // A later upload to the same staging key does not touch the published object.
  ASSERT_TRUE(Put("staging/j1", "other bytes, longer").ok());
  EXPECT_EQ(*ReadFileToString(store_->StatObject("b", "final/a.tif")->path), "instrument data");
}

TEST_P(ObjectStoreTest, PartsAreConcatenatedWithTheMultipartEtag) {
  ASSERT_TRUE(store_->CreateUploadDir("u1").ok());
  ASSERT_TRUE(PutPart("u1", 1, "abc").ok());
  ASSERT_TRUE(PutPart("u1", 2, "defg").ok());
  auto p1 = store_->StatPart("u1", 1);
  auto p2 = store_->StatPart("u1", 2);
  ASSERT_TRUE(p1 && p2);
  auto out = store_->Assemble({*p1, *p2}, {p1->etag, p2->etag}, "b", "final/parts.bin");
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->size, 7u);
  EXPECT_EQ(out->sha256_hex, HexEncode(Sha256("abcdefg")));
  EXPECT_EQ(out->etag, "\"" + HexEncode(Md5(Md5("abc") + Md5("defg"))) + "-2\"");
  auto info = store_->StatObject("b", "final/parts.bin");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->etag, out->etag);
  EXPECT_EQ(*ReadFileToString(info->path), "abcdefg");
  ASSERT_TRUE(store_->DeleteUploadDir("u1").ok());
  EXPECT_FALSE(store_->StatPart("u1", 1));
  EXPECT_EQ(*ReadFileToString(info->path), "abcdefg");
}

TEST_P(ObjectStoreTest, FreedPartsAndFailedBodiesBecomeSparesThatNewBodiesTakeEmpty) {
  auto ino = [](const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
  };
  auto spare_inodes = [&] {
    std::set<ino_t> out;
    for (const auto& f : std::filesystem::directory_iterator(dir_ / "spare")) out.insert(ino(f.path()));
    return out;
  };
  ASSERT_TRUE(store_->CreateUploadDir("u1").ok());
  ASSERT_TRUE(PutPart("u1", 1, "abc").ok());
  ino_t part = ino(store_->StatPart("u1", 1)->path);
  ASSERT_TRUE(store_->DeleteUploadDir("u1").ok());
  EXPECT_EQ(spare_inodes().count(part), 1u) << "a freed part is kept as a spare, not removed";
  EXPECT_FALSE(PathExists(dir_ / "uploads/u1"));

  ino_t failed = 0;
  {
    auto w = store_->NewWriter();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append("half a body", 11).ok());
    failed = ino((*w)->tmp_path());
  }  // never published: a client that went away
  EXPECT_EQ(spare_inodes().count(failed), 1u);

  // The next body takes the most recent spare, emptied.
  ASSERT_TRUE(Put("k/next", "x").ok());
  auto info = store_->StatObject("b", "k/next");
  ASSERT_TRUE(info);
  EXPECT_EQ(ino(info->path), failed);
  EXPECT_EQ(*ReadFileToString(info->path), "x");
  EXPECT_EQ(info->etag, QuotedEtag(Md5("x")));
}

INSTANTIATE_TEST_SUITE_P(MetaIn, ObjectStoreTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Xattr" : "Sidecar"; });

}  // namespace
}  // namespace ingestfs::server
