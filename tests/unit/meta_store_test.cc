#include "server/meta_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>
#include <fstream>
#include <memory>
#include <optional>

#include "common/file_util.h"
#include "common/record_log.h"
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

// A catalogue kept by earlier versions as a record log: the first open moves it into the
// database, skipping (and reporting) a corrupt record and a torn tail, and sets the log aside.
TEST(MetaStore, ARecordLogIsMigratedOnceWithItsDamageReported) {
  TempDir dir;
  std::string text;
  text += FrameRecord(R"({"t":"dataset","id":"d1","name":"one","created_at":"t"})");
  text += FrameRecord(R"({"t":"dataset","id":"d2","name":"two","created_at":"t"})");
  text += FrameRecord(R"({"t":"dataset","id":"d3","name":"three","created_at":"t"})");
  text += FrameRecord(R"({"t":"publish","file":{"dataset_id":"d1","filename":"a.tif","size":3,"sha256":"s",)"
                      R"("etag":"\"e\"","updated_at":"t","version":2,"s3_key":"k","accepted":7},)"
                      R"("job":{"job_id":"j1","dataset_id":"d1","filename":"a.tif","status":"completed",)"
                      R"("accepted":7,"version":2,"reported":{"1":"\"p1\""}}})");
  text += FrameRecord(R"({"t":"job","job_id":"j2","dataset_id":"d1","filename":"b.tif","status":"pending","accepted":9})");
  text += FrameRecord(R"({"t":"mpu","upload_id":"u1","bucket":"b","key":"k","created_at":"t"})");
  text += FrameRecord(R"({"t":"mpu","upload_id":"u2","bucket":"b","key":"k2","created_at":"t"})");
  text += FrameRecord(R"({"t":"mpu_del","upload_id":"u1"})");
  // Flip a byte inside the second record, and append half a record (a crash mid-append).
  size_t second = text.find('\n') + 1;
  text[second + 20] ^= 0x01;
  text += "0badc0de {\"t\":\"dataset\",\"id\":\"x";
  std::string log = dir.path() + "/meta.log";
  ASSERT_TRUE(WriteFileAtomic(log, text).ok());
  std::vector<std::string> warnings;
  auto store = MetaStore::Open(dir.path(), &warnings);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find("line 2"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("corrupt"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[1].find("torn"), std::string::npos) << warnings[1];
  EXPECT_TRUE((*store)->FindDatasetByName("one"));
  EXPECT_FALSE((*store)->FindDatasetByName("two"));
  EXPECT_TRUE((*store)->FindDatasetByName("three"));
  auto f = (*store)->GetFile("d1", "a.tif");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->version, 2);
  EXPECT_EQ(f->etag, "\"e\"");
  EXPECT_EQ((*store)->GetJob("j1")->reported.at(1), "\"p1\"");
  EXPECT_EQ((*store)->GetJob("j2")->status, JobStatus::kPending);
  EXPECT_FALSE((*store)->GetUpload("u1"));
  EXPECT_TRUE((*store)->GetUpload("u2"));
  int64_t total = 0;
  EXPECT_EQ((*store)->ListFiles("d1", {}, &total).size(), 1u);
  EXPECT_EQ(total, 1);
  // The order of accepted uploads goes on after the log's highest.
  Job j3;
  j3.job_id = "j3";
  ASSERT_TRUE((*store)->PutJob(j3).ok());
  EXPECT_EQ((*store)->AcceptUpload("j3")->accepted, 0u) << "returns the job as it was";
  EXPECT_EQ((*store)->GetJob("j3")->accepted, 10u);
  store->reset();
  EXPECT_FALSE(PathExists(log));
  EXPECT_TRUE(PathExists(log + ".migrated"));
  std::vector<std::string> again;
  auto reopened = MetaStore::Open(dir.path(), &again);
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE(again.empty());
  EXPECT_EQ((*reopened)->GetJob("j3")->accepted, 10u);
}

// A crash after the migration committed but before the log was set aside: the next open does
// not replay it over newer changes.
TEST(MetaStore, ALogAlreadyMigratedIsNotReplayedAgain) {
  TempDir dir;
  std::string log = dir.path() + "/meta.log";
  std::string text = FrameRecord(R"({"t":"job","job_id":"j","status":"pending"})");
  ASSERT_TRUE(WriteFileAtomic(log, text).ok());
  {
    auto store = MetaStore::Open(dir.path(), nullptr);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->TransitionJob("j", JobStatus::kPending, JobStatus::kFailed, "x").ok());
  }
  ASSERT_TRUE(WriteFileAtomic(log, text).ok());  // as if the rename had not happened
  auto store = MetaStore::Open(dir.path(), nullptr);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->GetJob("j")->status, JobStatus::kFailed);
  EXPECT_FALSE(PathExists(log));
}

