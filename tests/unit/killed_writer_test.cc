#include "fs/killed_writer.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace ingestfs::fs {
namespace {

// A /proc/PID/stat line with the given command, flags (field 9) and exit code (field 52).
std::string Stat(const std::string& comm, long flags, long exit_code) {
  std::vector<std::string> f(50, "0");
  f[0] = "S";
  f[6] = std::to_string(flags);
  f[49] = std::to_string(exit_code);
  std::string out = "4242 (" + comm + ")";
  for (const std::string& x : f) out += " " + x;
  return out + "\n";
}

TEST(KilledWriter, OnlyAnExitingProcessWithASignalInItsExitCode) {
  constexpr long kExiting = 0x4, kOther = 0x400100;
  EXPECT_EQ(KilledWriterFromStat(Stat("cp", kOther | kExiting, SIGKILL)),
            "its writer cp (pid 4242) was killed by SIGKILL before it finished");
  EXPECT_EQ(KilledWriterFromStat(Stat("rsync", kExiting, SIGINT | 0x80)),  // with a core dump flag
            "its writer rsync (pid 4242) was killed by SIGINT before it finished");
  // A name with spaces and parentheses: fields are counted from the last ')'.
  EXPECT_EQ(KilledWriterFromStat(Stat("my (odd) prog", kExiting, SIGTERM)),
            "its writer my (odd) prog (pid 4242) was killed by SIGTERM before it finished");
  EXPECT_EQ(KilledWriterFromStat(Stat("cp", kExiting, 0)), "") << "exit(0)";
  EXPECT_EQ(KilledWriterFromStat(Stat("cp", kExiting, 3 << 8)), "") << "exit(3) is an exit, not a signal";
  EXPECT_EQ(KilledWriterFromStat(Stat("cp", kOther, SIGKILL)), "") << "not exiting: a stale exit code means nothing";
  for (const char* bad : {"", "4242", "4242 (cp", "4242 (cp) S 1 2 3", "4242 (cp) S x y z w v u t s r q p o n m l k j i"}) {
    EXPECT_EQ(KilledWriterFromStat(bad), "") << bad;
  }
}

TEST(KilledWriter, AProcessThatIsAliveIsNotKilled) {
  EXPECT_EQ(KilledWriter(::getpid(), std::chrono::seconds(5)), "");
  EXPECT_EQ(KilledWriter(0, std::chrono::seconds(5)), "");
  EXPECT_EQ(KilledWriter(-1, std::chrono::seconds(5)), "");
}

}  // namespace
}  // namespace ingestfs::fs
