// The Uploader's decisions with a scripted fake dialect and a tiny in-process S3-like store:
// stale listings (409 / 404), expired URLs, platforms that cannot re-issue URLs, InvalidPart,
// a wrong sha256 from the platform, and permanent errors landing in the journal.
#include <gtest/gtest.h>

#include <ctime>
#include <httplib.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "cache/journal.h"
#include "common/crypto.h"
#include "tests/support/process.h"
#include "upload/scheduler.h"
#include "upload/uploader.h"

namespace ingestfs::upload {
namespace {

using testing::TempDir;

// Stores PUT bodies by path and answers with S3's ETag; can answer "expired" or 503 a number of
// times.
class FakeStore {
 public:
  FakeStore() {
    server_.Put("/(.*)", [this](const httplib::Request& req, httplib::Response& res) {
      ++puts_;
      if (fail_next_ > 0) {
        --fail_next_;
        res.status = 503;
        return;
      }
      if (expire_next_ > 0) {
        --expire_next_;
        res.status = 403;
        res.set_content("<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                        "application/xml");
        return;
      }
      std::lock_guard<std::mutex> lock(mu_);
      bodies_[req.path] = req.body;
      res.status = 200;
      res.set_header("ETag", "\"" + HexEncode(Md5(req.body)) + "\"");
    });
    server_.set_keep_alive_max_count(1);  // close after each answer: shutdown never waits
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FakeStore() {
    server_.stop();
    thread_.join();
  }
  std::string Url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  std::string Body(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_[path];
  }
  std::atomic<int> expire_next_{0};
  std::atomic<int> fail_next_{0};  // answer 503 this many times
  std::atomic<int> puts_{0};

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, std::string> bodies_;
};

// A platform whose answers the test scripts.
class FakeDialect : public Dialect {
 public:
  explicit FakeDialect(FakeStore& store) : store_(store) {}
  const char* name() const override { return "fake"; }
  StatusOr<std::string> EnsureDataset(const std::string&) override { return std::string("ds-1"); }
  StatusOr<std::vector<DatasetInfo>> ListDatasets() override { return std::vector<DatasetInfo>{{"ds-1", "ds"}}; }
  StatusOr<uint64_t> Download(const std::string&, const std::string&, uint64_t, const std::string&) override {
    return Status(Code::kNotFound, "not in this fake");
  }
  Status ForEachFile(const std::string&, const std::function<void(RemoteFile&&)>& each) override {
    ++list_calls;
    for (const auto& n : listed) {
      RemoteFile f;
      f.name = n;
      f.size = 1;
      f.version = 1;
      each(std::move(f));
    }
    return Status::Ok();
  }
  StatusOr<BeginResult> Begin(const std::string&, const cache::Entry& e, bool overwrite) override {
    begins.push_back(overwrite ? "reupload" : "new");
    if (!overwrite && exists.count(e.name)) return Status(Code::kAlreadyExists, "presign: HTTP 409 exists");
    if (overwrite && !exists.count(e.name)) return Status(Code::kNotFound, "reupload presign: HTTP 404 not found");
    BeginResult r;
    r.session.job_id = "job-" + std::to_string(begins.size());
    r.session.part_size = e.size;
    r.session.num_parts = 1;
    r.session.overwrite = overwrite;
    if (!on_demand) r.targets = {Target(r.session.job_id)};
    return r;
  }
  StatusOr<std::vector<PartTarget>> RefreshTargets(const cache::UploadSession& s) override {
    ++refreshes;
    if (!can_refresh) return Status(Code::kNotFound, "cannot re-issue URLs");
    return std::vector<PartTarget>{Target(s.job_id)};
  }
  PartTarget Target(const std::string& job_id) {
    PartTarget t;
    t.url = store_.Url("/" + job_id);
    t.success_codes = success_codes;
    return t;
  }
  bool PartsOnDemand() const override { return on_demand; }
  StatusOr<PartTarget> TargetFor(const cache::UploadSession& s, uint32_t) override {
    ++target_asks;
    PartTarget t = Target(s.job_id);
    t.expires = std::time(nullptr) + (expired_next > 0 ? (--expired_next, -10) : 3600);
    return t;
  }
  Status ReportPart(const cache::UploadSession&, uint32_t, const PartTarget&,
                    const std::map<std::string, std::string>&) override {
    return Status::Ok();
  }
  Status Complete(const cache::UploadSession& s, const std::map<uint32_t, std::string>&) override {
    completes.push_back(s.job_id);
    if (invalid_part_next > 0) {
      --invalid_part_next;
      return Status(Code::kInvalidArgument, "complete: HTTP 400 InvalidPart");
    }
    return Status::Ok();
  }
  StatusOr<JobState> Poll(const cache::UploadSession& s) override {
    JobState j;
    if (stuck_jobs.count(s.job_id)) {  // the platform took the upload and never finishes it
      j.phase = JobPhase::kRunning;
      j.status = "awaiting_upload";
      return j;
    }
    if (fail_job) {
      j.phase = JobPhase::kFailed;
      j.message = "rejected by the platform's checks";
      return j;
    }
    j.phase = JobPhase::kCompleted;
    j.sha256 = wrong_sha_next > 0 ? (--wrong_sha_next, std::string(64, '0'))
                                  : HexEncode(Sha256(store_.Body("/" + s.job_id)));
    return j;
  }
  Status Abort(const cache::UploadSession& s) override {
    aborts.push_back(s.job_id);
    return Status::Ok();
  }

  std::set<std::string> listed, exists;
  int list_calls = 0;
  std::set<std::string> stuck_jobs;  // jobs whose status never leaves awaiting_upload
  bool on_demand = false;  // sbg's shape: each part's target asked for when it is sent
  std::vector<long> success_codes = {200};
  int expired_next = 0;    // this many targets come back already expired
  int target_asks = 0;
  bool can_refresh = true;
  bool fail_job = false;
  int invalid_part_next = 0;
  int wrong_sha_next = 0;
  std::vector<std::string> begins, completes, aborts;
  int refreshes = 0;

 private:
  FakeStore& store_;
};

class UploaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(tmp_ / "src", std::ios::binary) << data_;
    journal_ = std::move(cache::Journal::Open(tmp_ / "cache", nullptr)).value();
    opts_.retry.initial = std::chrono::milliseconds(1);
    opts_.retry.give_up_after = std::chrono::seconds(5);
    opts_.poll_initial = std::chrono::milliseconds(1);
  }
  std::string Add(const std::string& name = "a/b.bin", bool remote_hint = false) {
    cache::Entry meta;
    meta.dataset = "ds";
    meta.name = name;
    meta.remote_hint = remote_hint;
    return journal_->AddCopy(tmp_ / "src", meta)->id;
  }
  UploadOutcome Run(const std::string& id) {
    Uploader u(dialect_, *journal_, opts_, nullptr);
    return u.Upload(id);
  }

