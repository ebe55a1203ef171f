// MtimeStore: the modification times that writers gave files uploaded through the mount, kept
// in the cache dir because the platform stores none. After a remount, a platform file whose
// sha256 still equals the one recorded shows the writer's mtime again, so that rsync's quick
// check (size and mtime) finds an unchanged tree unchanged instead of sending it all again.
//
// File: CACHE_DIR/mtimes.db, SQLite (WAL, synchronous=NORMAL: a commit is not synced on its own,
// a checkpoint is), one row per (dataset, name). It lives on disk, not in memory: a mount that
// uploads a million files keeps a small page cache of it, not a million entries. It is a hint:
// a lost update only means a file shows the platform's time; a file that is not a database is
// set aside (mtimes.db.damaged) and started afresh, and failures after the open are logged once.
// A CACHE_DIR/mtimes.log of earlier versions is moved in at the first open and renamed to
// mtimes.log.migrated.
// Thread safety: all methods are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/status.h"

namespace ingestfs::sql {
class Db;
}  // namespace ingestfs::sql

namespace ingestfs::cache {

class MtimeStore {
 public:
  static StatusOr<std::unique_ptr<MtimeStore>> Open(const std::string& cache_dir);
  ~MtimeStore();
  void Put(const std::string& dataset, const std::string& name, const std::string& sha256, int64_t mtime);
  // The recorded mtime, if the recorded content is `sha256`.
  std::optional<int64_t> Get(const std::string& dataset, const std::string& name, const std::string& sha256) const;

 private:
  MtimeStore() = default;
  mutable std::mutex mu_;
  std::unique_ptr<sql::Db> db_;  // GUARDED_BY(mu_)
  bool warned_ = false;          // GUARDED_BY(mu_)
};

}  // namespace ingestfs::cache
