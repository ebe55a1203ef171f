// Model-based random operations on a real mount (settle=0, so that every operation races the
// uploads), with kill -9 of the daemon, remounts, restarts of the platform and the kernel
// dropping its cached entries (so that confirmed files go to listing entries and come back)
// among them, checked
// against a small reference model of what a user may rely on:
//   - the mount shows every file the model has, byte for byte, and nothing else;
//   - after `ingestfs wait`, the platform holds every surviving file byte-exact;
//   - no temporary name, no unfinished version and no name whose unlink or rename-away returned 0
//     is ever on the platform, and every operation ends in an outcome the semantics allow.
// Each sequence is seeded; a failure prints its seed and its operations.
//
//   INGESTFS_MODEL_SECONDS   time budget for new sequences (default 90)
//   INGESTFS_MODEL_SEED      run this one sequence only
//   INGESTFS_MODEL_OPS       operations per sequence (default 60)
// scripts/soak.sh runs it for longer and prints the figures.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "common/file_util.h"
#include "tests/integration/mount_fixture.h"

namespace ingestfs::testing {
namespace {

int64_t EnvInt(const char* name, int64_t dflt) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoll(v) : dflt;
}

struct Figures {
  int sequences = 0, operations = 0, kills = 0, server_restarts = 0, interrupted = 0, refused = 0, violations = 0;
};

class ModelTest : public MountTest {
 protected:
  // One file of the model: what the mount must show under that name.
  struct File {
    std::string content;
    bool temp = false;
    bool interrupted = false;  // its writer was cut off by a kill: not to be uploaded as it is
  };

  std::mt19937_64 rng_;
  std::string ds_;
  std::map<std::string, File> model_;                    // dataset-relative name -> file
  std::map<std::string, std::set<std::string>> closed_;  // name -> sha256 of every version closed under it
  std::set<std::string> gone_;                           // unlinked or renamed away with 0, not made again
  std::vector<std::string> log_;                         // the sequence, for the failure message
  std::unique_ptr<MountProcess> m_;
  int held_fd_ = -1;  // a file being written when a kill may come
  std::string held_name_;
  std::string held_content_;
  Figures figures_;

