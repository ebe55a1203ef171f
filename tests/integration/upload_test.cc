// `ingestfs upload` end to end against ingestfs-server on 127.0.0.1: byte-exact results from the
// platform's own listing (sha256), the endpoints used (access log), faults, URL expiry, crashes
// at every step and resume, a server that is down for a while, and permanent errors.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "common/json.h"
#include "tests/support/http.h"

namespace ingestfs::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;

struct RunResult {
  int status = -1;  // waitpid form
  std::string out;
  std::string err;
  bool exited_ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
  int exit_code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }
  bool killed() const { return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }
};

// Runs `ingestfs upload ARGS` to the end.
RunResult RunUpload(const TempDir& tmp, std::vector<std::string> args, std::vector<std::string> env = {},
                    const std::string& token = ServerProcess::kToken) {
  std::vector<std::string> argv = {BinDir() + "/ingestfs", "upload"};
  argv.insert(argv.end(), args.begin(), args.end());
  env.push_back("INGESTFS_TOKEN=" + token);
  static int n = 0;
  std::string err_path = tmp / ("upload-" + std::to_string(++n) + ".stderr");
  Child child;
  RunResult r;
  if (!child.Start(argv, err_path, env)) return r;
  r.out = child.ReadAll(std::chrono::minutes(5));
  r.status = child.Wait(std::chrono::minutes(5));
  std::ifstream in(err_path);
  r.err.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return r;
}

class UploadTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_->ok()); }
  void Restart(std::vector<std::string> args) {
    server_ = std::make_unique<ServerProcess>(ServerProcess::Options{args, "", 0});
    ASSERT_TRUE(server_->ok());
  }
  Api api() const { return Api(server_->api(), ServerProcess::kToken); }
  std::vector<std::string> Base(const std::string& dataset) const {
    return {"--api", server_->api(), "--dataset", dataset, "--cache-dir", tmp_ / "cache", "--json", "--dialect", dialect_};
  }
  // The requests that begin an upload (presign, init, form), whatever the dialect.
  int Begins(long status = 200) const {
    if (dialect_ == "sbg") return CountExact("POST", "/api/upload/multipart", status);
    if (dialect_ == "aplos") return CountExact("POST", "/api/nca-engine/generate-upload-url", status);
    return CountExact("POST", "/api/ingest/upload/presigned", status) + CountLog("POST", "/reupload/presigned", status);
  }
  // Bodies the data plane stored (a part, a whole object, a form's file).
  int Stored() const {
    if (dialect_ == "aplos") return CountExact("POST", "/ingest", 204);
    return CountLog("PUT", "/ingest/staging/", 200);
  }
  // name -> sha256 from the platform's listing of `dataset`.
  std::map<std::string, std::string> Listing(const std::string& dataset) const {
    std::map<std::string, std::string> out;
    HttpResult r = api().Read("/datasets?limit=1000");
    auto doc = json::Parse(r.body, "datasets");
    if (!doc.ok()) return out;
    for (const auto& d : (*doc)["items"].GetArray()) {
      if (std::string(d["name"].GetString()) != dataset) continue;
      json::Document files = api().Files(d["id"].GetString());
      for (const auto& f : files["items"].GetArray()) out[f["filename"].GetString()] = f["sha256"].GetString();
    }
    return out;
  }
  // Requests to exactly `path`.
  int CountExact(const std::string& method, const std::string& path, long status) const {
    int n = 0;
    for (auto& [m, p, st] : server_->AccessLogEntries()) {
      if (m == method && p == path && st == status) ++n;
    }
    return n;
  }
  // Requests whose path contains `path_part`.
  int CountLog(const std::string& method, const std::string& path_part, long status) const {
    int n = 0;
    for (auto& [m, p, s] : server_->AccessLogEntries()) {
      if (m == method && p.find(path_part) != std::string::npos && s == status) ++n;
    }
    return n;
  }

  TempDir tmp_;
  std::string dialect_ = "ingest";
  std::unique_ptr<ServerProcess> server_ = std::make_unique<ServerProcess>();
};

