// ingestfs-server over real HTTP on 127.0.0.1: every endpoint of the `ingest` dialect, its
// documented errors, the S3 data plane, restarts, concurrency and fault injection.
#include <gtest/gtest.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <thread>

#include "common/crypto.h"
#include "common/file_util.h"
#include "common/json.h"
#include "common/strings.h"
#include "common/time_util.h"
#include "tests/support/http.h"

namespace ingestfs::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;

std::string Str(const json::Value& v, const char* f) {
  auto s = json::GetString(v, f);
  return s.ok() ? *s : std::string("<missing " + std::string(f) + ">");
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.ok()) << "server did not start"; }
  ServerProcess server_;
  Api api_{server_.api(), ServerProcess::kToken};
};

// What only the built-in store does (its own keys, throttle and platform quirks), even in a run
// over an external store.
class BuiltinStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.ok()) << "server did not start"; }
  ServerProcess server_{ServerProcess::Options{{}, "", 0, true}};
  Api api_{server_.api(), ServerProcess::kToken};
};

// Over an external store the store's own words come back; the built-in store's are checked too.
bool OverExternalStore() { return !ServerProcess::ExternalStore().empty(); }

// The listing entry for `name`, or a null value.
json::Document FileEntry(const Api& api, const std::string& ds, const std::string& name) {
  json::Document files = api.Files(ds);
  json::Document out;
  if (!files.IsObject()) return out;
  for (const auto& item : files["items"].GetArray()) {
    if (Str(item, "filename") == name) out.CopyFrom(item, out.GetAllocator());
  }
  return out;
}

std::string Download(const Api& api, const std::string& ds, const std::string& name, const std::string& range = "") {
  HttpResult r = api.Call("GET", "/datasets/" + ds + "/files/download?filename=" + UriEncode(name, false));
  auto doc = json::Parse(r.body, "download");
  if (r.status != 200 || !doc.ok()) return "<no url: " + r.body + ">";
  HttpRequest get;
  get.url = Str(*doc, "url");
  if (!range.empty()) get.headers = {"Range: bytes=" + range};
  HttpResult g = Http(get);
  return g.body;
}

TEST_F(ServerTest, DatasetsCreateGetListAndPage) {
  std::vector<std::string> ids;
  for (const char* name : {"run-1", "run-2", "run-3"}) {
    ids.push_back(api_.CreateDataset(name));
    ASSERT_FALSE(ids.back().empty());
  }
  HttpResult dup = api_.Call("POST", "/datasets", R"({"name":"run-2"})");
  EXPECT_EQ(dup.status, 409);
  EXPECT_NE(dup.body.find("already exists"), std::string::npos);

  HttpResult page = api_.Call("GET", "/datasets?limit=2&offset=1");
  ASSERT_EQ(page.status, 200);
  auto doc = json::Parse(page.body, "list");
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ((*doc)["total"].GetInt(), 3);
  ASSERT_EQ((*doc)["items"].Size(), 2u);
  EXPECT_EQ(Str((*doc)["items"][0], "name"), "run-2");
  EXPECT_EQ(Str((*doc)["items"][1], "name"), "run-3");

  HttpResult one = api_.Call("GET", "/datasets/" + ids[0]);
  ASSERT_EQ(one.status, 200);
  auto ds = json::Parse(one.body, "dataset");
  EXPECT_EQ(Str(*ds, "name"), "run-1");
  EXPECT_EQ(Str(*ds, "id"), ids[0]);
  EXPECT_FALSE(Str(*ds, "created_at").empty());
  EXPECT_EQ(api_.Call("GET", "/datasets/no-such-id").status, 404);
}

TEST_F(ServerTest, ValidationErrorsHaveFastApiShape) {
  struct Case {
    std::string method, path, body, loc_last, type;
  } cases[] = {
      {"POST", "/datasets", R"({"name":"a/b"})", "name", "value_error"},
      {"POST", "/datasets", R"({"nom":"x"})", "name", "missing"},
      {"POST", "/datasets", R"({"name":5})", "name", "string_type"},
      {"POST", "/datasets", R"(not json)", "0", "json_invalid"},
      {"GET", "/datasets?limit=1001", "", "limit", "less_than_equal"},
      {"GET", "/datasets?limit=abc", "", "limit", "int_parsing"},
      {"GET", "/datasets?offset=-1", "", "offset", "greater_than_equal"},
      {"POST", "/ingest/upload/presigned", R"({"dataset_id":"x","filename":"a/../b","file_size":1})", "filename",
       "value_error"},
      {"POST", "/ingest/upload/presigned", R"({"dataset_id":"x","filename":"a","file_size":-1})", "file_size",
       "greater_than_equal"},
      {"POST", "/ingest/upload/presigned", R"({"dataset_id":"x","filename":"a","file_size":"1"})", "file_size",
       "int_type"},
      {"POST", "/ingest/upload/presigned/j/complete", R"({"parts":[{"etag":1,"part_number":1}]})", "etag",
       "string_type"},
  };
  for (const Case& c : cases) {
    HttpResult r = api_.Call(c.method, c.path, c.body);
    ASSERT_EQ(r.status, 422) << c.path << " " << c.body << " -> " << r.body;
    auto doc = json::Parse(r.body, "422");
    ASSERT_TRUE(doc.ok());
    const json::Value& d = (*doc)["detail"][0];
    EXPECT_EQ(Str(d, "type"), c.type) << r.body;
    EXPECT_FALSE(Str(d, "msg").empty());
    const json::Value& loc = d["loc"];
    EXPECT_EQ(std::string(loc[loc.Size() - 1].GetString()), c.loc_last) << r.body;
    EXPECT_TRUE(d.HasMember("input"));
    EXPECT_TRUE(d.HasMember("ctx"));
  }
}

// A client's JSON body nested a million levels deep crashed the server (stack overflow in the
// recursive parser): it is refused as invalid JSON and the server keeps serving.
TEST_F(ServerTest, AMillionLevelsDeepBodyIsRefusedAndTheServerStaysUp) {
  for (const std::string& open : {std::string("["), std::string("{\"name\":")}) {
    std::string deep;
    for (int i = 0; i < 1000000; ++i) deep += open;
    HttpResult r = api_.Call("POST", "/datasets", deep);
    EXPECT_EQ(r.status, 422) << r.error << " " << r.body.substr(0, 300);
    EXPECT_NE(r.body.find("json_invalid"), std::string::npos) << r.body.substr(0, 300);
    ASSERT_EQ(api_.Call("GET", "/datasets").status, 200) << "the server is still up";
  }
}

