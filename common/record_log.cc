#include "common/record_log.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>

namespace ingestfs {

namespace {
std::string Crc(std::string_view s) {
  uLong c = crc32(0L, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size()));
  char buf[9];
  std::snprintf(buf, sizeof(buf), "%08lx", c & 0xffffffffUL);
  return buf;
}
}  // namespace

std::string FrameRecord(std::string_view json_text) {
  return Crc(json_text) + " " + std::string(json_text) + "\n";
}

StatusOr<ReplayResult> ReplayRecords(const std::string& path) {
  ReplayResult out;
  if (!PathExists(path)) return out;
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    bool torn = nl == std::string::npos;
    std::string_view line(text.data() + pos, (torn ? text.size() : nl) - pos);
    pos = torn ? text.size() : nl + 1;
    ++line_no;
    bool last = pos >= text.size();
    auto report = [&](const std::string& why) {
      out.warnings.push_back(path + " line " + std::to_string(line_no) + ": " + why +
                             (last ? " (torn last record, dropped)" : " (corrupt record, skipped)"));
    };
    if (line.size() < 10 || line[8] != ' ') {
      report("malformed record");
      continue;
    }
    std::string_view body = line.substr(9);
    if (Crc(body) != line.substr(0, 8)) {
      report("checksum mismatch");
      continue;
    }
    auto doc = json::Parse(body, "record");
    if (!doc.ok() || !doc->IsObject()) {
      report("unreadable JSON");
      continue;
    }
    out.records.push_back(std::move(doc).value());
  }
  return out;
}

StatusOr<RecordWriter> RecordWriter::Open(const std::string& path, bool durable) {
  bool existed = PathExists(path);
  RecordWriter w;
  w.path_ = path;
  w.fd_ = UniqueFd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (!w.fd_.valid()) return Status::FromErrno(errno, "open " + path);
  if (!existed && durable) RETURN_IF_ERROR(FsyncDir(DirName(path)));
  return w;
}

Status RecordWriter::Append(std::string_view json_text, bool durable) {
  std::string line = FrameRecord(json_text);
  RETURN_IF_ERROR(WriteAll(fd_.get(), line.data(), line.size(), path_));
  if (durable && ::fdatasync(fd_.get()) != 0) return Status::FromErrno(errno, "fdatasync " + path_);
  return Status::Ok();
}

}  // namespace ingestfs
