// bench_upload: `ingestfs upload` of one large file vs the same platform protocol done by hand
// with `curl -T` (presign, PUT the bytes, complete, wait for the job), against the same
// ingestfs-server on loopback, in the same run. Prints both times, the ratio, and the peak RSS
// of the uploader (and of curl, for scale).
//   build/bin/bench_upload [SIZE_MIB]   (default 1024)
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <fstream>
#include <cstdio>
#include <string>
#include <vector>

#include "common/json.h"
#include "tests/support/http.h"

using namespace ingestfs;
using namespace ingestfs::testing;

namespace {

struct Ran {
  int status = -1;
  double seconds = 0;
  long max_rss_kib = 0;
};

Ran Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  Ran r;
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    for (const std::string& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  rusage ru{};
  wait4(pid, &r.status, 0, &ru);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.max_rss_kib = ru.ru_maxrss;
  return r;
}

// presign -> curl -T -> complete -> wait: the protocol with curl carrying the bytes.
double CurlBaseline(const Api& api, const std::string& ds, const std::string& name, const std::string& file,
                    uint64_t size, long* curl_rss) {
  auto t0 = std::chrono::steady_clock::now();
  HttpResult p = api.Presign(ds, name, size);
  auto doc = json::Parse(p.body, "presign");
  if (p.status != 200 || !doc.ok()) return -1;
  const json::Value& urls = (*doc)["urls"];
  uint64_t part_size = static_cast<uint64_t>((*doc)["part_size"].GetInt64());
  std::vector<std::pair<int, std::string>> parts;
  TempDir tmp;
  for (rapidjson::SizeType i = 0; i < urls.Size(); ++i) {
    std::string hdr = tmp / "headers";
    std::vector<std::string> argv = {"curl", "-sS", "-f", "-o", "/dev/null", "-D", hdr, "-T"};
    if (urls.Size() == 1) {
      argv.push_back(file);
    } else {
      // The part's bytes, as curl would be given them by a script: a slice of the file.
      std::string slice = tmp / "slice";
      std::string cmd = "dd if=" + file + " of=" + slice + " bs=1M skip=" + std::to_string(i * part_size >> 20) +
                        " count=" + std::to_string(part_size >> 20) + " status=none";
      if (std::system(cmd.c_str()) != 0) return -1;
      argv.push_back(slice);
    }
    argv.push_back(urls[i].GetString());
    Ran r = Spawn(argv, {});
    *curl_rss = std::max(*curl_rss, r.max_rss_kib);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) return -1;
    std::ifstream in(hdr);
    std::string line, etag;
    while (std::getline(in, line)) {
      if (line.size() > 5 && (line.rfind("ETag:", 0) == 0 || line.rfind("etag:", 0) == 0)) etag = line.substr(6);
    }
    while (!etag.empty() && (etag.back() == '\r' || etag.back() == ' ')) etag.pop_back();
    if (urls.Size() > 1) parts.emplace_back(static_cast<int>(i + 1), etag);
  }
  std::string job = json::GetString(*doc, "job_id").value();
  if (api.Complete(job, parts).status != 200) return -1;
  json::Document st = api.WaitJob(job);
  if (!json::GetString(st, "status").ok() || *json::GetString(st, "status") != "completed") return -1;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void Compare(const char* label, const std::string& file, uint64_t size, const std::vector<std::string>& server_args) {
  ServerProcess server({server_args, "", 0});
  Api api(server.api(), ServerProcess::kToken);
  std::string ds = api.CreateDataset("bench");
  long curl_rss = 0;
  double curl_s = CurlBaseline(api, ds, "by-curl.bin", file, size, &curl_rss);
  TempDir tmp;
  Ran ours = Spawn({BinDir() + "/ingestfs", "upload", "--api", server.api(), "--dataset", "bench", "--cache-dir",
                    tmp / "cache", "--as", "by-ingestfs.bin", file},
                   {std::string("INGESTFS_TOKEN=") + ServerProcess::kToken});
  bool ok = WIFEXITED(ours.status) && WEXITSTATUS(ours.status) == 0 && curl_s > 0;
  std::printf("%-26s curl -T protocol %7.2f s   ingestfs upload %7.2f s   ratio %.2f   "
              "peak RSS ingestfs %5.1f MiB (curl %4.1f MiB)%s\n",
              label, curl_s, ours.seconds, ours.seconds / curl_s, ours.max_rss_kib / 1024.0, curl_rss / 1024.0,
              ok ? "" : "   FAILED");
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t mib = SizeMibArg(argc, argv, 1024, "Usage: bench_upload [SIZE_MIB]   (default 1024)\ningestfs upload vs the same protocol with curl -T; peak RSS.\n");
  uint64_t size = mib << 20;
  TempDir tmp;
  std::string file = tmp / "big.bin";
  WriteRandomFile(file, size, 7);
  std::printf("%llu MiB file; both sides presign, send, complete and wait for the platform's confirmation.\n",
              static_cast<unsigned long long>(mib));
  std::printf("ingestfs upload also copies the file into its cache and journals it before sending.\n");
  std::fflush(stdout);
  Compare("one PUT (threshold 5 GiB)", file, size, {"--multipart-threshold", "5GiB"});
  Compare("multipart, 8 MiB parts", file, size, {});
  Compare("multipart, 64 MiB parts", file, size, {"--part-size", "64MiB"});
  return 0;
}