TEST_F(ServerTest, AuthErrors) {
  HttpRequest req;
  req.url = server_.api() + "/datasets";
  HttpResult none = Http(req);
  EXPECT_EQ(none.status, 401);
  EXPECT_NE(none.body.find("\"detail\""), std::string::npos);
  req.headers = {"Authorization: Bearer wrong"};
  EXPECT_EQ(Http(req).status, 401);
  req.url = server_.api() + "/health";
  req.headers = {};
  EXPECT_EQ(Http(req).status, 200);
}

TEST(ServerAuth, ReadOnlyTokenIsForbiddenToWrite) {
  ServerProcess server({{"--readonly-token", "viewer"}, "", 0});
  ASSERT_TRUE(server.ok());
  Api viewer(server.api(), "viewer");
  EXPECT_EQ(viewer.Call("GET", "/datasets").status, 200);
  HttpResult w = viewer.Call("POST", "/datasets", R"({"name":"x"})");
  EXPECT_EQ(w.status, 403);
  EXPECT_NE(w.body.find("read-only"), std::string::npos);
}

TEST_F(ServerTest, UploadsAreByteExactAtEverySizeBoundary) {
  std::string ds = api_.CreateDataset("sizes");
  // 0 B, 1 B, exactly the single-part limit, one byte over (two parts), parts + remainder.
  std::vector<uint64_t> sizes = {0, 1, 8 * kMiB, 8 * kMiB + 1, 3 * 8 * kMiB + 12345};
  for (uint64_t size : sizes) {
    std::string name = "plate1/f" + std::to_string(size) + ".bin";
    std::string data = RandomBytes(size, size + 7);
    json::Document job = UploadThroughApi(api_, ds, name, data);
    ASSERT_TRUE(job.IsObject()) << "upload of " << size << " bytes failed";
    EXPECT_EQ(Str(job, "status"), "completed") << json::ToString(job);
    EXPECT_EQ(Str(job, "sha256"), Sha256Hex(data));
    json::Document entry = FileEntry(api_, ds, name);
    ASSERT_TRUE(entry.IsObject()) << name;
    EXPECT_EQ(Str(entry, "sha256"), Sha256Hex(data)) << size;
    EXPECT_EQ(entry["size"].GetUint64(), size);
    EXPECT_EQ(entry["version"].GetInt(), 1);
    EXPECT_EQ(Sha256Hex(Download(api_, ds, name)), Sha256Hex(data)) << size;
    std::string etag = Str(entry, "etag");
    if (size > 8 * kMiB) {
      EXPECT_NE(etag.find('-'), std::string::npos) << etag;  // multipart ETag
    } else {
      EXPECT_EQ(etag, "\"" + HexEncode(Md5(data)) + "\"");
    }
  }
}

TEST_F(ServerTest, PresignPlansPartsFromFileSize) {
  std::string ds = api_.CreateDataset("plan");
  HttpResult single = api_.Presign(ds, "s", 8 * kMiB);
  auto s = json::Parse(single.body, "presign");
  ASSERT_EQ(single.status, 200) << single.body;
  EXPECT_EQ((*s)["urls"].Size(), 1u);
  EXPECT_TRUE((*s)["upload_id"].IsNull());
  HttpResult multi = api_.Presign(ds, "m", 20 * kMiB + 1);
  auto m = json::Parse(multi.body, "presign");
  ASSERT_EQ(multi.status, 200);
  EXPECT_EQ((*m)["urls"].Size(), 3u);
  EXPECT_TRUE((*m)["upload_id"].IsString());
  EXPECT_EQ((*m)["part_size"].GetInt64(), static_cast<int64_t>(8 * kMiB));
  EXPECT_NE(std::string((*m)["urls"][2].GetString()).find("partNumber=3"), std::string::npos);
  // A huge file still fits in 10,000 parts.
  HttpResult huge = api_.Presign(ds, "h", 200ULL << 30);
  auto h = json::Parse(huge.body, "presign");
  ASSERT_EQ(huge.status, 200);
  EXPECT_LE((*h)["urls"].Size(), 10000u);
  EXPECT_GE((*h)["part_size"].GetInt64() * static_cast<int64_t>((*h)["urls"].Size()), 200LL << 30);
  EXPECT_EQ(api_.Presign("no-such-dataset", "x", 1).status, 404);
}

TEST_F(ServerTest, OverwriteGoesThroughReuploadAndBumpsVersion) {
  std::string ds = api_.CreateDataset("over");
  std::string v1 = RandomBytes(1000, 1);
  std::string v2 = RandomBytes(9 * kMiB, 2);
  ASSERT_EQ(Str(UploadThroughApi(api_, ds, "a/x.tif", v1), "status"), "completed");
  HttpResult again = api_.Presign(ds, "a/x.tif", 5);
  EXPECT_EQ(again.status, 409);
  EXPECT_NE(again.body.find("reupload"), std::string::npos);
  EXPECT_EQ(api_.Reupload(ds, "a/missing.tif", 5).status, 404);
  json::Document job = UploadThroughApi(api_, ds, "a/x.tif", v2, /*reupload=*/true);
  EXPECT_EQ(Str(job, "status"), "completed");
  json::Document entry = FileEntry(api_, ds, "a/x.tif");
  EXPECT_EQ(entry["version"].GetInt(), 2);
  EXPECT_EQ(Str(entry, "sha256"), Sha256Hex(v2));
  EXPECT_EQ(Sha256Hex(Download(api_, ds, "a/x.tif")), Sha256Hex(v2));
}

