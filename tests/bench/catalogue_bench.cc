// bench_catalogue: how the reference server's catalogue (SQLite) scales in files catalogued.
//
// Fills one data dir through the store's API (MetaStore, not HTTP, and without syncs: the fill is
// not what is measured) with a dataset of N files plus a small dataset of 1,000 files, and at
// each N (10k, 100k, 1M by default) starts ingestfs-server on it and prints:
//   - restart: from exec to listening (the server's own startup, catalogue open included);
//   - RSS: the server's VmRSS and VmHWM after the page walks below;
//   - page times over HTTP (limit 1000): the first page of the big dataset, the mean of a walk
//     through all of its pages, one page at a deep offset asked out of turn (no walk before it,
//     so it is counted from the start), and the first page of the small dataset, whose time should
//     not depend on N at all.
//   build/bin/bench_catalogue [N ...]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "common/json.h"
#include "server/meta_store.h"
#include "tests/support/http.h"
#include "tests/support/process.h"

using namespace ingestfs;
using namespace ingestfs::testing;

namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }

bool Fill(server::MetaStore& store, const std::string& dataset_id, int64_t from, int64_t to) {
  for (int64_t i = from; i < to; ++i) {
    char name[64];
    // Names as instruments make them: a plate folder, a well, a running number.
    std::snprintf(name, sizeof name, "plate-%04lld/well-%03lld/img-%09lld.tif", static_cast<long long>(i / 4096),
                  static_cast<long long>(i % 384), static_cast<long long>(i));
    server::Job job;
    job.job_id = dataset_id.substr(0, 8) + "-" + std::to_string(i);
    job.dataset_id = dataset_id;
    job.filename = name;
    job.size = 4096;
    job.staging_key = "staging/" + job.job_id;
    job.status = server::JobStatus::kPending;
    if (!store.PutJob(job).ok()) return false;
    server::FileRecord f;
    f.dataset_id = dataset_id;
    f.filename = name;
    f.size = 4096;
    f.sha256 = std::string(64, 'a');
    f.etag = "\"" + std::string(32, 'b') + "\"";
    f.s3_key = "datasets/" + dataset_id + "/" + name;
    if (!store.PublishJob(job.job_id, f).ok()) return false;
  }
  return true;
}

// One GET of a files page; its time in ms, or a negative number on failure.
double PageMs(Api& api, const std::string& ds, int64_t offset, int64_t* items) {
  auto t0 = Clock::now();
  HttpResult r = api.Call("GET", "/datasets/" + ds + "/files?limit=1000&offset=" + std::to_string(offset));
  auto t1 = Clock::now();
  if (r.status != 200) return -1;
  auto doc = json::Parse(r.body, "page");
  if (!doc.ok()) return -1;
  *items = static_cast<int64_t>((*doc)["items"].Size());
  return Ms(t0, t1);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> levels;
  for (int i = 1; i < argc; ++i) levels.push_back(std::atoll(argv[i]));
  if (levels.empty()) levels = {10000, 100000, 1000000};
  TempDir dir;
  std::string data = dir.path() + "/data";
  std::string big_id, small_id;
  {
    auto store = server::MetaStore::Open(data, nullptr, false);
    if (!store.ok()) return std::fprintf(stderr, "%s\n", store.status().ToString().c_str()), 1;
    big_id = (*store)->CreateDataset("big")->id;
    small_id = (*store)->CreateDataset("small")->id;
    if (!Fill(**store, small_id, 0, 1000)) return std::fprintf(stderr, "fill failed\n"), 1;
  }
  std::printf("%10s %10s %10s %10s %10s %12s %12s %12s %12s\n", "files", "fill s", "restart ms", "RSS MiB",
              "HWM MiB", "page0 ms", "walk ms/pg", "deep ms", "small ms");
  int64_t filled = 0;
  for (int64_t level : levels) {
    auto f0 = Clock::now();
    {
      auto store = server::MetaStore::Open(data, nullptr, false);
      if (!store.ok() || !Fill(**store, big_id, filled, level)) return std::fprintf(stderr, "fill failed\n"), 1;
    }
    filled = level;
    double fill_s = Ms(f0, Clock::now()) / 1000;
    auto t0 = Clock::now();
    ServerProcess server({{}, data, 0});
    auto t1 = Clock::now();
    if (!server.ok()) return std::fprintf(stderr, "server did not start\n"), 1;
    Api api(server.api(), ServerProcess::kToken);
    int64_t items = 0;
    double first = PageMs(api, big_id, 0, &items);
    double walk_total = 0;
    int64_t pages = 0, seen = 0;
    for (int64_t offset = 0;; offset += 1000) {
      double ms = PageMs(api, big_id, offset, &items);
      if (ms < 0) return std::fprintf(stderr, "page failed\n"), 1;
      if (items == 0) break;
      walk_total += ms;
      ++pages;
      seen += items;
    }
    if (seen != level) return std::fprintf(stderr, "walk saw %lld files, not %lld\n", (long long)seen, (long long)level), 1;
    double deep = PageMs(api, big_id, level - 1000 - 17, &items);
    double small = PageMs(api, small_id, 0, &items);
    long rss = ProcStatusKiB(server.pid(), "VmRSS:"), hwm = ProcStatusKiB(server.pid(), "VmHWM:");
    std::printf("%10lld %10.1f %10.1f %10.1f %10.1f %12.2f %12.2f %12.2f %12.2f\n", static_cast<long long>(level),
                fill_s, Ms(t0, t1), rss / 1024.0, hwm / 1024.0, first, walk_total / static_cast<double>(pages), deep,
                small);
    std::fflush(stdout);
  }
  return 0;
}