std::string DialectName(const ::testing::TestParamInfo<const char*>& info) { return info.param; }

// The suite that every dialect passes: the same tests, the same files, checked on the one store.
class DialectUploadTest : public UploadTest, public ::testing::WithParamInterface<const char*> {
 protected:
  void SetUp() override {
    dialect_ = GetParam();
    UploadTest::SetUp();
  }
};
INSTANTIATE_TEST_SUITE_P(Dialects, DialectUploadTest, ::testing::Values("ingest", "sbg", "aplos"), DialectName);

// Cases that need several parts per file (not aplos: one POST per file).
class MultipartUploadTest : public DialectUploadTest {};
INSTANTIATE_TEST_SUITE_P(Dialects, MultipartUploadTest, ::testing::Values("ingest", "sbg"), DialectName);

TEST_P(DialectUploadTest, SizesArriveByteExact) {
  std::vector<std::pair<std::string, uint64_t>> files = {
      {"zero", 0}, {"one", 1}, {"five-mib", 5 * kMiB}, {"eight-mib-plus-one", 8 * kMiB + 1}, {"big", 200 * kMiB}};
  std::vector<std::string> args = Base("sizes");
  for (auto& [name, size] : files) {
    WriteRandomFile(tmp_ / name, size, size + 3);
    args.push_back(tmp_ / name);
  }
  RunResult r = RunUpload(tmp_, args);
  ASSERT_TRUE(r.exited_ok()) << r.err << r.out;
  auto listing = Listing("sizes");
  for (auto& [name, size] : files) EXPECT_EQ(listing[name], FileSha256Hex(tmp_ / name)) << name;
  auto doc = json::Parse(r.out, "summary");
  ASSERT_TRUE(doc.ok()) << r.out;
  EXPECT_EQ((*doc)["confirmed"].GetInt(), 5);
  EXPECT_EQ((*doc)["failed"].GetInt(), 0);
  // Confirmed uploads release their cache copies.
  EXPECT_TRUE(std::filesystem::is_empty(tmp_ / "cache/data"));
}

TEST_P(DialectUploadTest, HundredSmallFilesFromADirectory) {
  std::filesystem::create_directories(tmp_ / "run/plate1");
  for (int i = 0; i < 100; ++i) {
    std::ofstream(tmp_ / ("run/plate1/well-" + std::to_string(i) + ".csv")) << RandomBytes(100 + i * 37, i);
  }
  RunResult r = RunUpload(tmp_, [&] {
    auto a = Base("hundred");
    a.push_back(tmp_ / "run");
    return a;
  }());
  ASSERT_TRUE(r.exited_ok()) << r.err;
  auto listing = Listing("hundred");
  EXPECT_EQ(listing.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    std::string name = "run/plate1/well-" + std::to_string(i) + ".csv";
    EXPECT_EQ(listing[name], FileSha256Hex(tmp_ / name)) << name;
  }
}

TEST_P(DialectUploadTest, OverwriteGoesThroughReuploadAndBecomesVersion2) {
  WriteRandomFile(tmp_ / "f.tif", 3 * kMiB, 1);
  auto args = Base("over");
  args.push_back(tmp_ / "f.tif");
  ASSERT_TRUE(RunUpload(tmp_, args).exited_ok());
  WriteRandomFile(tmp_ / "f.tif", 9 * kMiB, 2);
  RunResult r = RunUpload(tmp_, args);
  ASSERT_TRUE(r.exited_ok()) << r.err;
  if (dialect_ == "ingest") {
    EXPECT_EQ(CountLog("POST", "/reupload/presigned", 200), 1);
    EXPECT_EQ(CountExact("POST", "/api/ingest/upload/presigned", 200), 1);
  } else {
    EXPECT_EQ(Begins(), 2);
    EXPECT_EQ(Begins(409), 0) << "sbg: the overwrite asks with overwrite=true at once";
  }
  EXPECT_EQ(Listing("over")["f.tif"], FileSha256Hex(tmp_ / "f.tif"));
  HttpResult d = api().Call("GET", "/datasets?limit=10");
  auto doc = json::Parse(d.body, "datasets");
  // Checked before indexing: a missing item fails the test instead of crashing the binary.
  ASSERT_TRUE(doc.ok() && doc->IsObject() && (*doc)["items"].IsArray() && (*doc)["items"].Size() == 1) << d.body;
  json::Document files = api().Files((*doc)["items"][0]["id"].GetString());
  ASSERT_TRUE(files.IsObject() && files["items"].IsArray() && files["items"].Size() == 1);
  EXPECT_EQ(files["items"][0]["version"].GetInt(), 2);
}

