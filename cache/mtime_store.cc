#include "cache/mtime_store.h"

#include <unistd.h>

#include <cstdio>

#include "common/file_util.h"
#include "common/json.h"
#include "common/log.h"
#include "common/record_log.h"
#include "common/sqlite.h"

namespace ingestfs::cache {

namespace {

constexpr char kSchema[] = R"(
CREATE TABLE IF NOT EXISTS mtimes(
  dataset TEXT NOT NULL, name TEXT NOT NULL, sha256 TEXT NOT NULL, mtime INTEGER NOT NULL,
  PRIMARY KEY(dataset, name)) WITHOUT ROWID;
)";

constexpr char kPut[] = "INSERT OR REPLACE INTO mtimes(dataset, name, sha256, mtime) VALUES(?,?,?,?)";

StatusOr<std::unique_ptr<sql::Db>> OpenDb(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<sql::Db> db, sql::Db::Open(path, true));
  RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode=WAL"));
  // A small page cache: the store may hold a row for every file ever uploaded here.
  RETURN_IF_ERROR(db->Exec("PRAGMA synchronous=NORMAL; PRAGMA cache_size=-512;"));
  RETURN_IF_ERROR(db->Exec(kSchema));
  return db;
}

// Moves the records of an mtimes.log of earlier versions into the database, then sets it aside.
void MigrateLog(sql::Db& db, const std::string& log_path) {
  if (::access(log_path.c_str(), F_OK) != 0) return;
  auto replay = ReplayRecords(log_path);
  if (!replay.ok()) {
    LOG_WARN("mtimes: %s; its times are not kept", replay.status().message().c_str());
    return;
  }
  for (const std::string& w : replay->warnings) LOG_WARN("%s", w.c_str());
  Status st = db.Exec("BEGIN");
  for (const json::Document& r : replay->records) {
    if (!st.ok()) break;
    sql::Query q = db.Prepare(kPut);
    q.Bind(json::StringOr(r, "d")).Bind(json::StringOr(r, "n")).Bind(json::StringOr(r, "s")).Bind(json::IntOr(r, "m"));
    st = q.Run();
  }
  if (st.ok()) st = db.Exec("COMMIT");
  if (!st.ok()) {
    (void)db.Exec("ROLLBACK");
    LOG_WARN("mtimes: moving %s into the database: %s", log_path.c_str(), st.message().c_str());
    return;
  }
  if (::rename(log_path.c_str(), (log_path + ".migrated").c_str()) != 0) {
    LOG_WARN("mtimes: %s: rename after moving it into the database failed", log_path.c_str());
  }
}

}  // namespace

MtimeStore::~MtimeStore() = default;

StatusOr<std::unique_ptr<MtimeStore>> MtimeStore::Open(const std::string& cache_dir) {
  std::unique_ptr<MtimeStore> store(new MtimeStore());
  std::string path = cache_dir + "/mtimes.db";
  auto db = OpenDb(path);
  if (!db.ok()) {
    // Only a hint: set the damaged one aside and start afresh.
    LOG_WARN("mtimes: %s; setting it aside as mtimes.db.damaged and starting afresh", db.status().message().c_str());
    (void)::rename(path.c_str(), (path + ".damaged").c_str());
    (void)::unlink((path + "-wal").c_str());
    (void)::unlink((path + "-shm").c_str());
    db = OpenDb(path);
  }
  if (!db.ok()) return db.status();
  store->db_ = std::move(db).value();
  MigrateLog(*store->db_, cache_dir + "/mtimes.log");
  return store;
}

void MtimeStore::Put(const std::string& dataset, const std::string& name, const std::string& sha256, int64_t mtime) {
  std::lock_guard<std::mutex> lock(mu_);
  sql::Query q = db_->Prepare(kPut);
  q.Bind(dataset).Bind(name).Bind(sha256).Bind(mtime);
  Status st = q.Run();
  if (!st.ok() && !warned_) {  // once: a damaged store would say so for every file
    warned_ = true;
    LOG_WARN("recording the mtime of %s/%s: %s (further failures are not logged)", dataset.c_str(), name.c_str(),
             st.message().c_str());
  }
}

std::optional<int64_t> MtimeStore::Get(const std::string& dataset, const std::string& name,
                                       const std::string& sha256) const {
  if (sha256.empty()) return std::nullopt;
  std::lock_guard<std::mutex> lock(mu_);
  sql::Query q = db_->Prepare("SELECT sha256, mtime FROM mtimes WHERE dataset = ? AND name = ?");
  q.Bind(dataset).Bind(name);
  if (!q.Next() || q.Text(0) != sha256) return std::nullopt;
  return q.Int(1);
}

}  // namespace ingestfs::cache