TEST(ServerProcessing, NewVersionIsListedOnlyOnceTheJobCompleted) {
  ServerProcess server({{"--processing-delay", "1.5"}, "", 0});
  ASSERT_TRUE(server.ok());
  Api api(server.api(), ServerProcess::kToken);
  std::string ds = api.CreateDataset("slow");
  std::string v1 = RandomBytes(100, 1), v2 = RandomBytes(200, 2);
  ASSERT_EQ(Str(UploadThroughApi(api, ds, "f", v1), "status"), "completed");
  HttpResult p = api.Reupload(ds, "f", v2.size());
  auto doc = json::Parse(p.body, "presign");
  std::string job = Str(*doc, "job_id");
  HttpRequest put{"PUT", (*doc)["urls"][0].GetString(), {}, v2, "", true};
  ASSERT_EQ(Http(put).status, 200);
  ASSERT_EQ(api.Complete(job, {}).status, 200);
  // During processing the job says so, and the listing still shows version 1.
  HttpResult st = api.Call("GET", "/ingest/jobs/" + job);
  auto sd = json::Parse(st.body, "job");
  std::string status = Str(*sd, "status");
  EXPECT_TRUE(status == "pending" || status == "processing") << status;
  EXPECT_TRUE((*sd)["sha256"].IsNull());
  EXPECT_EQ(FileEntry(api, ds, "f")["version"].GetInt(), 1);
  EXPECT_EQ(Sha256Hex(Download(api, ds, "f")), Sha256Hex(v1));
  json::Document done = api.WaitJob(job);
  EXPECT_EQ(Str(done, "status"), "completed");
  EXPECT_EQ(Str(done, "filename"), "f");
  EXPECT_EQ(done["size"].GetInt(), 200);
  EXPECT_EQ(FileEntry(api, ds, "f")["version"].GetInt(), 2);
}

TEST_F(ServerTest, CompleteRejectsMissingOrWrongPartsAndIsIdempotent) {
  std::string ds = api_.CreateDataset("complete");
  std::string data = RandomBytes(17 * kMiB, 3);
  HttpResult p = api_.Presign(ds, "big.bin", data.size());
  auto doc = json::Parse(p.body, "presign");
  std::string job = Str(*doc, "job_id");
  ASSERT_EQ((*doc)["urls"].Size(), 3u);
  std::vector<std::pair<int, std::string>> parts;
  for (int i = 0; i < 3; ++i) {
    HttpRequest put{"PUT", (*doc)["urls"][i].GetString(), {}, data.substr(i * 8 * kMiB, 8 * kMiB), "", true};
    HttpResult r = Http(put);
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.headers["etag"], "\"" + HexEncode(Md5(put.body)) + "\"");
    parts.emplace_back(i + 1, r.headers["etag"]);
  }
  HttpResult missing = api_.Complete(job, {parts[0], parts[1]});
  EXPECT_EQ(missing.status, 400);
  EXPECT_NE(missing.body.find("InvalidPart"), std::string::npos) << missing.body;
  auto wrong = parts;
  wrong[1].second = "\"00000000000000000000000000000000\"";
  HttpResult bad = api_.Complete(job, wrong);
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("InvalidPart"), std::string::npos);
  auto swapped = parts;
  std::swap(swapped[0], swapped[1]);
  EXPECT_EQ(api_.Complete(job, swapped).status, 400);
  EXPECT_EQ(api_.Complete("no-such-job", parts).status, 404);
  HttpResult ok = api_.Complete(job, parts);
  ASSERT_EQ(ok.status, 200) << ok.body;
  auto okd = json::Parse(ok.body, "complete");
  EXPECT_EQ(Str(*okd, "status"), "pending");
  EXPECT_EQ(Str(*okd, "job_id"), job);
  HttpResult twice = api_.Complete(job, parts);
  EXPECT_EQ(twice.status, 409);
  EXPECT_NE(twice.body.find("already completed"), std::string::npos);
  EXPECT_EQ(Str(api_.WaitJob(job), "sha256"), Sha256Hex(data));
}

TEST_F(ServerTest, CompleteOfASinglePutThatNeverHappenedIs400) {
  std::string ds = api_.CreateDataset("nothing");
  HttpResult p = api_.Presign(ds, "f", 10);
  auto doc = json::Parse(p.body, "presign");
  HttpResult c = api_.Complete(Str(*doc, "job_id"), {});
  EXPECT_EQ(c.status, 400);
  EXPECT_NE(c.body.find("InvalidPart"), std::string::npos);
}

TEST_F(ServerTest, DataPlaneErrorsAreS3Xml) {
  std::string ds = api_.CreateDataset("dp");
  std::string data = RandomBytes(9 * kMiB, 4);
  HttpResult p = api_.Presign(ds, "f.bin", data.size());
  auto doc = json::Parse(p.body, "presign");
  std::string url1 = (*doc)["urls"][0].GetString();
  // Tampered signature.
  std::string tampered = url1;
  tampered[tampered.size() - 1] = tampered.back() == '0' ? '1' : '0';
  HttpResult t = Http({"PUT", tampered, {}, data.substr(0, 8 * kMiB), "", true});
  EXPECT_EQ(t.status, 403);
  EXPECT_NE(t.body.find("<Code>SignatureDoesNotMatch</Code>"), std::string::npos) << t.body;
  // Wrong Content-MD5.
  HttpResult md = Http({"PUT", url1, {"Content-MD5: " + Base64Encode(Md5("other"))}, data.substr(0, 8 * kMiB), "", true});
  EXPECT_EQ(md.status, 400);
  EXPECT_NE(md.body.find("<Code>BadDigest</Code>"), std::string::npos) << md.body;
  // Unknown multipart upload.
  std::string other = url1;
  size_t u = other.find("uploadId=");
  ASSERT_NE(u, std::string::npos);
  other.replace(u + 9, 4, "ffff");  // the signature then fails first, as S3 would
  EXPECT_EQ(Http({"PUT", other, {}, "x", "", true}).status, 403);
  // Unsigned and unknown keys.
  EXPECT_EQ(Http({"GET", server_.base_url() + "/ingest/nothing", {}, "", "", false}).status, 403);
  EXPECT_EQ(Http({"GET", server_.base_url() + "/otherbucket/k", {}, "", "", false}).status, 404);
}

