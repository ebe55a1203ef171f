// The durable record format shared by the server's catalogue and the client's upload journal
// (after leveldb's log: every record carries its own checksum, replay reports damage instead of
// crashing).
//
// A record is one line: "<crc32 of the JSON, 8 lowercase hex> <JSON object>\n". Appends are
// followed by fdatasync before the caller treats the record as written. On replay a damaged last
// line is a torn append (dropped); a damaged line elsewhere is corruption (reported, skipped).
// Thread safety: RecordWriter is not synchronised; callers serialise appends.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/file_util.h"
#include "common/json.h"
#include "common/status.h"

namespace ingestfs {

// "crc json\n" for one record.
std::string FrameRecord(std::string_view json_text);

struct ReplayResult {
  std::vector<json::Document> records;  // the good ones, in order
  std::vector<std::string> warnings;    // one line per dropped or skipped record
};

// Reads every record of `path`. A missing file is an empty log.
StatusOr<ReplayResult> ReplayRecords(const std::string& path);

class RecordWriter {
 public:
  // Opens `path` for appending, creating it (and, with `durable`, fsyncing its directory).
  static StatusOr<RecordWriter> Open(const std::string& path, bool durable = true);
  // Appends one record, and with `durable` fdatasyncs it.
  Status Append(std::string_view json_text, bool durable = true);
  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }

 private:
  std::string path_;
  UniqueFd fd_;
};

}  // namespace ingestfs