  uint64_t Rand(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  std::string Path(const std::string& name) const { return *m_ / (ds_ + "/" + name); }
  void Violation(const std::string& what) {
    ++figures_.violations;
    ADD_FAILURE() << what;
  }
  void Log(const std::string& s) { log_.push_back(s); }

  std::string PickName(bool allow_temp) {
    static const char* kNames[] = {"a.dat", "b.csv", "sub/c.tif", "sub/d.txt", "e"};
    if (allow_temp && Rand(5) == 0) return "sub/.d.txt.Ab" + std::to_string(Rand(10)) + "xyz";
    return kNames[Rand(5)];
  }
  std::string Existing() {
    if (model_.empty()) return "";
    auto it = model_.begin();
    std::advance(it, static_cast<long>(Rand(model_.size())));
    return it->first;
  }
  std::string Bytes() {
    uint64_t size = Rand(10) == 0 ? Rand(6 << 20) : Rand(20000);
    return RandomBytes(size, rng_());
  }
  static bool IsTemp(const std::string& name) { return name.find("/.") != std::string::npos; }
  void Closed(const std::string& name, const std::string& content) {
    model_[name] = File{content, IsTemp(name), false};
    if (!IsTemp(name)) closed_[name].insert(Sha256Hex(content));
    gone_.erase(name);
  }

  // --- the operations ---
  bool Held(const std::string& name) const { return held_fd_ >= 0 && name == held_name_; }
  void WriteWhole() {
    std::string name = PickName(true), data = Bytes();
    if (Held(name)) return;
    Log("write " + name + " " + std::to_string(data.size()));
    int fd = ::open(Path(name).c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) return Violation("create " + name + ": " + std::strerror(errno));
    bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
    if (Rand(4) == 0) ok &= ::fsync(fd) == 0;
    ok &= ::close(fd) == 0;
    if (!ok) return Violation("write " + name + ": " + std::strerror(errno));
    Closed(name, data);
  }
  void Modify() {
    std::string name = Existing();
    if (name.empty() || model_[name].interrupted) return;
    File f = model_[name];
    int kind = static_cast<int>(Rand(3));
    std::string add = RandomBytes(1 + Rand(5000), rng_());
    int fd = ::open(Path(name).c_str(), O_WRONLY | O_CLOEXEC | (kind == 0 ? O_APPEND : 0));
    if (fd < 0) return Violation("open " + name + ": " + std::strerror(errno));
    bool ok;
    if (kind == 0) {
      Log("append " + name + " " + std::to_string(add.size()));
      ok = ::write(fd, add.data(), add.size()) == static_cast<ssize_t>(add.size());
      f.content += add;
    } else if (kind == 1) {
      uint64_t off = Rand(f.content.size() + 1);
      Log("pwrite " + name + " @" + std::to_string(off) + " " + std::to_string(add.size()));
      ok = ::pwrite(fd, add.data(), add.size(), static_cast<off_t>(off)) == static_cast<ssize_t>(add.size());
      if (f.content.size() < off + add.size()) f.content.resize(off + add.size());
      f.content.replace(off, add.size(), add);
    } else {
      uint64_t len = Rand(f.content.size() + 3000);
      Log("ftruncate " + name + " " + std::to_string(len));
      ok = ::ftruncate(fd, static_cast<off_t>(len)) == 0;
      f.content.resize(len);
    }
    ok &= ::close(fd) == 0;
    if (!ok) return Violation("modify " + name + ": " + std::strerror(errno));
    Closed(name, f.content);
  }
  void Truncate() {
    std::string name = Existing();
    if (name.empty() || model_[name].interrupted) return;
    uint64_t len = Rand(model_[name].content.size() + 100);
    Log("truncate " + name + " " + std::to_string(len));
    if (::truncate(Path(name).c_str(), static_cast<off_t>(len)) != 0) {
      return Violation("truncate " + name + ": " + std::strerror(errno));
    }
    std::string c = model_[name].content;
    c.resize(len);
    Closed(name, c);
  }
  void Unlink() {
    std::string name = Existing();
    if (name.empty()) return;
    Log("unlink " + name);
    if (::unlink(Path(name).c_str()) == 0) {
      model_.erase(name);
      gone_.insert(name);
    } else if (errno == EPERM && !model_[name].temp) {
      ++figures_.refused;  // the platform has it, or is taking it in: it stays
    } else {
      Violation("unlink " + name + ": " + std::strerror(errno));
    }
  }
  void Rename() {
    std::string from = Existing();
    if (from.empty()) return;
    std::string to = PickName(true);
    if (to == from || Held(to)) return;
    Log("rename " + from + " -> " + to);
    if (::rename(Path(from).c_str(), Path(to).c_str()) == 0) {
      File f = model_[from];
      model_.erase(from);
      gone_.insert(from);
      if (f.interrupted) {
        model_[to] = f;
        model_[to].temp = IsTemp(to);
        gone_.erase(to);
      } else {
        Closed(to, f.content);
      }
    } else if (errno == EPERM && !model_[from].temp) {
      ++figures_.refused;  // on the platform, or being taken in: nothing changed
    } else {
      Violation("rename " + from + " -> " + to + ": " + std::strerror(errno));
    }
  }
  void OpenUnlinkWrite() {
    std::string name = "sub/scratch";
    Log("open-unlink-write " + name);
    int fd = ::open(Path(name).c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0644);
    if (fd < 0) return Violation("create " + name + ": " + std::strerror(errno));
    bool ok = ::write(fd, "0123456789", 10) == 10 && ::unlink(Path(name).c_str()) == 0 &&
              ::write(fd, "abcdef", 6) == 6;
    char buf[32] = {};
    ok = ok && ::pread(fd, buf, sizeof(buf), 0) == 16 && std::string(buf, 16) == "0123456789abcdef";
    ok &= ::close(fd) == 0;
    if (!ok) Violation("an open unlinked file did not keep its bytes");
    gone_.insert(name);
  }
  // The kernel drops every cached entry it can (as under memory pressure): the mount gets a
  // FORGET for each, and confirmed files leave only listing entries, made into nodes again when
  // the next operation looks them up. Needs root; otherwise the kernel's own reclaim is all.
  void ForgetAll() {
    Log("forget all (drop_caches)");
    std::ofstream drop("/proc/sys/vm/drop_caches");
    if (drop) drop << "2\n";
  }

  void Read() {
    std::string name = Existing();
    if (name.empty()) return;
    Log("read " + name);
    auto got = ReadFileToString(Path(name));
    if (!got.ok() || *got != model_[name].content) {
      Violation("read " + name + ": " + (got.ok() ? std::to_string(got->size()) + " bytes, not the model's " +
                                                         std::to_string(model_[name].content.size())
                                                   : got.status().message()));
    }
  }
  void BeginHeldWrite() {
    if (held_fd_ >= 0) return;
    held_name_ = PickName(false);
    held_content_ = RandomBytes(1 + Rand(300000), rng_());
    Log("begin-held " + held_name_ + " " + std::to_string(held_content_.size()));
    held_fd_ = ::open(Path(held_name_).c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (held_fd_ < 0) return Violation("create " + held_name_ + ": " + std::strerror(errno));
    if (::write(held_fd_, held_content_.data(), held_content_.size()) != static_cast<ssize_t>(held_content_.size())) {
      Violation("write " + held_name_ + ": " + std::strerror(errno));
    }
    model_.erase(held_name_);  // being written: the model has it again once it is closed
    gone_.erase(held_name_);
  }
  void EndHeldWrite() {
    if (held_fd_ < 0) return;
    Log("end-held " + held_name_);
    bool ok = ::close(held_fd_) == 0;
    held_fd_ = -1;
    if (!ok) return Violation("close " + held_name_ + ": " + std::strerror(errno));
    Closed(held_name_, held_content_);
  }
  void KillAndRemount() {
    Log("kill -9 and remount");
    ++figures_.kills;
    m_->KillNine();
    if (held_fd_ >= 0) {  // its writer never finished it: interrupted, with what reached the cache
      ::close(held_fd_);
      held_fd_ = -1;
      model_[held_name_] = File{held_content_, false, true};
      ++figures_.interrupted;
    }
    m_ = Mount({"listing_ttl=0"}, "0");
    ASSERT_TRUE(m_->ok());
    // A folder is a name prefix on the platform: an empty one lasts only while mounted.
    if (::mkdir(Path("sub").c_str(), 0755) != 0 && errno != EEXIST) Violation("mkdir sub: " + std::string(std::strerror(errno)));
  }
  void RestartServer() {
    Log("restart the platform");
    ++figures_.server_restarts;
    server_->Stop();
    server_.reset();
    Serve({});
  }
  // An interrupted file is settled by the user: accepted as it is, or written again.
  void SettleInterrupted() {
    for (auto& [name, f] : model_) {
      if (!f.interrupted) continue;
      if (Rand(2) == 0 && !f.temp) {
        Log("accept-partial " + name);
        CmdResult r = Ingestfs("retry " + Q(m_->path()) + " --accept-partial " + Q(Path(name)));
        if (r.code != 0) Violation("accept-partial " + name + ": " + r.out);
        closed_[name].insert(Sha256Hex(f.content));
        f.interrupted = false;
      } else {
        Log("rewrite " + name);
        std::string data = Bytes();
        if (!WriteFileAtomicallyThroughMount(name, data)) Violation("rewrite " + name + ": " + std::strerror(errno));
        Closed(name, data);
      }
    }
  }
  bool WriteFileAtomicallyThroughMount(const std::string& name, const std::string& data) {
    int fd = ::open(Path(name).c_str(), O_TRUNC | O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
    return ::close(fd) == 0 && ok;
  }

  // --- the checks ---
  std::map<std::string, std::string> MountView() {
    std::map<std::string, std::string> out;
    std::string root = *m_ / ds_;
    for (auto it = std::filesystem::recursive_directory_iterator(root); it != std::filesystem::recursive_directory_iterator(); ++it) {
      if (!it->is_regular_file()) continue;
      std::string rel = it->path().string().substr(root.size() + 1);
      auto text = ReadFileToString(it->path().string());
      out[rel] = text.ok() ? *text : "<unreadable: " + text.status().message() + ">";
    }
    return out;
  }
  void Check() {
    CmdResult waited = Ingestfs("wait " + Q(m_->path()) + " --timeout 120");
    if (waited.code != 0) Violation("wait exited " + std::to_string(waited.code) + ":\n" + waited.out);
    auto view = MountView();
    for (const auto& [name, f] : model_) {
      auto it = view.find(name);
      if (it == view.end()) Violation(name + " is missing from the mount");
      else if (it->second != f.content) Violation(name + " differs in the mount");
    }
    for (const auto& [name, content] : view) {
      if (model_.count(name) == 0) Violation(name + " is in the mount but not in the model");
    }
    auto platform = Listing(ds_);
    for (const auto& [name, f] : model_) {
      if (f.temp) continue;
      auto it = platform.find(name);
      if (it == platform.end()) Violation(name + " never reached the platform");
      else if (it->second.first != Sha256Hex(f.content)) Violation(name + " is not byte-exact on the platform");
    }
    // The cache's count of bytes not yet on the platform is what the journal's files hold: a
    // file in data/ that belongs to no version would shrink cache_max for good.
    int64_t counted = -1, held = -1;
    for (int i = 0; i < 40; ++i) {
      CmdResult st = Ingestfs("status --json " + Q(m_->path()));
      json::Document doc;
      if (st.code == 0 && !doc.Parse(st.out.c_str()).HasParseError() && doc.IsObject() && doc.HasMember("cache")) {
        counted = doc["cache"]["pending_bytes"].GetInt64();
        held = doc["cache"]["journal_bytes"].GetInt64();
        if (counted == held) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (counted != held) {
      Violation("the cache counts " + std::to_string(counted) + " bytes not yet on the platform, the journal's files hold " +
                std::to_string(held));
    }
    for (const auto& [name, sha_version] : platform) {
      if (IsTemp(name)) Violation("a temporary name reached the platform: " + name);
      else if (gone_.count(name)) Violation(name + " was unlinked or renamed away (returned 0), yet it is on the platform");
      else if (closed_[name].count(sha_version.first) == 0) Violation(name + " on the platform is no version ever closed");
    }
  }

  void RunSequence(uint64_t seed, int ops) {
    rng_.seed(seed);
    ds_ = "seq" + std::to_string(seed);
    model_.clear();
    closed_.clear();
    gone_.clear();
    log_.clear();
    ASSERT_EQ(::mkdir((*m_ / ds_).c_str(), 0755), 0) << std::strerror(errno);
    ASSERT_EQ(::mkdir(Path("sub").c_str(), 0755), 0) << std::strerror(errno);
    int violations_before = figures_.violations;
    for (int i = 0; i < ops && !HasFatalFailure(); ++i) {
      ++figures_.operations;
      uint64_t r = Rand(100);
      if (r < 25) WriteWhole();
      else if (r < 40) Modify();
      else if (r < 47) Truncate();
      else if (r < 59) Unlink();
      else if (r < 71) Rename();
      else if (r < 74) OpenUnlinkWrite();
      else if (r < 81) Read();
      else if (r < 84) ForgetAll();
      else if (r < 89) BeginHeldWrite();
      else if (r < 94) EndHeldWrite();
      else if (r < 97) KillAndRemount();
      else RestartServer();
    }
    EndHeldWrite();
    SettleInterrupted();
    Check();
    ++figures_.sequences;
    if (figures_.violations > violations_before) {
      std::ostringstream seq;
      for (const std::string& l : log_) seq << "  " << l << "\n";
      std::ifstream in(m_->stderr_path());
      std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      ADD_FAILURE() << "sequence with seed " << seed << " (INGESTFS_MODEL_SEED=" << seed
                    << " reruns it):\n" << seq.str() << "status: " << Ingestfs("status --json " + Q(m_->path())).out
                    << "\nthe daemon's log ends:\n"
                    << log.substr(log.size() > 20000 ? log.size() - 20000 : 0);
    }
  }
};

TEST_F(ModelTest, RandomOperationsKillsAndRestartsAgreeWithTheModel) {
  m_ = Mount({"listing_ttl=0"}, "0");
  ASSERT_TRUE(m_->ok());
  int ops = static_cast<int>(EnvInt("INGESTFS_MODEL_OPS", 60));
  int64_t one = EnvInt("INGESTFS_MODEL_SEED", -1);
  auto budget = std::chrono::seconds(EnvInt("INGESTFS_MODEL_SECONDS", 90));
  auto start = std::chrono::steady_clock::now();
  uint64_t seed = one >= 0 ? static_cast<uint64_t>(one) : std::random_device{}();
  do {
    RunSequence(seed++, ops);
  } while (one < 0 && !HasFatalFailure() && std::chrono::steady_clock::now() - start < budget);
  std::cout << "model test: " << figures_.sequences << " sequences, " << figures_.operations << " operations, "
            << figures_.kills << " kills, " << figures_.server_restarts << " platform restarts, "
            << figures_.interrupted << " interrupted writes, " << figures_.refused
            << " unlinks/renames refused (platform first), " << figures_.violations << " violations\n";
  m_->Unmount();
}

}  // namespace
}  // namespace ingestfs::testing