TEST_F(ServerTest, AbortFreesTheUpload) {
  std::string ds = api_.CreateDataset("abort");
  std::string data = RandomBytes(9 * kMiB, 5);
  HttpResult p = api_.Presign(ds, "f", data.size());
  auto doc = json::Parse(p.body, "presign");
  std::string job = Str(*doc, "job_id");
  std::string url1 = (*doc)["urls"][0].GetString();
  ASSERT_EQ(Http({"PUT", url1, {}, data.substr(0, 8 * kMiB), "", true}).status, 200);
  EXPECT_EQ(api_.Call("DELETE", "/ingest/upload/presigned/" + job).status, 204);
  HttpResult after = Http({"PUT", url1, {}, data.substr(0, 8 * kMiB), "", true});
  EXPECT_EQ(after.status, 404);
  EXPECT_NE(after.body.find("NoSuchUpload"), std::string::npos);
  auto st = json::Parse(api_.Call("GET", "/ingest/jobs/" + job).body, "job");
  EXPECT_EQ(Str(*st, "status"), "failed");
  EXPECT_EQ(api_.Complete(job, {}).status, 409);
  EXPECT_EQ(api_.Call("DELETE", "/ingest/upload/presigned/no-such-job").status, 404);
  EXPECT_FALSE(FileEntry(api_, ds, "f").IsObject());
}

TEST_F(ServerTest, DownloadPresignAndRange) {
  std::string ds = api_.CreateDataset("dl");
  std::string data = RandomBytes(100000, 6);
  ASSERT_EQ(Str(UploadThroughApi(api_, ds, "r.bin", data), "status"), "completed");
  EXPECT_EQ(Download(api_, ds, "r.bin", "1000-1999"), data.substr(1000, 1000));
  EXPECT_EQ(Download(api_, ds, "r.bin", "99990-"), data.substr(99990));
  EXPECT_EQ(api_.Call("GET", "/datasets/" + ds + "/files/download?filename=nope").status, 404);
  EXPECT_EQ(api_.Call("GET", "/datasets/" + ds + "/files/download").status, 422);
}

TEST(ServerExpiry, ExpiredUrlIs403RequestHasExpired) {
  ServerProcess server({{"--url-ttl", "1"}, "", 0});
  ASSERT_TRUE(server.ok());
  Api api(server.api(), ServerProcess::kToken);
  std::string ds = api.CreateDataset("exp");
  auto doc = json::Parse(api.Presign(ds, "f", 3).body, "presign");
  std::string url = (*doc)["urls"][0].GetString();
  std::this_thread::sleep_for(std::chrono::milliseconds(2200));
  HttpResult r = Http({"PUT", url, {}, "abc", "", true});
  EXPECT_EQ(r.status, 403);
  // RGW leaves the message empty: clients know expiry from the URL's own X-Amz-Date + Expires.
  EXPECT_NE(r.body.find(OverExternalStore() ? "<Code>AccessDenied</Code>"
                                            : "<Code>AccessDenied</Code><Message>Request has expired</Message>"),
            std::string::npos)
      << r.body;
}

TEST_F(ServerTest, EightConcurrentClientsAllByteExact) {
  std::string ds = api_.CreateDataset("conc");
  std::vector<std::string> datas;
  for (int i = 0; i < 8; ++i) datas.push_back(RandomBytes(12 * kMiB + i * 1000, 100 + i));
  std::vector<std::string> results(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      json::Document job = UploadThroughApi(api_, ds, "c/" + std::to_string(i), datas[i]);
      results[i] = job.IsObject() ? Str(job, "sha256") : "failed";
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(results[i], Sha256Hex(datas[i])) << i;
    EXPECT_EQ(Str(FileEntry(api_, ds, "c/" + std::to_string(i)), "sha256"), Sha256Hex(datas[i]));
  }
}

TEST(ServerRestart, UploadCompletesAcrossARestartBetweenPresignAndComplete) {
  TempDir dir;
  std::string data = RandomBytes(17 * kMiB, 9);
  std::string ds, job, url3;
  std::vector<std::pair<int, std::string>> parts;
  int port = 0;
  {
    ServerProcess first({{}, dir.path() + "/data", 0});
    ASSERT_TRUE(first.ok());
    port = first.port();
    Api api(first.api(), ServerProcess::kToken);
    ds = api.CreateDataset("restart");
    auto doc = json::Parse(api.Presign(ds, "f.bin", data.size()).body, "presign");
    job = Str(*doc, "job_id");
    for (int i = 0; i < 2; ++i) {
      HttpResult r = Http({"PUT", (*doc)["urls"][i].GetString(), {}, data.substr(i * 8 * kMiB, 8 * kMiB), "", true});
      ASSERT_EQ(r.status, 200);
      parts.emplace_back(i + 1, r.headers["etag"]);
    }
    url3 = (*doc)["urls"][2].GetString();
    int status = first.Stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "SIGTERM should stop the server cleanly";
  }
  ServerProcess second({{}, dir.path() + "/data", port});
  ASSERT_TRUE(second.ok()) << "restart on port " << port;
  Api api(second.api(), ServerProcess::kToken);
  // The last part goes to the URL presigned before the restart.
  HttpResult r = Http({"PUT", url3, {}, data.substr(16 * kMiB), "", true});
  ASSERT_EQ(r.status, 200) << r.body;
  parts.emplace_back(3, r.headers["etag"]);
  ASSERT_EQ(api.Complete(job, parts).status, 200);
  EXPECT_EQ(Str(api.WaitJob(job), "status"), "completed");
  EXPECT_EQ(Str(FileEntry(api, ds, "f.bin"), "sha256"), Sha256Hex(data));
}

// A raw TCP connection to 127.0.0.1:port (-1 on failure), for requests on one kept-alive
// connection.
int ConnectTo(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}
constexpr char kKeepAliveHealth[] = "GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n";

// One whole HTTP answer from `fd` (headers, then Content-Length bytes); "" when the connection
// closes first.
std::string ReadAnswer(int fd) {
  std::string got;
  char buf[2048];
  for (;;) {
    size_t end = got.find("\r\n\r\n");
    if (end != std::string::npos) {
      std::string head = ToLower(got.substr(0, end));
      size_t cl = head.find("content-length:");
      size_t want = end + 4 + (cl == std::string::npos ? 0 : std::stoul(head.substr(cl + 15)));
      if (got.size() >= want) return got.substr(0, want);
    }
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) return got;
    got.append(buf, static_cast<size_t>(n));
  }
}

