// bench_server_upload: streams a large upload through ingestfs-server on loopback and prints
// the time, the throughput, and the server's peak RSS (VmHWM), once as one PUT and once as
// multipart parts. The point is that the server's memory stays flat whatever the size.
//   build/bin/bench_server_upload [SIZE_MIB]      (default 2048)
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "common/json.h"
#include "tests/support/http.h"
#include "tests/support/process.h"

using namespace ingestfs;
using namespace ingestfs::testing;

namespace {

bool Run(const char* label, const std::string& file, uint64_t size, const std::vector<std::string>& server_args) {
  ServerProcess server({server_args, "", 0});
  if (!server.ok()) {
    std::fprintf(stderr, "server did not start\n");
    return false;
  }
  Api api(server.api(), ServerProcess::kToken);
  std::string ds = api.CreateDataset("bench");
  long rss_before = ProcStatusKiB(server.pid(), "VmHWM:");
  auto t0 = std::chrono::steady_clock::now();
  HttpResult p = api.Presign(ds, "big.bin", size);
  auto doc = json::Parse(p.body, "presign");
  if (p.status != 200 || !doc.ok()) {
    std::fprintf(stderr, "presign failed: %s\n", p.body.c_str());
    return false;
  }
  const json::Value& urls = (*doc)["urls"];
  uint64_t part_size = static_cast<uint64_t>((*doc)["part_size"].GetInt64());
  std::vector<std::pair<int, std::string>> parts;
  for (rapidjson::SizeType i = 0; i < urls.Size(); ++i) {
    HttpRequest put;
    put.method = "PUT";
    put.url = urls[i].GetString();
    put.body_file = file;
    if (urls.Size() > 1) {
      put.body_offset = i * part_size;
      put.body_length = static_cast<int64_t>(std::min<uint64_t>(part_size, size - i * part_size));
    }
    HttpResult r = Http(put);
    if (r.status != 200) {
      std::fprintf(stderr, "part %u failed: %ld %s\n", i + 1, r.status, r.body.c_str());
      return false;
    }
    if (urls.Size() > 1) parts.emplace_back(static_cast<int>(i + 1), r.headers["etag"]);
  }
  auto t_sent = std::chrono::steady_clock::now();
  HttpResult c = api.Complete(json::GetString(*doc, "job_id").value(), parts);
  json::Document job = api.WaitJob(json::GetString(*doc, "job_id").value());
  auto t_done = std::chrono::steady_clock::now();
  std::string status = json::GetString(job, "status").ok() ? *json::GetString(job, "status") : "?";
  bool exact = json::GetString(job, "sha256").ok() && *json::GetString(job, "sha256") == FileSha256Hex(file);
  double sent = std::chrono::duration<double>(t_sent - t0).count();
  double total = std::chrono::duration<double>(t_done - t0).count();
  long rss = ProcStatusKiB(server.pid(), "VmHWM:");
  std::printf("%-22s %6.0f MiB  %3zu request(s)  send %6.2f s (%6.1f MiB/s)  confirmed %6.2f s  "
              "server peak RSS %6.1f MiB (at start %5.1f MiB, %.4f of the file)  %s%s\n",
              label, size / 1048576.0, static_cast<size_t>(urls.Size()), sent, size / 1048576.0 / sent, total,
              rss / 1024.0, rss_before / 1024.0, rss / 1024.0 / (size / 1048576.0), status.c_str(),
              exact ? ", sha256 exact" : ", SHA256 MISMATCH");
  return c.status == 200 && status == "completed" && exact;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t mib = SizeMibArg(argc, argv, 2048, "Usage: bench_server_upload [SIZE_MIB]   (default 2048)\nA large upload through ingestfs-server: time, throughput, peak RSS.\n");
  uint64_t size = mib << 20;
  TempDir tmp;
  std::string file = tmp / "big.bin";
  std::printf("writing a %llu MiB test file...\n", static_cast<unsigned long long>(mib));
  std::fflush(stdout);
  WriteRandomFile(file, size, 42);
  bool ok = Run("one PUT", file, size, {"--multipart-threshold", std::to_string(size)});
  ok = Run("multipart (8 MiB parts)", file, size, {}) && ok;
  return ok ? 0 : 1;
}