  TempDir tmp_;
  std::string data_ = testing::RandomBytes(100000, 4);
  FakeStore store_;
  FakeDialect dialect_{store_};
  std::unique_ptr<cache::Journal> journal_;
  UploaderOptions opts_;
};

// What the mount knew when the version began (the entry's hint) decides new vs reupload; the
// uploader lists nothing (a listing per dataset, and every name kept in memory, are gone).
TEST_F(UploaderTest, TheEntrysHintDecidesNewVsReuploadWithoutAListing) {
  dialect_.listed = {"a/b.bin"};  // what a listing would say: never asked
  dialect_.exists = {};
  UploadOutcome out = Run(Add());
  ASSERT_TRUE(out.status.ok()) << out.status.ToString();
  EXPECT_EQ(dialect_.begins, (std::vector<std::string>{"new"}));
  dialect_.exists = {"a/b.bin"};
  UploaderTest::dialect_.begins.clear();
  EXPECT_TRUE(Run(Add("a/b.bin", true)).status.ok());
  EXPECT_EQ(dialect_.begins, (std::vector<std::string>{"reupload"}));
  EXPECT_TRUE(journal_->Unfinished().empty());
  EXPECT_EQ(dialect_.list_calls, 0);
}

TEST_F(UploaderTest, AStaleHintConflictFallsBackToReupload) {
  dialect_.exists = {"a/b.bin"};  // someone else made it after the mount last looked
  UploadOutcome out = Run(Add());
  ASSERT_TRUE(out.status.ok()) << out.status.ToString();
  EXPECT_EQ(dialect_.begins, (std::vector<std::string>{"new", "reupload"}));
}

TEST_F(UploaderTest, AStaleHintNotFoundFallsBackToNew) {
  UploadOutcome out = Run(Add("a/b.bin", true));  // the mount saw it, but it is gone by the presign
  ASSERT_TRUE(out.status.ok()) << out.status.ToString();
  EXPECT_EQ(dialect_.begins, (std::vector<std::string>{"reupload", "new"}));
}

TEST_F(UploaderTest, TheHintSurvivesAReplayOfTheJournal) {
  std::string id = Add("a/b.bin", true);
  journal_.reset();
  auto reopened = cache::Journal::Open(tmp_ / "cache", nullptr);
  ASSERT_TRUE(reopened.ok());
  journal_ = std::move(reopened).value();
  EXPECT_TRUE(journal_->Get(id)->remote_hint);
}

TEST_F(UploaderTest, PerPartTargetsAreAskedForAgainOnceExpired) {
  // sbg's shape: the target in hand has passed its `expires` when a retry comes: a fresh one
  // is asked for before the part goes again.
  dialect_.on_demand = true;
  dialect_.expired_next = 1;
  store_.fail_next_ = 1;
  UploadOutcome out = Run(Add());
  ASSERT_TRUE(out.status.ok()) << out.status.ToString();
  EXPECT_EQ(dialect_.target_asks, 2);
  EXPECT_EQ(store_.puts_, 2);
  EXPECT_EQ(dialect_.begins.size(), 1u) << "the same upload throughout";
  EXPECT_EQ(dialect_.refreshes, 0);
}

TEST_F(UploaderTest, OnlyTheNamedSuccessCodesCount) {
  // The platform names 201; the store answers 200: the part is not taken as stored.
  dialect_.on_demand = true;
  dialect_.success_codes = {201};
  opts_.retry.give_up_after = std::chrono::milliseconds(300);
  UploadOutcome out = Run(Add());
  EXPECT_FALSE(out.status.ok());
  EXPECT_NE(out.status.message().find("not one of the success codes"), std::string::npos) << out.status.ToString();
  EXPECT_TRUE(dialect_.completes.empty()) << "never completed on a part the platform would not count";
}

TEST_F(UploaderTest, PerPartTargetTheStoreCallsExpiredIsAskedForAgain) {
  dialect_.on_demand = true;
  store_.expire_next_ = 1;
  UploadOutcome out = Run(Add());
  ASSERT_TRUE(out.status.ok()) << out.status.ToString();
  EXPECT_EQ(dialect_.target_asks, 2);
  EXPECT_EQ(dialect_.begins.size(), 1u);
  EXPECT_EQ(dialect_.refreshes, 0) << "only that part's target, not every URL";
}

TEST_F(UploaderTest, ExpiredUrlIsRenewedForTheSameJob) {
  store_.expire_next_ = 2;
  UploadOutcome out = Run(Add());
  ASSERT_TRUE(out.status.ok()) << out.status.ToString();
  EXPECT_EQ(dialect_.begins.size(), 1u);
  EXPECT_EQ(dialect_.refreshes, 2);
  EXPECT_EQ(store_.puts_, 3);
  EXPECT_EQ(store_.Body("/job-1"), data_);
}

TEST_F(UploaderTest, ResumeWithoutUrlRefreshBeginsANewJobAndAbortsTheOld) {
  std::string id = Add();
  ASSERT_TRUE(journal_->RecordSession(id, cache::UploadSession{"job-old", "", data_.size(), 1, false}).ok());
  dialect_.can_refresh = false;
  UploadOutcome out = Run(id);
  ASSERT_TRUE(out.status.ok()) << out.status.ToString();
  EXPECT_EQ(dialect_.aborts, (std::vector<std::string>{"job-old"}));
  EXPECT_EQ(dialect_.begins.size(), 1u);
  EXPECT_EQ(out.job_id, "job-1");
}

TEST_F(UploaderTest, InvalidPartAtCompleteBeginsAgain) {
  dialect_.invalid_part_next = 1;
  UploadOutcome out = Run(Add());
  ASSERT_TRUE(out.status.ok()) << out.status.ToString();
  EXPECT_EQ(dialect_.begins.size(), 2u);
  EXPECT_EQ(dialect_.completes.size(), 2u);
}

TEST_F(UploaderTest, WrongSha256FromThePlatformUploadsAgainThenGivesUp) {
  dialect_.wrong_sha_next = 1;
  ASSERT_TRUE(Run(Add()).status.ok());
  EXPECT_EQ(dialect_.begins.size(), 2u);
  dialect_.wrong_sha_next = 100;
  dialect_.begins.clear();
  std::string id = Add("c.bin");
  UploadOutcome out = Run(id);
  EXPECT_FALSE(out.status.ok());
  EXPECT_EQ(dialect_.begins.size(), static_cast<size_t>(opts_.max_restarts + 1));
  EXPECT_TRUE(journal_->Get(id).has_value()) << "never dropped";
}

// The platform accepted the complete and then never finished the job: after job_timeout the file
// goes again as a new upload (an attempt counted), and arrives.
TEST_F(UploaderTest, AJobThatNeverFinishesIsSentAgainAfterTheJobTimeout) {
  dialect_.stuck_jobs.insert("job-1");
  opts_.job_timeout = std::chrono::milliseconds(200);
  opts_.poll_max = std::chrono::milliseconds(20);
  std::string id = Add();
  UploadOutcome out = Run(id);
  ASSERT_TRUE(out.status.ok()) << out.status.ToString();
  EXPECT_EQ(dialect_.begins, (std::vector<std::string>{"new", "new"}));
  EXPECT_EQ(out.job_id, "job-2");
  EXPECT_GE(out.attempts, 1);
  EXPECT_EQ(store_.Body("/job-2"), data_);
}

TEST_F(UploaderTest, PlatformRejectionIsRecordedAsFailedWithItsMessage) {
  dialect_.fail_job = true;
  std::string id = Add();
  UploadOutcome out = Run(id);
  EXPECT_FALSE(out.status.ok());
  EXPECT_NE(out.status.message().find("rejected by the platform's checks"), std::string::npos);
  auto e = journal_->Get(id);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->failed);
  EXPECT_NE(e->error.find("a/b.bin"), std::string::npos) << e->error;
}


// Holds every upload at Begin until `want` of them are there at once (or a deadline passes), and
// remembers the most that ever were: files due together must run on as many workers as there are.
class GatheringDialect : public FakeDialect {
 public:
  GatheringDialect(FakeStore& store, int want) : FakeDialect(store), want_(want) {}
  StatusOr<BeginResult> Begin(const std::string& ds, const cache::Entry& e, bool overwrite) override {
    std::unique_lock<std::mutex> lock(mu_);
    most_ = std::max(most_, ++inside_);
    cv_.notify_all();
    cv_.wait_for(lock, std::chrono::seconds(3), [&] { return most_ >= want_; });
    --inside_;
    return FakeDialect::Begin(ds, e, overwrite);
  }
  Status Complete(const cache::UploadSession& s, const std::map<uint32_t, std::string>& etags) override {
    std::lock_guard<std::mutex> lock(mu_);
    return FakeDialect::Complete(s, etags);
  }
  int most() {
    std::lock_guard<std::mutex> lock(mu_);
    return most_;
  }