// A connection to 127.0.0.1:port on which one health request was answered (`first`), kept open.
int KeptAliveConnection(int port, std::string* first) {
  int fd = ConnectTo(port);
  if (fd < 0) return -1;
  std::string req = kKeepAliveHealth;
  if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return -1;
  }
  *first = ReadAnswer(fd);
  return fd;
}

// A client that keeps its connection open (every mount does) must not hold SIGTERM up: the
// server stops by itself, not by the harness's SIGKILL 10 s later.
TEST(ServerRestart, SigtermStopsTheServerWhileAClientKeepsItsConnectionOpen) {
  ServerProcess server;
  ASSERT_TRUE(server.ok());
  std::string first;
  int fd = KeptAliveConnection(server.port(), &first);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(first.rfind("HTTP/1.1 200", 0), 0u) << first;  // answered; the connection stays open, idle
  auto start = std::chrono::steady_clock::now();
  int status = server.Stop();
  auto took = std::chrono::steady_clock::now() - start;
  ::close(fd);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "SIGTERM did not stop it within 10 s";
  // A bound the issue sets for a restart (a stop waits for idle keep-alive connections to time
  // out), not a speed figure: two seconds is twice the keep-alive timeout.
  EXPECT_LT(took, std::chrono::seconds(2)) << "stopping took "
                                           << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
}

// The token is given by file or environment, never needed in argv where every user sees it.
TEST(ServerAuth, TokenFromTheEnvironmentOrAFileAndNoneIsAClearError) {
  TempDir tmp;
  Child none;
  ASSERT_TRUE(none.Start({BinDir() + "/ingestfs-server", "--listen", "127.0.0.1:0", "--data", tmp / "d"},
                         tmp / "none.err"));
  EXPECT_NE(none.Wait(std::chrono::seconds(10)), -1);
  std::string err = ReadFileToString(tmp / "none.err").value_or("");
  EXPECT_NE(err.find("no token"), std::string::npos) << err;
  std::ofstream(tmp / "tokens") << "# lab tokens\nfile-token-1\n";
  Child server;
  ASSERT_TRUE(server.Start({BinDir() + "/ingestfs-server", "--listen", "127.0.0.1:0", "--data", tmp / "d",
                            "--token-file", tmp / "tokens"},
                           tmp / "server.err", {"INGESTFS_SERVER_TOKEN=env-token-2"}));
  std::string line = server.ReadLine(std::chrono::seconds(10));
  ASSERT_EQ(line.rfind("listening on ", 0), 0u) << line;
  std::string api = line.substr(std::string("listening on ").size()) + "/api";
  EXPECT_EQ(Api(api, "file-token-1").Call("GET", "/datasets").status, 200);
  EXPECT_EQ(Api(api, "env-token-2").Call("GET", "/datasets").status, 200);
  EXPECT_EQ(Api(api, "other").Call("GET", "/datasets").status, 401);
}

// The external store's options are checked together, before anything starts; a store that
// does not answer stops the server with the reason (tests against a real one: s3_store_test).
TEST(ServerExternalStore, IncompleteOrUnreachableStoreIsAClearError) {
  TempDir tmp;
  std::ofstream(tmp / "secret") << "s3-secret-never-shown\n";
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {BinDir() + "/ingestfs-server", "--listen", "127.0.0.1:0", "--data", tmp / "d"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    Child c;
    c.Start(argv, tmp / "err", {"INGESTFS_SERVER_TOKEN=t"});
    int st = c.Wait(std::chrono::seconds(30));
    return std::make_pair(WIFEXITED(st) ? WEXITSTATUS(st) : -1, ReadFileToString(tmp / "err").value_or(""));
  };
  auto [c1, e1] = run({"--s3-bucket", "b"});
  EXPECT_EQ(c1, 2);
  EXPECT_NE(e1.find("need --s3-endpoint"), std::string::npos) << e1;
  auto [c2, e2] = run({"--s3-endpoint", "127.0.0.1:7480", "--s3-bucket", "b"});
  EXPECT_EQ(c2, 2);
  EXPECT_NE(e2.find("is not an http:// or https:// URL"), std::string::npos) << e2;
  auto [c3, e3] = run({"--s3-endpoint", "http://127.0.0.1:9", "--s3-bucket", "b", "--s3-access-key", "k"});
  EXPECT_EQ(c3, 2);
  EXPECT_NE(e3.find("--s3-secret-file"), std::string::npos) << e3;
  // Nothing listens on port 9 of loopback: exit 1, the store named, the secret not.
  auto [c4, e4] = run({"--s3-endpoint", "http://127.0.0.1:9", "--s3-bucket", "b", "--s3-access-key", "k",
                       "--s3-secret-file", tmp / "secret"});
  EXPECT_EQ(c4, 1);
  EXPECT_NE(e4.find("the S3 store: looking at bucket b at http://127.0.0.1:9"), std::string::npos) << e4;
  EXPECT_EQ(e4.find("s3-secret-never-shown"), std::string::npos) << e4;
}

// Two servers on one data dir would each write their own view of the catalogue: the second is
// refused, by name, until the first has exited.
TEST(ServerRestart, TwoServersNeverShareADataDir) {
  TempDir dir;
  ServerProcess first({{}, dir.path() + "/data", 0});
  ASSERT_TRUE(first.ok());
  ServerProcess second({{}, dir.path() + "/data", 0});
  EXPECT_FALSE(second.ok());
  auto err = ReadFileToString(second.stderr_path());
  ASSERT_TRUE(err.ok());
  EXPECT_NE(err->find("is in use by another ingestfs-server (pid " + std::to_string(first.pid()) + ")"),
            std::string::npos) << *err;
  int port = first.port();
  EXPECT_EQ(first.Stop(), 0);
  ServerProcess third({{}, dir.path() + "/data", port});
  EXPECT_TRUE(third.ok()) << "the data dir is free once the first has exited";
}

