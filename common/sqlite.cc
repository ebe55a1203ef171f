#include "common/sqlite.h"

namespace ingestfs::sql {

StatusOr<std::unique_ptr<Db>> Db::Open(const std::string& path, bool create) {
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return Status(Code::kIoError, "catalogue " + path + ": open: " + msg);
  }
  sqlite3_extended_result_codes(db, 1);
  // A writer holding the lock a moment (a checkpoint, another connection's commit) is waited for.
  sqlite3_busy_timeout(db, 10000);
  return std::unique_ptr<Db>(new Db(db, path));
}

Db::~Db() {
  for (auto& [sql, stmt] : stmts_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

Status Db::Exec(const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::Ok();
  std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  return Status(Code::kIoError, "catalogue " + path_ + ": " + msg);
}

Status Db::Error(std::string_view what) const {
  return Status(Code::kIoError, "catalogue " + path_ + ": " + std::string(what) + ": " + sqlite3_errmsg(db_));
}

Query Db::Prepare(const char* sql) {
  auto it = stmts_.find(sql);
  if (it != stmts_.end()) return Query(this, it->second, sql);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
    return Query(this, nullptr, sql);
  }
  stmts_.emplace(sql, stmt);
  return Query(this, stmt, sql);
}

Query::~Query() {
  if (stmt_ == nullptr) return;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

Query& Query::Bind(std::string_view text) {
  if (stmt_ != nullptr && status_.ok() &&
      sqlite3_bind_text(stmt_, next_bind_, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT) != SQLITE_OK) {
    status_ = db_->Error("bind");
  }
  ++next_bind_;
  return *this;
}

Query& Query::Bind(int64_t value) {
  if (stmt_ != nullptr && status_.ok() && sqlite3_bind_int64(stmt_, next_bind_, value) != SQLITE_OK) {
    status_ = db_->Error("bind");
  }
  ++next_bind_;
  return *this;
}

bool Query::Next() {
  if (!status_.ok() || spent_) return false;
  if (stmt_ == nullptr) {
    status_ = db_->Error(std::string("prepare \"") + sql_ + "\"");
    return false;
  }
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc != SQLITE_DONE) status_ = db_->Error("step");
  return false;
}

Status Query::Run() {
  while (Next()) {
  }
  // Reset now, not when the Query ends: the caller may let the connection go (commit and unlock)
  // before that, and the next user of this statement must find it idle.
  // The Query is spent: its end touches the statement no more (another thread may hold the
  // connection by then).
  if (stmt_ != nullptr) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    stmt_ = nullptr;
  }
  spent_ = true;
  return status_;
}

std::string Query::Text(int column) const {
  const unsigned char* p = sqlite3_column_text(stmt_, column);
  if (p == nullptr) return std::string();
  return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

}  // namespace ingestfs::sql
