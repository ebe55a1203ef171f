// A thin RAII layer over Debian's libsqlite3 (the server's catalogue, the mount's mtimes): one
// connection (Db) with its prepared statements cached by their SQL text, and a Query that binds,
// steps and reads one use of a statement and resets it when it ends (or when Run() is done).
// A Query must end (or have Run()) before its connection is let go to another thread.
//
// Thread safety: a Db and its statements belong to one thread at a time (the caller locks);
// SQLite itself is built thread-safe, so different Dbs may be used by different threads at once.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ingestfs::sql {

class Query;

class Db {
 public:
  // Opens (creating when `create`) the database file at `path`.
  static StatusOr<std::unique_ptr<Db>> Open(const std::string& path, bool create);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Runs statements without results (schema, pragmas, BEGIN/COMMIT).
  Status Exec(const char* sql);
  // A use of the statement `sql`, prepared once per Db and kept. `sql` must be a string literal
  // (it is the cache key by address).
  Query Prepare(const char* sql);
  // "catalogue <path>: <what>: <sqlite's message>".
  Status Error(std::string_view what) const;
  int64_t changes() const { return sqlite3_changes64(db_); }

 private:
  Db(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
  std::map<const char*, sqlite3_stmt*> stmts_;
};

class Query {
 public:
  Query(Db* db, sqlite3_stmt* stmt, const char* sql) : db_(db), stmt_(stmt), sql_(sql) {}
  ~Query();
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& Bind(std::string_view text);
  Query& Bind(int64_t value);
  Query& Bind(uint64_t value) { return Bind(static_cast<int64_t>(value)); }
  Query& Bind(bool value) { return Bind(static_cast<int64_t>(value ? 1 : 0)); }

  // Steps once: true with a row to read, false when done; an error (also a bad Prepare or Bind)
  // makes it false and sets status().
  bool Next();
  // Steps to the end (for writes) and resets the statement; the first error, if any.
  Status Run();
  const Status& status() const { return status_; }

  std::string Text(int column) const;
  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }

 private:
  Db* db_;
  sqlite3_stmt* stmt_;  // null when Prepare failed
  const char* sql_;
  int next_bind_ = 1;
  bool spent_ = false;  // Run() is done: the statement is reset and no longer this Query's
  Status status_;
};

}  // namespace ingestfs::sql
