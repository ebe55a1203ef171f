// MtimeStore: the modification times that writers gave files uploaded through the mount, kept
// in the cache dir because the platform stores none. After a remount, a platform file whose
// sha256 still equals the one recorded shows the writer's mtime again, so that rsync's quick
// check (size and mtime) finds an unchanged tree unchanged instead of sending it all again.
//
// File: CACHE_DIR/mtimes.log, common/record_log framing, one {"d","n","s","m"} per update,
// compacted when it is opened. It is a hint: appends are not synced, and a lost or damaged
// record only means a file shows the platform's time.
// Thread safety: all methods are thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/record_log.h"
#include "common/status.h"

namespace ingestfs::cache {

class MtimeStore {
 public:
  static StatusOr<std::unique_ptr<MtimeStore>> Open(const std::string& cache_dir);
  void Put(const std::string& dataset, const std::string& name, const std::string& sha256, int64_t mtime);
  // The recorded mtime, if the recorded content is `sha256`.
  std::optional<int64_t> Get(const std::string& dataset, const std::string& name, const std::string& sha256) const;

 private:
  struct Value {
    std::string sha256;
    int64_t mtime = 0;
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, Value> values_;  // GUARDED_BY(mu_)
  std::unique_ptr<RecordWriter> log_;                              // GUARDED_BY(mu_)
};

}  // namespace ingestfs::cache
