// ListingShelf: the mount's listing entries of platform files that nothing holds (no lookup by
// the kernel, no descriptor, no local version), kept on disk rather than in memory, so that the
// daemon's memory stays flat however many files a dataset holds or the mount has uploaded.
//
// File: CACHE_DIR/listing.db, SQLite, a scratch table keyed by (folder inode, name). It belongs
// to one mount: it is emptied at every start (inodes are the mount's own) and removed at the end;
// nothing in it must survive a crash (no journal, no syncs). SQLite keeps a small page cache of
// it (about 1 MiB). When the file cannot be made, the same table lives in memory (logged).
//
// Thread safety: none; the caller locks (IngestFs's mu_).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ingestfs::sql {
class Db;
}  // namespace ingestfs::sql

namespace ingestfs::cache {

class ListingShelf {
 public:
  struct Entry {
    uint64_t size = 0;
    int64_t mtime = 0;
    std::string tag;
    // The journal id of the upload that made this content here (16 hex digits as a number; 0:
    // none, or someone else's content).
    uint64_t last_entry = 0;
  };

  // Opens `path` afresh (an earlier mount's file is replaced); ":memory:" for a table in memory.
  static StatusOr<std::unique_ptr<ListingShelf>> Open(const std::string& path);
  ~ListingShelf();

  std::optional<Entry> Get(uint64_t dir, std::string_view name);
  // Stores the entry (replacing one of that name). True when there was none.
  StatusOr<bool> Put(uint64_t dir, std::string_view name, const Entry& e);
  // Removes the entry; true when there was one.
  bool Erase(uint64_t dir, std::string_view name);
  bool Any(uint64_t dir);
  // Removes all entries of folder `dir`; returns how many.
  size_t Clear(uint64_t dir);
  // Up to `limit` names of folder `dir` after `after`, in order.
  std::vector<std::string> Names(uint64_t dir, std::string_view after, size_t limit);
  // Many changes at once (a listing page): one transaction, far fewer writes.
  void Batch(const std::function<void()>& changes);
  const std::string& path() const { return path_; }

 private:
  ListingShelf() = default;
  // Logs the first failure only (the caller falls back to keeping nodes).
  void Warn(const Status& st);
  std::unique_ptr<sql::Db> db_;
  std::string path_;
  bool warned_ = false;
};

}  // namespace ingestfs::cache
