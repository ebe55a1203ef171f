#include "tests/support/samba.h"

#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace ingestfs::testing {

namespace {

std::string UserName() {
  passwd* pw = ::getpwuid(::geteuid());
  return pw != nullptr ? pw->pw_name : "root";
}

// The share options of the shipped example, so that the tests prove the snippet users copy.
std::string ExampleShareOptions() {
  std::ifstream in(SourceDir() + "/scripts/smb.conf.example");
  std::string line, out;
  bool in_share = false;
  while (std::getline(in, line)) {
    if (line.rfind("[platform]", 0) == 0) {
      in_share = true;
      continue;
    }
    if (!in_share || line.find("path =") != std::string::npos) continue;
    out += line + "\n";
  }
  return out;
}

}  // namespace

std::string SambaUnavailableReason() {
  for (const char* p : {"/usr/sbin/smbd", "/usr/bin/smbclient"}) {
    if (::access(p, X_OK) != 0) return std::string(p) + " is missing (Debian packages samba, smbclient)";
  }
  if (::geteuid() != 0) return "smbd needs root to serve a share (run the tests as root, as CI does)";
  return "";
}

SambaServer::SambaServer(const std::string& path) {
  std::string d = tmp_.path();
  for (const char* sub : {"pid", "lock", "state", "cache", "private", "log"}) std::filesystem::create_directories(d + "/" + sub);
  log_dir_ = d + "/log";
  port_ = FreeLoopbackPort();
  std::string share = ExampleShareOptions();
  if (share.empty()) return;
  std::ofstream(d + "/smb.conf") << "[global]\n"
                                 << "  server role = standalone server\n"
                                 << "  smb ports = " << port_ << "\n"
                                 << "  interfaces = 127.0.0.1\n  bind interfaces only = yes\n"
                                 << "  pid directory = " << d << "/pid\n"
                                 << "  lock directory = " << d << "/lock\n"
                                 << "  state directory = " << d << "/state\n"
                                 << "  cache directory = " << d << "/cache\n"
                                 << "  private dir = " << d << "/private\n"
                                 << "  ncalrpc dir = " << d << "/lock/ncalrpc\n"
                                 << "  log file = " << d << "/log/log.%m\n"
                                 << "  passdb backend = tdbsam:" << d << "/private/passdb.tdb\n"
                                 << "  map to guest = Bad User\n  guest account = " << UserName() << "\n"
                                 << "  load printers = no\n  printcap name = /dev/null\n  disable spoolss = yes\n"
                                 << "  disable netbios = yes\n  server min protocol = SMB2\n"
                                 << "[platform]\n  path = " << path << "\n" << share
                                 << "  guest ok = yes\n  force user = " << UserName() << "\n";
  if (!smbd_.Start({"/usr/sbin/smbd", "--foreground", "--debug-stdout", "-s", d + "/smb.conf"},
                   log_dir_ + "/smbd.stderr")) {
    return;
  }
  for (int i = 0; i < 200 && !ok_; ++i) {
    ok_ = AcceptsOnLoopback(port_);
    if (!ok_) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

SambaServer::~SambaServer() { smbd_.Stop(); }

SambaServer::Result SambaServer::Client(const std::string& commands) const {
  Result r;
  TempDir out;
  Child c;
  if (!c.Start({"/usr/bin/smbclient", "//127.0.0.1/platform", "-p", std::to_string(port_), "-N", "-c", commands},
               out / "stderr")) {
    return r;
  }
  r.out = c.ReadAll(std::chrono::minutes(5));
  r.code = c.Wait(std::chrono::minutes(1));
  if (r.code >= 0) r.code = WIFEXITED(r.code) ? WEXITSTATUS(r.code) : -1;
  std::ifstream err(out / "stderr");
  std::stringstream ss;
  ss << err.rdbuf();
  r.out += ss.str();
  return r;
}

}  // namespace ingestfs::testing
