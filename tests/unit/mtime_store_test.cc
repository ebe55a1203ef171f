#include "cache/mtime_store.h"

#include <gtest/gtest.h>

#include "common/file_util.h"
#include "common/record_log.h"
#include "tests/support/process.h"

namespace ingestfs::cache {
namespace {

using testing::TempDir;

TEST(MtimeStore, TimesSurviveReopenAndNeedTheSameContent) {
  TempDir dir;
  {
    auto store = MtimeStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    (*store)->Put("run", "a/b.tif", "s1", 1000);
    (*store)->Put("run", "a/b.tif", "s2", 2000);  // a newer upload of the same name
    (*store)->Put("other", "a/b.tif", "s1", 3000);
  }
  auto store = MtimeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->Get("run", "a/b.tif", "s2"), 2000);
  EXPECT_EQ((*store)->Get("run", "a/b.tif", "s1"), std::nullopt) << "the recorded content is s2";
  EXPECT_EQ((*store)->Get("other", "a/b.tif", "s1"), 3000);
  EXPECT_EQ((*store)->Get("run", "nope", "s1"), std::nullopt);
  EXPECT_EQ((*store)->Get("run", "a/b.tif", ""), std::nullopt);
}

// The log of earlier versions is moved in once, damage skipped, and set aside.
TEST(MtimeStore, AnOldLogIsMovedIntoTheDatabase) {
  TempDir dir;
  std::string text = FrameRecord(R"({"d":"run","n":"x.csv","s":"s1","m":111})") +
                     FrameRecord(R"({"d":"run","n":"y.csv","s":"s2","m":222})") +
                     FrameRecord(R"({"d":"run","n":"x.csv","s":"s3","m":333})") + "0badc0de {\"d\":";
  ASSERT_TRUE(WriteFileAtomic(dir / "mtimes.log", text).ok());
  {
    auto store = MtimeStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    EXPECT_EQ((*store)->Get("run", "x.csv", "s3"), 333);
    EXPECT_EQ((*store)->Get("run", "y.csv", "s2"), 222);
  }
  EXPECT_FALSE(PathExists(dir / "mtimes.log"));
  EXPECT_TRUE(PathExists(dir / "mtimes.log.migrated"));
  auto store = MtimeStore::Open(dir.path());
  EXPECT_EQ((*store)->Get("run", "x.csv", "s3"), 333);
}

// Not a database (a disk error, a stray file): set aside, and the mount goes on without the hints.
TEST(MtimeStore, AFileThatIsNotADatabaseIsSetAside) {
  TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir / "mtimes.db", std::string(8192, 'x')).ok());
  auto store = MtimeStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_TRUE(PathExists(dir / "mtimes.db.damaged"));
  (*store)->Put("run", "x", "s", 5);
  EXPECT_EQ((*store)->Get("run", "x", "s"), 5);
}

}  // namespace
}  // namespace ingestfs::cache
