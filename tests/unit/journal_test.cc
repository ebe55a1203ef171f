#include "cache/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <chrono>
#include <ctime>
#include <thread>

#include "cache/cache_space.h"
#include "common/spare_files.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/crypto.h"
#include "common/file_util.h"
#include "common/record_log.h"
#include "tests/support/process.h"

namespace ingestfs::cache {
namespace {

using testing::TempDir;

std::string WriteSource(const TempDir& dir, const std::string& name, const std::string& data) {
  std::string p = dir / name;
  std::ofstream(p, std::ios::binary) << data;
  return p;
}

Entry Meta(const std::string& name) {
  Entry m;
  m.api = "http://127.0.0.1:1/api";
  m.dataset = "ds";
  m.name = name;
  return m;
}

TEST(Journal, AddCopiesDurablyAndConfirmReleases) {
  TempDir dir;
  std::string src = WriteSource(dir, "src", "hello world");
  auto j = Journal::Open(dir / "cache", nullptr);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  auto e = (*j)->AddCopy(src, Meta("a/b.txt"));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->size, 11u);
  EXPECT_EQ(e->sha256, HexEncode(Sha256("hello world")));
  EXPECT_EQ(*ReadFileToString(e->data_path), "hello world");
  // The source may change afterwards: the cache copy is what gets uploaded.
  WriteSource(dir, "src", "changed");
  EXPECT_EQ(*ReadFileToString(e->data_path), "hello world");
  ASSERT_TRUE((*j)->RecordConfirmed(e->id, e->sha256, 1).ok());
  EXPECT_FALSE(PathExists(e->data_path));
  EXPECT_FALSE(PathExists(dir / "cache/journal/" + e->id + ".jnl"));
  EXPECT_TRUE((*j)->Unfinished().empty());
}

TEST(SequentialDigest, KnownOnlyForBytesAddedInOrder) {
  std::string a = "first part ", b = "second part";
  SequentialDigest d;
  int answered = 0;
  d.Add(0, a.data(), a.size(), [&] { ++answered; });
  d.Add(a.size(), b.data(), b.size(), [&] { ++answered; });
  EXPECT_EQ(d.Finish(a.size() + b.size() + 1), std::nullopt) << "the file holds more than was added";
  EXPECT_EQ(d.Finish(a.size() + b.size()), HexEncode(Sha256(a + b)));
  EXPECT_EQ(d.Finish(a.size() + b.size()), std::nullopt) << "spent";
  SequentialDigest out_of_order;
  out_of_order.Add(a.size(), b.data(), b.size(), [&] { ++answered; });
  out_of_order.Add(0, a.data(), a.size(), [&] { ++answered; });
  EXPECT_EQ(out_of_order.Finish(a.size() + b.size()), std::nullopt);
  SequentialDigest rewritten;
  rewritten.Add(0, a.data(), a.size());
  rewritten.Add(0, a.data(), a.size());
  EXPECT_EQ(rewritten.Finish(a.size()), std::nullopt);
  SequentialDigest truncated;
  truncated.Add(0, a.data(), a.size());
  truncated.Invalidate();
  EXPECT_EQ(truncated.Finish(a.size()), std::nullopt);
  EXPECT_EQ(SequentialDigest().Finish(0), HexEncode(Sha256("")));
  EXPECT_EQ(answered, 4) << "the writer is answered whether or not the bytes could be hashed";
}

TEST(Journal, CloseTakesTheRunningDigestOnlyWhenItCoversTheFile) {
  TempDir dir;
  auto j = Journal::Open(dir / "cache", nullptr);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  for (bool whole : {true, false}) {
    auto e = (*j)->AddOpen(Meta(whole ? "whole" : "part"));
    ASSERT_TRUE(e.ok());
    std::string data = "bytes written through the mount";
    std::ofstream(e->data_path, std::ios::binary) << data;
    SequentialDigest d;
    // A digest that followed every byte is taken as it is; to show that it is, it was fed other
    // bytes of the same length. One that missed bytes is not: the file is read.
    std::string fed = whole ? std::string(data.size(), 'x') : data.substr(0, 5);
    d.Add(0, fed.data(), fed.size());
    auto closed = (*j)->Close(e->id, &d);
    ASSERT_TRUE(closed.ok()) << closed.status().ToString();
    EXPECT_EQ(closed->size, data.size());
    EXPECT_EQ(closed->sha256, HexEncode(Sha256(whole ? fed : data)));
  }
}

TEST(SpareFiles, MadeAheadOnlyWhileNoneAreBeingTaken) {
  TempDir dir;
  SpareFiles spares(dir / "spare", 100);
  spares.StartFiller(20);
  auto wait_for = [&](size_t n) {
    for (int i = 0; i < 1000 && spares.size() < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return spares.size();
  };
  ASSERT_EQ(wait_for(20), 20u);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(spares.size(), 20u) << "no more than the target";
  auto taken_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(spares.Take(dir / "taken"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  size_t soon = spares.size();
  if (std::chrono::steady_clock::now() - taken_at < std::chrono::milliseconds(900)) {
    EXPECT_EQ(soon, 19u) << "the filler waits for a quiet second before making more";
  }
  EXPECT_EQ(wait_for(20), 20u) << "and then refills";
  struct stat st;
  ASSERT_EQ(::stat((dir / "taken").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
}

TEST(SpareFiles, FollowingBurstsKeepsAsManyReadyAsTheLargestBurstAskedFor) {
  TempDir dir;
  SpareFiles spares(dir / "spare", 40);
  spares.StartFiller(3, true);
  auto wait_for = [&](size_t n) {
    for (int i = 0; i < 1000 && spares.size() < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return spares.size();
  };
  ASSERT_EQ(wait_for(3), 3u);
  // A burst of 25 new files: 3 ready ones, then 22 asked for in vain.
  int taken = 0;
  for (int i = 0; i < 25; ++i) taken += spares.Take(dir / ("b" + std::to_string(i))) ? 1 : 0;
  EXPECT_EQ(taken, 3);
  EXPECT_EQ(wait_for(25), 25u) << "after a quiet second the filler makes as many as were asked for";
  EXPECT_EQ(spares.target(), 25u);
  // A burst larger than the cap keeps the cap.
  for (int i = 0; i < 60; ++i) spares.Take(dir / ("c" + std::to_string(i)));
  EXPECT_EQ(wait_for(40), 40u);
  EXPECT_EQ(spares.target(), 40u);
}

TEST(SpareFiles, AGivenFileKeepsNoBytes) {
  // A spare is only an inode to reuse: the bytes of a discarded 4 MiB version (or a freed part)
  // kept in spare/ would hold disk space that no count of the cache sees.
  TempDir dir;
  SpareFiles spares(dir / "spare", 10);
  std::string big = dir / "big";
  ASSERT_TRUE(WriteFileAtomic(big, std::string(4 << 20, 'x')).ok());
  spares.Give(big);
  ASSERT_EQ(spares.size(), 1u);
  uint64_t held = 0;
  std::string spare_dir = dir / "spare";
  auto names = ListDir(spare_dir);
  ASSERT_TRUE(names.ok());
  for (const std::string& n : *names) {
    struct stat st;
    ASSERT_EQ(::stat((spare_dir + "/" + n).c_str(), &st), 0);
    held += static_cast<uint64_t>(st.st_blocks) * 512 + static_cast<uint64_t>(st.st_size);
  }
  EXPECT_EQ(held, 0u);
}

TEST(Journal, FinishedFilesAreReusedNotRemovedAndReuseStartsEmpty) {
  TempDir dir;
  std::string src = WriteSource(dir, "src", "first upload's bytes");
  auto j = Journal::Open(dir / "cache", nullptr);
  ASSERT_TRUE(j.ok());
  auto a = (*j)->AddCopy(src, Meta("a.txt"));
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE((*j)->RecordConfirmed(a->id, a->sha256, 1).ok());
  std::vector<ino_t> spares;
  for (const auto& f : std::filesystem::directory_iterator(dir / "cache/spare")) {
    struct stat st;
    ASSERT_EQ(::stat(f.path().c_str(), &st), 0);
    spares.push_back(st.st_ino);
  }
  ASSERT_EQ(spares.size(), 2u);  // the journal file and the cache copy

  // The next version written through the mount takes both, emptied.
  auto b = (*j)->AddOpen(Meta("b.txt"));
  ASSERT_TRUE(b.ok());
  struct stat data, jnl;
  ASSERT_EQ(::stat(b->data_path.c_str(), &data), 0);
  ASSERT_EQ(::stat((dir / "cache/journal/" + b->id + ".jnl").c_str(), &jnl), 0);
  EXPECT_EQ(data.st_size, 0);
  EXPECT_NE(std::find(spares.begin(), spares.end(), data.st_ino), spares.end());
  EXPECT_NE(std::find(spares.begin(), spares.end(), jnl.st_ino), spares.end());
  std::ofstream(b->data_path, std::ios::binary) << "second";
  ASSERT_TRUE((*j)->Close(b->id).ok());
  j->reset();
  // The reused journal file holds only the new entry's records.
  auto again = Journal::Open(dir / "cache", nullptr);
  ASSERT_TRUE(again.ok());
  auto left = (*again)->Unfinished();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].name, "b.txt");
  EXPECT_EQ(left[0].sha256, HexEncode(Sha256("second")));
}

TEST(Journal, AKeptCopyInReadProvesTheConfirmationItsRecordMayHaveLost) {
  TempDir dir;
  std::string src = WriteSource(dir, "src", "bytes");
  std::string id;
  {
    auto j = Journal::Open(dir / "cache", nullptr);
    ASSERT_TRUE(j.ok());
    auto e = (*j)->AddCopy(src, Meta("a.txt"));
    ASSERT_TRUE(e.ok());
    id = e->id;
    // A power loss after the move to read/ and before the unsynced `confirmed` record reached
    // the disk looks like this: the record is missing, the copy is in read/.
    ASSERT_EQ(::rename(e->data_path.c_str(), (*j)->KeptPath(id).c_str()), 0);
  }
  std::vector<std::string> warnings;
  auto j = Journal::Open(dir / "cache", &warnings);
  ASSERT_TRUE(j.ok());
  EXPECT_TRUE((*j)->Unfinished().empty());  // not uploaded again, not failed
  EXPECT_TRUE(warnings.empty()) << warnings[0];
  EXPECT_EQ(*ReadFileToString((*j)->KeptPath(id)), "bytes");

  // Kept through RecordConfirmed: moved, and gone from the journal.
  auto e = (*j)->AddCopy(src, Meta("b.txt"));
  ASSERT_TRUE(e.ok());
  std::string kept;
  ASSERT_TRUE((*j)->RecordConfirmed(e->id, e->sha256, 1, &kept).ok());
  EXPECT_EQ(kept, (*j)->KeptPath(e->id));
  EXPECT_EQ(*ReadFileToString(kept), "bytes");
  EXPECT_FALSE(PathExists(e->data_path));
}

TEST(Journal, EveryConfirmationLeavesAReceipt) {
  TempDir dir;
  auto j = Journal::Open(dir / "cache", nullptr);
  ASSERT_TRUE(j.ok());
  auto a = (*j)->AddCopy(WriteSource(dir, "a", "one"), Meta("plate 1/A01, \"raw\".tif"));
  auto b = (*j)->AddCopy(WriteSource(dir, "b", "two!"), Meta("b.csv"));
  ASSERT_TRUE(a.ok() && b.ok());
  UploadSession s;
  s.job_id = "job-b";
  ASSERT_TRUE((*j)->RecordSession(b->id, s).ok());
  ASSERT_TRUE((*j)->RecordConfirmed(a->id, a->sha256, 1).ok());
  ASSERT_TRUE((*j)->RecordConfirmed(b->id, b->sha256, 3).ok());
  auto text = ReadFileToString((*j)->ReceiptsPath());
  ASSERT_TRUE(text.ok());
  std::vector<std::string> lines;
  for (size_t at = 0, nl; (nl = text->find('\n', at)) != std::string::npos; at = nl + 1) lines.push_back(text->substr(at, nl - at));
  ASSERT_EQ(lines.size(), 3u) << *text;
  EXPECT_EQ(lines[0] + "\n", ReceiptLog::kHeader);
  // time,dataset,name,size,sha256,job_id,version; the name's comma and quotes are quoted.
  EXPECT_NE(lines[1].find(",ds,\"plate 1/A01, \"\"raw\"\".tif\",3," + a->sha256 + ",,1"), std::string::npos) << lines[1];
  EXPECT_NE(lines[2].find(",ds,b.csv,4," + b->sha256 + ",job-b,3"), std::string::npos) << lines[2];
  EXPECT_EQ(lines[2].size() - lines[2].find(",ds,"), std::string(",ds,b.csv,4," + b->sha256 + ",job-b,3").size());
  EXPECT_EQ(lines[2][4], '-');  // 2026-...
}

TEST(Journal, ReplayRestoresEveryPartialState) {
  TempDir dir;
  std::string src = WriteSource(dir, "src", std::string(100, 'x'));
  std::vector<std::string> ids;
  {
    auto j = Journal::Open(dir / "cache", nullptr);
    for (int i = 0; i < 5; ++i) ids.push_back((*j)->AddCopy(src, Meta("f" + std::to_string(i)))->id);
    UploadSession s{"job-1", "up-1", 8 << 20, 3, false};
    // 0: only added. 1: presigned. 2: two parts done. 3: completed. 4: failed.
    ASSERT_TRUE((*j)->RecordSession(ids[1], s).ok());
    ASSERT_TRUE((*j)->RecordSession(ids[2], s).ok());
    ASSERT_TRUE((*j)->RecordPart(ids[2], 1, "\"e1\"").ok());
    ASSERT_TRUE((*j)->RecordPart(ids[2], 3, "\"e3\"").ok());
    ASSERT_TRUE((*j)->RecordSession(ids[3], s).ok());
    ASSERT_TRUE((*j)->RecordCompleted(ids[3]).ok());
    ASSERT_TRUE((*j)->RecordFailed(ids[4], "HTTP 403 not allowed").ok());
  }
  std::vector<std::string> warnings;
  auto j = Journal::Open(dir / "cache", &warnings);
  ASSERT_TRUE(j.ok());
  EXPECT_TRUE(warnings.empty());
  auto all = (*j)->Unfinished();
  ASSERT_EQ(all.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(all[i].id, ids[i]) << "oldest first";
  EXPECT_FALSE(all[0].session);
  ASSERT_TRUE(all[1].session);
  EXPECT_EQ(all[1].session->job_id, "job-1");
  EXPECT_EQ(all[1].session->num_parts, 3u);
  EXPECT_TRUE(all[1].parts.empty());
  EXPECT_EQ(all[2].parts.size(), 2u);
  EXPECT_EQ(all[2].parts.at(3), "\"e3\"");
  EXPECT_FALSE(all[2].completed);
  EXPECT_TRUE(all[3].completed);
  EXPECT_TRUE(all[4].failed);
  EXPECT_EQ(all[4].error, "HTTP 403 not allowed");
  // A new session forgets the parts of the old one; retry clears the failure.
  ASSERT_TRUE((*j)->RecordSession(ids[2], UploadSession{"job-2", "up-2", 8 << 20, 3, true}).ok());
  EXPECT_TRUE((*j)->Get(ids[2])->parts.empty());
  ASSERT_TRUE((*j)->RecordRetry(ids[4]).ok());
  EXPECT_FALSE((*j)->Get(ids[4])->failed);
}

TEST(Journal, DamageIsReportedNotFatal) {
  TempDir dir;
  std::string src = WriteSource(dir, "src", "abc");
  std::string torn_id, lost_id, corrupt_id;
  {
    auto j = Journal::Open(dir / "cache", nullptr);
    torn_id = (*j)->AddCopy(src, Meta("torn"))->id;
    lost_id = (*j)->AddCopy(src, Meta("lost"))->id;
    corrupt_id = (*j)->AddCopy(src, Meta("corrupt"))->id;
    ASSERT_TRUE((*j)->RecordSession(corrupt_id, UploadSession{"j", "", 3, 1, false}).ok());
    ASSERT_TRUE((*j)->RecordPart(corrupt_id, 1, "\"x\"").ok());
  }
  // A torn append at the end of one journal, a lost cache copy, a flipped byte mid-file,
  // an orphan data file and a journal with no add record.
  std::ofstream(dir / "cache/journal/" + torn_id + ".jnl", std::ios::app) << "12345678 {\"t\":\"sess";
  ::unlink((dir / "cache/data/" + lost_id).c_str());
  std::string cpath = dir / "cache/journal/" + corrupt_id + ".jnl";
  std::string text = *ReadFileToString(cpath);
  size_t second = text.find('\n') + 1;
  text[second + 15] ^= 0x20;
  ASSERT_TRUE(WriteFileAtomic(cpath, text).ok());
  std::ofstream(dir / "cache/data/orphan") << "x";
  std::ofstream(dir / "cache/journal/noadd.jnl") << FrameRecord(R"({"t":"completed"})");

  std::vector<std::string> warnings;
  auto j = Journal::Open(dir / "cache", &warnings);
  ASSERT_TRUE(j.ok());
  std::string all;
  for (const auto& w : warnings) all += w + "\n";
  EXPECT_NE(all.find("torn last record"), std::string::npos) << all;
  EXPECT_NE(all.find("corrupt record"), std::string::npos) << all;
  EXPECT_NE(all.find("missing"), std::string::npos) << all;
  EXPECT_NE(all.find("orphan"), std::string::npos) << all;
  EXPECT_NE(all.find("no add record"), std::string::npos) << all;
  EXPECT_TRUE((*j)->Get(torn_id));
  EXPECT_FALSE((*j)->Get(torn_id)->session);
  ASSERT_TRUE((*j)->Get(lost_id));
  EXPECT_TRUE((*j)->Get(lost_id)->failed) << "an upload whose bytes are gone is kept and shown, not dropped";
  // The corrupt session record was skipped; the part after it still applies.
  EXPECT_FALSE((*j)->Get(corrupt_id)->session);
  EXPECT_FALSE(PathExists(dir / "cache/data/orphan"));
  EXPECT_EQ((*j)->Unfinished().size(), 3u);
}

TEST(Journal, VersionsWrittenInPlaceCloseReopenRenameDiscard) {
  TempDir dir;
  std::string id, gone;
  {
    auto j = Journal::Open(dir / "cache", nullptr);
    auto e = (*j)->AddOpen(Meta("draft.tmp"));
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_FALSE(e->closed);
    id = e->id;
    std::ofstream(e->data_path, std::ios::binary) << "first";
    auto c = (*j)->Close(id);
    ASSERT_TRUE(c.ok());
    EXPECT_TRUE(c->closed);
    EXPECT_EQ(c->size, 5u);
    EXPECT_EQ(c->sha256, HexEncode(Sha256("first")));
    ASSERT_TRUE((*j)->RecordSession(id, UploadSession{"j", "", 5, 1, false}).ok());
    ASSERT_TRUE((*j)->RecordReopened(id).ok());
    EXPECT_FALSE((*j)->Get(id)->closed);
    EXPECT_FALSE((*j)->Get(id)->session) << "reopening voids the upload so far";
    ASSERT_TRUE((*j)->RecordRenamed(id, "ds2", "final.dat").ok());
    std::ofstream(e->data_path, std::ios::binary | std::ios::app) << " and more";
    // Written but never closed: the process dies here.
    std::string base = dir / "base";
    std::ofstream(base) << "platform bytes";
    auto m = (*j)->AddOpen(Meta("modified"), base);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(*ReadFileToString(m->data_path), "platform bytes");
    gone = (*j)->AddOpen(Meta("scratch"))->id;
    ASSERT_TRUE((*j)->Discard(gone).ok());
    EXPECT_FALSE((*j)->Get(gone));
  }
  std::vector<std::string> warnings;
  auto j = Journal::Open(dir / "cache", &warnings);
  ASSERT_TRUE(j.ok());
  ASSERT_EQ(warnings.size(), 2u) << "one line for each version its writer never closed";
  auto e = (*j)->Get(id);
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->closed) << "a write that never closed is not the file";
  EXPECT_TRUE(e->interrupted);
  EXPECT_EQ(e->size, 14u) << "what reached the cache";
  EXPECT_NE(e->error.find("14 bytes"), std::string::npos) << e->error;
  EXPECT_EQ(e->dataset, "ds2");
  EXPECT_EQ(e->name, "final.dat");
  EXPECT_FALSE((*j)->Get(gone));
  EXPECT_EQ((*j)->Unfinished().size(), 2u);
}

// The daemon dies with a file open for writing: only a version whose last writer had closed it,
// in this same boot, with nothing written after, is the file. Anything else is interrupted, kept,
// and uploaded only when the user accepts it (or writes it again).
TEST(Journal, AVersionIsTheFileOnlyIfItsWriterClosedIt) {
  TempDir dir;
  std::map<std::string, std::string> id;
  {
    auto j = Journal::Open(dir / "cache", nullptr);
    ASSERT_TRUE(j.ok());
    auto add = [&](const std::string& name, const std::string& bytes) {
      auto e = (*j)->AddOpen(Meta(name));
      EXPECT_TRUE(e.ok());
      std::ofstream(e->data_path, std::ios::binary) << bytes;
      id[name] = e->id;
      return e->id;
    };
    add("never-closed", "half of it");
    ASSERT_TRUE((*j)->RecordFlushed(add("closed", "all of it"), 9).ok());
    ASSERT_TRUE((*j)->RecordFlushed(add("written-after", "more than that"), 9).ok());
    ASSERT_TRUE((*j)->RecordWriting(id["written-after"]).ok());
    ASSERT_TRUE((*j)->RecordFlushed(add("grew-after", "grown since"), 5).ok());
    // A close recorded in another boot: the page cache that held its bytes is gone.
    add("other-boot", "bytes");
    auto w = RecordWriter::Open(dir / "cache/journal/" + id["other-boot"] + ".jnl", false);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->Append(R"({"t":"flushed","boot":"another-boot","size":5})", false).ok());
    // The write failed (ENOSPC): interrupted while the daemon ran.
    ASSERT_TRUE((*j)->RecordInterrupted(add("write-failed", "part"), "write failed: no space").ok());
    EXPECT_TRUE((*j)->Get(id["write-failed"])->interrupted);
  }
  std::vector<std::string> warnings;
  auto j = Journal::Open(dir / "cache", &warnings);
  ASSERT_TRUE(j.ok());
  auto closed = (*j)->Get(id["closed"]);
  ASSERT_TRUE(closed);
  EXPECT_TRUE(closed->closed);
  EXPECT_FALSE(closed->interrupted);
  EXPECT_EQ(closed->sha256, HexEncode(Sha256("all of it")));
  for (const char* name : {"never-closed", "written-after", "grew-after", "other-boot", "write-failed"}) {
    auto e = (*j)->Get(id[name]);
    ASSERT_TRUE(e) << name;
    EXPECT_TRUE(e->interrupted) << name;
    EXPECT_FALSE(e->closed) << name;
    EXPECT_NE(e->error.find(std::string(name) == "other-boot" ? "restarted" : std::string(name) == "write-failed" ? "no space" : "bytes reached the cache"), std::string::npos)
        << name << ": " << e->error;
  }
  EXPECT_EQ(warnings.size(), 4u);
  // Accepted: closed as it is, hashed, and no longer interrupted, across a reopen too.
  auto accepted = (*j)->AcceptPartial(id["never-closed"]);
  ASSERT_TRUE(accepted.ok()) << accepted.status().ToString();
  EXPECT_TRUE(accepted->closed);
  EXPECT_FALSE(accepted->interrupted);
  EXPECT_EQ(accepted->sha256, HexEncode(Sha256("half of it")));
  EXPECT_FALSE((*j)->AcceptPartial(id["closed"]).ok()) << "only an interrupted version is accepted";
  // Written again: reopening forgets the interruption.
  ASSERT_TRUE((*j)->RecordReopened(id["write-failed"]).ok());
  EXPECT_FALSE((*j)->Get(id["write-failed"])->interrupted);
  j->reset();
  j = Journal::Open(dir / "cache", nullptr);
  ASSERT_TRUE(j.ok());
  EXPECT_TRUE((*j)->Get(id["never-closed"])->closed);
  EXPECT_FALSE((*j)->Get(id["never-closed"])->interrupted);
  EXPECT_TRUE((*j)->Get(id["written-after"])->interrupted) << "stays interrupted across mounts";
}

// Unlinked while a descriptor still had it open, then the process died: removed, never uploaded.
TEST(Journal, AVersionUnlinkedWhileOpenIsGoneAfterACrash) {
  TempDir dir;
  std::string id, data;
  {
    auto j = Journal::Open(dir / "cache", nullptr);
    auto e = (*j)->AddOpen(Meta("scratch.dat"));
    ASSERT_TRUE(e.ok());
    id = e->id;
    data = e->data_path;
    std::ofstream(data, std::ios::binary) << "bytes";
    ASSERT_TRUE((*j)->RecordFlushed(id, 5).ok());
    ASSERT_TRUE((*j)->RecordUnlinked(id).ok());
  }
  auto j = Journal::Open(dir / "cache", nullptr);
  ASSERT_TRUE(j.ok());
  EXPECT_FALSE((*j)->Get(id));
  EXPECT_TRUE((*j)->Unfinished().empty());
  EXPECT_FALSE(PathExists(data));
}

// A receipt that cannot be written (a full disk) means no confirmation either: the entry stays,
// and the next attempt writes both.
TEST(Journal, NoConfirmationWithoutItsReceipt) {
  TempDir dir;
  auto j = Journal::Open(dir / "cache", nullptr);
  ASSERT_TRUE(j.ok());
  auto e = (*j)->AddCopy(WriteSource(dir, "a", "one"), Meta("a.txt"));
  ASSERT_TRUE(e.ok());
  std::filesystem::create_directory((*j)->ReceiptsPath());  // appending to it fails
  Status st = (*j)->RecordConfirmed(e->id, e->sha256, 1);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("receipt"), std::string::npos) << st.message();
  ASSERT_TRUE((*j)->Get(e->id));
  EXPECT_FALSE((*j)->Get(e->id)->confirmed);
  EXPECT_TRUE(PathExists(e->data_path));
  std::filesystem::remove((*j)->ReceiptsPath());
  ASSERT_TRUE((*j)->RecordConfirmed(e->id, e->sha256, 1).ok());
  EXPECT_FALSE((*j)->Get(e->id));
  EXPECT_NE(ReadFileToString((*j)->ReceiptsPath())->find(",ds,a.txt,3,"), std::string::npos);
}

TEST(Journal, OneProcessPerCacheDir) {
  TempDir dir;
  auto first = Journal::Open(dir / "cache", nullptr);
  ASSERT_TRUE(first.ok());
  auto second = Journal::Open(dir / "cache", nullptr);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find("in use by another ingestfs process"), std::string::npos);
}

}  // namespace
}  // namespace ingestfs::cache

