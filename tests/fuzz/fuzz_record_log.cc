// Replay of corrupted record logs: the upload journal (cache/journal/*.jnl, through
// Journal::Open, which also applies each record to its entry) and the reference server's
// catalogue log of earlier versions (meta.log, migrated into SQLite by MetaStore::Open). The
// input is the file's bytes. A torn or corrupt log must give warnings and a usable state, never
// a crash.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "cache/journal.h"
#include "common/file_util.h"
#include "common/record_log.h"
#include "server/meta_store.h"

using namespace ingestfs;

namespace {
std::string Dir() {
  static std::string dir = [] {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/ingestfs-fuzz-XXXXXX";
    char* made = ::mkdtemp(tmpl.data());
    if (made == nullptr) std::abort();
    return std::string(made);
  }();
  return dir;
}

void Write(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string dir = Dir();
  std::string cache = dir + "/cache", meta = dir + "/meta";
  (void)RemoveTree(cache);
  (void)RemoveTree(meta);
  (void)MakeDirs(cache + "/journal");
  (void)MakeDirs(meta);
  Write(cache + "/journal/0123456789abcdef.jnl", data, size);
  Write(meta + "/meta.log", data, size);
  (void)ReplayRecords(cache + "/journal/0123456789abcdef.jnl");
  {
    std::vector<std::string> warnings;
    auto j = cache::Journal::Open(cache, &warnings);
    if (j.ok()) (void)(*j)->Unfinished();
  }
  {
    std::vector<std::string> warnings;
    auto m = server::MetaStore::Open(meta, &warnings);
    if (m.ok()) {
      int64_t total = 0;
      for (const auto& d : (*m)->ListDatasets({}, &total)) (void)(*m)->ListFiles(d.id, {}, &total);
    }
  }
  return 0;
}
