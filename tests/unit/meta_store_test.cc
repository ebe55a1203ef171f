#include "server/meta_store.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/file_util.h"
#include "tests/support/process.h"

namespace ingestfs::server {
namespace {

using testing::TempDir;

TEST(MetaStore, EverythingSurvivesReopen) {
  TempDir dir;
  std::string ds_id;
  {
    auto store = MetaStore::Open(dir.path(), nullptr);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto ds = (*store)->CreateDataset("run-42");
    ASSERT_TRUE(ds.ok());
    ds_id = ds->id;
    EXPECT_EQ((*store)->CreateDataset("run-42").status().code(), Code::kAlreadyExists);
    Job job;
    job.job_id = "j1";
    job.dataset_id = ds_id;
    job.filename = "a/b.tif";
    job.size = 10;
    ASSERT_TRUE((*store)->PutJob(job).ok());
    FileRecord f;
    f.dataset_id = ds_id;
    f.filename = "a/b.tif";
    f.size = 10;
    f.sha256 = "ab";
    auto published = (*store)->PublishJob("j1", f);
    ASSERT_TRUE(published.ok());
    EXPECT_EQ(published->version, 1);
    EXPECT_EQ((*store)->PublishJob("j1", f)->version, 2);
    ASSERT_TRUE((*store)->PutUpload({"u1", "ingest", "k", "t"}).ok());
    ASSERT_TRUE((*store)->PutUpload({"u2", "ingest", "k2", "t"}).ok());
    ASSERT_TRUE((*store)->DeleteUpload("u1").ok());
  }
  std::vector<std::string> warnings;
  auto store = MetaStore::Open(dir.path(), &warnings);
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE(warnings.empty());
  ASSERT_TRUE((*store)->FindDatasetByName("run-42"));
  EXPECT_EQ((*store)->GetFile(ds_id, "a/b.tif")->version, 2);
  EXPECT_EQ((*store)->GetJob("j1")->status, JobStatus::kCompleted);
  EXPECT_FALSE((*store)->GetUpload("u1"));
  EXPECT_TRUE((*store)->GetUpload("u2"));
}

TEST(MetaStore, TornTailIsDroppedAndCorruptRecordIsReportedNotFatal) {
  TempDir dir;
  {
    auto store = MetaStore::Open(dir.path(), nullptr);
    ASSERT_TRUE((*store)->CreateDataset("one").ok());
    ASSERT_TRUE((*store)->CreateDataset("two").ok());
    ASSERT_TRUE((*store)->CreateDataset("three").ok());
  }
  std::string log = dir.path() + "/meta.log";
  std::string text = *ReadFileToString(log);
  // Flip a byte inside the second record, and append half a record (a crash mid-append).
  size_t second = text.find('\n') + 1;
  text[second + 20] ^= 0x01;
  text += "0badc0de {\"t\":\"dataset\",\"id\":\"x";
  ASSERT_TRUE(WriteFileAtomic(log, text).ok());
  std::vector<std::string> warnings;
  auto store = MetaStore::Open(dir.path(), &warnings);
  ASSERT_TRUE(store.ok());
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find("line 2"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("corrupt"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[1].find("torn"), std::string::npos) << warnings[1];
  EXPECT_TRUE((*store)->FindDatasetByName("one"));
  EXPECT_FALSE((*store)->FindDatasetByName("two"));
  EXPECT_TRUE((*store)->FindDatasetByName("three"));
  // The compacted log is clean again.
  std::vector<std::string> again;
  ASSERT_TRUE(MetaStore::Open(dir.path(), &again).ok());
  EXPECT_TRUE(again.empty());
}

TEST(MetaStore, TransitionsAreCompareAndSet) {
  TempDir dir;
  auto store = MetaStore::Open(dir.path(), nullptr);
  Job job;
  job.job_id = "j";
  ASSERT_TRUE((*store)->PutJob(job).ok());
  ASSERT_TRUE((*store)->TransitionJob("j", JobStatus::kAwaitingUpload, JobStatus::kPending, "m").ok());
  auto again = (*store)->TransitionJob("j", JobStatus::kAwaitingUpload, JobStatus::kPending, "m");
  EXPECT_EQ(again.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(again.status().message(), "pending");
  EXPECT_EQ((*store)->TransitionJob("nope", JobStatus::kPending, JobStatus::kFailed, "").status().code(),
            Code::kNotFound);
}

TEST(MetaStore, ATransitionNotMadeDurableIsWrittenButNotSynced) {
  TempDir dir;
  {
    auto store = MetaStore::Open(dir.path(), nullptr);
    Job job;
    job.job_id = "j";
    ASSERT_TRUE((*store)->PutJob(job).ok());
    ASSERT_TRUE((*store)->TransitionJob("j", JobStatus::kAwaitingUpload, JobStatus::kPending, "m").ok());
    uint64_t synced = (*store)->log_syncs();
    ASSERT_TRUE((*store)->TransitionJob("j", JobStatus::kPending, JobStatus::kProcessing, "v", false).ok());
    EXPECT_EQ((*store)->log_syncs(), synced) << "no fdatasync for a lazy record";
    EXPECT_EQ((*store)->GetJob("j")->status, JobStatus::kProcessing) << "visible at once";
    ASSERT_TRUE((*store)->TransitionJob("j", JobStatus::kProcessing, JobStatus::kFailed, "x").ok());
    EXPECT_EQ((*store)->log_syncs(), synced + 1);
  }
  auto reopened = MetaStore::Open(dir.path(), nullptr);
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->GetJob("j")->status, JobStatus::kFailed) << "the lazy record and the one after it replay";
}

}  // namespace
}  // namespace ingestfs::server
