#include "tests/support/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <thread>

#include "common/crypto.h"

namespace ingestfs::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/ingestfs-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool Child::Start(const std::vector<std::string>& argv, const std::string& stderr_path,
                  const std::vector<std::string>& env) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return false;
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    if (own_group_) setpgid(0, 0);
    dup2(pipefd[1], 1);
    if (!stderr_path.empty()) {
      int fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) dup2(fd, 2);
    }
    for (const std::string& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(pipefd[1]);
  if (own_group_) setpgid(pid, pid);  // both sides: whichever runs first
  pid_ = pid;
  out_fd_ = pipefd[0];
  return true;
}

std::string Child::ReadLine(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    size_t nl = buffered_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffered_.substr(0, nl);
      buffered_.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || out_fd_ < 0) return "";
    pollfd p{out_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return "";
    char buf[4096];
    ssize_t n = read(out_fd_, buf, sizeof(buf));
    if (n <= 0) return "";
    buffered_.append(buf, static_cast<size_t>(n));
  }
}

std::string Child::ReadAll(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string out;
  std::swap(out, buffered_);
  while (out_fd_ >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{out_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[65536];
    ssize_t n = read(out_fd_, buf, sizeof(buf));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

int Child::Wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      if (out_fd_ >= 0) close(out_fd_);
      out_fd_ = -1;
      return status;
    }
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int Child::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = Wait(std::chrono::seconds(10));
  if (status == -1 && pid_ > 0) {
    Kill();
    return -1;
  }
  return status;
}

void Child::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  if (out_fd_ >= 0) close(out_fd_);
  out_fd_ = -1;
}

void Child::KillGroup() {
  if (pid_ <= 0) return;
  if (!own_group_) return Kill();
  const pid_t group = pid_;
  ::killpg(group, SIGKILL);
  Kill();
  for (int i = 0; i < 1000 && ::killpg(group, 0) == 0; ++i) {
    ::killpg(group, SIGKILL);  // a member forked meanwhile
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

bool AcceptsOnLoopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ::close(fd);
  return ok;
}

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&out[i], &v, 8);
  }
  for (; i < n; ++i) out[i] = static_cast<char>(rng());
  return out;
}

std::string Sha256Hex(const std::string& data) { return HexEncode(Sha256(data)); }

std::string FileSha256Hex(const std::string& path) {
  auto h = Sha256FileHex(path);
  return h.ok() ? *h : "";
}

void WriteRandomFile(const std::string& path, uint64_t size, uint64_t seed) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw std::runtime_error("cannot create " + path);
  uint64_t left = size;
  uint64_t block = 0;
  while (left > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(left, 1 << 20));
    std::string chunk = RandomBytes(n, seed * 1000003 + block++);
    std::fwrite(chunk.data(), 1, n, f);
    left -= n;
  }
  std::fclose(f);
}

std::string SourceDir() { return INGESTFS_SOURCE_DIR; }
std::string BinDir() { return INGESTFS_BIN_DIR; }

long ProcStatusKiB(pid_t pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  std::string want = field;
  while (std::getline(in, line)) {
    if (line.rfind(want, 0) == 0) return std::stol(line.substr(want.size()));
  }
  return -1;
}

uint64_t SizeMibArg(int argc, char** argv, uint64_t dflt, const char* usage) {
  if (argc < 2) return dflt;
  std::string a = argv[1];
  if (a == "--help" || a == "-h") {
    std::printf("%s", usage);
    std::exit(0);
  }
  bool digits = !a.empty() && a.size() < 10 && a.find_first_not_of("0123456789") == std::string::npos;
  if (argc > 2 || !digits || std::stoull(a) == 0) {
    std::fprintf(stderr, "%s: expected one size in MiB (a positive whole number), got '%s'\n%s", argv[0],
                 argc > 2 ? (a + " " + argv[2]).c_str() : a.c_str(), usage);
    std::exit(2);
  }
  return std::stoull(a);
}

}  // namespace ingestfs::testing
