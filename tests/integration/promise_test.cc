// The promise at its edges, for real over /dev/fuse: a version whose writer did not finish it
// (the daemon killed mid-write, the writer killed, the cache disk full) never reaches the
// platform as if it were the file; a temporary name never reaches it at all; the user can still
// choose to upload what is there. Everything is checked on the platform's side.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>

#include "common/file_util.h"
#include "tests/integration/mount_fixture.h"

namespace ingestfs::testing {
namespace {

class PromiseTest : public MountTest {
 protected:
  // Waits until `path` (through the mount) has at least `size` bytes.
  bool WaitSize(const std::string& path, uint64_t size, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    struct stat st;
    while (std::chrono::steady_clock::now() < deadline) {
      if (::stat(path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) >= size) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  // A writer that writes the first `head` bytes of `src` into `dst`, then holds the file open
  // (one process, so that killing it kills every holder of the descriptor).
  void StartWriter(Child& w, const std::string& src, const std::string& dst, uint64_t head, double then_exit_after = -1) {
    std::string script = "import os, sys, time\n"
                         "f = open(sys.argv[2], 'wb')\n"
                         "f.write(open(sys.argv[1], 'rb').read(int(sys.argv[3])))\n"
                         "f.flush()\n"
                         "time.sleep(float(sys.argv[4]) if float(sys.argv[4]) >= 0 else 600)\n"
                         "os._exit(0)\n";  // exits without closing: the kernel closes it
    ASSERT_TRUE(w.Start({"/usr/bin/python3", "-c", script, src, dst, std::to_string(head), std::to_string(then_exit_after)},
                        tmp_ / "writer.err"));
  }
  std::string StateOf(const std::string& path) { return Xattr(path, "user.ingestfs.state"); }
  std::string ReadAllOf(const std::string& path) {
    auto text = ReadFileToString(path);
    return text.ok() ? *text : "<" + text.status().message() + ">";
  }
};

// The case: the daemon is killed while a writer is half-way through a file. After the
// remount the half is kept and shown, never uploaded; `wait` does not call it done; the user
// can accept it, or write the file again.
TEST_F(PromiseTest, KillNineMidWriteLeavesTheVersionInterruptedUntilTheUserDecides) {
  auto m = Mount({}, "0");
  ASSERT_EQ(Sh("mkdir " + Q(*m / "ds")), 0);
  WriteRandomFile(tmp_ / "src", 20 * kMiB, 7);
  Child accept_me, rewrite_me;
  StartWriter(accept_me, tmp_ / "src", *m / "ds/f.bin", 10 * kMiB);
  StartWriter(rewrite_me, tmp_ / "src", *m / "ds/g.bin", 3 * kMiB);
  ASSERT_TRUE(WaitSize(*m / "ds/f.bin", 10 * kMiB));
  ASSERT_TRUE(WaitSize(*m / "ds/g.bin", 3 * kMiB));
  m->KillNine();
  accept_me.Kill();
  rewrite_me.Kill();

  m = Mount({}, "0");
  CmdResult waited = Ingestfs("wait " + Q(m->path()) + " --timeout 30");
  EXPECT_EQ(waited.code, 1) << "interrupted files need someone to act\n" << waited.out;
  EXPECT_NE(waited.out.find("interrupted"), std::string::npos) << waited.out;
  EXPECT_EQ(StateOf(*m / "ds/f.bin"), "interrupted");
  EXPECT_NE(Xattr(*m / "ds/f.bin", "user.ingestfs.error").find("bytes reached the cache"), std::string::npos);
  struct stat st;
  ASSERT_EQ(::stat((*m / "ds/f.bin").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 10 * kMiB) << "what reached the cache is kept and shown";
  std::string failed = ReadAllOf(*m / ".ingestfs/failed.txt");
  EXPECT_NE(failed.find("2 interrupted file(s)"), std::string::npos) << failed;
  EXPECT_NE(failed.find("ds/f.bin (10.0 MiB in the cache)"), std::string::npos) << failed;
  CmdResult status = Ingestfs("status " + Q(m->path()));
  EXPECT_NE(status.out.find("interrupted 2"), std::string::npos) << status.out;
  CmdResult retried = Ingestfs("retry " + Q(m->path()));
  EXPECT_EQ(retried.code, 0);
  EXPECT_EQ(Ingestfs("wait " + Q(m->path()) + " --timeout 30").code, 1) << "a plain retry does not send them";
  EXPECT_EQ(Listing("ds").count("f.bin"), 0u);
  EXPECT_EQ(Listing("ds").count("g.bin"), 0u);
  std::ifstream log_in(m->stderr_path());
  std::string log((std::istreambuf_iterator<char>(log_in)), std::istreambuf_iterator<char>());
  EXPECT_NE(log.find("ds/f.bin: interrupted"), std::string::npos) << "a log line names it";

  // The user decides: f's 10 MiB are what they want; g is written again in full.
  CmdResult bad = Ingestfs("retry " + Q(m->path()) + " --accept-partial " + Q(*m / "ds/nothing"));
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.out.find("ds/nothing"), std::string::npos) << bad.out;
  CmdResult accepted = Ingestfs("retry " + Q(m->path()) + " --accept-partial " + Q(*m / "ds/f.bin"));
  EXPECT_EQ(accepted.code, 0) << accepted.out;
  ASSERT_EQ(Sh("cp " + Q(tmp_ / "src") + " " + Q(*m / "ds/g.bin")), 0);
  std::string prefix = ReadAllOf(tmp_ / "src").substr(0, 10 * kMiB);
  EXPECT_TRUE(WaitArrived("ds", {{"f.bin", Sha256Hex(prefix)}, {"g.bin", FileSha256Hex(tmp_ / "src")}}));
  EXPECT_EQ(Ingestfs("wait " + Q(m->path()) + " --timeout 30").code, 0);
}

// A writer killed by a signal closes its files as it dies, exactly as one that finished would:
// the mount tells them apart by the exit code the kernel has set by then. A writer that exits
// normally without closing its file is finished.
TEST_F(PromiseTest, AWriterKilledBySignalLeavesItInterruptedOneThatExitsLeavesTheFile) {
  auto m = Mount({}, "0");
  ASSERT_EQ(Sh("mkdir " + Q(*m / "ds")), 0);
  WriteRandomFile(tmp_ / "src", 4 * kMiB, 9);
  Child killed, exits;
  StartWriter(killed, tmp_ / "src", *m / "ds/killed.bin", 2 * kMiB);
  StartWriter(exits, tmp_ / "src", *m / "ds/exits.bin", 4 * kMiB, 0.5);
  ASSERT_TRUE(WaitSize(*m / "ds/killed.bin", 2 * kMiB));
  killed.Kill();
  EXPECT_EQ(exits.Wait(std::chrono::seconds(30)), 0);
  EXPECT_TRUE(WaitArrived("ds", {{"exits.bin", FileSha256Hex(tmp_ / "src")}}));
  EXPECT_EQ(WaitXattr(*m / "ds/killed.bin", "user.ingestfs.state", "interrupted"), "interrupted");
  std::string why = Xattr(*m / "ds/killed.bin", "user.ingestfs.error");
  EXPECT_NE(why.find("was killed by SIGKILL"), std::string::npos) << why;
  EXPECT_NE(why.find("python3"), std::string::npos) << why;
  EXPECT_EQ(Ingestfs("wait " + Q(m->path()) + " --timeout 30").code, 1);
  EXPECT_EQ(Listing("ds").count("killed.bin"), 0u);
}

// A writer that starts another program while it holds its file open: the child's exec closes
// the descriptor (O_CLOEXEC), a close the mount must answer without waiting on the child (the
// check for a killed writer once blocked here for good). The file is the writer's, whole.
TEST_F(PromiseTest, AWriterThatSpawnsProgramsWhileWritingIsNeitherStuckNorCutShort) {
  auto m = Mount({}, "0");
  ASSERT_EQ(Sh("mkdir " + Q(*m / "ds")), 0);
  std::string path = *m / "ds/log.txt";
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  std::string all;
  for (int i = 0; i < 5; ++i) {
    std::string line = "step " + std::to_string(i) + "\n";
    ASSERT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
    all += line;
    EXPECT_EQ(Sh("true"), 0);  // posix_spawn: the child shares our memory until its exec
  }
  ASSERT_EQ(::close(fd), 0);
  EXPECT_TRUE(WaitArrived("ds", {{"log.txt", Sha256Hex(all)}}));
  EXPECT_EQ(WaitXattr(path, "user.ingestfs.state", "completed"), "completed");  // told just after the listing
}

// rsync's temporary names after a crash: the resume must apply the same rules as a close.
TEST_F(PromiseTest, ATemporaryNameNeverReachesThePlatformEvenAfterACrash) {
  auto m = Mount({}, "0");
  ASSERT_EQ(Sh("mkdir " + Q(*m / "ds")), 0);
  ASSERT_EQ(Sh("echo partial > " + Q(*m / "ds/.data.csv.Xy12Ab") + " && echo real > " + Q(*m / "ds/real.txt")), 0);
  m->KillNine();
  m = Mount({}, "0");
  EXPECT_TRUE(WaitArrived("ds", {{"real.txt", Sha256Hex("real\n")}}));
  EXPECT_EQ(Ingestfs("wait " + Q(m->path()) + " --timeout 30").code, 0);
  EXPECT_EQ(Listing("ds").count(".data.csv.Xy12Ab"), 0u);
  EXPECT_EQ(ReadAllOf(*m / "ds/.data.csv.Xy12Ab"), "partial\n") << "still there locally";
  CmdResult accept = Ingestfs("retry " + Q(m->path()) + " --accept-partial " + Q(*m / "ds/.data.csv.Xy12Ab"));
  EXPECT_EQ(accept.code, 1) << "nothing to accept: it was closed, and its name is temporary";
  EXPECT_EQ(Sh("mv " + Q(*m / "ds/.data.csv.Xy12Ab") + " " + Q(*m / "ds/data.csv")), 0);
  EXPECT_TRUE(WaitArrived("ds", {{"data.csv", Sha256Hex("partial\n")}}));
  EXPECT_EQ(Listing("ds").count(".data.csv.Xy12Ab"), 0u);
}

// The cache's disk itself fills up (not cache_max's bound): the write fails with ENOSPC, and
// what reached the cache is not uploaded as the file. Removing it frees the room.
TEST_F(PromiseTest, TheCacheDisksOwnENOSPCLeavesTheVersionInterrupted) {
  std::string small = tmp_ / "small";
  std::filesystem::create_directories(small);
  if (::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=40m") != 0) {
    const char* ci = std::getenv("CI");
    std::string why = "cannot mount a 40 MB tmpfs for the full-disk test: " + std::string(std::strerror(errno));
    if (ci != nullptr && std::string(ci) == "true") FAIL() << why;
    GTEST_SKIP() << "FULL-DISK TEST NOT RUN: " << why;
  }
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount_small{small};
  cache_dir_ = small + "/cache";
  auto m = Mount({"cache_min_free=0"}, "0");
  ASSERT_EQ(Sh("mkdir " + Q(*m / "ds")), 0);
  WriteRandomFile(tmp_ / "big", 100 * kMiB, 3);
  CmdResult cp = Capture("cp " + Q(tmp_ / "big") + " " + Q(*m / "ds/big.bin"));
  EXPECT_NE(cp.code, 0);
  EXPECT_NE(cp.out.find("No space left on device"), std::string::npos) << cp.out;
  EXPECT_EQ(WaitXattr(*m / "ds/big.bin", "user.ingestfs.state", "interrupted"), "interrupted");
  std::string why = Xattr(*m / "ds/big.bin", "user.ingestfs.error");
  EXPECT_NE(why.find("write failed"), std::string::npos) << why;
  EXPECT_EQ(Ingestfs("wait " + Q(m->path()) + " --timeout 30").code, 1);
  EXPECT_EQ(Listing("ds").count("big.bin"), 0u) << "a prefix must never land as the file";
  // Removing the interrupted version frees its room; the next file arrives, with its receipt.
  ASSERT_EQ(Sh("rm " + Q(*m / "ds/big.bin")), 0);
  WriteRandomFile(tmp_ / "next", 5 * kMiB, 4);
  ASSERT_EQ(Sh("cp " + Q(tmp_ / "next") + " " + Q(*m / "ds/next.bin")), 0);
  EXPECT_TRUE(WaitArrived("ds", {{"next.bin", FileSha256Hex(tmp_ / "next")}}));
  EXPECT_EQ(Ingestfs("wait " + Q(m->path()) + " --timeout 30").code, 0);
  EXPECT_EQ(Listing("ds").count("big.bin"), 0u);
  EXPECT_NE(ReadAllOf(*m / ".ingestfs/receipts.csv").find(",ds,next.bin,"), std::string::npos);
  m->Unmount();
}

// truncate(2) to a size no upload can have is refused before anything changes, and the file
// does not stay "open" for `wait` and `unmount --wait`.
TEST_F(PromiseTest, TruncateToAnImpossibleSizeChangesNothing) {
  auto m = Mount({}, "0");
  ASSERT_EQ(Sh("mkdir " + Q(*m / "ds") + " && echo hello > " + Q(*m / "ds/t.txt")), 0);
  EXPECT_TRUE(WaitArrived("ds", {{"t.txt", Sha256Hex("hello\n")}}));
  ASSERT_EQ(Sh("echo local > " + Q(*m / "ds/l.txt")), 0);
  for (const char* name : {"ds/t.txt", "ds/l.txt"}) {
    errno = 0;
    EXPECT_NE(::truncate((*m / name).c_str(), 999999999999999LL), 0) << name;
    EXPECT_EQ(errno, EFBIG) << name;
  }
  CmdResult waited = Ingestfs("wait " + Q(m->path()) + " --timeout 20");
  EXPECT_EQ(waited.code, 0) << waited.out;
  EXPECT_TRUE(WaitArrived("ds", {{"t.txt", Sha256Hex("hello\n")}, {"l.txt", Sha256Hex("local\n")}}));
  EXPECT_EQ(Listing("ds")["t.txt"].second, 1) << "no new version for a refused truncate";
}

// Write, close, unlink at settle=0, so that the unlink races the upload's confirmation: an unlink
// that returned 0 stays gone (locally and on the platform); one the platform won fails with EPERM
// and the file stays visible and arrives.
TEST_F(PromiseTest, AnUnlinkThatReturnedZeroStaysGone) {
  auto m = Mount({"listing_ttl=0"}, "0");
  ASSERT_EQ(Sh("mkdir " + Q(*m / "ds")), 0);
  std::map<std::string, int> result;  // name -> errno of unlink (0: it returned 0)
  for (int i = 0; i < 60; ++i) {
    std::string name = "u" + std::to_string(i) + ".txt";
    std::ofstream(*m / ("ds/" + name)) << "content " << i << "\n";
    std::this_thread::sleep_for(std::chrono::milliseconds(i % 7));  // spread over the upload's steps
    errno = 0;
    result[name] = ::unlink((*m / ("ds/" + name)).c_str()) == 0 ? 0 : errno;
  }
  EXPECT_EQ(Ingestfs("wait " + Q(m->path()) + " --timeout 60").code, 0);
  auto listed = Listing("ds");
  int refused = 0;
  for (const auto& [name, err] : result) {
    struct stat st;
    bool visible = ::stat((*m / ("ds/" + name)).c_str(), &st) == 0;
    if (err == 0) {
      EXPECT_EQ(listed.count(name), 0u) << name << ": unlink returned 0, yet it reached the platform";
      EXPECT_FALSE(visible) << name << ": unlink returned 0, yet it came back";
    } else {
      ++refused;
      EXPECT_EQ(err, EPERM) << name;
      EXPECT_TRUE(visible) << name;
      EXPECT_EQ(listed.count(name), 1u) << name;
    }
  }
  std::cout << "unlinks refused because the platform confirmed first: " << refused << " of 60\n";
}

// git's lock-file pattern (write config.lock, close, rename over config) at settle=0: every
// rename either succeeds, and the new name's content is what the platform gets and the lock
// name never stays there, or fails with EPERM and nothing changed. Never ENOENT.
TEST_F(PromiseTest, ARenameRacingItsUploadEitherHappensWhollyOrNotAtAll) {
  auto m = Mount({"listing_ttl=0"}, "0");
  ASSERT_EQ(Sh("mkdir " + Q(*m / "ds")), 0);
  std::map<int, int> result;
  for (int i = 0; i < 50; ++i) {
    std::string lock = *m / ("ds/config" + std::to_string(i) + ".lock");
    std::ofstream(lock) << "[core] " << i << "\n";
    std::this_thread::sleep_for(std::chrono::milliseconds(i % 7));
    errno = 0;
    result[i] = ::rename(lock.c_str(), (*m / ("ds/config" + std::to_string(i))).c_str()) == 0 ? 0 : errno;
  }
  EXPECT_EQ(Ingestfs("wait " + Q(m->path()) + " --timeout 60").code, 0);
  auto listed = Listing("ds");
  for (const auto& [i, err] : result) {
    std::string name = "config" + std::to_string(i), lock = name + ".lock";
    std::string content = "[core] " + std::to_string(i) + "\n";
    struct stat st;
    if (err == 0) {
      EXPECT_EQ(ReadAllOf(*m / ("ds/" + name)), content) << name;
      EXPECT_NE(::stat((*m / ("ds/" + lock)).c_str(), &st), 0) << lock;
      EXPECT_EQ(listed.count(lock), 0u) << lock << " reached the platform, yet the rename succeeded";
      EXPECT_EQ(listed[name].first, Sha256Hex(content)) << name;
    } else {
      EXPECT_EQ(err, EPERM) << name;
      EXPECT_EQ(ReadAllOf(*m / ("ds/" + lock)), content) << "nothing changed";
      EXPECT_NE(::stat((*m / ("ds/" + name)).c_str(), &st), 0) << name;
      EXPECT_EQ(listed.count(name), 0u) << name;
    }
  }
}

// POSIX: an open descriptor keeps an unlinked file, with nlink 0, until its last close; then it
// is gone, never uploaded. Its bytes are not given to another file meanwhile.
TEST_F(PromiseTest, AnOpenUnlinkedFileKeepsItsDataUntilTheLastClose) {
  auto m = Mount({}, "0");
  ASSERT_EQ(Sh("mkdir " + Q(*m / "ds")), 0);
  std::string path = *m / "ds/scratch";
  int fd = ::open(path.c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "before-", 7), 7);
  ASSERT_EQ(::unlink(path.c_str()), 0);
  struct stat st;
  EXPECT_NE(::stat(path.c_str(), &st), 0);
  ASSERT_EQ(::write(fd, "abcdefghijklmnopqrstuvwxyz", 26), 26);
  // Other files come and go meanwhile (and could take a freed cache file).
  for (int i = 0; i < 5; ++i) ASSERT_EQ(Sh("echo other" + std::to_string(i) + " > " + Q(*m / ("ds/o" + std::to_string(i)))), 0);
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 33);
  EXPECT_EQ(st.st_nlink, 0u);
  char buf[64] = {};
  EXPECT_EQ(::pread(fd, buf, sizeof(buf), 0), 33);
  EXPECT_EQ(std::string(buf, 33), "before-abcdefghijklmnopqrstuvwxyz");
  ASSERT_EQ(::close(fd), 0);
  EXPECT_EQ(Ingestfs("wait " + Q(m->path()) + " --timeout 30").code, 0);
  auto listed = Listing("ds");
  EXPECT_EQ(listed.count("scratch"), 0u);
  EXPECT_EQ(listed.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(listed["o" + std::to_string(i)].first, Sha256Hex("other" + std::to_string(i) + "\n"));
}

// kill -9 of the daemon during `cp -r` and `rsync -a`, at three moments: while the files are
// being written, right after the copy's last close, and while uploads run. After the remount
// (and, when the kill cut a copy short, the copy run again, as anyone would), every file is on
// the platform byte-exact, and nothing else: no prefix, no temporary name.
// INGESTFS_KILL_TRIALS sets the number of trials (scripts/soak.sh runs 200).
TEST_F(PromiseTest, KillNineCampaignWithCpAndRsync) {
  const char* env = std::getenv("INGESTFS_KILL_TRIALS");
  int trials = env != nullptr && *env != '\0' ? std::atoi(env) : 21;
  std::map<std::string, std::string> want;  // name -> sha256
  std::filesystem::create_directories(tmp_ / "src/raw");
  for (int i = 0; i < 24; ++i) {
    std::string rel = (i % 3 == 0 ? "raw/" : "") + std::string("f") + std::to_string(i) + ".dat";
    uint64_t size = i % 8 == 0 ? (1 + i % 3) * kMiB + 12345 : static_cast<uint64_t>(i) * 3001;
    WriteRandomFile(tmp_ / ("src/" + rel), size, 500 + i);
    want[rel] = FileSha256Hex(tmp_ / ("src/" + rel));
  }
  uint64_t seed = std::random_device{}();
  std::mt19937_64 rng(seed);
  const char* kWhen[] = {"during writes", "right after the last close", "mid-upload"};
  int wrong = 0, lost = 0, files = 0;
  for (int t = 0; t < trials && !HasFatalFailure(); ++t) {
    int when = t % 3;
    bool rsync = (t / 3) % 2 == 1;
    std::string ds = "k" + std::to_string(t);
    SCOPED_TRACE("trial " + std::to_string(t) + " (seed " + std::to_string(seed) + "): " + (rsync ? "rsync -a" : "cp -r") +
                 ", kill " + kWhen[when]);
    auto m = Mount({}, rng() % 2 ? "0" : "0.3");
    ASSERT_TRUE(m->ok());  // a copy into the bare mount point would spoil every later trial
    ASSERT_EQ(::mkdir((*m / ds).c_str(), 0755), 0);
    std::string copy_cmd = rsync ? "rsync -a " + Q(tmp_ / "src") + "/ " + Q(*m / ds) + "/"
                                 : "cp -r " + Q(tmp_ / "src") + "/. " + Q(*m / ds) + "/";
    int stored_before = Stored();
    Child copy;
    copy.InOwnGroup();
    ASSERT_TRUE(copy.Start({"/bin/sh", "-c", copy_cmd}, tmp_ / "copy.err"));
    if (when == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 150));
    } else {
      EXPECT_EQ(copy.Wait(std::chrono::seconds(120)), 0);
      for (int i = 0; when == 2 && i < 400 && Stored() == stored_before; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    // The copy's processes end before the dead mount is detached: rsync's children outlive a
    // killed rsync and would otherwise make its folder in the bare mount point.
    m->KillNine([&] { copy.KillGroup(); });
    std::error_code ec;
    ASSERT_TRUE(std::filesystem::is_empty(tmp_ / "mnt", ec)) << "something wrote into the bare mount point";
    m = Mount({}, "0");
    ASSERT_TRUE(m->ok());
    if (when == 0) {
      CmdResult again = Capture(copy_cmd);
      EXPECT_EQ(again.code, 0) << again.out;
    }
    CmdResult waited = Ingestfs("wait " + Q(m->path()) + " --timeout 120");
    EXPECT_EQ(waited.code, 0) << waited.out;
    auto listed = Listing(ds);
    for (const auto& [name, sha] : want) {
      ++files;
      if (listed.count(name) == 0) {
        ++lost;
        ADD_FAILURE() << name << " never arrived";
      } else if (listed[name].first != sha) {
        ++wrong;
        ADD_FAILURE() << name << " is not byte-exact on the platform";
      }
    }
    for (const auto& [name, sv] : listed) {
      if (want.count(name) == 0) {
        ++wrong;
        ADD_FAILURE() << name << " reached the platform, and is no file of the copy";
      }
    }
    m->Unmount();
  }
  std::cout << "kill campaign: " << trials << " trials (seed " << seed << "), " << files << " files checked, " << wrong
            << " wrong, " << lost << " lost\n";
}

// Links and special files have no place on a platform of plain files; a name with a control
// character would break every line that names it. Each is refused with EPERM or EINVAL and a log
// line that names it on one line; nothing else changes.
TEST_F(PromiseTest, LinksSpecialFilesAndControlCharactersAreRefusedByName) {
  auto m = Mount({}, "0");
  ASSERT_EQ(Sh("mkdir " + Q(*m / "ds") + " && echo x > " + Q(*m / "ds/f")), 0);
  errno = 0;
  EXPECT_NE(::symlink("f", (*m / "ds/l").c_str()), 0);
  EXPECT_EQ(errno, EPERM);
  errno = 0;
  EXPECT_NE(::link((*m / "ds/f").c_str(), (*m / "ds/h").c_str()), 0);
  EXPECT_EQ(errno, EPERM);
  errno = 0;
  EXPECT_NE(::mkfifo((*m / "ds/p").c_str(), 0644), 0);
  EXPECT_EQ(errno, EPERM);
  errno = 0;
  EXPECT_LT(::open((*m / "ds/bad\nname.txt").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644), 0);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_EQ(::chmod((*m / "ds/f").c_str(), 0600), 0) << "chmod succeeds and changes nothing";
  EXPECT_EQ(Ingestfs("wait " + Q(m->path()) + " --timeout 30").code, 0);
  auto listed = Listing("ds");
  EXPECT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed["f"].first, Sha256Hex("x\n"));
  std::string log = ReadAllOf(m->stderr_path());
  EXPECT_NE(log.find("ds/l refused: it would be a symbolic link to f"), std::string::npos) << log;
  EXPECT_NE(log.find("ds/h refused: it would be a hard link"), std::string::npos) << log;
  EXPECT_NE(log.find("ds/p refused: it would be a named pipe"), std::string::npos) << log;
  EXPECT_NE(log.find("'bad\\nname.txt' contains a control character"), std::string::npos) << log;
}

// `ingestfs unmount` returns once the daemon (a background one, as mount(8) and systemd start
// it) has let go of its cache dir: a mount right after it always works.
TEST_F(PromiseTest, UnmountReturnsOnlyOnceTheDaemonLetGoOfItsCacheDir) {
  std::filesystem::create_directories(tmp_ / "bg");
  struct Detach {  // a failed assertion must not leave the background daemon mounted
    std::string path;
    ~Detach() {
      if (IsMounted(path)) Sh("fusermount3 -u " + Q(path));
    }
  } detach{tmp_ / "bg"};
  std::string mount_cmd = BinDir() + "/ingestfs " + Q(server_->api()) + " " + Q(tmp_ / "bg") + " -o token_file=" +
                          Q(tmp_ / "token") + ",cache_dir=" + Q(tmp_ / "bgcache") + ",settle=0";
  for (int i = 0; i < 6; ++i) {
    CmdResult mounted = Capture(mount_cmd);
    ASSERT_EQ(mounted.code, 0) << "mount " << i << ": " << mounted.out;
    ASSERT_TRUE(IsMounted(tmp_ / "bg"));
    if (i == 0) {
      ASSERT_EQ(::mkdir((tmp_ / "bg/ds").c_str(), 0755), 0);
    }
    std::ofstream(tmp_ / ("bg/ds/f" + std::to_string(i))) << i;
    CmdResult un = Ingestfs("unmount " + Q(tmp_ / "bg") + " --wait --timeout 30");
    ASSERT_EQ(un.code, 0) << un.out;
  }
  std::map<std::string, std::string> want;
  for (int i = 0; i < 6; ++i) want["f" + std::to_string(i)] = Sha256Hex(std::to_string(i));
  EXPECT_TRUE(WaitArrived("ds", want));
}

// A receipt names the version the platform made of the file, as its listing does.
TEST_F(PromiseTest, ReceiptsNameThePlatformsVersion) {
  auto m = Mount({}, "0");
  ASSERT_EQ(Sh("mkdir " + Q(*m / "ds") + " && echo one > " + Q(*m / "ds/v.txt")), 0);
  EXPECT_TRUE(WaitArrived("ds", {{"v.txt", Sha256Hex("one\n")}}));
  ASSERT_EQ(Sh("echo two > " + Q(*m / "ds/v.txt")), 0);
  EXPECT_TRUE(WaitArrived("ds", {{"v.txt", Sha256Hex("two\n")}}));
  EXPECT_EQ(Listing("ds")["v.txt"].second, 2);
  EXPECT_EQ(Ingestfs("wait " + Q(m->path()) + " --timeout 30").code, 0);
  std::string receipts = ReadAllOf(*m / ".ingestfs/receipts.csv");
  EXPECT_NE(receipts.find(",ds,v.txt,4," + Sha256Hex("one\n") + ","), std::string::npos) << receipts;
  size_t first = receipts.find(Sha256Hex("one\n")), second = receipts.find(Sha256Hex("two\n"));
  ASSERT_NE(first, std::string::npos);
  ASSERT_NE(second, std::string::npos);
  EXPECT_EQ(receipts.substr(receipts.find('\n', first) - 2, 2), ",1") << receipts;
  EXPECT_EQ(receipts.substr(receipts.find('\n', second) - 2, 2), ",2") << receipts;
}

// Smaller edges of the namespace: a 256-byte name, and a folder that holds only empty folders.
TEST_F(PromiseTest, LongNamesAndFoldersOfEmptyFolders) {
  auto m = Mount({}, "0");
  ASSERT_EQ(Sh("mkdir -p " + Q(*m / "ds/a/b/c") + " " + Q(*m / "ds/d")), 0);
  struct stat st;
  errno = 0;
  EXPECT_NE(::stat((*m / ("ds/" + std::string(256, 'x'))).c_str(), &st), 0);
  EXPECT_EQ(errno, ENAMETOOLONG);
  EXPECT_EQ(::rename((*m / "ds/a").c_str(), (*m / "ds/d/moved").c_str()), 0) << std::strerror(errno);
  EXPECT_EQ(::stat((*m / "ds/d/moved/b/c").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  ASSERT_EQ(Sh("echo deep > " + Q(*m / "ds/d/moved/b/c/f.txt")), 0);
  EXPECT_TRUE(WaitArrived("ds", {{"d/moved/b/c/f.txt", Sha256Hex("deep\n")}}));
  errno = 0;
  EXPECT_NE(::rename((*m / "ds/d").c_str(), (*m / "ds/e").c_str()), 0);
  EXPECT_EQ(errno, EPERM) << "a folder with a file in it is not moved";
}

}  // namespace
}  // namespace ingestfs::testing