namespace ingestfs::cache {
namespace {

void MakeFile(const std::string& path, size_t size, int age_seconds) {
  std::ofstream(path, std::ios::binary) << std::string(size, 'x');
  timespec times[2];
  ::clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= age_seconds;
  times[1] = times[0];
  ::utimensat(AT_FDCWD, path.c_str(), times, 0);
}

TEST(CacheSpace, EvictsOldestCopiesFirstAndNeverUnconfirmedBytes) {
  testing::TempDir dir;
  std::string c = dir / "cache";
  auto j = Journal::Open(c, nullptr);  // makes data/ and read/
  ASSERT_TRUE(j.ok());
  constexpr size_t kMiB = 1 << 20;
  MakeFile(c + "/data/pending", kMiB, 100);
  MakeFile(c + "/read/oldest", kMiB, 300);
  MakeFile(c + "/read/older", kMiB, 200);
  MakeFile(c + "/read/fresh", kMiB, 0);  // just used: kept
  CacheSpace::Options o;
  o.max_bytes = 4 * kMiB;
  o.wait = std::chrono::milliseconds(0);
  CacheSpace space(c, o);
  EXPECT_EQ(space.Current().pending, kMiB);
  EXPECT_EQ(space.Current().cached, 3 * kMiB);
  ASSERT_TRUE(space.Reserve(kMiB, "a").ok());
  EXPECT_FALSE(PathExists(c + "/read/oldest"));
  EXPECT_TRUE(PathExists(c + "/read/older"));
  // Nothing left that may go: the older copy is evicted, the fresh one and the pending bytes
  // stay, and the writer is told ENOSPC.
  Status full = space.Reserve(3 * kMiB, "b");
  EXPECT_EQ(full.code(), Code::kResourceExhausted);
  EXPECT_EQ(full.sys_errno(), ENOSPC);
  EXPECT_NE(full.message().find("b: cache full"), std::string::npos) << full.message();
  EXPECT_TRUE(PathExists(c + "/data/pending"));
  EXPECT_TRUE(PathExists(c + "/read/fresh"));
  EXPECT_EQ(space.Reserve(5 * kMiB, "c").sys_errno(), ENOSPC) << "larger than the bound: at once";
}

}  // namespace
}  // namespace ingestfs::cache