// A request that reaches a stopping server on a connection it kept open is refused (503, and the
// connection closed), not served: a restarted server would never hear of what it changed (a job
// whose complete was answered 200 stayed awaiting_upload for good).
TEST(ServerRestart, AStoppingServerRefusesRequestsOnConnectionsItKeptOpen) {
  ServerProcess server;
  ASSERT_TRUE(server.ok());
  std::string first;
  int fd = KeptAliveConnection(server.port(), &first);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(first.rfind("HTTP/1.1 200", 0), 0u) << first;
  std::string req = kKeepAliveHealth;
  ASSERT_EQ(::kill(server.pid(), SIGTERM), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(::write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  std::string answer = ReadAnswer(fd);
  EXPECT_TRUE(answer.empty() || answer.rfind("HTTP/1.1 503", 0) == 0) << answer;
  ::close(fd);
  EXPECT_EQ(server.Stop(), 0);
}

TEST(ServerRestart, JobsLeftPendingAreProcessedAfterRestart) {
  TempDir dir;
  std::string ds, job;
  std::string data = RandomBytes(5000, 11);
  {
    ServerProcess first({{"--processing-delay", "30"}, dir.path() + "/data", 0});
    ASSERT_TRUE(first.ok());
    Api api(first.api(), ServerProcess::kToken);
    ds = api.CreateDataset("pending");
    auto doc = json::Parse(api.Presign(ds, "p", data.size()).body, "presign");
    job = Str(*doc, "job_id");
    ASSERT_EQ(Http({"PUT", (*doc)["urls"][0].GetString(), {}, data, "", true}).status, 200);
    ASSERT_EQ(api.Complete(job, {}).status, 200);
    first.Kill();  // mid-processing, no clean shutdown
  }
  ServerProcess second({{}, dir.path() + "/data", 0});
  ASSERT_TRUE(second.ok());
  Api api(second.api(), ServerProcess::kToken);
  EXPECT_EQ(Str(api.WaitJob(job), "status"), "completed");
  EXPECT_EQ(Str(FileEntry(api, ds, "p"), "sha256"), Sha256Hex(data));
}

TEST(ServerFaults, FailRateAnswers5xxButHealthStaysUp) {
  ServerProcess server({{"--fail-rate", "1"}, "", 0});
  ASSERT_TRUE(server.ok());
  Api api(server.api(), ServerProcess::kToken);
  int fives = 0;
  for (int i = 0; i < 10; ++i) {
    HttpResult r = api.Call("GET", "/datasets");
    if (r.status == 500 || r.status == 503) ++fives;
    if (r.status == 503) {
      EXPECT_EQ(r.headers["retry-after"], "1");
    }
  }
  EXPECT_EQ(fives, 10);
  EXPECT_EQ(api.Call("GET", "/health").status, 200);
}

TEST(ServerFaults, DropRateCutsResponsesButTheEffectHappens) {
  ServerProcess server({{"--drop-rate", "1"}, "", 0});
  ASSERT_TRUE(server.ok());
  Api api(server.api(), ServerProcess::kToken);
  HttpResult r = api.Call("POST", "/datasets", R"({"name":"dropped"})");
  EXPECT_EQ(r.status, 0) << "the client must see a failed transfer";
  EXPECT_NE(r.curl_code, 0);
  // The dataset was created all the same: a retry gets 409.
  EXPECT_EQ(api.Call("POST", "/datasets", R"({"name":"dropped"})").status, 0);
  bool logged = false;
  for (auto& [m, p, s] : server.AccessLogEntries()) logged |= (m == "POST" && p == "/api/datasets" && s == 409);
  EXPECT_TRUE(logged);
}

TEST(ServerFaults, ThrottleAndDelaySlowTheDataPlane) {
  ServerProcess server({{"--max-bytes-per-sec", "1MiB", "--delay-ms", "300"}, "", 0, true});
  ASSERT_TRUE(server.ok());
  Api api(server.api(), ServerProcess::kToken);
  std::string ds = api.CreateDataset("slow");
  std::string data = RandomBytes(2 * kMiB, 12);
  auto start = std::chrono::steady_clock::now();
  json::Document job = UploadThroughApi(api, ds, "s", data);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(Str(job, "sha256"), Sha256Hex(data));
  // 2 MiB at 1 MiB/s cannot take less than about a second (a functional check, not a target).
  EXPECT_GE(secs, 1.0);
}

TEST_F(ServerTest, AccessLogNamesEndpointsWithoutQueryStrings) {
  std::string ds = api_.CreateDataset("log");
  ASSERT_EQ(Str(UploadThroughApi(api_, ds, "x y.bin", RandomBytes(10, 1)), "status"), "completed");
  auto entries = server_.AccessLogEntries();
  bool presign = false, put = false, complete = false;
  for (auto& [m, p, s] : entries) {
    EXPECT_EQ(p.find('?'), std::string::npos) << p;
    EXPECT_EQ(p.find("X-Amz"), std::string::npos) << p;
    presign |= (m == "POST" && p == "/api/ingest/upload/presigned" && s == 200);
    put |= (m == "PUT" && p.rfind("/ingest/staging/", 0) == 0 && s == 200);
    complete |= (m == "POST" && p.find("/complete") != std::string::npos && s == 200);
  }
  EXPECT_TRUE(presign && put && complete);
}

TEST_F(BuiltinStoreTest, StockS3SdkInteroperates) {
  // boto3 (Debian's python3-boto3) presigns for this endpoint; the server must accept its
  // URLs, and botocore must compute the same signature as the server for the server's URLs.
  std::string ds = api_.CreateDataset("sdk");
  auto doc = json::Parse(api_.Presign(ds, "sdk/ü file.bin", 10).body, "presign");
  std::string server_url = (*doc)["urls"][0].GetString();
  TempDir tmp;
  std::string out = tmp / "out.txt";
  std::string cmd = "/usr/bin/python3 " + SourceDir() + "/tests/integration/s3_sdk_check.py --endpoint " +
                    server_.base_url() + " --server-url '" + server_url + "' > " + out + " 2>&1";
  int rc = std::system(cmd.c_str());
  std::ifstream in(out);
  std::string line;
  std::map<std::string, std::string> said;
  std::string all;
  while (std::getline(in, line)) {
    all += line + "\n";
    size_t sp = line.find(' ');
    if (sp != std::string::npos) said[line.substr(0, sp)] = line.substr(sp + 1);
  }
  ASSERT_EQ(rc, 0) << all;
  ASSERT_EQ(said["server-signature"].size(), 64u) << all;
  EXPECT_EQ(said["server-signature"], said["botocore-signature"]) << all;
  std::string data = RandomBytes(3000, 13);
  HttpResult put = Http({"PUT", said["sdk-put"], {}, data, "", true});
  ASSERT_EQ(put.status, 200) << put.body;
  HttpResult get = Http({"GET", said["sdk-get"], {}, "", "", false});
  ASSERT_EQ(get.status, 200) << get.body;
  EXPECT_EQ(Sha256Hex(get.body), Sha256Hex(data));
  // A presigned POST made by boto3 is accepted, its policy enforced.
  auto fields = json::Parse(said["sdk-post-fields"], "fields");
  ASSERT_TRUE(fields.ok() && fields->IsObject()) << all;
  HttpRequest post;
  post.method = "POST";
  post.url = said["sdk-post-url"];
  post.form = true;
  for (const auto& m : fields->GetObject()) post.form_fields.emplace_back(m.name.GetString(), m.value.GetString());
  post.body = RandomBytes(1000, 14);
  HttpResult ok = Http(post);
  EXPECT_EQ(ok.status, 204) << ok.body;
  post.body = RandomBytes(1001, 15);
  HttpResult big = Http(post);
  EXPECT_EQ(big.status, 400);
  EXPECT_NE(big.body.find("EntityTooLarge"), std::string::npos) << big.body;
}

// --- Dialect sbg: the same store through projects and per-part URLs ---

std::string JsonString(const std::string& s) {
  return json::Build([&](json::Writer& w) { json::String(w, s); });
}

HttpResult Sbg(const ServerProcess& server, const std::string& method, const std::string& path,
               const std::string& body = "") {
  HttpRequest req;
  req.method = method;
  req.url = server.api() + path;
  req.headers = {std::string("X-SBG-Auth-Token: ") + ServerProcess::kToken, "Content-Type: application/json"};
  req.body = body;
  req.send_body = method == "POST";
  return Http(req);
}

TEST(SbgServer, PartsNeedTheirRequiredHeadersAndAnswerTheNamedSuccessCode) {
  ServerProcess server({{"--sbg-part-header", "x-amz-meta-lab: 42", "--sbg-part-status", "201", "--sbg-part-size",
                         "5MiB"},
                        "", 0, true});
  ASSERT_TRUE(server.ok());
  Api ingest(server.api(), ServerProcess::kToken);
  // Credentials the sbg way only: a bearer token is not what these endpoints read.
  EXPECT_EQ(ingest.Call("GET", "/projects").status, 401);
  HttpResult made = Sbg(server, "POST", "/projects", R"({"name":"proj"})");
  ASSERT_EQ(made.status, 201) << made.body;
  std::string project = Str(*json::Parse(made.body, "project"), "id");
  EXPECT_EQ(Sbg(server, "POST", "/projects", R"({"name":"proj"})").status, 409);

  std::string data = RandomBytes(6 * kMiB + 5, 21);
  std::string init_body = "{\"project\":" + JsonString(project) + ",\"name\":\"plate/a.bin\",\"size\":" +
                          std::to_string(data.size()) + ",\"part_size\":8388608}";
  HttpResult init = Sbg(server, "POST", "/upload/multipart", init_body);
  ASSERT_EQ(init.status, 200) << init.body;
  auto up = json::Parse(init.body, "init");
  EXPECT_EQ((*up)["part_size"].GetInt64(), 5 * static_cast<int64_t>(kMiB)) << "the server chose the part size";
  std::string id = Str(*up, "upload_id");

  std::vector<std::string> etags;
  for (int n = 1; n <= 2; ++n) {
    HttpResult part = Sbg(server, "GET", "/upload/multipart/" + id + "/part/" + std::to_string(n));
    ASSERT_EQ(part.status, 200) << part.body;
    auto p = json::Parse(part.body, "part");
    EXPECT_EQ(Str(*p, "method"), "PUT");
    EXPECT_EQ(Str((*p)["headers"], "x-amz-meta-lab"), "42");
    EXPECT_EQ(Str((*p)["headers"], "Content-Type"), "application/octet-stream");
    ASSERT_EQ((*p)["success_codes"].Size(), 1u);
    EXPECT_EQ((*p)["success_codes"][0].GetInt(), 201);
    EXPECT_EQ(std::string((*p)["report"]["headers"][0].GetString()), "ETag");
    EXPECT_GT(ParseIso8601Utc(Str(*p, "expires")).value_or(0), std::time(nullptr));
    std::string bytes = data.substr((n - 1) * 5 * kMiB, 5 * kMiB);
    HttpRequest put{"PUT", Str(*p, "url"), {"Content-Type: application/octet-stream"}, bytes, "", 0, -1, true};
    HttpResult missing = Http(put);
    EXPECT_EQ(missing.status, 403) << "a required header left out";
    EXPECT_NE(missing.body.find("SignatureDoesNotMatch"), std::string::npos) << missing.body;
    put.headers.push_back("x-amz-meta-lab: 43");
    EXPECT_EQ(Http(put).status, 403) << "a required header changed";
    put.headers.back() = "x-amz-meta-lab: 42";
    HttpResult stored = Http(put);
    ASSERT_EQ(stored.status, 201) << stored.body;
    etags.push_back(stored.headers["etag"]);
  }
  // Complete needs every part reported, each with the ETag the store gave.
  EXPECT_EQ(Sbg(server, "POST", "/upload/multipart/" + id + "/complete", "{}").status, 400);
  std::string wrong = R"({"part_number":1,"response":{"headers":{"ETag":"\"00000000000000000000000000000000\""}}})";
  EXPECT_EQ(Sbg(server, "POST", "/upload/multipart/" + id + "/part", wrong).status, 400);
  for (int n = 1; n <= 2; ++n) {
    std::string report = "{\"part_number\":" + std::to_string(n) + ",\"response\":{\"headers\":{\"ETag\":" +
                         JsonString(etags[n - 1]) + "}}}";
    EXPECT_EQ(Sbg(server, "POST", "/upload/multipart/" + id + "/part", report).status, 204);
  }
  HttpResult done = Sbg(server, "POST", "/upload/multipart/" + id + "/complete", "{}");
  ASSERT_EQ(done.status, 200) << done.body;
  EXPECT_EQ(Str(*json::Parse(done.body, "file"), "name"), "plate/a.bin");
  EXPECT_EQ(Sbg(server, "POST", "/upload/multipart/" + id + "/complete", "{}").status, 200) << "a retried complete";
  // One store: the ingest listing has the file, byte for byte.
  std::string ds = project.substr(project.find('/') + 1);
  EXPECT_EQ(Str(FileEntry(ingest, ds, "plate/a.bin"), "sha256"), Sha256Hex(data));
  HttpResult files = Sbg(server, "GET", "/files?project=" + UriEncode(project, false));
  EXPECT_NE(files.body.find("\"plate/a.bin\""), std::string::npos) << files.body;
  // The file exists now: a new upload needs overwrite=true.
  EXPECT_EQ(Sbg(server, "POST", "/upload/multipart", init_body).status, 409);
  EXPECT_EQ(Sbg(server, "POST", "/upload/multipart?overwrite=true", init_body).status, 200);
}