TEST_P(DialectUploadTest, FaultyServerOnlyDelays) {
  Restart({"--fail-rate", "0.2", "--drop-rate", "0.05"});
  auto args = Base("faults");
  // Enough requests that some surely meet a fault. Over an external store only the platform's own
  // API injects them, and aplos asks it little: about 1.25 requests a file (12 files left about 1
  // run in 30 without a fault; 48 files: 0.8^60, about 1 in 700,000).
  const int kFiles = ServerProcess::ExternalStore().empty() ? 12 : 48;
  for (int i = 0; i < kFiles; ++i) {
    std::string name = "f" + std::to_string(i);
    WriteRandomFile(tmp_ / name, i == 0 ? 20 * kMiB : (i * 12345) % 300000, 50 + i);
    args.push_back(tmp_ / name);
  }
  RunResult r = RunUpload(tmp_, args);
  ASSERT_TRUE(r.exited_ok()) << r.err << r.out;
  auto listing = Listing("faults");
  for (int i = 0; i < kFiles; ++i) {
    EXPECT_EQ(listing["f" + std::to_string(i)], FileSha256Hex(tmp_ / ("f" + std::to_string(i)))) << i;
  }
  int faults = 0;
  for (const char* method : {"GET", "POST", "PUT"}) {
    for (const char* where : {"/api/", "/ingest"}) faults += CountLog(method, where, 500) + CountLog(method, where, 503);
  }
  std::cout << "injected faults met: " << faults << "\n";
  EXPECT_GT(faults, 0) << "the run should actually have met injected faults";
}

TEST_P(MultipartUploadTest, LargeUploadSurvivesItsUrlsExpiring) {
  Restart({"--url-ttl", "2", "--max-bytes-per-sec", "6MiB"});
  WriteRandomFile(tmp_ / "slow.bin", 30 * kMiB, 77);
  auto args = Base("expiry");
  args.insert(args.end(), {"--parallel", "1", tmp_ / "slow.bin"});
  // The server's throttle is its own data plane's: over an external store the client keeps the
  // upload as slow instead.
  if (!ServerProcess::ExternalStore().empty()) args.insert(args.end() - 1, {"--bwlimit", "6M"});
  RunResult r = RunUpload(tmp_, args);
  ASSERT_TRUE(r.exited_ok()) << r.err;
  EXPECT_EQ(Listing("expiry")["slow.bin"], FileSha256Hex(tmp_ / "slow.bin"));
  if (dialect_ == "ingest") {
    // Every URL came with the presign: the later parts meet theirs expired and get fresh ones.
    EXPECT_GE(CountLog("PUT", "/ingest/staging/", 403), 1) << "some part should have met an expired URL";
    EXPECT_GE(CountLog("GET", "/api/ingest/upload/presigned/", 200), 1) << "fresh URLs for the same job";
  } else {
    // Each part's URL is asked for just before the part is sent: none is ever used expired.
    EXPECT_EQ(CountLog("PUT", "/ingest/staging/", 403), 0);
    EXPECT_EQ(CountLog("GET", "/part/", 200), 4) << "one URL per part of 8 MiB";
  }
  EXPECT_EQ(Begins(), 1) << "one job, never a new presign";
}

