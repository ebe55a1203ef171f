#include "server/processor.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>

#include "common/crypto.h"
#include "common/file_util.h"
#include "tests/support/process.h"

namespace ingestfs::server {
namespace {

using testing::TempDir;

// Two uploads of one file whose `complete` the platform accepted in one order must leave the
// file holding the later one, whatever order the workers (or a restart) process them in.
class ProcessorTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void Open() {
    auto meta = MetaStore::Open(dir_.path() + "/meta", nullptr);
    ASSERT_TRUE(meta.ok()) << meta.status().ToString();
    meta_ = std::move(*meta);
    objects_ = std::make_unique<ObjectStore>(dir_.path() + "/objects");
    ASSERT_TRUE(objects_->Init().ok());
    ctx_.meta = meta_.get();
    ctx_.objects = objects_.get();
    processor_ = std::make_unique<Processor>(ctx_);
    ctx_.processor = processor_.get();
  }
  void Close() {
    processor_.reset();
    objects_.reset();
    meta_.reset();
  }
  // A single-PUT job for `filename` whose bytes are stored and whose upload was accepted: by a
  // complete call, or (`post`) as aplos's POST accepts it, with the size it carried.
  void Accepted(const std::string& job_id, const std::string& dataset_id, const std::string& body,
                bool post = false) {
    Job job;
    job.job_id = job_id;
    job.dataset_id = dataset_id;
    job.filename = "plate/A01.tif";
    job.size = body.size();
    job.staging_key = "staging/" + job_id;
    ASSERT_TRUE(meta_->PutJob(job).ok());
    auto w = objects_->NewWriter();
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(body.data(), body.size()).ok());
    auto md5 = (*w)->Finish();
    ASSERT_TRUE(md5.ok());
    ASSERT_TRUE(objects_->CommitObject(**w, *md5, ctx_.opts.bucket, job.staging_key).ok());
    if (post) {
      ASSERT_TRUE(meta_->AcceptUpload(job_id, body.size()).ok());
    } else {
      ASSERT_TRUE(meta_->TransitionJob(job_id, JobStatus::kAwaitingUpload, JobStatus::kPending, "Upload received").ok());
    }
  }
  std::string Stored(const std::string& dataset_id) {
    auto obj = objects_->StatObject(ctx_.opts.bucket, Processor::FinalKey(dataset_id, "plate/A01.tif"));
    if (!obj) return "<missing>";
    return ReadFileToString(obj->path).value_or("<unreadable>");
  }
  std::string Dataset() {
    auto ds = meta_->CreateDataset("run");
    EXPECT_TRUE(ds.ok());
    return ds.ok() ? ds->id : "";
  }

  TempDir dir_;
  ServerContext ctx_;
  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<ObjectStore> objects_;
  std::unique_ptr<Processor> processor_;
};

TEST_F(ProcessorTest, AnOlderJobProcessedLastDoesNotReplaceTheNewerFile) {
  std::string ds = Dataset();
  Accepted("old", ds, "first version");
  Accepted("new", ds, "second version");
  processor_->ProcessNow("new");
  processor_->ProcessNow("old");
  EXPECT_EQ(Stored(ds), "second version");
  auto file = meta_->GetFile(ds, "plate/A01.tif");
  ASSERT_TRUE(file);
  EXPECT_EQ(file->sha256, HexEncode(Sha256("second version")));
  EXPECT_EQ(file->version, 1);
  auto old_job = meta_->GetJob("old");
  EXPECT_EQ(old_job->status, JobStatus::kFailed);
  EXPECT_NE(old_job->message.find("newer upload"), std::string::npos) << old_job->message;
  EXPECT_EQ(meta_->GetJob("new")->status, JobStatus::kCompleted);
}

// aplos accepts an upload with its POST, not a complete call; that must take its place in the
// same order, or a reupload by POST of a file first stored through another dialect counted as
// older than it and was refused as superseded.
TEST_F(ProcessorTest, AnUploadAcceptedByPostIsNewerThanOneAcceptedBefore) {
  std::string ds = Dataset();
  Accepted("first", ds, "first version");
  processor_->ProcessNow("first");
  Accepted("posted", ds, "posted version", /*post=*/true);
  processor_->ProcessNow("posted");
  EXPECT_EQ(Stored(ds), "posted version");
  EXPECT_EQ(meta_->GetJob("posted")->status, JobStatus::kCompleted) << meta_->GetJob("posted")->message;
  EXPECT_EQ(meta_->GetFile(ds, "plate/A01.tif")->version, 2);
}

TEST_F(ProcessorTest, JobsRequeuedAtARestartKeepTheOrderTheirCompleteWasAccepted) {
  std::string ds = Dataset();
  // Job ids sort against the order of acceptance: a restart that queued by id processed the
  // older job last.
  for (int round = 0; round < 20; ++round) {
    std::string older = "z-" + std::to_string(round), newer = "a-" + std::to_string(round);
    Accepted(older, ds, "older " + std::to_string(round));
    Accepted(newer, ds, "newer " + std::to_string(round));
    Close();
    Open();
    processor_->Start(2);
    for (int i = 0; i < 500; ++i) {
      auto a = meta_->GetJob(older), b = meta_->GetJob(newer);
      auto done = [](const Job& j) { return j.status == JobStatus::kCompleted || j.status == JobStatus::kFailed; };
      if (a && b && done(*a) && done(*b)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    processor_->Stop();
    ASSERT_EQ(Stored(ds), "newer " + std::to_string(round)) << "round " << round;
    EXPECT_EQ(meta_->GetFile(ds, "plate/A01.tif")->sha256, HexEncode(Sha256("newer " + std::to_string(round))));
  }
}

}  // namespace
}  // namespace ingestfs::server