// --- Dialect aplos: presigned POST under a SigV4 policy ---

struct Form {
  std::string url;
  std::vector<std::pair<std::string, std::string>> fields;
};

Form AplosForm(const Api& api, const std::string& file_name) {
  HttpResult r = api.Call("POST", "/nca-engine/generate-upload-url",
                          "{\"file_name\":" + JsonString(file_name) + ",\"method_type\":\"post\"}");
  Form f;
  auto doc = json::Parse(r.body, "form");
  if (r.status != 200 || !doc.ok()) return f;
  f.url = Str((*doc)["presigned"], "url");
  for (const auto& m : (*doc)["presigned"]["fields"].GetObject()) f.fields.emplace_back(m.name.GetString(), m.value.GetString());
  return f;
}

HttpResult PostForm(const Form& f, const std::string& data) {
  HttpRequest req;
  req.method = "POST";
  req.url = f.url;
  req.form = true;
  req.form_fields = f.fields;
  req.body = data;
  return Http(req);
}

TEST(AplosServer, PolicyBoundsKeyAndSizeAndSuccessIs204) {
  ServerProcess server({{"--post-max-size", "1KiB"}, "", 0});
  ASSERT_TRUE(server.ok());
  Api api(server.api(), ServerProcess::kToken);
  EXPECT_EQ(api.Call("POST", "/nca-engine/generate-upload-url", R"({"file_name":"run/x","method_type":"put"})").status, 422);
  EXPECT_EQ(api.Call("POST", "/nca-engine/generate-upload-url", R"({"file_name":"no-folder","method_type":"post"})").status,
            422);
  Form form = AplosForm(api, "run-42/data.csv");
  ASSERT_FALSE(form.url.empty());
  std::vector<std::string> names;
  for (auto& [k, v] : form.fields) names.push_back(k);
  // The built-in store plays the platform's temporary credentials (a session token); a store
  // with a static key has none.
  std::vector<std::string> want_names = {"key", "x-amz-algorithm", "x-amz-credential", "x-amz-date",
                                         "x-amz-security-token", "policy", "x-amz-signature"};
  if (OverExternalStore()) want_names.erase(want_names.begin() + 4);
  ASSERT_EQ(names, want_names);
  const size_t policy_at = want_names.size() - 2;
  std::string policy = *Base64Decode(form.fields[policy_at].second);
  ASSERT_NE(policy.find("\"content-length-range\",0,1024"), std::string::npos) << policy;
  // AWS's words from the built-in store; RGW says AccessDenied with words of its own.
  const bool external = OverExternalStore();

  Form wrong_key = form;
  wrong_key.fields[0].second += "-elsewhere";
  HttpResult r = PostForm(wrong_key, "abc");
  EXPECT_EQ(r.status, 403);
  EXPECT_NE(r.body.find(external ? "<Code>AccessDenied</Code>" : "Policy Condition failed"), std::string::npos) << r.body;

  Form extra = form;
  extra.fields.insert(extra.fields.begin() + static_cast<long>(policy_at), {"x-amz-meta-who", "me"});
  r = PostForm(extra, "abc");
  EXPECT_EQ(r.status, 403);
  EXPECT_NE(r.body.find(external ? "<Code>AccessDenied</Code>" : "Extra input fields"), std::string::npos) << r.body;

  Form tampered = form;
  std::string bigger = policy;
  bigger.replace(bigger.find(",0,1024"), 7, ",0,9999999");
  tampered.fields[policy_at].second = Base64Encode(bigger);
  r = PostForm(tampered, RandomBytes(2000, 1));
  EXPECT_EQ(r.status, 403);
  EXPECT_NE(r.body.find(external ? "<Code>AccessDenied</Code>" : "SignatureDoesNotMatch"), std::string::npos) << r.body;

  r = PostForm(form, RandomBytes(1025, 2));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("EntityTooLarge"), std::string::npos) << r.body;

  std::string data = RandomBytes(1024, 3);
  r = PostForm(form, data);
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_TRUE(r.body.empty());
  // AWS names the object's ETag on a form's 204; RGW does not (clients must not need it).
  if (!external) {
    EXPECT_EQ(r.headers["etag"], "\"" + HexEncode(Md5(data)) + "\"");
  }
  // One store: the prefix is a dataset, the file is in its listing with its sha256.
  auto doc = json::Parse(api.Call("GET", "/datasets").body, "datasets");
  ASSERT_EQ((*doc)["items"].Size(), 1u);
  EXPECT_EQ(Str((*doc)["items"][0], "name"), "run-42");
  EXPECT_EQ(Str(FileEntry(api, Str((*doc)["items"][0], "id"), "data.csv"), "sha256"), Sha256Hex(data));
  HttpResult list = api.Call("GET", "/nca-engine/files?prefix=run-42/");
  EXPECT_NE(list.body.find("\"file_name\":\"run-42/data.csv\",\"size\":1024"), std::string::npos) << list.body;
}

TEST(AplosServer, AnExpiredPolicyIsRefused) {
  ServerProcess server({{"--url-ttl", "1"}, "", 0});
  ASSERT_TRUE(server.ok());
  Api api(server.api(), ServerProcess::kToken);
  Form form = AplosForm(api, "late/x.bin");
  ASSERT_FALSE(form.url.empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  HttpResult r = PostForm(form, "abc");
  EXPECT_EQ(r.status, 403);
  EXPECT_NE(r.body.find("Policy expired"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace ingestfs::testing
