#include "cache/direct_write.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "tests/support/process.h"

namespace ingestfs::cache {
namespace {

using testing::TempDir;

std::string Pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

std::string Contents(const std::string& path) {
  auto s = ReadFileToString(path);
  EXPECT_TRUE(s.ok()) << s.status().message();
  return s.ok() ? *s : "";
}

// Pages of `path` held in the page cache.
size_t ResidentPages(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY));
  struct stat st;
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0 || st.st_size == 0) return 0;
  void* map = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, fd.get(), 0);
  if (map == MAP_FAILED) return 0;
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> v((static_cast<size_t>(st.st_size) + page - 1) / page);
  size_t n = 0;
  if (::mincore(map, static_cast<size_t>(st.st_size), v.data()) == 0) {
    for (unsigned char b : v) n += b & 1;
  }
  ::munmap(map, static_cast<size_t>(st.st_size));
  return n;
}

// A cache copy and its direct writer (not valid where the filesystem offers no direct I/O).
class DirectWrite : public ::testing::Test {
 protected:
  void SetUp() override {
    fd = UniqueFd(::open(path.c_str(), O_RDWR | O_CREAT, 0600));
    ASSERT_TRUE(fd.valid());
    direct = DirectWriter::Open(fd.get());
  }
  std::string NoDirectIo() const { return "the filesystem under " + dir.path() + " offers no direct I/O"; }

  TempDir dir;
  std::string path = dir / "copy";
  UniqueFd fd;
  DirectWriter direct;
};

// Every shape of write lands byte for byte, whichever way it went.
TEST_F(DirectWrite, EveryShapeOfWriteLandsExactly) {
  std::string expect;
  auto put = [&](uint64_t off, const std::string& data) {
    auto n = WriteAt(fd.get(), &direct, data.data(), data.size(), off);
    ASSERT_TRUE(n.ok()) << n.status().message();
    EXPECT_EQ(*n, data.size());
    if (expect.size() < off + data.size()) expect.resize(off + data.size(), '\0');
    expect.replace(off, data.size(), data);
  };
  const uint64_t d = DirectWriter::kFromOffset;
  put(0, Pattern(1 << 20, 11));                   // large, below kFromOffset: buffered
  put(d, Pattern(1 << 20, 1));                    // aligned, large: direct
  put(d + (1 << 20), Pattern(3 << 19, 2));        // aligned offset, 1.5 MiB
  put(d + 4096 + 100, Pattern(200 << 10, 3));     // unaligned offset: buffered, over direct bytes
  put(d + (5 << 19), Pattern(10, 4));             // small
  std::string odd = "x" + Pattern(256 << 10, 5);
  put(d + (3 << 20), odd.substr(1));              // aligned offset and size, unaligned memory
  put(d + (4 << 20), Pattern((256 << 10) + 7, 6));  // size not a multiple of the block
  put(d - (64 << 10), Pattern(256 << 10, 12));    // across kFromOffset: buffered
  EXPECT_EQ(Contents(path), expect);
}

TEST_F(DirectWrite, LargeAlignedWritesStayOutOfThePageCache) {
  if (!direct.valid()) GTEST_SKIP() << NoDirectIo();
  std::string data = Pattern(4 << 20, 7);
  const uint64_t d = DirectWriter::kFromOffset;
  ASSERT_TRUE(WriteAt(fd.get(), &direct, data.data(), data.size(), d).ok());
  EXPECT_EQ(ResidentPages(path), 0u);
  // Without the direct writer the same write fills the page cache: the check above can fail.
  std::string other = dir / "buffered";
  UniqueFd bfd(::open(other.c_str(), O_RDWR | O_CREAT, 0600));
  ASSERT_TRUE(WriteAt(bfd.get(), nullptr, data.data(), data.size(), d).ok());
  EXPECT_GT(ResidentPages(other), 0u);
  // So does the same write at the start of a file, where a file of a few MiB is written.
  std::string head = dir / "head";
  UniqueFd hfd(::open(head.c_str(), O_RDWR | O_CREAT, 0600));
  ASSERT_TRUE(WriteAt(hfd.get(), &direct, data.data(), data.size(), 0).ok());
  EXPECT_GT(ResidentPages(head), 0u);
  EXPECT_EQ(Contents(path).substr(d), data);
  EXPECT_EQ(Contents(head), data);
}

TEST_F(DirectWrite, SmallOrUnalignedWritesDoNotSuit) {
  if (!direct.valid()) GTEST_SKIP() << NoDirectIo();
  const uint64_t d = DirectWriter::kFromOffset;
  EXPECT_TRUE(direct.Suits(d, 1 << 20));
  EXPECT_FALSE(direct.Suits(0, 1 << 20)) << "the first MiBs of a file are buffered";
  EXPECT_FALSE(direct.Suits(d - 4096, 1 << 20));
  EXPECT_FALSE(direct.Suits(d, 4096));
  EXPECT_FALSE(direct.Suits(d + 100, 1 << 20));
  EXPECT_FALSE(direct.Suits(d, (1 << 20) + 1));
  EXPECT_FALSE(DirectWriter().Suits(d, 1 << 20));
}

}  // namespace
}  // namespace ingestfs::cache