class CrashTest : public UploadTest, public ::testing::WithParamInterface<std::tuple<const char*, const char*>> {
 protected:
  void SetUp() override {
    dialect_ = std::get<0>(GetParam());
    UploadTest::SetUp();
  }
};

TEST_P(CrashTest, KillNineThenResumeFinishesWithoutResendingParts) {
  WriteRandomFile(tmp_ / "crash.bin", 20 * kMiB, 5);  // 3 parts of 8 MiB (aplos: one POST)
  auto args = Base("crash");
  args.insert(args.end(), {"--parallel", "1", tmp_ / "crash.bin"});
  std::string point = std::get<1>(GetParam());
  if (dialect_ == "aplos" && point == "after_part:2") point = "after_part:1";
  RunResult first = RunUpload(tmp_, args, {"INGESTFS_FAILPOINT=" + point});
  ASSERT_TRUE(first.killed()) << "the fail point should have killed the uploader: " << first.err;
  // Before its complete (aplos: its POST) the file cannot be on the platform; after it, it may
  // be (sbg publishes before answering; ingest's job may or may not have finished by the kill).
  bool may_be_published = dialect_ == "aplos" ? point != "after_presign" : point == "after_complete";
  if (!may_be_published) {
    EXPECT_NE(Listing("crash")["crash.bin"], FileSha256Hex(tmp_ / "crash.bin"));
  }
  RunResult resumed = RunUpload(tmp_, {"--resume", "--cache-dir", tmp_ / "cache", "--json"});
  ASSERT_TRUE(resumed.exited_ok()) << resumed.err << resumed.out;
  EXPECT_EQ(Listing("crash")["crash.bin"], FileSha256Hex(tmp_ / "crash.bin"));
  EXPECT_EQ(Stored(), dialect_ == "aplos" ? 1 : 3) << "each part stored exactly once";
  if (dialect_ == "sbg") {
    EXPECT_EQ(CountLog("POST", "/part", 204), 3) << "each part reported exactly once";
  }
  if (dialect_ == "aplos" && point == "after_presign") {
    EXPECT_EQ(Begins(), 2) << "a form cannot be renewed: one new presign";
  } else {
    EXPECT_EQ(Begins(), 1) << "the same job throughout";
  }
  EXPECT_TRUE(std::filesystem::is_empty(tmp_ / "cache/data"));
}

INSTANTIATE_TEST_SUITE_P(Points, CrashTest,
                         ::testing::Combine(::testing::Values("ingest", "sbg", "aplos"),
                                            ::testing::Values("after_presign", "after_part:2", "before_complete",
                                                              "after_complete")),
                         [](const auto& info) {
                           std::string n = std::string(std::get<0>(info.param)) + "_" + std::get<1>(info.param);
                           for (char& c : n) {
                             if (c == ':') c = '_';
                           }
                           return n;
                         });

