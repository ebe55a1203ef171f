// bench_mount: the mount vs a directory on the same local disk, in the same run, and the time
// until the platform confirmed everything (ingestfs wait). Prints each time and its ratio.
//   build/bin/bench_mount [LARGE_MIB]     (default 1024)
// The mount runs with settle=0 so that "confirmed" measures the upload, not the quiet period.
// Every figure is the median of 3 runs (the range of "confirmed" is printed too); "confirmed"
// is from the start of the command until `ingestfs wait` returned.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/json.h"
#include "tests/support/http.h"
#include "tests/support/mount.h"

using namespace ingestfs;
using namespace ingestfs::testing;

namespace {

double Time(const std::string& cmd) {
  auto t0 = std::chrono::steady_clock::now();
  int rc = std::system(cmd.c_str());
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (rc != 0) std::fprintf(stderr, "command failed (%d): %s\n", rc, cmd.c_str());
  return s;
}

std::string Q(const std::string& s) { return "'" + s + "'"; }

// Puts `n` small files into dataset `name` straight through the API, many at a time.
void Seed(const Api& api, const std::string& name, int n) {
  std::string ds = api.CreateDataset(name);
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < n; i = next++) {
        std::string fname = "plate" + std::to_string(i % 10) + "/well-" + std::to_string(i) + ".csv";
        HttpResult p = api.Presign(ds, fname, 16);
        auto doc = json::Parse(p.body, "presign");
        if (!doc.ok()) continue;
        HttpRequest put{"PUT", (*doc)["urls"][0].GetString(), {}, "0123456789abcdef", "", true};
        Http(put);
        api.Complete(json::GetString(*doc, "job_id").value(), {});
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 600; ++i) {
    auto doc = json::Parse(api.Read("/datasets/" + ds + "/files?limit=1").body, "files");
    if (doc.ok() && doc->IsObject() && (*doc)["total"].GetInt() >= n) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

constexpr int kRuns = 3;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void Row(const char* what, double local, double mount, const std::vector<double>& confirmed) {
  std::printf("%-34s local %8.3f s   mount %8.3f s   ratio %5.2f", what, local, mount, mount / local);
  auto [lo, hi] = std::minmax_element(confirmed.begin(), confirmed.end());
  std::printf("   confirmed after %7.3f s (runs %.3f-%.3f)\n", Median(confirmed), *lo, *hi);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t mib = SizeMibArg(argc, argv, 1024, "Usage: bench_mount [LARGE_MIB]   (default 1024)\nThe mount vs a local directory, and the time until the platform confirmed everything.\n");
  std::string why = FuseUnavailableReason();
  if (!why.empty()) {
    std::fprintf(stderr, "bench_mount needs /dev/fuse: %s\n", why.c_str());
    return 1;
  }
  TempDir tmp;
  ServerProcess server({{}, tmp / "platform", 0});
  Api api(server.api(), ServerProcess::kToken);
  std::ofstream(tmp / "token") << ServerProcess::kToken << "\n";
  std::filesystem::create_directories(tmp / "local");
  std::printf("preparing sources (%llu MiB file, 1,000 x 4 KiB, 200 x 1 MiB) and seeding 11,000 platform files...\n",
              static_cast<unsigned long long>(mib));
  std::fflush(stdout);
  WriteRandomFile(tmp / "large.src", mib << 20, 1);
  std::filesystem::create_directories(tmp / "small/run");
  for (int i = 0; i < 1000; ++i) WriteRandomFile(tmp / ("small/run/f" + std::to_string(i)), 4096, i);
  std::filesystem::create_directories(tmp / "medium/run");
  for (int i = 0; i < 200; ++i) WriteRandomFile(tmp / ("medium/run/m" + std::to_string(i)), 1 << 20, 5000 + i);
  Seed(api, "list-1000", 1000);
  Seed(api, "list-10000", 10000);
  for (int n : {1000, 10000}) {  // local baselines of the same shape
    std::string d = tmp / ("local/list-" + std::to_string(n));
    for (int i = 0; i < n; ++i) {
      std::filesystem::create_directories(d + "/plate" + std::to_string(i % 10));
      std::ofstream(d + "/plate" + std::to_string(i % 10) + "/well-" + std::to_string(i) + ".csv") << "0123456789abcdef";
    }
  }
  std::system("sync");

  MountProcess::Options mo{server.api(), tmp / "mnt", tmp / "cache", tmp / "token", "0", {}};
  auto m = std::make_unique<MountProcess>(mo);
  if (!m->ok()) {
    std::fprintf(stderr, "mount failed\n");
    return 1;
  }
  std::string mnt = m->path();
  std::string wait = BinDir() + "/ingestfs wait " + Q(mnt) + " --timeout 600";
  std::system(("mkdir " + Q(mnt + "/bench")).c_str());

  // Each workload runs kRuns times, local and mount alternating, into fresh destinations; the
  // medians are printed (this kind of disk varies a lot from one run to the next).
  auto measure = [&](const char* label, const std::function<std::string(const std::string&)>& cmd_into) {
    std::vector<double> local, mount, confirmed;
    for (int r = 0; r < kRuns; ++r) {
      std::string tag = std::to_string(r);
      std::system("sync");
      local.push_back(Time(cmd_into(tmp / ("local/bench/" + tag)) + " && sync"));
      std::system("sync");
      auto t0 = std::chrono::steady_clock::now();
      mount.push_back(Time(cmd_into(mnt + "/bench/" + tag)));
      Time(wait);
      confirmed.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    Row(label, Median(local), Median(mount), confirmed);
  };
  std::system(("mkdir -p " + Q(tmp / "local/bench/0") + " " + Q(tmp / "local/bench/1") + " " + Q(tmp / "local/bench/2")).c_str());
  for (int r = 0; r < kRuns; ++r) std::system(("mkdir -p " + Q(mnt + "/bench/" + std::to_string(r))).c_str());
  measure(("dd bs=1M of " + std::to_string(mib) + " MiB (conv=fsync)").c_str(), [&](const std::string& dir) {
    return "dd if=" + Q(tmp / "large.src") + " bs=1M conv=fsync status=none of=" + Q(dir + "/large.bin");
  });
  measure("cp -r of 1,000 files of 4 KiB", [&](const std::string& dir) {
    return "cp -r " + Q(tmp / "small/run") + " " + Q(dir + "/small");
  });
  measure("rsync -a of 200 files of 1 MiB", [&](const std::string& dir) {
    return "rsync -a " + Q(tmp / "medium/run/") + " " + Q(dir + "/medium/");
  });

  for (int n : {1000, 10000}) {
    // Cold: a fresh mount that has never listed this dataset.
    m->Unmount();
    m = std::make_unique<MountProcess>(mo);
    std::string ls = "ls -lR " + Q(mnt + "/list-" + std::to_string(n)) + " > /dev/null";
    std::string lls = "ls -lR " + Q(tmp / ("local/list-" + std::to_string(n))) + " > /dev/null";
    double cold = Time(ls);
    std::vector<double> local, warm;
    for (int r = 0; r < kRuns; ++r) {
      local.push_back(Time(lls));
      warm.push_back(Time(ls));
    }
    std::string label = "ls -lR of " + std::to_string(n) + " platform files";
    std::printf("%-34s local %8.3f s   mount cold %8.3f s   warm %8.3f s   warm ratio %5.2f\n", label.c_str(),
                Median(local), cold, Median(warm), Median(warm) / Median(local));
  }
  m->Unmount();
  return 0;
}
