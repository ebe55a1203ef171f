#include "cache/listing_shelf.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "common/file_util.h"
#include "tests/support/process.h"

namespace ingestfs::cache {
namespace {

using testing::TempDir;

TEST(ListingShelf, EntriesByFolderAndNameReplacedTakenAndCleared) {
  TempDir dir;
  auto shelf = ListingShelf::Open(dir / "listing.db");
  ASSERT_TRUE(shelf.ok()) << shelf.status().ToString();
  ListingShelf& s = **shelf;
  EXPECT_FALSE(s.Any(7));
  EXPECT_EQ(*s.Put(7, "b.tif", {10, 100, "t1", 0}), true);
  EXPECT_EQ(*s.Put(7, "a.tif", {20, 200, "t2", 0x1234}), true);
  EXPECT_EQ(*s.Put(8, "a.tif", {30, 300, "t3", 0}), true) << "another folder, same name";
  EXPECT_EQ(*s.Put(7, "b.tif", {11, 101, "t4", 5}), false) << "replaced, not added";
  auto b = s.Get(7, "b.tif");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->size, 11u);
  EXPECT_EQ(b->mtime, 101);
  EXPECT_EQ(b->tag, "t4");
  EXPECT_EQ(b->last_entry, 5u);
  EXPECT_EQ(s.Get(7, "a.tif")->last_entry, 0x1234u);
  EXPECT_FALSE(s.Get(7, "c.tif"));
  EXPECT_EQ(s.Names(7, "", 10), (std::vector<std::string>{"a.tif", "b.tif"}));
  EXPECT_EQ(s.Names(7, "a.tif", 10), (std::vector<std::string>{"b.tif"}));
  EXPECT_EQ(s.Names(7, "", 1), (std::vector<std::string>{"a.tif"}));
  EXPECT_TRUE(s.Erase(7, "a.tif"));
  EXPECT_FALSE(s.Erase(7, "a.tif"));
  s.Batch([&] {
    for (int i = 0; i < 2500; ++i) ASSERT_TRUE(s.Put(9, "f" + std::to_string(i), {1, 1, "t", 0}).ok());
  });
  EXPECT_EQ(s.Names(9, "", 5000).size(), 2500u);
  EXPECT_EQ(s.Clear(9), 2500u);
  EXPECT_FALSE(s.Any(9));
  EXPECT_TRUE(s.Any(7));
  EXPECT_TRUE(s.Any(8));
}

// A mount's entries name its own inodes: the next mount starts empty, and the file goes at the end.
TEST(ListingShelf, StartsEmptyEachMountAndLeavesNoFile) {
  TempDir dir;
  std::string path = dir / "listing.db";
  {
    auto shelf = ListingShelf::Open(path);
    ASSERT_TRUE(shelf.ok());
    ASSERT_TRUE((*shelf)->Put(7, "x", {1, 1, "t", 0}).ok());
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    auto again = ListingShelf::Open(path);  // a crashed mount's file is replaced
    ASSERT_TRUE(again.ok());
    EXPECT_FALSE((*again)->Any(7));
  }
  EXPECT_FALSE(PathExists(path));
}

TEST(ListingShelf, InMemoryWhenNoFileCanBeMade) {
  EXPECT_FALSE(ListingShelf::Open("/proc/no-such-dir/listing.db").ok());
  auto shelf = ListingShelf::Open(":memory:");
  ASSERT_TRUE(shelf.ok());
  ASSERT_TRUE((*shelf)->Put(1, "x", {1, 1, "t", 0}).ok());
  EXPECT_TRUE((*shelf)->Get(1, "x"));
}

}  // namespace
}  // namespace ingestfs::cache
