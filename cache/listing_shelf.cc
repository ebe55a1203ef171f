#include "cache/listing_shelf.h"

#include <unistd.h>

#include "common/log.h"
#include "common/sqlite.h"

namespace ingestfs::cache {

namespace {

constexpr char kSchema[] = R"(
CREATE TABLE shelf(
  dir INTEGER NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL,
  tag TEXT NOT NULL, last_entry INTEGER NOT NULL,
  PRIMARY KEY(dir, name)) WITHOUT ROWID;
)";

StatusOr<std::unique_ptr<sql::Db>> OpenDb(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<sql::Db> db, sql::Db::Open(path, true));
  // Scratch: nothing here outlives the mount, so no journal and no syncs; one connection holds
  // the file. A small page cache: the table may hold an entry for every file of every dataset.
  RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA locking_mode=EXCLUSIVE;"
                           "PRAGMA cache_size=-1024; PRAGMA temp_store=MEMORY;"));
  RETURN_IF_ERROR(db->Exec(kSchema));
  return db;
}

}  // namespace

ListingShelf::~ListingShelf() {
  db_.reset();
  if (path_ != ":memory:") (void)::unlink(path_.c_str());
}

StatusOr<std::unique_ptr<ListingShelf>> ListingShelf::Open(const std::string& path) {
  std::unique_ptr<ListingShelf> shelf(new ListingShelf());
  if (path != ":memory:") {
    // An earlier mount's entries name inodes of that mount: never reused.
    for (const char* suffix : {"", "-journal", "-wal", "-shm"}) (void)::unlink((path + suffix).c_str());
  }
  ASSIGN_OR_RETURN(shelf->db_, OpenDb(path));
  shelf->path_ = path;
  return shelf;
}

void ListingShelf::Warn(const Status& st) {
  if (warned_) return;
  warned_ = true;
  LOG_WARN("listing entries: %s (files are kept in memory instead; further failures are not logged)",
           st.message().c_str());
}

std::optional<ListingShelf::Entry> ListingShelf::Get(uint64_t dir, std::string_view name) {
  sql::Query q = db_->Prepare("SELECT size, mtime, tag, last_entry FROM shelf WHERE dir = ? AND name = ?");
  q.Bind(dir).Bind(name);
  if (!q.Next()) {
    if (!q.status().ok()) Warn(q.status());
    return std::nullopt;
  }
  return Entry{static_cast<uint64_t>(q.Int(0)), q.Int(1), q.Text(2), static_cast<uint64_t>(q.Int(3))};
}

StatusOr<bool> ListingShelf::Put(uint64_t dir, std::string_view name, const Entry& e) {
  {
    sql::Query q = db_->Prepare(
        "INSERT OR IGNORE INTO shelf(dir, name, size, mtime, tag, last_entry) VALUES(?,?,?,?,?,?)");
    q.Bind(dir).Bind(name).Bind(e.size).Bind(e.mtime).Bind(e.tag).Bind(e.last_entry);
    Status st = q.Run();
    if (!st.ok()) {
      Warn(st);
      return st;
    }
    if (db_->changes() == 1) return true;
  }
  sql::Query q = db_->Prepare("UPDATE shelf SET size = ?, mtime = ?, tag = ?, last_entry = ? WHERE dir = ? AND name = ?");
  q.Bind(e.size).Bind(e.mtime).Bind(e.tag).Bind(e.last_entry).Bind(dir).Bind(name);
  Status st = q.Run();
  if (!st.ok()) {
    Warn(st);
    return st;
  }
  return false;
}

bool ListingShelf::Erase(uint64_t dir, std::string_view name) {
  sql::Query q = db_->Prepare("DELETE FROM shelf WHERE dir = ? AND name = ?");
  q.Bind(dir).Bind(name);
  Status st = q.Run();
  if (!st.ok()) {
    Warn(st);
    return false;
  }
  return db_->changes() == 1;
}

bool ListingShelf::Any(uint64_t dir) {
  sql::Query q = db_->Prepare("SELECT 1 FROM shelf WHERE dir = ? LIMIT 1");
  q.Bind(dir);
  bool any = q.Next();
  if (!q.status().ok()) Warn(q.status());
  return any;
}

size_t ListingShelf::Clear(uint64_t dir) {
  sql::Query q = db_->Prepare("DELETE FROM shelf WHERE dir = ?");
  q.Bind(dir);
  Status st = q.Run();
  if (!st.ok()) {
    Warn(st);
    return 0;
  }
  return static_cast<size_t>(db_->changes());
}

std::vector<std::string> ListingShelf::Names(uint64_t dir, std::string_view after, size_t limit) {
  std::vector<std::string> out;
  sql::Query q = db_->Prepare("SELECT name FROM shelf WHERE dir = ? AND name > ? ORDER BY name LIMIT ?");
  q.Bind(dir).Bind(after).Bind(static_cast<int64_t>(limit));
  while (q.Next()) out.push_back(q.Text(0));
  if (!q.status().ok()) Warn(q.status());
  return out;
}

void ListingShelf::Batch(const std::function<void()>& changes) {
  Status began = db_->Exec("BEGIN");
  if (!began.ok()) Warn(began);
  changes();
  if (began.ok()) {
    Status st = db_->Exec("COMMIT");
    if (!st.ok()) Warn(st);
  }
}

}  // namespace ingestfs::cache