TEST_P(MultipartUploadTest, ExternalKillNineMidPartsThenResume) {
  Restart({"--max-bytes-per-sec", "8MiB"});
  WriteRandomFile(tmp_ / "k.bin", 40 * kMiB, 9);  // 5 parts, about 5 s through the throttle
  std::vector<std::string> argv = {BinDir() + "/ingestfs", "upload"};
  auto args = Base("kill");
  args.insert(args.end(), {"--parallel", "1", tmp_ / "k.bin"});
  argv.insert(argv.end(), args.begin(), args.end());
  Child child;
  ASSERT_TRUE(child.Start(argv, tmp_ / "k.stderr", {std::string("INGESTFS_TOKEN=") + ServerProcess::kToken}));
  for (int i = 0; i < 300 && CountLog("PUT", "/ingest/staging/", 200) < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GE(CountLog("PUT", "/ingest/staging/", 200), 2);
  ::kill(child.pid(), SIGKILL);
  child.Wait(std::chrono::seconds(10));
  RunResult resumed = RunUpload(tmp_, {"--resume", "--cache-dir", tmp_ / "cache"});
  ASSERT_TRUE(resumed.exited_ok()) << resumed.err;
  EXPECT_EQ(Listing("kill")["k.bin"], FileSha256Hex(tmp_ / "k.bin"));
  int puts = CountLog("PUT", "/ingest/staging/", 200);
  EXPECT_GE(puts, 5);
  EXPECT_LE(puts, 6) << "at most the part in flight at the kill is sent twice";
}

TEST(UploadServerDown, WaitsAndCompletesWhenTheServerIsBack) {
  TempDir tmp;
  int port;
  {
    ServerProcess probe({{}, tmp / "data", 0});
    ASSERT_TRUE(probe.ok());
    port = probe.port();
  }  // the server is down now
  WriteRandomFile(tmp / "f.bin", 10 * kMiB, 3);
  std::vector<std::string> argv = {BinDir() + "/ingestfs", "upload", "--api",
                                   "http://127.0.0.1:" + std::to_string(port) + "/api", "--dataset", "down",
                                   "--cache-dir", tmp / "cache", tmp / "f.bin"};
  Child child;
  ASSERT_TRUE(child.Start(argv, tmp / "u.stderr", {std::string("INGESTFS_TOKEN=") + ServerProcess::kToken}));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_TRUE(child.running());
  ServerProcess back({{}, tmp / "data", port});
  ASSERT_TRUE(back.ok());
  int status = child.Wait(std::chrono::seconds(90));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  Api api(back.api(), ServerProcess::kToken);
  auto doc = json::Parse(api.Call("GET", "/datasets").body, "datasets");
  json::Document files = api.Files((*doc)["items"][0]["id"].GetString());
  EXPECT_EQ(std::string(files["items"][0]["sha256"].GetString()), FileSha256Hex(tmp / "f.bin"));
}

TEST(UploadErrors, PermanentErrorStopsWithTheServersMessage) {
  ServerProcess server({{"--readonly-token", "viewer-token"}, "", 0});
  ASSERT_TRUE(server.ok());
  TempDir tmp;
  WriteRandomFile(tmp / "f", 1000, 1);
  Api admin(server.api(), ServerProcess::kToken);
  ASSERT_FALSE(admin.CreateDataset("ro").empty());
  RunResult r = RunUpload(tmp, {"--api", server.api(), "--dataset", "ro", "--cache-dir", tmp / "cache", "--json",
                                tmp / "f"},
                          {}, "viewer-token");
  EXPECT_EQ(r.exit_code(), 1) << r.err;
  EXPECT_NE(r.err.find("ro/f: failed: presign of f: HTTP 403"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("read-only"), std::string::npos) << r.err;
  auto doc = json::Parse(r.out, "summary");
  ASSERT_TRUE(doc.ok()) << r.out;
  EXPECT_EQ(std::string((*doc)["files"][0]["status"].GetString()), "failed");
  // The journal keeps it; --resume reports it again until --retry-failed with a good token.
  RunResult again = RunUpload(tmp, {"--resume", "--cache-dir", tmp / "cache"});
  EXPECT_EQ(again.exit_code(), 1);
  RunResult fixed = RunUpload(tmp, {"--resume", "--retry-failed", "--cache-dir", tmp / "cache"});
  EXPECT_TRUE(fixed.exited_ok()) << fixed.err;
}

TEST(UploadErrors, BadInputIsAUsageErrorBeforeAnythingIsSent) {
  TempDir tmp;
  WriteRandomFile(tmp / "f", 10, 1);
  auto code = [&](std::vector<std::string> args, const std::string& token, const std::string& want) {
    std::vector<std::string> argv = {BinDir() + "/ingestfs", "upload"};
    argv.insert(argv.end(), args.begin(), args.end());
    Child c;
    std::vector<std::string> env;
    if (!token.empty()) env.push_back("INGESTFS_TOKEN=" + token);
    else env.push_back("INGESTFS_TOKEN=");
    c.Start(argv, tmp / "e.txt", env);
    int st = c.Wait(std::chrono::seconds(20));
    std::ifstream in(tmp / "e.txt");
    std::string err((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_NE(err.find(want), std::string::npos) << err;
    std::filesystem::remove(tmp / "e.txt");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  std::string api = "http://127.0.0.1:9/api";
  EXPECT_EQ(code({"--api", api, "--dataset", "d", tmp / "f"}, "", "no token"), 2);
  EXPECT_EQ(code({"--api", api, "--dataset", "a/b", tmp / "f"}, "t", "contains '/'"), 2);
  EXPECT_EQ(code({"--api", api, "--dataset", "d", "--as", "x/../y", tmp / "f"}, "t", "'..'"), 2);
  EXPECT_EQ(code({"--api", api, "--dataset", "d", tmp / "missing"}, "t", "missing"), 2);
  EXPECT_EQ(code({"--api", "ftp://x", "--dataset", "d", tmp / "f"}, "t", "http://"), 2);
  EXPECT_EQ(code({"--api", api, "--dataset", "d", "--bogus", tmp / "f"}, "t", "unknown option"), 2);
}

}  // namespace
}  // namespace ingestfs::testing

namespace ingestfs::testing {
namespace {

TEST(UploadProgress, LiveLineOnATerminalQuietOtherwise) {
  // The built-in store even in a run over an external one: the line needs the upload slowed by
  // the data plane's throttle to show a rate and an estimate (RGW took 24 MiB in 0.2 s).
  ServerProcess server({{"--max-bytes-per-sec", "16MiB"}, "", 0, true});
  ASSERT_TRUE(server.ok());
  TempDir tmp;
  WriteRandomFile(tmp / "p.bin", 24 * kMiB, 8);
  // On a terminal (a pty made by script(1)): a live line with rate and ETA, then a final line.
  std::string cmd = "INGESTFS_TOKEN=" + std::string(ServerProcess::kToken) + " script -qec '" + BinDir() +
                    "/ingestfs upload --api " + server.api() + " --dataset tty --cache-dir " + tmp / "c1" + " " +
                    tmp / "p.bin" + "' /dev/null > " + tmp / "tty.out";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream in(tmp / "tty.out");
  std::string tty((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(tty.find("MiB/s"), std::string::npos) << tty;
  EXPECT_NE(tty.find("ETA"), std::string::npos) << tty;
  EXPECT_NE(tty.find("tty/p.bin"), std::string::npos) << tty;
  EXPECT_NE(tty.find("confirmed in"), std::string::npos) << tty;
  EXPECT_NE(tty.find("copying into the cache: file 1 of 1, p.bin"), std::string::npos) << tty;
  EXPECT_NE(tty.find("ingestfs upload: 1 of 1 file(s) confirmed, 24.0 MiB in "), std::string::npos) << tty;
  // Many files: an overall line and a summary, not a line per file.
  std::string many;
  for (int i = 0; i < 30; ++i) {
    std::string name = "s" + std::to_string(i) + ".csv";
    std::ofstream(tmp / name) << "row " << i << "\n";
    many += " " + tmp / name;
  }
  cmd = "INGESTFS_TOKEN=" + std::string(ServerProcess::kToken) + " script -qec '" + BinDir() + "/ingestfs upload --api " +
        server.api() + " --dataset many --cache-dir " + tmp / "c3" + many + "' /dev/null > " + tmp / "many.out";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream in2(tmp / "many.out");
  std::string lots((std::istreambuf_iterator<char>(in2)), std::istreambuf_iterator<char>());
  EXPECT_EQ(lots.find("done  "), std::string::npos) << "no line per file for 30 files: " << lots;
  EXPECT_NE(lots.find("ingestfs upload: 30 of 30 file(s) confirmed"), std::string::npos) << lots;
  // Not a terminal: nothing at all on success.
  RunResult quiet = RunUpload(tmp, {"--api", server.api(), "--dataset", "tty", "--cache-dir", tmp / "c2", tmp / "p.bin"});
  EXPECT_TRUE(quiet.exited_ok());
  EXPECT_EQ(quiet.out, "");
  EXPECT_EQ(quiet.err, "");
}

}  // namespace
}  // namespace ingestfs::testing
