// bench_gateway: a gateway taking in many small files through one mount, as an instrument PC
// does for months. Batches of 4 KiB files are copied in with `cp -r` (settle=0) until the totals
// given are reached (default 1,000 10,000 50,000 100,000 150,000 200,000: each batch is a folder,
// the last one of 50,000 files), each batch waited for until the platform confirmed it, and
// after each the program prints:
//   - files/s through the mount (from the cp until confirmed) and, in the same run, for the same
//     batch `cp -r` + `sync` into a local folder on the same disk, and their ratio;
//   - daemon RSS, and its growth per 1,000 files written so far, right after the batch and after
//     the kernel was asked to forget its cached dentries and inodes (drop_caches, as root);
//   - daemon and server CPU per file, and platform requests per file from the access log;
//   - with --strace, fsync/fdatasync calls per file of daemon and server (strace -c -f; slows
//     the batch, so files/s of that run are not comparable);
// and at the end, the daemon's peak RSS over the batches, and the time of an `ls -l` of the last
// batch's folder with the daemon's RSS after it and its peak while listing.
//   build/bin/bench_gateway [--strace] [TOTAL ...]
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/http.h"
#include "tests/support/mount.h"
#include "tests/support/process.h"

using namespace ingestfs;
using namespace ingestfs::testing;

namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int Sh(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  if (rc != 0) std::fprintf(stderr, "command failed (%d): %s\n", rc, cmd.c_str());
  return rc;
}

std::string Q(const std::string& s) { return "'" + s + "'"; }

// utime + stime of a process and its threads, in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = all.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(all.substr(close + 2));
  std::string field;
  std::vector<std::string> f;
  while (rest >> field) f.push_back(field);
  if (f.size() < 13) return 0;
  return (std::stod(f[11]) + std::stod(f[12])) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

size_t CountLines(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  std::string line;
  while (std::getline(in, line)) ++n;
  return n;
}

void MakeBatch(const std::string& dir, int64_t from, int64_t to) {
  std::filesystem::create_directories(dir);
  std::string block(4096, '\0');
  uint64_t x = 0x9e3779b97f4a7c15ull ^ static_cast<uint64_t>(from);
  for (int64_t i = from; i < to; ++i) {
    for (size_t j = 0; j < block.size(); j += 8) {  // xorshift: every file different
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      std::memcpy(&block[j], &x, 8);
    }
    std::ofstream(dir + "/img-" + std::to_string(i) + ".tif", std::ios::binary) << block;
  }
}

// Syncs counted by strace -c -f attached to `pid`, while `run` runs.
struct Strace {
  std::string out;
  Child child;
  Strace(pid_t target, std::string path) : out(std::move(path)) {
    child.Start({"/usr/bin/strace", "-c", "-f", "-e", "trace=fsync,fdatasync,sync_file_range,syncfs", "-o", out, "-p",
                 std::to_string(target)},
                "/dev/null");
  }
  // Calls per system call (fsync, fdatasync, syncfs, sync_file_range).
  std::map<std::string, long> Finish() {
    ::kill(child.pid(), SIGINT);  // strace writes its table when interrupted
    child.Wait(std::chrono::seconds(30));
    std::ifstream in(out);
    std::string line;
    std::map<std::string, long> calls;
    while (std::getline(in, line)) {
      std::istringstream s(line);
      std::string pct, secs, usecs, n, errors_or_name, name;
      s >> pct >> secs >> usecs >> n >> errors_or_name;
      if (!(s >> name)) name = errors_or_name;  // the errors column is empty when there were none
      if (name == "fsync" || name == "fdatasync" || name == "syncfs" || name == "sync_file_range") {
        calls[name] += std::atol(n.c_str());
      }
    }
    return calls;
  }
};

}  // namespace

