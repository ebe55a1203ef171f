// ReceiptLog: the lab's proof of what reached the platform and when. One CSV line per confirmed
// upload, appended durably to <cache dir>/receipts.csv (RFC 4180 quoting; a header line first):
//   time,dataset,name,size,sha256,job_id,version
// `time` is when the platform confirmed the file (UTC, ISO 8601); `sha256` is the platform's.
// A crash between the receipt and the journal's `confirmed` record can repeat a line when the
// upload is confirmed again after restart; a confirmed upload never lacks one.
//
// Thread safety: Append is thread-safe.
#pragma once

#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/file_util.h"
#include "common/status.h"
#include "common/sync_group.h"

namespace ingestfs::cache {

struct Receipt {
  std::time_t time = 0;
  std::string dataset;
  std::string name;
  uint64_t size = 0;
  std::string sha256;
  std::string job_id;
  int64_t version = 0;
};

class ReceiptLog {
 public:
  static constexpr char kHeader[] = "time,dataset,name,size,sha256,job_id,version\n";

  explicit ReceiptLog(std::string path) : path_(std::move(path)) {}
  // Appends one line and returns once it is durable (creating the file with its header if
  // needed, again if it was removed). Lines appended at the same time share one fdatasync.
  Status Append(const Receipt& r);
  const std::string& path() const { return path_; }

 private:
  struct Open {
    UniqueFd fd;
    std::unique_ptr<SyncGroup> sync;
  };
  std::string path_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Open>> files_;  // GUARDED_BY(mu_): the current one last; older
                                              // ones (removed by hand) stay open for their syncs
};

// One CSV field: quoted (quotes doubled) when it holds a comma, quote, CR or LF.
std::string CsvField(std::string_view s);
// The CSV line of `r`, newline included.
std::string ReceiptLine(const Receipt& r);

}  // namespace ingestfs::cache