// A store with one dataset, "d".
class MetaStoreWithDataset : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = MetaStore::Open(dir_.path(), nullptr);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    owned_ = std::move(opened).value();
    auto made = owned_->CreateDataset("d");
    ASSERT_TRUE(made.ok());
    ds = std::move(made).value();
  }
  TempDir dir_;
  std::unique_ptr<MetaStore> owned_;
  std::optional<Dataset> ds;
};

// Walking a dataset page by page gives every name once, in order, also when names come in the
// middle of the walk (the page after them is read by offset again, as the API says).
TEST_F(MetaStoreWithDataset, PagesFollowOneAnotherByNameAndByOffset) {
  MetaStore& store = *owned_;
  auto add = [&](const std::string& name) {
    Job job;
    job.job_id = "j-" + name;
    job.dataset_id = ds->id;
    job.filename = name;
    ASSERT_TRUE(store.PutJob(job).ok());
    FileRecord f;
    f.dataset_id = ds->id;
    f.filename = name;
    ASSERT_TRUE(store.PublishJob(job.job_id, f).ok());
  };
  for (int i = 0; i < 50; i += 2) add(std::string(1, static_cast<char>('A' + i)));
  std::vector<std::string> seen;
  int64_t total = 0;
  for (int64_t offset = 0;; offset += 10) {
    auto page = store.ListFiles(ds->id, {offset, 10}, &total);
    if (page.empty()) break;
    for (const auto& f : page) seen.push_back(f.filename);
    if (offset == 10) add("B");  // before the cursor: the offsets after it move by one
  }
  EXPECT_EQ(total, 26);
  std::vector<std::string> want;
  for (int i = 0; i < 50; i += 2) want.push_back(std::string(1, static_cast<char>('A' + i)));
  // "B" came after the first page was read: offset 20 now starts one name earlier than before,
  // exactly as OFFSET would give it, so one name is seen twice and none is lost.
  ASSERT_EQ(seen.size(), 26u);
  std::vector<std::string> unique = seen;
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  EXPECT_EQ(unique, want);
  // A walk with nothing changing meanwhile: every name once, in order.
  seen.clear();
  for (int64_t offset = 0;; offset += 7) {
    auto page = store.ListFiles(ds->id, {offset, 7}, &total);
    if (page.empty()) break;
    for (const auto& f : page) seen.push_back(f.filename);
  }
  want.insert(want.begin() + 1, "B");
  EXPECT_EQ(seen, want);
  // A page asked out of turn (no cursor) is the same as the one the walk gave.
  auto cold = store.ListFiles(ds->id, {13, 3}, &total);
  ASSERT_EQ(cold.size(), 3u);
  EXPECT_EQ(cold[0].filename, want[13]);
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

// Changes and reads from many threads at once (the server's worker pool): every change lands,
// in one order of accepted uploads, and no read fails meanwhile.
TEST_F(MetaStoreWithDataset, ConcurrentChangesAndReadsAllLand) {
  MetaStore& store = *owned_;
  constexpr int kThreads = 8, kEach = 40;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        std::string name = "f" + std::to_string(t) + "-" + std::to_string(i);
        Job job;
        job.job_id = "j-" + name;
        job.dataset_id = ds->id;
        job.filename = name;
        if (!store.PutJob(job).ok()) ++failures;
        // One statement per SQL text: a change ends its statements before it lets the writer go.
        if (!store.PutUpload({"u-" + name, "b", name, "t"}).ok()) ++failures;
        if (!store.DeleteUpload("u-" + name).ok()) ++failures;
        if (store.CreateDataset("d-" + name).status().code() != Code::kOk) ++failures;
        if (!store.AcceptUpload(job.job_id).ok()) ++failures;
        if (!store.TransitionJob(job.job_id, JobStatus::kPending, JobStatus::kProcessing, "v", false).ok()) ++failures;
        FileRecord f;
        f.dataset_id = ds->id;
        f.filename = name;
        auto published = store.PublishJob(job.job_id, f);
        if (!published.ok()) {
          ADD_FAILURE() << published.status().ToString();
          ++failures;
        }
        if (!store.GetFile(ds->id, name)) ++failures;
        int64_t total = 0;
        (void)store.ListFiles(ds->id, {0, 50}, &total);
        if (store.GetJob(job.job_id)->status != JobStatus::kCompleted) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  int64_t total = 0;
  EXPECT_EQ(store.ListFiles(ds->id, {0, 1000}, &total).size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(total, kThreads * kEach);
  std::set<uint64_t> order;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kEach; ++i) order.insert(store.GetJob("j-f" + std::to_string(t) + "-" + std::to_string(i))->accepted);
  }
  EXPECT_EQ(order.size(), static_cast<size_t>(kThreads * kEach)) << "each accept has its own place";
  EXPECT_LT(store.log_syncs(), static_cast<uint64_t>(kThreads * kEach * 4)) << "concurrent changes share syncs";
}

}  // namespace
}  // namespace ingestfs::server