int main(int argc, char** argv) {
  bool strace = false;
  std::vector<int64_t> totals;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--strace") {
      strace = true;
    } else if (a == "-h" || a == "--help") {
      std::printf("Usage: bench_gateway [--strace] [TOTAL ...]   (default 1000 10000 50000 100000 150000 200000)\n");
      return 0;
    } else {
      totals.push_back(std::atoll(a.c_str()));
    }
  }
  if (totals.empty()) totals = {1000, 10000, 50000, 100000, 150000, 200000};  // the last batch: 50,000
  std::string why = FuseUnavailableReason();
  if (!why.empty()) {
    std::fprintf(stderr, "bench_gateway needs /dev/fuse: %s\n", why.c_str());
    return 1;
  }
  bool can_drop = ::access("/proc/sys/vm/drop_caches", W_OK) == 0;
  if (strace && ::access("/usr/bin/strace", X_OK) != 0) {
    std::fprintf(stderr, "--strace needs /usr/bin/strace (Debian package strace)\n");
    return 1;
  }
  TempDir tmp;
  ServerProcess server({{}, tmp / "platform", 0});
  if (!server.ok()) return std::fprintf(stderr, "server did not start\n"), 1;
  std::ofstream(tmp / "token") << ServerProcess::kToken << "\n";
  MountProcess mount({server.api(), tmp / "mnt", tmp / "cache", tmp / "token", "0", {}});
  if (!mount.ok()) return std::fprintf(stderr, "mount failed\n"), 1;
  if (Sh("mkdir " + Q(mount / "gateway")) != 0) return 1;
  long base_rss = ProcStatusKiB(mount.pid(), "VmRSS:");
  std::printf("daemon RSS at the start %.1f MiB; KiB/1k is the growth since then per 1,000 files\n", base_rss / 1024.0);
  std::printf("%9s %9s %9s %7s %9s %10s %10s %9s %9s %9s %9s\n", "files", "mount f/s", "local f/s", "ratio",
              "RSS MiB", "KiB/1k", "after drop", "d CPU ms", "s CPU ms", "req/file", "sync/file");
  std::fflush(stdout);
  int64_t done = 0;
  size_t requests_before = CountLines(server.access_log());
  for (size_t b = 0; b < totals.size(); ++b) {
    int64_t total = totals[b];
    if (total <= done) continue;
    std::string batch = "b" + std::to_string(b);
    std::string src = tmp / ("src/" + batch);
    MakeBatch(src, done, total);
    Sh("sync");
    double n = static_cast<double>(total - done);
    // Local baseline: the same batch, cp -r and sync, on the same disk.
    auto l0 = Clock::now();
    Sh("cp -r " + Q(src) + " " + Q(tmp / ("local-" + batch)) + " && sync");
    double local = Since(l0);
    std::filesystem::remove_all(tmp / ("local-" + batch));
    double dcpu0 = CpuSeconds(mount.pid()), scpu0 = CpuSeconds(server.pid());
    std::unique_ptr<Strace> sd, ss;
    if (strace) {
      sd = std::make_unique<Strace>(mount.pid(), tmp / "strace.daemon");
      ss = std::make_unique<Strace>(server.pid(), tmp / "strace.server");
      ::sleep(1);
    }
    auto t0 = Clock::now();
    if (Sh("cp -r " + Q(src) + " " + Q(mount / ("gateway/" + batch))) != 0) return 1;
    if (Sh(BinDir() + "/ingestfs wait " + Q(mount.path()) + " --timeout 3600 > /dev/null") != 0) return 1;
    double through = Since(t0);
    long syncs = -1;
    std::string breakdown;
    if (strace) {
      syncs = 0;
      for (auto [who, st] : {std::pair{"daemon", sd.get()}, std::pair{"server", ss.get()}}) {
        breakdown += std::string(breakdown.empty() ? "" : "; ") + who + ":";
        for (const auto& [call, n] : st->Finish()) {
          syncs += n;
          char b[64];
          std::snprintf(b, sizeof(b), " %s %.2f", call.c_str(), static_cast<double>(n) / (total - done));
          breakdown += b;
        }
      }
    }
    double dcpu = CpuSeconds(mount.pid()) - dcpu0, scpu = CpuSeconds(server.pid()) - scpu0;
    size_t requests = CountLines(server.access_log());
    long rss = ProcStatusKiB(mount.pid(), "VmRSS:");
    long dropped = -1;
    if (can_drop) {
      Sh("sync; echo 2 > /proc/sys/vm/drop_caches");
      ::sleep(2);
      dropped = ProcStatusKiB(mount.pid(), "VmRSS:");
    }
    done = total;
    std::printf("%9lld %9.0f %9.0f %7.2f %9.1f %10.1f %10.1f %9.2f %9.2f %9.2f %9s\n", static_cast<long long>(total),
                n / through, n / local, local / through, rss / 1024.0, (rss - base_rss) / (static_cast<double>(done) / 1000.0),
                dropped / 1024.0, dcpu * 1000 / n, scpu * 1000 / n,
                static_cast<double>(requests - requests_before) / n,
                syncs < 0 ? "-" : std::to_string(static_cast<double>(syncs) / n).substr(0, 5).c_str());
    if (!breakdown.empty()) std::printf("          syncs per file: %s\n", breakdown.c_str());
    std::fflush(stdout);
    requests_before = requests;
    std::filesystem::remove_all(src);
  }
  std::printf("daemon VmHWM over the batches %.1f MiB\n", ProcStatusKiB(mount.pid(), "VmHWM:") / 1024.0);
  // Listing the largest batch's folder: every entry gets a node again while the kernel holds it.
  if (!totals.empty()) {
    size_t last = totals.size() - 1;
    int64_t n = totals[last] - (last == 0 ? 0 : totals[last - 1]);
    if (can_drop) Sh("echo 2 > /proc/sys/vm/drop_caches");
    // The peak is measured from here: "5" resets the process's VmHWM (proc(5), clear_refs).
    bool peak_reset = static_cast<bool>(std::ofstream("/proc/" + std::to_string(mount.pid()) + "/clear_refs") << "5");
    auto t0 = Clock::now();
    Sh("ls -l " + Q(mount / ("gateway/b" + std::to_string(last))) + " > /dev/null");
    double secs = Since(t0);
    std::printf("ls -l of %lld files: %.2f s; daemon RSS after it %.1f MiB, peak while listing %.1f MiB%s\n",
                static_cast<long long>(n), secs, ProcStatusKiB(mount.pid(), "VmRSS:") / 1024.0,
                ProcStatusKiB(mount.pid(), "VmHWM:") / 1024.0, peak_reset ? "" : " (peak not reset: since the start)");
  }
  return 0;
}