 private:
  int want_;
  std::mutex mu_;
  std::condition_variable cv_;
  int inside_ = 0, most_ = 0;
};

TEST_F(UploaderTest, SchedulerRunsFilesDueTogetherOnEveryWorker) {
  // Workers sleep until work arrives and wake one another as long as more is due; a wake-up
  // that reached only one worker would leave the others asleep and `most` at 1.
  for (int delay_ms : {0, 80}) {
    SCOPED_TRACE("settle " + std::to_string(delay_ms) + " ms");
    GatheringDialect dialect(store_, 4);
    Scheduler::Options o;
    o.workers = 4;
    o.uploader = opts_;
    Scheduler sched(dialect, *journal_, o, nullptr);
    sched.Start();
    std::vector<std::string> ids;
    for (int i = 0; i < 4; ++i) ids.push_back(Add("s" + std::to_string(delay_ms) + "/f" + std::to_string(i)));
    for (const std::string& id : ids) sched.Schedule(id, std::chrono::milliseconds(delay_ms));
    ASSERT_TRUE(sched.WaitIdle(std::chrono::seconds(10)));
    EXPECT_EQ(dialect.most(), 4);
    for (const std::string& id : ids) {
      auto st = sched.Get(id);
      ASSERT_TRUE(st);
      EXPECT_EQ(st->state, FileState::kCompleted) << st->error;
    }
    sched.Stop();
  }
}

// Status lists only the newest completed files, but counts every one: the total beside the window.
TEST_F(UploaderTest, SchedulerCountsEveryConfirmationBeyondTheListedWindow) {
  Scheduler::Options o;
  o.workers = 1;
  o.uploader = opts_;
  o.keep_completed = 3;
  Scheduler sched(dialect_, *journal_, o, nullptr);
  EXPECT_EQ(sched.Confirmed().files, 0u);
  EXPECT_EQ(sched.Confirmed().files_per_s, 0.0);
  sched.Start();
  uint64_t bytes = 0;
  for (int i = 0; i < 5; ++i) {
    std::ofstream(tmp_ / "src", std::ios::binary | std::ios::trunc) << std::string(100 + i, 'x');
    bytes += 100 + static_cast<uint64_t>(i);
    sched.Schedule(Add("w/f" + std::to_string(i)), std::chrono::milliseconds(0));
  }
  ASSERT_TRUE(sched.WaitIdle(std::chrono::seconds(10)));
  int listed = 0;
  for (const FileStatus& f : sched.Snapshot()) listed += f.state == FileState::kCompleted;
  EXPECT_EQ(listed, 3) << "the window";
  Scheduler::Confirmations c = sched.Confirmed();
  EXPECT_EQ(c.files, 5u) << "every confirmation is counted";
  EXPECT_EQ(c.bytes, bytes);
  EXPECT_GT(c.files_per_s, 0.0);
  EXPECT_GT(c.bytes_per_s, 0.0);
  sched.Stop();
}

// What must never reach the platform does not, on any path: a temporary name (closed, resumed
// after a crash, retried), and an interrupted version until the user accepts it; a plain retry
// does not send an interrupted version either.
TEST_F(UploaderTest, SchedulerNeverSendsTemporaryNamesOrInterruptedVersions) {
  std::string temp = Add("run/.data.csv.Xy12Ab");  // rsync's temporary name, closed
  std::string open = journal_->AddOpen([] {
    cache::Entry m;
    m.dataset = "ds";
    m.name = "run/half.tif";
    return m;
  }())->id;
  std::ofstream(journal_->Get(open)->data_path, std::ios::binary) << "half";
  ASSERT_TRUE(journal_->RecordInterrupted(open, "interrupted: test").ok());
  std::string real = Add("run/data.csv");
  Scheduler::Options o;
  o.workers = 1;  // the fake dialect's records are not for concurrent writers
  o.uploader = opts_;
  o.keep_local = [](const std::string& name) { return name.find("/.") != std::string::npos; };
  {
    Scheduler sched(dialect_, *journal_, o, nullptr);
    sched.Start();  // the resume after a crash: all three are unfinished in the journal
    ASSERT_TRUE(sched.WaitIdle(std::chrono::seconds(10)));
    EXPECT_EQ(sched.Get(real)->state, FileState::kCompleted);
    EXPECT_EQ(sched.Get(temp)->state, FileState::kLocal);
    EXPECT_EQ(sched.Get(open)->state, FileState::kInterrupted);
    EXPECT_EQ(sched.Get(open)->error, "interrupted: test");
    sched.Schedule(temp, std::chrono::milliseconds(0));  // closed again under its temporary name
    EXPECT_EQ(sched.Get(temp)->state, FileState::kLocal);
    EXPECT_EQ(sched.RetryFailed(), 0) << "retry leaves interrupted versions alone";
    ASSERT_TRUE(sched.WaitIdle(std::chrono::seconds(10)));
    EXPECT_EQ(dialect_.begins.size(), 1u) << "only the real, finished file was sent";
    EXPECT_FALSE(sched.AcceptPartial(temp).ok());
    ASSERT_TRUE(sched.AcceptPartial(open).ok());
    ASSERT_TRUE(sched.WaitIdle(std::chrono::seconds(10)));
    EXPECT_EQ(sched.Get(open)->state, FileState::kCompleted);
    sched.Stop();
  }
  EXPECT_EQ(dialect_.begins.size(), 2u);
  EXPECT_EQ(store_.Body("/job-2"), "half");
  // The uploader itself refuses an interrupted version, whoever asks.
  std::string other = Add("run/other.bin");
  ASSERT_TRUE(journal_->RecordInterrupted(other, "write failed: test").ok());
  UploadOutcome out = Run(other);
  EXPECT_FALSE(out.status.ok());
  EXPECT_EQ(dialect_.begins.size(), 2u);
}

}  // namespace
}  // namespace ingestfs::upload
